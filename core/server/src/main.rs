//! `karapace-server`: the protocol v1 remote for Karapace environments.
//!
//! It stores blobs (objects, layer manifests, environment metadata) and a registry of tags in
//! a data directory and serves them over HTTP/1.1 or HTTPS. Every upload is verified against
//! its key before it is stored; keys are checked before any file-system access; writes are
//! atomic; registry updates never lose a concurrent update. See `docs/remote.md` for deploying
//! it.
//!
//! What it must never do: touch a path built from anything but a validated key; store bytes
//! that do not verify; serve a non-loopback address without tokens unless told to.

mod app;
mod blobs;
mod cli;
mod conn;
mod fsio;
mod http;
mod peers;
mod ratelimit;
mod registry;
mod route;
mod server;
mod tls;
mod tokens;

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use nix::fcntl::{Flock, FlockArg};
use tracing_subscriber::EnvFilter;

use crate::app::App;
use crate::blobs::BlobStore;
use crate::cli::Args;
use crate::registry::RegistryStore;
use crate::tokens::Tokens;

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_env("KARAPACE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("karapace-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let tokens = match &args.token_file {
        Some(p) => Some(Tokens::load(p)?),
        None => None,
    };
    if !args.bind.is_loopback() && tokens.is_none() && !args.allow_anonymous {
        return Err(format!(
            "refusing to serve {} without --token-file: anyone who can reach it could read and \
             overwrite environments (pass --allow-anonymous to do so anyway)",
            args.bind
        ));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(tls::load(c, k)?),
        _ => None,
    };
    let data_dir = &args.data_dir;
    let _lock = lock_data_dir(data_dir)?;
    let blobs = BlobStore::open(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let registry = RegistryStore::open(data_dir, blobs.tmp_dir())?;
    let app = Arc::new(App {
        blobs,
        registry,
        tokens,
        rate: ratelimit::RateLimiter::new(args.rate_limit, args.rate_burst),
        max_body: args.max_body_bytes,
        stopping: std::sync::atomic::AtomicBool::new(false),
    });

    // Signals write a byte to this pipe; the accept loop polls it beside the listener.
    let (stop_rx, stop_tx) = UnixStream::pair().map_err(|e| e.to_string())?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let tx = stop_tx.try_clone().map_err(|e| e.to_string())?;
        signal_hook::low_level::pipe::register(sig, tx).map_err(|e| e.to_string())?;
    }

    let addr = SocketAddr::new(args.bind, args.port);
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Tests and scripts read the port from this line; keep its shape.
    eprintln!("karapace-server: listening on {scheme}://{local}");
    tracing::info!(
        address = %local,
        data_dir = %data_dir.display(),
        tokens = app.tokens.is_some(),
        tls = tls.is_some(),
        workers = args.workers,
        "serving protocol v1"
    );
    server::run(
        listener,
        &app,
        server::Settings {
            workers: usize::from(args.workers),
            queue: usize::from(args.queue),
            stall: args.stall_timeout(),
            grace: args.shutdown_grace(),
            tls,
            per_client: usize::from(args.max_connections_per_client),
        },
        stop_rx,
    )
    .map_err(|e| e.to_string())
}

/// Creates the data directory (0700 when new) and takes an exclusive lock on it: a second
/// server on the same directory would break registry serialisation and delete the first one's
/// in-flight uploads when it empties `tmp/`.
fn lock_data_dir(dir: &Path) -> Result<Flock<File>, String> {
    if !dir.exists() {
        fsio::private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let f = File::open(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !fs::metadata(dir).map_err(|e| e.to_string())?.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            format!(
                "{}: another karapace-server is using this data directory",
                dir.display()
            )
        } else {
            format!("{}: cannot lock: {errno}", dir.display())
        }
    })
}
