//! Issue 5 benchmark: the curl environment on the local Debian image, beside the standard tool's
//! figures measured on the same image.
//!
//! ```text
//! export KARAPACE_TEST_MIRROR="$(sudo scripts/test-image | tail -n 1)"
//! scripts/build-release
//! cargo bench -p karapace-tests --bench build_bench
//! ```
//!
//! * first build: fresh store and image cache, the image served over HTTP on 127.0.0.1 (so the
//!   download, verification, extraction, apt refresh + install and layer import all count);
//! * no-op build: manifest and lock unchanged, median of `KARAPACE_BENCH_NOOP_RUNS` (10);
//! * `exec -- true` on the built environment, median of `KARAPACE_BENCH_EXEC_RUNS` (30).
//!
//! `KARAPACE_BENCH_FIRST_BUILDS` (default 1) repeats the first build in fresh stores.
//! Every timed command must succeed; a failure aborts with its diagnostic.

use std::time::Duration;

use karapace_tests::{Karapace, Mirror, TestDir};

const CURL_MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["curl"]
"#;

/// The standard tool on this image (issue 5).
const STD_FIRST_BUILD: Duration = Duration::from_millis(23_400);
const STD_NOOP: Duration = Duration::from_millis(6_700);
const STD_EXEC_TRUE: Duration = Duration::from_millis(130);

fn runs(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2
    }
}

fn show(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else if d >= Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    }
}

struct Row {
    what: String,
    measured: Duration,
    spread: String,
    target: Option<Duration>,
    standard: Duration,
}

fn main() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let server = mirror.serve_http();
    let first_runs = runs("KARAPACE_BENCH_FIRST_BUILDS", 1);
    let noop_runs = runs("KARAPACE_BENCH_NOOP_RUNS", 10);
    let exec_runs = runs("KARAPACE_BENCH_EXEC_RUNS", 30);
    eprintln!(
        "build_bench: karapace = {}, image server = {}",
        karapace_tests::karapace_bin().display(),
        server.url()
    );

    // First builds, each in a fresh store and cache; the last one is kept for the rest.
    let mut firsts = Vec::new();
    let mut kept = None;
    for i in 0..first_runs {
        let dir = TestDir::new("bench");
        let k = Karapace::new(&dir).image_server(server.url());
        let manifest = dir.write_project_file("karapace.toml", CURL_MANIFEST);
        let manifest = manifest.to_string_lossy().into_owned();
        let out = k.run(&["--json", "build", &manifest]);
        out.assert_success();
        eprintln!("first build {}: {}", i + 1, show(out.elapsed));
        firsts.push(out.elapsed);
        let env_id = out
            .json()
            .get("env_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_else(|| panic!("build --json has no env_id\n{out}"))
            .to_owned();
        kept = Some((dir, k, manifest, env_id));
    }
    let Some((_dir, k, manifest, env_id)) = kept else {
        return;
    };

    let mut noops = Vec::new();
    for _ in 0..noop_runs {
        let out = k.run(&["build", &manifest]);
        out.assert_success();
        noops.push(out.elapsed);
    }
    let mut execs = Vec::new();
    for _ in 0..exec_runs {
        let out = k.exec(&env_id, &["true"]);
        out.assert_success();
        execs.push(out.elapsed);
    }
    exec_against_bwrap(&k, &env_id, exec_runs);

    let spread = |xs: &[Duration]| {
        let (lo, hi) = (xs.iter().min(), xs.iter().max());
        match (lo, hi) {
            (Some(lo), Some(hi)) if xs.len() > 1 => format!("{} – {}", show(*lo), show(*hi)),
            _ => "-".to_owned(),
        }
    };
    let rows = [
        Row {
            what: format!("first build, curl (median of {first_runs})"),
            spread: spread(&firsts),
            measured: median(firsts),
            target: Some(STD_FIRST_BUILD.mul_f64(0.6)),
            standard: STD_FIRST_BUILD,
        },
        Row {
            what: format!("no-op build (median of {noop_runs})"),
            spread: spread(&noops),
            measured: median(noops),
            target: Some(Duration::from_millis(50)),
            standard: STD_NOOP,
        },
        Row {
            what: format!("exec -- true (median of {exec_runs})"),
            spread: spread(&execs),
            measured: median(execs),
            target: None,
            standard: STD_EXEC_TRUE,
        },
    ];

    print_table(&rows);
}

