//! Retries of idempotent requests (5xx, 429 with `Retry-After`, dropped connections) and
//! timeouts.

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use karapace_oci_client::{BlobPush, Client, ClientOptions, OciError, RetryPolicy, Sha256Digest};

use crate::support::image::{repo, tag};
use crate::support::stub::{Reply, Seen, Stub};

const MANIFEST: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;

fn options(attempts: u32) -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            attempts,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(2),
        },
        ..ClientOptions::default()
    }
}

fn manifest_reply() -> Reply {
    Reply::new(200)
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(MANIFEST)
}

/// A registry whose manifest endpoint answers from `script` in turn (the last one repeats).
fn scripted(script: Vec<Reply>) -> Stub {
    let next = Arc::new(Mutex::new(0usize));
    Stub::start(move |req: &Seen| {
        if req.url == "/v2/" {
            return Reply::new(200);
        }
        let mut n = next.lock().unwrap();
        let reply = script[(*n).min(script.len() - 1)].clone();
        *n += 1;
        reply
    })
}

fn manifest_requests(stub: &Stub) -> usize {
    stub.seen()
        .iter()
        .filter(|r| r.url.contains("/manifests/"))
        .count()
}

#[test]
fn server_errors_are_retried_until_the_registry_recovers() {
    let stub = scripted(vec![Reply::new(503), Reply::new(502), manifest_reply()]);
    let client = Client::new(stub.host(), options(4)).unwrap();
    let fetched = client.get_manifest(&repo("a"), &tag("v1"), &[]).unwrap();
    assert_eq!(fetched.bytes, MANIFEST.as_bytes());
    assert_eq!(manifest_requests(&stub), 3);
}

#[test]
fn too_many_requests_waits_as_the_registry_asks() {
    let stub = scripted(vec![
        Reply::new(429).header("Retry-After", "1"),
        manifest_reply(),
    ]);
    let client = Client::new(stub.host(), options(3)).unwrap();
    client.get_manifest(&repo("a"), &tag("v1"), &[]).unwrap();
    assert_eq!(manifest_requests(&stub), 2);
}

#[test]
fn a_retry_after_longer_than_allowed_fails_at_once_with_the_registry_error() {
    let stub = scripted(vec![Reply::new(429).header("Retry-After", "3600").json(
        &serde_json::json!({"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}),
    )]);
    let client = Client::new(stub.host(), options(5)).unwrap();
    let err = client
        .get_manifest(&repo("a"), &tag("v1"), &[])
        .unwrap_err();
    assert_eq!(err.status(), Some(429), "{err}");
    assert!(
        err.to_string().contains("TOOMANYREQUESTS: slow down"),
        "{err}"
    );
    assert_eq!(manifest_requests(&stub), 1);
}

#[test]
fn a_registry_that_keeps_failing_is_reported_after_the_last_try() {
    let stub = scripted(vec![Reply::new(500).json(
        &serde_json::json!({"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}),
    )]);
    let client = Client::new(stub.host(), options(3)).unwrap();
    let err = client
        .get_manifest(&repo("a"), &tag("v1"), &[])
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, OciError::Status { status: 500, .. }),
        "{text}"
    );
    assert!(
        text.contains(&stub.address())
            && text.contains("manifest a:v1")
            && text.contains("disk on fire"),
        "{text}"
    );
    assert_eq!(manifest_requests(&stub), 3);
}

#[test]
fn a_failed_upload_is_restarted_with_a_reopened_source() {
    let puts = Arc::new(Mutex::new(0));
    let puts_seen = Arc::clone(&puts);
    let stub = Stub::start(
        move |req: &Seen| match (req.method.as_str(), req.url.as_str()) {
            ("GET", "/v2/") => Reply::new(200),
            ("HEAD", _) => Reply::new(404),
            ("POST", _) => Reply::new(202).header("Location", "/v2/a/blobs/uploads/s?x=1"),
            ("PUT", _) => {
                let mut n = puts_seen.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    Reply::new(503)
                } else {
                    Reply::new(201)
                }
            }
            _ => Reply::new(204),
        },
    );
    let blob = b"retried upload".to_vec();
    let opened = Cell::new(0);
    let pushed = Client::new(stub.host(), options(3))
        .unwrap()
        .push_blob(
            &repo("a"),
            &Sha256Digest::of(&blob),
            blob.len() as u64,
            || {
                opened.set(opened.get() + 1);
                Ok(blob.as_slice())
            },
        )
        .unwrap();
    assert_eq!(pushed, BlobPush::Uploaded);
    assert_eq!(
        opened.get(),
        2,
        "the source was opened again for the second try"
    );
    let seen = stub.seen();
    assert_eq!(
        seen.iter().filter(|r| r.method == "POST").count(),
        2,
        "a new session"
    );
    assert!(
        seen.iter().any(|r| r.method == "DELETE"),
        "the failed session was cancelled"
    );
    let bodies: Vec<_> = seen
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(bodies, [blob.clone(), blob]);
}

#[test]
fn a_registry_that_is_not_there_is_a_network_error_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = karapace_oci_client::RegistryHost::parse(&format!("127.0.0.1:{port}")).unwrap();
    let err = Client::new(host, options(2)).unwrap().check().unwrap_err();
    assert!(matches!(err, OciError::Network { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

#[test]
fn a_registry_that_stops_answering_times_out() {
    let stub = Stub::start(|req: &Seen| {
        if req.url != "/v2/" {
            std::thread::sleep(Duration::from_millis(1500));
        }
        Reply::new(200)
    });
    let client = Client::new(
        stub.host(),
        ClientOptions {
            stall_timeout: Duration::from_millis(300),
            ..options(1)
        },
    )
    .unwrap();
    let err = client
        .get_manifest(&repo("a"), &tag("v1"), &[])
        .unwrap_err();
    assert!(matches!(err, OciError::Timeout { .. }), "{err}");
}
