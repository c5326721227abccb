//! What `push --tag` and `pull` name: `<name>@<tag>` (the OCI grammar of
//! [`karapace_remote::Reference`]; `pull <name>` means `<name>@latest`) or, for pull, a full
//! `env_id`.

use std::fmt;

pub use karapace_remote::Reference as Tagged;

use crate::error::{CoreError, Result};

/// What `pull` fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tagged(Tagged),
    EnvId(String),
}

/// Default tag of `pull <name>`.
pub const DEFAULT_TAG: &str = "latest";

/// `push --tag`: both parts required; anything else is a usage error (exit 2).
pub fn parse_tag(s: &str) -> Result<Tagged> {
    Tagged::parse(s).map_err(|e| CoreError::Usage(e.to_string()))
}

impl Reference {
    /// `pull <REFERENCE>`: a full `env_id`, `<name>@<tag>` or `<name>` (tag `latest`).
    pub fn parse(s: &str) -> Result<Reference> {
        if karapace_store::is_valid_key(s) {
            return Ok(Reference::EnvId(s.to_string()));
        }
        let full = if s.contains('@') {
            s.to_string()
        } else {
            format!("{s}@{DEFAULT_TAG}")
        };
        parse_tag(&full).map(Reference::Tagged)
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
        assert_eq!(Reference::parse("web").unwrap().to_string(), "web@latest");
        assert_eq!(
            Reference::parse("my.app-2@v1.0_rc").unwrap().to_string(),
            "my.app-2@v1.0_rc"
        );
        let id = "a".repeat(64);
        assert_eq!(Reference::parse(&id).unwrap(), Reference::EnvId(id));
        for bad in [
            "",
            "Web",
            "web@",
            "@v1",
            "a..b",
            "-a",
            "a-",
            "web@-x",
            "web@v 1",
            "../x@y",
            "a/b@c",
            "web@v1@v2",
            &format!("w@{}", "t".repeat(129)),
        ] {
            let err = Reference::parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}: {err}");
        }
        assert!(parse_tag("web").is_err(), "push needs the tag");
        assert!(parse_tag("web@v1").is_ok());
    }
}
