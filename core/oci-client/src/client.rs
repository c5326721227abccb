//! The client of one registry: its settings, what it learnt (scheme, authentication), and the
//! `/v2/` check. The operations live in `blob_read`, `blob_upload`, `manifest` and `tags`.

use std::sync::{Mutex, OnceLock};

use ureq::http::Method;
use url::Url;

use crate::auth::{AuthState, Scopes};
use crate::error::{OciError, Result, Subject};
use crate::exchange::{Body, Request};
use crate::names::RepositoryName;
use crate::options::ClientOptions;
use crate::registry::RegistryHost;
use crate::retry::{self, Attempt};
use crate::transport::{OutBody, Transport};

/// A blocking client of one OCI distribution registry.
///
/// `Send + Sync`: one client can serve several threads (uploads in parallel share its tokens).
pub struct Client {
    registry: RegistryHost,
    pub(crate) options: ClientOptions,
    pub(crate) transport: Transport,
    pub(crate) auth: Mutex<AuthState>,
    /// `https://host[:port]/` or, where allowed and HTTPS is not spoken, `http://…/`; settled
    /// by the first request.
    base: OnceLock<Url>,
}

impl Client {
    /// A client of `registry`. Reads the system's root certificates and `options.ca_file`
    /// (refused if it holds no certificate); makes no request yet.
    pub fn new(registry: RegistryHost, options: ClientOptions) -> Result<Self> {
        let transport = Transport::new(&registry, &options)?;
        Ok(Client {
            registry,
            options,
            transport,
            auth: Mutex::new(AuthState::default()),
            base: OnceLock::new(),
        })
    }

    pub fn registry(&self) -> &RegistryHost {
        &self.registry
    }

    /// Checks that the registry speaks the distribution API (`GET /v2/`) and that the
    /// configured credentials (or anonymous access) are accepted.
    pub fn check(&self) -> Result<()> {
        let url = self.v2_url("")?;
        let scopes = Scopes::registry();
        let subject = Subject::Registry;
        let response = self.exchange(Request {
            method: Method::GET,
            url,
            headers: Vec::new(),
            body: Body::Empty,
            scopes: Some(&scopes),
            subject: &subject,
            idempotent: true,
            follow_redirects: false,
        })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self
                .transport
                .status_error(&Method::GET, response, &subject))
        }
    }

    /// `<base>/v2/<path>`; `path` is built from validated names only.
    pub(crate) fn v2_url(&self, path: &str) -> Result<Url> {
        let base = self.base_url()?;
        base.join(&format!("v2/{path}"))
            .map_err(|_| self.protocol(&Subject::Registry, "cannot build a request URL"))
    }

    /// `/v2/<repository>/<rest>`.
    pub(crate) fn repository_url(&self, repository: &RepositoryName, rest: &str) -> Result<Url> {
        self.v2_url(&format!("{repository}/{rest}"))
    }

    /// The registry's base URL, settled on first use: HTTPS, except for loopback and insecure
    /// registries that do not speak it, which get plain HTTP.
    pub(crate) fn base_url(&self) -> Result<&Url> {
        if let Some(base) = self.base.get() {
            return Ok(base);
        }
        let settled = self.settle_scheme()?;
        Ok(self.base.get_or_init(|| settled))
    }

    fn settle_scheme(&self) -> Result<Url> {
        let at = |scheme: &str| {
            Url::parse(&format!("{scheme}://{}/", self.registry))
                .map_err(|_| self.protocol(&Subject::Registry, "not a usable registry address"))
        };
        let https = at("https")?;
        if !(self.registry.is_loopback() || self.options.insecure) {
            return Ok(https);
        }
        let http = at("http")?;
        // Loopback registries are plain HTTP by convention, and no one sits between the
        // client and them: try that first. Elsewhere (`insecure`), HTTPS first, so that an
        // active attacker cannot talk the client down to plain HTTP where HTTPS answers.
        let order = if self.registry.is_loopback() {
            [&http, &https]
        } else {
            [&https, &http]
        };
        retry::run(&self.options.retry, true, || {
            let mut failures = Vec::new();
            for base in order {
                match self.speaks(base) {
                    Ok(true) => {
                        tracing::debug!(registry = %self.registry, scheme = base.scheme(), "settled");
                        return Ok(Attempt::Done(base.clone()));
                    }
                    Ok(false) => {}
                    Err(error) => failures.push(error),
                }
            }
            // An HTTPS server whose certificate failed is the most useful thing to report.
            if let Some(tls) = failures
                .iter()
                .position(|e| matches!(e, OciError::Tls { .. }))
            {
                return Err(failures.swap_remove(tls));
            }
            match failures.into_iter().next() {
                Some(error) if error.is_transient() => Ok(Attempt::Retry {
                    error,
                    retry_after: None,
                }),
                Some(error) => Err(error),
                None => Err(self.protocol(
                    &Subject::Registry,
                    "it answers neither HTTPS nor plain HTTP like a registry",
                )),
            }
        })
    }

    /// Whether the server at `base` answers `GET /v2/` over that scheme. Any status shows it
    /// does (even 401 or 404), except a 400 to plain HTTP: that is how TLS servers answer a
    /// plaintext request, and no registry answers `/v2/` so.
    fn speaks(&self, base: &Url) -> Result<bool> {
        let url = base
            .join("v2/")
            .map_err(|_| self.protocol(&Subject::Registry, "cannot build a request URL"))?;
        let response =
            self.transport
                .send(&Method::GET, &url, &[], OutBody::Empty, &Subject::Registry)?;
        Ok(!(base.scheme() == "http" && response.status().as_u16() == 400))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_is_shared_between_threads_and_readers_move_between_them() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<super::Client>();
        send::<crate::BlobReader>();
    }
}
