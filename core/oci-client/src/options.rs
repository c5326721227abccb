//! How a [`Client`](crate::Client) connects: transport security, credentials, timeouts, retries
//! and size limits.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Manifests larger than this are refused by default (the limit CNCF distribution and most
/// registries enforce on upload).
pub const DEFAULT_MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// Connection settings for one registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Allow plain HTTP to a registry that is not on a loopback address (the "insecure registry"
    /// of container tools). HTTPS is tried first and used when it answers, and its certificate
    /// is still verified: `insecure` never disables verification. Loopback registries
    /// (`localhost`, `127.0.0.0/8`, `::1`) may use plain HTTP without it; for them plain HTTP
    /// is tried first (nothing sits between the client and them to tamper with the choice).
    pub insecure: bool,
    /// A PEM file of extra CA certificates trusted besides the system's (a private registry's CA).
    pub ca_file: Option<PathBuf>,
    /// `None`: anonymous (bearer tokens are still requested anonymously when a registry asks).
    pub credentials: Option<Credentials>,
    /// Longest wait for name resolution and for a TCP+TLS connection.
    pub connect_timeout: Duration,
    /// Longest silence while sending or receiving: restarts with every read and write, so a slow
    /// but moving transfer never trips it, a registry that stops answering does.
    pub stall_timeout: Duration,
    pub retry: RetryPolicy,
    /// Manifests (up or down) larger than this are refused.
    pub max_manifest_size: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            ca_file: None,
            credentials: None,
            connect_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_mins(1),
            retry: RetryPolicy::default(),
            max_manifest_size: DEFAULT_MAX_MANIFEST_SIZE,
        }
    }
}

/// Retries of idempotent requests after connection failures, timeouts, `5xx` and `429`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries per request, the first included (`1`: never retry).
    pub attempts: u32,
    /// Wait before the first retry; doubles with each further one.
    pub initial_backoff: Duration,
    /// Cap of the doubling wait.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; a registry asking for a longer wait gets its error
    /// reported at once rather than a silently hanging client.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_mins(1),
        }
    }
}

/// A user name and password for HTTP basic authentication, and for the token endpoint of
/// registries that use bearer tokens. The password never appears in `Debug` output or in errors.
#[derive(Clone)]
pub struct Credentials {
    username: String,
    password: Secret,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: Secret(password.into()),
        }
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub(crate) fn password(&self) -> &Secret {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// A password or token: readable by this crate, printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_password() {
        let c = Credentials::new("alice", "hunter2-secret");
        let text = format!(
            "{c:?} {:?}",
            ClientOptions {
                credentials: Some(c.clone()),
                ..ClientOptions::default()
            }
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("alice"));
    }
}
