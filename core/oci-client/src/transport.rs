//! One HTTP request to a registry (or its token endpoint, or its blob storage), with bounded
//! waits, and ureq's failures turned into [`OciError`]s that say which registry and what.
//!
//! Nothing here retries, authenticates or follows redirects: that is `exchange`'s job. The agent
//! never follows redirects itself (each hop is checked by `url_policy`) and never asks for
//! compressed bodies (blob bytes must arrive exactly as they were hashed).

use std::io::{self, Read};

use ureq::http::{HeaderName, HeaderValue, Method, header};
use url::Url;

use crate::error::{OciError, RegistryErrors, Result, Subject};
use std::time::Duration;

use crate::options::ClientOptions;
use crate::registry::RegistryHost;
use crate::tls;

/// Error bodies are read up to this many bytes (the rest is not needed to report them).
const MAX_ERROR_BODY: u64 = 64 * 1024;

pub(crate) type Response = ureq::http::Response<ureq::Body>;

/// A request body.
pub(crate) enum OutBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Exactly `len` bytes from `reader`, sent with `Content-Length` (never chunked).
    Reader {
        len: u64,
        reader: &'a mut dyn Read,
    },
}

/// A configured HTTP agent for one registry.
pub(crate) struct Transport {
    agent: ureq::Agent,
    pub(crate) errors: ErrorContext,
}

/// What turning a transport failure into an [`OciError`] needs; cheap to clone into readers
/// that outlive a request.
#[derive(Debug, Clone)]
pub(crate) struct ErrorContext {
    /// `host[:port]`, as errors name the registry.
    pub(crate) registry: String,
    connect_timeout: Duration,
    stall_timeout: Duration,
}

impl Transport {
    pub(crate) fn new(registry: &RegistryHost, options: &ClientOptions) -> Result<Self> {
        let roots = tls::root_certs(options.ca_file.as_deref())?;
        let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_resolve(Some(options.connect_timeout))
            .timeout_connect(Some(options.connect_timeout))
            .timeout_send_request(Some(options.stall_timeout))
            .timeout_recv_response(Some(options.stall_timeout))
            .timeout_per_read(Some(options.stall_timeout))
            .timeout_per_write(Some(options.stall_timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .accept_encoding("")
            .user_agent(format!("karapace/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Transport {
            agent,
            errors: ErrorContext {
                registry: registry.to_string(),
                connect_timeout: options.connect_timeout,
                stall_timeout: options.stall_timeout,
            },
        })
    }

    /// `host[:port]` of the registry, for errors.
    pub(crate) fn registry(&self) -> String {
        self.errors.registry.clone()
    }

    /// Sends one request and returns whatever status came back; only transport failures are
    /// errors.
    pub(crate) fn send(
        &self,
        method: &Method,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        body: OutBody<'_>,
        subject: &Subject,
    ) -> Result<Response> {
        let mut builder = ureq::http::Request::builder()
            .method(method.clone())
            .uri(url.as_str());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let sends_body = matches!(*method, Method::PUT | Method::POST | Method::PATCH);
        let result = match body {
            OutBody::Empty if sends_body => {
                builder.body(&[][..]).map(|request| self.agent.run(request))
            }
            OutBody::Empty => builder
                .body(ureq::SendBody::none())
                .map(|request| self.agent.run(request)),
            OutBody::Bytes(bytes) => builder.body(bytes).map(|request| self.agent.run(request)),
            OutBody::Reader { len, reader } => builder
                .header(header::CONTENT_LENGTH, len)
                .body(ureq::SendBody::from_reader(reader))
                .map(|request| self.agent.run(request)),
        };
        let result = result.map_err(|e| OciError::Network {
            registry: self.registry(),
            subject: subject.clone().into(),
            message: format!("cannot build the request: {e}"),
        })?;
        tracing::debug!(
            %method,
            url = %crate::url_policy::redact(url),
            status = result.as_ref().map(|r| r.status().as_u16()).ok(),
            "registry request"
        );
        result.map_err(|e| self.errors.map_error(subject, &e))
    }

    /// A whole body of at most `limit` bytes (announced or actual), else [`OciError::TooLarge`].
    pub(crate) fn read_limited(
        &self,
        response: Response,
        limit: u64,
        subject: &Subject,
    ) -> Result<Vec<u8>> {
        let too_large = || OciError::TooLarge {
            registry: self.registry(),
            subject: subject.clone().into(),
            limit,
        };
        if content_length(&response).is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        response
            .into_body()
            .into_with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => too_large(),
                other => self.errors.map_error(subject, &other),
            })
    }

