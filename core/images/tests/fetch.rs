//! Resolution and download against a real loopback HTTP server and file:// mirrors.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use karapace_images::testing::{MirrorImage, ServerOptions, TestServer, sha256_hex, write_mirror};
use karapace_images::{ImageCache, ImageError, Resolution, fetch, pin_url, resolve};

const OLD: &str = "20260219_05:24";
const NEW: &str = "20260220_04:20";

/// A mirror with two builds of debian/bookworm (amd64); returns (old archive, new archive).
fn two_build_mirror(root: &Path, with_streams: bool) -> (Vec<u8>, Vec<u8>) {
    let old = common::gzip(&common::small_rootfs());
    let new = common::xz(&common::small_rootfs());
    let img = |build, archive| MirrorImage {
        distro: "debian",
        release: "bookworm",
        arch: "amd64",
        build,
        archive,
        published_sha256: None,
    };
    write_mirror(root, &[img(OLD, &old), img(NEW, &new)], with_streams).unwrap();
    (old, new)
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn simplestreams_is_preferred_and_verified_over_http() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let (_, new) = two_build_mirror(mirror.path(), true);
    let server = TestServer::serve(mirror.path()).unwrap();
    let cfg = common::config(&server.url(), cache_dir.path());

    let r = resolve("Debian/Bookworm", &cfg).unwrap();
    assert_eq!(r.resolution, Resolution::Simplestreams);
    assert_eq!(r.build.as_deref(), Some(NEW));
    assert_eq!(
        r.url,
        format!(
            "{}/images/debian/bookworm/amd64/default/20260220_04%3A20/rootfs.tar.xz",
            server.url()
        )
    );
    assert_eq!(
        r.expected_sha256.as_deref(),
        Some(sha256_hex(&new).as_str())
    );
    let reqs = server.requests();
    assert!(
        reqs.iter().any(|r| r == "GET /streams/v1/index.json"),
        "{reqs:?}"
    );
    assert!(
        reqs.iter().any(|r| r == "GET /streams/v1/images.json"),
        "{reqs:?}"
    );
    assert!(
        !reqs.iter().any(|r| r.ends_with("/default/")),
        "listing must not be needed: {reqs:?}"
    );

    let cache = ImageCache::new(cache_dir.path());
    let img = fetch(&r, &cache, false).unwrap();
    assert_eq!(img.digest, format!("sha256:{}", sha256_hex(&new)));
    assert_eq!(std::fs::read(&img.path).unwrap(), new);
    assert_eq!(img.path, cache.blob_path(&sha256_hex(&new)));
    assert!(
        entries(&cache_dir.path().join("tmp")).is_empty(),
        "no partial files left"
    );

    assert_eq!(pin_url("debian", &cfg).unwrap(), r.url);
}

#[test]
fn two_aliases_share_one_cached_blob_without_a_second_download() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    two_build_mirror(mirror.path(), true);
    let server = TestServer::serve(mirror.path()).unwrap();
    let cfg = common::config(&server.url(), cache_dir.path());
    let cache = ImageCache::new(cache_dir.path());

    let a = fetch(&resolve("debian", &cfg).unwrap(), &cache, false).unwrap();
    let b = fetch(&resolve("DEBIAN/bookworm", &cfg).unwrap(), &cache, false).unwrap();
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.path, b.path);
    let downloads = server
        .requests()
        .iter()
        .filter(|r| r.ends_with("rootfs.tar.xz"))
        .count();
    assert_eq!(downloads, 1, "{:?}", server.requests());
    assert_eq!(entries(&cache_dir.path().join("blobs/sha256")).len(), 1);
}

#[test]
fn directory_listing_fallback_over_http_uses_sha256sums() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let (_, new) = two_build_mirror(mirror.path(), true);
    let mut opts = ServerOptions::new(mirror.path());
    opts.hide_streams = true;
    let server = TestServer::start(opts).unwrap();
    let cfg = common::config(&server.url(), cache_dir.path());

    let r = resolve("debian/bookworm", &cfg).unwrap();
    assert_eq!(r.resolution, Resolution::DirectoryListing);
    assert_eq!(r.build.as_deref(), Some(NEW));
    assert_eq!(
        r.expected_sha256.as_deref(),
        Some(sha256_hex(&new).as_str())
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r == "GET /images/debian/bookworm/amd64/default/")
    );
    let img = fetch(&r, &ImageCache::new(cache_dir.path()), false).unwrap();
    assert_eq!(img.digest, format!("sha256:{}", sha256_hex(&new)));
}

