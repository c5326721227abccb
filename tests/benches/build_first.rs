//! Issue 13, item 5: the first build of an environment beside its floor — the same work done by
//! hand with the standard tools (`scripts/bench-floor-build`: unpack the image archive,
//! `apt-get update && apt-get install -y --no-install-recommends <packages>` in a plain chroot,
//! tar the result), measured in the same run, interleaved, and where karapace's time goes.
//!
//! ```text
//! export KARAPACE_TEST_MIRROR="$(sudo scripts/test-image | tail -n 1)"
//! cargo build --release -p karapace -p karapace-helper --bins   # or scripts/build-release
//! sudo -E cargo bench -p karapace-tests --bench build_first
//! ```
//!
//! Each round (`KARAPACE_BENCH_ROUNDS`, default 3) runs, in this order: the floor for curl;
//! `karapace build` of curl in a fresh store and a fresh image cache (the image is downloaded
//! from the mirror over HTTP on 127.0.0.1: "cold"); the same in a fresh store with the image
//! already cached ("warm": the floor starts from the archive on disk too); the floor for
//! postgresql; `karapace build` of postgresql (fresh store, warm image cache). Both sides fetch
//! packages from Debian's mirror on every run, so network noise hits both; the table shows
//! medians and the spread. A build that fails is reported as a row `failed: <reason>`, not a
//! panic. This is a benchmark, not a test: nothing here fails on a missed target.
//!
//! Where the time goes comes from karapace's own log (`KARAPACE_LOG=info,karapace_images=debug`,
//! timestamps of the image extraction and of each installer step) and from the floor script's
//! phase timings.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use karapace_tests::{Karapace, Mirror, TestDir};

/// Target of issue 13: the first build at most 1.2× the floor.
const TARGET_RATIO: f64 = 1.2;

fn manifest(package: &str) -> String {
    format!(
        "manifest_version = 1\n\n[base]\nimage = \"debian/bookworm\"\n\n[system]\npackages = [\"{package}\"]\n"
    )
}

/// One timed run: its total and its phases (seconds), or why it failed.
#[derive(Debug, Clone)]
enum Run {
    Done {
        total: f64,
        phases: Vec<(&'static str, f64)>,
    },
    Failed(String),
}

fn main() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let Some(archive) = find_archive(mirror.root()) else {
        eprintln!(
            "build_first: no rootfs archive under {}",
            mirror.root().display()
        );
        return;
    };
    let floor_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench-floor-build");
    let rounds = std::env::var("KARAPACE_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or(3);
    let server = mirror.serve_http();
    eprintln!(
        "build_first: karapace = {}, image archive = {}, {rounds} rounds, uid {}",
        karapace_tests::karapace_bin().display(),
        archive.display(),
        nix::unistd::getuid()
    );

    // The first cold build's image cache is the warm cache of every later build.
    let mut warm_cache: Option<TestDir> = None;
    let (mut floor_curl, mut cold_curl, mut warm_curl) = (Vec::new(), Vec::new(), Vec::new());
    let (mut floor_pg, mut warm_pg) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        floor_curl.push(floor(&floor_script, &archive, "curl"));
        report(round, "floor, curl", floor_curl.last());

        let dir = TestDir::new("bench-first-cold");
        let k = Karapace::new(&dir).image_server(server.url());
        cold_curl.push(karapace_build(&k, &dir, "curl"));
        report(round, "karapace, curl, cold cache", cold_curl.last());
        if warm_cache.is_none() {
            warm_cache = Some(dir);
        }
        let Some(cache) = warm_cache.as_ref().map(TestDir::cache) else {
            continue;
        };

        let dir = TestDir::new("bench-first-warm");
        let k =
            Karapace::with_paths(&dir.store(), &cache, &dir.project()).image_server(server.url());
        warm_curl.push(karapace_build(&k, &dir, "curl"));
        report(round, "karapace, curl, warm cache", warm_curl.last());

        floor_pg.push(floor(&floor_script, &archive, "postgresql"));
        report(round, "floor, postgresql", floor_pg.last());

        let dir = TestDir::new("bench-first-pg");
        let k =
            Karapace::with_paths(&dir.store(), &cache, &dir.project()).image_server(server.url());
        warm_pg.push(karapace_build(&k, &dir, "postgresql"));
        report(round, "karapace, postgresql, warm cache", warm_pg.last());
    }

