//! The `oci` runtime backend, for real, with Debian's crun and runc and with youki (built by
//! `scripts/install-deps`), as root and as the unprivileged user with a subordinate range: the curl environment built with
//! `backend = "oci"` from the local mirror; under each runtime `exec curl --version`, exit codes,
//! stdin, a signal's 128+N, the hostname, only `lo` with network isolation, `CapEff` 0 /
//! `NoNewPrivs` 1 / `Seccomp` 2 inside, a denied `mount`, a missing command's 127, `enter` on a
//! terminal, `exec --root`; concurrent sessions that join a running one, and `stop`; a snapshot
//! round trip (`commit`, `diff`, `restore`) on the same store layers.
//!
//! Runs in the root pass (it switches users with `runuser`; the users come from
//! `scripts/test-all`). One environment per user, shared by every check.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use karapace_tests::{Karapace, Mirror, TestDir, UserDir, switching_users};

/// The curl environment of issue 5, on the `oci` backend, with resource limits; `mount` for the
/// denied mount.
const MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["curl", "mount"]

[runtime]
backend = "oci"
network_isolation = true

# Not enforced (no cgroup of the session's own), but a runtime must not fail on them.
[runtime.resource_limits]
memory_limit_mb = 4096
cpu_shares = 512
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

    // Refused by the kernel inside, as the tools' own messages say — not a session that never
    // started (which fails too).
    let mount = k.exec("c", &["mount", "-t", "tmpfs", "none", "/mnt"]);
    assert!(!mount.success(), "{who}: mount inside must fail");
    assert!(
        mount
            .stderr_str()
            .contains("mount: /mnt: permission denied"),
        "{who}: {}",
        mount.stderr_str()
    );
    let unshare = k.exec("c", &["unshare", "--mount", "true"]);
    assert!(!unshare.success(), "{who}: unshare inside must fail");
    assert!(
        unshare.stderr_str().contains("unshare: unshare failed"),
        "{who}: {}",
        unshare.stderr_str()
    );
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

    // The workload sees neither the helper's nor the runtime's files through /proc: the init
    // process (pid 1, whose root is the host's file system as its mount namespace shows it)
    // stays dumpable so that later sessions can join, and keeps one capability, permitted
    // only, that no workload has. Checked once the init has confined itself, for a plain and
    // for a `--root` workload (which has the package managers' capabilities).
    for root in [false, true] {
        let mut args = vec!["exec"];
        if root {
            args.push("--root");
        }
        args.extend([
            "c",
            "--",
            "sh",
            "-c",
            "for i in $(seq 200); do grep -q '^CapPrm:.*0000000000080000' /proc/1/status && break; \
             sleep 0.05; done; \
             for f in root cwd; do ls /proc/1/$f/ >/dev/null 2>&1 && echo open-$f; done; readlink /proc/1/fd/0 >/dev/null 2>&1 && echo open-fd; \
             cat /proc/1/environ >/dev/null 2>&1 && echo open-environ; \
             grep -E '^CapPrm:' /proc/1/status",
        ]);
        let peek = k.ok(&args).stdout_str();
        assert!(!peek.contains("open-"), "{who} (--root {root}): {peek}");
        assert_eq!(
            status_field(&peek, "CapPrm"),
            "0000000000080000",
            "{who}: the init keeps CAP_SYS_PTRACE only"
        );
    }

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

/// Ends an environment's sessions when a check failed (they would outlive the test).
struct StopOnPanic<'a>(&'a Karapace, &'a str);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.run(&["stop", self.1]);
        }
    }
}

/// Starts `argv` in the environment as a background session (its output discarded).
fn spawn_session(k: &Karapace, command: &[&str]) -> std::process::Child {
    spawn_session_of(k, "c", command)
}

fn spawn_session_of(k: &Karapace, env: &str, command: &[&str]) -> std::process::Child {
    let mut line = vec!["exec", env, "--"];
    line.extend(command);
    let (mut cmd, shown) = k.command(&line);
    // Its errors are kept (a session that fails in the background is otherwise only seen as a
    // file that never appears); `spawn_running` shows them.
    let errors = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(session_errors(k))
        .unwrap();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errors)
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"))
}

