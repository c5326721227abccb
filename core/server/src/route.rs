//! Request targets → routes. Pure: nothing here touches the file system, so a hostile target
//! (`/objects/../../x`, `%2e%2e`, NUL, a query, an absolute URL, a 10 KB path) is refused
//! before any storage code sees it.

use karapace_remote::BlobKind;
use karapace_remote::key::{is_valid_key, quote};

use crate::tokens::Access;

/// Longest request target accepted (a blob route is 80 bytes).
const MAX_TARGET_LEN: usize = 1024;

/// What a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Registry,
    /// `GET /<kind>/`: the kind's keys.
    List(BlobKind),
    /// `/<kind>/<key>` with a valid key.
    Blob(BlobKind, String),
}

/// The methods protocol v1 uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
}

/// A refused target: the status to answer and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub status: u16,
    pub message: String,
    /// For 405: the methods the route has.
    pub allow: Option<&'static str>,
}

impl RouteError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        RouteError {
            status,
            message: message.into(),
            allow: None,
        }
    }
}

impl Route {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Registry => "registry",
            Route::List(_) => "list",
            Route::Blob(..) => "blob",
        }
    }

    /// What credentials the route needs for `method`.
    pub fn access(&self, method: Method) -> Access {
        match (self, method) {
            (Route::Health, _) => Access::Public,
            (_, Method::Put) => Access::Write,
            _ => Access::Read,
        }
    }

    fn allowed(&self) -> (&'static [Method], &'static str) {
        match self {
            Route::Health | Route::List(_) => (&[Method::Get], "GET"),
            Route::Registry => (&[Method::Get, Method::Put], "GET, PUT"),
            Route::Blob(..) => (&[Method::Get, Method::Head, Method::Put], "GET, HEAD, PUT"),
        }
    }
}

/// Parses a request line's method and target into a route.
/// 400: malformed target or invalid key; 404: no such route; 405: the route lacks the method.
pub fn parse(method: &str, target: &str) -> Result<(Route, Method), RouteError> {
    if target.len() > MAX_TARGET_LEN {
        return Err(RouteError::new(400, "request target too long"));
    }
    if !target.starts_with('/') {
        return Err(RouteError::new(
            400,
            "the request target must be an absolute path",
        ));
    }
    if target.contains(['?', '#']) {
        return Err(RouteError::new(400, "query strings are not accepted"));
    }
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RouteError::new(
            400,
            "invalid character in the request target",
        ));
    }
    let route = route_of(target)?;
    let method = match method {
        "GET" => Some(Method::Get),
        "HEAD" => Some(Method::Head),
        "PUT" => Some(Method::Put),
        _ => None,
    };
    let (allowed, allow) = route.allowed();
    match method {
        Some(m) if allowed.contains(&m) => Ok((route, m)),
        _ => Err(RouteError {
            status: 405,
            message: format!("method {} not allowed here", quote(method_name(method))),
            allow: Some(allow),
        }),
    }
}

fn method_name(m: Option<Method>) -> &'static str {
    match m {
        Some(Method::Get) => "GET",
        Some(Method::Head) => "HEAD",
        Some(Method::Put) => "PUT",
        None => "(other)",
    }
}

fn route_of(target: &str) -> Result<Route, RouteError> {
    let not_found = || RouteError::new(404, "no such route");
    match target {
        "/health" => return Ok(Route::Health),
        "/registry" => return Ok(Route::Registry),
        _ => {}
    }
    // `/blobs/<Kind>[/[<key>]]` (the standard server's canonical form).
    if let Some(rest) = target.strip_prefix("/blobs/") {
        let (kind, key) = match rest.split_once('/') {
            Some((k, key)) => (k, Some(key)),
            None => (rest, None),
        };
        let kind = BlobKind::from_canonical_name(kind).ok_or_else(not_found)?;
        return blob_or_list(kind, key);
    }
    // `/<kinds>[/[<key>]]` (the client form).
    let rest = &target[1..];
    let (kind, key) = match rest.split_once('/') {
        Some((k, key)) => (k, Some(key)),
        None => (rest, None),
    };
    let kind = BlobKind::from_route_name(kind).ok_or_else(not_found)?;
    blob_or_list(kind, key)
}

