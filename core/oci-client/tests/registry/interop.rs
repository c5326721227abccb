//! `skopeo` (an independent implementation of the distribution protocol) reads what the client
//! pushes, and the client reads what `skopeo` pushes.

use std::path::Path;
use std::process::Command;

use karapace_oci_client::Sha256Digest;
use karapace_oci_client::testing::{RegistryConfig, TestRegistry};

use crate::support::image::{TestImage, fetch_blob, repo, tag};

/// Runs skopeo with a permissive signature policy of its own (the host's may differ) and
/// returns its standard output.
fn skopeo(args: &[&str]) -> String {
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let out = Command::new("skopeo")
        .arg("--policy")
        .arg(&policy)
        .args(args)
        .output()
        .expect("skopeo (package skopeo) is needed by the interop tests");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn skopeo_inspects_and_copies_an_image_the_client_pushed() {
    let registry = TestRegistry::start(&RegistryConfig::default());
    let client = registry.client();
    let image = TestImage::sample("pushed by karapace");
    image.push(&client, &repo("karapace/interop"), "v1");
    let reference = format!("docker://{}/karapace/interop:v1", registry.address());

    let inspected: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &reference])).unwrap();
    let layers: Vec<String> = inspected["Layers"]
        .as_array()
        .expect("skopeo lists the layers")
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = image
        .layer_digests()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(layers, expected);
    assert_eq!(inspected["Digest"], image.manifest_digest().to_string());
    assert_eq!(inspected["Os"], "linux");

    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &reference]);
    assert_eq!(raw.as_bytes(), image.manifest_bytes.as_slice());

    let layout = tempfile::tempdir().unwrap();
    let destination = format!("oci:{}:v1", layout.path().display());
    skopeo(&["copy", "--src-tls-verify=false", &reference, &destination]);
    for blob in image.layers.iter().chain([&image.config]) {
        let copied = blob_in_layout(layout.path(), &Sha256Digest::of(blob));
        assert_eq!(&copied, blob, "skopeo copied the blob unchanged");
    }
}

#[test]
fn the_client_reads_back_an_image_skopeo_pushed() {
    let registry = TestRegistry::start(&RegistryConfig::default());
    let image = TestImage::sample("pushed by skopeo");
    let layout = tempfile::tempdir().unwrap();
    image.write_oci_layout(layout.path(), "v2");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v2", layout.path().display()),
        &format!("docker://{}/other/tool:v2", registry.address()),
    ]);

    let client = registry.client();
    let repo = repo("other/tool");
    let (manifest, _) = client.get_image_manifest(&repo, &tag("v2")).unwrap();
    let config = Sha256Digest::try_from(manifest.config().digest()).unwrap();
    assert_eq!(fetch_blob(&client, &repo, &config), image.config);
    assert_eq!(manifest.layers().len(), image.layers.len());
    for (descriptor, original) in manifest.layers().iter().zip(&image.layers) {
        let digest = Sha256Digest::try_from(descriptor.digest()).unwrap();
        assert_eq!(&fetch_blob(&client, &repo, &digest), original);
    }
    let tags: Vec<String> = client
        .tags(&repo)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(tags, ["v2"]);
}

fn blob_in_layout(layout: &Path, digest: &Sha256Digest) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(digest.hex()))
        .unwrap_or_else(|e| panic!("{digest} is not in the copied layout: {e}"))
}
