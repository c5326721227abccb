//! Test support (feature `test-server`): a loopback image server and mirror builders.
//!
//! Used by this crate's tests and by the end-to-end tests in `tests/`:
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use karapace_images::testing::{TestServer, fixture_mirror};
//! let Some(mirror) = fixture_mirror() else { return Ok(()) }; // skip (or panic under CI)
//! let server = TestServer::serve(&mirror)?;
//! let cfg = karapace_images::ImageConfig::new(&server.url(), "/tmp/cache").unwrap();
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Environment variable naming the mirror made by `scripts/test-image`.
pub const MIRROR_ENV: &str = "KARAPACE_TEST_MIRROR";

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Directory served at `/`.
    pub root: PathBuf,
    /// Answer 404 for everything under `/streams/` (exercises the directory-listing fallback).
    pub hide_streams: bool,
    /// After sending this many body bytes of a file, stop sending (without closing) until the
    /// server is dropped or `stall_limit` passes: a stalled download.
    pub stall_after: Option<u64>,
    /// Only files whose request path ends with this stall (default `rootfs.tar.xz`).
    pub stall_suffix: String,
    /// Longest a stalled response is held open.
    pub stall_limit: Duration,
    /// Concurrent connections served; more get 503.
    pub max_connections: usize,
}

impl ServerOptions {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ServerOptions {
            root: root.into(),
            hide_streams: false,
            stall_after: None,
            stall_suffix: "rootfs.tar.xz".to_string(),
            stall_limit: Duration::from_secs(30),
            max_connections: 16,
        }
    }
}

/// A static-file HTTP/1.1 server on `127.0.0.1:<random port>`: GET and HEAD, autoindex-style
/// directory listings (build names percent-encoded like the public server), one request per
/// connection. It stops (and joins its threads) when dropped.
pub struct TestServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    opts: ServerOptions,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    active: AtomicUsize,
}

impl TestServer {
    /// Serves `root` with default options.
    pub fn serve(root: impl Into<PathBuf>) -> io::Result<Self> {
        Self::start(ServerOptions::new(root))
    }