#[test]
fn file_server_with_and_without_index() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let (_, new) = two_build_mirror(mirror.path(), true);
    let server = format!("file://{}", mirror.path().display());
    let cfg = common::config(&server, cache_dir.path());

    let r = resolve("debian", &cfg).unwrap();
    assert_eq!(r.resolution, Resolution::Simplestreams);
    assert!(
        r.url.starts_with("file://") && r.url.ends_with("/20260220_04%3A20/rootfs.tar.xz"),
        "{}",
        r.url
    );
    let img = fetch(&r, &ImageCache::new(cache_dir.path()), false).unwrap();
    assert_eq!(img.digest, format!("sha256:{}", sha256_hex(&new)));

    std::fs::remove_dir_all(mirror.path().join("streams")).unwrap();
    let r = resolve("debian", &cfg).unwrap();
    assert_eq!(r.resolution, Resolution::DirectoryListing);
    assert_eq!(r.build.as_deref(), Some(NEW));
    assert_eq!(
        r.expected_sha256.as_deref(),
        Some(sha256_hex(&new).as_str())
    );
}

#[test]
fn checksum_mismatch_fails_and_caches_nothing() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let archive = common::gzip(&common::small_rootfs());
    let wrong = "0".repeat(64);
    write_mirror(
        mirror.path(),
        &[MirrorImage {
            distro: "debian",
            release: "bookworm",
            arch: "amd64",
            build: NEW,
            archive: &archive,
            published_sha256: Some(&wrong),
        }],
        true,
    )
    .unwrap();
    let server = TestServer::serve(mirror.path()).unwrap();
    let cfg = common::config(&server.url(), cache_dir.path());
    let cache = ImageCache::new(cache_dir.path());
    let r = resolve("debian", &cfg).unwrap();
    match fetch(&r, &cache, false) {
        Err(ImageError::ChecksumMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, sha256_hex(&archive));
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(
        entries(&cache_dir.path().join("blobs/sha256")).is_empty(),
        "nothing cached"
    );
    assert!(
        entries(&cache_dir.path().join("tmp")).is_empty(),
        "partial removed"
    );
    assert!(cache.lookup_url(&r.url).unwrap().is_none());
    // Offline afterwards: still a clean miss, not a half-written image.
    let mut offline = cfg.clone();
    offline.offline = true;
    assert!(resolve("debian", &offline).unwrap_err().is_not_cached());
}

#[test]
fn a_stalled_download_times_out_and_leaves_nothing() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    two_build_mirror(mirror.path(), true);
    let mut opts = ServerOptions::new(mirror.path());
    opts.stall_after = Some(100);
    let server = TestServer::start(opts).unwrap();
    let mut cfg = common::config(&server.url(), cache_dir.path());
    cfg.transfer.stall_timeout = Duration::from_secs(1);
    let r = resolve("debian", &cfg).unwrap();

    let started = Instant::now();
    let err = fetch(&r, &ImageCache::new(cache_dir.path()), false).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, ImageError::Timeout { .. }), "{err:?}");
    assert!(
        took < Duration::from_secs(10),
        "gave up only after {took:?}"
    );
    assert!(entries(&cache_dir.path().join("blobs/sha256")).is_empty());
    assert!(entries(&cache_dir.path().join("tmp")).is_empty());
}

#[test]
fn offline_uses_only_the_cache() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let (_, new) = two_build_mirror(mirror.path(), true);
    let server = TestServer::serve(mirror.path()).unwrap();
    let cfg = common::config(&server.url(), cache_dir.path());
    let mut offline = cfg.clone();
    offline.offline = true;
    let cache = ImageCache::new(cache_dir.path());

    // Empty cache: alias and URL both miss, with a clear error and no network access.
    let before = server.requests().len();
    let err = resolve("debian", &offline).unwrap_err();
    assert!(err.is_not_cached(), "{err}");
    assert!(err.to_string().contains("--offline"), "{err}");
    let url_image = format!(
        "{}/images/debian/bookworm/amd64/default/20260220_04%3A20/rootfs.tar.xz",
        server.url()
    );
    let r = resolve(&url_image, &offline).unwrap();
    assert!(fetch(&r, &cache, true).unwrap_err().is_not_cached());
    assert_eq!(
        server.requests().len(),
        before,
        "offline must not touch the network"
    );

    // Online once, then offline works with the server gone.
    let online = fetch(&resolve("debian", &cfg).unwrap(), &cache, false).unwrap();
    let url = online.url.clone();
    drop(server);
    let r = resolve("Debian", &offline).unwrap();
    assert_eq!(r.resolution, Resolution::Cache);
    assert_eq!(r.url, url);
    let again = fetch(&r, &cache, true).unwrap();
    assert_eq!(again.digest, format!("sha256:{}", sha256_hex(&new)));
    // The explicit URL is known too.
    let again = fetch(&resolve(&url, &offline).unwrap(), &cache, true).unwrap();
    assert_eq!(again.digest, online.digest);
    // Another server's alias is not: the cache is keyed by server and arch.
    let mut other = offline.clone();
    other.server = "http://127.0.0.1:9".to_string();
    assert!(resolve("debian", &other).unwrap_err().is_not_cached());
}

