//! HTTP basic authentication against a real registry (`auth: htpasswd`, bcrypt).

use karapace_oci_client::testing::{RegistryConfig, TestRegistry};
use karapace_oci_client::{BlobPush, OciError, Sha256Digest};

use crate::support::image::{TestImage, fetch_blob, repo, tag};

fn registry() -> TestRegistry {
    TestRegistry::start(&RegistryConfig {
        basic_auth: Some(("alice".into(), "correct horse".into())),
        ..RegistryConfig::default()
    })
}

#[test]
fn without_credentials_a_protected_registry_is_a_clear_auth_error() {
    let registry = registry();
    let client = registry.client();
    let err = client.check().unwrap_err();
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("user name and password") && text.contains(&registry.address()),
        "{text}"
    );

    let blob = b"x".to_vec();
    let err = client
        .push_blob(&repo("a/b"), &Sha256Digest::of(&blob), 1, || {
            Ok(blob.as_slice())
        })
        .unwrap_err();
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("blob"), "{err}");
}

#[test]
fn wrong_credentials_are_refused_and_never_shown() {
    let registry = registry();
    let client = registry.client_as("alice", "battery staple");
    let err = client.check().unwrap_err();
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("refused"), "{text}");
    assert!(
        !text.contains("battery staple"),
        "the password leaked: {text}"
    );
}

#[test]
fn with_the_right_credentials_push_and_pull_work() {
    let registry = registry();
    let client = registry.client_as("alice", "correct horse");
    client.check().unwrap();
    let repo = repo("alice/env");
    let image = TestImage::sample("basic auth");
    let digest = image.push(&client, &repo, "v1");
    let (manifest, fetched) = client.get_image_manifest(&repo, &tag("v1")).unwrap();
    assert_eq!(fetched, digest);
    let layer = Sha256Digest::try_from(manifest.layers()[0].digest()).unwrap();
    assert_eq!(fetch_blob(&client, &repo, &layer), image.layers[0]);
    assert_eq!(client.tags(&repo).unwrap().len(), 1);
    let config = &image.config;
    assert_eq!(
        client
            .push_blob(
                &repo,
                &Sha256Digest::of(config),
                config.len() as u64,
                || Ok(config.as_slice())
            )
            .unwrap(),
        BlobPush::AlreadyPresent
    );
}
