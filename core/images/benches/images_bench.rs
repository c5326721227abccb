//! Timings on the real fixture image (`KARAPACE_TEST_MIRROR`, made by `scripts/test-image`):
//! resolve, cold fetch over loopback HTTP and file://, cache hit (re-hash), extract.
//! Run: `cargo bench -p karapace-images --features test-server`.

use std::path::Path;
use std::time::{Duration, Instant};

use karapace_images::testing::{TestServer, fixture_mirror};
use karapace_images::{ImageCache, ImageConfig, extract, fetch, resolve};

fn config(server: &str, cache: &Path) -> ImageConfig {
    let mut cfg = ImageConfig::new(server, cache).expect("valid server URL");
    cfg.transfer.progress = false;
    cfg
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn main() {
    let Some(mirror) = fixture_mirror() else {
        return;
    };
    let server = TestServer::serve(&mirror).expect("start server");
    let mut rows: Vec<(String, Duration)> = Vec::new();
    let runs = 3;
    for run in 1..=runs {
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let cache = ImageCache::new(cache_dir.path());
        let cfg = config(&server.url(), cache_dir.path());
        let (r, d) = time(|| resolve("debian/bookworm", &cfg).expect("resolve"));
        rows.push((format!("run {run}: resolve (simplestreams, http)"), d));
        let (img, d) = time(|| fetch(&r, &cache, false).expect("fetch"));
        rows.push((
            format!(
                "run {run}: fetch cold, http ({} MiB)",
                img.size / (1024 * 1024)
            ),
            d,
        ));
        let (_, d) = time(|| fetch(&r, &cache, false).expect("fetch"));
        rows.push((format!("run {run}: fetch cache hit (re-hash)"), d));

        let file_cache = tempfile::tempdir().expect("tempdir");
        let fcfg = config(&format!("file://{}", mirror.display()), file_cache.path());
        let fr = resolve("debian", &fcfg).expect("resolve");
        let (_, d) =
            time(|| fetch(&fr, &ImageCache::new(file_cache.path()), false).expect("fetch"));
        rows.push((format!("run {run}: fetch cold, file://"), d));

        let out = tempfile::tempdir().expect("tempdir");
        let (report, d) = time(|| extract(&img, &out.path().join("rootfs")).expect("extract"));
        rows.push((
            format!("run {run}: extract ({} entries)", report.entries),
            d,
        ));
    }
    println!("{:<48} {:>10}", "operation", "seconds");
    for (name, d) in rows {
        println!("{name:<48} {:>10.3}", d.as_secs_f64());
    }
}
