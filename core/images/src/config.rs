//! Where images come from and how they are transferred: server, architecture, cache, timeouts.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::arch::host_arch;
use crate::error::{ImageError, Result};
use crate::url;

/// The public image server, used when nothing else is configured.
pub const DEFAULT_SERVER: &str = "https://images.linuxcontainers.org";
/// Environment variable that overrides the image server (highest precedence).
pub const SERVER_ENV: &str = "KARAPACE_IMAGE_SERVER";
/// Key in `~/.config/karapace/config.toml` naming the image server.
pub const SERVER_CONFIG_KEY: &str = "image_server";

/// Network behaviour of downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOptions {
    /// Budget for DNS + TCP connect + TLS.
    pub connect_timeout: Duration,
    /// Longest wait for the response headers and, after that, for *any* next body byte.
    /// This is an idle timeout, not a total one: a slow but steady download never times out.
    pub stall_timeout: Duration,
    /// Draw a progress bar on stderr (only honoured when stderr is a terminal).
    pub progress: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            connect_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(30),
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// Everything resolution and fetching need to know about the environment.
#[derive(Debug, Clone)]
pub struct ImageConfig {
    /// Image server base URL (`https://…`, `http://…` or `file:///…`), no trailing slash.
    pub server: String,
    /// Image-server architecture name (`amd64`, `arm64`, …).
    pub arch: String,
    /// Image cache directory (see [`crate::ImageCache`]).
    pub cache_dir: PathBuf,
    /// Resolve from the cache only; never touch the network.
    pub offline: bool,
    /// Timeouts and progress display.
    pub transfer: TransferOptions,
}

impl ImageConfig {
    /// The configuration of this user: server from `KARAPACE_IMAGE_SERVER`, else the config
    /// file's `image_server`, else [`DEFAULT_SERVER`]; host architecture; default cache dir.
    pub fn load() -> Result<Self> {
        let env = std::env::var(SERVER_ENV).ok();
        let file = config_file_path();
        let server = server_from(env.as_deref(), file.as_deref())?;
        Ok(ImageConfig {
            server,
            arch: host_arch()?.to_string(),
            cache_dir: default_cache_dir(),
            offline: false,
            transfer: TransferOptions::default(),
        })
    }

    /// An explicit configuration (tests, callers with their own settings). The server URL is
    /// validated and normalized like a configured one.
    pub fn new(server: &str, cache_dir: impl Into<PathBuf>) -> Result<Self> {
        Ok(ImageConfig {
            server: normalize_server(server, SERVER_ENV)?,
            arch: host_arch()?.to_string(),
            cache_dir: cache_dir.into(),
            offline: false,
            transfer: TransferOptions::default(),
        })
    }
}

/// `~/.config/karapace/config.toml` (`None` when `HOME` is unset).
pub fn config_file_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".config/karapace/config.toml"))
}

/// `$XDG_CACHE_HOME/karapace/images`, else `~/.cache/karapace/images`, else a directory under
/// the system temp dir (no home at all, e.g. some service accounts).
pub fn default_cache_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return PathBuf::from(xdg).join("karapace/images");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home).join(".cache/karapace/images");
    }
    std::env::temp_dir().join("karapace-images")
}

/// The precedence rule, separated from the process environment so it can be tested:
/// `env_value` (if non-empty) wins, then `image_server` in the TOML file at `config_file`
/// (a missing file is fine, a broken one is an error), then [`DEFAULT_SERVER`].
pub fn server_from(env_value: Option<&str>, config_file: Option<&Path>) -> Result<String> {
    if let Some(v) = env_value.map(str::trim).filter(|v| !v.is_empty()) {
        return normalize_server(v, SERVER_ENV);
    }
    if let Some(path) = config_file {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let config_err = |message: String| ImageError::Config {
                    path: path.to_path_buf(),
                    message,
                };
                let table: toml::Table =
                    toml::from_str(&text).map_err(|e| config_err(e.to_string()))?;
                match table.get(SERVER_CONFIG_KEY) {
                    Some(toml::Value::String(s)) => {
                        return normalize_server(s, SERVER_CONFIG_KEY)
                            .map_err(|e| config_err(e.to_string()));
                    }
                    Some(_) => {
                        return Err(config_err(format!(
                            "'{SERVER_CONFIG_KEY}' must be a string"
                        )));
                    }
                    None => {}
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io(path, e)),
        }
    }
    Ok(DEFAULT_SERVER.to_string())
}

fn normalize_server(server: &str, origin: &str) -> Result<String> {
    let s = server.trim();
    let invalid = |reason: String| ImageError::InvalidUrl {
        url: s.to_string(),
        reason,
    };
    match url::scheme(s).as_deref() {
        Some("http" | "https" | "file") => {}
        _ => {
            return Err(invalid(format!(
                "{origin}: the image server must be an http(s):// or file:// URL"
            )));
        }
    }
    url::validate(s)?;
    let trimmed = s.trim_end_matches('/');
    // `file:///` trimmed to `file:/` would lose its root; keep the scheme's slashes.
    Ok(if trimmed.ends_with(':') {
        s.to_string()
    } else {
        trimmed.to_string()
    })
}