    pub fn start(opts: ServerOptions) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            opts,
            stop: stop.clone(),
            log: log.clone(),
            active: AtomicUsize::new(0),
        });
        let accept = std::thread::Builder::new()
            .name("karapace-test-server".into())
            .spawn(move || accept_loop(&listener, &shared))?;
        Ok(TestServer {
            addr,
            stop,
            log,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests seen so far, as `"GET /path"` (path as sent, still percent-encoded).
    pub fn requests(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        handlers.retain(|h| !h.is_finished());
        if shared.active.load(Ordering::SeqCst) >= shared.opts.max_connections {
            let _ = stream
                .write_all(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            continue;
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("karapace-test-conn".into())
            .spawn(move || {
                let _ = handle(&mut stream, &s);
                let _ = stream.shutdown(Shutdown::Both);
                s.active.fetch_sub(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(h) => handlers.push(h),
            Err(_) => {
                shared.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
    for h in handlers {
        let _ = h.join();
    }
}

fn handle(stream: &mut TcpStream, s: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    s.log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(format!("{method} {target}"));
    let is_head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return respond(stream, "405 Method Not Allowed", "text/plain", b"", false),
    };
    let raw_path = target.split(['?', '#']).next().unwrap_or("/");
    let Some(decoded) = crate::url::decode(raw_path) else {
        return respond(stream, "400 Bad Request", "text/plain", b"", is_head);
    };
    let rel = Path::new(decoded.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return respond(stream, "400 Bad Request", "text/plain", b"", is_head);
    }
    if s.opts.hide_streams && decoded.starts_with("/streams/") {
        return respond(stream, "404 Not Found", "text/plain", b"not found", is_head);
    }
    let path = s.opts.root.join(rel);
    match fs::metadata(&path) {
        Ok(m) if m.is_dir() => {
            if !raw_path.ends_with('/') {
                let msg = format!(
                    "HTTP/1.1 301 Moved Permanently\r\nLocation: {raw_path}/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                return stream.write_all(msg.as_bytes());
            }
            let body = listing_html(&path, &decoded)?;
            respond(stream, "200 OK", "text/html", body.as_bytes(), is_head)
        }
        Ok(m) => serve_file(stream, s, &path, m.len(), is_head),
        Err(_) => respond(stream, "404 Not Found", "text/plain", b"not found", is_head),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    is_head: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !is_head {
        stream.write_all(body)?;
    }
    stream.flush()
}

fn serve_file(
    stream: &mut TcpStream,
    s: &Shared,
    path: &Path,
    len: u64,
    is_head: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    if is_head {
        return stream.flush();
    }
    let mut f = File::open(path)?;
    let stalls = path
        .to_string_lossy()
        .ends_with(s.opts.stall_suffix.as_str());
    let limit = s.opts.stall_after.filter(|_| stalls).unwrap_or(u64::MAX);
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while sent < limit {
        let want = usize::try_from((limit - sent).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return stream.flush();
        }
        stream.write_all(&buf[..n])?;
        sent += n as u64;
    }
    stream.flush()?;
    // Stalled: hold the connection open, sending nothing, until told to stop.
    let until = Instant::now() + s.opts.stall_limit;
    while !s.stop.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn listing_html(dir: &Path, shown: &str) -> io::Result<String> {
    let mut names: Vec<(String, bool)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push((name, entry.file_type()?.is_dir()));
        }
    }
    names.sort();
    let mut html = format!(
        "<html><head><title>Index of {shown}</title></head><body><h1>Index of {shown}</h1><pre>\n"
    );
    html.push_str("<a href=\"../\">../</a>\n");
    for (name, is_dir) in names {
        let slash = if is_dir { "/" } else { "" };
        let _ = writeln!(
            html,
            "<a href=\"{}{slash}\">{name}{slash}</a>",
            crate::url::encode_segment(&name)
        );
    }
    html.push_str("</pre></body></html>\n");
    Ok(html)
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One image to put into a mirror made by [`write_mirror`].
#[derive(Debug, Clone)]
pub struct MirrorImage<'a> {
    pub distro: &'a str,
    pub release: &'a str,
    pub arch: &'a str,
    /// Build directory, e.g. `20260220_04:20`.
    pub build: &'a str,
    /// The archive bytes (any compression; always stored as `rootfs.tar.xz` like the servers do).
    pub archive: &'a [u8],
    /// sha256 to publish; `None` publishes the real one (set it to test mismatches).
    pub published_sha256: Option<&'a str>,
}

/// Lays out a mirror in the image servers' layout under `root`: the archives, a `SHA256SUMS`
/// per build, and — if `with_streams` — `streams/v1/index.json` + `images.json`.
pub fn write_mirror(root: &Path, images: &[MirrorImage<'_>], with_streams: bool) -> io::Result<()> {
    let mut products: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for img in images {
        let rel = format!(
            "images/{}/{}/{}/default/{}",
            img.distro, img.release, img.arch, img.build
        );
        let dir = root.join(&rel);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("rootfs.tar.xz"), img.archive)?;
        let sha = img
            .published_sha256
            .map_or_else(|| sha256_hex(img.archive), str::to_string);
        fs::write(dir.join("SHA256SUMS"), format!("{sha}  rootfs.tar.xz\n"))?;
        let key = format!("{}:{}:{}:default", img.distro, img.release, img.arch);
        let product = products.entry(key).or_insert_with(|| {
            serde_json::json!({
                "arch": img.arch, "os": img.distro, "release": img.release, "variant": "default",
                "versions": {}
            })
        });
        if let Some(versions) = product
            .get_mut("versions")
            .and_then(serde_json::Value::as_object_mut)
        {
            versions.insert(
                img.build.to_string(),
                serde_json::json!({ "items": { "root.tar.xz": {
                    "ftype": "root.tar.xz",
                    "path": format!("{rel}/rootfs.tar.xz"),
                    "sha256": sha,
                    "size": img.archive.len(),
                }}}),
            );
        }
    }
    if with_streams {
        let streams = root.join("streams/v1");
        fs::create_dir_all(&streams)?;
        let index = serde_json::json!({
            "format": "index:1.0",
            "index": { "images": {
                "datatype": "image-downloads",
                "format": "products:1.0",
                "path": "streams/v1/images.json",
                "products": products.keys().collect::<Vec<_>>(),
            }}
        });
        let images_json = serde_json::json!({
            "content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
            "products": products,
        });
        fs::write(
            streams.join("index.json"),
            serde_json::to_vec_pretty(&index)?,
        )?;
        fs::write(
            streams.join("images.json"),
            serde_json::to_vec_pretty(&images_json)?,
        )?;
    }
    Ok(())
}

/// The real Debian mirror made by `scripts/test-image`, from `KARAPACE_TEST_MIRROR`.
///
/// Returns `None` (after printing why) when it is not available, so a developer without the
/// fixture skips the real-image tests — but panics when `CI` is set: there, a missing fixture
/// is a broken pipeline, not a reason to pass.
pub fn fixture_mirror() -> Option<PathBuf> {
    let problem = match std::env::var_os(MIRROR_ENV) {
        None => format!(
            "{MIRROR_ENV} is not set (run: export {MIRROR_ENV}=\"$(sudo scripts/test-image)\")"
        ),
        Some(p) if Path::new(&p).join("streams/v1/index.json").is_file() => {
            return Some(PathBuf::from(p));
        }
        Some(p) => format!(
            "{MIRROR_ENV}={} does not contain streams/v1/index.json",
            Path::new(&p).display()
        ),
    };
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "CI is set but the real image fixture is missing: {problem}"
    );
    eprintln!("skipping real-image test: {problem}");
    None
}
