//! The registry document of protocol v1 (`GET|PUT /registry`): tags (`<name>@<tag>`) mapped
//! to environments, and the OCI reference grammar its keys follow.
//!
//! Everything here reads what a peer sent: [`Registry::from_json`] refuses documents that do
//! not parse and [`Registry::validate`] refuses references outside the OCI grammar, `env_ids`
//! that are not keys, short ids that are not a prefix of their `env_id`, names outside the store's
//! name rule and timestamps that are not RFC 3339-shaped.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::key::{is_valid_key, quote};

/// Largest registry document either side accepts (bytes of JSON).
pub const MAX_REGISTRY_BYTES: u64 = 16 * 1024 * 1024;

/// Longest repository name of a reference (the OCI distribution limit).
const MAX_NAME_LEN: usize = 255;

/// The registry: `"<name>@<tag>"` → entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub entries: BTreeMap<String, RegistryEntry>,
}

/// One published environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEntry {
    pub env_id: String,
    pub short_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// RFC 3339 time of the push, as the pushing client wrote it.
    pub pushed_at: String,
}

/// Why a registry document or reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("invalid reference '{reference}': {reason}")]
    Reference { reference: String, reason: String },
    #[error("invalid registry entry '{reference}': {reason}")]
    Entry { reference: String, reason: String },
}

/// A parsed `<name>@<tag>` reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    name: String,
    tag: String,
}

impl Reference {
    /// Parses `<name>@<tag>`; both parts are required here (defaulting the tag to `latest` is
    /// the CLI's job). Names follow `[a-z0-9]+([._-][a-z0-9]+)*` (at most 255 characters), tags
    /// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`; anything else is refused.
    pub fn parse(s: &str) -> Result<Reference, RegistryError> {
        let bad = |reason: &str| RegistryError::Reference {
            reference: quote(s),
            reason: reason.to_string(),
        };
        let (name, tag) = s
            .split_once('@')
            .ok_or_else(|| bad("expected <name>@<tag>"))?;
        if !is_valid_name(name) {
            return Err(bad(
                "the name must match [a-z0-9]+([._-][a-z0-9]+)* (at most 255 characters)",
            ));
        }
        if !is_valid_tag(tag) {
            return Err(bad("the tag must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"));
        }
        Ok(Reference {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.tag)
    }
}

/// OCI repository name component grammar: `[a-z0-9]+([._-][a-z0-9]+)*`.
fn is_valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    // Separators never start or end a name and never follow each other.
    let mut prev_sep = true;
    for &b in bytes {
        if alnum(b) {
            prev_sep = false;
        } else if matches!(b, b'.' | b'_' | b'-') {
            if prev_sep {
                return false;
            }
            prev_sep = true;
        } else {
            return false;
        }
    }
    !prev_sep
}

