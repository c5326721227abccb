//! Test support (feature `test-registry`): a real registry — Debian's `docker-registry` (CNCF
//! distribution) — on `127.0.0.1`, started in a temporary directory and killed when dropped
//! (also when a test panics).
//!
//! For this crate's tests and for any crate whose tests need a registry:
//! ```no_run
//! use karapace_oci_client::testing::{RegistryConfig, TestRegistry};
//! let registry = TestRegistry::start(&RegistryConfig::default());
//! let client = registry.client();
//! client.check().unwrap();
//! ```
//! Works as root and as an unprivileged user: everything lives in a temporary directory under
//! the system's temporary directory, owned by whoever runs the test.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Client, ClientOptions, Credentials, RegistryHost, RetryPolicy, Sha256Digest};

/// Where Debian's `docker-registry` package installs the registry.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
/// `htpasswd` from `apache2-utils`, for bcrypt password files.
pub const HTPASSWD_BINARY: &str = "/usr/bin/htpasswd";

/// How long a starting registry may take to answer `/v2/`.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// What the registry requires and serves.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// HTTP basic authentication with this user and password (a bcrypt `htpasswd` file).
    pub basic_auth: Option<(String, String)>,
    /// HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Bearer-token authentication (distribution's `auth: token`).
    pub token_auth: Option<TokenAuth>,
    /// Generate `http://` URLs (upload `Location`s) even when serving HTTPS: a registry that
    /// sends its clients down to plain HTTP (distribution's `http.host`).
    pub advertise_plain_http: bool,
}

/// Distribution's `auth: token` settings: tokens from `realm`, for `service`, signed by
/// `issuer` with a key whose certificate chains to `root_cert_bundle`.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub root_cert_bundle: PathBuf,
}

/// A running `docker-registry`; killed and its directory removed on drop.
pub struct TestRegistry {
    child: Child,
    addr: SocketAddr,
    https: bool,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a registry on a free port of 127.0.0.1 and waits until `/v2/` answers. Panics
    /// with the registry's log when it cannot (a test cannot go on without it; a missing
    /// binary means `scripts/install-deps` was not run).
    pub fn start(config: &RegistryConfig) -> Self {
        assert!(
            Path::new(REGISTRY_BINARY).exists(),
            "{REGISTRY_BINARY} is missing: run scripts/install-deps (package docker-registry)"
        );
        let dir = tempfile::Builder::new()
            .prefix("karapace-registry-")
            .tempdir()
            .expect("a temporary directory for the test registry");
        let log_path = dir.path().join("registry.log");
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        // The port is free when chosen but could be taken before the registry binds it: retry.
        for _ in 0..5 {
            let addr = free_port();
            let config_path = write_config(dir.path(), addr, config)
                .expect("writing the test registry's configuration");
            let log = fs::File::create(&log_path).expect("creating the test registry's log");
            let mut child = Command::new(REGISTRY_BINARY)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .expect("starting docker-registry");
            if wait_until_ready(&mut child, &format!("{scheme}://{addr}/v2/")) {
                return TestRegistry {
                    child,
                    addr,
                    https: config.tls.is_some(),
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start; its log:\n{}",
            fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    pub fn host(&self) -> RegistryHost {
        RegistryHost::parse(&self.address()).expect("127.0.0.1:<port> is a valid registry host")
    }

    /// `http://127.0.0.1:<port>` or `https://…`.
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The registry's storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file holding blob `digest` in the registry's filesystem storage.
    pub fn blob_data_path(&self, digest: &Sha256Digest) -> PathBuf {
        let hex = digest.hex();
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// What the registry logged so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Options for a client of this registry: quick retries, so failure tests stay short.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            retry: RetryPolicy {
                attempts: 3,
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(100),
                max_retry_after: Duration::from_secs(2),
            },
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            ..ClientOptions::default()
        }
    }

    /// An anonymous client of this registry.
    pub fn client(&self) -> Client {
        self.client_with(self.client_options())
    }

    /// A client with `options`.
    pub fn client_with(&self, options: ClientOptions) -> Client {
        Client::new(self.host(), options).expect("a client of the test registry")
    }

    /// A client authenticating as `user`.
    pub fn client_as(&self, user: &str, password: &str) -> Client {
        self.client_with(ClientOptions {
            credentials: Some(Credentials::new(user, password)),
            ..self.client_options()
        })
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `url` until the registry answers it (any status), or gives up when the process
/// exits (port taken, bad configuration) or the startup limit passes.
fn wait_until_ready(child: &mut Child, url: &str) -> bool {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .tls_config(
            // Only to see that the server answers; the tests verify its certificate.
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .build()
        .new_agent();
    let started = Instant::now();
    while started.elapsed() < STARTUP_LIMIT {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if agent.get(url).call().is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
}

/// Writes `config.yml` (and the htpasswd file) for a registry on `addr`.
fn write_config(dir: &Path, addr: SocketAddr, config: &RegistryConfig) -> io::Result<PathBuf> {
    let storage = dir.join("storage");
    fs::create_dir_all(&storage)?;
    let mut yaml = String::new();
    let _ = write!(
        yaml,
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: karapace-test-secret\n",
        storage = quote(&storage),
    );
    if config.advertise_plain_http {
        let _ = writeln!(yaml, "  host: 'http://{addr}'");
    }
    if let Some((cert, key)) = &config.tls {
        let _ = write!(
            yaml,
            "  tls:\n    certificate: {}\n    key: {}\n",
            quote(cert),
            quote(key)
        );
    }
    if let Some((user, password)) = &config.basic_auth {
        let htpasswd = dir.join("htpasswd");
        let out = Command::new(HTPASSWD_BINARY)
            .args(["-B", "-b", "-n", user, password])
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "htpasswd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        fs::write(&htpasswd, &out.stdout)?;
        let _ = write!(
            yaml,
            "auth:\n  htpasswd:\n    realm: karapace-test\n    path: {}\n",
            quote(&htpasswd)
        );
    } else if let Some(token) = &config.token_auth {
        let _ = write!(
            yaml,
            "auth:\n  token:\n    realm: '{}'\n    service: '{}'\n    issuer: '{}'\n    rootcertbundle: {}\n",
            token.realm,
            token.service,
            token.issuer,
            quote(&token.root_cert_bundle)
        );
    }
    let path = dir.join("config.yml");
    fs::write(&path, yaml)?;
    Ok(path)
}

/// A path as a single-quoted YAML scalar.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}
