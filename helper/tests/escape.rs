//! Escape tests: run real workloads in real namespaces and check what they
//! can and cannot do. Run as root and as an unprivileged user
//! (tests/run-as-user.sh).

mod common;

use common::{out, sh, spec, store};
use std::path::PathBuf;

use karapace_helper_client::{Network, Upper, WaitStatus};

#[test]
fn exit_status_is_propagated() {
    let s = store();
    assert_eq!(out(&sh(&s, "exit 7")).0, 7);
    assert_eq!(out(&spec(&s, &["true"])).0, 0);
    assert_eq!(out(&spec(&s, &["false"])).0, 1);
    let (status, _) = karapace_helper_client::capture(&sh(&s, "kill -TERM $$")).unwrap();
    assert_eq!(status, WaitStatus::Signaled(15));
    assert_eq!(status.code(), 143);
}

#[test]
fn missing_command_is_a_typed_exec_error() {
    let s = store();
    let err = karapace_helper_client::capture(&spec(&s, &["no-such-cmd"])).unwrap_err();
    assert_eq!(err.exit_code(), 127, "{err}");
}

/// A command name as long as a request allows (64 KiB) fails with a short, typed error, and
/// does not wedge the session: the workload's process reports why `execve` failed through a pipe
/// that nobody can drain until it exits.
#[test]
fn an_enormous_command_name_is_refused_not_hung() {
    let s = store();
    let name = format!("/{}", "a".repeat(64 * 1024 - 1));
    let spec = spec(&s, &[name.as_str()]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(karapace_helper_client::capture(&spec));
    });
    let result = rx
        .recv_timeout(std::time::Duration::from_mins(1))
        .expect("the session hung on a long command name");
    match result {
        Err(karapace_helper_client::HelperError::Refused(
            karapace_helper_client::Refusal::Exec { argv0, errno },
        )) => {
            assert_eq!(errno, 36, "ENAMETOOLONG");
            assert!(argv0.len() < 2048, "{} bytes", argv0.len());
        }
        other => panic!("expected an Exec refusal, got {other:?}"),
    }
}

#[test]
fn pid_namespace_shows_only_our_tree() {
    let s = store();
    let (code, o) = out(&sh(&s, "echo $$; ls /proc | grep -E '^[0-9]+$'"));
    assert_eq!(code, 0);
    let mut lines = o.lines();
    assert_eq!(lines.next(), Some("2"), "workload is pid 2 under our init");
    let pids: Vec<u32> = lines.filter_map(|l| l.parse().ok()).collect();
    assert!(
        pids.contains(&1) && pids.iter().all(|p| *p < 10),
        "host pids visible: {pids:?}"
    );
}

#[test]
fn hostname_is_ours() {
    let s = store();
    assert_eq!(out(&spec(&s, &["hostname"])).1.trim(), "karapace-test1234");
}

#[test]
fn no_caps_no_new_privs_seccomp() {
    let s = store();
    let (_, o) = out(&spec(&s, &["cat", "/proc/self/status"]));
    let field = |k: &str| {
        o.lines()
            .find(|l| l.starts_with(k))
            .map(|l| l[k.len()..].trim().to_string())
    };
    assert_eq!(field("CapEff:").as_deref(), Some("0000000000000000"));
    assert_eq!(field("CapBnd:").as_deref(), Some("0000000000000000"));
    assert_eq!(field("NoNewPrivs:").as_deref(), Some("1"));
    assert_eq!(field("Seccomp:").as_deref(), Some("2"));
}

#[test]
fn forbidden_syscalls_fail_with_eperm() {
    let s = store();
    let mut sp = spec(&s, &["/probe/probe"]);
    common::probe_binds(&mut sp);
    let (code, o) = out(&sp);
    assert_eq!(code, 0, "{o}");
    let get = |k: &str| {
        o.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or_else(|| panic!("{k} missing in {o}"))
    };
    for k in [
        "mount",
        "unshare_mnt",
        "unshare_user",
        "keyctl",
        "add_key",
        "bpf",
        "perf_event_open",
        "tiocsti",
        "tiocsti_hibits",
        "fsopen",
        "open_tree",
        "settimeofday",
        "userfaultfd",
    ] {
        assert_eq!(get(k), libc::EPERM, "{k}");
    }
    for k in [
        "clone3",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ] {
        assert_eq!(get(k), libc::ENOSYS, "{k}");
    }
    assert_eq!(get("getpid"), 0);
}

