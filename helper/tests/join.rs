//! Several sessions of one environment: a later session joins a running one
//! (one overlay mount per upper directory), and the helper refuses to join
//! anything that is not such a session.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Store, sh, store};
use karapace_helper_client::{
    self as hc, HelperError, IdMapMode, Identity, JoinTarget, Refusal, RunSpec, StdioMode, Upper,
};

/// A session of the store's persistent environment `e1`, run as the caller.
fn persistent(store: &Store, script: &str) -> RunSpec {
    let mut spec = sh(store, script);
    spec.upper = Upper::Store {
        upper: store.root.join("envs/e1/upper"),
        work: store.root.join("envs/e1/work"),
    };
    spec.identity = Identity::Caller;
    spec
}

fn target_of(session: &hc::Session) -> JoinTarget {
    let pid = session.init_pid().expect("init pid after Started");
    JoinTarget {
        pid,
        start_time: hc::process_start_time(pid).expect("init start time"),
    }
}

fn wait_for(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(session: hc::Session) {
    hc::stop_session(session.helper_pid(), None, Duration::from_secs(5)).expect("stop session");
    let _ = session.wait();
}

#[test]
fn later_sessions_join_the_running_one() {
    let s = store();
    let upper = s.root.join("envs/e1/upper");
    let mut first = hc::spawn(
        &persistent(
            &s,
            "echo one > /var/shared; stat -c %d / > /var/dev1.tmp && mv /var/dev1.tmp /var/dev1; exec sleep 60",
        ),
        StdioMode::Null,
    )
    .expect("first session");
    first.wait_started().expect("first started");
    let dev1 = wait_for(&upper.join("var/dev1"));

    // The second session joins: same overlay (same device of "/"), writes
    // visible both ways at once, same hostname, but its own pid namespace.
    let mut spec = persistent(
        &s,
        "cat /var/shared; stat -c %d /; hostname; echo pid $$; ls /proc | grep -c '^[0-9]'; \
         echo two > /var/from-second",
    );
    spec.join = vec![target_of(&first)];
    let (code, out) = common::out(&spec);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "one", "{out}");
    assert_eq!(
        lines[1],
        dev1.trim(),
        "joined session has another overlay: {out}"
    );
    assert_eq!(lines[2], "karapace-test1234", "{out}");
    assert_eq!(lines[3], "pid 2", "{out}");
    // Its init, the shell and the pipeline's two processes: nothing of the first session.
    let procs: u32 = lines[4].parse().expect("count");
    assert!(
        procs <= 4,
        "the joined session sees foreign processes: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(upper.join("var/from-second")).expect("write reached the upper"),
        "two\n"
    );

    // A third session outlives the first; a fourth joins the third after
    // the first ended (the first is offered too, and skipped as gone).
    let mut third = hc::spawn(
        &{
            let mut spec = persistent(&s, "exec sleep 60");
            spec.join = vec![target_of(&first)];
            spec
        },
        StdioMode::Null,
    )
    .expect("third session");
    third.wait_started().expect("third started");
    let first_target = target_of(&first);
    stop(first);
    let mut spec = persistent(&s, "cat /var/shared /var/from-second; stat -c %d /");
    spec.join = vec![first_target, target_of(&third)];
    let (code, out) = common::out(&spec);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("one\ntwo\n{dev1}"), "{out}");
    stop(third);
}