#[test]
fn explicit_url_is_fetched_as_is_and_hashed() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let archive = common::zstd(&common::small_rootfs());
    std::fs::create_dir_all(mirror.path().join("Custom")).unwrap();
    std::fs::write(mirror.path().join("Custom/My-RootFS.tar.zst"), &archive).unwrap();
    let server = TestServer::serve(mirror.path()).unwrap();
    let cfg = common::config(&server.url(), cache_dir.path());
    let url = format!("{}/Custom/My-RootFS.tar.zst", server.url());
    let r = resolve(&url, &cfg).unwrap();
    assert_eq!(
        (
            r.resolution.clone(),
            r.url.as_str(),
            r.expected_sha256.as_deref()
        ),
        (Resolution::ExplicitUrl, url.as_str(), None)
    );
    assert_eq!(pin_url(&url, &cfg).unwrap(), url);
    let img = fetch(&r, &ImageCache::new(cache_dir.path()), false).unwrap();
    assert_eq!(img.digest, format!("sha256:{}", sha256_hex(&archive)));

    // A lock's digest can be enforced on an explicit URL.
    let mut locked = resolve(&format!("{}/Custom/My-RootFS.tar.zst", server.url()), &cfg).unwrap();
    locked.expected_sha256 = Some("1".repeat(64));
    let other_cache = tempfile::tempdir().unwrap();
    assert!(matches!(
        fetch(&locked, &ImageCache::new(other_cache.path()), false),
        Err(ImageError::ChecksumMismatch { .. })
    ));

    let missing = resolve(&format!("{}/nope.tar.xz", server.url()), &cfg).unwrap();
    assert!(matches!(
        fetch(&missing, &ImageCache::new(cache_dir.path()), false),
        Err(ImageError::HttpStatus { status: 404, .. })
    ));
}

#[test]
fn unknown_image_on_server_is_no_build() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    two_build_mirror(mirror.path(), true);
    let server = TestServer::serve(mirror.path()).unwrap();
    let cfg = common::config(&server.url(), cache_dir.path());
    assert!(matches!(
        resolve("fedora", &cfg),
        Err(ImageError::NoBuild { .. })
    ));
    let mut arm = cfg.clone();
    arm.arch = "arm64".to_string();
    assert!(
        matches!(resolve("debian", &arm), Err(ImageError::NoBuild { .. })),
        "uses the configured arch"
    );
}

#[test]
fn corrupt_cache_blob_is_detected_and_redownloaded() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let (_, new) = two_build_mirror(mirror.path(), true);
    let server = TestServer::serve(mirror.path()).unwrap();
    let cfg = common::config(&server.url(), cache_dir.path());
    let cache = ImageCache::new(cache_dir.path());
    let img = fetch(&resolve("debian", &cfg).unwrap(), &cache, false).unwrap();
    // Corrupt it behind the cache's back.
    let mut perms = std::fs::metadata(&img.path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&img.path, perms).unwrap();
    std::fs::write(&img.path, b"garbage").unwrap();

    let mut offline = cfg.clone();
    offline.offline = true;
    let err = fetch(&resolve("debian", &offline).unwrap(), &cache, true);
    assert!(
        matches!(err, Err(ImageError::CacheCorrupt { .. })),
        "{err:?}"
    );
    let again = fetch(&resolve("debian", &cfg).unwrap(), &cache, false).unwrap();
    assert_eq!(std::fs::read(&again.path).unwrap(), new);
}

#[test]
fn partial_downloads_of_dead_processes_are_cleaned_up() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    two_build_mirror(mirror.path(), true);
    let tmp = cache_dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // Pids above the kernel's maximum (2^22) can never be alive.
    let dead = tmp.join("999999999.abc.partial");
    let live = tmp.join(format!("{}.def.partial", std::process::id()));
    std::fs::write(&dead, b"half a download").unwrap();
    std::fs::write(&live, b"someone else's download in progress").unwrap();
    let server = TestServer::serve(mirror.path()).unwrap();
    let cfg = common::config(&server.url(), cache_dir.path());
    fetch(
        &resolve("debian", &cfg).unwrap(),
        &ImageCache::new(cache_dir.path()),
        false,
    )
    .unwrap();
    assert!(!dead.exists(), "stale partial removed");
    assert!(live.exists(), "a live process's partial is left alone");
}
