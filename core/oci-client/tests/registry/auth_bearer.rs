//! The registry token flow: a scripted registry and token endpoint for the protocol's corners,
//! and a real `docker-registry` with `auth: token` checking real signed tokens.

use std::sync::{Arc, Mutex};

use karapace_oci_client::testing::{RegistryConfig, TestRegistry, TokenAuth};
use karapace_oci_client::{
    BlobPush, Client, ClientOptions, Credentials, MountOutcome, OciError, RetryPolicy, Sha256Digest,
};

use crate::support::certs::TestCerts;
use crate::support::image::{TestImage, fetch_blob, repo, tag};
use crate::support::stub::{Reply, Seen, Stub};
use crate::support::token;

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

fn options(credentials: Option<Credentials>) -> ClientOptions {
    ClientOptions {
        credentials,
        retry: RetryPolicy {
            attempts: 2,
            initial_backoff: std::time::Duration::from_millis(10),
            max_backoff: std::time::Duration::from_millis(10),
            max_retry_after: std::time::Duration::from_secs(1),
        },
        ..ClientOptions::default()
    }
}

/// A registry that wants `Bearer token-<n>` where the token endpoint handed out `token-<n>`
/// for the scope the request needs, and a token endpoint handing them out.
struct BearerPair {
    registry: Stub,
    tokens: Stub,
}

fn bearer_pair(token_answer: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> BearerPair {
    let issued: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let issued_by_endpoint = Arc::clone(&issued);
    let tokens = Stub::start(move |req: &Seen| {
        let url = url::Url::parse(&format!("http://stub{}", req.url)).unwrap();
        let scope: Vec<String> = url
            .query_pairs()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .collect();
        let mut issued = issued_by_endpoint.lock().unwrap();
        let n = issued.len();
        let reply = token_answer(req, n);
        if reply.status == 200 {
            issued.push((format!("token-{n}"), scope.join(" ")));
        }
        reply
    });
    let realm = format!("{}/token", tokens.url());
    let registry = Stub::start(move |req: &Seen| {
        if req.url == "/v2/" && req.header("Authorization").is_none() && req.method == "GET" {
            // The scheme probe (and a client's first call) gets the bare challenge.
            return Reply::new(401).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="stub""#),
            );
        }
        let needed = if req.method == "GET" || req.method == "HEAD" {
            "repository:a:pull"
        } else {
            "repository:a:pull,push"
        };
        let granted = req
            .header("Authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| {
                issued
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(t, _)| t == token)
                    .map(|(_, scope)| scope.clone())
            });
        match granted {
            Some(scope) if scope.split(' ').any(|s| s == needed) || req.url == "/v2/" => {
                match req.method.as_str() {
                    "PUT" => Reply::new(201).header(
                        "Docker-Content-Digest",
                        &Sha256Digest::of(MANIFEST.as_bytes()).to_string(),
                    ),
                    _ => Reply::new(200)
                        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                        .body(MANIFEST),
                }
            }
            _ => Reply::new(401).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="stub",scope="{needed}""#),
            ),
        }
    });
    BearerPair { registry, tokens }
}

fn anyone(_: &Seen, n: usize) -> Reply {
    Reply::new(200).json(&serde_json::json!({"token": format!("token-{n}"), "expires_in": 300}))
}

#[test]
fn an_anonymous_token_is_fetched_once_per_scope_and_reused() {
    let pair = bearer_pair(anyone);
    let client = Client::new(pair.registry.host(), options(None)).unwrap();
    let fetched = client.get_manifest(&repo("a"), &tag("v1"), &[]).unwrap();
    assert_eq!(fetched.bytes, MANIFEST.as_bytes());
    client.get_manifest(&repo("a"), &tag("v1"), &[]).unwrap();
    let token_requests = pair.tokens.seen();
    assert_eq!(
        token_requests.len(),
        1,
        "the pull token is cached: {token_requests:?}"
    );
    assert!(
        token_requests[0].header("Authorization").is_none(),
        "anonymous"
    );
    assert!(
        token_requests[0].url.contains("service=stub")
            && token_requests[0]
                .url
                .contains("scope=repository%3Aa%3Apull"),
        "{}",
        token_requests[0].url
    );
    // Pushing needs another scope, hence another token.
    client
        .put_manifest(
            &repo("a"),
            &tag("v1"),
            &karapace_oci_client::oci_spec::image::MediaType::ImageManifest,
            MANIFEST.as_bytes(),
        )
        .unwrap();
    assert_eq!(pair.tokens.seen().len(), 2);
    assert!(pair.tokens.seen()[1].url.contains("pull%2Cpush"));
}