/// A session of `c` started in the background, once it has written `marker`; started again,
/// once, if youki could not start it (`karapace_tests::runner::YOUKI_SEAL_FAILURE`).
fn spawn_running(k: &Karapace, who: &str, marker: &str, command: &[&str]) -> std::process::Child {
    spawn_running_again(k, who, marker, command, true)
}

fn spawn_running_again(
    k: &Karapace,
    who: &str,
    marker: &str,
    command: &[&str],
    again: bool,
) -> std::process::Child {
    let said_before = std::fs::read_to_string(session_errors(k)).map_or(0, |t| t.len());
    let mut child = spawn_session(k, command);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !k.exec("c", &["test", "-e", marker]).success() {
        let said = std::fs::read_to_string(session_errors(k)).unwrap_or_default();
        if again
            && child.try_wait().unwrap().is_some()
            && said
                .get(said_before..)
                .is_some_and(|s| s.contains(karapace_tests::runner::YOUKI_SEAL_FAILURE))
        {
            eprintln!("youki could not start (its self-sealing failed); once more: {command:?}");
            return spawn_running_again(k, who, marker, command, false);
        }
        assert!(
            Instant::now() < deadline,
            "{who}: {marker} never appeared; the background sessions said:\n{said}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Where the stderr of sessions started in the background goes.
fn session_errors(k: &Karapace) -> std::path::PathBuf {
    k.store()
        .parent()
        .unwrap()
        .join("background-sessions.stderr")
}

fn wait_exit(child: &mut std::process::Child, who: &str, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(Instant::now() < deadline, "{who}: {what} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sessions of a running environment join it, as on the namespace backend: a second session
/// sees the first one's writes to the writable layer and its `/tmp`, the same hostname and
/// isolated network, and is confined the same way, with its init out of the workload's reach;
/// the first may end while later ones run, and a third then joins the second.
fn concurrent_sessions(k: &Karapace, who: &str, short_id: &str) {
    let mut first = spawn_running(
        k,
        who,
        "/tmp/first",
        &[
            "sh",
            "-c",
            "echo from-first > /var/tmp/first; echo in-run > /run/first; \
             echo in-shm > /dev/shm/first; \
             readlink /proc/self/ns/uts /proc/self/ns/ipc /proc/self/ns/net > /tmp/first-ns; \
             echo in-tmp > /tmp/first; \
             while [ ! -e /tmp/end-first ]; do sleep 0.05; done",
        ],
    );
    // Sessions left running by a failed check end with the test.
    let _stop = StopOnPanic(k, "c");
    let seen = k.ok(&[
        "exec",
        "c",
        "--",
        "sh",
        "-c",
        "cat /var/tmp/first /tmp/first /run/first /dev/shm/first /proc/sys/kernel/hostname; \
         ls /sys/class/net; \
         grep -q '^uts:\\[' /tmp/first-ns && grep -q '^net:\\[' /tmp/first-ns && \
           readlink /proc/self/ns/uts /proc/self/ns/ipc /proc/self/ns/net | cmp -s - /tmp/first-ns \
           && echo same-namespaces; \
         grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
         for i in $(seq 200); do grep -q '^CapPrm:.*0000000000080000' /proc/1/status && break; \
           sleep 0.05; done; \
         grep -E '^CapPrm:' /proc/1/status | sed 's/^/init-/'; \
         ls /proc/1/root/ >/dev/null 2>&1 && echo init-root-open; \
         ls /proc/1/cwd/ >/dev/null 2>&1 && echo init-cwd-open; \
         readlink /proc/1/fd/0 >/dev/null 2>&1 && echo init-fd-open; \
         cat /proc/1/environ >/dev/null 2>&1 && echo init-environ-open; true",
    ]);
    let text = seen.stdout_str();
    assert!(
        text.starts_with(&format!(
            "from-first\nin-tmp\nin-run\nin-shm\nkarapace-{short_id}\nlo\nsame-namespaces\n"
        )),
        "{who}: {text}"
    );
    // The joined session's init (pid 1 of its own pid namespace) has confined itself by then.
    assert_eq!(
        status_field(&text, "init-CapPrm"),
        "0000000000080000",
        "{who}: {text}"
    );
    for (field, value) in [
        ("CapEff", "0000000000000000"),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
    ] {
        assert_eq!(status_field(&text, field), value, "{who}: {text}");
    }
    assert!(
        !text.contains("-open"),
        "{who}: a joined session reaches its init: {text}"
    );
    // A second long-lived session, then the first ends: the second keeps running, and a
    // later session joins it.
    let mut second = spawn_running(
        k,
        who,
        "/tmp/second-up",
        &["sh", "-c", "touch /tmp/second-up; exec sleep 300"],
    );
    // An interactive session joins too (its runtime's console, in its own bundle directory).
    enter_on_a_terminal(k, who);
    k.ok(&["exec", "c", "--", "touch", "/tmp/end-first"]);
    let status = wait_exit(&mut first, who, "the first session");
    assert!(status.success(), "{who}: the first session: {status:?}");
    let later = k.ok(&["exec", "c", "--", "cat", "/var/tmp/first", "/tmp/second-up"]);
    assert_eq!(later.stdout_str(), "from-first\n", "{who}");
    let list = k.ok(&["list"]).stdout_str();
    assert!(list.contains("running"), "{who}: {list}");
    k.ok(&["stop", "c"]);
    let status = wait_exit(&mut second, who, "the stopped session");
    assert!(
        !status.success(),
        "{who}: a stopped session does not succeed"
    );
    let list = k.ok(&["list"]).stdout_str();
    assert!(!list.contains("running"), "{who}: {list}");
    // The environment runs again afterwards, its /tmp gone with its last session.
    k.ok(&["exec", "c", "--", "sh", "-c", "test ! -e /tmp/first"]);
}

/// The session records of environment `name` (its `env/<id>/sessions` directory).
fn sessions_dir(k: &Karapace, name: &str) -> std::path::PathBuf {
    let v = k.json(&["inspect", name, "--json"]);
    let id = v["env_id"].as_str().expect("env_id");
    k.store().join("env").join(id).join("sessions")
}

/// Copies the record of `from`'s running session into `to`'s records, as if `to` had a session
/// there; returns the copy.
fn forge_record(k: &Karapace, from: &str, to: &str) -> std::path::PathBuf {
    let src_dir = sessions_dir(k, from);
    let live = |path: &Path| -> Option<(std::ffi::OsString, Vec<u8>)> {
        let text = std::fs::read(path).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
        let pid = v.get("pid")?.as_u64()?;
        v.get("init_pid")?;
        let name = path.file_name()?.to_owned();
        Path::new(&format!("/proc/{pid}"))
            .exists()
            .then_some((name, text))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (name, text) = loop {
        let found = std::fs::read_dir(&src_dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .find_map(|e| live(&e.path()));
        if let Some(record) = found {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "no live session record of {from}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let dst_dir = sessions_dir(k, to);
    std::fs::create_dir_all(&dst_dir).expect("mkdir sessions");
    let dst = dst_dir.join(name);
    std::fs::write(&dst, text).expect("write the forged record");
    dst
}

/// The helper tells the backends' sessions apart: offered (through a record copied from the
/// other environment) a running session of the other backend to join, a session is refused and
/// says why — a namespace session must never take an `oci` init's root, which is the host's
/// file system. Both environments are root's, so the id maps alone would let either join.
fn each_backend_refuses_the_others_sessions(k: &Karapace) {
    k.ok(&["build", "--name", "n", "ns.toml"]);
    for (running, joining, why) in [
        ("c", "n", "it is an OCI runtime's session"),
        ("n", "c", "it has no OCI runtime's stage"),
    ] {
        let mut session = spawn_session_of(k, running, &["sleep", "300"]);
        let _stop = StopOnPanic(k, running);
        let forged = forge_record(k, running, joining);
        let refused = k.exec(joining, &["true"]);
        let _ = std::fs::remove_file(&forged);
        assert!(!refused.success(), "{joining} joined {running}'s session");
        assert!(
            refused.stderr_str().contains(why),
            "{joining} joining {running}: {}",
            refused.stderr_str()
        );
        k.ok(&["stop", running]);
        let _ = wait_exit(&mut session, "root", "the stopped session");
    }
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

/// A runtime older than the recursive mount options (`rro`: runc 1.1, crun 1.4) would ignore
/// them and leave mounts beneath read-only binds writable: refused before the helper runs, by
/// what the runtime says of itself. Its answer is cached by the file's identity, so a runtime
/// replaced by an older one is asked again.
fn too_old_or_unknown_runtimes_are_refused(k: &Karapace, who: &str) {
    use std::os::unix::fs::PermissionsExt;
    let dir = k.store().parent().unwrap().join("fake-oci");
    std::fs::create_dir_all(&dir).unwrap();
    // Whatever the test's umask: the core refuses a runtime in a directory others may write.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Written beside and renamed into place: a new file, as a package upgrade makes.
    let install = |name: &str, version_line: &str| {
        install_script(&dir, name, &format!("echo '{version_line}'; exit 0"));
        dir.join(name).to_str().unwrap().to_owned()
    };
    let exec_with = |runtime: &str| {
        k.clone()
            .env("KARAPACE_OCI_RUNTIME", runtime)
            .run(&["exec", "c", "--", "true"])
    };
    let runc = install("runc", "runc version 1.0.2");
    let old = exec_with(&runc);
    old.assert_code(1);
    assert!(
        old.stderr_str()
            .contains("is runc 1.0.2; karapace needs runc 1.1.0 or later"),
        "{who}: {}",
        old.stderr_str()
    );
    let crun = install("crun", "crun: unrecognized option");
    let unknown = exec_with(&crun);
    unknown.assert_code(1);
    assert!(
        unknown
            .stderr_str()
            .contains("cannot tell which release the OCI runtime"),
        "{who}: {}",
        unknown.stderr_str()
    );
    // A release new enough passes the check (and then fails as a runtime: it runs nothing).
    install("runc", "runc version 1.1.9");
    let passed = exec_with(&runc);
    assert!(!passed.success(), "{who}: the fake runtime ran a session");
    assert!(
        !passed.stderr_str().contains("karapace needs runc"),
        "{who}: {}",
        passed.stderr_str()
    );
    install("runc", "runc version 1.0.2");
    assert!(
        exec_with(&runc)
            .stderr_str()
            .contains("is runc 1.0.2; karapace needs runc 1.1.0 or later"),
        "{who}: a replaced runtime was not asked again"
    );
    // A release candidate of the first good release is not that release.
    install("runc", "runc version 1.1.0-rc.1");
    assert!(
        exec_with(&runc)
            .stderr_str()
            .contains("is runc 1.1.0 (a pre-release); karapace needs runc 1.1.0 or later"),
        "{who}: a pre-release passed"
    );
    // A file named runc that is an old crun is not runc 1.1.
    install("runc", "crun version 1.2");
    assert!(
        exec_with(&runc)
            .stderr_str()
            .contains("it says it is crun, not runc"),
        "{who}: another runtime's answer was taken"
    );

    // Asked once per file: the answer is cached (a runtime that counts its `--version`s).
    // The count file is the test's (root's), one the user's runtime may append to.
    let count = dir.join("asked");
    std::fs::write(&count, "").unwrap();
    std::fs::set_permissions(&count, std::fs::Permissions::from_mode(0o666)).unwrap();
    install_script(
        &dir,
        "runc",
        &format!(
            "echo x >> '{}'; echo 'runc version 1.1.9'; exit 0",
            count.display()
        ),
    );
    for _ in 0..2 {
        assert!(
            !exec_with(&runc)
                .stderr_str()
                .contains("karapace needs runc")
        );
    }
    let asked = std::fs::read_to_string(&count).unwrap().lines().count();
    assert_eq!(
        asked, 1,
        "{who}: --version asked {asked} times for one file"
    );

    unsafe_or_stalling_runtimes_are_refused(&dir, &exec_with, who);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Asking runs the runtime, so it is bounded and comes after the helper's file checks.
fn unsafe_or_stalling_runtimes_are_refused(
    dir: &Path,
    exec_with: &dyn Fn(&str) -> karapace_tests::Outcome,
    who: &str,
) {
    use std::os::unix::fs::PermissionsExt;
    let runc = dir.join("runc").to_str().unwrap().to_owned();
    // One that another user could have replaced (here: in a directory everyone may write) is
    // refused before it runs.
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ran = open.join("ran");
    install_script(
        &open,
        "runc",
        &format!(
            "touch '{}'; echo 'runc version 1.1.9'; exit 0",
            ran.display()
        ),
    );
    let exposed = exec_with(open.join("runc").to_str().unwrap());
    exposed.assert_code(1);
    assert!(
        exposed
            .stderr_str()
            .contains("fake-oci/open is writable by group or others"),
        "{who}: {}",
        exposed.stderr_str()
    );
    assert!(!ran.exists(), "{who}: the exposed runtime was run");

    // Bounded: a runtime that never answers is given up on; one that answers but leaves a
    // process holding its output does not hold the session up.
    install_script(dir, "runc", "sleep 30");
    let slow = exec_with(&runc);
    slow.assert_code(1);
    assert!(
        slow.stderr_str().contains("did not answer within 5 s"),
        "{who}: {}",
        slow.stderr_str()
    );
    let lingerer = dir.join("lingerer");
    std::fs::write(&lingerer, "").unwrap();
    std::fs::set_permissions(&lingerer, std::fs::Permissions::from_mode(0o666)).unwrap();
    install_script(
        dir,
        "runc",
        &format!(
            "sleep 30 & echo $! > '{}'; echo 'runc version 1.0.1'; exit 0",
            lingerer.display()
        ),
    );
    let started = Instant::now();
    let lingering = exec_with(&runc);
    assert!(
        lingering
            .stderr_str()
            .contains("is runc 1.0.1; karapace needs runc 1.1.0 or later"),
        "{who}: {}",
        lingering.stderr_str()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{who}: waited for the runtime's lingering process"
    );
    // And what it left behind is killed with its process group.
    let pid = std::fs::read_to_string(&lingerer)
        .unwrap()
        .trim()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    };
    while !gone() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        gone(),
        "{who}: the runtime's `sleep 30` ({pid}) outlived the check"
    );
}

/// Puts a runtime at `<dir>/<name>` (renamed into place) that runs `on_version` for
/// `--version` and fails otherwise.
fn install_script(dir: &Path, name: &str, on_version: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = dir.join(format!(".{name}.new"));
    std::fs::write(
        &tmp,
        format!("#!/bin/sh\nif [ \"$1\" = --version ]; then {on_version}; fi\nexit 1\n"),
    )
    .unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
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
    too_old_or_unknown_runtimes_are_refused(k, who);
    for runtime in RUNTIMES {
        let k = k.clone().env("KARAPACE_OCI_RUNTIME", runtime);
        let who = format!("{who} with {runtime}");
        sessions_under(&k, &who, &short_id);
        concurrent_sessions(&k, &who, &short_id);
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
    dir.write_project_file(
        "ns.toml",
        &MANIFEST.replace("backend = \"oci\"", "backend = \"namespace\""),
    );
    each_backend_refuses_the_others_sessions(&root.clone().env("KARAPACE_OCI_RUNTIME", "crun"));
    let home = UserDir::new("oci-runtime", RANGE_USER, MANIFEST, None);
    let user = home.karapace(&mirror).env(SECRET.0, SECRET.1);
    everything(&user, RANGE_USER);
}
