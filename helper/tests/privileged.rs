//! The privileged mode's hostile caller: a helper installed with file capabilities, on a host
//! without unprivileged user namespaces, serves an unprivileged caller that wants more than its
//! own rights. Every test here runs only against such a helper — `helper/tests/run-privileged.sh`
//! simulates the host (`examples/hardened-host.rs`) and prepares the fixtures the caller must
//! not reach: a store of another user, files and directories only root may read, and a
//! set-user-ID copy of the helper. The other test files run there too, with the mode's own
//! expectations where they differ (ids, trees, join).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{sh, store};
use karapace_helper_client::{
    self as hc, BindMount, Capabilities, HelperError, IdMapMode, Identity, Refusal, RunSpec,
    StdioMode,
};

/// A fixture the runner prepared (`KARAPACE_TEST_<name>`); `None` outside the privileged run.
fn fixture(name: &str) -> Option<PathBuf> {
    if !common::privileged() {
        return None;
    }
    Some(
        std::env::var_os(format!("KARAPACE_TEST_{name}"))
            .unwrap_or_else(|| panic!("KARAPACE_TEST_{name} is set by run-privileged.sh"))
            .into(),
    )
}

/// Runs a request that must be refused; its workload would create a marker in the store.
fn refused(mut spec: RunSpec) -> Refusal {
    let marker = spec.store_root.join("marker");
    spec.argv = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("touch {}", marker.display()),
    ];
    let got = hc::capture(&spec);
    assert!(!marker.exists(), "the workload ran");
    match got {
        Err(HelperError::Refused(r)) => r,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn another_users_store_is_refused() {
    let Some(foreign) = fixture("FOREIGN_STORE") else {
        return;
    };
    let s = store();
    let mut spec = sh(&s, "");
    spec.store_root = foreign.clone();
    spec.lowers = vec![foreign.join("layers/base")];
    assert_eq!(refused(spec), Refusal::NotOwner(foreign));
}

#[test]
fn mount_sources_the_caller_cannot_read_are_refused() {
    let Some(secret) = fixture("UNREADABLE") else {
        return;
    };
    let s = store();
    // A directory only root may list (and search), a file only root may read in a directory
    // anyone may search, and a directory anyone may search but only root may list.
    for src in [
        secret.join("closed"),
        secret.join("open/private-file"),
        secret.join("open/search-only"),
    ] {
        let mut spec = sh(&s, "");
        spec.allowed_mount_prefixes = vec![secret.clone()];
        spec.binds = vec![BindMount {
            src: src.clone(),
            dst: "/mnt/x".into(),
            readonly: true,
        }];
        assert_eq!(refused(spec), Refusal::NotReadable(src));
    }
    // What the caller may read is mounted, and nothing more is visible through it.
    let mut spec = sh(&s, "cat /mnt/x/readable");
    spec.allowed_mount_prefixes = vec![secret.clone()];
    spec.binds = vec![BindMount {
        src: secret.join("open/public"),
        dst: "/mnt/x".into(),
        readonly: true,
    }];
    assert_eq!(common::out(&spec), (0, "anyone\n".into()));
}

#[test]
fn the_workload_never_holds_a_capability_or_another_id() {
    if !common::privileged() {
        return;
    }
    let s = store();
    // The most a request can ask for: root inside, a package manager's capabilities, the
    // collapsed map of builds.
    let mut spec = sh(
        &s,
        "id -u; grep -E '^(Uid|Gid|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status",
    );
    spec.identity = Identity::Root;
    spec.capabilities = Capabilities::PackageManager;
    spec.id_map = IdMapMode::Collapsed;
    let (code, o) = common::out(&spec);
    assert_eq!(code, 0, "{o}");
    let me = nix::unistd::getuid().to_string();
    let my_group = nix::unistd::getgid().to_string();
    let value = |key: &str| -> Vec<String> {
        o.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing: {o}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(o.lines().next(), Some("0"), "root is claimed: {o}");
    assert_eq!(value("Uid:"), [me.as_str(); 4], "{o}");
    assert_eq!(value("Gid:"), [my_group.as_str(); 4], "{o}");
    for set in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(value(set), ["0000000000000000"], "{set} {o}");
    }
    assert_eq!(value("NoNewPrivs:"), ["1"], "{o}");
}

#[test]
fn what_only_a_user_namespace_can_do_is_refused() {
    if !common::privileged() {
        return;
    }
    let s = store();
    let mut full = sh(&s, "");
    full.id_map = IdMapMode::Full;
    assert!(matches!(refused(full), Refusal::PrivilegedMode(_)));
    let mut oci = sh(&s, "");
    oci.oci = Some(karapace_protocol::OciRuntime {
        path: "/usr/bin/crun".into(),
        flavour: karapace_protocol::OciFlavour::Crun,
    });
    assert!(matches!(refused(oci), Refusal::PrivilegedMode(_)));
}

#[test]
fn binds_are_nosuid_and_nodev() {
    if !common::privileged() {
        return;
    }
    let s = store();
    let mut spec = sh(&s, "grep ' /probe ' /proc/self/mountinfo");
    common::probe_binds(&mut spec);
    let (code, o) = common::out(&spec);
    assert_eq!(code, 0, "{o}");
    let options: Vec<&str> = o
        .split_whitespace()
        .nth(5)
        .unwrap_or("")
        .split(',')
        .collect();
    for flag in ["nosuid", "nodev"] {
        assert!(options.contains(&flag), "{flag} missing: {o}");
    }
}

/// A process that gained capabilities at `execve` runs in secure-execution mode: the dynamic
/// loader ignores `LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_DEBUG` and the like (the helper then
/// drops its environment; the workload's is the request's alone).
#[test]
fn the_callers_environment_reaches_neither_the_loader_nor_the_workload() {
    if !common::privileged() {
        return;
    }
    let helper = std::env::var_os("KARAPACE_HELPER").expect("KARAPACE_HELPER");
    let out = std::process::Command::new(&helper)
        .arg("--mode")
        .env("LD_DEBUG", "libs")
        .env("LD_PRELOAD", "/nonexistent/preload.so")
        .output()
        .expect("karapace-helper --mode");
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "the loader obeyed the caller: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SAFETY: no other thread of this test binary reads the environment meanwhile (the value
    // is only inherited by the helper spawned below; the other tests ignore it).
    unsafe { std::env::set_var("KP_CALLER_SECRET", "leaked") };
    let s = store();
    let (code, env) = common::out(&sh(&s, "env"));
    assert_eq!(code, 0);
    assert!(!env.contains("KP_CALLER_SECRET"), "{env}");
}

#[test]
fn a_set_user_id_install_is_refused() {
    let Some(setuid) = fixture("SETUID_HELPER") else {
        return;
    };
    let out = std::process::Command::new(setuid)
        .arg("--mode")
        .output()
        .expect("run the set-user-ID copy");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set-user-ID"), "{err}");
}

/// The caller may signal its helper (same real uid): killing it at any point leaves no
/// process of the environment behind (the init dies with it, the workload with the init's pid
/// namespace) and nothing mounted outside those processes' own namespaces.
#[test]
fn killing_the_helper_leaves_nothing_behind() {
    if !common::privileged() {
        return;
    }
    let s = store();
    let mut session = hc::spawn(&sh(&s, "exec sleep 30"), StdioMode::Null).expect("spawn");
    session.wait_started().expect("started");
    let init = session.init_pid().expect("init pid");
    let helper = i32::try_from(session.helper_pid()).expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helper),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("the caller may signal its own helper");
    let _ = session.wait();
    // Gone, or a zombie waiting for whoever adopted it.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{init}/status")).is_ok_and(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("State:"))
                .is_some_and(|v| !v.trim_start().starts_with('Z'))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive() {
        assert!(
            std::time::Instant::now() < deadline,
            "the environment outlived its helper"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&s.root.display().to_string()),
        "a mount of the store leaked into the caller's namespace: {mounts}"
    );
}