#[test]
fn busybox_mount_and_unshare_fail() {
    let s = store();
    let (_, o) = out(&sh(
        &s,
        "mount -t tmpfs none /mnt 2>&1; echo rc=$?; unshare -m true 2>&1; echo rc=$?",
    ));
    assert_eq!(o.matches("rc=0").count(), 0, "{o}");
    assert!(
        o.contains("Operation not permitted") || o.contains("Permission denied"),
        "{o}"
    );
}

#[test]
fn proc_sys_and_sys_are_read_only() {
    let s = store();
    let (_, o) = out(&sh(
        &s,
        "echo 1 > /proc/sys/kernel/ns_last_pid 2>&1; echo rc=$?; touch /sys/x 2>&1; echo rc=$?",
    ));
    assert_eq!(o.matches("rc=0").count(), 0, "{o}");
    assert!(o.contains("Read-only"), "{o}");
}

#[test]
fn writes_outside_overlay_are_denied() {
    let s = store();
    // New top-level entries (Landlock) and kernel filesystems are refused;
    // the overlay itself is writable, but a throwaway upper leaves the
    // layer untouched.
    let (code, o) = out(&sh(
        &s,
        "touch /newtop 2>/dev/null && echo top-ok; echo x > /etc/hello && echo etc-ok; echo x > /dev/newdev 2>/dev/null && echo dev-ok; true",
    ));
    assert_eq!(code, 0);
    assert!(!o.contains("top-ok") && !o.contains("dev-ok"), "{o}");
    assert!(o.contains("etc-ok"), "{o}");
    assert!(
        !s.layer().join("etc/hello").exists(),
        "lower layer modified"
    );
}

#[test]
fn persistent_upper_keeps_writes_in_the_store() {
    let s = store();
    let mut sp = sh(&s, "echo persisted > /etc/marker");
    sp.upper = Upper::Store {
        upper: s.root.join("envs/e1/upper"),
        work: s.root.join("envs/e1/work"),
    };
    assert_eq!(out(&sp).0, 0);
    let got = std::fs::read_to_string(s.root.join("envs/e1/upper/etc/marker")).unwrap();
    assert_eq!(got.trim(), "persisted");
    assert!(!s.layer().join("etc/marker").exists());
}

#[test]
fn isolated_network_has_only_lo() {
    let s = store();
    let (_, o) = out(&sh(
        &s,
        "ls /sys/class/net; grep -c : /proc/net/dev; cat /sys/class/net/lo/flags",
    ));
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines.first(), Some(&"lo"), "{o}");
    assert_eq!(lines.get(1), Some(&"1"), "only lo in /proc/net/dev: {o}");
    let flags =
        u32::from_str_radix(lines.get(2).unwrap_or(&"0").trim_start_matches("0x"), 16).unwrap_or(0);
    assert_eq!(flags & 1, 1, "lo is up");
}

#[test]
fn host_network_is_shared_when_asked() {
    let s = store();
    let mut sp = sh(&s, "grep -c : /proc/net/dev");
    sp.network = Network::Host;
    let (_, o) = out(&sp);
    let host = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .matches(':')
        .count();
    assert_eq!(o.trim().parse::<usize>().unwrap(), host);
}

#[test]
fn stdin_and_stdout_stream() {
    use std::io::{BufRead, Write};
    let s = store();
    // stdin: feed data through a pipe, read it back through another.
    let (in_r, mut in_w) = std::io::pipe().unwrap();
    let (out_r, out_w) = std::io::pipe().unwrap();
    let sp = sh(&s, "read line; echo got:$line; sleep 1; echo late");
    let started = std::time::Instant::now();
    let session = karapace_helper_client::spawn_with(
        &sp,
        in_r.into(),
        out_w.into(),
        std::process::Stdio::inherit(),
    )
    .unwrap();
    in_w.write_all(b"hello\n").unwrap();
    drop(in_w);
    let mut reader = std::io::BufReader::new(out_r);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    let first_at = started.elapsed();
    assert_eq!(first.trim(), "got:hello");
    assert!(
        first_at < std::time::Duration::from_millis(900),
        "output was buffered: {first_at:?}"
    );
    let outcome = session.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert_eq!(rest.trim(), "late");
    assert_eq!(outcome.status, WaitStatus::Exited(0));
}