/// OCI tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || first == b'_')
        && rest.len() <= 127
        && rest
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl RegistryEntry {
    /// Checks the entry's fields (see the module doc for what is refused).
    pub fn validate(&self) -> Result<(), String> {
        if !is_valid_key(&self.env_id) {
            return Err(format!(
                "env_id '{}' is not 64 lowercase hex characters",
                quote(&self.env_id)
            ));
        }
        if self.short_id.is_empty()
            || !self.env_id.starts_with(&self.short_id)
            || self.short_id.len() > self.env_id.len()
        {
            return Err(format!(
                "short_id '{}' is not a prefix of the env_id",
                quote(&self.short_id)
            ));
        }
        if let Some(name) = &self.name {
            karapace_store::validate_name(name).map_err(|e| e.to_string())?;
        }
        if !is_rfc3339_shaped(&self.pushed_at) {
            return Err(format!(
                "pushed_at '{}' is not an RFC 3339 time",
                quote(&self.pushed_at)
            ));
        }
        Ok(())
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` by shape; the value is informational only, so the
/// check is about keeping junk (and control characters) out, not about calendars.
fn is_rfc3339_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let head_ok = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !head_ok {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

impl Registry {
    /// Parses a registry document (shape only; see [`Registry::validate`]).
    pub fn from_json(bytes: &[u8]) -> Result<Registry, RegistryError> {
        serde_json::from_slice(bytes).map_err(|e| RegistryError::Json(e.to_string()))
    }

    /// The document as compact JSON (entries sorted by reference).
    pub fn to_json(&self) -> Vec<u8> {
        // A map of strings to plain structs cannot fail to serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks every reference and entry.
    pub fn validate(&self) -> Result<(), RegistryError> {
        for (reference, entry) in &self.entries {
            Reference::parse(reference)?;
            entry.validate().map_err(|reason| RegistryError::Entry {
                reference: quote(reference),
                reason,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> RegistryEntry {
        RegistryEntry {
            env_id: "ab".repeat(32),
            short_id: "ab".repeat(6),
            name: Some("dev".into()),
            pushed_at: "2026-01-02T03:04:05Z".into(),
        }
    }

    #[test]
    fn references_follow_the_oci_grammar() {
        for ok in [
            "dev@latest",
            "a.b-c_d@v1.2",
            "x9@_x",
            "a@A",
            &format!("a@{}", "t".repeat(128)),
        ] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "dev",
            "@latest",
            "dev@",
            "Dev@latest",
            "-dev@latest",
            "dev-@latest",
            "de..v@latest",
            "dev@-x",
            "dev@.x",
            "dev@a b",
            "dev@a@b",
            "../x@y",
            "dev@x\n",
            &format!("a@{}", "t".repeat(129)),
            &format!("{}@t", "a".repeat(256)),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
        let r = Reference::parse("dev@v1").unwrap();
        assert_eq!(
            (r.name(), r.tag(), r.to_string().as_str()),
            ("dev", "v1", "dev@v1")
        );
    }

    #[test]
    fn entries_are_checked_field_by_field() {
        assert!(entry().validate().is_ok());
        let mut e = entry();
        e.env_id = "AB".repeat(32);
        assert!(e.validate().is_err());
        let mut e = entry();
        e.short_id = "cd".into();
        assert!(e.validate().is_err());
        let mut e = entry();
        e.short_id = String::new();
        assert!(e.validate().is_err());
        let mut e = entry();
        e.name = Some("a/b".into());
        assert!(e.validate().is_err());
        for t in [
            "2026-01-02T03:04:05.123456789+00:00",
            "2026-01-02t03:04:05z",
            "2026-01-02T03:04:05-07:30",
        ] {
            let mut e = entry();
            e.pushed_at = t.into();
            assert!(e.validate().is_ok(), "{t}");
        }
        for t in [
            "",
            "yesterday",
            "2026-01-02T03:04:05",
            "2026-01-02T03:04:05.Z",
            "2026-01-02T03:04:05Z\n",
        ] {
            let mut e = entry();
            e.pushed_at = t.into();
            assert!(e.validate().is_err(), "{t:?}");
        }
    }

    #[test]
    fn documents_round_trip_and_the_standard_shape_parses() {
        let standard = format!(
            r#"{{"entries":{{"dev@latest":{{"env_id":"{}","short_id":"{}","pushed_at":"2025-01-01T00:00:00.5+00:00"}}}}}}"#,
            "ab".repeat(32),
            "ab".repeat(6)
        );
        let standard = standard.as_bytes();
        let reg = Registry::from_json(standard).unwrap();
        assert!(reg.validate().is_ok());
        assert_eq!(reg.entries["dev@latest"].name, None);
        assert_eq!(Registry::from_json(&reg.to_json()).unwrap(), reg);
        assert!(Registry::from_json(b"[]").is_err());
        assert!(Registry::from_json(br#"{"entries":{"a@b":{"env_id":1}}}"#).is_err());
        let mut bad = reg.clone();
        bad.entries.insert("not a ref".into(), entry());
        assert!(matches!(
            bad.validate(),
            Err(RegistryError::Reference { .. })
        ));
    }
}
