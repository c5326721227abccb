//! Shell completion for real: the script `completions bash` prints, sourced in bash and asked
//! as bash asks at a <TAB>, offers the store's environment names and, after `restore <env>`, that
//! environment's snapshot hashes; a store that does not exist offers none and stays absent.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Kp};

/// The candidates bash's completion of `karapace <words…>` (last word being completed) gets.
fn complete(kp: &Kp, words: &[&str]) -> Vec<String> {
    let bin_dir = Path::new(BIN).parent().expect("bin dir");
    let script = r#"
source <(karapace completions bash) || exit 3
COMP_WORDS=(karapace "$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMP_TYPE=9
_clap_complete_karapace karapace "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .args(words)
        .env("PATH", path)
        .env("HOME", kp.dir.path())
        .current_dir(kp.work())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_environment_names_and_snapshot_hashes() {
    let kp = Kp::new();
    let store = kp.store();
    let store = store.to_str().expect("utf8");
    let alpha = kp.build_mock("a.toml", &["curl"], Some("alpha"));
    kp.build_mock("b.toml", &["git"], Some("beta"));
    std::fs::write(kp.upper(&alpha).join("work-file"), "x").expect("write upper");
    let snap = kp.json(&["commit", "-m", "first", "alpha"])["snapshot_hash"]
        .as_str()
        .expect("hash")
        .to_owned();

    assert_eq!(complete(&kp, &["verify-s"]), ["verify-store"]);
    assert_eq!(complete(&kp, &["plug"]), ["plugin"]);
    let mut actions = complete(&kp, &["plugin", ""]);
    actions.sort();
    assert_eq!(actions, ["build", "help", "install", "list", "test"]);
    let mut names = complete(&kp, &["--store", store, "exec", ""]);
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(
        complete(&kp, &["--store", store, "destroy", "al"]),
        ["alpha"]
    );
    assert_eq!(
        complete(&kp, &["--store", store, "restore", "alpha", ""]),
        [snap.as_str()]
    );
    assert_eq!(
        complete(&kp, &["--store", store, "restore", "alpha", &snap[..6]]),
        [snap.as_str()]
    );
    // beta has no snapshot: nothing of alpha's is offered for it.
    assert!(complete(&kp, &["--store", store, "restore", "beta", ""]).is_empty());

    // A store that does not exist: no candidates, no message, and it is not created.
    let missing = kp.dir.path().join("no-store");
    let missing = missing.to_str().expect("utf8");
    assert!(complete(&kp, &["--store", missing, "exec", ""]).is_empty());
    assert!(!Path::new(missing).exists());

    // The standard tool's use of the command still works: a script for each shell.
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = kp.ok(&["completions", shell]);
        assert!(out.contains("karapace"), "{shell}: {out}");
    }
}
