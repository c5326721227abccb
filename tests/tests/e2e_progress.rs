//! Issue 13, item 3: what the user sees while a build installs packages. On a terminal, a
//! progress line on stderr, redrawn in place and erased when the step ends; nothing of it on
//! stdout; with `-v` the installer's raw output instead; without a terminal, no progress text;
//! a failed install names the package in the error's first line.
//!
//! Real builds from the local image mirror (`KARAPACE_TEST_MIRROR`), a real pseudo-terminal
//! (util-linux `script`). Without the mirror or `script` the tests print why and pass, except
//! under `CI`.

use karapace_tests::terminal::{OnTerminal, run_on_terminal};
use karapace_tests::{Karapace, Mirror, TestDir};

/// A package with a couple of dependencies the bare image lacks (`libmagic1`, `libmagic-mgc`),
/// so that "n of N" counts more than one.
const SMALL_MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["file"]
"#;

/// A virtual package without a chosen provider: known to the package index (so the availability
/// check lets it through), refused by apt itself.
const MISSING_PACKAGE_MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["mail-transport-agent"]
"#;

/// The pieces of a terminal transcript between carriage returns and newlines: each is one
/// state of the progress line (or one line of other output).
fn redraws(terminal: &str) -> Vec<&str> {
    terminal
        .split(['\r', '\n'])
        .map(|s| s.trim_end_matches("\x1b[K"))
        .collect()
}

fn on_terminal(k: &Karapace, dir: &TestDir, args: &[&str]) -> Option<OnTerminal> {
    let out = run_on_terminal(k, args, &dir.path().join("stdout"));
    if out.is_none() {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "CI is set but util-linux `script` is not installed"
        );
        eprintln!("skipping terminal test: util-linux `script` is not installed");
    }
    out
}

#[test]
fn a_build_on_a_terminal_shows_a_progress_line_and_keeps_stdout_clean() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let dir = TestDir::new("e2e-progress");
    let server = mirror.serve_http();
    let k = Karapace::new(&dir).image_server(server.url());
    let manifest = dir.write_project_file("karapace.toml", SMALL_MANIFEST);
    let manifest = manifest.to_string_lossy().into_owned();
    let Some(run) = on_terminal(&k, &dir, &["--json", "build", &manifest]) else {
        return;
    };
    run.outcome.assert_success();
    let terminal = run.terminal();
    let states = redraws(&terminal);

    // Both steps, each redrawn in place with `\r`.
    assert!(
        terminal.contains("\r[1/2] refreshing"),
        "the refresh step's progress line: {terminal:?}"
    );
    assert!(
        terminal.contains("\r[2/2] installing: "),
        "the install step's progress line: {terminal:?}"
    );
    // At least one package shown as "n of N" (the redraw rate may skip some states).
    let counted = states.iter().any(|s| {
        s.starts_with("[2/2] installing: ")
            && ["fetching ", "unpacking ", "setting up "]
                .iter()
                .any(|verb| s.contains(verb))
            && s.contains(" of ")
    });
    assert!(counted, "no package shown as n of N: {states:#?}");
    // Erased when the step ends, so the next line starts clean.
    let log_line = terminal
        .find("installer log: ")
        .unwrap_or_else(|| panic!("no installer log line on the terminal: {terminal:?}"));
    assert!(
        terminal[..log_line].ends_with("\r\x1b[K"),
        "the progress line is erased before what follows: {terminal:?}"
    );
    // No line of the installer's own output reaches the terminal without -v.
    assert!(
        !terminal.contains("Setting up ") && !terminal.contains("Unpacking "),
        "raw installer output on the terminal without -v: {terminal:?}"
    );

    // stdout: the result, as JSON, and nothing else.
    let json: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", run.stdout));
    assert!(json.get("env_id").is_some(), "{json}");
    for noise in ["installing", "refreshing", "\r", "\x1b"] {
        assert!(
            !run.stdout.contains(noise),
            "progress text on stdout: {:?}",
            run.stdout
        );
    }
}

#[test]
fn with_v_the_terminal_gets_the_raw_output_and_a_failure_names_the_package() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let dir = TestDir::new("e2e-progress-v");
    let server = mirror.serve_http();
    let k = Karapace::new(&dir).image_server(server.url());
    let manifest = dir.write_project_file("karapace.toml", MISSING_PACKAGE_MANIFEST);
    let manifest = manifest.to_string_lossy().into_owned();
    let Some(run) = on_terminal(&k, &dir, &["-v", "build", &manifest]) else {
        return;
    };
    run.outcome.assert_code(1);
    let terminal = run.terminal();
    assert!(
        terminal.contains("Reading package lists"),
        "-v streams the installer's output: {terminal:?}"
    );
    assert!(
        !terminal.contains("[1/2] refreshing") && !terminal.contains("[2/2] installing"),
        "no progress line with -v: {terminal:?}"
    );
    assert!(
        terminal.contains("error: package installation failed: mail-transport-agent: `apt-get"),
        "the error's first line names the package: {terminal:?}"
    );
    assert!(run.stdout.is_empty(), "nothing on stdout: {:?}", run.stdout);

    // Without a terminal (stderr a pipe): no progress text, the same error.
    let out = k.run(&["build", &manifest]);
    out.assert_code(1);
    let err = out.stderr_str();
    assert!(
        !err.contains("[1/2]") && !err.contains("[2/2]") && !err.contains('\r'),
        "progress text without a terminal: {out}"
    );
    assert!(
        err.starts_with("error: package installation failed: mail-transport-agent: ")
            || err.contains("\nerror: package installation failed: mail-transport-agent: "),
        "{out}"
    );
}
