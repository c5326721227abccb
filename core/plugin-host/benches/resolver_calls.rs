//! Cost of resolver plugin calls. `cargo bench -p karapace-plugin-host`
//! prints a table (medians):
//!
//! - one resolver call in a fresh process, including loading the embedded
//!   built-ins (target ≤ 2 ms): the bench re-executes itself as the child;
//! - a call with the host already loaded (each call still gets a fresh store
//!   and instance);
//! - first load of a directory plugin: no cache, cache miss (compile + write),
//!   cache hit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use karapace_plugin_host::{ImageContext, LoadOptions, PackageRequest, PluginHost, StepOptions};

const CHILD_ENV: &str = "KARAPACE_PLUGIN_BENCH_CHILD";
const DPKG_FIXTURE: &str = "tests/fixtures/apt/dpkg-query-bookworm-all.txt";

fn main() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("noop") => return,
        Ok("call") => {
            child_call();
            return;
        }
        _ => {}
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dpkg = std::fs::read_to_string(manifest.join(DPKG_FIXTURE)).expect("fixture");
    let xbps = manifest.join("../../examples/plugin-xbps/dist/xbps.wasm");

    let mut rows: Vec<(String, Duration)> = Vec::new();

    // Fresh process: spawn cost alone, then spawn + load + one call.
    let spawn_only = median(30, || spawn("noop"));
    let spawn_call = median(30, || spawn("call"));
    rows.push(("process spawn alone (baseline)".into(), spawn_only));
    rows.push((
        "fresh process: load built-ins + 1 call, total".into(),
        spawn_call,
    ));
    rows.push((
        "  = per resolver call in a fresh process (minus spawn)".into(),
        spawn_call.saturating_sub(spawn_only),
    ));

    // In-process.
    rows.push((
        "load_builtin_only (5 plugins; metadata from build time)".into(),
        median(30, || {
            let t = Instant::now();
            let host = PluginHost::load_builtin_only().expect("load");
            let d = t.elapsed();
            drop(host);
            d
        }),
    ));
    rows.push((
        "first call of a built-in (deserialize + link + call)".into(),
        median(30, || {
            let host = PluginHost::load_builtin_only().expect("load");
            let apt = host.get("apt").expect("apt");
            time(|| {
                apt.validate_name(&ImageContext::EMPTY, "curl")
                    .expect("valid");
            })
        }),
    ));
    let host = PluginHost::load_builtin_only().expect("load");
    let apt = host.get("apt").expect("apt");
    rows.push((
        "warm call: apt validate-name".into(),
        median(200, || {
            time(|| {
                apt.validate_name(&ImageContext::EMPTY, "curl")
                    .expect("valid");
            })
        }),
    ));
    rows.push((
        "warm call: apt install-steps (3 packages)".into(),
        median(200, || {
            time(|| {
                apt.install_steps(
                    &ImageContext::EMPTY,
                    &[
                        PackageRequest::latest("curl"),
                        PackageRequest::latest("git"),
                        PackageRequest::pinned("bash", "5.2.15-2+b13"),
                    ],
                    StepOptions::default(),
                )
                .expect("steps")
            })
        }),
    ));
    rows.push((
        "warm call: apt parse-query (89 real dpkg lines)".into(),
        median(200, || {
            time(|| {
                apt.parse_query(&ImageContext::EMPTY, &[], &dpkg)
                    .expect("parse")
            })
        }),
    ));
    let big = dpkg.repeat(225); // ≈ 20 000 lines
    rows.push((
        "warm call: apt parse-query (≈20 000 lines)".into(),
        median(10, || {
            time(|| {
                apt.parse_query(&ImageContext::EMPTY, &[], &big)
                    .expect("parse")
            })
        }),
    ));

    directory_plugin_rows(&mut rows, &xbps);

    println!(
        "\n{:<66} {:>12}",
        "resolver plugin benchmark (median)", "time"
    );
    println!("{}", "-".repeat(79));
    for (what, d) in rows {
        println!("{what:<66} {:>9.3} ms", d.as_secs_f64() * 1e3);
    }
}

/// First load of a directory plugin, with and without the cache.
fn directory_plugin_rows(rows: &mut Vec<(String, Duration)>, xbps: &Path) {
    // Directory plugin first load (host load with one directory plugin,
    // minus the built-ins-only load measured above is the plugin's share).
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(xbps, dir.path().join("xbps.wasm")).expect("copy xbps");
    let load_dir = |cache: Option<PathBuf>| {
        let t = Instant::now();
        let host = PluginHost::load_with(&LoadOptions {
            dirs: vec![dir.path().to_path_buf()],
            cache_dir: cache,
            ..LoadOptions::default()
        })
        .expect("load");
        assert!(host.get("xbps").is_some());
        t.elapsed()
    };
    rows.push((
        "load built-ins + directory plugin, no cache (compile)".into(),
        median(10, || load_dir(None)),
    ));
    rows.push((
        "load built-ins + directory plugin, cache miss (compile+write)".into(),
        median(10, || {
            let cache = tempfile::tempdir().expect("tempdir");
            load_dir(Some(cache.path().join("c")))
        }),
    ));
    let cache = tempfile::tempdir().expect("tempdir");
    load_dir(Some(cache.path().join("c")));
    rows.push((
        "load built-ins + directory plugin, cache hit".into(),
        median(30, || load_dir(Some(cache.path().join("c")))),
    ));
}

/// Child process: load the embedded plugins and make one resolver call.
fn child_call() {
    let host = PluginHost::load_builtin_only().expect("load");
    let apt = host.get("apt").expect("apt");
    let steps = apt
        .install_steps(
            &ImageContext::EMPTY,
            &[PackageRequest::latest("curl")],
            StepOptions::default(),
        )
        .expect("steps");
    assert_eq!(steps.len(), 1);
}

fn spawn(mode: &str) -> Duration {
    let exe = std::env::current_exe().expect("current exe");
    let t = Instant::now();
    let status = Command::new(exe)
        .env(CHILD_ENV, mode)
        .status()
        .expect("spawn");
    let d = t.elapsed();
    assert!(status.success());
    d
}

fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed()
}

fn median(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut v: Vec<Duration> = (0..n).map(|_| f()).collect();
    v.sort();
    v[n / 2]
}