/// What a caller leaves the helper — stdin and stderr closed, a descriptor at the top of its
/// descriptor table (the hard limit less one), a table nearly full — changes nothing: the
/// helper opens 0–2 on /dev/null, closes everything above, and answers or serves as usual; no
/// descriptor of the caller's reaches the environment.
#[test]
fn closed_stdio_and_inherited_descriptors_are_taken_care_of() {
    if !common::privileged() {
        return;
    }
    let helper = std::env::var_os("KARAPACE_HELPER").expect("KARAPACE_HELPER");
    // bash: dash takes one-digit descriptors only.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(
            "exec 0<&- 2>&- 900</dev/null 901</dev/null 902</dev/null; ulimit -n 904; \
             exec \"$0\" --mode",
        )
        .arg(&helper)
        .output()
        .expect("bash");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(karapace_protocol::MODE_PRIVILEGED),
        "{out:?}"
    );

    // A whole session (kp-run spawns the helper as the core does) with the highest descriptor
    // the caller may have open, on a directory of its own.
    let s = store();
    let kp_run = common::examples_dir().join("kp-run");
    let script = format!(
        "ulimit -n $(ulimit -Hn); top=$(( $(ulimit -Hn) - 1 )); eval \"exec $top<{store}\"; \
         exec {kp_run} {store} {layer} -- /bin/sh -c 'ls /proc/self/fd; echo top=$0' $top",
        store = s.root.display(),
        kp_run = kp_run.display(),
        layer = s.layer().display(),
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let top = text
        .lines()
        .find_map(|l| l.strip_prefix("top="))
        .unwrap_or_else(|| panic!("{text}"));
    let fds: Vec<&str> = text.lines().filter(|l| !l.starts_with("top=")).collect();
    assert!(
        !fds.contains(&top),
        "descriptor {top} reached the workload: {text}"
    );
    assert!(
        fds.len() <= 4,
        "descriptors beyond stdio and ls's own: {text}"
    );
}