    println!();
    println!("First builds beside their floor (median of {rounds} rounds, min – max):");
    println!();
    println!(
        "| {:<44} | {:<26} | {:<22} | {:>6} | {:<14} |",
        "measurement", "karapace build", "floor (by hand)", "ratio", "≤ 1.2× floor"
    );
    println!(
        "|{:-<46}|{:-<28}|{:-<24}|{:->8}|{:-<16}|",
        "", "", "", "", ""
    );
    row("curl, warm image cache", &warm_curl, &floor_curl);
    row(
        "curl, cold image cache (download, 127.0.0.1)",
        &cold_curl,
        &floor_curl,
    );
    row("postgresql, warm image cache", &warm_pg, &floor_pg);

    println!();
    println!("Where the time goes (medians, seconds):");
    breakdown("curl, warm", &warm_curl, &floor_curl);
    breakdown("curl, cold", &cold_curl, &floor_curl);
    breakdown("postgresql, warm", &warm_pg, &floor_pg);
}

fn report(round: usize, what: &str, run: Option<&Run>) {
    match run {
        Some(Run::Done { total, .. }) => eprintln!("round {round}: {what}: {total:.2} s"),
        Some(Run::Failed(why)) => eprintln!("round {round}: {what}: failed: {why}"),
        None => {}
    }
}

/// `<mirror>/images/…/rootfs.tar.xz`, the newest build if there are several.
fn find_archive(root: &Path) -> Option<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.join("images")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("rootfs.tar"))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found.pop()
}

/// The floor script for `package`; its phases from its one line of output.
fn floor(script: &Path, archive: &Path, package: &str) -> Run {
    let start = std::time::Instant::now();
    let out = Command::new(script).arg(archive).arg(package).output();
    let total = start.elapsed().as_secs_f64();
    let out = match out {
        Ok(out) => out,
        Err(e) => return Run::Failed(format!("cannot run {}: {e}", script.display())),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Run::Failed(first_reason(&stderr).unwrap_or_else(|| out.status.to_string()));
    }
    let number = |key: &str| {
        stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
    };
    // The script's own total leaves out removing its scratch tree, as karapace's figure leaves
    // out removing the benchmark's store.
    let total = number("total").unwrap_or(total);
    let mut phases = Vec::new();
    for (key, label) in [
        ("extract", "extract image"),
        ("update", "apt-get update"),
        ("install", "apt-get install"),
        ("tar", "tar the result"),
    ] {
        if let Some(v) = number(key) {
            phases.push((label, v));
        }
    }
    Run::Done { total, phases }
}

/// `karapace build` of `package` with timestamped logs; the phases from them.
fn karapace_build(k: &Karapace, dir: &TestDir, package: &str) -> Run {
    let manifest = dir.write_project_file("karapace.toml", &manifest(package));
    let manifest = manifest.to_string_lossy().into_owned();
    let k = k.clone().env("KARAPACE_LOG", "info,karapace_images=debug");
    let spawned = epoch_seconds(SystemTime::now());
    let out = k.run(&["build", &manifest]);
    let total = out.elapsed.as_secs_f64();
    let stderr = out.stderr_str();
    if !out.success() {
        return Run::Failed(
            first_reason(&stderr).unwrap_or_else(|| format!("exit code {:?}", out.code)),
        );
    }
    // Seconds after the spawn at which the log says each marker happened.
    let at = |wanted: &dyn Fn(&str) -> bool| {
        stderr.lines().filter(|l| wanted(l)).find_map(|l| {
            let stamp = l.split_whitespace().next()?;
            Some(log_time(stamp)? - spawned)
        })
    };
    let markers = [
        at(&|l| l.contains(" INFO extracting ")),
        at(&|l| l.contains(" extracted ")),
        at(&|l| l.contains(" INFO apt: ") && l.ends_with(" update")),
        at(&|l| l.contains("step finished in") && l.ends_with(" update")),
        at(&|l| l.contains("step finished in") && l.contains(" install ")),
        Some(total),
    ];
    let labels = [
        "resolve + fetch/verify image",
        "extract image",
        "base layer import + plugin load",
        "apt-get update",
        "apt-get install",
        "query + layer pack/import + policy layer + lock",
    ];
    let mut phases = Vec::new();
    let mut previous = Some(0.0);
    for (label, marker) in labels.into_iter().zip(markers) {
        if let (Some(a), Some(b)) = (previous, marker) {
            phases.push((label, b - a));
        }
        previous = marker;
    }
    Run::Done { total, phases }
}

