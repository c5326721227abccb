//! Which URLs a registry may send the client to (upload `Location`s, redirects, `Link`s, token
//! realms), and which of them get the user's credentials.
//!
//! The rules: only `http`/`https`; never from HTTPS down to HTTP; plain HTTP only to loopback
//! hosts unless the user marked the registry insecure; no user info in URLs. Credentials and
//! tokens go to the registry's own origin (and basic credentials to the token realm, which is
//! how the token protocol works); a redirect to another origin (blob storage) is followed
//! without them.

use url::Url;

use crate::registry::is_loopback_host;

/// URLs in errors are cut to this many characters.
const MAX_URL_CHARS: usize = 200;

pub(crate) struct UrlPolicy<'a> {
    /// `scheme://host[:port]/` of the registry, after the scheme was settled.
    base: &'a Url,
    insecure: bool,
}

impl<'a> UrlPolicy<'a> {
    pub(crate) fn new(base: &'a Url, insecure: bool) -> Self {
        UrlPolicy { base, insecure }
    }

    /// `location` (absolute, scheme-relative or relative to `current`, query kept) if the
    /// client may follow it; otherwise the reason it may not.
    pub(crate) fn resolve(
        &self,
        current: &Url,
        location: &str,
    ) -> Result<Url, (String, &'static str)> {
        let url = current
            .join(location)
            .map_err(|_| (crate::error::sanitize(location), "not a valid URL"))?;
        self.check(&url).map_err(|reason| (redact(&url), reason))?;
        Ok(url)
    }

    /// Whether the client may send a request to `url`.
    pub(crate) fn check(&self, url: &Url) -> Result<(), &'static str> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err("only http and https URLs are followed"),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("URLs carrying user info are refused");
        }
        let Some(host) = url.host() else {
            return Err("the URL has no host");
        };
        if !https {
            if self.base.scheme() == "https" {
                return Err("it would downgrade HTTPS to plain HTTP");
            }
            if !self.insecure && !is_loopback_host(&host) {
                return Err("plain HTTP is only allowed to loopback hosts or an insecure registry");
            }
        }
        Ok(())
    }

    /// Whether `url` is on the registry's own origin (scheme, host and port), the only place
    /// the registry's credentials and tokens are sent.
    pub(crate) fn is_registry_origin(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }
}

/// `scheme://host[:port]/path`, without user info, query or fragment, cut to a printable
/// length: what an error may show of a URL (queries carry upload state and storage signatures).
pub(crate) fn redact(url: &Url) -> String {
    let mut shown = format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    );
    shown.push_str(url.path());
    if shown.len() > MAX_URL_CHARS {
        let cut = shown
            .char_indices()
            .nth(MAX_URL_CHARS)
            .map_or(shown.len(), |(i, _)| i);
        shown.truncate(cut);
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn relative_and_absolute_locations_resolve_with_their_query() {
        let base = url("https://r.example/");
        let policy = UrlPolicy::new(&base, false);
        let current = url("https://r.example/v2/a/blobs/uploads/");
        let rel = policy
            .resolve(&current, "/v2/a/blobs/uploads/u1?_state=x%3D")
            .unwrap();
        assert_eq!(
            rel.as_str(),
            "https://r.example/v2/a/blobs/uploads/u1?_state=x%3D"
        );
        let abs = policy
            .resolve(&current, "https://r.example/v2/a/blobs/uploads/u2?s=1")
            .unwrap();
        assert_eq!(abs.query(), Some("s=1"));
        let storage = policy
            .resolve(&current, "https://cdn.example/x?sig=1")
            .unwrap();
        assert!(!policy.is_registry_origin(&storage));
        assert!(policy.is_registry_origin(&rel));
    }

    #[test]
    fn https_never_downgrades_to_http() {
        let base = url("https://r.example/");
        let policy = UrlPolicy::new(&base, true);
        let current = url("https://r.example/v2/");
        for bad in [
            "http://r.example/v2/a/blobs/uploads/u",
            "http://127.0.0.1/token",
            "//r.example:80/x",
        ] {
            let resolved = policy.resolve(&current, bad);
            if bad.starts_with("//") {
                assert!(resolved.is_ok(), "scheme-relative keeps https");
            } else {
                let (_, reason) = resolved.unwrap_err();
                assert!(reason.contains("downgrade"), "{bad}: {reason}");
            }
        }
    }

    #[test]
    fn plain_http_goes_only_to_loopback_unless_insecure() {
        let base = url("http://127.0.0.1:5000/");
        let strict = UrlPolicy::new(&base, false);
        assert!(strict.check(&url("http://localhost:9/token")).is_ok());
        assert!(strict.check(&url("http://[::1]:9/token")).is_ok());
        assert!(strict.check(&url("http://auth.example/token")).is_err());
        assert!(strict.check(&url("https://auth.example/token")).is_ok());
        let insecure = UrlPolicy::new(&base, true);
        assert!(insecure.check(&url("http://auth.example/token")).is_ok());
    }

    #[test]
    fn other_schemes_and_user_info_are_refused() {
        let base = url("https://r.example/");
        let policy = UrlPolicy::new(&base, true);
        for bad in [
            "file:///etc/passwd",
            "ftp://r.example/x",
            "https://user:pw@r.example/x",
            "data:text/plain,x",
        ] {
            assert!(policy.check(&url(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_show_no_query_and_no_user_info() {
        let shown = redact(&url(
            "https://u:p@cdn.example:8443/blob/x?X-Amz-Signature=secret#f",
        ));
        assert_eq!(shown, "https://cdn.example:8443/blob/x");
    }
}
