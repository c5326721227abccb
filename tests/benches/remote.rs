//! Issue 14, item 6: push and pull of the curl environment beside their baselines, in one run,
//! on 127.0.0.1.
//!
//! ```text
//! export KARAPACE_TEST_MIRROR="$(sudo scripts/test-image | tail -n 1)"
//! cargo build --release -p karapace -p karapace-helper -p karapace-server --bins
//! sudo -E cargo bench -p karapace-tests --bench remote
//! ```
//!
//! Each round (`KARAPACE_BENCH_ROUNDS`, default 3), with a fresh registry, server and stores:
//! - OCI: `karapace push` to Debian's `docker-registry`, `karapace pull` into an empty store;
//!   beside `skopeo copy` of the same image (its layers and config, copied each round from what
//!   karapace pushed) from an OCI layout directory to another fresh registry, and back into a new layout
//!   directory (`--preserve-digests`, so skopeo moves the layers as they are, uncompressed, as
//!   karapace does);
//! - protocol v1: `karapace push`/`pull` with `karapace-server`, beside plain `curl` uploads
//!   (`PUT`) and downloads of the same objects to and from another fresh server.
//!
//! Every command runs under `/usr/bin/time` for its wall time and peak RSS. Targets: OCI push and
//! pull ≤ 1.0× skopeo's time, peak RSS ≤ 64 MB. A benchmark, not a test: it prints a table and
//! fails on nothing but a broken setup.

// Byte counts and KiB shown as floating-point MB: far below 2^52.
#![allow(clippy::cast_precision_loss)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use karapace_oci_client::testing::{RegistryConfig, TestRegistry};
use karapace_tests::{Karapace, Mirror, TestDir, server_bin};

const MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["curl"]
"#;
const TOKEN: &str = "bench-remote-token-0123456789abcdef";
const RSS_TARGET_KB: u64 = 64 * 1024;

/// Wall seconds and peak RSS (KiB) of one command.
#[derive(Debug, Clone, Copy)]
struct Run {
    secs: f64,
    rss_kb: u64,
}

/// Runs `cmd` under `/usr/bin/time`; panics with its output when it fails.
#[allow(clippy::needless_pass_by_value)] // called with freshly built commands
fn timed(cmd: Command, what: &str) -> Run {
    let out_file = tempfile::NamedTempFile::new().expect("temp file");
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(out_file.path())
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let output = wrapped.output().expect("run /usr/bin/time");
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(out_file.path()).expect("time output");
    let mut fields = text.split_whitespace();
    let secs = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let rss_kb = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Run { secs, rss_kb }
}

fn karapace_cmd(k: &Karapace, args: &[&str]) -> Command {
    k.command(args).0
}

