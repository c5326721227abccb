//! Where images come from and how they are transferred: server, architecture, cache, timeouts.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use karapace_tar::ArchiveLimits;

use crate::alias::UserAlias;
use crate::arch::host_arch;
use crate::error::{ImageError, Result};
use crate::url;

/// The public image server, used when nothing else is configured.
pub const DEFAULT_SERVER: &str = "https://images.linuxcontainers.org";
/// Environment variable that overrides the image server (highest precedence).
pub const SERVER_ENV: &str = "KARAPACE_IMAGE_SERVER";
/// Key in `~/.config/karapace/config.toml` naming the image server.
pub const SERVER_CONFIG_KEY: &str = "image_server";
/// Table in `~/.config/karapace/config.toml` of the user's own image aliases
/// (`gentoo = "gentoo/openrc"`), after the built-in ones.
pub const ALIASES_CONFIG_KEY: &str = "image_aliases";
/// Key in `~/.config/karapace/config.toml`: most entries one image or layer archive may have.
pub const MAX_ENTRIES_CONFIG_KEY: &str = "archive_max_entries";
/// Key in `~/.config/karapace/config.toml`: most content bytes one image or layer archive may
/// unpack to.
pub const MAX_BYTES_CONFIG_KEY: &str = "archive_max_bytes";

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
    /// Caps on an archive's entries and content bytes, for images and for the store's layers
    /// (`archive_max_entries`, `archive_max_bytes` in the config file).
    pub archive_limits: ArchiveLimits,
    /// The user's aliases (`[image_aliases]` in the config file), consulted after the built-in
    /// table.
    pub user_aliases: Vec<UserAlias>,
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
            archive_limits: archive_limits_from(file.as_deref())?,
            user_aliases: user_aliases_from(file.as_deref())?,
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
            archive_limits: ArchiveLimits::default(),
            user_aliases: Vec::new(),
        })
    }
}

/// `~/.config/karapace/config.toml` (`None` when `HOME` is unset).
pub fn config_file_path() -> Option<PathBuf> {
    karapace_dirs::home().map(|h| h.join(".config/karapace/config.toml"))
}

/// `images` in the user's karapace cache (`karapace_dirs::karapace_cache`), else (no home at
/// all, e.g. some service accounts) [`private_temp_cache`].
pub fn default_cache_dir() -> PathBuf {
    karapace_dirs::karapace_cache().map_or_else(private_temp_cache, |root| root.join("images"))
}

fn has_any(mode: u32, bits: u32) -> bool {
    mode & bits != 0
}

/// `karapace-images-<uid>` under the system temp dir, made 0700 and used only while it is the
/// user's own directory that no one else may write: the cache's index names the blobs images
/// are made from, so a directory another user made first (the name is predictable) could feed
/// them theirs. Otherwise a fresh private directory, for this command only — one per process,
/// so every part of the command that asks for the cache gets the same one.
fn private_temp_cache() -> PathBuf {
    static CHOSEN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHOSEN.get_or_init(choose_private_temp_cache).clone()
}

