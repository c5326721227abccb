//! Fallback when there is no simplestreams index: the `…/default/` directory listing (HTML
//! autoindex over HTTP, a plain directory over `file://`) and the build's `SHA256SUMS`.

use crate::url;

/// True for dated build directory names: `YYYYMMDD_HH:MM`.
pub fn is_build_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 14
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'_'
        && b[9..11].iter().all(u8::is_ascii_digit)
        && b[11] == b':'
        && b[12..].iter().all(u8::is_ascii_digit)
}

/// Every build directory linked from an HTML listing, decoded (`%3A` → `:`), sorted, deduplicated.
/// Links may be relative (`20260220_04%3A20/`, `./…`) or absolute paths ending in the build name.
pub fn builds_in_listing(html: &str) -> Vec<String> {
    let mut builds: Vec<String> = hrefs(html)
        .filter_map(|href| {
            let path = href.split(['?', '#']).next().unwrap_or(href);
            let last = path.trim_end_matches('/').rsplit('/').next()?;
            let decoded = url::decode(last)?;
            is_build_name(&decoded).then_some(decoded)
        })
        .collect();
    builds.sort_unstable();
    builds.dedup();
    builds
}

/// The newest build named in the listing.
pub fn newest_build(html: &str) -> Option<String> {
    builds_in_listing(html).pop()
}

/// The sha256 of `file_name` in a `SHA256SUMS` file (`<hex>  <name>` or `<hex> *<name>` lines).
pub fn sha256_from_sums(sums: &str, file_name: &str) -> Option<String> {
    sums.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let hash = parts.next()?.to_ascii_lowercase();
        let name = parts.next()?.trim_start_matches('*');
        (name == file_name && crate::simplestreams::is_sha256_hex(&hash)).then_some(hash)
    })
}

/// Values of `href="…"` / `href='…'` attributes, in document order.
fn hrefs(html: &str) -> impl Iterator<Item = &str> {
    let lower = html.to_ascii_lowercase();
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("href") {
        let mut i = from + pos + 4;
        from = i;
        let bytes = html.as_bytes();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let Some(&quote) = bytes.get(i) else { break };
        let (start, end) = if quote == b'"' || quote == b'\'' {
            let start = i + 1;
            match html[start..].find(char::from(quote)) {
                Some(len) => (start, start + len),
                None => break,
            }
        } else {
            let len = html[i..]
                .find(|c: char| c.is_whitespace() || c == '>')
                .unwrap_or(html.len() - i);
            (i, i + len)
        };
        starts.push((start, end));
        from = end;
    }
    starts.into_iter().map(move |(s, e)| &html[s..e])
}