/// `karapace-server` on a free port with a read-write token; killed on drop.
struct Server {
    child: Child,
    url: String,
    _dir: TestDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let dir = TestDir::new("bench-server");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("read-write {TOKEN}\n")).expect("tokens");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let child = Command::new(server_bin())
        .args(["--port", "0", "--rate-limit", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--token-file")
        .arg(&tokens)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn karapace-server");
    let mut server = Server {
        child,
        url: String::new(),
        _dir: dir,
    };
    let stderr = server.child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(at) = line.find("127.0.0.1:") {
            let port: String = line[at + 10..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            server.url = format!("http://127.0.0.1:{port}");
            // Keep draining the log.
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return server;
        }
    }
    panic!("karapace-server did not report its address");
}

/// The object files of a store (what a v1 push moves, minus small records).
fn objects(store: &Path) -> Vec<(String, PathBuf)> {
    let mut v = Vec::new();
    for shard in std::fs::read_dir(store.join("store/objects"))
        .expect("objects")
        .flatten()
    {
        for e in std::fs::read_dir(shard.path()).expect("shard").flatten() {
            v.push((e.file_name().to_string_lossy().into_owned(), e.path()));
        }
    }
    v
}

fn curl_upload(server: &Server, files: &[(String, PathBuf)]) -> Run {
    let mut total = Run {
        secs: 0.0,
        rss_kb: 0,
    };
    for (key, path) in files {
        let mut c = Command::new("curl");
        c.args(["-sS", "--fail", "-o", "/dev/null", "-H"])
            .arg(format!("Authorization: Bearer {TOKEN}"))
            .args(["-H", "X-Karapace-Protocol: 1", "-T"])
            .arg(path)
            .arg(format!("{}/objects/{key}", server.url));
        let r = timed(c, "curl upload");
        total.secs += r.secs;
        total.rss_kb = total.rss_kb.max(r.rss_kb);
    }
    total
}

fn curl_download(server: &Server, files: &[(String, PathBuf)], into: &Path) -> Run {
    let mut total = Run {
        secs: 0.0,
        rss_kb: 0,
    };
    for (key, _) in files {
        let mut c = Command::new("curl");
        c.args(["-sS", "--fail", "-H"])
            .arg(format!("Authorization: Bearer {TOKEN}"))
            .args(["-H", "X-Karapace-Protocol: 1", "-o"])
            .arg(into.join(key))
            .arg(format!("{}/objects/{key}", server.url));
        let r = timed(c, "curl download");
        total.secs += r.secs;
        total.rss_kb = total.rss_kb.max(r.rss_kb);
    }
    total
}

fn skopeo(args: &[&str]) -> Command {
    let mut c = Command::new("skopeo");
    c.args(args);
    c
}

fn median(v: &[Run]) -> Run {
    let mut secs: Vec<f64> = v.iter().map(|r| r.secs).collect();
    secs.sort_by(f64::total_cmp);
    Run {
        secs: secs[secs.len() / 2],
        rss_kb: v.iter().map(|r| r.rss_kb).max().unwrap_or(0),
    }
}

fn row(table: &mut String, what: &str, ours: &[Run], base: &[Run], target: Option<f64>) {
    let (o, b) = (median(ours), median(base));
    let ratio = o.secs / b.secs.max(1e-9);
    let verdict = match target {
        Some(t) if ratio <= t && o.rss_kb <= RSS_TARGET_KB => "met".to_string(),
        Some(t) if ratio > t => format!("not met (> {t:.1}×)"),
        Some(_) => "not met (RSS)".to_string(),
        None => "–".to_string(),
    };
    let _ = writeln!(
        table,
        "| {what:<34} | {:>7.2} s | {:>6.1} MB | {:>7.2} s | {:>6.1} MB | {ratio:>5.2}× | {verdict} |",
        o.secs,
        o.rss_kb as f64 / 1024.0,
        b.secs,
        b.rss_kb as f64 / 1024.0,
    );
}

/// The timings of every round.
#[derive(Default)]
struct Rounds {
    oci_push: Vec<Run>,
    oci_pull: Vec<Run>,
    sk_push: Vec<Run>,
    sk_pull: Vec<Run>,
    v1_push: Vec<Run>,
    v1_pull: Vec<Run>,
    curl_up: Vec<Run>,
    curl_down: Vec<Run>,
}

/// One round: fresh registries, servers and stores.
fn one_round(
    all: &mut Rounds,
    round: usize,
    k: &Karapace,
    src: &TestDir,
    mirror: &Mirror,
    files: &[(String, PathBuf)],
) {
    // OCI: karapace, then skopeo with the same image.
    let reg = TestRegistry::start(&RegistryConfig::default());
    let remote = format!("oci://{}/bench", reg.address());
    all.oci_push.push(timed(
        karapace_cmd(k, &["push", "web", "--tag", "web@v1", "--remote", &remote]),
        "karapace push (OCI)",
    ));
    let dest = TestDir::new("bench-remote-pull");
    let p = Karapace::new(&dest).image_server(mirror.file_url());
    all.oci_pull.push(timed(
        karapace_cmd(&p, &["pull", "web@v1", "--remote", &remote]),
        "karapace pull (OCI)",
    ));
    let layout = src.path().join(format!("layout-{round}"));
    let image = format!("docker://{}/bench/web:v1", reg.address());
    timed(
        // --preserve-digests here too: without it skopeo gzips the layers into the layout
        // (an `oci:` destination compresses by default), and the copies timed below would move
        // a third of the bytes karapace moves.
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            &image,
            &format!("oci:{}:v1", layout.display()),
        ]),
        "skopeo copy (layout)",
    );
    let reg2 = TestRegistry::start(&RegistryConfig::default());
    let image2 = format!("docker://{}/bench/web:v1", reg2.address());
    all.sk_push.push(timed(
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", layout.display()),
            &image2,
        ]),
        "skopeo copy (push)",
    ));
    let back = src.path().join(format!("back-{round}"));
    all.sk_pull.push(timed(
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            &image2,
            &format!("oci:{}:v1", back.display()),
        ]),
        "skopeo copy (pull)",
    ));
    drop(reg);
    drop(reg2);

    // Protocol v1: karapace, then curl with the same objects.
    let server = start_server();
    let kt = Karapace::new(src)
        .image_server(mirror.file_url())
        .env("KARAPACE_REMOTE_TOKEN", TOKEN);
    all.v1_push.push(timed(
        karapace_cmd(
            &kt,
            &["push", "web", "--tag", "web@v1", "--remote", &server.url],
        ),
        "karapace push (v1)",
    ));
    let dest = TestDir::new("bench-remote-pull-v1");
    let p = Karapace::new(&dest)
        .image_server(mirror.file_url())
        .env("KARAPACE_REMOTE_TOKEN", TOKEN);
    all.v1_pull.push(timed(
        karapace_cmd(&p, &["pull", "web@v1", "--remote", &server.url]),
        "karapace pull (v1)",
    ));
    let baseline = start_server();
    all.curl_up.push(curl_upload(&baseline, files));
    let into = dest.path().join("curl-down");
    std::fs::create_dir_all(&into).expect("mkdir");
    all.curl_down.push(curl_download(&baseline, files, &into));
    eprintln!(
        "round {round}: oci push {:.2}s pull {:.2}s | skopeo {:.2}s {:.2}s | v1 {:.2}s {:.2}s | curl {:.2}s {:.2}s",
        all.oci_push[round - 1].secs,
        all.oci_pull[round - 1].secs,
        all.sk_push[round - 1].secs,
        all.sk_pull[round - 1].secs,
        all.v1_push[round - 1].secs,
        all.v1_pull[round - 1].secs,
        all.curl_up[round - 1].secs,
        all.curl_down[round - 1].secs
    );
}

