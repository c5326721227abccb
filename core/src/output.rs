//! Printing results. Results go to stdout; logs, progress and errors go to stderr, so `--json`
//! output is always parseable.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

use crate::error::{CoreError, Result};

/// Prints `value` as pretty JSON (2-space indent) followed by a newline. JSON is exact: names
/// are never altered (JSON's own escaping keeps control characters off the terminal).
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CoreError::Encode {
        what: "JSON output".into(),
        message: e.to_string(),
    })?;
    write_stdout(&text)
}

/// A size for people: `512 B`, `3.4 KiB`, `1.2 GiB` (binary units, one decimal).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)] // a rounded figure for people
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Prints one line of text for humans on stdout with every control character escaped, newlines
/// included (see [`escape`]): scripts read stdout line by line, and a name a workload chose (a
/// file in `diff`) must not forge a line. A closed pipe (e.g. `| head`) is not an error worth a
/// message.
pub fn line(text: &str) -> Result<()> {
    write_stdout(&escape(text, Newlines::Escape))
}

/// Prints a message for humans on stderr (notes, warnings, errors; it may span lines), with
/// control characters other than newline and tab escaped.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", escape(text, Newlines::Keep));
}

/// Whether [`escape`] keeps newlines and tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newlines {
    Keep,
    Escape,
}

/// Text for a terminal with every character that could steer it made visible: C0 controls (but
/// newline and tab with [`Newlines::Keep`]), DEL, C1 controls, the bidirectional overrides
/// (which reorder what a human reads) and the other invisible formatting characters
/// (`karapace_schema::is_invisible_format`: zero-width characters and the like, which make one
/// text look like another). Names, paths and messages come from manifests, images and
/// workloads, and a hostile one must not be able to move the cursor, retitle the window or hide
/// text in the user's terminal.
pub fn escape(text: &str, newlines: Newlines) -> std::borrow::Cow<'_, str> {
    let steers = |c: char| {
        (c.is_control() && !(newlines == Newlines::Keep && matches!(c, '\n' | '\t')))
            || karapace_schema::is_invisible_format(c)
    };
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
    use super::{Newlines, escape};

    #[test]
    fn terminal_controls_are_made_visible() {
        let keep = |t| escape(t, Newlines::Keep).into_owned();
        assert_eq!(keep("plain name/ü\tok\n"), "plain name/ü\tok\n");
        assert_eq!(keep("a\x1b]0;pwned\x07b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(keep("\r\x7f\u{9b}"), "\\x0d\\x7f\\x9b");
        assert_eq!(keep("x\u{202e}y"), "x\\u{202e}y");
        // Invisible characters that make one name look like another are shown too.
        assert_eq!(keep("apt\u{200b}"), "apt\\u{200b}");
        assert_eq!(keep("vim\u{fe0f}"), "vim\\u{fe0f}");
        assert_eq!(
            escape("a\nbuilt environment x", Newlines::Escape),
            "a\\x0abuilt environment x"
        );
    }
}
