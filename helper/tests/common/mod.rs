//! Shared fixtures: a store with a busybox root file system, and `RunSpec`s.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use karapace_helper_client::{IdMapMode, Identity, Limits, Network, RunSpec, Upper};

pub struct Store {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Store {
    pub fn layer(&self) -> PathBuf {
        self.root.join("layers/base")
    }
}

/// Points the client at the helper under test (unless the caller chose one).
pub fn init() {
    if std::env::var_os("KARAPACE_HELPER").is_none() {
        // SAFETY: set before any helper is spawned; the value is only read
        // by this process (tests in one binary agree on the same value).
        unsafe { std::env::set_var("KARAPACE_HELPER", env!("CARGO_BIN_EXE_karapace-helper")) };
    }
}

/// A store whose `layers/base` is a busybox root file system.
pub fn store() -> Store {
    init();
    let dir = tempfile::Builder::new()
        .prefix("kp-store-")
        .tempdir()
        .expect("tempdir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical");
    let base = root.join("layers/base");
    for d in [
        "bin", "etc", "proc", "dev", "sys", "tmp", "run", "root", "home", "usr/bin", "var",
    ] {
        std::fs::create_dir_all(base.join(d)).expect("mkdir");
    }
    std::fs::copy("/usr/bin/busybox", base.join("bin/busybox")).expect("copy busybox");
    let list = std::process::Command::new("/usr/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", base.join("bin").join(applet));
        }
    }
    std::fs::write(base.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::create_dir_all(root.join("envs/e1/upper")).expect("upper");
    std::fs::create_dir_all(root.join("envs/e1/work")).expect("work");
    Store { dir, root }
}

pub fn spec(store: &Store, argv: &[&str]) -> RunSpec {
    RunSpec {
        store_root: store.root.clone(),
        lowers: vec![store.layer()],
        upper: Upper::Tmpfs { size_mb: 64 },
        argv: argv.iter().map(ToString::to_string).collect(),
        env: vec![
            ("PATH".into(), "/bin:/usr/bin".into()),
            ("HOME".into(), "/root".into()),
        ],
        cwd: "/".into(),
        hostname: "karapace-test1234".into(),
        binds: vec![],
        devices: vec![],
        network: Network::Isolated,
        limits: Limits::default(),
        identity: Identity::Root,
        id_map: IdMapMode::Single,
        capabilities: karapace_helper_client::Capabilities::None,
        tty: None,
        allowed_mount_prefixes: vec![],
        join: vec![],
    }
}

pub fn sh(store: &Store, script: &str) -> RunSpec {
    spec(store, &["/bin/sh", "-c", script])
}

/// Runs and captures stdout as a String.
pub fn out(spec: &RunSpec) -> (i32, String) {
    let (status, bytes) = karapace_helper_client::capture(spec).expect("helper run");
    (status.code(), String::from_utf8_lossy(&bytes).into_owned())
}

/// The directory of the examples built with the tests (the probe, kp-run).
pub fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    let examples = std::env::var_os("KARAPACE_PROBE_DIR").map_or_else(
        || {
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .join("examples")
        },
        PathBuf::from,
    );
    std::fs::canonicalize(examples).expect("examples dir")
}

/// Directory holding the probe example (built by `cargo test`) and the host
/// C library it links against, as bind mounts.
pub fn probe_binds(spec: &mut RunSpec) {
    let examples = examples_dir();
    let libs = std::fs::canonicalize("/lib/x86_64-linux-gnu").expect("libdir");
    let lib64 = std::fs::canonicalize("/lib64").expect("lib64");
    for (src, dst) in [
        (&examples, "/probe"),
        (&libs, "/lib/x86_64-linux-gnu"),
        (&lib64, "/lib64"),
    ] {
        spec.allowed_mount_prefixes.push(src.clone());
        spec.binds.push(karapace_helper_client::BindMount {
            src: src.clone(),
            dst: dst.into(),
            readonly: true,
        });
    }
}
