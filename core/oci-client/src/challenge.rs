//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1): which scheme a registry wants, and for
//! bearer tokens where to get one (`realm`), for which `service` and `scope`.
//!
//! The header comes from the registry, so the parser accepts anything without panicking and
//! keeps only what it can read; unreadable parts are skipped, never guessed.

/// Limits on what one header may make us hold.
const MAX_CHALLENGES: usize = 16;
const MAX_PARAMS: usize = 32;

/// One challenge: a scheme (lower-cased) and its parameters (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// All challenges of one header value, in order.
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut cursor = Cursor {
        rest: header.as_bytes(),
    };
    let mut challenges: Vec<Challenge> = Vec::new();
    loop {
        cursor.skip(|b| b == b' ' || b == b'\t' || b == b',');
        if cursor.rest.is_empty() || challenges.len() > MAX_CHALLENGES {
            break;
        }
        let name = cursor.token();
        if name.is_empty() {
            // Not a token: skip one byte and resynchronise on the next comma.
            cursor.rest = &cursor.rest[1..];
            cursor.skip(|b| b != b',');
            continue;
        }
        cursor.skip(|b| b == b' ' || b == b'\t');
        if cursor.peek() == Some(b'=') {
            cursor.skip(|b| b == b'=');
            cursor.skip(|b| b == b' ' || b == b'\t');
            let value = if cursor.peek() == Some(b'"') {
                cursor.quoted()
            } else {
                cursor.token()
            };
            // token68 padding ("Basic abc==") lands here as a value-less parameter; harmless.
            cursor.skip(|b| b == b'=');
            if let Some(current) = challenges.last_mut()
                && current.params.len() < MAX_PARAMS
            {
                current.params.push((name.to_ascii_lowercase(), value));
            }
        } else {
            challenges.push(Challenge {
                scheme: name.to_ascii_lowercase(),
                params: Vec::new(),
            });
        }
    }
    challenges.truncate(MAX_CHALLENGES);
    challenges
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn skip(&mut self, while_: impl Fn(u8) -> bool) {
        let n = self.rest.iter().take_while(|&&b| while_(b)).count();
        self.rest = &self.rest[n..];
    }

    /// An RFC 9110 token (`tchar`s); empty if the next byte is not one.
    fn token(&mut self) -> String {
        let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b);
        let n = self.rest.iter().take_while(|&&b| is_tchar(b)).count();
        let token = String::from_utf8_lossy(&self.rest[..n]).into_owned();
        self.rest = &self.rest[n..];
        token
    }

    /// A quoted string with backslash escapes, starting at `"`; an unterminated one runs to
    /// the end of the header.
    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        let mut i = 1;
        while i < self.rest.len() {
            match self.rest[i] {
                b'"' => {
                    i += 1;
                    break;
                }
                b'\\' if i + 1 < self.rest.len() => {
                    out.push(self.rest[i + 1]);
                    i += 2;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        self.rest = &self.rest[i.min(self.rest.len())..];
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_bearer_challenge_gives_realm_service_and_scope() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("service"), Some("registry.example"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
    }

    #[test]
    fn several_challenges_unquoted_values_and_escapes() {
        let c = parse_challenges(
            r#"Basic realm="a \"quoted\" realm", charset=UTF-8, Bearer realm=https://t.example/x ,error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"a "quoted" realm"#));
        assert_eq!(c[0].param("charset"), Some("UTF-8"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("https://t.example/x"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn garbage_never_panics_and_yields_only_what_is_readable() {
        for junk in [
            "",
            "\"",
            "=",
            "Bearer realm=\"unterminated",
            "Basic abc==",
            ",,,,",
            "Bearer realm=\"\\",
            "\u{1f600} Bearer realm=x",
            "Bearer =x=y=\"z",
        ] {
            let _ = parse_challenges(junk);
        }
        let c = parse_challenges("Bearer realm=\"unterminated");
        assert_eq!(c[0].param("realm"), Some("unterminated"));
        let many = "Basic, ".repeat(10_000);
        assert!(parse_challenges(&many).len() <= MAX_CHALLENGES);
    }
}
