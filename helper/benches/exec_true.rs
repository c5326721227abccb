//! `cargo bench -p karapace-helper`: median of N runs of `/bin/true` in an
//! environment through the full helper-client path (spawn helper, handshake,
//! namespaces + overlay + mounts, exec, teardown), against bubblewrap on the
//! same root file system and against a plain `/bin/true`. The three variants
//! are interleaved so background load on a shared machine hits them alike.
#![allow(clippy::cast_precision_loss)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use karapace_helper_client::{
    Capabilities, IdMapMode, Identity, Limits, Network, RunSpec, Session, StdioMode, Upper,
};

const RUNS: usize = 30;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(a: u64, b: u64) -> f64 {
    if a == 0 || b < a {
        0.0
    } else {
        (b - a) as f64 / 1e6
    }
}

fn rootfs(root: &Path) -> PathBuf {
    let base = root.join("layers/base");
    for d in ["bin", "proc", "dev", "sys", "tmp", "run", "etc"] {
        std::fs::create_dir_all(base.join(d)).expect("mkdir");
    }
    std::fs::copy("/usr/bin/busybox", base.join("bin/busybox")).expect("busybox");
    for a in ["true", "sh"] {
        std::os::unix::fs::symlink("busybox", base.join("bin").join(a)).expect("symlink");
    }
    base
}

fn spec(root: &Path, base: &Path) -> RunSpec {
    RunSpec {
        store_root: root.to_path_buf(),
        lowers: vec![base.to_path_buf()],
        upper: Upper::Tmpfs { size_mb: 64 },
        argv: vec!["/bin/true".into()],
        env: vec![("PATH".into(), "/bin".into())],
        cwd: "/".into(),
        hostname: "karapace-bench".into(),
        binds: vec![],
        devices: vec![],
        network: Network::Isolated,
        limits: Limits::default(),
        identity: Identity::Root,
        id_map: IdMapMode::Single,
        capabilities: Capabilities::None,
        tty: None,
        allowed_mount_prefixes: vec![],
        join: vec![],
        allow_without_landlock: false,
        oci: None,
    }
}

fn time_cmd(prog: &str, args: &[&str]) -> f64 {
    let t0 = Instant::now();
    let st = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("spawn");
    assert!(st.success(), "{prog} failed");
    t0.elapsed().as_secs_f64() * 1e3
}

#[derive(Default)]
struct Samples {
    total: Vec<f64>,
    spawn: Vec<f64>,
    handshake: Vec<f64>,
    setup: Vec<f64>,
    exec: Vec<f64>,
    run: Vec<f64>,
    teardown: Vec<f64>,
    bwrap: Vec<f64>,
    plain: Vec<f64>,
}

fn main() {
    if std::env::var_os("KARAPACE_HELPER").is_none() {
        // SAFETY: single-threaded at this point; nothing reads the environment concurrently.
        unsafe { std::env::set_var("KARAPACE_HELPER", env!("CARGO_BIN_EXE_karapace-helper")) };
    }
    let dir = tempfile::Builder::new()
        .prefix("kp-bench-")
        .tempdir()
        .expect("tempdir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical");
    let base = rootfs(&root);
    let spec = spec(&root, &base);
    let base_str = base.to_str().expect("utf-8 path");
    let bwrap_args = [
        "--unshare-all",
        "--ro-bind",
        base_str,
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "/bin/true",
    ];
    let have_bwrap = Path::new("/usr/bin/bwrap").exists();

    for _ in 0..3 {
        let _ = karapace_helper_client::spawn(&spec, StdioMode::Null).and_then(Session::wait);
    }
    let mut s = Samples::default();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let out = karapace_helper_client::spawn(&spec, StdioMode::Null)
            .and_then(Session::wait)
            .expect("run");
        s.total.push(t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(out.status.code(), 0);
        let (c, h) = (out.client, out.timings);
        s.spawn.push(ms(c.spawn, c.connected));
        s.handshake.push(ms(c.connected, h.request));
        s.setup.push(ms(h.request, h.mounts));
        s.exec.push(ms(h.mounts, h.exec));
        s.run.push(ms(h.exec, h.exited));
        s.teardown.push(ms(h.exited, c.reaped));
        if have_bwrap {
            s.bwrap.push(time_cmd("bwrap", &bwrap_args));
        }
        s.plain.push(time_cmd("/bin/true", &[]));
    }

    let row = |name: &str, v: Vec<f64>| println!("{name:<44} {:>8.2}", median(v));
    println!(
        "exec /bin/true, median of {RUNS} interleaved runs (ms), uid {}",
        nix::unistd::getuid()
    );
    println!("{:<44} {:>8}", "variant", "median");
    row("karapace-helper (full path)", s.total);
    row("  spawn helper + connect", s.spawn);
    row("  handshake + request", s.handshake);
    row("  validate + namespaces + mounts + pivot", s.setup);
    row("  fork + confine + execve", s.exec);
    row("  workload run + reap", s.run);
    row("  teardown (helper exit, reap)", s.teardown);
    if have_bwrap {
        row("bwrap --unshare-all --ro-bind --proc --dev", s.bwrap);
    } else {
        println!("{:<44} {:>8}", "bwrap (not installed)", "-");
    }
    row("plain /bin/true", s.plain);
}
