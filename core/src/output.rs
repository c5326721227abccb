//! Printing results. Results go to stdout; logs, progress and errors go to stderr, so `--json`
//! output is always parseable.

use std::io::Write;

use serde::Serialize;

use crate::error::{CoreError, Result};

/// Prints `value` as pretty JSON (2-space indent) followed by a newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CoreError::Other(format!("cannot encode JSON output: {e}")))?;
    line(&text)
}

/// Prints one line on stdout. A closed pipe (e.g. `| head`) is not an error worth a message.
pub fn line(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CoreError::io("cannot write to stdout", e))
        }
        _ => Ok(()),
    }
}