fn blob_or_list(kind: BlobKind, key: Option<&str>) -> Result<Route, RouteError> {
    match key {
        None | Some("") => Ok(Route::List(kind)),
        Some(key) if is_valid_key(key) => Ok(Route::Blob(kind, key.to_string())),
        Some(key) => Err(RouteError::new(
            400,
            format!(
                "invalid key '{}': a key is 64 lowercase hex characters",
                quote(key)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        "0123456789abcdef".repeat(4)
    }

    fn status(method: &str, target: &str) -> u16 {
        parse(method, target).err().map_or(200, |e| e.status)
    }

    #[test]
    fn both_route_forms_reach_every_kind() {
        let k = key();
        for kind in BlobKind::ALL {
            let a = format!("/{}/{k}", kind.route_name());
            let b = format!("/blobs/{}/{k}", kind.canonical_name());
            for t in [a, b] {
                assert_eq!(
                    parse("PUT", &t).unwrap(),
                    (Route::Blob(kind, k.clone()), Method::Put)
                );
            }
            for t in [
                format!("/{}/", kind.route_name()),
                format!("/{}", kind.route_name()),
                format!("/blobs/{}", kind.canonical_name()),
                format!("/blobs/{}/", kind.canonical_name()),
            ] {
                assert_eq!(
                    parse("GET", &t).unwrap(),
                    (Route::List(kind), Method::Get),
                    "{t}"
                );
            }
        }
        assert_eq!(parse("GET", "/health").unwrap().0, Route::Health);
        assert_eq!(parse("PUT", "/registry").unwrap().0, Route::Registry);
    }

    #[test]
    fn hostile_targets_are_bad_requests() {
        let k = key();
        for t in [
            "/objects/../../etc/passwd".to_string(),
            "/objects/..".to_string(),
            format!("/objects/{k}/.."),
            format!("/objects/{k}/x"),
            "/objects/%2e%2e%2f%2e%2e%2fx".to_string(),
            format!("/objects/{}", k.to_uppercase()),
            format!("/objects/{}", &k[1..]),
            format!("/objects/{k}0"),
            format!("/objects/{k}?x=1"),
            "/health?x".to_string(),
            format!("/objects/{k}#frag"),
            format!("/objects/{}\0", &k[1..]),
            format!("/blobs/Layer/../{k}"),
            format!("/objects/{}", "a".repeat(2000)),
            format!("http://evil/objects/{k}"),
            "*".to_string(),
        ] {
            assert_eq!(status("GET", &t), 400, "{t:?}");
        }
    }

    #[test]
    fn unknown_routes_and_methods() {
        let k = key();
        for t in [
            "/",
            "/objectsx/",
            "/blobs/object/",
            "/blobs/",
            "/blobs",
            "//objects/",
            "/%6fbjects/",
            "/registry/",
            "/health/",
        ] {
            assert_eq!(status("GET", t), 404, "{t}");
        }
        assert_eq!(status("DELETE", &format!("/objects/{k}")), 405);
        assert_eq!(status("POST", "/registry"), 405);
        assert_eq!(status("PUT", "/objects/"), 405);
        assert_eq!(status("HEAD", "/health"), 405);
        assert_eq!(status("get", "/health"), 405);
        let e = parse("DELETE", "/registry").unwrap_err();
        assert_eq!(e.allow, Some("GET, PUT"));
    }

    #[test]
    fn access_follows_the_method() {
        let r = Route::Blob(BlobKind::Object, key());
        assert_eq!(r.access(Method::Put), Access::Write);
        assert_eq!(r.access(Method::Head), Access::Read);
        assert_eq!(Route::Health.access(Method::Get), Access::Public);
        assert_eq!(Route::Registry.access(Method::Put), Access::Write);
    }
}
