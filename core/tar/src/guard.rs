//! The archive guard: the tar's block structure and size limits, checked before the `tar`
//! crate reads a byte.

use std::io::{self, Read};

/// Largest GNU long-name (`L`), long-link (`K`) or pax (`x`, `g`) entry accepted. The `tar`
/// crate reads these whole into memory, so their size field alone must never decide how much
/// memory an archive gets: real ones are a path or a few records.
pub const MAX_META_ENTRY: u64 = 1 << 20;

/// Caps on one archive (an image or a layer). The defaults are far above any real root
/// filesystem and still keep a hostile archive from filling the disk or the inode table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Entries (files, directories, links…; not counting long-name and pax headers).
    pub max_entries: u64,
    /// Sum of the entries' content sizes, in bytes.
    pub max_bytes: u64,
}

impl ArchiveLimits {
    pub const DEFAULT_MAX_ENTRIES: u64 = 10_000_000;
    pub const DEFAULT_MAX_BYTES: u64 = 256 << 30;
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

const BLOCK: usize = 512;

enum GuardState {
    /// At a header boundary.
    Header,
    /// Handing out the checked header block from `pos`.
    Serve { pos: usize, len: usize },
    /// Passing through an entry's content (`data`) and its padding (`pad`); a pax header's
    /// content is also kept, to learn the size it gives the next entry.
    Data { data: u64, pad: u64, pax: bool },
    /// After the end-of-archive block (or a short read): nothing more to check.
    Done,
}

/// A `Read` adapter in front of the `tar` crate that follows the archive's 512-byte
/// header/content block structure and refuses, before the crate reads them, long-name,
/// long-link and pax entries over [`MAX_META_ENTRY`], GNU sparse entries (its extra header
/// blocks would hide the structure; the unpacker refuses them anyway), and archives beyond
/// the [`ArchiveLimits`]. It mirrors how the crate finds entry boundaries (a pax `size`
/// record overrides the next entry's header size); a pax header it cannot parse exactly is
/// refused rather than guessed at.
pub struct ArchiveGuard<R> {
    inner: R,
    limits: ArchiveLimits,
    state: GuardState,
    block: [u8; BLOCK],
    pax: Vec<u8>,
    pax_size: Option<u64>,
    /// A pax (`x`) header was read and no entry has consumed it yet.
    pax_pending: bool,
    entries: u64,
    bytes: u64,
    /// What follows the header being served.
    after_header: Option<GuardState>,
    /// Why the archive was refused (set once; every later read fails too).
    pub(crate) violation: Option<String>,
}

/// The size field of a header: octal text, or GNU base-256 when the top bit is set (as the
/// `tar` crate reads it).
fn header_size(h: &[u8; BLOCK]) -> Option<u64> {
    let field = &h[124..136];
    if field[0] & 0x80 != 0 {
        return Some(
            field[4..]
                .iter()
                .fold(0u64, |n, b| (n << 8) | u64::from(*b)),
        );
    }
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end]).ok()?;
    u64::from_str_radix(text.trim(), 8).ok()
}

/// `ustar\0` + `00` (POSIX) or `ustar ` + ` \0` (GNU): headers the `tar` crate interprets
/// long-name and pax entries of.
fn recognized_magic(h: &[u8; BLOCK]) -> bool {
    let (magic, version) = (&h[257..263], &h[263..265]);
    (magic == b"ustar\0" && version == b"00") || (magic == b"ustar " && version == b" \0")
}

/// The `size` record of pax header content, parsed exactly as the `tar` crate does; an error
/// where the crate would silently ignore the records (so the two could disagree).
fn pax_size(data: &[u8]) -> std::result::Result<Option<u64>, String> {
    for line in data.split(|b| *b == b'\n') {
        if line.is_empty() {
            return Ok(None);
        }
        let bad = || "malformed pax header record".to_string();
        let sp = line.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&line[..sp])
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or_else(bad)?;
        if line.len() + 1 != len {
            return Err(bad());
        }
        let kv = &line[sp + 1..];
        let eq = kv.iter().position(|b| *b == b'=').ok_or_else(bad)?;
        if &kv[..eq] == b"size" {
            return std::str::from_utf8(&kv[eq + 1..])
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Some)
                .ok_or_else(|| "pax header with an invalid size record".to_string());
        }
    }
    Ok(None)
}

impl<R: Read> ArchiveGuard<R> {
    pub fn new(inner: R, limits: ArchiveLimits) -> Self {
        ArchiveGuard {
            inner,
            limits,
            state: GuardState::Header,
            block: [0; BLOCK],
            pax: Vec::new(),
            pax_size: None,
            pax_pending: false,
            entries: 0,
            bytes: 0,
            after_header: None,
            violation: None,
        }
    }

