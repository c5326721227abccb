//! Repository names, tags and references, validated against the OCI distribution grammar before
//! they go anywhere near a URL.
//!
//! Every string that ends up in a request path passes through one of these types; their
//! constructors are the only place the grammar is written down.

use std::fmt;
use std::str::FromStr;

use crate::digest::Sha256Digest;

/// The OCI distribution spec's practical bound on `<host>/<repository>`; we apply it to the
/// repository alone so a valid name never produces an over-long path.
const MAX_REPOSITORY_LEN: usize = 255;
/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
const MAX_TAG_LEN: usize = 128;
/// Rejected values are quoted in errors up to this many characters (a hostile string must not
/// flood a terminal or a log).
const MAX_QUOTED_LEN: usize = 100;

/// What kind of string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Registry,
    Repository,
    Tag,
    Digest,
    Reference,
    MediaType,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Registry => "registry address",
            NameKind::Repository => "repository name",
            NameKind::Tag => "tag",
            NameKind::Digest => "digest",
            NameKind::Reference => "reference",
            NameKind::MediaType => "media type",
        })
    }
}

/// A string refused by the grammar; no request was made with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct NameError {
    pub kind: NameKind,
    /// The refused value, cut to a printable length (`{:?}` escapes control characters).
    pub value: String,
    pub reason: &'static str,
}

impl NameError {
    pub(crate) fn new(kind: NameKind, value: &str, reason: &'static str) -> Self {
        let value = match value.char_indices().nth(MAX_QUOTED_LEN) {
            Some((cut, _)) => format!("{}…", &value[..cut]),
            None => value.to_string(),
        };
        NameError {
            kind,
            value,
            reason,
        }
    }
}

/// A repository name: `/`-separated components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, at most
/// 255 bytes. Refuses empty components (`a//b`, leading or trailing `/`), upper case, `..`, and
/// anything outside that alphabet, so it can be pasted into a URL path as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    pub fn new(name: &str) -> Result<Self, NameError> {
        let refuse = |reason| NameError::new(NameKind::Repository, name, reason);
        if name.is_empty() {
            return Err(refuse("empty"));
        }
        if name.len() > MAX_REPOSITORY_LEN {
            return Err(refuse("longer than 255 bytes"));
        }
        for component in name.split('/') {
            check_path_component(component).map_err(refuse)?;
        }
        Ok(RepositoryName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/child`, validated as a whole (the result may exceed the length bound).
    pub fn join(&self, child: &str) -> Result<Self, NameError> {
        RepositoryName::new(&format!("{}/{child}", self.0))
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_path_component(component: &str) -> Result<(), &'static str> {
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return Err("empty path component");
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let run_start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == run_start {
            return Err(if i == 0 {
                "a path component must start with a lowercase letter or a digit"
            } else {
                "a separator must be followed by a lowercase letter or a digit"
            });
        }
        if i == bytes.len() {
            return Ok(());
        }
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => {
                return Err(
                    "only lowercase letters, digits, '.', '_', '__', '-' and '/' are allowed",
                );
            }
        }
        if i == bytes.len() {
            return Err("a path component must end with a lowercase letter or a digit");
        }
    }
}

impl FromStr for RepositoryName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        RepositoryName::new(s)
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. Refuses everything else (no `/`, `:`, `@`, spaces,
/// percent signs or non-ASCII), so it can be pasted into a URL path as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn new(tag: &str) -> Result<Self, NameError> {
        let refuse = |reason| NameError::new(NameKind::Tag, tag, reason);
        let mut bytes = tag.bytes();
        match bytes.next() {
            None => return Err(refuse("empty")),
            Some(b) if b.is_ascii_alphanumeric() || b == b'_' => {}
            Some(_) => return Err(refuse("must start with a letter, a digit or '_'")),
        }
        if tag.len() > MAX_TAG_LEN {
            return Err(refuse("longer than 128 characters"));
        }
        if !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err(refuse("only letters, digits, '.', '_' and '-' are allowed"));
        }
        Ok(Tag(tag.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Tag::new(s)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest is addressed by: a tag, or the digest of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Sha256Digest),
}

impl Reference {
    /// A string containing `:` is read as a digest (tags cannot contain one), anything else as a
    /// tag; both are validated.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            Sha256Digest::parse(s).map(Reference::Digest)
        } else {
            Tag::new(s).map(Reference::Tag)
        }
    }

    pub fn digest(&self) -> Option<&Sha256Digest> {
        match self {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => None,
        }
    }
}

impl FromStr for Reference {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Reference::parse(s)
    }
}

impl From<Tag> for Reference {
    fn from(tag: Tag) -> Self {
        Reference::Tag(tag)
    }
}

impl From<Sha256Digest> for Reference {
    fn from(digest: Sha256Digest) -> Self {
        Reference::Digest(digest)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_oci_grammar() {
        for ok in [
            "a",
            "library/debian",
            "karapace/envs/dev-env",
            "a.b_c__d---e/0",
            "x9/y8/z7",
        ] {
            assert!(RepositoryName::new(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "", "/a", "a/", "a//b", "A", "a/../b", "..", ".a", "a.", "a_", "a___b", "a._b", "a_-b",
            "-a", "a b", "a%2fb", "a?b", "a#b", "a:b", "a@b", "é", "a\nb",
        ] {
            assert!(
                RepositoryName::new(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(RepositoryName::new(&"a".repeat(255)).is_ok());
        assert!(RepositoryName::new(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags_follow_the_oci_grammar() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::new(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "",
            ".x",
            "-x",
            "a/b",
            "a:b",
            "a b",
            "a%20",
            "a?x",
            "ü",
            &"t".repeat(129),
        ] {
            assert!(Tag::new(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn references_are_tags_or_sha256_digests() {
        let hex = "a".repeat(64);
        assert!(matches!(
            Reference::parse(&format!("sha256:{hex}")),
            Ok(Reference::Digest(_))
        ));
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        assert!(Reference::parse(&format!("sha512:{hex}")).is_err());
        assert!(Reference::parse("sha256:../../x").is_err());
    }

    #[test]
    fn a_refused_value_is_quoted_short_and_escaped() {
        let err = Tag::new(&format!("\u{1b}[31m{}", "x".repeat(500))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\\u{1b}"), "{text}");
        assert!(text.len() < 250, "{text}");
    }
}
