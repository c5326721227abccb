//! `verify-store`: exit 3 on any failure.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx) -> Result<i32> {
    let Some(report) = ctx.engine.verify()? else {
        if ctx.json() {
            output::json(&serde_json::json!({"checked": 0, "passed": 0, "failed": 0}))?;
        } else {
            output::line("no store to verify")?;
        }
        return Ok(0);
    };
    if ctx.json() {
        output::json(&report)?;
    } else {
        for f in &report.failures {
            output::line(&format!("  FAIL {}: {}", f.key, f.reason))?;
        }
        output::line(&format!(
            "verify-store: {} checked, {} passed, {} failed",
            report.checked, report.passed, report.failed
        ))?;
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
