//! Minimal URL handling: the crate only ever needs scheme detection, joining a server base with a
//! relative path, percent-encoding path segments and turning `file://` URLs into paths.

use std::path::PathBuf;

use crate::error::{ImageError, Result};

/// Lowercased scheme of `s` if it starts with `<scheme>://`.
pub(crate) fn scheme(s: &str) -> Option<String> {
    let (scheme, _) = s.split_once("://")?;
    let valid = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// Rejects URLs we would mishandle: no host for http(s), whitespace or control characters.
pub(crate) fn validate(url: &str) -> Result<()> {
    let bad = |reason: &str| ImageError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    let scheme = scheme(url).ok_or_else(|| bad("missing scheme"))?;
    let rest = &url[scheme.len() + 3..];
    match scheme.as_str() {
        "http" | "https" if rest.is_empty() || rest.starts_with('/') => Err(bad("missing host")),
        "file" if !rest.starts_with('/') => Err(bad("file URLs must be absolute (file:///path)")),
        _ => Ok(()),
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Percent-encodes one path segment: everything except RFC 3986 unreserved characters.
/// `20260220_04:20` becomes `20260220_04%3A20`, as the image servers spell it.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0xf)]));
        }
    }
    out
}

/// Encodes each `/`-separated segment of a relative path.
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// Decodes `%XX` escapes; invalid escapes are kept literally. Returns bytes as a lossless string
/// only when the result is UTF-8.
pub(crate) fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `base` (server URL, with or without trailing slash) + `/` + an already-encoded relative path.
pub(crate) fn join(base: &str, encoded_rel: &str) -> String {
    let rel = encoded_rel.trim_start_matches('/');
    let trimmed = base.trim_end_matches('/');
    if trimmed.ends_with(':') {
        // `file:///` is the filesystem root: keep its slashes.
        format!("{trimmed}///{rel}")
    } else {
        format!("{trimmed}/{rel}")
    }
}

/// The local path of a `file://` URL (percent-decoded), or `None` for other schemes.
pub(crate) fn file_path(url: &str) -> Option<PathBuf> {
    if scheme(url).as_deref() != Some("file") {
        return None;
    }
    let rest = &url["file://".len()..];
    // `file://localhost/x` is the same as `file:///x`.
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    decode(rest).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_and_joining() {
        assert_eq!(encode_segment("20260220_04:20"), "20260220_04%3A20");
        assert_eq!(
            encode_path("images/a b/20260220_04:20/rootfs.tar.xz"),
            "images/a%20b/20260220_04%3A20/rootfs.tar.xz"
        );
        assert_eq!(
            decode("20260220_04%3a20").as_deref(),
            Some("20260220_04:20")
        );
        assert_eq!(
            decode("100%").as_deref(),
            Some("100%"),
            "dangling escape kept"
        );
        assert_eq!(decode("%zz").as_deref(), Some("%zz"));
        assert_eq!(decode("%FF"), None, "not UTF-8");
        assert_eq!(join("http://h:1/", "/x/y"), "http://h:1/x/y");
        assert_eq!(join("file:///", "x"), "file:///x");
        assert_eq!(join("file:///srv/m", "x"), "file:///srv/m/x");
    }

    #[test]
    fn file_urls_become_paths() {
        assert_eq!(
            file_path("file:///srv/m/20260220_04%3A20/r.tar.xz"),
            Some(PathBuf::from("/srv/m/20260220_04:20/r.tar.xz"))
        );
        assert_eq!(file_path("FILE://localhost/x"), Some(PathBuf::from("/x")));
        assert_eq!(file_path("http://h/x"), None);
        assert_eq!(scheme("HTTPS://x").as_deref(), Some("https"));
        assert_eq!(scheme("debian/bookworm"), None);
        assert_eq!(scheme("1http://x"), None);
    }
}