#[test]
fn credentials_go_to_the_token_endpoint_and_access_token_is_understood() {
    let pair = bearer_pair(|req: &Seen, n| {
        // "alice:pw", as HTTP basic.
        if req.header("Authorization") == Some("Basic YWxpY2U6cHc=") {
            Reply::new(200).json(&serde_json::json!({"access_token": format!("token-{n}")}))
        } else {
            Reply::new(401)
        }
    });
    let client = Client::new(
        pair.registry.host(),
        options(Some(Credentials::new("alice", "pw"))),
    )
    .unwrap();
    client.check().unwrap();
    client.get_manifest(&repo("a"), &tag("v1"), &[]).unwrap();
    // The password never reached the registry itself.
    for req in pair.registry.seen() {
        assert!(
            !req.header("Authorization")
                .unwrap_or("")
                .starts_with("Basic"),
            "{req:?}"
        );
    }
}

#[test]
fn a_token_endpoint_that_refuses_is_a_clear_auth_error() {
    let pair = bearer_pair(|_: &Seen, _| {
        Reply::new(401)
            .json(&serde_json::json!({"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}))
    });
    let client = Client::new(
        pair.registry.host(),
        options(Some(Credentials::new("mallory", "guess123"))),
    )
    .unwrap();
    let err = client
        .get_manifest(&repo("a"), &tag("v1"), &[])
        .unwrap_err();
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("token endpoint refused the credentials") && text.contains("who are you"),
        "{text}"
    );
    assert!(!text.contains("guess123"), "{text}");
}

#[test]
fn a_token_the_registry_rejects_is_tried_once_then_reported() {
    let tokens = Stub::start(|_: &Seen| {
        Reply::new(200).json(&serde_json::json!({"token": "useless-token-value"}))
    });
    let realm = format!("{}/token", tokens.url());
    let registry = Stub::start(move |req: &Seen| {
        if req.url == "/v2/" && req.header("Authorization").is_none() {
            return Reply::new(200);
        }
        Reply::new(401).header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}""#))
    });
    let client = Client::new(registry.host(), options(None)).unwrap();
    let err = client
        .get_manifest(&repo("a"), &tag("v1"), &[])
        .unwrap_err();
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string().contains("refused the credentials or token"),
        "{err}"
    );
    assert!(!err.to_string().contains("useless-token-value"));
    assert_eq!(tokens.seen().len(), 1, "one token, one retry, no loop");
}

#[test]
fn a_token_unfit_for_a_header_is_refused_without_being_shown() {
    let tokens = Stub::start(|_: &Seen| {
        Reply::new(200).json(&serde_json::json!({"token": "evil\r\nX-Injected: 1"}))
    });
    let realm = format!("{}/token", tokens.url());
    let registry = Stub::start(move |req: &Seen| {
        if req.url == "/v2/" {
            return Reply::new(200);
        }
        Reply::new(401).header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}""#))
    });
    let err = Client::new(registry.host(), options(None))
        .unwrap()
        .get_manifest(&repo("a"), &tag("v1"), &[])
        .unwrap_err();
    assert!(matches!(err, OciError::Protocol { .. }), "{err}");
    assert!(!err.to_string().contains("Injected"), "{err}");
}

