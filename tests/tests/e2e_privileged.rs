//! Issue 19, end to end: Karapace on a host without unprivileged user namespaces, through a
//! `karapace-helper` installed with file capabilities (the privileged mode). The host is
//! simulated (`karapace_tests::hardened::HardenedHost`: a user namespace of the root test pass
//! in which no user namespace may be created) and the commands run there as an unprivileged
//! uid: build a real Debian environment from the image mirror, exec, `exec --root` with apt,
//! a second session joining a running one, stop, enter on a terminal, commit, restore. The
//! layers it builds are the ones the rootless mode builds for a user without subordinate ids.
//!
//! Runs in the root pass (the unprivileged pass prints why it skips); without the mirror it
//! skips, except under `CI`. The helper's hostile-caller suite is
//! `helper/tests/run-privileged.sh`.

use karapace_tests::hardened::{CALLER, CURL_MANIFEST, HardenedHost};
use karapace_tests::{Mirror, UserDir, user_exists};
use serde_json::Value;

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("JSON has no `{key}`: {v:#}"))
}

/// The status lines `key` of a `grep ^(Uid|Cap…)` output, as words.
fn status_words(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_host_without_user_namespaces_builds_and_runs_environments() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let Some(host) = HardenedHost::new("e2e", &mirror.file_url()) else {
        return;
    };
    host.write_project_file("karapace.toml", CURL_MANIFEST);

    // The simulation holds: no user namespace for anyone, and the helper says it is privileged.
    let probe = host.as_caller("unshare --user true; echo rc=$?; $K doctor --json", None);
    let out = probe.stdout_str();
    assert!(
        out.starts_with("rc=1\n"),
        "a user namespace was created: {out}"
    );
    let doctor: Value = serde_json::from_str(out.trim_start_matches("rc=1\n")).expect("doctor");
    let mode = field(&doctor, "checks")
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "mode")
        .unwrap_or_else(|| panic!("no mode check: {doctor:#}"));
    assert!(
        mode["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("privileged")),
        "{mode:#}"
    );
    assert_eq!(doctor["healthy"], true, "{doctor:#}");

    // Build: a real apt install, as the caller, with root only claimed.
    let built = host.as_caller("$K build --name pv --json", None);
    built.assert_success();
    let built_json = built.json();
    assert!(
        built.stderr_str().contains("privileged karapace-helper"),
        "{}",
        built.stderr_str()
    );

    // A session: the caller's uid, no capability, curl from the build.
    let session = host.as_caller(
        "$K exec pv -- sh -c 'curl --version | head -n 1; grep -E \"^(Uid|CapEff|CapBnd|NoNewPrivs):\" /proc/self/status'",
        None,
    );
    session.assert_success();
    let text = session.stdout_str();
    assert!(text.starts_with("curl "), "{text}");
    let me = CALLER.to_string();
    assert_eq!(status_words(&text, "Uid:"), [me.as_str(); 4], "{text}");
    assert_eq!(status_words(&text, "CapEff:"), ["0000000000000000"]);
    assert_eq!(status_words(&text, "CapBnd:"), ["0000000000000000"]);
    assert_eq!(status_words(&text, "NoNewPrivs:"), ["1"]);

    // `exec --root`: apt installs a package for the later sessions; files stay the caller's.
    let root = host.as_caller(
        "$K exec --root pv -- sh -c 'id -u; apt-get update -qq >/dev/null && apt-get install -y -qq jq >/dev/null && stat -c %u /usr/bin/jq'",
        None,
    );
    root.assert_success();
    assert_eq!(root.stdout_str(), format!("0\n{me}\n"));
    let jq = host.as_caller("$K exec pv -- jq --version", None);
    jq.assert_success();
    assert!(jq.stdout_str().starts_with("jq-"), "{}", jq.stdout_str());

    snapshots_restore_and_sessions(&host, &me);

    // The same layers as the rootless mode builds for a user whose files are all theirs.
    if user_exists("kpnorange") {
        let dir = UserDir::new("privileged-compare", "kpnorange", CURL_MANIFEST, None);
        let rootless = dir.karapace(&mirror);
        let built = rootless.json(&["build", "--name", "pv"]);
        for key in ["env_id", "base_layer", "dependency_layers"] {
            let theirs = rootless.json(&["inspect", "pv"])[key].clone();
            let ours = host.as_caller("$K inspect pv --json", None).json()[key].clone();
            assert_eq!(ours, theirs, "{key} differs from the rootless build");
        }
        assert_eq!(built["env_id"], built_json["env_id"]);
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI creates kpnorange (scripts/test-all)"
        );
    }
}

/// Snapshots (commit, break, restore), two sessions at once (the second joins the first) ended
/// by one `stop`, and `enter` on a terminal.
fn snapshots_restore_and_sessions(host: &HardenedHost, me: &str) {
    // Snapshots: commit, break, restore.
    host.as_caller("$K commit -m with-jq pv", None)
        .assert_success();
    let snapshots = host.as_caller("$K snapshots pv --json", None);
    snapshots.assert_success();
    let snapshots = snapshots.json();
    let snapshot = snapshots["snapshots"][0]["hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot hash: {snapshots:#}"))
        .to_owned();
    host.as_caller("$K exec pv -- rm /usr/bin/jq", None)
        .assert_success();
    host.as_caller(&format!("$K restore pv {snapshot}"), None)
        .assert_success();
    host.as_caller("$K exec pv -- jq --version", None)
        .assert_success();

    // Two sessions at once (the second joins the first), then stop ends both.
    let together = host.as_caller(
        "$K exec pv -- sleep 60 & first=$!; \
         for i in $(seq 100); do $K inspect pv --json | grep -q '\"state\": \"Running\"' && break; sleep 0.1; done; \
         $K exec pv -- sh -c 'echo second; ls /proc | grep -c \"^[0-9]\"'; \
         $K stop pv; wait $first; echo first=$?",
        None,
    );
    together.assert_success();
    let out = together.stdout_str();
    assert!(out.starts_with("second\n"), "{out}");
    assert!(
        out.lines().last().is_some_and(|l| l != "first=0"),
        "stop did not end the running session: {out}"
    );

    // enter, on a terminal (`script` gives it one).
    let enter = host.as_caller(
        "script -qec \"$K enter pv\" /dev/null",
        Some(b"id -u; tty; exit 3\n"),
    );
    let out = enter.stdout_str();
    assert!(out.contains(me), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
}
