//! Test harness: the real `karapace-server` binary on 127.0.0.1 with `--port 0` in a temp
//! data directory, the protocol v1 client pointed at it, and raw HTTP for malformed input.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use karapace_remote::v1::{V1Client, V1Options};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const RW_TOKEN: &str = "rw-token-abcdefghijklmnopqrstuvwxyz";
pub const RO_TOKEN: &str = "ro-token-abcdefghijklmnopqrstuvwxyz";

pub struct TestServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub url: String,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
}

/// Starts the server; `Err(stderr)` when it exits before listening.
pub fn try_start(data_dir: &Path, extra: &[&str]) -> Result<TestServer, (Option<i32>, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_karapace-server"))
        .arg("--port")
        .arg("0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("KARAPACE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn karapace-server");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(rest) = line.strip_prefix("karapace-server: listening on ") {
                let _ = tx.send(rest.to_string());
                sent = true;
            }
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    if let Ok(url) = rx.recv_timeout(Duration::from_secs(30)) {
        let addr: SocketAddr = url.rsplit("//").next().unwrap().parse().unwrap();
        return Ok(TestServer {
            child: Some(child),
            addr,
            url,
            data_dir: data_dir.to_path_buf(),
            log,
        });
    }
    let status = child.wait().expect("wait");
    std::thread::sleep(Duration::from_millis(100));
    let text = log.lock().unwrap().clone();
    Err((status.code(), text))
}

pub fn start(data_dir: &Path, extra: &[&str]) -> TestServer {
    match try_start(data_dir, extra) {
        Ok(s) => s,
        Err((code, log)) => panic!("server did not start (exit {code:?}):\n{log}"),
    }
}

impl TestServer {
    pub fn client(&self, token: Option<&str>) -> V1Client {
        self.client_with(token, V1Options::default())
    }

    pub fn client_with(&self, token: Option<&str>, opts: V1Options) -> V1Client {
        V1Client::new(&self.url, token.map(str::to_string), opts).expect("client")
    }

    /// A client that fails at once instead of retrying (to observe refusals).
    pub fn impatient_client(&self, token: Option<&str>) -> V1Client {
        self.client_with(
            token,
            V1Options {
                retries: 0,
                ..V1Options::default()
            },
        )
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.as_ref().unwrap().id()).unwrap())
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("kill");
    }

    /// Waits for the process to exit (at most `limit`).
    pub fn wait(mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let until = Instant::now() + limit;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < until,
                "server did not exit in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait.
    pub fn stop(self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait(Duration::from_secs(40))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A raw HTTP exchange: sends `request` as is and reads until the server closes or the
/// response (by Content-Length) is complete. Returns (status, head, body).
pub fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (and close) before reading everything we send.
    let _ = s.write_all(request);
    read_response_to(&mut s, request.starts_with(b"HEAD "))
}

pub fn read_response(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    read_response_to(s, false)
}

/// Reads one response; `head_only` for the answer to a HEAD request (a length, no body).
pub fn read_response_to(s: &mut TcpStream, head_only: bool) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            if head.starts_with("HTTP/1.1 100") {
                buf.drain(..end + 4);
                continue;
            }
            let len = if head_only {
                0
            } else {
                header(&head, "content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0)
            };
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = buf[end + 4..end + 4 + len].to_vec();
                return (status, head, body);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => panic!(
                "connection closed before a full response: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "reading the response: {e}; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
}

pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Every path under `dir` with its size (to show a refusal changed nothing).
pub fn snapshot(dir: &Path) -> Vec<(String, u64)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            out.push((
                p.strip_prefix(base).unwrap().display().to_string(),
                md.len(),
            ));
            if md.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub fn blake3_hex(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

/// Writes a token file (mode 0600) with one read-only and one read-write token.
pub fn token_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("tokens");
    std::fs::write(
        &p,
        format!("# test tokens\nread-only {RO_TOKEN}\nread-write {RW_TOKEN}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Polls `cond` for up to `limit`.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    cond()
}
