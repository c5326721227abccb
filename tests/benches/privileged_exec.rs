//! Issue 19 benchmark: `karapace exec <env> -- /bin/true` in the privileged mode (a helper with
//! file capabilities on a simulated host without user namespaces, `HardenedHost`) beside the
//! rootless mode (the same environment, built for `kpnorange`, a user without subordinate ids,
//! whose layers are the privileged build's), interleaved in one run. Each figure is timed by
//! the same shell loop around `karapace exec` (`date +%s%N` before and after), so both pay
//! the same measuring cost. Runs as root (the simulation needs it).
//!
//! ```text
//! export KARAPACE_TEST_MIRROR="$(sudo scripts/test-image | tail -n 1)"
//! cargo build --release --workspace --bins --examples
//! sudo -E cargo bench -p karapace-tests --bench privileged_exec
//! ```
//!
//! `KARAPACE_BENCH_EXEC_RUNS` (default 30) runs per mode, in batches of ten after a warm-up.

use std::time::Duration;

use karapace_tests::hardened::{CURL_MANIFEST, HardenedHost};
use karapace_tests::{Mirror, UserDir, user_exists};

/// A shell loop timing `runs` executions of `exec` (a command line using `$K`), one line of
/// nanoseconds each.
fn timing_loop(exec: &str, runs: usize) -> String {
    format!(
        "for i in $(seq {runs}); do s=$(date +%s%N); {exec} || exit 1; e=$(date +%s%N); \
         echo $((e - s)); done"
    )
}

fn parse(out: &str) -> Vec<Duration> {
    out.lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .map(Duration::from_nanos)
        .collect()
}

fn quantile(xs: &[Duration], q: f64) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    if !nix::unistd::geteuid().is_root() || !user_exists("kpnorange") {
        eprintln!("privileged_exec: skipped, runs as root with the user kpnorange");
        return;
    }
    let runs: usize = std::env::var("KARAPACE_BENCH_EXEC_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(30);
    let Some(host) = HardenedHost::new("bench", &mirror.file_url()) else {
        return;
    };
    host.write_project_file("karapace.toml", CURL_MANIFEST);
    host.as_caller("$K build --name pv", None).assert_success();
    let dir = UserDir::new("privileged-bench", "kpnorange", CURL_MANIFEST, None);
    let rootless = dir.karapace(&mirror);
    rootless.ok(&["build", "--name", "pv"]);
    let store = rootless.store().to_string_lossy().into_owned();
    let bin = rootless.bin().to_string_lossy().into_owned();
    let rootless_exec = format!("{bin} --store {store} exec pv -- /bin/true");
    let rootless_loop = |n: usize| {
        let script = timing_loop(&rootless_exec, n);
        let out = std::process::Command::new("runuser")
            .args(["-u", "kpnorange", "--", "env", "-i", "PATH=/usr/bin:/bin"])
            .arg(format!("HOME={}", dir.path.display()))
            .args(["sh", "-c", &script])
            .output()
            .expect("runuser");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse(&String::from_utf8_lossy(&out.stdout))
    };
    let privileged_loop = |n: usize| {
        let out = host.as_caller(&timing_loop("$K exec pv -- /bin/true", n), None);
        out.assert_success();
        parse(&out.stdout_str())
    };
    // Warm-up: page cache, first session records.
    rootless_loop(3);
    privileged_loop(3);
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    while ours.len() < runs {
        let batch = (runs - ours.len()).min(10);
        ours.extend(privileged_loop(batch));
        base.extend(rootless_loop(batch));
    }
    println!(
        "`exec -- /bin/true`, privileged mode beside rootless, interleaved ({runs} runs each):"
    );
    println!("| mode | median | p90 | median vs rootless |");
    println!("|---|---|---|---|");
    let (om, bm) = (quantile(&ours, 0.5), quantile(&base, 0.5));
    println!(
        "| privileged (file capabilities, no user namespace) | {} | {} | {:.2}× |",
        ms(om),
        ms(quantile(&ours, 0.9)),
        om.as_secs_f64() / bm.as_secs_f64()
    );
    println!(
        "| rootless (user namespace, same layers) | {} | {} | 1.00× |",
        ms(bm),
        ms(quantile(&base, 0.9))
    );
}
