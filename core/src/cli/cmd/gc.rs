//! `gc`.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, dry_run: bool) -> Result<i32> {
    let report = ctx.engine.gc(dry_run)?;
    if ctx.json() {
        return output::json(&report).map(|()| 0);
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
    Ok(0)
}
