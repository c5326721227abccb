//! Request body framing: `Content-Length` or `Transfer-Encoding: chunked`, read with a limit.
//!
//! Refused (400): both framings at once, a transfer coding other than `chunked`, a
//! Content-Length that is not plain digits or is given twice with different values, malformed
//! chunk sizes or chunk terminators, chunk or trailer lines over 4 KiB. A body longer than the
//! limit fails with [`BodyError::TooLarge`] as soon as it is known (413), before it is read
//! when its length is declared.

use std::io::{self, BufRead, Read};

use super::request::Head;

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    Chunked,
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Invalid framing (400).
    Malformed(String),
    /// More than the limit (413).
    TooLarge { limit: u64 },
}

/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 4096;
/// Most trailer bytes after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

impl Framing {
    /// The framing a head declares.
    pub fn of(head: &Head) -> Result<Framing, BodyError> {
        let te = head.all("transfer-encoding");
        let cl = head.all("content-length");
        if !te.is_empty() {
            if !cl.is_empty() {
                return Err(BodyError::Malformed(
                    "both Transfer-Encoding and Content-Length".into(),
                ));
            }
            let [v] = te.as_slice() else {
                return Err(BodyError::Malformed("Transfer-Encoding given twice".into()));
            };
            if !v.eq_ignore_ascii_case(b"chunked") {
                return Err(BodyError::Malformed(
                    "only the chunked transfer coding is accepted".into(),
                ));
            }
            return Ok(Framing::Chunked);
        }
        let mut len: Option<u64> = None;
        for v in cl {
            let parsed = parse_decimal(v)
                .ok_or_else(|| BodyError::Malformed("invalid Content-Length".into()))?;
            if len.is_some_and(|l| l != parsed) {
                return Err(BodyError::Malformed(
                    "conflicting Content-Length values".into(),
                ));
            }
            len = Some(parsed);
        }
        Ok(Framing::Length(len.unwrap_or(0)))
    }

    /// Whether the request has a body at all.
    pub fn has_body(self) -> bool {
        self != Framing::Length(0)
    }
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

enum State {
    Length {
        remaining: u64,
    },
    /// Inside a chunk with this much left.
    Chunk {
        remaining: u64,
    },
    /// Expecting a chunk-size line.
    ChunkSize,
    Done,
}

/// Reads one body from the connection's buffered reader, never past its framing.
pub struct BodyReader<'a, R: BufRead> {
    r: &'a mut R,
    state: State,
    limit: u64,
    total: u64,
}

/// The error a [`BodyReader`] reports when the body exceeds its limit.
#[derive(Debug)]
pub struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body too large")
    }
}

impl std::error::Error for TooLarge {}

/// Whether an I/O error from a [`BodyReader`] means "over the limit".
pub fn is_too_large(e: &io::Error) -> bool {
    matches!(e.get_ref(), Some(inner) if inner.is::<TooLarge>())
}

/// Whether an I/O error from a [`BodyReader`] means "bad framing".
pub fn is_malformed(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData && !is_too_large(e)
}

impl<'a, R: BufRead> BodyReader<'a, R> {
    /// A reader for a body framed by `framing`, failing once more than `limit` bytes come.
    pub fn new(r: &'a mut R, framing: Framing, limit: u64) -> Result<Self, BodyError> {
        let state = match framing {
            Framing::Length(n) if n > limit => return Err(BodyError::TooLarge { limit }),
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length { remaining: n },
            Framing::Chunked => State::ChunkSize,
        };
        Ok(BodyReader {
            r,
            state,
            limit,
            total: 0,
        })
    }

    /// Whether the whole body (and its terminator) has been read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Bytes of body read so far.
    pub fn bytes_read(&self) -> u64 {
        self.total
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let avail = self.r.fill_buf()?;
            if avail.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(p) = avail.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&avail[..p]);
                self.r.consume(p + 1);
                break;
            }
            let n = avail.len();
            line.extend_from_slice(avail);
            self.r.consume(n);
            if line.len() > MAX_LINE {
                return Err(malformed("chunk line too long"));
            }
        }
        if line.len() > MAX_LINE || line.pop() != Some(b'\r') {
            return Err(malformed("chunk line not ended by CRLF"));
        }
        Ok(line)
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let line = self.read_line()?;
        // Chunk extensions (`;name=value`) carry nothing we use.
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size)
            .map_err(|_| malformed("bad chunk size"))?
            .trim_end();
        if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("bad chunk size"));
        }
        let n = u64::from_str_radix(size, 16).map_err(|_| malformed("bad chunk size"))?;
        if n == 0 {
            let mut trailers = 0usize;
            loop {
                let t = self.read_line()?;
                if t.is_empty() {
                    break;
                }
                trailers += t.len();
                if trailers > MAX_TRAILERS {
                    return Err(malformed("trailers too long"));
                }
            }
            self.state = State::Done;
        } else {
            if self.total.saturating_add(n) > self.limit {
                return Err(io::Error::new(io::ErrorKind::InvalidData, TooLarge));
            }
            self.state = State::Chunk { remaining: n };
        }
        Ok(())
    }
}

