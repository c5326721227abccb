//! Which remote push and pull talk to, and with what credentials: `--remote <URL>`, else
//! `~/.config/karapace/remote.json` (`{"url", "auth_token"}` — the standard tool's file — plus
//! our optional `"insecure"` and `"ca_cert"`); the token may also come from
//! `KARAPACE_REMOTE_TOKEN`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{CoreError, Result};

/// Environment variable holding the remote's token (wins over the file's).
pub const TOKEN_VAR: &str = "KARAPACE_REMOTE_TOKEN";
/// Largest `remote.json` read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// How the environment moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `http://`, `https://`: protocol v1.
    V1,
    /// `oci://`: OCI distribution.
    Oci,
}

/// A resolved remote.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    pub url: String,
    pub transport: Transport,
    pub token: Option<String>,
    /// Plain HTTP to a non-loopback OCI registry (never implied).
    pub insecure: bool,
    /// Extra CA certificate (PEM) trusted besides the system roots.
    pub ca_cert: Option<PathBuf>,
}

impl std::fmt::Debug for RemoteConfig {
    // The token never reaches a log or an error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("transport", &self.transport)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("insecure", &self.insecure)
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    url: Option<String>,
    auth_token: Option<String>,
    #[serde(default)]
    insecure: bool,
    ca_cert: Option<PathBuf>,
}

/// `~/.config/karapace/remote.json` (`None` without `HOME`).
pub fn config_file_path() -> Option<PathBuf> {
    karapace_dirs::home().map(|h| h.join(".config/karapace/remote.json"))
}

fn transport_of(url: &str) -> Option<Transport> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        // No host, or credentials in the URL (they would end up in logs and messages).
        return None;
    }
    match scheme {
        "http" | "https" => Some(Transport::V1),
        "oci" => Some(Transport::Oci),
        _ => None,
    }
}

/// `url` with any `user:password@` part replaced, for messages.
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<credentials>@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn read_file(path: &Path) -> Result<Option<ConfigFile>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CoreError::io(format!("cannot read {}", path.display()), e)),
    };
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| CoreError::io(format!("cannot read {}", path.display()), e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        CoreError::Remote(format!(
            "{} is not valid: {e} (expected {{\"url\": \"https://…\", \"auth_token\": \"…\"}})",
            path.display()
        ))
    })
}

/// Resolves the remote from the `--remote` flag, the config file at `file` and the token
/// variable `env_token`. The file's token is only sent to the file's own URL: `--remote` naming
/// another server must not receive it.
pub fn resolve_with(
    flag: Option<&str>,
    file: Option<&Path>,
    env_token: Option<String>,
) -> Result<RemoteConfig> {
    let config = match file {
        Some(path) => read_file(path)?,
        None => None,
    };
    let file_url = config.as_ref().and_then(|c| c.url.clone());
    let (url, from_file) = match (flag, &file_url) {
        (Some(flag), _) => (
            flag.to_string(),
            file_url.as_deref().is_some_and(|u| same_url(u, flag)),
        ),
        (None, Some(u)) => (u.clone(), true),
        (None, None) => {
            return Err(CoreError::Remote(format!(
                "no remote configured: pass --remote <URL> or write {} with {{\"url\": \"https://host:8321\"}} \
                 (or \"oci://registry/prefix\" for an OCI registry)",
                file.map_or_else(
                    || "~/.config/karapace/remote.json".to_string(),
                    |p| p.display().to_string()
                )
            )));
        }
    };
    let transport = transport_of(&url).ok_or_else(|| {
        let message = format!(
            "invalid remote URL '{}': expected http://host[:port][/prefix], https://… or \
             oci://host[:port]/<repository-prefix>, without credentials (use auth_token or {TOKEN_VAR})",
            redacted(&url)
        );
        if flag.is_some() {
            CoreError::Usage(message)
        } else {
            CoreError::Remote(message)
        }
    })?;
    let file_part = config.filter(|_| from_file);
    let token = env_token
        .filter(|t| !t.is_empty())
        .or_else(|| file_part.as_ref().and_then(|c| c.auth_token.clone()))
        .filter(|t| !t.is_empty());
    Ok(RemoteConfig {
        url: url.trim_end_matches('/').to_string(),
        transport,
        token,
        insecure: file_part.as_ref().is_some_and(|c| c.insecure),
        ca_cert: file_part.and_then(|c| c.ca_cert),
    })
}

/// [`resolve_with`] for this user: the real config file and token variable.
pub fn resolve(flag: Option<&str>) -> Result<RemoteConfig> {
    resolve_with(
        flag,
        config_file_path().as_deref(),
        std::env::var(TOKEN_VAR).ok(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("remote.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn the_flag_wins_and_the_files_token_stays_with_the_files_url() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            dir.path(),
            r#"{"url": "https://a.example:8321/", "auth_token": "secret", "ca_cert": "/ca.pem"}"#,
        );
        let c = resolve_with(None, Some(&f), None).unwrap();
        assert_eq!(c.url, "https://a.example:8321");
        assert_eq!(c.token.as_deref(), Some("secret"));
        assert_eq!(c.transport, Transport::V1);
        let same = resolve_with(Some("https://a.example:8321"), Some(&f), None).unwrap();
        assert_eq!(same.token.as_deref(), Some("secret"));
        let other = resolve_with(Some("http://127.0.0.1:9"), Some(&f), None).unwrap();
        assert_eq!(
            other.token, None,
            "the file's token must not go to another server"
        );
        assert_eq!(other.ca_cert, None);
        let env = resolve_with(Some("http://127.0.0.1:9"), Some(&f), Some("t2".into())).unwrap();
        assert_eq!(env.token.as_deref(), Some("t2"));
        assert!(!format!("{env:?}").contains("t2"), "Debug hides the token");
    }

    #[test]
    fn no_remote_bad_urls_and_bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let none = resolve_with(None, Some(&dir.path().join("absent.json")), None).unwrap_err();
        assert!(none.to_string().contains("no remote configured"), "{none}");
        assert_eq!(none.exit_code(), 1);
        for bad in [
            "ftp://x",
            "http://",
            "https://user:pw@host",
            "host:8321",
            "oci:///x",
        ] {
            let e = resolve_with(Some(bad), None, None).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
            assert!(!e.to_string().contains(":pw@"), "{e}");
        }
        let f = file(dir.path(), "{not json");
        let e = resolve_with(None, Some(&f), None).unwrap_err();
        assert!(e.to_string().contains("is not valid"), "{e}");
        let oci = resolve_with(Some("oci://127.0.0.1:5000/team"), None, None).unwrap();
        assert_eq!(oci.transport, Transport::Oci);
    }
}