/// overlayfs works with the credentials of its mount, which in the privileged mode can bypass
/// file modes. The read-only layers are kept out of their reach: a directory of root's (0700)
/// in a layer stays closed to the workload even under a directory of the caller's of the same
/// name in a higher layer, whose mode the merged directory would show. The writable layer and
/// the work directory must hold none (copied-up files would land in it; overlayfs empties the
/// work directory): such a request is refused, and nothing of root's is removed. The fixture:
/// a store of the caller's with root's directories in it.
#[test]
fn another_users_directories_in_a_store_stay_closed() {
    let Some(mixed) = fixture("MIXED_STORE") else {
        return;
    };
    let s = store();
    let base = mixed.join("base");
    if !base.exists() {
        common::busybox_layer(&base);
    }
    let spec = |script: &str, lowers: Vec<PathBuf>, upper: &str, work: &str| {
        let mut spec = sh(&s, script);
        spec.store_root = mixed.clone();
        spec.lowers = lowers;
        spec.upper = karapace_helper_client::Upper::Store {
            upper: mixed.join(upper),
            work: mixed.join(work),
        };
        spec
    };
    let lowers = vec![mixed.join("top"), mixed.join("layer"), base.clone()];
    let (code, out) = common::out(&spec(
        "ls -la /secret 2>&1; cat /secret/key 2>&1; echo end",
        lowers,
        "upper",
        "work",
    ));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("TOPSECRET"), "{out}");
    assert!(out.starts_with("ls: /secret: Permission denied\n"), "{out}");

    let why = |r: Refusal| match r {
        Refusal::PrivilegedMode(why) => why,
        other => panic!("refused for another reason: {other:?}"),
    };
    // Root's directory as the writable layer.
    let r = why(refused(spec("", vec![base.clone()], "locked", "work")));
    assert!(r.contains("locked: it belongs to uid 0"), "{r}");
    // Root's directory as the work directory: refused, and nothing of it removed. The caller
    // cannot look inside; the link count says `inner` is still there (2 + subdirectories).
    let r = why(refused(spec("", vec![base.clone()], "upper", "lockedwork")));
    assert!(r.contains("lockedwork"), "{r}");
    let links = std::os::unix::fs::MetadataExt::nlink(
        &std::fs::metadata(mixed.join("lockedwork")).expect("lockedwork is still there"),
    );
    assert_eq!(links, 3, "the work directory of root's was emptied");
}