fn main() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let rounds = std::env::var("KARAPACE_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or(3);
    let src = TestDir::new("bench-remote-src");
    src.write_project_file("karapace.toml", MANIFEST);
    let k = Karapace::new(&src).image_server(mirror.file_url());
    k.ok(&["build", "karapace.toml", "--name", "web"]);
    let files = objects(&src.store());
    let bytes: u64 = files
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    eprintln!(
        "remote bench: {} objects, {:.1} MB, {rounds} rounds",
        files.len(),
        bytes as f64 / 1e6
    );

    let mut all = Rounds::default();
    for round in 1..=rounds {
        one_round(&mut all, round, &k, &src, &mirror, &files);
    }
    let Rounds {
        oci_push,
        oci_pull,
        sk_push,
        sk_pull,
        v1_push,
        v1_pull,
        curl_up,
        curl_down,
    } = all;

    let mut table = String::new();
    let _ = writeln!(
        table,
        "Push and pull of the curl environment ({} objects, {:.1} MB), median of {rounds} rounds; RSS = peak of any round:\n",
        files.len(),
        bytes as f64 / 1e6
    );
    let _ = writeln!(
        table,
        "| {:<34} | {:>9} | {:>9} | {:>9} | {:>9} | {:>6} | target ≤ 1.0×, ≤ 64 MB |",
        "measurement", "karapace", "RSS", "baseline", "RSS", "ratio"
    );
    let _ = writeln!(
        table,
        "|{:-<36}|{:-<11}|{:-<11}|{:-<11}|{:-<11}|{:-<8}|{:-<24}|",
        "", "", "", "", "", "", ""
    );
    row(
        &mut table,
        "OCI push vs skopeo copy",
        &oci_push,
        &sk_push,
        Some(1.0),
    );
    row(
        &mut table,
        "OCI pull vs skopeo copy",
        &oci_pull,
        &sk_pull,
        Some(1.0),
    );
    row(
        &mut table,
        "v1 push vs curl PUT per object",
        &v1_push,
        &curl_up,
        None,
    );
    row(
        &mut table,
        "v1 pull vs curl GET per object",
        &v1_pull,
        &curl_down,
        None,
    );
    let mb = bytes as f64 / 1e6;
    let _ = writeln!(
        table,
        "\nv1 throughput: push {:.0} MB/s (curl {:.0} MB/s), pull {:.0} MB/s (curl {:.0} MB/s)",
        mb / median(&v1_push).secs,
        mb / median(&curl_up).secs,
        mb / median(&v1_pull).secs,
        mb / median(&curl_down).secs
    );
    println!("{table}");
}
