//! Self-checks of the test support against things that work without images: binary lookup,
//! exit codes, JSON, stdin, and the timeout that keeps a hung command from hanging CI.
//! Uses the mock backend (no namespaces), so it runs everywhere; the mock runs nothing, so the
//! process runner's own checks (codes, stdin, timeouts) run plain `sh`.

use std::process::Command;
use std::time::Duration;

use karapace_tests::{Karapace, TestDir, process};

const MOCK_MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["curl"]

[runtime]
backend = "mock"
"#;

#[test]
fn finds_the_binaries_and_reports_the_version() {
    let dir = TestDir::new("harness-version");
    let out = Karapace::new(&dir).run(&["--version"]);
    out.assert_success();
    assert!(
        out.stdout_str().starts_with("karapace "),
        "unexpected --version output\n{out}"
    );
    assert!(
        karapace_tests::helper_bin().is_some(),
        "karapace-helper is not next to {}",
        karapace_tests::karapace_bin().display()
    );
}

#[test]
fn runner_reports_codes_json_stdin_and_timeouts() {
    let dir = TestDir::new("harness-mock");
    let k = Karapace::new(&dir);
    let manifest = dir.write_project_file("karapace.toml", MOCK_MANIFEST);
    let v = k.json(&["build", &manifest.to_string_lossy()]);
    let env_id = v
        .get("env_id")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("build --json: {v:#}"))
        .to_owned();
    assert!(dir.store().is_dir(), "--store was not used");
    let out = k.exec(&env_id, &["sh", "-c", "exit 7"]);
    out.assert_success();
    assert_eq!(out.stdout_str(), "mock-exec: sh -c exit 7\n", "{out}");
    // Missing store directory for another runner: list must not create it.
    k.run(&["inspect", "no-such-env"]).assert_code(1);

    let sh = |script: &str| {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        (cmd, format!("sh -c {script}"))
    };
    let (cmd, shown) = sh("exit 7");
    process::run(cmd, shown, None, Duration::from_secs(30)).assert_code(7);
    let (cmd, shown) = sh("cat");
    let out = process::run(cmd, shown, Some(b"abc"), Duration::from_secs(30));
    out.assert_success();
    assert_eq!(out.stdout_str(), "abc", "{out}");

    let (cmd, shown) = sh("sleep 60");
    let out = process::run(cmd, shown, None, Duration::from_secs(1));
    assert!(out.timed_out, "the timeout did not fire\n{out}");
    assert!(
        out.elapsed < Duration::from_secs(15),
        "killing the process group took too long\n{out}"
    );
}