/// A layer may hold a device node the caller could open on the host (a file system it
/// mounted itself can): the environment's root is mounted `nodev`, so the workload cannot. (On
/// the simulated host every new superblock is `nodev` already, being made in a user namespace;
/// on a real one only the mount flag stops it, so the test checks the flag as well.)
#[test]
fn device_nodes_in_a_layer_cannot_be_opened() {
    let Some(devstore) = fixture("DEVICE_STORE") else {
        return;
    };
    let base = devstore.join("layers/base");
    if !base.exists() {
        common::busybox_layer(&base);
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(devstore.join("layers/dev/nulldev"))
        .expect("the caller can open the device node on the host");
    let s = store();
    let mut spec = sh(
        &s,
        "echo x > /nulldev 2>/dev/null && echo opened || echo refused; \
         grep '^[0-9]* [0-9]* [0-9:]* / / ' /proc/self/mountinfo",
    );
    spec.store_root = devstore.clone();
    spec.lowers = vec![devstore.join("layers/dev"), base];
    let (code, out) = common::out(&spec);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().next(), Some("refused"), "{out}");
    let root = out
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no root mount: {out}"));
    let options: Vec<&str> = root.split(' ').nth(5).unwrap_or("").split(',').collect();
    assert!(
        options.contains(&"nodev"),
        "the root is not mounted nodev: {root}"
    );
}

/// Only the kernel's "not allowed" counts as "no user namespaces": a probe that fails for
/// another reason — here the caller's `RLIMIT_NPROC`, which the probe's `clone` cannot exceed
/// — stops the helper instead of choosing a mode for it. Needs a host where user namespaces
/// work (the kernel refuses the namespace before it counts processes): the root pass installs
/// a copy with the file capabilities on this machine, in a directory only root can write, for
/// the test user, and removes it afterwards. Without the limit that copy runs rootless.
#[test]
fn a_probe_the_caller_made_fail_stops_the_helper() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() || common::privileged() {
        return;
    }
    let Some(user) = ["kptest"]
        .into_iter()
        .find(|u| nix::unistd::User::from_name(u).ok().flatten().is_some())
    else {
        assert!(std::env::var_os("CI").is_none(), "CI creates kptest");
        return;
    };
    common::init();
    let dir = tempfile::Builder::new()
        .prefix("kp-capped-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let helper = dir.path().join("karapace-helper");
    std::fs::copy(
        std::env::var_os("KARAPACE_HELPER").expect("helper"),
        &helper,
    )
    .expect("copy");
    let caps = std::process::Command::new("setcap")
        .arg(karapace_protocol::PRIVILEGED_FILE_CAPABILITIES)
        .arg(&helper)
        .status()
        .expect("setcap (libcap2-bin)");
    assert!(caps.success());
    let run = |limit: bool| {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", user, "--"]);
        if limit {
            c.arg("prlimit").arg("--nproc=1:1");
        }
        c.arg(&helper).arg("--mode").output().expect("runuser")
    };
    let (free, limited) = (run(false), run(true));
    drop(dir);
    assert_eq!(
        String::from_utf8_lossy(&free.stdout),
        "rootless\n",
        "{free:?}"
    );
    assert!(!limited.status.success(), "{limited:?}");
    let err = String::from_utf8_lossy(&limited.stderr);
    assert!(err.contains("cannot tell whether"), "{err}");
}
