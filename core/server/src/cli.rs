//! Command-line flags (the standard tool's `--port` and `--data-dir`, plus what a deployment
//! needs). Defaults are documented in `docs/remote.md`; this is the one definition of them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Serve Karapace environments over protocol v1 (push/pull).
#[derive(Debug, Parser)]
#[command(name = "karapace-server", version, about)]
pub struct Args {
    /// TCP port to listen on (0 picks a free one; the start-up line on stderr names it).
    #[arg(long, default_value_t = 8321)]
    pub port: u16,
    /// Directory holding blobs, the registry and temp files (created if absent).
    #[arg(long, default_value = "./karapace-remote-data")]
    pub data_dir: PathBuf,
    /// Address to bind. Anything but a loopback address needs --token-file (or --allow-anonymous).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Tokens, one per line: `read-only <token>` or `read-write <token>`; `#` starts a comment
    /// line. The file must not be readable by group or others.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Serve a non-loopback address without tokens (anyone who can connect can read and write).
    #[arg(long)]
    pub allow_anonymous: bool,
    /// PEM certificate chain for HTTPS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with --tls-cert); must not be readable by others.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest request body accepted, in bytes (larger uploads get 413).
    #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024 * 1024 * 1024)]
    pub max_body_bytes: u64,
    /// Worker threads: connections served at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,
    /// Accepted connections waiting for a worker; beyond this new connections get 503.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub queue: u16,
    /// Connections one client address (IPv6: per /64) may hold, served or queued; beyond this
    /// its new connections get 503, so one client cannot take every worker.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub max_connections_per_client: u16,
    /// Requests per second allowed per client address (IPv6: per /64), 0 = no limit.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 50)]
    pub rate_limit: u32,
    /// Requests a client may make in a burst above --rate-limit.
    #[arg(long, value_name = "REQUESTS", default_value_t = 500)]
    pub rate_burst: u32,
    /// Seconds of silence from a client before its request is abandoned.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub stall_timeout: u64,
    /// Seconds SIGTERM/SIGINT waits for requests in flight before exiting.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub shutdown_grace: u64,
}

impl Args {
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.stall_timeout)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_flags_and_defaults_hold() {
        let a = Args::try_parse_from(["karapace-server"]).unwrap();
        assert_eq!(a.port, 8321);
        assert_eq!(a.data_dir, PathBuf::from("./karapace-remote-data"));
        assert_eq!(a.bind.to_string(), "127.0.0.1");
        let a =
            Args::try_parse_from(["karapace-server", "--port", "0", "--data-dir", "/x"]).unwrap();
        assert_eq!((a.port, a.data_dir), (0, PathBuf::from("/x")));
        assert!(Args::try_parse_from(["karapace-server", "--tls-cert", "c"]).is_err());
        assert!(Args::try_parse_from(["karapace-server", "--workers", "0"]).is_err());
        assert!(Args::try_parse_from(["karapace-server", "--bind", "example.com"]).is_err());
    }
}