fn refused(spec: &RunSpec) -> Refusal {
    match hc::spawn(spec, StdioMode::Null).and_then(hc::Session::wait) {
        Err(HelperError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn target(pid: u32) -> JoinTarget {
    JoinTarget {
        pid,
        start_time: hc::process_start_time(pid).expect("start time"),
    }
}

#[test]
fn join_refuses_what_is_not_a_session() {
    let s = store();
    let mut spec = persistent(&s, "echo joined > /var/pwned");
    let pwned = s.root.join("envs/e1/upper/var/pwned");

    // This very process: the helper's own namespaces (the host's root).
    spec.join = vec![target(std::process::id())];
    assert!(
        matches!(refused(&spec), Refusal::BadJoinTarget { .. }),
        "joined the host"
    );

    // A process in its own user and mount namespace whose root is the host's (a privileged
    // helper's host has no user namespaces to make one).
    if common::privileged() {
    } else if let Ok(mut child) = std::process::Command::new("unshare")
        .args(["-Urm", "sleep", "30"])
        .spawn()
    {
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        // Wait until it runs in its namespaces (exec of sleep done).
        while std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| !e.ends_with("sleep"))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        spec.join = vec![target(pid)];
        let r = refused(&spec);
        let _ = child.kill();
        let _ = child.wait();
        assert!(matches!(r, Refusal::BadJoinTarget { .. }), "{r:?}");
    }

    // pid 1 of the host.
    spec.join = vec![JoinTarget {
        pid: 1,
        start_time: 1,
    }];
    assert!(matches!(refused(&spec), Refusal::BadJoinTarget { .. }));

    // A recycled pid (wrong start time) and a pid that does not exist.
    let me = target(std::process::id());
    spec.join = vec![
        JoinTarget {
            pid: me.pid,
            start_time: me.start_time + 1,
        },
        JoinTarget {
            pid: 4_194_305, // above the largest pid_max: never a process
            start_time: 5,
        },
    ];
    assert_eq!(refused(&spec), Refusal::NoJoinTarget);

    // Joining needs a stored environment.
    let mut tmpfs_spec = spec.clone();
    tmpfs_spec.upper = Upper::Tmpfs { size_mb: 8 };
    assert!(matches!(refused(&tmpfs_spec), Refusal::Invalid(_)));

    // Too many targets.
    spec.join = vec![me; karapace_protocol::limits::MAX_JOIN + 1];
    assert!(matches!(refused(&spec), Refusal::TooLarge { .. }));

    assert!(!pwned.exists(), "a refused request ran its workload");
}

/// A session runs as its identity inside the namespace it joins, so it joins only one whose id
/// maps are those it would have written: for a user, a root session (0 → the user) and a plain
/// one (the user → the user) never share namespaces, whatever the core's records say; for root
/// on the host both map 0 → 0. Root sessions join root sessions. A privileged helper's
/// sessions have no user namespace: every one runs as the caller, and any joins any.
#[test]
fn sessions_join_only_sessions_with_their_id_maps() {
    let s = store();
    let caller_is_root = nix::unistd::geteuid().is_root();
    let mut plain = hc::spawn(&persistent(&s, "exec sleep 60"), StdioMode::Null).expect("plain");
    plain.wait_started().expect("plain started");
    let mut as_root = persistent(&s, "id -u");
    as_root.identity = Identity::Root;
    as_root.join = vec![target_of(&plain)];
    if common::privileged() {
        // No user namespace: both run as the caller, root only claimed by the root session.
        let (code, out) = common::out(&as_root);
        assert_eq!(
            (code, out.as_str()),
            (0, "0\n"),
            "a privileged helper's root session joins a plain one"
        );
    } else if caller_is_root {
        let (code, out) = common::out(&as_root);
        assert_eq!(
            (code, out.as_str()),
            (0, "0\n"),
            "root joins root's plain session"
        );
    } else {
        match refused(&as_root) {
            Refusal::BadJoinTarget { why, .. } => assert!(why.contains("maps other ids"), "{why}"),
            other => panic!("a root session joined a plain one: {other:?}"),
        }
    }
    stop(plain);

    let mut first_root = persistent(&s, "exec sleep 60");
    first_root.identity = Identity::Root;
    let mut root = hc::spawn(&first_root, StdioMode::Null).expect("root session");
    root.wait_started().expect("root started");
    let mut second = persistent(&s, "id -u; grep CapEff /proc/self/status");
    second.identity = Identity::Root;
    second.join = vec![target_of(&root)];
    let (code, out) = common::out(&second);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("0\n"), "{out}");
    let mut caller = persistent(&s, "echo joined > /var/joined-root");
    caller.join = vec![target_of(&root)];
    if common::privileged() {
        stop(root);
        return; // no id maps to tell sessions apart, and no full ones at all
    }
    if !caller_is_root {
        assert_maps_refused(&caller, "a plain session joined a root one");
        assert!(!s.root.join("envs/e1/upper/var/joined-root").exists());
    }
    stop(root);

    // The maps of `exec --root` for a user with a subordinate range (root on the host: the
    // identity maps), written through newuidmap: a second such session joins the first (the
    // helper's idea of those maps is what the kernel shows), a plain one does not.
    let mut full = persistent(
        &s,
        "readlink /proc/self/ns/ipc > /var/ipc-full; exec sleep 60",
    );
    full.identity = Identity::Root;
    full.id_map = IdMapMode::Full;
    let started = hc::spawn(&full, StdioMode::Null).and_then(|mut session| {
        session.wait_started()?;
        Ok(session)
    });
    let first_full = match started {
        Ok(session) => session,
        Err(HelperError::Refused(Refusal::NoSubordinateRange)) => {
            eprintln!("no subordinate id range for this user: the full-map case is skipped");
            return;
        }
        Err(e) => panic!("full session: {e}"),
    };
    let ipc = wait_for(&s.root.join("envs/e1/upper/var/ipc-full"));
    let mut second = persistent(&s, "readlink /proc/self/ns/ipc; id -u");
    second.identity = Identity::Root;
    second.id_map = IdMapMode::Full;
    second.join = vec![target_of(&first_full)];
    let (code, out) = common::out(&second);
    assert_eq!(
        (code, out),
        (0, format!("{ipc}0\n")),
        "a full-map session joins another"
    );
    let mut plain = persistent(&s, "true");
    plain.join = vec![target_of(&first_full)];
    if !caller_is_root {
        assert_maps_refused(&plain, "a plain session joined a full-map root one");
    }
    stop(first_full);
}

fn assert_maps_refused(spec: &RunSpec, what: &str) {
    match refused(spec) {
        Refusal::BadJoinTarget { why, .. } => assert!(why.contains("maps other ids"), "{why}"),
        other => panic!("{what}: {other:?}"),
    }
}

/// A joined session's init (forked from a helper that held the core's socket and the request's
/// validated paths) keeps none of them, and its workload cannot climb out through it.
#[test]
fn a_joined_sessions_init_holds_no_host_descriptors() {
    let s = store();
    let secret = common::host_secret(&s);
    let mut first = hc::spawn(&persistent(&s, "exec sleep 60"), StdioMode::Null).expect("first");
    first.wait_started().expect("first started");

    let mut spec = persistent(&s, "exec sleep 60");
    spec.join = vec![target_of(&first)];
    let mut second = hc::spawn(&spec, StdioMode::Null).expect("second");
    second.wait_started().expect("second started");
    common::assert_no_host_descriptors(second.init_pid().expect("second init"));

    let mut spec = persistent(&s, common::CLIMB_OUT_THROUGH_PID_1);
    spec.join = vec![target_of(&second)];
    let (code, out) = common::out(&spec);
    assert_eq!(code, 0, "{out}");
    // Listing the descriptor numbers is allowed (see escape.rs), following them is not.
    assert!(
        out.lines().all(|l| l == "listed /proc/1/fd") && !out.contains(secret),
        "{out}"
    );
    stop(second);
    stop(first);
}
