//! Desktop entries for `[gui] apps` of a real Debian environment (`x11-apps`): written at build
//! for the app the environment has, a warning and no entry for one it lacks, shown by `inspect`,
//! rewritten at rebuild, removed at destroy; the `Exec` line, parsed as a desktop would parse it,
//! starts the program inside the environment — from a store whose path holds every character the
//! Desktop Entry format treats specially.
//!
//! Runs in both passes: as root and as the unprivileged user.

use std::path::{Path, PathBuf};
use std::process::Command;

use karapace_tests::{Karapace, Mirror, TestDir};

const MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["x11-apps"]

[gui]
apps = ["xeyes", "not-installed"]
"#;

/// A store path a shell or a desktop would misread if it were not quoted: spaces, both quotes,
/// `$`, a backtick, `%` (a field code), `;`, `#`.
const HOSTILE_STORE: &str = "st ore 'q' \"d\" $HOME `id` %f ;#";

/// The arguments of an `Exec` value, as the Desktop Entry Specification says to read them:
/// string unescaping, then quoting, then `%%` → `%`.
fn parse_exec(value: &str) -> Vec<String> {
    let mut unescaped = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('s') => unescaped.push(' '),
                Some('n') => unescaped.push('\n'),
                Some('t') => unescaped.push('\t'),
                Some('r') => unescaped.push('\r'),
                Some(other) => {
                    if other != '\\' {
                        unescaped.push('\\');
                    }
                    unescaped.push(other);
                }
                None => unescaped.push('\\'),
            }
        } else {
            unescaped.push(c);
        }
    }
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut started = false;
    let mut chars = unescaped.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                started = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        q => cur.push(q),
                    }
                }
            }
            ' ' => {
                if started || !cur.is_empty() {
                    args.push(std::mem::take(&mut cur).replace("%%", "%"));
                    started = false;
                }
            }
            c => cur.push(c),
        }
    }
    if started || !cur.is_empty() {
        args.push(cur.replace("%%", "%"));
    }
    args
}

fn key<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn entry_path(data: &Path, env: &str, app: &str) -> PathBuf {
    data.join("applications")
        .join(format!("karapace-{}-{app}.desktop", &env[..12]))
}

#[test]
fn gui_apps_get_desktop_entries_that_run_inside_the_environment() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let dir = TestDir::new("desktop");
    dir.write_project_file("karapace.toml", MANIFEST);
    let data = dir.path().join("data");
    let store = dir.path().join(HOSTILE_STORE);
    let k = Karapace::with_paths(&store, &dir.cache(), &dir.project())
        .image_server(mirror.file_url())
        .env("XDG_DATA_HOME", &data);

    let built = k.ok(&["build", "--name", "eyes"]);
    let env = k.json(&["inspect", "eyes"])["env_id"]
        .as_str()
        .expect("env_id")
        .to_owned();
    let err = built.stderr_str();
    assert!(
        err.contains("warning: [gui] app 'not-installed' is not in environment"),
        "{err}"
    );
    let entry = entry_path(&data, &env, "xeyes");
    assert!(err.contains("desktop entry: "), "{err}");
    assert!(!entry_path(&data, &env, "not-installed").exists());
    let text = std::fs::read_to_string(&entry).expect("the xeyes entry");
    assert!(text.starts_with("[Desktop Entry]\n"), "{text}");
    assert_eq!(
        key(&text, "Name"),
        Some(format!("xeyes (Karapace {})", &env[..12]).as_str())
    );
    assert_eq!(key(&text, "X-Karapace-EnvId"), Some(env.as_str()));
    assert_eq!(key(&text, "Type"), Some("Application"));
    // Exactly one group, no key twice: nothing in the store path spilled into the file.
    assert_eq!(text.matches('[').count(), 1, "{text}");
    let keys: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    let mut unique = keys.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "{text}");

    // The command line a desktop would run, with one more argument: it is xeyes, inside the
    // environment (the host has no xeyes), complaining that there is no display to open.
    let argv = parse_exec(key(&text, "Exec").expect("Exec"));
    let store_text = store.to_str().expect("utf8");
    assert_eq!(
        argv[1..],
        ["--store", store_text, "exec", env.as_str(), "--", "xeyes"],
        "{text}"
    );
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .arg("-display")
        .arg(":4242")
        .env("XDG_CACHE_HOME", dir.cache())
        .env_remove("DISPLAY")
        .output()
        .expect("run the Exec line");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Can't open display") && stderr.contains(":4242"),
        "xeyes ran and looked for the display: {stderr}"
    );

    // inspect lists the entry, in text and JSON.
    let shown = k.ok(&["inspect", "eyes"]).stdout_str();
    assert!(
        shown
            .lines()
            .any(|l| l == format!("desktop_entry: {}", entry.display())),
        "{shown}"
    );
    let v = k.json(&["inspect", "eyes"]);
    assert_eq!(
        v["desktop_entries"],
        serde_json::json!([entry.to_string_lossy()])
    );

    // Everyday errors and options of running something in it (not desktop-specific, but the
    // environment is here): a missing command, and --workdir.
    let missing = k.exec("eyes", &["no-such-command", "--x"]);
    missing.assert_code(127);
    assert!(
        missing
            .stderr_str()
            .contains("error: no-such-command: command not found in eyes"),
        "{}",
        missing.stderr_str()
    );
    let pwd = k.ok(&["exec", "-w", "/usr/share", "eyes", "--", "pwd"]);
    assert_eq!(pwd.stdout_str(), "/usr/share\n");
    k.run(&["exec", "--workdir", "relative", "eyes", "--", "pwd"])
        .assert_code(2);

    // A rebuild writes the entry anew (same lock, same environment); destroy removes it.
    std::fs::remove_file(&entry).expect("remove");
    k.ok(&["rebuild"]);
    assert!(entry.is_file(), "rebuild rewrote the entry");
    k.ok(&["destroy", "eyes"]);
    assert!(!entry.exists(), "destroy removed the entry");
    let left: Vec<_> = std::fs::read_dir(data.join("applications"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // The store is not the test directory's own (its path is the point of the test): empty it
    // here, so an unprivileged run leaves no tree of its subordinate ids behind.
    k.ok(&["gc"]);
}
