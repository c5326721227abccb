//! The protocol v1 client transport: blocking HTTP(S) over ureq, streaming both ways.
//!
//! Every request carries `X-Karapace-Protocol: 1` and, when configured, `Authorization: Bearer
//! <token>`. Idempotent requests (GET, HEAD, and PUT of content-addressed blobs, whose body the
//! caller's opener can produce again) are retried with exponential backoff on connection
//! errors, timeouts, 5xx and 429 (honouring `Retry-After`). Keys are checked before any
//! request is made. Downloads are handed to the caller unverified: the caller checks the bytes
//! against the key before storing them.

mod error;
mod retry;

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ureq::http::Response;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Body, SendBody};

use crate::key::{check_key, quote};
use crate::registry::{MAX_REGISTRY_BYTES, Reference, Registry, RegistryEntry};
use crate::{BlobKind, PROTOCOL_HEADER, PROTOCOL_VERSION};
pub use error::V1Error;

/// Largest key list accepted from a server (bytes of JSON; ~1.5 million keys).
const MAX_LIST_BYTES: u64 = 100 * 1024 * 1024;
/// How much of an error response is read for its message.
const MAX_ERROR_BYTES: u64 = 4096;
/// Attempts of a registry compare-and-swap before giving up.
const PUBLISH_ATTEMPTS: u32 = 8;

/// Which certificates a TLS server must chain to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TlsRoots {
    /// The Mozilla root set built into the client (`webpki-roots`), as for image downloads.
    #[default]
    BuiltIn,
    /// Only the certificates in this PEM file (a private CA or a self-signed server).
    CaFile(PathBuf),
}

/// Connection behaviour of a [`V1Client`].
#[derive(Debug, Clone)]
pub struct V1Options {
    pub tls: TlsRoots,
    /// Limit for resolving and connecting.
    pub connect_timeout: Duration,
    /// Longest silence while sending or receiving (restarts with every read or write, so a slow
    /// but moving transfer never trips it).
    pub stall_timeout: Duration,
    /// Extra attempts of an idempotent request after the first.
    pub retries: u32,
    /// First backoff delay; doubled per attempt up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for V1Options {
    fn default() -> Self {
        V1Options {
            tls: TlsRoots::BuiltIn,
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_mins(1),
            retries: 4,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(8),
        }
    }
}

/// A blocking protocol v1 client for one server.
pub struct V1Client {
    /// Base URL without a trailing slash (`http://host:port[/prefix]`).
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    opts: V1Options,
}

/// What a successful upload did on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The blob was stored (201).
    Stored,
    /// The server already had it (200).
    AlreadyPresent,
}

/// A streaming download: read it to the end, then verify it against its key before use.
/// A body that ends before its announced length is an error, not a short file.
pub struct BlobDownload {
    len: Option<u64>,
    read: u64,
    reader: Box<dyn Read + Send>,
    what: String,
    server: String,
}

impl BlobDownload {
    /// The length the server announced, if it did.
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Whether the server announced an empty body.
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }
}

impl Read for BlobDownload {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf).map_err(|e| {
            io::Error::new(e.kind(), format!("{} on {}: {e}", self.what, self.server))
        })?;
        self.read += n as u64;
        if let Some(len) = self.len {
            if n == 0 && !buf.is_empty() && self.read < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} on {}: connection closed after {} of {len} bytes",
                        self.what, self.server, self.read
                    ),
                ));
            }
            if self.read > len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} on {}: more bytes than announced",
                        self.what, self.server
                    ),
                ));
            }
        }
        Ok(n)
    }
}

/// Whether one attempt failed locally (never retried) or on the wire.
enum AttemptError {
    Local(V1Error),
    Http(ureq::Error),
}

impl From<ureq::Error> for AttemptError {
    fn from(e: ureq::Error) -> Self {
        AttemptError::Http(e)
    }
}

