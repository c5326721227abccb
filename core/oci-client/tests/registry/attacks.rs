//! What a hostile or broken registry (or a wrong local source) can try, and how it fails.

use std::io::Read;
use std::sync::{Arc, Mutex};

use karapace_oci_client::oci_spec::image::MediaType;
use karapace_oci_client::testing::{RegistryConfig, TestRegistry};
use karapace_oci_client::{
    Client, ClientOptions, OciError, Reference, RegistryHost, RepositoryName, RetryPolicy,
    Sha256Digest, Tag,
};

use crate::support::image::{TestImage, repo, tag};
use crate::support::stub::{Reply, Seen, Stub};

fn quick_options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            attempts: 2,
            initial_backoff: std::time::Duration::from_millis(10),
            max_backoff: std::time::Duration::from_millis(10),
            max_retry_after: std::time::Duration::from_secs(1),
        },
        ..ClientOptions::default()
    }
}

fn client_of(stub: &Stub) -> Client {
    Client::new(stub.host(), quick_options()).unwrap()
}

/// Reads `reader` in small pieces; returns the bytes read before the first error, and it.
fn read_in_pieces(reader: &mut impl Read) -> (Vec<u8>, Option<std::io::Error>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e)),
        }
    }
}

#[test]
fn a_blob_corrupted_in_the_registry_storage_fails_at_its_end() {
    let registry = TestRegistry::start(&RegistryConfig::default());
    let client = registry.client();
    let repo = repo("karapace/corrupt");
    let blob = b"the bytes the layer really holds".to_vec();
    let digest = Sha256Digest::of(&blob);
    client
        .push_blob(&repo, &digest, blob.len() as u64, || Ok(blob.as_slice()))
        .unwrap();

    // Same length, one byte flipped on the registry's disk.
    let stored = registry.blob_data_path(&digest);
    let mut corrupted = std::fs::read(&stored).unwrap();
    assert_eq!(corrupted, blob, "the registry stores the blob as pushed");
    corrupted[3] ^= 0x20;
    std::fs::write(&stored, &corrupted).unwrap();

    let mut reader = client
        .get_blob(&repo, &digest, Some(blob.len() as u64))
        .unwrap();
    let (received, error) = read_in_pieces(&mut reader);
    let error = error.expect("a corrupted blob must not read to a clean end");
    assert_eq!(
        received.len(),
        blob.len(),
        "the error comes at the end, after every byte"
    );
    assert!(
        matches!(
            OciError::from_io(&error),
            Some(OciError::DigestMismatch { .. })
        ),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&digest.to_string()) && text.contains("karapace/corrupt"),
        "{text}"
    );
    // A caller that ignores the error and reads on gets the error again, never a clean end.
    assert!(reader.read(&mut [0u8; 16]).is_err());

    // Longer on disk than the descriptor says: refused before any byte.
    corrupted.extend_from_slice(b"appended by an attacker");
    std::fs::write(&stored, &corrupted).unwrap();
    let err = client
        .get_blob(&repo, &digest, Some(blob.len() as u64))
        .unwrap_err();
    assert!(matches!(err, OciError::SizeMismatch { .. }), "{err}");
    // Without an expected size the length passes, the digest does not.
    let mut reader = client.get_blob(&repo, &digest, None).unwrap();
    let mut sink = Vec::new();
    let error = reader.read_to_end(&mut sink).unwrap_err();
    assert!(matches!(
        OciError::from_io(&error),
        Some(OciError::DigestMismatch { .. })
    ));
}

#[test]
fn a_registry_serving_wrong_or_extra_bytes_is_caught_while_streaming() {
    let good = b"expected content".to_vec();
    let digest = Sha256Digest::of(&good);
    let path = format!("/v2/a/blobs/{digest}");
    let stub = Stub::start(move |req: &Seen| match req.url.as_str() {
        "/v2/" => Reply::new(200),
        p if p == path => Reply::new(200).body(&b"forged content!!"[..]),
        _ => Reply::new(404),
    });
    let client = client_of(&stub);
    let mut reader = client.get_blob(&repo("a"), &digest, None).unwrap();
    let (received, error) = read_in_pieces(&mut reader);
    assert_eq!(received.len(), 16);
    assert!(matches!(
        OciError::from_io(&error.unwrap()),
        Some(OciError::DigestMismatch { .. })
    ));

    // A descriptor size smaller than what the registry announces: refused up front.
    let err = client.get_blob(&repo("a"), &digest, Some(3)).unwrap_err();
    assert!(matches!(err, OciError::SizeMismatch { .. }), "{err}");
}

