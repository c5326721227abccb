//! `du` (ours): what environments, shared layers and caches take on disk; read-only.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output::{self, bytes};

pub fn run(ctx: &Ctx) -> Result<i32> {
    let usage = ctx.engine.disk_usage()?;
    if ctx.json() {
        return output::json(&usage).map(|()| 0);
    }
    if !usage.environments.is_empty() {
        output::line(&format!(
            "{:<14} {:<16} {:>10} {:>10} {:>10}",
            "SHORT_ID", "NAME", "WRITABLE", "LAYERS", "EXCLUSIVE"
        ))?;
    }
    for e in &usage.environments {
        let layers: u64 = e.layers.iter().map(|l| l.bytes).sum();
        output::line(&format!(
            "{:<14} {:<16} {:>10} {:>10} {:>10}",
            e.short_id,
            e.name.as_deref().unwrap_or(""),
            bytes(e.writable_bytes),
            bytes(layers),
            bytes(e.exclusive_bytes)
        ))?;
    }
    let rows = [
        ("shared layers (counted once)", usage.shared_bytes),
        ("unpacked layer cache", usage.tree_cache_bytes),
        ("store total", usage.store_bytes),
        ("reclaimable by gc", usage.reclaimable_bytes),
    ];
    for (what, n) in rows {
        output::line(&format!("{what:<30} {:>10}", bytes(n)))?;
    }
    output::line(&format!(
        "{:<30} {:>10}  {}",
        "image cache",
        bytes(usage.image_cache_bytes),
        usage.image_cache
    ))?;
    Ok(0)
}
