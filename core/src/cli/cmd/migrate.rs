//! `migrate`: store format check and upgrade with a backup.
//!
//! Text and JSON are the standard tool's (scripts branch on `status`); our explanation of what
//! happened goes to stderr.

use serde_json::json;

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx) -> Result<i32> {
    let root = ctx.engine.root();
    let report = karapace_store::migrate::migrate(root)?;
    let current = report.to_version;
    let found = report.from_version.unwrap_or(0);
    let (value, text, code) = match report.status.as_str() {
        "current" => (
            json!({"status": "current", "format_version": current}),
            format!("Store format version: {current} (current)\nNo migration needed."),
            0,
        ),
        "no_store" => (
            json!({"status": "no_store", "message": "No store found."}),
            format!("No store found at {}. Nothing to migrate.", root.display()),
            0,
        ),
        "newer" => (
            json!({"status": "newer", "found": found, "supported": current}),
            format!(
                "Store format version: {found}\nSupported: {current}\n\nCreated by a newer Karapace. Please upgrade."
            ),
            1,
        ),
        "migrated" => {
            let backup = report
                .backup_path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            // No environment of an older format can be converted (other hash rules): each is
            // rebuilt from its manifest, which the message on stderr says.
            (
                json!({"status": "migrated", "from": found, "to": current, "environments": 0, "backup": backup}),
                format!(
                    "Migrated store from v{found} to v{current}.\n0 environments updated.\nBackup: {backup}"
                ),
                0,
            )
        }
        _ => (
            json!({"status": "error", "message": report.message}),
            format!("Migration failed: {}", report.message),
            1,
        ),
    };
    if ctx.json() {
        output::json(&value)?;
    } else {
        for line in text.lines() {
            output::line(line)?;
        }
    }
    if matches!(report.status.as_str(), "migrated" | "newer" | "error") {
        output::note(&report.message);
    }
    Ok(code)
}