#[test]
fn a_manifest_over_the_size_cap_is_refused_both_ways() {
    let huge = vec![b' '; 5 * 1024 * 1024];
    let stub = Stub::start(move |req: &Seen| match req.url.as_str() {
        "/v2/" => Reply::new(200),
        _ => Reply::new(200)
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(huge.clone()),
    });
    let client = client_of(&stub);
    let err = client
        .get_manifest(&repo("a"), &tag("big"), &[])
        .unwrap_err();
    assert!(
        matches!(
            err,
            OciError::TooLarge {
                limit: 4_194_304,
                ..
            }
        ),
        "{err}"
    );

    let requests_before = stub.seen().len();
    let err = client
        .put_manifest(
            &repo("a"),
            &tag("big"),
            &MediaType::ImageManifest,
            &vec![b' '; 4 * 1024 * 1024 + 1],
        )
        .unwrap_err();
    assert!(matches!(err, OciError::TooLarge { .. }), "{err}");
    assert_eq!(
        stub.seen().len(),
        requests_before,
        "refused without a request"
    );
}

#[test]
fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let real = br#"{"schemaVersion":2}"#.to_vec();
    let forged = br#"{"schemaVersion":2,"x":1}"#.to_vec();
    let real_digest = Sha256Digest::of(&real);
    let forged_clone = forged.clone();
    let announced = real_digest.to_string();
    let stub = Stub::start(move |req: &Seen| {
        if req.url == "/v2/" {
            return Reply::new(200);
        }
        Reply::new(200)
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            // By tag, the registry announces the real digest but sends other bytes.
            .header("Docker-Content-Digest", &announced)
            .body(forged_clone.clone())
    });
    let client = client_of(&stub);
    let by_digest = client
        .get_manifest(&repo("a"), &Reference::Digest(real_digest.clone()), &[])
        .unwrap_err();
    assert!(
        matches!(by_digest, OciError::DigestMismatch { .. }),
        "{by_digest}"
    );
    let by_tag = client
        .get_manifest(&repo("a"), &tag("v1"), &[])
        .unwrap_err();
    assert!(
        matches!(by_tag, OciError::DigestMismatch { .. }),
        "{by_tag}"
    );
}