    /// Why the archive was refused, if it was.
    pub fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }

    /// The name field of the last header read (for error messages).
    pub(crate) fn entry_name(&self) -> String {
        let name = &self.block[..100];
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        String::from_utf8_lossy(&name[..end]).into_owned()
    }

    fn refuse(&mut self, reason: String) -> io::Error {
        let err = io::Error::new(io::ErrorKind::InvalidData, reason.clone());
        self.violation.get_or_insert(reason);
        err
    }

    /// Check the header in `self.block` and decide what follows it.
    fn check_header(&mut self) -> std::result::Result<GuardState, String> {
        let h = &self.block;
        if h.iter().all(|b| *b == 0) {
            return Ok(GuardState::Done);
        }
        let kind = h[156];
        let size = header_size(h).ok_or("unreadable size field in a tar header")?;
        let meta_name = match kind {
            b'L' => Some("GNU long-name"),
            b'K' => Some("GNU long-link"),
            b'x' => Some("pax"),
            b'g' => Some("pax global"),
            _ => None,
        };
        if let Some(what) = meta_name {
            if size > MAX_META_ENTRY {
                return Err(format!(
                    "{what} header claims {size} bytes (limit {MAX_META_ENTRY})"
                ));
            }
            if kind != b'g' && !recognized_magic(h) {
                return Err(format!("{what} header in a pre-POSIX tar header"));
            }
            // The tar crate hands a `g` entry back as an ordinary entry that consumes a pending
            // `x` (and its size), and errors on two `x` in a row; rather than follow it through
            // those corners (where the two could disagree on where entries start), refuse them.
            if self.pax_pending && matches!(kind, b'g' | b'x') {
                return Err(format!("{what} header right after a pax header"));
            }
            if kind == b'x' {
                self.pax.clear();
                self.pax_pending = true;
            }
            return Ok(GuardState::Data {
                data: size,
                pad: size.next_multiple_of(BLOCK as u64) - size,
                pax: kind == b'x',
            });
        }
        if kind == b'S' {
            return Err("GNU sparse entries are not supported".into());
        }
        let size = self.pax_size.take().unwrap_or(size);
        self.pax_pending = false;
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(size);
        if self.entries > self.limits.max_entries {
            return Err(format!(
                "more than {} entries (the configured limit)",
                self.limits.max_entries
            ));
        }
        if self.bytes > self.limits.max_bytes {
            return Err(format!(
                "more than {} bytes of content (the configured limit)",
                self.limits.max_bytes
            ));
        }
        let pad = size
            .checked_next_multiple_of(BLOCK as u64)
            .ok_or("entry size overflows")?
            - size;
        Ok(GuardState::Data {
            data: size,
            pad,
            pax: false,
        })
    }

    /// Read a whole header block (or what is left of a truncated archive).
    fn fill_block(&mut self) -> io::Result<usize> {
        let mut n = 0;
        while n < BLOCK {
            match self.inner.read(&mut self.block[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

impl<R: Read> Read for ArchiveGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(v) = &self.violation {
            return Err(io::Error::new(io::ErrorKind::InvalidData, v.clone()));
        }
        loop {
            match self.state {
                GuardState::Done => return self.inner.read(buf),
                GuardState::Header => {
                    let len = self.fill_block()?;
                    if len < BLOCK {
                        // Truncated: let the tar crate see (and report) what there is.
                        self.state = GuardState::Serve { pos: 0, len };
                        continue;
                    }
                    let next = match self.check_header() {
                        Ok(next) => next,
                        Err(reason) => return Err(self.refuse(reason)),
                    };
                    self.state = GuardState::Serve { pos: 0, len };
                    self.after_header = Some(next);
                }
                GuardState::Serve { pos, len } => {
                    if pos == len {
                        self.state = if len < BLOCK {
                            GuardState::Done
                        } else {
                            self.after_header.take().unwrap_or(GuardState::Done)
                        };
                        continue;
                    }
                    let n = buf.len().min(len - pos);
                    buf[..n].copy_from_slice(&self.block[pos..pos + n]);
                    self.state = GuardState::Serve { pos: pos + n, len };
                    return Ok(n);
                }
                GuardState::Data { data, pad, pax } => {
                    if data == 0 && pad == 0 {
                        if pax {
                            match pax_size(&self.pax) {
                                Ok(size) => self.pax_size = size,
                                Err(reason) => return Err(self.refuse(reason)),
                            }
                        }
                        self.state = GuardState::Header;
                        continue;
                    }
                    let left = if data > 0 { data } else { pad };
                    let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        self.state = GuardState::Done;
                        return Ok(0);
                    }
                    if data > 0 {
                        if pax {
                            self.pax.extend_from_slice(&buf[..n]);
                        }
                        self.state = GuardState::Data {
                            data: data - n as u64,
                            pad,
                            pax,
                        };
                    } else {
                        self.state = GuardState::Data {
                            data,
                            pad: pad - n as u64,
                            pax,
                        };
                    }
                    return Ok(n);
                }
            }
        }
    }
}
