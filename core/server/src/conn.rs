//! One connection: requests served in turn (keep-alive) until the client closes, stays idle,
//! asks to close, a request leaves its body unread, or the server shuts down.

use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use karapace_remote::key::quote;

use crate::app::App;
use crate::http::request::{HeadError, read_head};
use crate::http::response::Response;
use crate::http::stream::{Stream, is_timeout};

/// Longest wait for the first request on a new connection (includes the TLS handshake).
const FIRST_REQUEST_IDLE: Duration = Duration::from_secs(10);
/// Longest wait for the next request on a kept-alive connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// A request head, once started, must be complete within this (slow-header attacks).
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// How often an idle wait checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// Requests served on one connection before it is closed.
const MAX_REQUESTS_PER_CONNECTION: u32 = 10_000;
/// Read buffer of a connection.
const READ_BUF: usize = 64 * 1024;
/// After refusing a request whose body was not read, how much of it is discarded (and for how
/// long) so the client sees the response instead of a reset.
const LINGER_BYTES: u64 = 4 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Serves `tcp` (wrapped in TLS when configured) until it closes.
pub fn serve(
    app: &App,
    tcp: TcpStream,
    tls: Option<&std::sync::Arc<rustls::ServerConfig>>,
    peer: SocketAddr,
    stall: Duration,
) {
    let shutdown = &app.stopping;
    let Ok(timeouts) = tcp.try_clone() else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(stall));
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
            Ok(c) => Stream::Tls(Box::new(rustls::StreamOwned::new(c, tcp))),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "TLS setup failed");
                return;
            }
        },
    };
    let mut conn = BufReader::with_capacity(READ_BUF, stream);
    let mut served = 0u32;
    loop {
        let idle = if served == 0 {
            FIRST_REQUEST_IDLE
        } else {
            KEEPALIVE_IDLE
        };
        if !wait_for_request(&mut conn, &timeouts, idle, shutdown) {
            break;
        }
        let started = Instant::now();
        let _ = timeouts.set_read_timeout(Some(stall));
        let set_timeout = |d: Duration| {
            timeouts.set_read_timeout(Some(d.min(stall).max(Duration::from_millis(1))))
        };
        let head = match read_head(&mut conn, started + HEAD_DEADLINE, &set_timeout) {
            Ok(h) => h,
            Err(HeadError::Closed) => break,
            Err(HeadError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "connection ended mid-request");
                break;
            }
            Err(HeadError::TooLarge) => {
                refuse_and_close(conn, 431, "request head too large", peer);
                return;
            }
            Err(HeadError::Malformed(status, msg)) => {
                refuse_and_close(conn, status, &msg, peer);
                return;
            }
        };
        let _ = timeouts.set_read_timeout(Some(stall));
        served += 1;
        let closing = head.wants_close()
            || shutdown.load(Ordering::SeqCst)
            || served >= MAX_REQUESTS_PER_CONNECTION;
        let out = app.handle(&head, &mut conn, peer, closing);
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            method = %head.method,
            route = %out.route,
            kind = %out.kind.map_or("-", |k| k.route_name()),
            key = %out.key.as_deref().unwrap_or("-"),
            status = out.status,
            bytes = out.bytes,
            duration_ms = ms,
            peer = %peer,
            refusal = out.refusal.as_deref().map(quote).as_deref().unwrap_or("-"),
            "request"
        );
        if out.close || shutdown.load(Ordering::SeqCst) {
            if out.status != 0 && !out.body_done {
                linger(conn);
            }
            return;
        }
    }
}

/// Waits for the first byte of a request; `false` when the client closed, stayed idle past
/// `idle`, or the server is shutting down while nothing was received.
fn wait_for_request(
    conn: &mut BufReader<Stream>,
    tcp: &TcpStream,
    idle: Duration,
    shutdown: &AtomicBool,
) -> bool {
    let until = Instant::now() + idle;
    loop {
        if !conn.buffer().is_empty() {
            return true;
        }
        let now = Instant::now();
        if now >= until || shutdown.load(Ordering::SeqCst) {
            return false;
        }
        let _ = tcp.set_read_timeout(Some((until - now).min(SHUTDOWN_POLL)));
        match conn.fill_buf() {
            Ok([]) => return false,
            Ok(_) => return true,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn refuse_and_close(mut conn: BufReader<Stream>, status: u16, msg: &str, peer: SocketAddr) {
    tracing::info!(status, peer = %peer, refusal = %quote(msg), "request");
    if Response::error(status, msg)
        .write_to(conn.get_mut(), false, true)
        .is_ok()
    {
        linger(conn);
    }
}

/// Closes the sending side, then discards what the client still sends for a bounded time, so
/// a response sent before its request body was read is not lost to a TCP reset.
fn linger(mut conn: BufReader<Stream>) {
    conn.get_mut().shutdown_write();
    let deadline = Instant::now() + LINGER_TIME;
    let mut left = LINGER_BYTES;
    let mut buf = [0u8; 16 * 1024];
    while left > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if conn.get_ref().set_read_timeout(deadline - now).is_err() {
            break;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n as u64),
        }
    }
}
