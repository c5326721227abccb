//! Responses: a status, a few headers and a body (bytes or a file streamed from disk).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};

use karapace_remote::{PROTOCOL_HEADER, PROTOCOL_VERSION};

/// What follows the head.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// A file of this length, streamed.
    File(File, u64),
}

/// A response to one request.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
    /// Content-Type of a non-empty body.
    pub content_type: &'static str,
}

/// Chunk size when streaming a file.
const COPY_BUF: usize = 256 * 1024;

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Empty,
            content_type: "application/octet-stream",
        }
    }

    /// A JSON body.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes(body),
            content_type: "application/json",
        }
    }

    /// An error with `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        let body = serde_json::json!({ "error": message })
            .to_string()
            .into_bytes();
        Response::json(status, body)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body_len(&self) -> u64 {
        match &self.body {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File(_, n) => *n,
        }
    }

    /// Writes the response; for HEAD only the head (with the length the body would have).
    /// Returns the body bytes sent.
    pub fn write_to(self, w: &mut impl Write, head_only: bool, close: bool) -> io::Result<u64> {
        let len = self.body_len();
        // Writing into a String cannot fail.
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        let _ = write!(head, "{PROTOCOL_HEADER}: {PROTOCOL_VERSION}\r\n");
        head.push_str("Server: karapace-server\r\n");
        let _ = write!(head, "Content-Length: {len}\r\n");
        if len > 0 {
            let _ = write!(head, "Content-Type: {}\r\n", self.content_type);
        }
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        let mut sent = 0;
        if !head_only {
            match self.body {
                Body::Empty => {}
                Body::Bytes(b) => {
                    w.write_all(&b)?;
                    sent = b.len() as u64;
                }
                Body::File(f, n) => sent = copy_exact(f, w, n)?,
            }
        }
        w.flush()?;
        Ok(sent)
    }
}

/// Streams exactly `n` bytes of `f` (a file that shrank meanwhile is an error, so the client
/// sees a broken transfer, never a short blob under a complete length).
fn copy_exact(mut f: File, w: &mut impl Write, n: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut left = n;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let got = f.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob shrank while sent",
            ));
        }
        w.write_all(&buf[..got])?;
        left -= got as u64;
    }
    Ok(n)
}

/// The reason phrase of the statuses this server uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_carry_the_protocol_and_length_and_head_requests_no_body() {
        let mut out = Vec::new();
        let n = Response::error(404, "nope")
            .header("X-Extra", "1")
            .write_to(&mut out, false, true)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("X-Karapace-Protocol: 1\r\n"));
        assert!(text.contains("Content-Length: 16\r\nContent-Type: application/json\r\n"));
        assert!(text.contains("X-Extra: 1\r\nConnection: close\r\n\r\n"));
        assert!(text.ends_with(r#"{"error":"nope"}"#));
        assert_eq!(n, 16);
        let mut out = Vec::new();
        Response::json(200, b"[1]".to_vec())
            .write_to(&mut out, true, false)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 3\r\n") && text.ends_with("\r\n\r\n"));
    }
}