#[test]
fn a_realm_off_the_loopback_over_plain_http_is_refused() {
    for realm in [
        "http://auth.example/token",
        "ftp://127.0.0.1/token",
        "not a url",
    ] {
        let realm = realm.to_string();
        let registry = Stub::start(move |req: &Seen| {
            if req.url == "/v2/" {
                return Reply::new(200);
            }
            Reply::new(401).header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}""#))
        });
        let err = Client::new(
            registry.host(),
            options(Some(Credentials::new("alice", "pw"))),
        )
        .unwrap()
        .get_manifest(&repo("a"), &tag("v1"), &[])
        .unwrap_err();
        assert!(
            matches!(err, OciError::UnsafeUrl { .. } | OciError::Protocol { .. }),
            "{err}"
        );
    }
}

#[test]
fn an_unknown_challenge_is_an_auth_error_not_a_loop() {
    let registry = Stub::start(|req: &Seen| {
        if req.url == "/v2/" && req.method == "GET" && req.header("Authorization").is_none() {
            return Reply::new(401).header("WWW-Authenticate", "Negotiate");
        }
        Reply::new(401).header("WWW-Authenticate", "Negotiate")
    });
    let err = Client::new(registry.host(), options(Some(Credentials::new("a", "b"))))
        .unwrap()
        .check()
        .unwrap_err();
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");
}

/// The real thing: `docker-registry` verifying RS256 tokens whose certificate chains to a
/// root it trusts.
fn token_registry(certs: &Arc<TestCerts>) -> (TestRegistry, Stub) {
    let endpoint = token::start(Arc::clone(certs), "alice", "open sesame");
    let registry = TestRegistry::start(&RegistryConfig {
        token_auth: Some(TokenAuth {
            realm: format!("{}/token", endpoint.url()),
            service: token::SERVICE.into(),
            issuer: token::ISSUER.into(),
            root_cert_bundle: certs.ca(),
        }),
        ..RegistryConfig::default()
    });
    (registry, endpoint)
}

#[test]
fn a_registry_with_token_auth_accepts_pushes_and_pulls_with_real_tokens() {
    let certs = Arc::new(TestCerts::generate());
    let (registry, endpoint) = token_registry(&certs);
    let client = registry.client_as("alice", "open sesame");
    client.check().unwrap();
    let image = TestImage::sample("token auth");
    let base = repo("alice/base");
    let digest = image.push(&client, &base, "v1");
    let (manifest, fetched) = client.get_image_manifest(&base, &tag("v1")).unwrap();
    assert_eq!(fetched, digest);
    let layer = Sha256Digest::try_from(manifest.layers()[1].digest()).unwrap();
    assert_eq!(fetch_blob(&client, &base, &layer), image.layers[1]);

    // A mount needs push on the target and pull on the source, in one token.
    let app = repo("alice/app");
    assert_eq!(
        client.mount_blob(&app, &layer, &base).unwrap(),
        MountOutcome::Mounted
    );
    let config = &image.config;
    assert_eq!(
        client
            .mount_or_push_blob(
                &app,
                &image.config_digest(),
                &base,
                config.len() as u64,
                || { Ok(config.as_slice()) }
            )
            .unwrap(),
        BlobPush::Mounted
    );
    let mount_token = endpoint.seen().into_iter().find(|r| {
        r.url.contains("alice%2Fapp%3Apull%2Cpush") && r.url.contains("alice%2Fbase%3Apull")
    });
    assert!(mount_token.is_some(), "{:?}", endpoint.seen());
    assert_eq!(client.tags(&base).unwrap().len(), 1);
}

#[test]
fn a_registry_with_token_auth_refuses_anonymous_and_wrong_users() {
    let certs = Arc::new(TestCerts::generate());
    let (registry, _endpoint) = token_registry(&certs);
    for client in [registry.client(), registry.client_as("alice", "wrong")] {
        let err = client
            .get_manifest(&repo("alice/base"), &tag("v1"), &[])
            .unwrap_err();
        assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");
        assert!(err.to_string().contains("token endpoint"), "{err}");
    }
}