#[test]
fn a_manifest_of_a_type_not_asked_for_is_refused() {
    let stub = Stub::start(|req: &Seen| {
        if req.url == "/v2/" {
            return Reply::new(200);
        }
        Reply::new(200)
            .header(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )
            .body(&b"{}"[..])
    });
    let err = client_of(&stub)
        .get_manifest(&repo("a"), &tag("v1"), &[MediaType::ImageManifest])
        .unwrap_err();
    assert!(matches!(err, OciError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains("not asked for"), "{err}");
}

#[test]
fn invalid_names_are_refused_before_any_request() {
    let stub = Stub::start(|_: &Seen| Reply::new(200));
    let client = client_of(&stub);
    for bad in [
        "../etc",
        "a/../../b",
        "A",
        "a//b",
        "a?x=1",
        "a#f",
        "a%2F..",
        "",
        "a b",
    ] {
        assert!(RepositoryName::new(bad).is_err(), "{bad:?}");
    }
    for bad in ["../x", "a/b", "-x", "x y", "a:b", "a\r\nX: y", ""] {
        assert!(Tag::new(bad).is_err(), "{bad:?}");
    }
    for bad in ["sha256:../../x", "sha256:ABC", "md5:abc", "sha256:", "x"] {
        assert!(Sha256Digest::parse(bad).is_err(), "{bad:?}");
    }
    for bad in ["sha256:xyz", "a/b", "x?y"] {
        assert!(Reference::parse(bad).is_err(), "{bad:?}");
    }
    for bad in [
        "http://127.0.0.1:1",
        "127.0.0.1:1/v2",
        "user@127.0.0.1",
        "127.0.0.1:99999",
    ] {
        assert!(RegistryHost::parse(bad).is_err(), "{bad:?}");
    }
    let err = MediaType::from("text/x\r\nInjected: 1");
    let put = client
        .put_manifest(&repo("a"), &tag("t"), &err, b"{}")
        .unwrap_err();
    assert!(matches!(put, OciError::InvalidName(_)), "{put}");
    assert!(
        stub.seen().is_empty(),
        "no request reached the registry: {:?}",
        stub.seen()
    );
}

#[test]
fn a_wrong_local_source_never_completes_an_upload() {
    let registry = TestRegistry::start(&RegistryConfig::default());
    let client = registry.client();
    let repo = repo("karapace/wrong-source");
    let announced = b"what the caller claims".to_vec();
    let digest = Sha256Digest::of(&announced);
    let len = announced.len() as u64;
    for (source, problem) in [
        (&b"what the caller claimz"[..], "hashes to"),
        (&b"what the caller claims, and more"[..], "more than"),
        (&b"what the"[..], "ended after"),
    ] {
        let err = client
            .push_blob(&repo, &digest, len, || Ok(source))
            .unwrap_err();
        assert!(matches!(err, OciError::SourceMismatch { .. }), "{err}");
        assert!(err.to_string().contains(problem), "{err}");
        assert_eq!(
            client.blob_exists(&repo, &digest).unwrap(),
            None,
            "nothing stored"
        );
    }
    // An opener that fails is reported as the source's failure.
    let err = client
        .push_blob(&repo, &digest, len, || -> std::io::Result<&[u8]> {
            Err(std::io::Error::other("disk gone"))
        })
        .unwrap_err();
    assert!(
        matches!(err, OciError::Source { .. }) && err.to_string().contains("disk gone"),
        "{err}"
    );
}

/// A scripted registry accepting uploads at a session URL; `put` answers the final PUT.
fn upload_stub(
    head: impl Fn() -> Reply + Send + Sync + 'static,
    put: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> Stub {
    Stub::start(
        move |req: &Seen| match (req.method.as_str(), req.url.as_str()) {
            ("GET", "/v2/") => Reply::new(200),
            ("HEAD", _) => head(),
            ("POST", u) if u.starts_with("/v2/a/blobs/uploads/") => {
                Reply::new(202).header("Location", "/v2/a/blobs/uploads/session-1?_state=abc")
            }
            ("PUT", u) if u.starts_with("/v2/a/blobs/uploads/session-1?_state=abc&digest=") => {
                put(req)
            }
            ("DELETE", _) => Reply::new(204),
            _ => Reply::new(404),
        },
    )
}

#[test]
fn a_registry_that_rejects_the_digest_fails_the_push() {
    let stub = upload_stub(
        || Reply::new(404),
        |_| {
            Reply::new(400).json(&serde_json::json!({"errors":[{
                "code": "DIGEST_INVALID", "message": "provided digest did not match uploaded content"
            }]}))
        },
    );
    let blob = b"bytes".to_vec();
    let err = client_of(&stub)
        .push_blob(&repo("a"), &Sha256Digest::of(&blob), 5, || {
            Ok(blob.as_slice())
        })
        .unwrap_err();
    assert!(
        err.registry_errors().unwrap().has_code("DIGEST_INVALID"),
        "{err}"
    );
    assert!(err.to_string().contains("upload of blob"), "{err}");
    // The relative Location kept its query, and the digest was added to it.
    let put = stub.seen().into_iter().find(|r| r.method == "PUT").unwrap();
    assert!(
        put.url.contains("_state=abc&digest=sha256%3A"),
        "{}",
        put.url
    );
    assert_eq!(put.body, blob);
}

#[test]
fn a_registry_that_stores_under_another_digest_fails_the_push() {
    let other = Sha256Digest::of(b"something else").to_string();
    let stub = upload_stub(
        || Reply::new(404),
        move |_| Reply::new(201).header("Docker-Content-Digest", &other),
    );
    let blob = b"bytes".to_vec();
    let err = client_of(&stub)
        .push_blob(&repo("a"), &Sha256Digest::of(&blob), 5, || {
            Ok(blob.as_slice())
        })
        .unwrap_err();
    assert!(matches!(err, OciError::Protocol { .. }), "{err}");
}

#[test]
fn a_registry_that_reports_another_size_for_an_existing_blob_is_not_trusted() {
    let stub = upload_stub(
        || Reply::new(200).header("Content-Length", "999"),
        |_| Reply::new(201),
    );
    let blob = b"bytes".to_vec();
    let err = client_of(&stub)
        .push_blob(&repo("a"), &Sha256Digest::of(&blob), 5, || {
            Ok(blob.as_slice())
        })
        .unwrap_err();
    assert!(err.to_string().contains("999"), "{err}");
}

#[test]
fn upload_locations_to_other_schemes_or_with_user_info_are_refused() {
    for location in [
        "file:///etc/passwd",
        "ftp://127.0.0.1/upload",
        "http://user:secret@127.0.0.1:1/upload",
    ] {
        let location = location.to_string();
        let stub = Stub::start(move |req: &Seen| match req.method.as_str() {
            "GET" => Reply::new(200),
            "HEAD" => Reply::new(404),
            _ => Reply::new(202).header("Location", &location),
        });
        let blob = b"x".to_vec();
        let err = client_of(&stub)
            .push_blob(&repo("a"), &Sha256Digest::of(&blob), 1, || {
                Ok(blob.as_slice())
            })
            .unwrap_err();
        assert!(matches!(err, OciError::UnsafeUrl { .. }), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(stub.seen().iter().all(|r| r.method != "PUT"));
    }
}

#[test]
fn a_redirect_to_storage_is_followed_without_credentials() {
    let blob = b"layer bytes kept in object storage".to_vec();
    let digest = Sha256Digest::of(&blob);
    let served = blob.clone();
    let storage = Stub::start(move |_: &Seen| Reply::new(200).body(served.clone()));
    let storage_url = format!("{}/bucket/blob?X-Signature=s3cr3t", storage.url());
    let registry = Stub::start(move |req: &Seen| {
        if req.header("Authorization").is_none() {
            return Reply::new(401).header("WWW-Authenticate", r#"Basic realm="stub""#);
        }
        match req.url.as_str() {
            "/v2/" => Reply::new(200),
            _ => Reply::new(307).header("Location", &storage_url),
        }
    });
    let client = Client::new(
        registry.host(),
        ClientOptions {
            credentials: Some(karapace_oci_client::Credentials::new("u", "p")),
            ..quick_options()
        },
    )
    .unwrap();
    let mut reader = client.get_blob(&repo("a"), &digest, None).unwrap();
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, blob);
    let at_storage = storage.seen();
    assert_eq!(at_storage.len(), 1);
    assert!(
        at_storage[0].header("Authorization").is_none(),
        "credentials leaked to storage"
    );
    assert!(
        at_storage[0].url.contains("X-Signature=s3cr3t"),
        "the query is kept"
    );

    // A redirect to another scheme is refused.
    let registry = Stub::start(|req: &Seen| match req.url.as_str() {
        "/v2/" => Reply::new(200),
        _ => Reply::new(302).header("Location", "file:///etc/shadow"),
    });
    let err = client_of(&registry)
        .get_blob(&repo("a"), &digest, None)
        .unwrap_err();
    assert!(matches!(err, OciError::UnsafeUrl { .. }), "{err}");
}

#[test]
fn a_hostile_error_body_is_quoted_short_and_clean() {
    let stub = Stub::start(|req: &Seen| match req.url.as_str() {
        "/v2/" => Reply::new(200),
        _ => Reply::new(400).json(&serde_json::json!({"errors":[{
            "code": "MANIFEST_INVALID",
            "message": format!("\u{1b}[2J\u{1b}]0;owned\u{7}{}", "A".repeat(1_000_000)),
        }]})),
    });
    let err = client_of(&stub)
        .get_manifest(&repo("a"), &tag("v1"), &[])
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("MANIFEST_INVALID"), "{text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.len() < 1000, "{}", text.len());
}

#[test]
fn a_tag_list_with_an_invalid_tag_or_a_foreign_next_page_is_refused() {
    let stub = Stub::start(|req: &Seen| match req.url.as_str() {
        "/v2/" => Reply::new(200),
        _ => Reply::new(200).json(&serde_json::json!({"name": "a", "tags": ["ok", "../../bad"]})),
    });
    let err = client_of(&stub).tags(&repo("a")).unwrap_err();
    assert!(matches!(err, OciError::Protocol { .. }), "{err}");

    let pages = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&pages);
    let stub = Stub::start(move |req: &Seen| {
        if req.url == "/v2/" {
            return Reply::new(200);
        }
        *counter.lock().unwrap() += 1;
        Reply::new(200)
            .header(
                "Link",
                r#"<https://elsewhere.example/v2/a/tags/list?last=x>; rel="next""#,
            )
            .json(&serde_json::json!({"name": "a", "tags": ["ok"]}))
    });
    let err = client_of(&stub).tags(&repo("a")).unwrap_err();
    assert!(matches!(err, OciError::UnsafeUrl { .. }), "{err}");
    assert_eq!(*pages.lock().unwrap(), 1);

    // A list whose `next` points back at itself ends with an error, not a loop.
    let stub = Stub::start(|req: &Seen| match req.url.as_str() {
        "/v2/" => Reply::new(200),
        _ => Reply::new(200)
            .header("Link", r#"</v2/a/tags/list?n=1000>; rel="next""#)
            .json(&serde_json::json!({"name": "a", "tags": ["ok"]})),
    });
    let err = client_of(&stub).tags(&repo("a")).unwrap_err();
    assert!(err.to_string().contains("loop"), "{err}");
}

#[test]
fn a_pushed_image_is_not_confused_with_a_forged_one() {
    // End to end on the real registry: by-digest reads of what was pushed verify.
    let registry = TestRegistry::start(&RegistryConfig::default());
    let client = registry.client();
    let image = TestImage::sample("forgery");
    let digest = image.push(&client, &repo("k/forgery"), "v1");
    let wrong = Sha256Digest::of(b"not this manifest");
    let err = client
        .get_manifest(&repo("k/forgery"), &Reference::Digest(wrong), &[])
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        client
            .get_manifest(&repo("k/forgery"), &Reference::Digest(digest), &[])
            .is_ok()
    );
}
