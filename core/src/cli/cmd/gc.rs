//! `gc`: the standard tool's line first, then ours (bytes freed; cached images with `--images`).

use crate::cli::Ctx;
use crate::error::{CoreError, Result};
use crate::output;

pub fn run(ctx: &Ctx, dry_run: bool, images: bool) -> Result<i32> {
    let report = ctx.engine.gc(dry_run)?;
    let pruned = if images {
        Some(ctx.engine.prune_images(dry_run)?)
    } else {
        None
    };
    if ctx.json() {
        let mut value = serde_json::to_value(&report).map_err(|e| CoreError::Encode {
            what: "the gc report".into(),
            message: e.to_string(),
        })?;
        if let (Some((removed, bytes)), Some(map)) = (&pruned, value.as_object_mut()) {
            map.insert("removed_images".into(), serde_json::json!(removed));
            map.insert("images_freed_bytes".into(), serde_json::json!(bytes));
        }
        return output::json(&value).map(|()| 0);
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    let (envs, layers, objects) = if dry_run {
        (
            report.orphaned_envs.len(),
            report.orphaned_layers.len(),
            report.orphaned_objects.len(),
        )
    } else {
        (
            report.removed_envs,
            report.removed_layers,
            report.removed_objects,
        )
    };
    output::line(&format!(
        "gc: {verb} {envs} envs, {layers} layers, {objects} objects"
    ))?;
    // Ours, on further lines: the standard tool's scripts read the first.
    let freed = if dry_run { "would free" } else { "freed" };
    output::line(&format!(
        "gc: {freed} {} ({} bytes)",
        output::bytes(report.freed_bytes),
        report.freed_bytes
    ))?;
    if let Some((removed, bytes)) = &pruned {
        output::line(&format!(
            "gc: {verb} {} cached images ({})",
            removed.len(),
            output::bytes(*bytes)
        ))?;
    }
    Ok(0)
}