    /// The registry's error entries from a failed response (the start of its body).
    pub(crate) fn error_body(response: Response) -> RegistryErrors {
        let mut body = Vec::new();
        // An error body that cannot be read adds nothing to the status; it is not an error.
        let _ = response
            .into_body()
            .into_reader()
            .take(MAX_ERROR_BODY)
            .read_to_end(&mut body);
        RegistryErrors::from_body(&body)
    }

    /// The error for an unexpected status: 404, 401, 403 and the rest each have their variant.
    pub(crate) fn status_error(
        &self,
        method: &Method,
        response: Response,
        subject: &Subject,
    ) -> OciError {
        let status = response.status().as_u16();
        let errors = Self::error_body(response);
        let registry = self.registry();
        let subject = Box::new(subject.clone());
        match status {
            404 => OciError::NotFound {
                registry,
                subject,
                errors,
            },
            401 => OciError::Unauthorized {
                registry,
                subject,
                reason: "authentication required (HTTP 401)",
                errors,
            },
            403 => OciError::Denied {
                registry,
                subject,
                errors,
            },
            _ => OciError::Status {
                registry,
                subject,
                method: method.to_string(),
                status,
                errors,
            },
        }
    }
}

impl ErrorContext {
    pub(crate) fn map_error(&self, subject: &Subject, e: &ureq::Error) -> OciError {
        let registry = self.registry.clone();
        let subject = Box::new(subject.clone());
        match e {
            ureq::Error::Timeout(t) => {
                let (phase, after) = match t {
                    ureq::Timeout::Resolve | ureq::Timeout::Connect => {
                        ("while connecting", self.connect_timeout)
                    }
                    ureq::Timeout::SendRequest
                    | ureq::Timeout::SendBody
                    | ureq::Timeout::PerWrite => ("while sending", self.stall_timeout),
                    _ => ("from the registry", self.stall_timeout),
                };
                OciError::Timeout {
                    registry,
                    subject,
                    phase,
                    after,
                }
            }
            ureq::Error::Io(io) => self.map_io(&subject, io),
            ureq::Error::BodyExceedsLimit(limit) => OciError::TooLarge {
                registry,
                subject,
                limit: *limit,
            },
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => OciError::Tls {
                registry,
                subject,
                message: e.to_string(),
            },
            ureq::Error::Protocol(_) | ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
                OciError::Protocol {
                    registry,
                    subject,
                    message: crate::error::sanitize(&e.to_string()),
                }
            }
            other => OciError::Network {
                registry,
                subject,
                message: crate::error::sanitize(&other.to_string()),
            },
        }
    }

    /// An I/O error while talking to the registry (ureq reports its own timeouts and TLS
    /// failures through io errors when reading a body).
    pub(crate) fn map_io(&self, subject: &Subject, e: &io::Error) -> OciError {
        if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
            return self.map_error(subject, inner);
        }
        // A failed handshake (untrusted certificate, wrong name, not TLS at all) reaches us as
        // an I/O error wrapping rustls' own.
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return OciError::Tls {
                registry: self.registry.clone(),
                subject: subject.clone().into(),
                message: crate::error::sanitize(&tls.to_string()),
            };
        }
        if matches!(
            e.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ) {
            return OciError::Timeout {
                registry: self.registry.clone(),
                subject: subject.clone().into(),
                phase: "from the registry",
                after: self.stall_timeout,
            };
        }
        OciError::Network {
            registry: self.registry.clone(),
            subject: subject.clone().into(),
            message: crate::error::sanitize(&e.to_string()),
        }
    }
}

/// A response header as text; `None` when absent or not visible ASCII.
pub(crate) fn header_str<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name)?.to_str().ok()
}

/// The announced body length, if any.
pub(crate) fn content_length(response: &Response) -> Option<u64> {
    header_str(response, "content-length")?.trim().parse().ok()
}
