//! `push`: uploads an environment to a remote (`docs/remote.md`).

use crate::cli::Ctx;
use crate::engine::share::{self, config, reference};
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str, tag: Option<&str>, remote: Option<&str>) -> Result<i32> {
    // Usage errors first, before any network or store access.
    let tag = tag.map(reference::parse_tag).transpose()?;
    let config = config::resolve(remote)?;
    let transport = share::connect(&config)?;
    let report = ctx.engine.push(query, transport.as_ref(), tag.as_ref())?;
    if ctx.json() {
        output::json(&report)?;
    } else {
        output::line(&format!(
            "pushed {} ({} objects, {} layers; {} skipped)",
            report.env_id.get(..12).unwrap_or(&report.env_id),
            report.objects_pushed,
            report.layers_pushed,
            report.objects_skipped + report.layers_skipped
        ))?;
        if let Some(tag) = &report.tag {
            output::line(&format!("tagged as '{tag}'"))?;
        }
    }
    Ok(0)
}