impl V1Client {
    /// A client for the server at `base_url` (`http://host[:port][/prefix]` or `https://…`).
    /// Refuses other schemes, URLs with credentials, queries or fragments, tokens with
    /// characters outside visible ASCII (they would break or inject headers), and an unreadable
    /// or certificate-less CA file.
    pub fn new(
        base_url: &str,
        token: Option<String>,
        opts: V1Options,
    ) -> Result<V1Client, V1Error> {
        let base = check_base_url(base_url)?;
        if let Some(t) = &token
            && (t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(V1Error::InvalidToken(
                "a token is one or more visible ASCII characters (no spaces or line breaks)",
            ));
        }
        let tls = match &opts.tls {
            TlsRoots::BuiltIn => TlsConfig::builder().build(),
            TlsRoots::CaFile(path) => TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(load_ca(path)?)))
                .build(),
        };
        let agent = ureq::Agent::config_builder()
            .timeout_resolve(Some(opts.connect_timeout))
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_send_request(Some(opts.stall_timeout))
            .timeout_await_100(Some(Duration::from_secs(2)))
            .timeout_send_body(None)
            .timeout_recv_response(Some(opts.stall_timeout))
            .timeout_per_read(Some(opts.stall_timeout))
            .timeout_per_write(Some(opts.stall_timeout))
            .http_status_as_error(false)
            // Protocol v1 has no redirects; following one could carry the token elsewhere.
            .max_redirects(0)
            .tls_config(tls)
            .user_agent(format!("karapace/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(V1Client {
            base,
            token,
            agent,
            opts,
        })
    }

    /// The server's base URL, as errors name it.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// `GET /health`: the server answers and speaks protocol v1.
    pub fn health(&self) -> Result<(), V1Error> {
        let what = "health check".to_string();
        let url = format!("{}/health", self.base);
        let mut resp = self.run(&what, || {
            Ok(self.with_headers(self.agent.get(&url)).call()?)
        })?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(self.refusal(&what, &mut resp));
        }
        let body = self.read_small(&what, &mut resp, MAX_ERROR_BYTES)?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| self.invalid(&what, &e.to_string()))?;
        if v.get("status").and_then(serde_json::Value::as_str) != Some("ok") {
            return Err(self.invalid(&what, "the status is not \"ok\""));
        }
        Ok(())
    }

    /// `HEAD /<kind>/<key>`: whether the server has the blob.
    pub fn has(&self, kind: BlobKind, key: &str) -> Result<bool, V1Error> {
        check_key(key)?;
        let what = format!("checking {kind} {key}");
        let url = self.blob_url(kind, key);
        let mut resp = self.run(&what, || {
            Ok(self.with_headers(self.agent.head(&url)).call()?)
        })?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.refusal(&what, &mut resp)),
        }
    }

    /// `PUT /<kind>/<key>` with a body of exactly `len` bytes read from `opener()`; the opener
    /// is called again for each retry so the whole body can be resent. The server verifies
    /// the bytes against the key (422 when they do not match).
    pub fn put<R, F>(
        &self,
        kind: BlobKind,
        key: &str,
        len: u64,
        mut opener: F,
    ) -> Result<PutOutcome, V1Error>
    where
        R: Read,
        F: FnMut() -> io::Result<R>,
    {
        check_key(key)?;
        let what = format!("uploading {kind} {key}");
        let url = self.blob_url(kind, key);
        let mut resp = self.run(&what, || {
            let mut source = opener().map_err(|source| {
                AttemptError::Local(V1Error::Source {
                    what: what.clone(),
                    source,
                })
            })?;
            let req = self
                .with_headers(self.agent.put(&url))
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", len.to_string())
                // Lets the server refuse (auth, size) before the body is sent.
                .header("Expect", "100-continue");
            Ok(req.send(SendBody::from_reader(&mut source))?)
        })?;
        match resp.status().as_u16() {
            201 => Ok(PutOutcome::Stored),
            200 | 204 => Ok(PutOutcome::AlreadyPresent),
            _ => Err(self.refusal(&what, &mut resp)),
        }
    }

    /// `GET /<kind>/<key>` as a stream; `Err(NotFound)` when the server lacks it.
    pub fn get(&self, kind: BlobKind, key: &str) -> Result<BlobDownload, V1Error> {
        check_key(key)?;
        let what = format!("downloading {kind} {key}");
        let url = self.blob_url(kind, key);
        let mut resp = self.run(&what, || {
            Ok(self.with_headers(self.agent.get(&url)).call()?)
        })?;
        if resp.status().as_u16() != 200 {
            return Err(self.refusal(&what, &mut resp));
        }
        let body = resp.into_body();
        Ok(BlobDownload {
            len: body.content_length(),
            read: 0,
            reader: Box::new(body.into_reader()),
            what,
            server: self.base.clone(),
        })
    }

    /// `GET /<kind>/`: the keys the server holds. Entries that are not valid keys are refused
    /// (a server listing `../x` is not trusted further).
    pub fn list(&self, kind: BlobKind) -> Result<Vec<String>, V1Error> {
        let what = format!("listing {}", kind.route_name());
        let url = format!("{}/{}/", self.base, kind.route_name());
        let mut resp = self.run(&what, || {
            Ok(self.with_headers(self.agent.get(&url)).call()?)
        })?;
        if resp.status().as_u16() != 200 {
            return Err(self.refusal(&what, &mut resp));
        }
        let body = self.read_small(&what, &mut resp, MAX_LIST_BYTES)?;
        let keys: Vec<String> =
            serde_json::from_slice(&body).map_err(|e| self.invalid(&what, &e.to_string()))?;
        if let Some(bad) = keys.iter().find(|k| check_key(k).is_err()) {
            return Err(self.invalid(&what, &format!("'{}' is not a key", quote(bad))));
        }
        Ok(keys)
    }

    /// `GET /registry`: the registry and its `ETag` (`None` from servers without `ETags`, such as
    /// the standard tool's). A server without a registry yet (404) gives an empty one.
    pub fn registry(&self) -> Result<(Registry, Option<String>), V1Error> {
        let what = "reading the registry".to_string();
        let url = format!("{}/registry", self.base);
        let mut resp = self.run(&what, || {
            Ok(self.with_headers(self.agent.get(&url)).call()?)
        })?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok((Registry::default(), None)),
            _ => return Err(self.refusal(&what, &mut resp)),
        }
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = self.read_small(&what, &mut resp, MAX_REGISTRY_BYTES)?;
        let reg = Registry::from_json(&body).map_err(|e| self.invalid(&what, &e.to_string()))?;
        Ok((reg, etag))
    }

    /// Publishes `entry` under `reference`: GET the registry, set the entry, PUT the whole map
    /// with `If-Match: <etag>`; a 412 (someone else updated it meanwhile) starts over. Servers
    /// without `ETags` (the standard tool's) get the plain read-modify-write they expect.
    pub fn publish(&self, reference: &Reference, entry: &RegistryEntry) -> Result<(), V1Error> {
        let what = format!("publishing {reference}");
        entry.validate().map_err(|reason| {
            self.invalid(&what, &format!("refusing to send this entry: {reason}"))
        })?;
        let url = format!("{}/registry", self.base);
        for attempt in 0..PUBLISH_ATTEMPTS {
            let (mut reg, etag) = self.registry()?;
            reg.entries.insert(reference.to_string(), entry.clone());
            let body = reg.to_json();
            let mut resp = self.run(&what, || {
                let mut req = self
                    .with_headers(self.agent.put(&url))
                    .header("Content-Type", "application/json");
                if let Some(tag) = &etag {
                    req = req.header("If-Match", tag.as_str());
                }
                Ok(req.send(&body[..])?)
            })?;
            match resp.status().as_u16() {
                200 | 201 | 204 => return Ok(()),
                412 => {
                    tracing::debug!(%reference, attempt, "registry changed meanwhile; retrying");
                    std::thread::sleep(retry::backoff(
                        self.opts.backoff_base / 4,
                        self.opts.backoff_cap,
                        attempt,
                    ));
                }
                _ => return Err(self.refusal(&what, &mut resp)),
            }
        }
        Err(V1Error::Contended {
            what,
            server: self.base.clone(),
            attempts: PUBLISH_ATTEMPTS,
        })
    }

    fn blob_url(&self, kind: BlobKind, key: &str) -> String {
        format!("{}/{}/{key}", self.base, kind.route_name())
    }

    fn with_headers<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let req = req.header(PROTOCOL_HEADER, PROTOCOL_VERSION);
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    /// Runs one request with retries; returns the last response (possibly a refusal).
    fn run(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Result<Response<Body>, AttemptError>,
    ) -> Result<Response<Body>, V1Error> {
        let mut n = 0;
        loop {
            let last = n >= self.opts.retries;
            let backoff = retry::backoff(self.opts.backoff_base, self.opts.backoff_cap, n);
            match attempt() {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if last || !retry::is_retryable_status(status) {
                        return Ok(resp);
                    }
                    let asked = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok());
                    if asked.is_some() && retry::retry_after(asked).is_none() {
                        // The server wants a longer pause than we wait for: report it now.
                        return Ok(resp);
                    }
                    let delay = retry::retry_after(asked).unwrap_or(backoff);
                    tracing::debug!(what, status, ?delay, "retrying");
                    std::thread::sleep(delay);
                }
                Err(AttemptError::Local(e)) => return Err(e),
                Err(AttemptError::Http(e)) => {
                    if last || !retry::is_retryable_error(&e) {
                        return Err(self.map_ureq(what, &e));
                    }
                    tracing::debug!(what, error = %e, ?backoff, "retrying");
                    std::thread::sleep(backoff);
                }
            }
            n += 1;
        }
    }

    /// A refusal (any status other than the expected ones) as an error with the server's text.
    fn refusal(&self, what: &str, resp: &mut Response<Body>) -> V1Error {
        let status = resp.status().as_u16();
        if status == 404 {
            return V1Error::NotFound {
                what: what.to_string(),
                server: self.base.clone(),
            };
        }
        let reason = resp.status().canonical_reason().unwrap_or("").to_string();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BYTES)
            .read_to_vec()
            .unwrap_or_default();
        let said = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&text).trim().to_string());
        let message = match (reason.is_empty(), said.is_empty()) {
            (_, false) => format!("{reason}: {}", quote(&said)),
            (false, true) => reason,
            (true, true) => "(no message)".to_string(),
        };
        V1Error::Status {
            what: what.to_string(),
            server: self.base.clone(),
            status,
            message,
        }
    }

    fn invalid(&self, what: &str, message: &str) -> V1Error {
        V1Error::InvalidResponse {
            what: what.to_string(),
            server: self.base.clone(),
            message: message.to_string(),
        }
    }

    fn read_small(
        &self,
        what: &str,
        resp: &mut Response<Body>,
        limit: u64,
    ) -> Result<Vec<u8>, V1Error> {
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.map_ureq(what, &e))
    }

    fn map_ureq(&self, what: &str, e: &ureq::Error) -> V1Error {
        let server = self.base.clone();
        let what = what.to_string();
        match e {
            ureq::Error::Timeout(t) => {
                let (phase, after) = match t {
                    ureq::Timeout::Resolve | ureq::Timeout::Connect => {
                        ("connecting", self.opts.connect_timeout)
                    }
                    _ => ("waiting for the server", self.opts.stall_timeout),
                };
                V1Error::Timeout {
                    what,
                    server,
                    phase,
                    after,
                }
            }
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => V1Error::Connect {
                what,
                server,
                message: e.to_string(),
            },
            ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
                V1Error::Connect {
                    what,
                    server,
                    message: io.to_string(),
                }
            }
            other => V1Error::Transport {
                what,
                server,
                message: other.to_string(),
            },
        }
    }
}

