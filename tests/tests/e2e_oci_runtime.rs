//! The `oci` runtime backend, for real, with Debian's crun and runc and with youki (built by
//! `scripts/install-deps`), as root and as the unprivileged user with a subordinate range: the curl environment built with
//! `backend = "oci"` from the local mirror; under each runtime `exec curl --version`, exit codes,
//! stdin, a signal's 128+N, the hostname, only `lo` with network isolation, `CapEff` 0 /
//! `NoNewPrivs` 1 / `Seccomp` 2 inside, a denied `mount`, a missing command's 127, `enter` on a
//! terminal, `exec --root`; `stop` of a running session and the one-session rule; a snapshot
//! round trip (`commit`, `diff`, `restore`) on the same store layers.
//!
//! Runs in the root pass (it switches users with `runuser`; the users come from
//! `scripts/test-all`). One environment per user, shared by every check.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use karapace_tests::{Karapace, Mirror, TestDir, UserDir, switching_users};

/// The curl environment of issue 5, on the `oci` backend; `mount` for the denied mount.
const MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["curl", "mount"]

[runtime]
backend = "oci"
network_isolation = true
"#;

const RANGE_USER: &str = "kptest";
/// youki is built from crates.io by `scripts/install-deps` (Debian does not package it).
const RUNTIMES: [&str; 3] = ["crun", "runc", "youki"];
/// A variable of the caller's that the environment allowlist keeps out.
const SECRET: (&str, &str) = ("KARAPACE_E2E_SECRET", "not-for-the-environment");

fn runtime_available(name: &str) -> bool {
    ["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(name).is_file())
}

/// Every runtime this test drives, or `None` (skipped) when one is missing outside CI.
fn runtimes() -> Option<()> {
    let missing: Vec<&str> = RUNTIMES
        .iter()
        .copied()
        .filter(|r| !runtime_available(r))
        .collect();
    if missing.is_empty() {
        return Some(());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install {missing:?} (scripts/install-deps)"
    );
    eprintln!("skipped: OCI runtimes {missing:?} not installed");
    None
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map_or_else(
            || panic!("no {field} in /proc/self/status:\n{status}"),
            |v| v.trim().to_owned(),
        )
}

/// The checks of one runtime on the built environment `c`.
fn sessions_under(k: &Karapace, who: &str, short_id: &str) {
    let curl = k.ok(&["exec", "c", "--", "curl", "--version"]);
    assert!(curl.stdout_str().starts_with("curl "), "{who}");

    // stdin in, stdout out, the exit code back.
    let piped = k.exec_with_stdin("c", &["sh", "-c", "cat; exit 3"], b"through the runtime\n");
    piped.assert_code(3);
    assert_eq!(piped.stdout_str(), "through the runtime\n", "{who}");
    // Death by a signal: 128+N.
    k.exec("c", &["sh", "-c", "kill -TERM $$"]).assert_code(143);
    // A missing command, as with the namespace backend.
    let missing = k.exec("c", &["no-such-command"]);
    missing.assert_code(127);
    assert!(
        missing.stderr_str().contains("command not found"),
        "{who}: {}",
        missing.stderr_str()
    );

    let hostname = k.ok(&["exec", "c", "--", "cat", "/proc/sys/kernel/hostname"]);
    assert_eq!(
        hostname.stdout_str(),
        format!("karapace-{short_id}\n"),
        "{who}"
    );
    let links = k.ok(&["exec", "c", "--", "ls", "/sys/class/net"]);
    assert_eq!(
        links.stdout_str(),
        "lo\n",
        "{who}: only lo with network isolation"
    );

    let status = k
        .ok(&["exec", "c", "--", "cat", "/proc/self/status"])
        .stdout_str();
    assert_eq!(status_field(&status, "CapEff"), "0000000000000000", "{who}");
    assert_eq!(status_field(&status, "CapBnd"), "0000000000000000", "{who}");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{who}");
    assert_eq!(status_field(&status, "Seccomp"), "2", "{who}");

    let mount = k.exec("c", &["mount", "-t", "tmpfs", "none", "/mnt"]);
    assert!(!mount.success(), "{who}: mount inside must fail");
    let unshare = k.exec("c", &["unshare", "--mount", "true"]);
    assert!(!unshare.success(), "{who}: unshare inside must fail");
    // A user namespace needs no capability, so only the seccomp rules refuse this one: it
    // fails only if the runtime applied our filter.
    let userns = k.exec("c", &["unshare", "-Ur", "true"]);
    assert!(
        !userns.success(),
        "{who}: a nested user namespace must be refused by seccomp"
    );
    assert!(
        userns.stderr_str().contains("Operation not permitted"),
        "{who}: {}",
        userns.stderr_str()
    );

    let env = k.ok(&["exec", "c", "--", "env"]).stdout_str();
    assert!(
        !env.contains(SECRET.0),
        "{who}: the environment allowlist: {env}"
    );

    // The workload sees neither the helper's nor the runtime's files through /proc.
    let peek = k.exec("c", &["ls", "/proc/1/root/"]);
    assert!(!peek.success(), "{who}: /proc/1/root must stay closed");

    // `exec --root`: the package managers' capabilities, still no_new_privs and seccomp.
    let root = k
        .ok(&["exec", "--root", "c", "--", "cat", "/proc/self/status"])
        .stdout_str();
    assert_ne!(status_field(&root, "CapEff"), "0000000000000000", "{who}");
    assert_eq!(status_field(&root, "NoNewPrivs"), "1", "{who}");
    assert_eq!(status_field(&root, "Seccomp"), "2", "{who}");

    enter_on_a_terminal(k, who);
}

/// `enter` with a terminal: the workload's stdin is a pty of the environment's own, the exit
/// code comes back.
fn enter_on_a_terminal(k: &Karapace, who: &str) {
    let Some(script) = karapace_tests::terminal::script_bin() else {
        assert!(std::env::var_os("CI").is_none(), "CI must have script");
        return;
    };
    let (cmd, _) = k.command(&["enter", "c", "--", "sh", "-c", "tty; exit 5"]);
    let mut line = String::from("exec env");
    for (key, value) in cmd.get_envs() {
        if let Some(v) = value {
            line.push(' ');
            line.push_str(&karapace_tests::process::shell_quote(&format!(
                "{}={}",
                key.to_string_lossy(),
                v.to_string_lossy()
            )));
        }
    }
    line.push(' ');
    line.push_str(&karapace_tests::process::shell_quote(
        &cmd.get_program().to_string_lossy(),
    ));
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&karapace_tests::process::shell_quote(&a.to_string_lossy()));
    }
    let out = Command::new(script)
        .args(["-qec", &line, "/dev/null"])
        .current_dir(cmd.get_current_dir().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{who}: {text}");
    assert!(text.contains("/dev/pts/0"), "{who}: a pty inside: {text}");
}