fn choose_private_temp_cache() -> PathBuf {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = nix::unistd::geteuid().as_raw();
    let dir = std::env::temp_dir().join(format!("karapace-images-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() && m.uid() == uid && !has_any(m.mode(), 0o077) => dir,
        _ => {
            tracing::warn!(
                "{} is not a private directory of yours: images are cached for this command only",
                dir.display()
            );
            tempfile::Builder::new()
                .prefix("karapace-images-")
                .tempdir()
                // Where nothing can be made (below a file): the cache then fails, naming it.
                .map_or_else(
                    |_| PathBuf::from("/dev/null/karapace-images"),
                    tempfile::TempDir::keep,
                )
        }
    }
}

/// The archive caps of the config file at `config_file`: `archive_max_entries` and
/// `archive_max_bytes` (positive integers), each defaulting to [`ArchiveLimits::default`].
pub fn archive_limits_from(config_file: Option<&Path>) -> Result<ArchiveLimits> {
    let mut limits = ArchiveLimits::default();
    let Some(path) = config_file else {
        return Ok(limits);
    };
    let Some(table) = read_config(path)? else {
        return Ok(limits);
    };
    for (key, slot) in [
        (MAX_ENTRIES_CONFIG_KEY, &mut limits.max_entries),
        (MAX_BYTES_CONFIG_KEY, &mut limits.max_bytes),
    ] {
        match table.get(key) {
            None => {}
            Some(toml::Value::Integer(n)) if *n > 0 => *slot = n.unsigned_abs(),
            Some(_) => {
                return Err(ImageError::Config {
                    path: path.to_path_buf(),
                    message: format!("'{key}' must be a positive integer"),
                });
            }
        }
    }
    Ok(limits)
}

/// The `[image_aliases]` table of the config file at `config_file`: one `alias = "<distro>/<release>"`
/// line per alias (see [`UserAlias::new`] for what is refused — notably redefining a built-in
/// alias). Missing file or table: none. Sorted by alias.
pub fn user_aliases_from(config_file: Option<&Path>) -> Result<Vec<UserAlias>> {
    let Some(path) = config_file else {
        return Ok(Vec::new());
    };
    let Some(table) = read_config(path)? else {
        return Ok(Vec::new());
    };
    let config_err = |message: String| ImageError::Config {
        path: path.to_path_buf(),
        message,
    };
    let entries = match table.get(ALIASES_CONFIG_KEY) {
        None => return Ok(Vec::new()),
        Some(toml::Value::Table(t)) => t,
        Some(_) => {
            return Err(config_err(format!(
                "'{ALIASES_CONFIG_KEY}' must be a table of alias = \"<distro>/<release>\""
            )));
        }
    };
    let mut aliases: Vec<UserAlias> = Vec::with_capacity(entries.len());
    for (alias, target) in entries {
        let toml::Value::String(target) = target else {
            return Err(config_err(format!(
                "{ALIASES_CONFIG_KEY}.{alias}: must be a string \"<distro>/<release>\""
            )));
        };
        let entry = UserAlias::new(alias, target)
            .map_err(|m| config_err(format!("{ALIASES_CONFIG_KEY}: {m}")))?;
        if aliases.iter().any(|a| a.alias == entry.alias) {
            return Err(config_err(format!(
                "{ALIASES_CONFIG_KEY}: alias {:?} is given twice (aliases ignore case)",
                entry.alias
            )));
        }
        aliases.push(entry);
    }
    aliases.sort_by(|a, b| a.alias.cmp(&b.alias));
    Ok(aliases)
}

/// The precedence rule, separated from the process environment so it can be tested:
/// `env_value` (if non-empty) wins, then `image_server` in the TOML file at `config_file`
/// (a missing file is fine, a broken one is an error), then [`DEFAULT_SERVER`].
pub fn server_from(env_value: Option<&str>, config_file: Option<&Path>) -> Result<String> {
    if let Some(v) = env_value.map(str::trim).filter(|v| !v.is_empty()) {
        return normalize_server(v, SERVER_ENV);
    }
    if let Some(path) = config_file
        && let Some(table) = read_config(path)?
    {
        let config_err = |message: String| ImageError::Config {
            path: path.to_path_buf(),
            message,
        };
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
    Ok(DEFAULT_SERVER.to_string())
}

/// The config file at `path` as a TOML table; `None` when there is no such file. A file that
/// cannot be read or parsed is an error.
pub fn read_config(path: &Path) -> Result<Option<toml::Table>> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map(Some)
            .map_err(|e| ImageError::Config {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ImageError::io(path, e)),
    }
}

/// A `true`/`false` setting `key` of the config file at `config_file`: false when the file or
/// the key is absent, an error when the value is not a boolean.
pub fn config_flag(config_file: Option<&Path>, key: &str) -> Result<bool> {
    let Some(path) = config_file else {
        return Ok(false);
    };
    match read_config(path)?.as_ref().and_then(|t| t.get(key)) {
        None => Ok(false),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(_) => Err(ImageError::Config {
            path: path.to_path_buf(),
            message: format!("'{key}' must be true or false"),
        }),
    }
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

#[cfg(test)]
mod tests {
    use super::config_flag;

    #[test]
    fn a_flag_is_false_unless_the_file_says_true() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        assert!(!config_flag(None, "k").unwrap());
        assert!(!config_flag(Some(&file), "k").unwrap(), "no file");
        std::fs::write(&file, "image_server = \"https://x\"\n").unwrap();
        assert!(!config_flag(Some(&file), "k").unwrap(), "no key");
        std::fs::write(&file, "k = true\n").unwrap();
        assert!(config_flag(Some(&file), "k").unwrap());
        std::fs::write(&file, "k = false\n").unwrap();
        assert!(!config_flag(Some(&file), "k").unwrap());
        std::fs::write(&file, "k = \"yes\"\n").unwrap();
        let err = config_flag(Some(&file), "k").unwrap_err().to_string();
        assert!(err.contains("'k' must be true or false"), "{err}");
        std::fs::write(&file, "k = [\n").unwrap();
        assert!(config_flag(Some(&file), "k").is_err(), "broken file");
    }
}
