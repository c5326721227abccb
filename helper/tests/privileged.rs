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

/// What a caller leaves the helper — stdin and stderr closed, descriptors open far above 2, a
/// descriptor table nearly at its limit — changes nothing: the helper opens 0–2 on /dev/null,
/// closes everything above, and answers (or serves) as usual.
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
}
