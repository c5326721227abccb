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

/// Whether the helper under test runs privileged (installed with file capabilities on a host
/// without unprivileged user namespaces: `helper/tests/run-privileged.sh`), as it says itself.
pub fn privileged() -> bool {
    init();
    let helper = std::env::var_os("KARAPACE_HELPER").expect("KARAPACE_HELPER");
    let out = std::process::Command::new(helper)
        .arg("--mode")
        .output()
        .expect("karapace-helper --mode");
    String::from_utf8_lossy(&out.stdout).starts_with(karapace_protocol::MODE_PRIVILEGED)
}

/// A store whose `layers/base` is a busybox root file system.
pub fn store() -> Store {
    init();
    let dir = tempfile::Builder::new()
        .prefix("kp-store-")
        .tempdir()
        .expect("tempdir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical");
    busybox_layer(&root.join("layers/base"));
    std::fs::create_dir_all(root.join("envs/e1/upper")).expect("upper");
    std::fs::create_dir_all(root.join("envs/e1/work")).expect("work");
    Store { dir, root }
}

/// A busybox root file system at `base`.
pub fn busybox_layer(base: &Path) {
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
        allow_without_landlock: false,
        oci: None,
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

/// Every descriptor of process `pid` from 3 up, as `/proc/<pid>/fd` names it (`pipe:[…]`,
/// `anon_inode:[signalfd]`, a path, `socket:[…]`).
pub fn descriptors(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("list the init's fds") {
        let entry = entry.expect("fd entry");
        let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if n < 3 {
            continue;
        }
        // A descriptor closed between listing and reading is simply gone.
        if let Ok(target) = std::fs::read_link(entry.path()) {
            out.push((n, target.to_string_lossy().into_owned()));
        }
    }
    out
}

/// Asserts that `pid` (an environment's init process, after its workload started) holds no
/// descriptor but stdio, pipes and anonymous inodes: nothing opened in the host's mount
/// namespace (the validated paths), no socket (the core's).
pub fn assert_no_host_descriptors(pid: u32) {
    let fds = descriptors(pid);
    let foreign: Vec<_> = fds
        .iter()
        .filter(|(_, t)| !(t.starts_with("pipe:") || t.starts_with("anon_inode:")))
        .collect();
    assert!(
        foreign.is_empty(),
        "init {pid} still holds {foreign:?} (all: {fds:?})"
    );
}

/// A file on the host, next to the store, that no workload may ever read: the lower layer is
/// `<root>/layers/base`, so `<fd of the layer>/../../host-secret` names it.
pub fn host_secret(store: &Store) -> &'static str {
    const SECRET: &str = "host-secret-4f1c";
    std::fs::write(store.root.join("host-secret"), SECRET).expect("host secret");
    SECRET
}

/// A workload script that tries to leave the environment through its init process (pid 1):
/// list its descriptors, climb out of each (`/proc/1/fd/N/../..`, where a layer's descriptor
/// would lead to the store on the host), its root, working directory and environment. Prints
/// a line naming each thing that worked.
pub const CLIMB_OUT_THROUGH_PID_1: &str = r#"
ls /proc/1/fd >/dev/null 2>&1 && echo "listed /proc/1/fd"
n=0
while [ $n -lt 64 ]; do
  cat /proc/1/fd/$n/../../host-secret 2>/dev/null && echo " read through fd $n"
  ls /proc/1/fd/$n/.. >/dev/null 2>&1 && echo "climbed out of fd $n"
  n=$((n+1))
done
ls /proc/1/root/ >/dev/null 2>&1 && echo "listed /proc/1/root"
readlink /proc/1/cwd >/dev/null 2>&1 && echo "read /proc/1/cwd"
ls /proc/1/cwd/ >/dev/null 2>&1 && echo "listed /proc/1/cwd"
cat /proc/1/environ >/dev/null 2>&1 && echo "read /proc/1/environ"
cat /proc/1/maps >/dev/null 2>&1 && echo "read /proc/1/maps"
true
"#;

/// A command run as this user with no capability at all (as root: an empty bounding set, so
/// that `execve` grants none), like a workload that has reached the host's /proc.
pub fn capless(program: &str) -> std::process::Command {
    if nix::unistd::geteuid().is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--bounding-set=-all", "--inh-caps=-all", program]);
        c
    } else {
        std::process::Command::new(program)
    }
}

/// Whether a process of this user without any capability can read process `pid`'s environment
/// and list its descriptors through /proc. For processes of its own user, that the kernel
/// allows exactly when `pid` is dumpable (`pid` being in the host's user namespace with no
/// capabilities left, or in a user namespace this user owns).
pub fn inspectable(pid: u32) -> bool {
    let script = format!("cat /proc/{pid}/environ >/dev/null && ls /proc/{pid}/fd >/dev/null");
    capless("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("sh (and, as root, setpriv from util-linux)")
        .success()
}