/// The first line that says why something failed (karapace's `error:` line, apt's `E:`, dpkg's
/// error), shortened for a table cell.
fn first_reason(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .or_else(|| {
            stderr
                .lines()
                .find(|l| l.starts_with("E: ") || l.starts_with("dpkg: error"))
        })?;
    let mut reason: String = line.chars().take(160).collect();
    if reason.len() < line.len() {
        reason.push('…');
    }
    Some(reason)
}

fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// Seconds since the epoch of a log timestamp `2026-12-04T05:56:28.060208Z` (UTC).
fn log_time(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.split('-').map(|x| x.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let mut time = time.split(':').map(|x| x.parse::<f64>().ok());
    let (hours, minutes, seconds) = (time.next()??, time.next()??, time.next()??);
    // Days from 1970-01-01 of a Gregorian date (the era-based formula: years start in March).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    #[allow(clippy::cast_precision_loss)]
    Some(days as f64 * 86_400.0 + hours * 3600.0 + minutes * 60.0 + seconds)
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        f64::midpoint(xs[n / 2 - 1], xs[n / 2])
    })
}

fn totals(runs: &[Run]) -> Vec<f64> {
    runs.iter()
        .filter_map(|r| match r {
            Run::Done { total, .. } => Some(*total),
            Run::Failed(_) => None,
        })
        .collect()
}

/// `median (min – max)`, with how many runs failed; the first failure's reason if all did.
fn cell(runs: &[Run]) -> (Option<f64>, String) {
    let ok = totals(runs);
    let failed: Vec<&String> = runs
        .iter()
        .filter_map(|r| match r {
            Run::Failed(why) => Some(why),
            Run::Done { .. } => None,
        })
        .collect();
    let Some(m) = median(ok.clone()) else {
        return (
            None,
            // The reason up to the command line (printed whole below the table's row).
            failed.first().map_or_else(
                || "not run".to_owned(),
                |why| format!("failed: {}", why.split(" `").next().unwrap_or(why)),
            ),
        );
    };
    let lo = ok.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ok.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut text = format!("{m:.1} s ({lo:.1} – {hi:.1})");
    if !failed.is_empty() {
        let _ = write!(text, ", {} failed", failed.len());
    }
    (Some(m), text)
}

fn row(what: &str, ours: &[Run], floor: &[Run]) {
    let (a, a_text) = cell(ours);
    let (b, b_text) = cell(floor);
    let (ratio, met) = match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            let r = a / b;
            (
                format!("{r:.2}×"),
                if r <= TARGET_RATIO { "met" } else { "NOT met" },
            )
        }
        _ => ("–".to_owned(), "NOT met"),
    };
    println!("| {what:<44} | {a_text:<26} | {b_text:<22} | {ratio:>6} | {met:<14} |");
    // A failure's reason does not fit a cell: the first one whole, below the table's row.
    for (side, runs) in [("karapace", ours), ("floor", floor)] {
        if let Some(Run::Failed(why)) = runs.iter().find(|r| matches!(r, Run::Failed(_))) {
            println!("    ({side}: {why})");
        }
    }
}

/// The median of each phase of the successful runs, karapace's and the floor's.
fn breakdown(what: &str, ours: &[Run], floor: &[Run]) {
    let phases = |runs: &[Run]| -> Vec<(&'static str, f64)> {
        let mut labels: Vec<&'static str> = Vec::new();
        for r in runs {
            if let Run::Done { phases, .. } = r {
                for (l, _) in phases {
                    if !labels.contains(l) {
                        labels.push(l);
                    }
                }
            }
        }
        labels
            .into_iter()
            .filter_map(|l| {
                let xs = runs
                    .iter()
                    .filter_map(|r| match r {
                        Run::Done { phases, .. } => {
                            phases.iter().find(|(p, _)| *p == l).map(|(_, v)| *v)
                        }
                        Run::Failed(_) => None,
                    })
                    .collect();
                median(xs).map(|m| (l, m))
            })
            .collect()
    };
    let (ours, theirs) = (phases(ours), phases(floor));
    println!();
    println!("{what}:");
    if ours.is_empty() {
        println!("  karapace: no successful build");
    }
    for (label, v) in &ours {
        println!("  karapace  {label:<48} {v:>6.2}");
    }
    for (label, v) in &theirs {
        println!("  floor     {label:<48} {v:>6.2}");
    }
}