/// `stop` ends a running session; while it runs, a second session is refused.
fn stop_a_running_session(k: &Karapace, who: &str) {
    let (mut cmd, shown) = k.command(&["exec", "c", "--", "sleep", "300"]);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = k.ok(&["list"]).stdout_str();
        if list
            .lines()
            .any(|l| l.contains(" c ") && l.contains("running"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{who}: never running: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = k.exec("c", &["true"]);
    assert!(!second.success(), "{who}: one session at a time");
    assert!(
        second
            .stderr_str()
            .contains("one session of an environment at a time"),
        "{who}: {}",
        second.stderr_str()
    );
    k.ok(&["stop", "c"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "{who}: the stopped session still runs"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !status.success(),
        "{who}: a stopped session does not succeed"
    );
    let list = k.ok(&["list"]).stdout_str();
    assert!(!list.contains("running"), "{who}: {list}");
    // The environment runs again afterwards.
    k.ok(&["exec", "c", "--", "true"]);
}

/// `commit`, `diff` and `restore` work on what OCI sessions wrote, as on the namespace backend.
fn snapshot_round_trip(k: &Karapace, who: &str) {
    k.ok(&[
        "exec",
        "c",
        "--",
        "sh",
        "-c",
        "echo kept > /etc/karapace-oci.txt",
    ]);
    let diff = k.ok(&["diff", "c"]).stdout_str();
    assert!(diff.contains("etc/karapace-oci.txt"), "{who}: {diff}");
    let v = k.json(&["commit", "c"]);
    let snapshot = v
        .get("snapshot_hash")
        .and_then(|h| h.as_str())
        .unwrap_or_else(|| panic!("{who}: commit --json: {v:#}"))
        .to_owned();
    k.ok(&[
        "exec",
        "c",
        "--",
        "rm",
        "/etc/karapace-oci.txt",
        "/etc/issue",
    ]);
    k.ok(&["restore", "c", &snapshot]);
    let back = k.ok(&[
        "exec",
        "c",
        "--",
        "cat",
        "/etc/karapace-oci.txt",
        "/etc/issue",
    ]);
    assert!(back.stdout_str().starts_with("kept\n"), "{who}");
    assert!(back.stdout_str().contains("Debian"), "{who}");
}

fn everything(k: &Karapace, who: &str) {
    let built = k.json(&["build", "--name", "c"]);
    let short_id = built
        .get("short_id")
        .and_then(|s| s.as_str())
        .unwrap_or_else(|| panic!("{who}: build --json: {built:#}"))
        .to_owned();
    // A manifest alone cannot put its sessions under a runtime without Landlock: the user names
    // the runtime, or nothing runs.
    let unchosen = k.run(&["exec", "c", "--", "true"]);
    unchosen.assert_code(1);
    assert!(
        unchosen
            .stderr_str()
            .contains("a manifest cannot choose that for you"),
        "{who}: {}",
        unchosen.stderr_str()
    );
    for runtime in RUNTIMES {
        let k = k.clone().env("KARAPACE_OCI_RUNTIME", runtime);
        let who = format!("{who} with {runtime}");
        sessions_under(&k, &who, &short_id);
        stop_a_running_session(&k, &who);
    }
    snapshot_round_trip(&k.clone().env("KARAPACE_OCI_RUNTIME", "crun"), who);
}

#[test]
fn oci_backend_runs_sessions_with_crun_runc_and_youki_as_root_and_as_a_user() {
    let Some(mirror): Option<Mirror> = switching_users(&[RANGE_USER]) else {
        return;
    };
    if runtimes().is_none() {
        return;
    }
    let dir = TestDir::new("oci-runtime");
    dir.write_project_file("karapace.toml", MANIFEST);
    let root = Karapace::new(&dir)
        .image_server(mirror.file_url())
        .env(SECRET.0, SECRET.1);
    everything(&root, "root");
    let home = UserDir::new("oci-runtime", RANGE_USER, MANIFEST, None);
    let user = home.karapace(&mirror).env(SECRET.0, SECRET.1);
    everything(&user, RANGE_USER);
}
