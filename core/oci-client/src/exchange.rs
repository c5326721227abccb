//! One logical request to the registry: authentication when challenged, redirects checked hop
//! by hop, and retries with backoff when the request is idempotent.
//!
//! Statuses the caller has to interpret (2xx, 3xx not followed, 4xx) come back as responses;
//! `429` and `5xx` are retried (idempotent requests) and otherwise become errors.

use std::io::Read;
use std::time::SystemTime;

use ureq::http::{HeaderName, HeaderValue, Method, header};
use url::Url;

use crate::auth::Scopes;
use crate::client::Client;
use crate::error::{OciError, Result, Subject};
use crate::retry::{self, Attempt, parse_retry_after};
use crate::transport::{OutBody, Response, header_str};
use crate::url_policy::UrlPolicy;

/// Redirect hops followed per request (storage redirects take one).
const MAX_REDIRECTS: u32 = 5;

/// Opens the body of a streamed upload; called again for each retry.
pub(crate) type Opener<'a> = dyn FnMut() -> Result<Box<dyn Read + 'a>> + 'a;

pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Stream { len: u64, open: &'a mut Opener<'a> },
}

pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Body<'a>,
    /// What to ask a token for if the registry challenges; `None`: never authenticate (the
    /// token endpoint itself), a `401` is returned to the caller.
    pub scopes: Option<&'a Scopes>,
    pub subject: &'a Subject,
    /// Safe to repeat: retried after connection failures, timeouts, `429` and `5xx`.
    pub idempotent: bool,
    /// Follow `3xx` (GET and HEAD only): a registry may send blob downloads to its storage.
    pub follow_redirects: bool,
}

impl Client {
    pub(crate) fn exchange(&self, mut request: Request<'_>) -> Result<Response> {
        let base = self.base_url()?;
        let policy = UrlPolicy::new(base, self.options.insecure);
        let idempotent = request.idempotent;
        retry::run(&self.options.retry, idempotent, || {
            self.attempt(&mut request, &policy)
        })
    }

    fn attempt(
        &self,
        request: &mut Request<'_>,
        policy: &UrlPolicy<'_>,
    ) -> Result<Attempt<Response>> {
        let subject = request.subject;
        let mut url = request.url.clone();
        let mut challenged = false;
        let mut hops = 0;
        loop {
            let own_origin = policy.is_registry_origin(&url);
            let mut headers = request.headers.clone();
            // Credentials and tokens go to the registry's origin only, never to a storage
            // host it redirects to.
            let authorization = match request.scopes {
                Some(scopes) if own_origin => self.authorization(scopes),
                _ => None,
            };
            let sent_authorization = authorization.is_some();
            if let Some(value) = authorization {
                headers.push((header::AUTHORIZATION, value));
            }
            let response = match self.send_once(request, &url, &headers)? {
                Ok(response) => response,
                Err(error) if error.is_transient() => {
                    return Ok(Attempt::Retry {
                        error,
                        retry_after: None,
                    });
                }
                Err(error) => return Err(error),
            };
            let status = response.status().as_u16();

            if status == 401
                && own_origin
                && let Some(scopes) = request.scopes
            {
                if challenged {
                    let errors = crate::transport::Transport::error_body(response);
                    return Err(OciError::Unauthorized {
                        registry: self.transport.registry(),
                        subject: subject.clone().into(),
                        reason: if sent_authorization {
                            "the registry refused the credentials or token (HTTP 401)"
                        } else {
                            "authentication required (HTTP 401)"
                        },
                        errors,
                    });
                }
                self.answer_challenge(&response, scopes, policy, subject)?;
                challenged = true;
                continue;
            }

            if request.follow_redirects
                && matches!(request.method, Method::GET | Method::HEAD)
                && matches!(status, 301 | 302 | 303 | 307 | 308)
            {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(self.protocol(subject, "too many redirects"));
                }
                let Some(location) = header_str(&response, "location") else {
                    return Err(self.protocol(subject, "a redirect without a Location"));
                };
                url = policy.resolve(&url, location).map_err(|(shown, reason)| {
                    OciError::UnsafeUrl {
                        registry: self.transport.registry(),
                        subject: subject.clone().into(),
                        what: "a redirect",
                        url: shown,
                        reason,
                    }
                })?;
                continue;
            }

            if status == 429 || status >= 500 {
                let retry_after = header_str(&response, "retry-after")
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let error = self
                    .transport
                    .status_error(&request.method, response, subject);
                return Ok(Attempt::Retry { error, retry_after });
            }
            return Ok(Attempt::Done(response));
        }
    }

    /// One request on the wire, the body (re)opened for it. The outer `Result` is the
    /// source's failure to open, the inner one the transport's.
    fn send_once(
        &self,
        request: &mut Request<'_>,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Result<Response>> {
        let body = match &mut request.body {
            Body::Empty => OutBody::Empty,
            Body::Bytes(bytes) => OutBody::Bytes(bytes),
            Body::Stream { len, open } => {
                let mut reader = open()?;
                return Ok(self.transport.send(
                    &request.method,
                    url,
                    headers,
                    OutBody::Reader {
                        len: *len,
                        reader: &mut reader,
                    },
                    request.subject,
                ));
            }
        };
        Ok(self
            .transport
            .send(&request.method, url, headers, body, request.subject))
    }

    pub(crate) fn protocol(&self, subject: &Subject, message: impl Into<String>) -> OciError {
        OciError::Protocol {
            registry: self.transport.registry(),
            subject: subject.clone().into(),
            message: message.into(),
        }
    }
}