#[test]
fn stop_terminates_then_kills() {
    let s = store();
    let session = karapace_helper_client::spawn(
        &spec(&s, &["sleep", "30"]),
        karapace_helper_client::StdioMode::Null,
    )
    .unwrap();
    let pid = session.helper_pid();
    let start = karapace_helper_client::process_start_time(pid);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let how = karapace_helper_client::stop_session(pid, start, std::time::Duration::from_secs(5))
        .unwrap();
    assert_eq!(how, karapace_helper_client::StopOutcome::Terminated);
    assert_eq!(session.wait().unwrap().status, WaitStatus::Signaled(15));

    let session = karapace_helper_client::spawn(
        &sh(&s, "trap '' TERM; sleep 30"),
        karapace_helper_client::StdioMode::Null,
    )
    .unwrap();
    let pid = session.helper_pid();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let how =
        karapace_helper_client::stop_session(pid, None, std::time::Duration::from_millis(300))
            .unwrap();
    assert_eq!(how, karapace_helper_client::StopOutcome::Killed);
    assert_eq!(session.wait().unwrap().status, WaitStatus::Signaled(9));
    // A wrong start time (pid reuse) is refused.
    assert!(
        karapace_helper_client::stop_session(
            std::process::id(),
            Some(1),
            std::time::Duration::from_millis(10)
        )
        .is_err()
    );
}

