//! Authentication: anonymous, HTTP basic, and the registry token flow (a `401` with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` → a token from the realm → the request
//! again with `Authorization: Bearer …`).
//!
//! Tokens are cached per set of scopes until shortly before they expire. Basic credentials are
//! only sent after the registry asked for them (then with every request to it). Neither
//! credentials nor tokens are ever logged or put in an error; header values holding them are
//! marked sensitive.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use ureq::http::{HeaderName, HeaderValue, Method, header};
use url::Url;

use crate::challenge::{Challenge, parse_challenges};
use crate::client::Client;
use crate::error::{OciError, Result, Subject};
use crate::exchange::{Body, Request};
use crate::names::RepositoryName;
use crate::options::Credentials;
use crate::transport::Response;
use crate::url_policy::{UrlPolicy, redact};

/// Token endpoint answers larger than this are refused (tokens are a few KiB).
const MAX_TOKEN_RESPONSE: u64 = 1024 * 1024;
/// The token spec's default lifetime when the endpoint does not say.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_mins(1);
/// A token is dropped this long before it expires, so it does not expire in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// What a request needs access to, in the token spec's terms (`repository:<name>:<actions>`).
/// Names are validated, so a scope cannot smuggle a second one in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scopes(Vec<String>);

impl Scopes {
    /// `/v2/` itself: no repository.
    pub(crate) fn registry() -> Self {
        Scopes(Vec::new())
    }

    pub(crate) fn pull(repository: &RepositoryName) -> Self {
        Scopes(vec![format!("repository:{repository}:pull")])
    }

    pub(crate) fn push(repository: &RepositoryName) -> Self {
        Scopes(vec![format!("repository:{repository}:pull,push")])
    }

    /// Push to `repository` and read `from` (a cross-repository mount needs both).
    pub(crate) fn mount(repository: &RepositoryName, from: &RepositoryName) -> Self {
        let mut scopes = Self::push(repository);
        scopes.0.push(format!("repository:{from}:pull"));
        scopes
    }

    fn cache_key(&self) -> String {
        self.0.join(" ")
    }
}

/// What the client has learnt about authenticating to its registry.
#[derive(Default)]
pub(crate) struct AuthState {
    /// The registry asked for basic authentication: credentials go with every request.
    basic: bool,
    /// Bearer tokens by the scopes they were obtained for.
    tokens: HashMap<String, CachedToken>,
}

struct CachedToken {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    expires: Instant,
}

