//! Package managers inside sessions: `apt-get install` in `exec --root` works as on a normal
//! system, for root (identity maps), a user with a subordinate range (full maps through
//! newuidmap) and a user without one (collapsed map: apt keeps root instead of switching to
//! `_apt`). What it installs lands in the writable layer: the next session of the caller runs
//! it, `diff` shows it. Without `--root` the same command fails and says how to run it.
//!
//! Runs in the root pass (it switches users with `runuser`); the users come from
//! `scripts/test-all`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use karapace_tests::{Karapace, Mirror, TestDir, UserDir, switching_users};

/// The base image alone: everything else is installed by hand, in a session.
const MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = []
"#;

const RANGE_USER: &str = "kptest";
const NO_RANGE_USER: &str = "kpnorange";

/// The user's path in one environment: install `jq` by hand, then use it.
fn apt_in_a_session(k: &Karapace, who: &str) {
    k.ok(&["build", "--name", "s"]);
    let install = ["apt-get", "install", "-y", "--no-install-recommends", "jq"];

    // Not root inside: the package manager fails, and the hint gives the command line to use.
    let refused = k.exec("s", &install);
    assert!(!refused.success(), "{who}: apt-get install without --root");
    let hint = format!(
        "hint: package managers need root inside the environment: karapace --store {} \
         exec --root s -- {}",
        k.store().display(),
        install.join(" ")
    );
    assert!(
        refused.stderr_str().contains(&hint),
        "{who}: {}",
        refused.stderr_str()
    );
    // A query that fails is not a matter of root: no hint.
    let query = k.exec("s", &["dpkg", "-s", "jq"]);
    assert!(!query.success(), "{who}: jq is not installed yet");
    assert!(
        !query.stderr_str().contains("hint:"),
        "{who}: {}",
        query.stderr_str()
    );

    // Root inside: apt's own sandbox (a switch to `_apt`, or root where it cannot) and the
    // download from the mirror both work.
    let id = k.ok(&["exec", "--root", "s", "--", "id", "-u"]);
    assert_eq!(id.stdout_str(), "0\n", "{who}: --root is uid 0 inside");
    let update = k.run(&["exec", "--root", "s", "--", "apt-get", "update"]);
    update.assert_success();
    assert!(
        !update.stderr_str().contains("E: "),
        "{who}: apt-get update: {}",
        update.stderr_str()
    );
    let mut root_install = vec!["exec", "--root", "s", "--"];
    root_install.extend(install);
    let installed = k.run(&root_install);
    installed.assert_success();
    assert!(
        installed.stdout_str().contains("Setting up jq"),
        "{who}: {}",
        installed.stdout_str()
    );

    // The caller's next session has it; `diff` names it; it stays installed after the session.
    let version = k.ok(&["exec", "s", "--", "jq", "--version"]);
    assert!(version.stdout_str().starts_with("jq-"), "{who}");
    let run = k.exec_with_stdin("s", &["jq", "-c", ".a"], br#"{"a":[1,2]}"#);
    run.assert_success();
    assert_eq!(run.stdout_str(), "[1,2]\n", "{who}");
    let diff = k.ok(&["diff", "s"]).stdout_str();
    assert!(
        diff.contains("usr/bin/jq"),
        "{who}: diff shows the new file: {diff}"
    );
    // Installed files belong to root inside, as on a normal system.
    let owner = k.ok(&[
        "exec",
        "--root",
        "s",
        "--",
        "stat",
        "-c",
        "%U",
        "/usr/bin/jq",
    ]);
    assert_eq!(owner.stdout_str(), "root\n", "{who}");
    sessions_side_by_side(k, who, Backend { oci: false });
}

/// The base image under the `oci` backend (crun): its sessions map the caller's id to root
/// whether they run with `--root` or not.
const OCI_MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = []

[runtime]
backend = "oci"
"#;

/// Which sessions share namespaces: of the namespace backend (`oci` false) or the `oci` one.
#[derive(Clone, Copy)]
struct Backend {
    oci: bool,
}

/// A session of an environment joins the sessions already running in it (its overlay is mounted
/// once). A `--root` session's user namespace maps a user's ids differently from a plain one's,
/// so for a user the two kinds cannot share one and the second is refused with a message that
/// says why and what to do; for root on the host they map the same ids and join each other. Two
/// `--root` sessions always join (they share the IPC namespace). Under the `oci` backend every
/// session maps the caller's id to root, so only a user with a subordinate range (whose `--root`
/// sessions map it too) is refused.
fn sessions_side_by_side(k: &Karapace, who: &str, backend: Backend) {
    let host_root = who == "root";
    let maps_alike = host_root || (backend.oci && who == NO_RANGE_USER);
    for (first_root, second_root) in [(false, true), (true, false), (true, true)] {
        let with_root = |root: bool, script: &'static str| {
            let mut argv = vec!["exec"];
            if root {
                argv.push("--root");
            }
            argv.extend(["s", "--", "sh", "-c", script]);
            argv
        };
        let first = with_root(
            first_root,
            "readlink /proc/self/ns/ipc > /var/tmp/first; exec sleep 120",
        );
        let (mut cmd, _) = k.command(&first);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the first session");
        let deadline = Instant::now() + Duration::from_secs(30);
        while k.json(&["inspect", "s"])["state"] != "Running" {
            assert!(
                Instant::now() < deadline,
                "{who}: the first session never ran"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let second = with_root(
            second_root,
            "while [ ! -s /var/tmp/first ]; do sleep 0.05; done; \
             [ \"$(readlink /proc/self/ns/ipc)\" = \"$(cat /var/tmp/first)\" ] && echo joined; id -u",
        );
        let out = k.run(&second);
        let case = format!("{who}: --root first {first_root}, second {second_root}");
        if maps_alike || first_root == second_root {
            out.assert_success();
            // Root's plain sessions are uid 0 inside too, as are every `oci` session's.
            assert_eq!(out.stdout_str(), "joined\n0\n", "{case}");
        } else {
            out.assert_code(1);
            let err = out.stderr_str();
            let expected = if first_root {
                "cannot start a session of 's' while 1 --root session(s) run in it"
            } else if backend.oci {
                "cannot start a --root session of 's' while 1 session(s) with other id maps run \
                 in it (started without --root"
            } else {
                "cannot start a --root session of 's' while 1 session(s) without --root run in it"
            };
            assert!(err.contains(expected), "{case}: {err}");
            assert!(err.contains("karapace stop s"), "{case}: {err}");
        }
        k.ok(&["stop", "s"]);
        let status = child.wait().expect("wait for the first session");
        assert!(
            !status.success(),
            "{case}: the stopped session ended by a signal"
        );
        k.ok(&["exec", "--root", "s", "--", "rm", "-f", "/var/tmp/first"]);
    }
}

#[test]
fn apt_get_install_works_in_root_sessions_for_every_id_map() {
    let Some(mirror): Option<Mirror> = switching_users(&[RANGE_USER, NO_RANGE_USER]) else {
        return;
    };
    let dir = TestDir::new("apt-session");
    dir.write_project_file("karapace.toml", MANIFEST);
    apt_in_a_session(&Karapace::new(&dir).image_server(mirror.file_url()), "root");
    for user in [RANGE_USER, NO_RANGE_USER] {
        let home = UserDir::new("apt-session", user, MANIFEST, None);
        apt_in_a_session(&home.karapace(&mirror), user);
    }
}

#[test]
fn oci_sessions_share_namespaces_when_they_map_the_same_ids() {
    let Some(mirror): Option<Mirror> = switching_users(&[RANGE_USER, NO_RANGE_USER]) else {
        return;
    };
    if !Path::new("/usr/bin/crun").is_file() {
        assert!(std::env::var_os("CI").is_none(), "CI installs crun");
        eprintln!("skipped: crun is not installed");
        return;
    }
    let oci = Backend { oci: true };
    let dir = TestDir::new("oci-side-by-side");
    dir.write_project_file("karapace.toml", OCI_MANIFEST);
    let homes = [RANGE_USER, NO_RANGE_USER].map(|user| {
        (
            UserDir::new("oci-side-by-side", user, OCI_MANIFEST, None),
            user,
        )
    });
    let callers = [(Karapace::new(&dir).image_server(mirror.file_url()), "root")]
        .into_iter()
        .chain(
            homes
                .iter()
                .map(|(home, user)| (home.karapace(&mirror), *user)),
        );
    for (k, who) in callers {
        let k = k.env("KARAPACE_OCI_RUNTIME", "crun");
        k.ok(&["build", "--name", "s"]);
        sessions_side_by_side(&k, who, oci);
    }
}