/// The helper's control process and the environment's init are confined while the workload
/// runs: no capabilities, `no_new_privs`, a seccomp filter. (Their Landlock domain is not
/// visible in `/proc`; the init confines itself after it reports the start, so poll a moment.)
#[test]
fn control_and_init_processes_are_confined_while_the_workload_runs() {
    let s = store();
    let mut session = karapace_helper_client::spawn(
        &spec(&s, &["sleep", "30"]),
        karapace_helper_client::StdioMode::Null,
    )
    .unwrap();
    session.wait_started().unwrap();
    let init = session.init_pid().expect("init pid from Started");
    for pid in [session.helper_pid(), init] {
        let status = format!("/proc/{pid}/status");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let confined = loop {
            let text = std::fs::read_to_string(&status).unwrap();
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
            };
            let now = field("Seccomp:").as_deref() == Some("2")
                && field("NoNewPrivs:").as_deref() == Some("1")
                && field("CapEff:").as_deref() == Some("0000000000000000");
            if now || std::time::Instant::now() > deadline {
                break (now, text);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert!(confined.0, "process {pid} is not confined:\n{}", confined.1);
    }
    karapace_helper_client::stop_session(
        session.helper_pid(),
        None,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(session.wait().unwrap().status, WaitStatus::Signaled(15));
}

#[test]
fn read_only_bind_is_read_only() {
    let s = store();
    let host = tempfile::tempdir().unwrap();
    let src = std::fs::canonicalize(host.path()).unwrap();
    std::fs::write(src.join("f"), "data").unwrap();
    let mut sp = sh(
        &s,
        "cat /data/f; echo x > /data/g 2>/dev/null && echo wrote; true",
    );
    sp.allowed_mount_prefixes.push(src.clone());
    sp.binds.push(karapace_helper_client::BindMount {
        src: src.clone(),
        dst: "/data".into(),
        readonly: true,
    });
    let (_, o) = out(&sp);
    assert!(o.contains("data") && !o.contains("wrote"), "{o}");
    assert!(!src.join("g").exists());
}

#[test]
fn terminal_is_inherited_with_its_name() {
    // `script` gives kp-run (an example built with the tests) a real pty as
    // its stdin; the workload must see it as its terminal, by name.
    let s = store();
    let mut probe = PathBuf::new();
    let mut sp = spec(&s, &["true"]);
    common::probe_binds(&mut sp);
    if let Some(b) = sp.binds.first() {
        probe = b.src.join("kp-run");
    }
    let cmd = format!(
        "{} {} {} -- /bin/sh -c 'tty; test -t 0 && echo stdin-is-tty'",
        probe.display(),
        s.root.display(),
        s.layer().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env(
            "KARAPACE_HELPER",
            karapace_helper_client::helper_path().unwrap(),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("stdin-is-tty"), "{text}");
    assert!(out.status.success(), "{text}");
}

#[test]
fn a_read_only_home_stays_read_only_and_host_tmp_private() {
    let s = store();
    let home_dir = tempfile::tempdir().unwrap();
    let home = std::fs::canonicalize(home_dir.path()).unwrap();
    std::fs::write(home.join("notes"), "mine").unwrap();
    let host_tmp = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    // What the engine's host-sharing rules give for a home shared read-only or read-write.
    let shared = |readonly| {
        (
            vec![karapace_helper_client::BindMount {
                src: home.clone(),
                dst: home.clone(),
                readonly,
            }],
            vec![home.clone()],
        )
    };
    let script = format!(
        "cat {h}/notes; echo; touch {h}/new 2>/dev/null && echo home-writable; test -e {t} && echo host-tmp-visible; true",
        h = home.display(),
        t = host_tmp.path().display()
    );
    let mut sp = sh(&s, &script);
    (sp.binds, sp.allowed_mount_prefixes) = shared(true);
    let (code, o) = out(&sp);
    assert_eq!(code, 0, "{o}");
    assert!(o.contains("mine"), "{o}");
    assert!(
        !o.contains("home-writable") && !home.join("new").exists(),
        "{o}"
    );
    assert!(!o.contains("host-tmp-visible"), "{o}");

    let mut sp = sh(&s, &format!("echo hi > {}/new", home.display()));
    (sp.binds, sp.allowed_mount_prefixes) = shared(false);
    assert_eq!(out(&sp).0, 0);
    assert_eq!(
        std::fs::read_to_string(home.join("new")).unwrap().trim(),
        "hi"
    );
}

/// Once the workload runs, the environment's init process holds neither the core's socket nor
/// any descriptor the helper opened on the host (layers, upper and work, bind sources).
#[test]
fn the_init_holds_no_host_descriptors_after_setup() {
    let s = store();
    let host = tempfile::tempdir().unwrap();
    let src = std::fs::canonicalize(host.path()).unwrap();
    let mut sp = spec(&s, &["sleep", "30"]);
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
    let mut session =
        karapace_helper_client::spawn(&sp, karapace_helper_client::StdioMode::Null).unwrap();
    session.wait_started().unwrap();
    let init = session.init_pid().expect("init pid");
    common::assert_no_host_descriptors(init);
    karapace_helper_client::stop_session(
        session.helper_pid(),
        None,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let _ = session.wait();
}

/// A workload cannot reach its init process's descriptors, root, working directory or
/// environment: Landlock's ptrace rule refuses them (`nolandlock.rs` runs the same workload
/// without Landlock). It may list the descriptor numbers: the kernel checks only the
/// directory's owner for that, and the init stays dumpable so that later sessions can join it.
#[test]
fn the_workload_cannot_climb_out_through_its_init() {
    let s = store();
    let secret = common::host_secret(&s);
    let (code, o) = out(&sh(&s, common::CLIMB_OUT_THROUGH_PID_1));
    assert_eq!(code, 0, "{o}");
    assert!(
        o.lines().all(|l| l == "listed /proc/1/fd") && !o.contains(secret),
        "{o}"
    );
}

/// The helper's control process is not dumpable: no other process of the user without
/// privilege over the host (a workload that reached the host's /proc) can read its descriptors
/// (the core's socket) or its environment. The init stays inspectable by the user's processes
/// where Landlock keeps the workload out (that is how later sessions join it).
#[test]
fn the_helper_cannot_be_inspected_by_other_processes_of_its_user() {
    let s = store();
    let mut session = karapace_helper_client::spawn(
        &spec(&s, &["sleep", "30"]),
        karapace_helper_client::StdioMode::Null,
    )
    .unwrap();
    session.wait_started().unwrap();
    let helper = session.helper_pid();
    let init = session.init_pid().expect("init pid");
    let results = (common::inspectable(helper), common::inspectable(init));
    karapace_helper_client::stop_session(helper, None, std::time::Duration::from_secs(5)).unwrap();
    let _ = session.wait();
    assert_eq!(results, (false, true), "(helper, init) inspectable");
}
