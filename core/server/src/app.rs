//! One request, from its parsed head to its response: rate limit, protocol version, route,
//! credentials, body framing, then the blob or registry operation. Every refusal happens in
//! that order and before any file-system access (the route and key checks are pure).

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use karapace_remote::registry::MAX_REGISTRY_BYTES;
use karapace_remote::{BlobKind, PROTOCOL_HEADER, PROTOCOL_VERSION};

use crate::blobs::{BlobStore, PutError, Stored};
use crate::http::body::{BodyError, BodyReader, Framing, is_too_large};
use crate::http::request::Head;
use crate::http::response::{Body, Response};
use crate::http::stream::Stream;
use crate::ratelimit::RateLimiter;
use crate::registry::{RegistryStore, UpdateError};
use crate::route::{self, Method, Route};
use crate::tokens::{Decision, Tokens};

/// Everything a request may use.
pub struct App {
    pub blobs: BlobStore,
    pub registry: RegistryStore,
    /// `None`: anonymous access.
    pub tokens: Option<Tokens>,
    pub rate: Option<RateLimiter>,
    /// Largest body accepted.
    pub max_body: u64,
    /// Set on SIGTERM/SIGINT: responses say `Connection: close` from then on.
    pub stopping: AtomicBool,
}

/// What happened to one request (for the log line and the connection).
#[derive(Debug)]
pub struct Outcome {
    /// 0 when no response could be sent (the client went away).
    pub status: u16,
    pub route: &'static str,
    pub kind: Option<BlobKind>,
    pub key: Option<String>,
    /// Body bytes received (PUT) or sent (GET).
    pub bytes: u64,
    /// The connection must close (body left unread, client gone, or an error mid-transfer).
    pub close: bool,
    /// Why a request was refused (for the log), if it was.
    pub refusal: Option<String>,
    /// The request body was read to its end (the connection can serve another request).
    pub body_done: bool,
}

impl Outcome {
    fn new(route: &'static str) -> Self {
        Outcome {
            status: 0,
            route,
            kind: None,
            key: None,
            bytes: 0,
            close: false,
            refusal: None,
            body_done: false,
        }
    }
}

type Conn = BufReader<Stream>;

impl App {
    /// Serves one request whose head was read from `conn`; `closing` when the connection ends
    /// after it whatever happens (the client asked, or the server is stopping).
    pub fn handle(&self, head: &Head, conn: &mut Conn, peer: SocketAddr, closing: bool) -> Outcome {
        let mut out = Outcome::new("-");
        out.close = closing;
        let framing = Framing::of(head);
        // Unless a handler reads the body to its end, the connection cannot be reused.
        let has_body = !matches!(framing, Ok(Framing::Length(0)));
        let resp = self.dispatch(head, conn, peer, framing, &mut out);
        if has_body && !out.body_done {
            out.close = true;
        }
        if self.stopping.load(Ordering::SeqCst) {
            out.close = true;
        }
        if let Some(resp) = resp {
            out.status = resp.status;
            let head_only = head.method == "HEAD";
            match resp.write_to(conn.get_mut(), head_only, out.close) {
                Ok(n) => {
                    if head.method != "PUT" {
                        out.bytes = n;
                    }
                }
                Err(e) => {
                    out.close = true;
                    out.refusal = Some(format!("sending the response failed: {e}"));
                }
            }
        } else {
            out.close = true;
        }
        out
    }

