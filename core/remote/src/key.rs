//! The key rule of protocol v1: a key is 64 lowercase hex characters (a blake3 digest or an
//! `env_id`). The rule itself lives in the store (`karapace_store::is_valid_key`); this module
//! gives the remote side its error type and a safe way to quote a hostile key in a message.

use std::fmt;

/// Whether `key` is a valid protocol v1 key (64 lowercase hex characters).
pub fn is_valid_key(key: &str) -> bool {
    karapace_store::is_valid_key(key)
}

/// A string that is not a valid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidKey(pub String);

impl fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid key '{}': a key is 64 lowercase hex characters",
            quote(&self.0)
        )
    }
}

impl std::error::Error for InvalidKey {}

/// `Ok(key)` when valid, else the [`InvalidKey`] error.
pub fn check_key(key: &str) -> Result<&str, InvalidKey> {
    if is_valid_key(key) {
        Ok(key)
    } else {
        Err(InvalidKey(key.to_string()))
    }
}

/// Longest part of a peer-supplied string quoted in a message or log line.
const QUOTE_LIMIT: usize = 100;

/// A peer-supplied string made safe to print: control characters and non-ASCII escaped, cut
/// after 100 characters (a hostile path or key must not forge log lines or flood a terminal).
pub fn quote(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == QUOTE_LIMIT {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_lowercase_hex_is_a_key() {
        assert!(is_valid_key(&"a".repeat(64)));
        assert!(is_valid_key(&"0123456789abcdef".repeat(4)));
        assert!(!is_valid_key(&"A".repeat(64)));
        assert!(!is_valid_key(&"a".repeat(63)));
        assert!(!is_valid_key(&"a".repeat(65)));
        assert!(!is_valid_key(&format!("{}g", "a".repeat(63))));
        assert!(!is_valid_key(&format!("../{}", "a".repeat(61))));
        assert!(!is_valid_key(""));
        assert!(check_key("..").is_err());
    }

    #[test]
    fn quoting_escapes_control_characters_and_cuts_long_input() {
        assert_eq!(quote("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(quote(&"x".repeat(500)).chars().count(), QUOTE_LIMIT + 1);
        assert_eq!(quote("é"), "\\u{e9}");
    }
}
