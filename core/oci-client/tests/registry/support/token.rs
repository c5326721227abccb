//! A token endpoint for distribution's `auth: token`: checks basic credentials and mints
//! RS256 JWTs, signed (through `openssl`) by a certificate that chains to the registry's
//! trusted root, granting whatever scope is asked for.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::certs::TestCerts;
use super::stub::{Reply, Seen, Stub};

pub const ISSUER: &str = "karapace-test-issuer";
pub const SERVICE: &str = "karapace-test-registry";

/// Starts the endpoint; only `user:password` gets tokens.
pub fn start(certs: Arc<TestCerts>, user: &str, password: &str) -> Stub {
    let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    Stub::start(move |req: &Seen| {
        if req.header("Authorization") != Some(expected.as_str()) {
            return Reply::new(401).json(&serde_json::json!({"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}));
        }
        let url = url::Url::parse(&format!("http://stub{}", req.url)).unwrap();
        let scopes: Vec<String> = url
            .query_pairs()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .collect();
        let token = mint(&certs, &scopes);
        Reply::new(200).json(&serde_json::json!({"token": token, "expires_in": 300}))
    })
}

/// A JWT granting `scopes` (`repository:<name>:<actions>`).
fn mint(certs: &TestCerts, scopes: &[String]) -> String {
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "RS256",
        "x5c": [STANDARD.encode(certs.signer_der())],
    });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("jti-{now}-{}", scopes.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = certs.sign_rs256(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