    /// The checks every request passes before any storage is touched, in order: rate limit,
    /// protocol version, route and key, credentials, body framing.
    fn admit(
        &self,
        head: &Head,
        peer: SocketAddr,
        framing: Result<Framing, BodyError>,
        out: &mut Outcome,
    ) -> Result<(Route, Method, Framing), Response> {
        let refuse = |out: &mut Outcome, status: u16, msg: &str| {
            out.refusal = Some(msg.to_string());
            Response::error(status, msg)
        };
        if let Some(rate) = &self.rate
            && let Err(wait) = rate.check(peer.ip(), Instant::now())
        {
            out.refusal = Some("rate limited".into());
            let secs = wait.as_secs() + 1;
            return Err(Response::error(429, "too many requests; slow down")
                .header("Retry-After", secs.to_string()));
        }
        match head.single(&PROTOCOL_HEADER.to_ascii_lowercase()) {
            Ok(None) => {}
            Ok(Some(v)) if v == PROTOCOL_VERSION.as_bytes() => {}
            Ok(Some(_)) => {
                return Err(refuse(
                    out,
                    400,
                    "unsupported protocol version (this server speaks 1)",
                ));
            }
            Err(e) => return Err(refuse(out, 400, &e)),
        }
        let (route, method) = match route::parse(&head.method, &head.target) {
            Ok(r) => r,
            Err(e) => {
                out.route = "invalid";
                out.refusal = Some(format!(
                    "{} {}",
                    e.message,
                    karapace_remote::key::quote(&head.target)
                ));
                let mut resp = Response::error(e.status, &e.message);
                if let Some(allow) = e.allow {
                    resp = resp.header("Allow", allow);
                }
                return Err(resp);
            }
        };
        out.route = route.name();
        match &route {
            Route::Blob(kind, key) => {
                out.kind = Some(*kind);
                out.key = Some(key.clone());
            }
            Route::List(kind) => out.kind = Some(*kind),
            Route::Health | Route::Registry => {}
        }
        if let Some(tokens) = &self.tokens {
            match tokens.decide(&head.all("authorization"), route.access(method)) {
                Decision::Allow => {}
                Decision::Unauthenticated => {
                    out.refusal = Some("no valid token".into());
                    return Err(Response::error(
                        401,
                        "a valid token is required (Authorization: Bearer <token>)",
                    )
                    .header("WWW-Authenticate", "Bearer realm=\"karapace\""));
                }
                Decision::Forbidden => return Err(refuse(out, 403, "this token is read-only")),
            }
        }
        let framing = match framing {
            Ok(f) => f,
            Err(BodyError::Malformed(m)) => return Err(refuse(out, 400, &m)),
            Err(BodyError::TooLarge { limit }) => {
                return Err(refuse(
                    out,
                    413,
                    &format!("request body larger than {limit} bytes"),
                ));
            }
        };
        if method != Method::Put && framing.has_body() {
            return Err(refuse(out, 400, "this request takes no body"));
        }
        Ok((route, method, framing))
    }