/// The token endpoint's answer (`token`, or the `access_token` of OAuth 2).
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Client {
    /// The `Authorization` value for a request to the registry's own origin needing `scopes`,
    /// if the client has one.
    pub(crate) fn authorization(&self, scopes: &Scopes) -> Option<HeaderValue> {
        let mut state = self.auth.lock().unwrap_or_else(PoisonError::into_inner);
        if state.basic {
            return self.options.credentials.as_ref().and_then(basic_header);
        }
        let key = scopes.cache_key();
        match state.tokens.get(&key) {
            Some(token) if token.expires > Instant::now() => Some(token.header.clone()),
            Some(_) => {
                state.tokens.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Acts on a `401` from the registry: obtains a bearer token for `scopes` (plus whatever
    /// the challenge asks for), or switches to basic authentication. Refuses a token realm the
    /// URL policy refuses (an HTTPS registry sending the client to plain HTTP, …), a challenge
    /// for basic authentication when no credentials are configured, and unknown schemes.
    pub(crate) fn answer_challenge(
        &self,
        response: &Response,
        scopes: &Scopes,
        policy: &UrlPolicy<'_>,
        subject: &Subject,
    ) -> Result<()> {
        let challenges: Vec<Challenge> = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let unauthorized = |reason| OciError::Unauthorized {
            registry: self.transport.registry(),
            subject: subject.clone().into(),
            reason,
            errors: crate::error::RegistryErrors::default(),
        };
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let header = self.fetch_token(bearer, scopes, policy, subject)?;
            let mut state = self.auth.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            state.tokens.retain(|_, t| t.expires > now);
            state.tokens.insert(scopes.cache_key(), header);
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            if self.options.credentials.is_none() {
                return Err(unauthorized(
                    "the registry requires a user name and password, and none is configured",
                ));
            }
            self.auth
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .basic = true;
            return Ok(());
        }
        Err(unauthorized(
            "HTTP 401 without a bearer or basic challenge this client can answer",
        ))
    }

    fn fetch_token(
        &self,
        challenge: &Challenge,
        scopes: &Scopes,
        policy: &UrlPolicy<'_>,
        subject: &Subject,
    ) -> Result<CachedToken> {
        let registry = &self.transport.registry();
        let protocol = |message: &str| OciError::Protocol {
            registry: registry.clone(),
            subject: subject.clone().into(),
            message: message.to_string(),
        };
        let Some(realm) = challenge.param("realm") else {
            return Err(protocol("a bearer challenge without a realm"));
        };
        let mut url = Url::parse(realm).map_err(|_| protocol("the token realm is not a URL"))?;
        policy.check(&url).map_err(|reason| OciError::UnsafeUrl {
            registry: registry.clone(),
            subject: subject.clone().into(),
            what: "the token realm",
            url: redact(&url),
            reason,
        })?;
        let token_subject = Subject::TokenEndpoint {
            realm: redact(&url),
        };
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            let mut wanted: Vec<&str> = scopes.0.iter().map(String::as_str).collect();
            for asked in challenge.param("scope").unwrap_or("").split(' ') {
                if !asked.is_empty() && !wanted.contains(&asked) {
                    wanted.push(asked);
                }
            }
            for scope in wanted {
                query.append_pair("scope", scope);
            }
        }
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        if let Some(value) = self.options.credentials.as_ref().and_then(basic_header) {
            headers.push((header::AUTHORIZATION, value));
        }
        let response = self.exchange(Request {
            method: Method::GET,
            url,
            headers,
            body: Body::Empty,
            scopes: None,
            subject: &token_subject,
            idempotent: true,
            follow_redirects: false,
        })?;
        match response.status().as_u16() {
            200..=299 => {}
            401 | 403 => {
                let errors = crate::transport::Transport::error_body(response);
                return Err(OciError::Unauthorized {
                    registry: registry.clone(),
                    subject: token_subject.into(),
                    reason: if self.options.credentials.is_some() {
                        "the token endpoint refused the credentials"
                    } else {
                        "the token endpoint refused an anonymous token; credentials are needed"
                    },
                    errors,
                });
            }
            _ => {
                return Err(self
                    .transport
                    .status_error(&Method::GET, response, &token_subject));
            }
        }
        let body = self
            .transport
            .read_limited(response, MAX_TOKEN_RESPONSE, &token_subject)?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| protocol("the token endpoint's answer is not the expected JSON"))?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs)
            .max(DEFAULT_TOKEN_LIFETIME)
            .min(Duration::from_hours(24));
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| protocol("the token endpoint answered without a token"))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| protocol("the token endpoint answered a token that is not header-safe"))?;
        header.set_sensitive(true);
        Ok(CachedToken {
            header,
            expires: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
        })
    }
}

fn basic_header(credentials: &Credentials) -> Option<HeaderValue> {
    let raw = format!(
        "{}:{}",
        credentials.username(),
        credentials.password().expose()
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_the_repositories_and_actions_a_request_needs() {
        let a = RepositoryName::new("team/app").unwrap();
        let b = RepositoryName::new("base").unwrap();
        assert_eq!(Scopes::pull(&a).cache_key(), "repository:team/app:pull");
        assert_eq!(
            Scopes::mount(&a, &b).cache_key(),
            "repository:team/app:pull,push repository:base:pull"
        );
    }

    #[test]
    fn the_basic_header_is_sensitive() {
        let value = basic_header(&Credentials::new("alice", "s3cret")).unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("YWxpY2U6czNjcmV0"));
    }
}
