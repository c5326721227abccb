//! Receiving blobs from elsewhere (pull) and the sha256 cache for registries.

mod common;

use std::io::Read;

use common::fixture;
use karapace_store::{LayerKind, StoreError};
use sha2::Digest;

fn blake3_hex(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

#[test]
fn a_received_object_is_published_only_under_the_key_its_bytes_hash_to() {
    let f = fixture();
    let staging = f.store.staging_dir().unwrap();
    let bytes = b"layer bytes".to_vec();
    let key = blake3_hex(&bytes);
    let wrong = blake3_hex(b"something else");
    let err = f
        .store
        .receive_object(&staging, &wrong, &mut &bytes[..])
        .unwrap_err();
    assert!(matches!(err, StoreError::Integrity { .. }), "{err}");
    assert!(!f.store.has_object(&wrong));
    assert_eq!(
        std::fs::read_dir(staging.path()).unwrap().count(),
        0,
        "temp removed"
    );
    assert_eq!(
        f.store
            .receive_object(&staging, &key, &mut &bytes[..])
            .unwrap(),
        bytes.len() as u64
    );
    let mut back = Vec::new();
    f.store
        .open_object(&key)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, bytes);
    assert!(
        f.store
            .receive_object(&staging, "../../etc/passwd", &mut &bytes[..])
            .is_err()
    );
}

#[test]
fn a_received_layer_must_describe_itself_honestly() {
    let f = fixture();
    let base = f.store.layer(&f.base).unwrap();
    // Re-recording an existing layer is a no-op.
    f.store.receive_layer(&base).unwrap();
    let mut forged = base.clone();
    forged.kind = LayerKind::Dependency;
    assert!(
        f.store.receive_layer(&forged).is_err(),
        "hash no longer matches its fields"
    );
    let mut orphan = base.clone();
    orphan.tar_hash = blake3_hex(b"never received");
    orphan.object_refs = vec![orphan.tar_hash.clone()];
    orphan.hash = orphan.expected_hash().unwrap();
    let err = f.store.receive_layer(&orphan).unwrap_err();
    assert!(err.to_string().contains("was not received"), "{err}");
    let mut parentless = base.clone();
    parentless.kind = LayerKind::Dependency;
    parentless.hash = parentless.expected_hash().unwrap();
    assert!(
        f.store.receive_layer(&parentless).is_err(),
        "only a base has no parent"
    );
}

#[test]
fn object_sha256_is_computed_once_cached_and_pruned_by_gc() {
    let f = fixture();
    let base = f.store.layer(&f.base).unwrap();
    let mut bytes = Vec::new();
    f.store
        .open_object(&base.tar_hash)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let expected = hex::encode(sha2::Sha256::digest(&bytes));
    assert_eq!(f.store.object_sha256(&base.tar_hash).unwrap(), expected);
    let cached = f.root.join("store/digests").join(&base.tar_hash);
    assert_eq!(std::fs::read_to_string(&cached).unwrap(), expected);
    assert_eq!(f.store.object_sha256(&base.tar_hash).unwrap(), expected);
    // Nothing references the base layer: gc removes it, its object and the cached digest.
    f.store.gc(false).unwrap();
    assert!(!cached.exists());
    let report = f.store.verify().unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
}