fn malformed(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl<R: BufRead> Read for BodyReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let remaining = match self.state {
                State::Done => return Ok(0),
                State::ChunkSize => {
                    self.next_chunk()?;
                    continue;
                }
                State::Length { remaining } | State::Chunk { remaining } => remaining,
            };
            if buf.is_empty() {
                return Ok(0);
            }
            let want = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = self.r.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection mid-body",
                ));
            }
            let left = remaining - n as u64;
            self.total += n as u64;
            self.state = match self.state {
                State::Length { .. } if left == 0 => State::Done,
                State::Length { .. } => State::Length { remaining: left },
                State::Chunk { .. } if left == 0 => {
                    let crlf = self.read_line()?;
                    if !crlf.is_empty() {
                        return Err(malformed("chunk data not followed by CRLF"));
                    }
                    State::ChunkSize
                }
                _ => State::Chunk { remaining: left },
            };
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::parse;
    use super::*;
    use std::io::BufReader;

    fn framing(headers: &str) -> Result<Framing, BodyError> {
        Framing::of(
            &parse(format!("PUT / HTTP/1.1\r\n{headers}\r\n").as_bytes())
                .ok()
                .unwrap(),
        )
    }

    fn read_all(raw: &[u8], framing: Framing, limit: u64) -> (io::Result<Vec<u8>>, Vec<u8>) {
        let mut r = BufReader::with_capacity(3, raw);
        let mut out = Vec::new();
        let res = match BodyReader::new(&mut r, framing, limit) {
            Ok(mut b) => b.read_to_end(&mut out).map(|_| out),
            Err(_) => Err(io::Error::other("refused before reading")),
        };
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        (res, rest)
    }

    #[test]
    fn framings_are_declared_unambiguously() {
        assert_eq!(framing("").unwrap(), Framing::Length(0));
        assert_eq!(
            framing("Content-Length: 5\r\n").unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            framing("Content-Length: 5\r\nContent-Length: 5\r\n").unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            framing("Transfer-Encoding: Chunked\r\n").unwrap(),
            Framing::Chunked
        );
        for bad in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: 5 5\r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert!(
                matches!(framing(bad), Err(BodyError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bodies_stop_at_their_framing() {
        let (b, rest) = read_all(b"helloNEXT", Framing::Length(5), 100);
        assert_eq!((b.unwrap(), rest), (b"hello".to_vec(), b"NEXT".to_vec()));
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let (b, rest) = read_all(raw, Framing::Chunked, 100);
        assert_eq!(
            (b.unwrap(), rest),
            (b"hello world".to_vec(), b"NEXT".to_vec())
        );
    }

    #[test]
    fn oversize_and_broken_bodies_fail() {
        assert!(matches!(
            BodyReader::new(&mut BufReader::new(&b""[..]), Framing::Length(11), 10),
            Err(BodyError::TooLarge { limit: 10 })
        ));
        let (b, _) = read_all(
            b"6\r\nhello!\r\n6\r\nhello!\r\n0\r\n\r\n",
            Framing::Chunked,
            10,
        );
        assert!(is_too_large(&b.unwrap_err()));
        let (b, _) = read_all(b"hel", Framing::Length(5), 10);
        assert_eq!(b.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        for raw in [
            &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
            b"zz\r\nhello\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"\r\nhello",
            b"fffffffffffffffff\r\n",
        ] {
            let (b, _) = read_all(raw, Framing::Chunked, 1 << 40);
            assert!(b.is_err(), "{raw:?}");
        }
        let (b, _) = read_all(b"5\r\nhel", Framing::Chunked, 100);
        assert_eq!(b.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
