//! Accepting connections and handing them to a bounded pool of worker threads; graceful stop.
//!
//! Connections wait in a bounded queue for a worker; when it is full, new connections get an
//! immediate 503 instead of an unbounded backlog. SIGTERM/SIGINT stop the accept loop at once;
//! requests in flight (and connections already queued) are finished, each connection closing
//! after its current request, for at most the grace period.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::app::App;
use crate::conn;
use crate::http::response::Response;
use crate::peers::{PeerCounts, PeerSlot};

/// Server-wide settings the connections need.
pub struct Settings {
    pub workers: usize,
    pub queue: usize,
    pub stall: Duration,
    pub grace: Duration,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections one client address may hold (working or queued).
    pub per_client: usize,
}

type Job = (TcpStream, SocketAddr, PeerSlot);

/// Runs until a byte arrives on `stop` (the signal pipe). Returns when every worker finished
/// or the grace period ran out.
pub fn run(
    listener: TcpListener,
    app: &Arc<App>,
    settings: Settings,
    mut stop: UnixStream,
) -> std::io::Result<()> {
    let settings = Arc::new(settings);
    let (tx, rx) = sync_channel::<Job>(settings.queue);
    let rx = Arc::new(Mutex::new(rx));
    let peers = PeerCounts::new(settings.per_client);
    let mut workers = Vec::with_capacity(settings.workers);
    for i in 0..settings.workers {
        let (app, rx, settings) = (app.clone(), rx.clone(), settings.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(&app, &rx, &settings))?,
        );
    }
    listener.set_nonblocking(true)?;
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if fds[1].any().unwrap_or(false) {
            break;
        }
        accept_ready(&listener, &tx, &peers);
    }
    // Drain the signal byte(s); nothing else to do with them.
    let _ = stop.set_nonblocking(true);
    let _ = std::io::Read::read(&mut stop, &mut [0u8; 16]);
    tracing::info!(
        grace_s = settings.grace.as_secs(),
        "shutting down: no new connections; finishing requests in flight"
    );
    drop(listener);
    app.stopping.store(true, Ordering::SeqCst);
    drop(tx);
    wait_for(workers, settings.grace);
    Ok(())
}

/// Answers 503 on a connection that is not served and closes it.
fn refuse_busy(mut tcp: TcpStream, message: &str) {
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = Response::error(503, message)
        .header("Retry-After", "1")
        .write_to(&mut tcp, false, true);
    let _ = tcp.flush();
    let _ = tcp.shutdown(std::net::Shutdown::Write);
}

fn accept_ready(listener: &TcpListener, tx: &SyncSender<Job>, peers: &Arc<PeerCounts>) {
    loop {
        match listener.accept() {
            Ok((tcp, peer)) => {
                if tcp.set_nonblocking(false).is_err() {
                    continue;
                }
                let Some(slot) = peers.admit(peer.ip()) else {
                    tracing::debug!(%peer, status = 503, "too many connections from this address");
                    refuse_busy(tcp, "too many connections from your address; try again");
                    continue;
                };
                match tx.try_send((tcp, peer, slot)) {
                    Ok(()) => {}
                    Err(TrySendError::Full((tcp, peer, _slot))) => {
                        tracing::warn!(%peer, status = 503, "all workers busy and the queue is full");
                        refuse_busy(tcp, "server busy; try again");
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                return;
            }
        }
    }
}

fn worker(app: &App, rx: &Mutex<Receiver<Job>>, settings: &Settings) {
    loop {
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((tcp, peer, _slot)) = job else {
            return;
        };
        conn::serve(app, tcp, settings.tls.as_ref(), peer, settings.stall);
    }
}

fn wait_for(workers: Vec<JoinHandle<()>>, grace: Duration) {
    // A huge --shutdown-grace must not overflow the clock: wait "forever" instead.
    let deadline = Instant::now()
        .checked_add(grace)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(u64::from(u32::MAX)));
    while Instant::now() < deadline {
        if workers.iter().all(JoinHandle::is_finished) {
            for w in workers {
                let _ = w.join();
            }
            tracing::info!("stopped");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy = workers.iter().filter(|w| !w.is_finished()).count();
    tracing::warn!(
        busy,
        "grace period over; exiting with requests still in flight (their temp files are removed at the next start)"
    );
}