    fn dispatch(
        &self,
        head: &Head,
        conn: &mut Conn,
        peer: SocketAddr,
        framing: Result<Framing, BodyError>,
        out: &mut Outcome,
    ) -> Option<Response> {
        let (route, method, framing) = match self.admit(head, peer, framing, out) {
            Ok(admitted) => admitted,
            Err(refusal) => return Some(refusal),
        };
        match (route, method) {
            (Route::Health, _) => Some(Response::json(200, br#"{"status":"ok"}"#.to_vec())),
            (Route::List(kind), _) => match self.blobs.list(kind) {
                Ok(keys) => Some(Response::json(
                    200,
                    serde_json::to_vec(&keys).unwrap_or_default(),
                )),
                Err(e) => Some(internal(out, &e.to_string())),
            },
            (Route::Blob(kind, key), Method::Get | Method::Head) => {
                match self.blobs.open_blob(kind, &key) {
                    Ok(Some((f, len))) => {
                        let mut r = Response::new(200);
                        r.body = Body::File(f, len);
                        Some(r)
                    }
                    Ok(None) => Some(Response::error(404, &format!("no such {kind}"))),
                    Err(e) => Some(internal(out, &e.to_string())),
                }
            }
            (Route::Blob(kind, key), Method::Put) => {
                self.put_blob(head, conn, framing, kind, &key, out)
            }
            (Route::Registry, Method::Put) => self.put_registry(head, conn, framing, out),
            (Route::Registry, _) => {
                let (json, etag) = self.registry.get();
                Some(Response::json(200, json).header("ETag", etag))
            }
        }
    }

    fn put_blob(
        &self,
        head: &Head,
        conn: &mut Conn,
        framing: Framing,
        kind: BlobKind,
        key: &str,
        out: &mut Outcome,
    ) -> Option<Response> {
        let mut body = match Self::start_body(head, conn, framing, self.max_body, out) {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let result = self.blobs.put(kind, key, &mut body, self.max_body);
        out.bytes = body.bytes_read();
        out.body_done = body.is_done();
        match result {
            Ok(Stored::Created) => Some(Response::json(201, br#"{"status":"stored"}"#.to_vec())),
            Ok(Stored::Existed) => Some(Response::json(200, br#"{"status":"present"}"#.to_vec())),
            Ok(Stored::Replaced) => Some(Response::json(200, br#"{"status":"replaced"}"#.to_vec())),
            Err(PutError::Mismatch(why)) => {
                out.refusal = Some(why.clone());
                Some(Response::error(
                    422,
                    &format!("{kind} {key} refused: {why}"),
                ))
            }
            Err(PutError::TooLarge { limit }) => {
                out.close = true;
                let msg = format!("body larger than {limit} bytes");
                out.refusal = Some(msg.clone());
                Some(Response::error(413, &msg))
            }
            Err(PutError::Malformed(m)) => {
                out.close = true;
                out.refusal = Some(m.clone());
                Some(Response::error(400, &m))
            }
            Err(PutError::ClientGone(e)) => {
                out.refusal = Some(format!("upload abandoned: {e}"));
                None
            }
            Err(PutError::Storage(e)) => {
                out.close = true;
                let full = matches!(e.raw_os_error(), Some(c) if c == nix::libc::ENOSPC || c == nix::libc::EDQUOT);
                if full {
                    out.refusal = Some(e.to_string());
                    Some(Response::error(507, "the server's disk is full"))
                } else {
                    Some(internal(out, &e.to_string()))
                }
            }
        }
    }

    fn put_registry(
        &self,
        head: &Head,
        conn: &mut Conn,
        framing: Framing,
        out: &mut Outcome,
    ) -> Option<Response> {
        let if_match = match head.single("if-match") {
            Ok(v) => v.map(|v| String::from_utf8_lossy(v).into_owned()),
            Err(e) => {
                out.refusal = Some(e.clone());
                return Some(Response::error(400, &e));
            }
        };
        let mut body = match Self::start_body(head, conn, framing, MAX_REGISTRY_BYTES, out) {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let mut bytes = Vec::new();
        let read = body.read_to_end(&mut bytes);
        out.bytes = body.bytes_read();
        out.body_done = body.is_done();
        if let Err(e) = read {
            if is_too_large(&e) {
                out.close = true;
                return Some(Response::error(413, "registry document too large"));
            }
            out.refusal = Some(format!("upload abandoned: {e}"));
            return None;
        }
        match self.registry.update(&bytes, if_match.as_deref()) {
            Ok((json, etag)) => Some(Response::json(200, json).header("ETag", etag)),
            Err(UpdateError::Invalid(m)) => {
                out.refusal = Some(m.clone());
                Some(Response::error(400, &m))
            }
            Err(UpdateError::PreconditionFailed { current }) => {
                out.refusal = Some("If-Match does not match".into());
                Some(
                    Response::error(412, "the registry changed since it was read; read it again")
                        .header("ETag", current),
                )
            }
            Err(UpdateError::TooLarge { limit }) => {
                let m = format!("the registry would grow beyond {limit} bytes; refused");
                out.refusal = Some(m.clone());
                Some(Response::error(413, &m))
            }
            Err(UpdateError::Storage(e)) => Some(internal(out, &e.to_string())),
        }
    }

    /// Checks the declared size and `Expect`, sends `100 Continue` when asked, and returns a
    /// reader over the body. `Err(response)` refuses before reading anything.
    fn start_body<'c>(
        head: &Head,
        conn: &'c mut Conn,
        framing: Framing,
        limit: u64,
        out: &mut Outcome,
    ) -> Result<BodyReader<'c, Conn>, Option<Response>> {
        let expect = match head.single("expect") {
            Ok(v) => v,
            Err(e) => return Err(Some(Response::error(400, &e))),
        };
        let continue_wanted = match expect {
            None => false,
            Some(v) if v.eq_ignore_ascii_case(b"100-continue") => true,
            Some(_) => {
                out.close = true;
                return Err(Some(Response::error(
                    417,
                    "only Expect: 100-continue is supported",
                )));
            }
        };
        if let Framing::Length(n) = framing
            && n > limit
        {
            out.close = true;
            let msg = format!("body of {n} bytes is larger than the limit of {limit}");
            out.refusal = Some(msg.clone());
            return Err(Some(Response::error(413, &msg)));
        }
        if continue_wanted && head.http11 {
            let s = conn.get_mut();
            if s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|()| s.flush())
                .is_err()
            {
                return Err(None);
            }
        }
        BodyReader::new(conn, framing, limit).map_err(|_| {
            out.close = true;
            Some(Response::error(413, "request body too large"))
        })
    }
}

fn internal(out: &mut Outcome, why: &str) -> Response {
    out.close = true;
    tracing::error!(error = why, "storage error");
    out.refusal = Some(why.to_string());
    Response::error(500, "internal error; see the server log")
}