/// Issue 3's benchmark: `karapace exec <env> -- /bin/true` against bubblewrap on the same root
/// file system (the environment's base layer tree in the store) and a plain `/bin/true`,
/// interleaved so that background load hits all three alike. Commands are spawned directly
/// (no test-harness wrapper) and timed from spawn to exit.
fn exec_against_bwrap(k: &Karapace, env_id: &str, runs: usize) {
    use std::process::{Command, Stdio};
    use std::time::Instant;

    let inspect = k.json(&["inspect", env_id, "--json"]);
    let base = inspect
        .get("base_layer")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("inspect --json has no base_layer: {inspect}"));
    let rootfs = k.store().join("store/trees").join(base);
    let bwrap = std::path::Path::new("/usr/bin/bwrap");
    let time = |cmd: &mut Command| {
        let t = Instant::now();
        let status = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        assert!(status.success(), "{cmd:?}: {status}");
        t.elapsed()
    };
    let (mut ours, mut theirs, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs + 3 {
        let a = time(Command::new(k.bin()).arg("--store").arg(k.store()).args([
            "exec",
            env_id,
            "--",
            "/bin/true",
        ]));
        let b = bwrap.exists().then(|| {
            time(
                Command::new(bwrap)
                    .args(["--unshare-all", "--ro-bind"])
                    .arg(&rootfs)
                    .args(["/", "--proc", "/proc", "--dev", "/dev", "/bin/true"]),
            )
        });
        let c = time(&mut Command::new("/bin/true"));
        if i >= 3 {
            // The first rounds warm the page cache.
            ours.push(a);
            theirs.extend(b);
            plain.push(c);
        }
    }
    println!();
    println!("`exec -- /bin/true` against bubblewrap on the same root file system, interleaved:");
    println!();
    let helper = karapace_tests::bins::helper_bin();
    for bin in std::iter::once(k.bin().to_path_buf()).chain(helper) {
        let linked = match is_dynamically_linked(&bin) {
            Some(true) => {
                "dynamically linked: build with scripts/build-release for published numbers"
            }
            Some(false) => "statically linked (scripts/build-release)",
            None => "not an ELF file?",
        };
        println!("{}: {linked}", bin.display());
    }
    println!();
    println!(
        "| {:<62} | {:>10} | {:<19} |",
        "command (median of runs)", "median", "min – max"
    );
    println!("|{:-<64}|{:->12}|{:-<21}|", "", "", "");
    let row = |what: &str, xs: Vec<Duration>| {
        if xs.is_empty() {
            println!("| {what:<62} | {:>10} | {:<19} |", "not installed", "-");
            return;
        }
        let (lo, hi) = (xs.iter().min().copied(), xs.iter().max().copied());
        let spread = match (lo, hi) {
            (Some(lo), Some(hi)) => format!("{} – {}", show(lo), show(hi)),
            _ => "-".to_owned(),
        };
        println!("| {what:<62} | {:>10} | {spread:<19} |", show(median(xs)));
    };
    row(&format!("karapace exec <env> -- /bin/true ({runs})"), ours);
    row(
        &format!("bwrap --unshare-all --ro-bind <rootfs> / --proc --dev ({runs})"),
        theirs,
    );
    row(&format!("/bin/true ({runs})"), plain);
}

/// Whether an ELF executable names a program interpreter (`PT_INTERP`), i.e. is loaded by
/// `ld.so`; `None` when the file cannot be read as a 64-bit little-endian ELF file.
fn is_dynamically_linked(path: &std::path::Path) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    let data = std::fs::read(path).ok()?;
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?));
    if data.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let (phentsize, phnum) = (usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
    let mut interp = false;
    for i in 0..phnum {
        interp |= u32_at(phoff + i * phentsize)? == PT_INTERP;
    }
    Some(interp)
}

/// Markdown table: measured | spread | target | standard tool | target met.
fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| {:<34} | {:>10} | {:<19} | {:>10} | {:>13} | {:<4} |",
        "measurement", "measured", "min – max", "target", "standard tool", "met"
    );
    println!(
        "|{:-<36}|{:->12}|{:-<21}|{:->12}|{:->15}|{:-<6}|",
        "", "", "", "", "", ""
    );
    for r in rows {
        let (target, met) = match r.target {
            Some(t) => (
                format!("≤ {}", show(t)),
                if r.measured <= t { "yes" } else { "NO" },
            ),
            None => ("-".to_owned(), "-"),
        };
        println!(
            "| {:<34} | {:>10} | {:<19} | {:>10} | {:>13} | {:<4} |",
            r.what,
            show(r.measured),
            r.spread,
            target,
            show(r.standard),
            met
        );
    }
}
