//! End to end on the real Debian bookworm image made by `scripts/test-image`, served over HTTP on
//! 127.0.0.1 and as a file:// mirror. Needs `KARAPACE_TEST_MIRROR`; fails under CI without it.

use std::path::Path;
use std::time::Duration;

use karapace_images::testing::{ServerOptions, TestServer, fixture_mirror};
use karapace_images::{
    ImageCache, ImageConfig, Resolution, extract, fetch, host_arch, resolve, sha256_file,
};

fn config(server: &str, cache: &Path) -> ImageConfig {
    let mut cfg = ImageConfig::new(server, cache).unwrap();
    cfg.transfer.progress = false;
    cfg.transfer.stall_timeout = Duration::from_secs(20);
    cfg
}

#[test]
fn debian_bookworm_over_http_and_file_urls() {
    let Some(mirror) = fixture_mirror() else {
        return;
    };
    let arch = host_arch().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::new(cache_dir.path());

    // HTTP on loopback: the same code path as the public server.
    let server = TestServer::serve(&mirror).unwrap();
    let cfg = config(&server.url(), cache_dir.path());
    let r = resolve("debian/bookworm", &cfg).unwrap();
    assert_eq!(r.resolution, Resolution::Simplestreams);
    assert!(
        r.url
            .contains(&format!("/images/debian/bookworm/{arch}/default/")),
        "{}",
        r.url
    );
    let expected = r.expected_sha256.clone().expect("index publishes a sha256");

    let img = fetch(&r, &cache, false).unwrap();
    assert_eq!(img.digest, format!("sha256:{expected}"));
    assert_eq!(sha256_file(&img.path).unwrap(), expected);

    // Another alias of the same image: cache hit, no second download.
    let again = fetch(&resolve("DEBIAN", &cfg).unwrap(), &cache, false).unwrap();
    assert_eq!(again.path, img.path);
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|q| q.ends_with("rootfs.tar.xz"))
            .count(),
        1
    );

    // The listing fallback finds the same build and verifies it through SHA256SUMS.
    let mut opts = ServerOptions::new(&mirror);
    opts.hide_streams = true;
    let listing_server = TestServer::start(opts).unwrap();
    let lr = resolve("debian", &config(&listing_server.url(), cache_dir.path())).unwrap();
    assert_eq!(lr.resolution, Resolution::DirectoryListing);
    assert_eq!(lr.build, r.build);
    assert_eq!(lr.expected_sha256.as_deref(), Some(expected.as_str()));

    // file:// mirror: same bytes, same digest, fetched into a fresh cache.
    let file_cache = tempfile::tempdir().unwrap();
    let fcfg = config(&format!("file://{}", mirror.display()), file_cache.path());
    let fr = resolve("debian", &fcfg).unwrap();
    assert!(fr.url.starts_with("file://"));
    let fimg = fetch(&fr, &ImageCache::new(file_cache.path()), false).unwrap();
    assert_eq!(fimg.digest, img.digest);

    // Offline afterwards, with the HTTP server gone.
    drop(server);
    let mut offline = cfg.clone();
    offline.offline = true;
    let or = resolve("debian/bookworm", &offline).unwrap();
    assert_eq!(fetch(&or, &cache, true).unwrap().digest, img.digest);

    let out = tempfile::tempdir().unwrap();
    let rootfs = out.path().join("rootfs");
    let report = extract(&img, &rootfs).unwrap();
    assert!(report.entries > 5000, "{report:?}");
    assert!(
        !rootfs.join("dev/null").exists(),
        "device nodes are skipped"
    );
    let version = std::fs::read_to_string(rootfs.join("etc/debian_version")).unwrap();
    assert!(
        version.starts_with("12."),
        "bookworm is Debian 12, got {version:?}"
    );
    assert!(rootfs.join("usr/bin/apt-get").is_file());
    // Every symlink was resolved through the tree and none climbs out: the image's real
    // relative links (`etc/os-release -> ../usr/lib/os-release`, the rc*.d links…) are all
    // accepted.
    let climbing = relative_links_climbing(&rootfs, 1);
    assert!(climbing > 20, "only {climbing} relative links with `..`");
    let sources = std::fs::read_to_string(rootfs.join("etc/apt/sources.list")).unwrap_or_default();
    assert!(
        sources.contains("bookworm"),
        "apt points at a bookworm mirror: {sources:?}"
    );
}

/// How many symlinks under `root` have a relative target with at least `ups` `..` components.
fn relative_links_climbing(root: &Path, ups: usize) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                let dots = t
                    .components()
                    .filter(|c| matches!(c, std::path::Component::ParentDir))
                    .count();
                if t.is_relative() && dots >= ups {
                    n += 1;
                }
            }
        }
    }
    n
}
