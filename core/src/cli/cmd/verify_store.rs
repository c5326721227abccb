//! `verify-store`: exit 3 on any failure.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx) -> Result<i32> {
    let Some(report) = ctx.engine.verify()? else {
        if ctx.json() {
            output::json(&serde_json::json!({"checked": 0, "passed": 0, "failed": 0}))?;
        } else {
            output::line("store integrity: 0/0 objects passed")?;
            output::note("note: there is no store here yet; nothing to verify");
        }
        return Ok(0);
    };
    if ctx.json() {
        output::json(&report)?;
    } else {
        // The standard tool's summary line first; our counts cover layers and metadata too.
        output::line(&format!(
            "store integrity: {}/{} objects passed",
            report.passed, report.checked
        ))?;
        for f in &report.failures {
            output::line(&format!("  FAIL {}: {}", f.key, f.reason))?;
        }
    }
    if report.failed > 0 {
        eprintln!(
            "error: store verification failed: {} of {} items",
            report.failed, report.checked
        );
        return Ok(3);
    }
    Ok(0)
}
