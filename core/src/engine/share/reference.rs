//! What `push --tag` and `pull` name: `<name>@<tag>` (OCI grammar; the tag defaults to
//! `latest` for pull) or, for pull, a full env_id.

use std::fmt;

use crate::error::{CoreError, Result};

/// `<name>@<tag>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub name: String,
    pub tag: String,
}

impl fmt::Display for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.tag)
    }
}

/// What `pull` fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tagged(Tagged),
    EnvId(String),
}

/// Default tag of `pull <name>`.
pub const DEFAULT_TAG: &str = "latest";

/// Longest name accepted (OCI registries limit a repository path to 255 bytes).
const MAX_NAME: usize = 128;

/// `[a-z0-9]+([._-][a-z0-9]+)*`
fn is_name(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_NAME {
        return false;
    }
    s.split(['.', '_', '-']).all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`
fn is_tag(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn usage(what: &str, s: &str) -> CoreError {
    CoreError::Usage(format!(
        "invalid {what} '{s}': expected <name>@<tag> with a name of lowercase letters and digits \
         separated by '.', '_' or '-', and a tag of letters, digits, '.', '_' or '-' (at most 128)"
    ))
}

impl Tagged {
    /// `push --tag`: both parts required.
    pub fn parse(s: &str) -> Result<Tagged> {
        let (name, tag) = s.split_once('@').ok_or_else(|| usage("tag", s))?;
        if !is_name(name) || !is_tag(tag) {
            return Err(usage("tag", s));
        }
        Ok(Tagged {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl Reference {
    /// `pull <REFERENCE>`: a full env_id, `<name>@<tag>` or `<name>` (tag `latest`).
    pub fn parse(s: &str) -> Result<Reference> {
        if karapace_store::is_valid_key(s) {
            return Ok(Reference::EnvId(s.to_string()));
        }
        let (name, tag) = s.split_once('@').unwrap_or((s, DEFAULT_TAG));
        if !is_name(name) || !is_tag(tag) {
            return Err(usage("reference", s));
        }
        Ok(Reference::Tagged(Tagged {
            name: name.to_string(),
            tag: tag.to_string(),
        }))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tagged(t) => t.fmt(f),
            Reference::EnvId(id) => f.write_str(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_the_oci_grammar() {
        assert_eq!(
            Reference::parse("web").unwrap(),
            Reference::Tagged(Tagged {
                name: "web".into(),
                tag: "latest".into()
            })
        );
        assert_eq!(Reference::parse("my.app-2@v1.0_rc").unwrap().to_string(), "my.app-2@v1.0_rc");
        let id = "a".repeat(64);
        assert_eq!(Reference::parse(&id).unwrap(), Reference::EnvId(id));
        for bad in [
            "", "Web", "web@", "@v1", "a..b", "-a", "a-", "web@-x", "web@v 1", "../x@y", "a/b@c",
            "web@v1@v2", "web@", &format!("w@{}", "t".repeat(129)),
        ] {
            let err = Reference::parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}: {err}");
        }
        assert!(Tagged::parse("web").is_err(), "push needs the tag");
        assert!(Tagged::parse("web@v1").is_ok());
    }
}
