//! Printing results. Results go to stdout; logs, progress and errors go to stderr, so `--json`
//! output is always parseable.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

use crate::error::{CoreError, Result};

/// Prints `value` as pretty JSON (2-space indent) followed by a newline. JSON is exact: names
/// are never altered (JSON's own escaping keeps control characters off the terminal).
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CoreError::Other(format!("cannot encode JSON output: {e}")))?;
    write_stdout(&text)
}

/// Prints one line of text for humans on stdout, with control characters escaped (see
/// [`escape`]). A closed pipe (e.g. `| head`) is not an error worth a message.
pub fn line(text: &str) -> Result<()> {
    write_stdout(&escape(text))
}

/// Prints one line for humans on stderr (notes, warnings, errors), escaped like [`line`].
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", escape(text));
}

/// Text for a terminal with every character that could steer it made visible: C0 controls but
/// newline and tab, DEL, C1 controls and the bidirectional overrides (which reorder what a human
/// reads). Names, paths and messages come from manifests, images and workloads, and a hostile one
/// must not be able to move the cursor, retitle the window or hide text in the user's terminal.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    fn steers(c: char) -> bool {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(steers) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !steers(c) {
            out.push(c);
        } else if u32::from(c) < 0x100 {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        }
    }
    std::borrow::Cow::Owned(out)
}

fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CoreError::io("cannot write to stdout", e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn terminal_controls_are_made_visible() {
        assert_eq!(escape("plain name/ü\tok\n"), "plain name/ü\tok\n");
        assert_eq!(escape("a\x1b]0;pwned\x07b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(escape("\r\x7f\u{9b}"), "\\x0d\\x7f\\x9b");
        assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
    }
}
