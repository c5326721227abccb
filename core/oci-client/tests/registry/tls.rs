//! HTTPS registries: verified against the system roots plus the user's CA file, never
//! downgraded to plain HTTP.

use std::sync::Arc;

use karapace_oci_client::testing::{RegistryConfig, TestRegistry, TokenAuth};
use karapace_oci_client::{ClientOptions, OciError, Sha256Digest};

use crate::support::certs::TestCerts;
use crate::support::image::{TestImage, fetch_blob, repo, tag};
use crate::support::stub::{Reply, Seen, Stub};
use crate::support::token;

fn tls_registry(certs: &TestCerts, config: RegistryConfig) -> TestRegistry {
    TestRegistry::start(&RegistryConfig {
        tls: Some(certs.server()),
        ..config
    })
}

fn with_ca(registry: &TestRegistry, certs: &TestCerts) -> ClientOptions {
    ClientOptions {
        ca_file: Some(certs.ca()),
        ..registry.client_options()
    }
}

#[test]
fn an_https_registry_with_a_private_ca_works_given_the_ca_file() {
    let certs = TestCerts::generate();
    let registry = tls_registry(&certs, RegistryConfig::default());
    assert!(registry.base_url().starts_with("https://"));
    let client = registry.client_with(with_ca(&registry, &certs));
    client.check().unwrap();
    let image = TestImage::sample("over tls");
    let repo = repo("secure/env");
    image.push(&client, &repo, "v1");
    let (manifest, _) = client.get_image_manifest(&repo, &tag("v1")).unwrap();
    let layer = Sha256Digest::try_from(manifest.layers()[0].digest()).unwrap();
    assert_eq!(fetch_blob(&client, &repo, &layer), image.layers[0]);
}

#[test]
fn an_untrusted_certificate_is_a_tls_error_even_when_insecure() {
    let certs = TestCerts::generate();
    let registry = tls_registry(&certs, RegistryConfig::default());
    for insecure in [false, true] {
        let client = registry.client_with(ClientOptions {
            insecure,
            ..registry.client_options()
        });
        let err = client.check().unwrap_err();
        assert!(
            matches!(err, OciError::Tls { .. }),
            "insecure={insecure}: {err}"
        );
        assert!(err.to_string().contains(&registry.address()), "{err}");
    }
}

#[test]
fn an_upload_location_downgrading_to_http_is_refused() {
    let certs = TestCerts::generate();
    let registry = tls_registry(
        &certs,
        RegistryConfig {
            advertise_plain_http: true,
            ..RegistryConfig::default()
        },
    );
    let client = registry.client_with(with_ca(&registry, &certs));
    let blob = b"must not travel in clear".to_vec();
    let digest = Sha256Digest::of(&blob);
    let err = client
        .push_blob(&repo("secure/env"), &digest, blob.len() as u64, || {
            Ok(blob.as_slice())
        })
        .unwrap_err();
    assert!(matches!(err, OciError::UnsafeUrl { .. }), "{err}");
    assert!(err.to_string().contains("downgrade"), "{err}");
    assert_eq!(
        client.blob_exists(&repo("secure/env"), &digest).unwrap(),
        None
    );
}

#[test]
fn a_token_realm_downgrading_to_http_is_refused_before_credentials_leave() {
    let certs = Arc::new(TestCerts::generate());
    let endpoint = Stub::start(|_: &Seen| Reply::new(500));
    let registry = tls_registry(
        &certs,
        RegistryConfig {
            token_auth: Some(TokenAuth {
                realm: format!("{}/token", endpoint.url()),
                service: token::SERVICE.into(),
                issuer: token::ISSUER.into(),
                root_cert_bundle: certs.ca(),
            }),
            ..RegistryConfig::default()
        },
    );
    let client = registry.client_with(ClientOptions {
        credentials: Some(karapace_oci_client::Credentials::new(
            "alice",
            "open sesame",
        )),
        ..with_ca(&registry, &certs)
    });
    let err = client
        .get_manifest(&repo("secure/env"), &tag("v1"), &[])
        .unwrap_err();
    assert!(matches!(err, OciError::UnsafeUrl { .. }), "{err}");
    assert!(
        err.to_string().contains("token realm") && err.to_string().contains("downgrade"),
        "{err}"
    );
    assert!(
        endpoint.seen().is_empty(),
        "nothing was sent to the plain-HTTP realm"
    );
}
