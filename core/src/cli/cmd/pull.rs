//! `pull`: fetches an environment from a remote (`docs/remote.md`).

use crate::cli::Ctx;
use crate::engine::share::{self, config, reference::Reference};
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, reference: &str, remote: Option<&str>) -> Result<i32> {
    let reference = Reference::parse(reference)?;
    let config = config::resolve(remote)?;
    let transport = share::connect(&config)?;
    let report = ctx.engine.pull(transport.as_ref(), &reference)?;
    if ctx.json() {
        output::json(&report)?;
    } else {
        output::line(&format!(
            "pulled {} ({} objects, {} layers; {} skipped)",
            report.env_id.get(..12).unwrap_or(&report.env_id),
            report.objects_pulled,
            report.layers_pulled,
            report.objects_skipped + report.layers_skipped
        ))?;
    }
    Ok(0)
}
