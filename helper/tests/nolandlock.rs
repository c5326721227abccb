//! Sessions on a kernel without Landlock, simulated through the helper's test seam
//! (`karapace-helper --pretend-no-landlock`, which makes its probe answer "no Landlock"): they
//! are refused unless the request allows them, and then the workload still cannot leave the
//! environment through its init process or reach the helper. Without Landlock's ptrace rule,
//! that rests on the init closing every descriptor it got from the host and on the init and
//! the helper being non-dumpable: these tests prove those two alone are enough.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::{out, sh, spec, store};
use karapace_helper_client::{self as hc, HelperError, Identity, Refusal, StdioMode, Upper};

/// Points the client at a wrapper that starts the helper under test with the seam, for every
/// test of this binary (all of them call this first).
fn without_landlock() {
    static WRAPPER: OnceLock<tempfile::TempDir> = OnceLock::new();
    WRAPPER.get_or_init(|| {
        let helper = std::env::var_os("KARAPACE_HELPER").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_karapace-helper")),
            PathBuf::from,
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let wrapper = dir.path().join("helper-without-landlock");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' --pretend-no-landlock \"$@\"\n",
                helper.display()
            ),
        )
        .expect("write wrapper");
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod wrapper");
        // SAFETY: set once, before any test of this binary spawns a helper or reads the
        // environment (every test calls this first; the others wait for it here).
        unsafe { std::env::set_var("KARAPACE_HELPER", &wrapper) };
        dir
    });
}

#[test]
fn without_landlock_a_request_is_refused_unless_it_allows_it() {
    without_landlock();
    let s = store();
    let sp = spec(&s, &["true"]);
    match karapace_helper_client::capture(&sp) {
        Err(HelperError::Refused(Refusal::LandlockUnavailable)) => {}
        other => panic!("expected LandlockUnavailable, got {other:?}"),
    }
    let text = Refusal::LandlockUnavailable.to_string();
    assert!(
        text.contains("allow_without_landlock = true") && text.contains("--allow-without-landlock"),
        "{text}"
    );
    let mut sp = sp;
    sp.allow_without_landlock = true;
    assert_eq!(out(&sp).0, 0);
}

/// The attack of the security review, without Landlock: through `/proc/1/fd/N/..` a workload
/// reached the host's file system from the layer descriptors the init kept.
#[test]
fn without_landlock_the_workload_cannot_climb_out_through_its_init() {
    without_landlock();
    let s = store();
    let secret = common::host_secret(&s);
    let host = tempfile::tempdir().unwrap();
    let src = std::fs::canonicalize(host.path()).unwrap();
    // Without Landlock a new top-level entry can be created (proof that Landlock is off), and
    // the workload's own /proc entries work normally (execve made it dumpable again).
    let script = format!(
        "{}\ntouch /newtop && echo no-landlock\n\
         ls /proc/self/fd >/dev/null && cat /proc/self/environ >/dev/null && \
         ls /proc/self/root/ >/dev/null && echo self-ok",
        common::CLIMB_OUT_THROUGH_PID_1
    );
    let mut sp = sh(&s, &script);
    sp.allow_without_landlock = true;
    sp.upper = Upper::Store {
        upper: s.root.join("envs/e1/upper"),
        work: s.root.join("envs/e1/work"),
    };
    sp.allowed_mount_prefixes.push(src.clone());
    sp.binds.push(karapace_helper_client::BindMount {
        src,
        dst: "/data".into(),
        readonly: false,
    });
    let (code, o) = out(&sp);
    assert_eq!(code, 0, "{o}");
    // Listing the descriptor numbers may work (as root: the non-dumpable init's /proc
    // directories then belong to the host's root, which the workload's uid 0 maps to);
    // following any of them must not.
    let lines: Vec<_> = o.lines().filter(|l| *l != "listed /proc/1/fd").collect();
    assert_eq!(lines, ["no-landlock", "self-ok"], "{o}");
    assert!(!o.contains(secret), "{o}");
}

/// Neither the init nor the helper's control process can be inspected by a process of the
/// same user that has no privilege over the host; a dumpable process of that user can.
#[test]
fn without_landlock_neither_the_init_nor_the_helper_can_be_inspected() {
    without_landlock();
    let s = store();
    let mut sp = spec(&s, &["sleep", "30"]);
    sp.allow_without_landlock = true;
    let mut session = hc::spawn(&sp, StdioMode::Null).unwrap();
    session.wait_started().unwrap();
    let init = session.init_pid().expect("init pid");
    let helper = session.helper_pid();
    let mut control = common::capless("sleep").arg("30").spawn().unwrap();
    // As root it starts as setpriv, with every capability: wait for the capless sleep.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{}/comm", control.id()))
        .is_ok_and(|c| c.trim() != "sleep")
    {
        assert!(std::time::Instant::now() < deadline, "sleep never started");
        std::thread::yield_now();
    }
    let results = (
        common::inspectable(control.id()),
        common::inspectable(init),
        common::inspectable(helper),
    );
    let _ = control.kill();
    let _ = control.wait();
    hc::stop_session(helper, None, std::time::Duration::from_secs(5)).unwrap();
    let _ = session.wait();
    assert_eq!(
        results,
        (true, false, false),
        "(a plain process, the init, the helper) inspectable"
    );
}

/// A session run without Landlock cannot be joined by an unprivileged user (joining needs to
/// inspect its init, which is not dumpable then); root, with `CAP_SYS_PTRACE`, still joins it.
#[test]
fn without_landlock_only_root_joins_a_running_session() {
    without_landlock();
    let s = store();
    let persistent = |script: &str| {
        let mut sp = sh(&s, script);
        sp.allow_without_landlock = true;
        sp.identity = Identity::Caller;
        sp.upper = Upper::Store {
            upper: s.root.join("envs/e1/upper"),
            work: s.root.join("envs/e1/work"),
        };
        sp
    };
    let mut first = hc::spawn(&persistent("exec sleep 60"), StdioMode::Null).unwrap();
    first.wait_started().unwrap();
    let pid = first.init_pid().expect("init pid");
    let mut second = persistent("echo joined");
    second.join = vec![hc::JoinTarget {
        pid,
        start_time: hc::process_start_time(pid).expect("start time"),
    }];
    let result = karapace_helper_client::capture(&second);
    hc::stop_session(first.helper_pid(), None, std::time::Duration::from_secs(5)).unwrap();
    let _ = first.wait();
    if nix::unistd::geteuid().is_root() {
        let (status, stdout) = result.expect("root joins");
        assert_eq!(status.code(), 0);
        assert_eq!(String::from_utf8_lossy(&stdout).trim(), "joined");
    } else {
        match result {
            Err(HelperError::Refused(Refusal::BadJoinTarget { why, .. })) => {
                assert!(why.contains("without Landlock"), "{why}");
            }
            other => panic!("expected BadJoinTarget, got {other:?}"),
        }
    }
}
