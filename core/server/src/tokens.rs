//! Bearer tokens and their scopes (`--token-file`).
//!
//! File syntax, one token per line: `read-only <token>` or `read-write <token>`; blank lines
//! and lines starting with `#` are ignored. A token is 16 to 512 characters of
//! `A-Z a-z 0-9 - . _ ~ + / =` (RFC 6750's token characters). The file is refused when group or
//! others may read it, when a line does not parse, when a token repeats or when it holds no
//! token at all — a typo must not silently open or close the server.
//!
//! Only blake3 digests of the tokens are kept; a presented token is hashed and compared with
//! every digest in constant time (`blake3::Hash` equality), so neither the token's length nor
//! where it differs shows in the response time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    ReadOnly,
    ReadWrite,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `/health`: no token.
    Public,
    /// GET and HEAD: any valid token.
    Read,
    /// PUT: a read-write token.
    Write,
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No token, or not a known one (401).
    Unauthenticated,
    /// A valid read-only token on a write (403).
    Forbidden,
}

const MIN_TOKEN_LEN: usize = 16;
const MAX_TOKEN_LEN: usize = 512;

/// The configured tokens, as digests.
#[derive(Debug, Default)]
pub struct Tokens {
    digests: Vec<(blake3::Hash, Scope)>,
}

impl Tokens {
    /// Reads and parses a token file (see the module doc for what is refused).
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{}: not a regular file", path.display()));
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{}: readable or writable by group or others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ));
        }
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses token file text.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut digests: Vec<(blake3::Hash, Scope)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let mut words = line.split_whitespace();
            let (Some(scope), Some(token), None) = (words.next(), words.next(), words.next())
            else {
                return Err(format!(
                    "line {n}: expected `read-only <token>` or `read-write <token>`"
                ));
            };
            let scope = match scope {
                "read-only" => Scope::ReadOnly,
                "read-write" => Scope::ReadWrite,
                _ => {
                    return Err(format!(
                        "line {n}: unknown scope (expected read-only or read-write)"
                    ));
                }
            };
            check_token(token).map_err(|e| format!("line {n}: {e}"))?;
            let digest = blake3::hash(token.as_bytes());
            if digests.iter().any(|(d, _)| *d == digest) {
                return Err(format!("line {n}: this token is already listed"));
            }
            digests.push((digest, scope));
        }
        if digests.is_empty() {
            return Err("no token in the file".to_string());
        }
        Ok(Tokens { digests })
    }

    /// The scope of `token`, if it is configured. Every digest is compared (no early exit).
    pub fn scope_of(&self, token: &str) -> Option<Scope> {
        let digest = blake3::hash(token.as_bytes());
        let mut found = None;
        for (d, scope) in &self.digests {
            if *d == digest {
                found = Some(*scope);
            }
        }
        found
    }

    /// Decides a request from its `Authorization` header values.
    pub fn decide(&self, authorization: &[&[u8]], access: Access) -> Decision {
        if access == Access::Public {
            return Decision::Allow;
        }
        // Two Authorization headers are ambiguous: refuse rather than pick one.
        let [value] = authorization else {
            return Decision::Unauthenticated;
        };
        let Some(token) = bearer_token(value) else {
            return Decision::Unauthenticated;
        };
        match (self.scope_of(token), access) {
            (None, _) => Decision::Unauthenticated,
            (Some(Scope::ReadOnly), Access::Write) => Decision::Forbidden,
            (Some(_), _) => Decision::Allow,
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start();
    check_token(token).ok().map(|()| token)
}

fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN || token.len() > MAX_TOKEN_LEN {
        return Err(format!(
            "a token is {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters long"
        ));
    }
    if !token.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
    }) {
        return Err("a token may hold only A-Z a-z 0-9 - . _ ~ + / =".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const RO: &str = "readonly-token-0123456789";
    const RW: &str = "readwrite-token-0123456789";

    fn tokens() -> Tokens {
        Tokens::parse(&format!(
            "# team tokens\n\nread-only {RO}\n  read-write   {RW}  \n"
        ))
        .unwrap()
    }

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    #[test]
    fn scopes_decide_reads_and_writes() {
        let t = tokens();
        let ro = bearer(RO);
        let rw = bearer(RW);
        assert_eq!(t.decide(&[&ro], Access::Read), Decision::Allow);
        assert_eq!(t.decide(&[&ro], Access::Write), Decision::Forbidden);
        assert_eq!(t.decide(&[&rw], Access::Write), Decision::Allow);
        assert_eq!(t.decide(&[], Access::Read), Decision::Unauthenticated);
        assert_eq!(t.decide(&[], Access::Public), Decision::Allow);
        assert_eq!(
            t.decide(&[b"bearer readwrite-token-0123456789"], Access::Write),
            Decision::Allow
        );
        for bad in [
            &b"Basic cmVhZHdyaXRlLXRva2VuLTAxMjM0NTY3ODk="[..],
            b"Bearer",
            b"Bearer readwrite-token-012345678",
            b"Bearer readwrite-token-01234567890",
            b"Bearer \xff\xfe",
            b"readwrite-token-0123456789",
        ] {
            assert_eq!(
                t.decide(&[bad], Access::Read),
                Decision::Unauthenticated,
                "{bad:?}"
            );
        }
        assert_eq!(
            t.decide(&[&rw, &ro], Access::Read),
            Decision::Unauthenticated
        );
    }

    #[test]
    fn bad_token_files_are_refused_with_the_line() {
        for (text, needle) in [
            ("", "no token"),
            ("# only a comment\n", "no token"),
            (
                "admin abcdefghijklmnopqrstuvwxyz\n",
                "line 1: unknown scope",
            ),
            ("read-only short\n", "line 1: a token is"),
            ("\nread-only abcdefghijklmnop qrs\n", "line 2: expected"),
            (
                "read-only abcdefghijklmnop\nread-write abcdefghijklmnop\n",
                "line 2: this token",
            ),
            (
                "read-only abcdefghijklmnop\"x\n",
                "line 1: a token may hold",
            ),
        ] {
            let err = Tokens::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_token_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let mut f = fs::File::create(&path).unwrap();
        writeln!(f, "read-write {RW}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = Tokens::load(&path).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Tokens::load(&path).unwrap().scope_of(RW),
            Some(Scope::ReadWrite)
        );
    }
}