/// Normalises and checks a base URL (see [`V1Client::new`]).
fn check_base_url(url: &str) -> Result<String, V1Error> {
    let bad = |reason: &str| V1Error::InvalidUrl {
        url: quote(url),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("expected http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad("no host"));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("spaces and control characters are not allowed"));
    }
    if url.contains(['?', '#']) {
        return Err(bad("a query or fragment is not allowed"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad(
            "credentials in the URL are not allowed; use a token (remote.json or KARAPACE_REMOTE_TOKEN)",
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The certificates of a PEM file; refuses a file without any.
fn load_ca(path: &PathBuf) -> Result<Vec<Certificate<'static>>, V1Error> {
    let bad = |reason: String| V1Error::CaCert {
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        // A key in the same file is not ours to use.
        if let PemItem::Certificate(c) = item.map_err(|e| bad(e.to_string()))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".to_string()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_normalised() {
        assert_eq!(check_base_url("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(check_base_url("https://h/p/").unwrap(), "https://h/p");
        for bad in [
            "ftp://h",
            "http://",
            "http:///x",
            "http://u:p@h",
            "http://h/?x",
            "http://h/#x",
            "http://h/ x",
            "h:1",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad}");
        }
        // A path segment with '@' is not a credential.
        assert!(check_base_url("http://h/a@b").is_ok());
    }

    #[test]
    fn tokens_that_would_break_headers_are_refused() {
        for bad in ["", "a b", "a\r\nX-Evil: 1", "é"] {
            assert!(matches!(
                V1Client::new("http://127.0.0.1:1", Some(bad.into()), V1Options::default()),
                Err(V1Error::InvalidToken(_))
            ));
        }
    }

    #[test]
    fn invalid_keys_fail_before_any_request() {
        // Port 1 on loopback: a request would fail with a connection error, not InvalidKey.
        let c = V1Client::new("http://127.0.0.1:1", None, V1Options::default()).unwrap();
        for key in ["../../etc/passwd", "", &"A".repeat(64), "%2e%2e"] {
            assert!(matches!(
                c.has(BlobKind::Object, key),
                Err(V1Error::InvalidKey(_))
            ));
            assert!(matches!(
                c.get(BlobKind::Layer, key),
                Err(V1Error::InvalidKey(_))
            ));
            assert!(matches!(
                c.put(BlobKind::Metadata, key, 0, || Ok(io::empty())),
                Err(V1Error::InvalidKey(_))
            ));
        }
    }

    #[test]
    fn a_missing_ca_file_is_reported_with_its_path() {
        let opts = V1Options {
            tls: TlsRoots::CaFile("/nonexistent/ca.pem".into()),
            ..V1Options::default()
        };
        let err = V1Client::new("https://127.0.0.1:1", None, opts)
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
