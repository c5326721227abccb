//! Push and pull against a real registry.

use std::cell::Cell;

use karapace_oci_client::oci_spec::image::MediaType;
use karapace_oci_client::testing::{RegistryConfig, TestRegistry};
use karapace_oci_client::{BlobPush, MountOutcome, Reference, Sha256Digest};

use crate::support::image::{TestImage, fetch_blob, repo, tag};

#[test]
fn an_image_pushed_blob_by_blob_comes_back_verified() {
    let registry = TestRegistry::start(&RegistryConfig::default());
    let client = registry.client();
    let repo = repo("karapace/roundtrip");
    let image = TestImage::sample("roundtrip");
    let blobs: Vec<&Vec<u8>> = image.layers.iter().chain([&image.config]).collect();

    for blob in &blobs {
        assert_eq!(
            client.blob_exists(&repo, &Sha256Digest::of(blob)).unwrap(),
            None
        );
    }
    for blob in &blobs {
        let pushed = client
            .push_blob(&repo, &Sha256Digest::of(blob), blob.len() as u64, || {
                Ok(blob.as_slice())
            })
            .unwrap();
        assert_eq!(pushed, BlobPush::Uploaded);
    }
    for blob in &blobs {
        assert_eq!(
            client.blob_exists(&repo, &Sha256Digest::of(blob)).unwrap(),
            Some(blob.len() as u64)
        );
    }

    let digest = client
        .put_manifest(
            &repo,
            &tag("v1"),
            &MediaType::ImageManifest,
            &image.manifest_bytes,
        )
        .unwrap();
    assert_eq!(digest, image.manifest_digest());

    let by_tag = client.get_manifest(&repo, &tag("v1"), &[]).unwrap();
    assert_eq!(by_tag.bytes, image.manifest_bytes);
    assert_eq!(by_tag.digest, digest);
    assert_eq!(by_tag.media_type, MediaType::ImageManifest);
    let by_digest = client
        .get_manifest(
            &repo,
            &Reference::Digest(digest.clone()),
            &[MediaType::ImageManifest],
        )
        .unwrap();
    assert_eq!(by_digest.bytes, image.manifest_bytes);

    let (manifest, manifest_digest) = client.get_image_manifest(&repo, &tag("v1")).unwrap();
    assert_eq!(manifest_digest, digest);
    assert_eq!(manifest, image.manifest);
    for (descriptor, original) in manifest.layers().iter().zip(&image.layers) {
        let digest = Sha256Digest::try_from(descriptor.digest()).unwrap();
        let mut reader = client
            .get_blob(&repo, &digest, Some(descriptor.size()))
            .unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut bytes).unwrap();
        assert_eq!(&bytes, original);
    }
    let config_digest = Sha256Digest::try_from(manifest.config().digest()).unwrap();
    assert_eq!(fetch_blob(&client, &repo, &config_digest), image.config);
}

#[test]
fn a_second_push_of_the_same_blob_sends_nothing() {
    let registry = TestRegistry::start(&RegistryConfig::default());
    let client = registry.client();
    let repo = repo("karapace/again");
    let blob = b"the same bytes twice".to_vec();
    let digest = Sha256Digest::of(&blob);
    let opened = Cell::new(0);
    let open = || {
        opened.set(opened.get() + 1);
        Ok(blob.as_slice())
    };
    assert_eq!(
        client
            .push_blob(&repo, &digest, blob.len() as u64, open)
            .unwrap(),
        BlobPush::Uploaded
    );
    assert_eq!(opened.get(), 1);
    assert_eq!(
        client
            .push_blob(&repo, &digest, blob.len() as u64, open)
            .unwrap(),
        BlobPush::AlreadyPresent
    );
    assert_eq!(
        opened.get(),
        1,
        "the source was not even opened the second time"
    );
}

#[test]
fn an_empty_blob_round_trips() {
    let registry = TestRegistry::start(&RegistryConfig::default());
    let client = registry.client();
    let repo = repo("karapace/empty");
    let digest = Sha256Digest::of(b"");
    assert_eq!(
        client
            .push_blob(&repo, &digest, 0, || Ok(&b""[..]))
            .unwrap(),
        BlobPush::Uploaded
    );
    assert_eq!(client.blob_exists(&repo, &digest).unwrap(), Some(0));
    assert!(fetch_blob(&client, &repo, &digest).is_empty());
}

