//! Reading and parsing a request head.

use std::io::{self, BufRead};
use std::time::{Duration, Instant};

/// Largest request head (request line + headers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// HTTP/1.1 (true) or HTTP/1.0.
    pub http11: bool,
    /// Header names lowercased, values raw.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Why no head was read.
#[derive(Debug)]
pub enum HeadError {
    /// The peer closed (or stayed idle) before sending anything: not an error.
    Closed,
    /// Head larger than [`MAX_HEAD_BYTES`] (431).
    TooLarge,
    /// Malformed (400), or not HTTP/1.x (505).
    Malformed(u16, String),
    /// The peer stalled or the connection broke mid-head.
    Io(io::Error),
}

impl Head {
    /// All values of header `name` (lowercase).
    pub fn all(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The value of a header that may appear once; `Err` when it appears twice.
    pub fn single(&self, name: &str) -> Result<Option<&[u8]>, String> {
        match self.all(name).as_slice() {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(format!("the {name} header appears more than once")),
        }
    }

    /// Whether the client asked to close after this request.
    pub fn wants_close(&self) -> bool {
        let conn = self.all("connection");
        let has = |tok: &str| {
            conn.iter().any(|v| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case(tok))
            })
        };
        if self.http11 {
            has("close")
        } else {
            !has("keep-alive")
        }
    }
}

/// Reads one head from `r`. Waiting for its first byte is the caller's business (the read
/// timeout set on the stream bounds each read); once it started, the whole head must arrive
/// before `deadline`.
pub fn read_head<R: BufRead>(
    r: &mut R,
    deadline: Instant,
    set_timeout: &dyn Fn(Duration) -> io::Result<()>,
) -> Result<Head, HeadError> {
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let now = Instant::now();
        if !head.is_empty() {
            if now >= deadline {
                return Err(HeadError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not complete in time",
                )));
            }
            set_timeout(deadline - now).map_err(HeadError::Io)?;
        }
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HeadError::Io(e)),
        };
        if avail.is_empty() {
            return Err(if head.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Io(io::ErrorKind::UnexpectedEof.into())
            });
        }
        let old = head.len();
        let take = avail.len().min(MAX_HEAD_BYTES + 4 - old);
        head.extend_from_slice(&avail[..take]);
        // Search only where the terminator can newly appear.
        let from = old.saturating_sub(3);
        if let Some(p) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + p + 4;
            r.consume(end - old);
            head.truncate(end);
            return parse(&head);
        }
        r.consume(take);
        if head.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Parses a complete head (ending in CRLF CRLF).
pub fn parse(bytes: &[u8]) -> Result<Head, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Malformed(400, "incomplete request head".into()));
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => {
            return Err(HeadError::Malformed(505, "only HTTP/1.x is served".into()));
        }
        Err(e) => return Err(HeadError::Malformed(400, format!("malformed request: {e}"))),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed(400, "incomplete request line".into()));
    };
    if version > 1 {
        return Err(HeadError::Malformed(505, "only HTTP/1.x is served".into()));
    }
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        http11: version == 1,
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn read(bytes: &[u8]) -> Result<Head, HeadError> {
        let mut r = BufReader::with_capacity(7, bytes);
        read_head(&mut r, Instant::now() + Duration::from_secs(5), &|_| Ok(()))
    }

    #[test]
    fn heads_split_across_reads_parse_and_leave_the_body() {
        let raw =
            b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2\r\n\r\nabcNEXT";
        let mut r = BufReader::with_capacity(5, &raw[..]);
        let h = read_head(&mut r, Instant::now() + Duration::from_secs(5), &|_| Ok(())).unwrap();
        assert_eq!(
            (h.method.as_str(), h.target.as_str(), h.http11),
            ("PUT", "/x", true)
        );
        assert_eq!(h.all("x-a"), vec![&b"1"[..], b"2"]);
        assert!(h.single("x-a").is_err());
        assert_eq!(h.single("content-length").unwrap(), Some(&b"3"[..]));
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut r, &mut rest).unwrap();
        assert_eq!(rest, "abcNEXT");
    }

    #[test]
    fn hostile_heads_are_refused() {
        assert!(matches!(read(b""), Err(HeadError::Closed)));
        assert!(matches!(read(b"GET / HTTP/1.1\r\n"), Err(HeadError::Io(_))));
        let huge = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert!(matches!(read(huge.as_bytes()), Err(HeadError::TooLarge)));
        let many = "X: 1\r\n".repeat(100);
        assert!(matches!(
            read(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Err(HeadError::TooLarge)
        ));
        assert!(matches!(
            read(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HeadError::Malformed(505, _))
        ));
        assert!(matches!(
            read(b"GET /\0 HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(400, _))
        ));
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"),
            Err(HeadError::Malformed(400, _))
        ));
    }

    #[test]
    fn connection_persistence_follows_the_version() {
        let h = |s: &str| read(s.as_bytes()).unwrap().wants_close();
        assert!(!h("GET / HTTP/1.1\r\n\r\n"));
        assert!(h("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(h("GET / HTTP/1.0\r\n\r\n"));
        assert!(!h("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn a_stalled_head_times_out_at_the_deadline() {
        let mut r = BufReader::new(&b"GET / HTTP/1.1\r\n"[..]);
        let past = Instant::now();
        // The first chunk arrives; the deadline has passed before the second.
        let res = read_head(&mut r, past, &|_| Ok(()));
        assert!(matches!(res, Err(HeadError::Io(e)) if e.kind() == io::ErrorKind::TimedOut));
    }
}