#[test]
fn a_blob_is_mounted_from_another_repository_without_its_bytes() {
    let registry = TestRegistry::start(&RegistryConfig::default());
    let client = registry.client();
    let source = repo("team/base");
    let blob = b"a layer shared between environments".to_vec();
    let digest = Sha256Digest::of(&blob);
    let len = blob.len() as u64;
    client
        .push_blob(&source, &digest, len, || Ok(blob.as_slice()))
        .unwrap();

    let mounted = repo("team/app");
    assert_eq!(
        client.mount_blob(&mounted, &digest, &source).unwrap(),
        MountOutcome::Mounted
    );
    assert_eq!(client.blob_exists(&mounted, &digest).unwrap(), Some(len));

    let never_opened = || -> std::io::Result<&[u8]> { panic!("a mount must not read the source") };
    assert_eq!(
        client
            .mount_or_push_blob(&repo("team/other"), &digest, &source, len, never_opened)
            .unwrap(),
        BlobPush::Mounted
    );

    // From a repository that does not have it: no mount, the session is cancelled.
    let other = b"only pushed later".to_vec();
    let other_digest = Sha256Digest::of(&other);
    let target = repo("team/fallback");
    assert_eq!(
        client.mount_blob(&target, &other_digest, &source).unwrap(),
        MountOutcome::NotMounted
    );
    assert_eq!(client.blob_exists(&target, &other_digest).unwrap(), None);
    // …and with a fallback, the bytes go into the session the mount opened.
    assert_eq!(
        client
            .mount_or_push_blob(&target, &other_digest, &source, other.len() as u64, || {
                Ok(other.as_slice())
            })
            .unwrap(),
        BlobPush::Uploaded
    );
    assert_eq!(fetch_blob(&client, &target, &other_digest), other);
}

#[test]
fn tags_are_listed_across_pages() {
    let registry = TestRegistry::start(&RegistryConfig::default());
    let client = registry.client();
    let repo = repo("karapace/tags");
    let image = TestImage::sample("tags");
    image.push(&client, &repo, "v0");
    let names = ["v1", "v2", "latest", "dev_1", "x.y-z"];
    for name in names {
        client
            .put_manifest(
                &repo,
                &tag(name),
                &MediaType::ImageManifest,
                &image.manifest_bytes,
            )
            .unwrap();
    }
    let mut expected: Vec<String> = names.iter().map(ToString::to_string).collect();
    expected.push("v0".into());
    expected.sort();

    let mut all: Vec<String> = client
        .tags(&repo)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    all.sort();
    assert_eq!(all, expected);
    // Two per page: the registry's `Link` headers are followed to the end.
    let mut paged: Vec<String> = client
        .tags_in_pages(&repo, 2)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    paged.sort();
    assert_eq!(paged, expected);

    let missing = client.tags(&crate::support::image::repo("karapace/nothing-here"));
    assert!(missing.unwrap_err().is_not_found());
}

#[test]
fn an_unknown_manifest_or_blob_is_not_found() {
    let registry = TestRegistry::start(&RegistryConfig::default());
    let client = registry.client();
    let repo = repo("karapace/missing");
    let err = client.get_manifest(&repo, &tag("nope"), &[]).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().contains("MANIFEST_UNKNOWN") || err.to_string().contains("NAME_UNKNOWN"),
        "{err}"
    );
    let digest = Sha256Digest::of(b"never pushed");
    let err = client.get_blob(&repo, &digest, None).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
}

#[test]
fn one_client_pushes_from_several_threads() {
    let registry = TestRegistry::start(&RegistryConfig {
        basic_auth: Some(("alice".into(), "pw".into())),
        ..RegistryConfig::default()
    });
    let client = registry.client_as("alice", "pw");
    let repo = repo("karapace/parallel");
    let blobs: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("blob number {i}").into_bytes())
        .collect();
    std::thread::scope(|scope| {
        for blob in &blobs {
            let (client, repo) = (&client, &repo);
            scope.spawn(move || {
                let pushed = client
                    .push_blob(repo, &Sha256Digest::of(blob), blob.len() as u64, || {
                        Ok(blob.as_slice())
                    })
                    .unwrap();
                assert_eq!(pushed, BlobPush::Uploaded);
            });
        }
    });
    for blob in &blobs {
        assert_eq!(fetch_blob(&client, &repo, &Sha256Digest::of(blob)), *blob);
    }
}
