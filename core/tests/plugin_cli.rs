//! `karapace plugin list/test/install/build`, run as the real binary with a private
//! `XDG_DATA_HOME` (the user plugin directory), `XDG_CACHE_HOME` and `HOME`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{BIN, code, stderr};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The committed components: the 1.1 SDK examples, a frozen 1.0 plugin, a hostile one.
fn xbps_1_1() -> PathBuf {
    repo("examples/plugin-xbps/dist/xbps.wasm")
}
fn xbps_1_0() -> PathBuf {
    repo("core/plugin-host/tests/fixtures/v1.0/xbps.wasm")
}
fn emerge() -> PathBuf {
    repo("examples/plugin-emerge/dist/emerge.wasm")
}
fn wasi_import() -> PathBuf {
    repo("plugins/hostile/dist/wasi-import.wasm")
}

/// A user with an empty home; `XDG_DATA_HOME` elsewhere, so the plugin directory is
/// `<dir>/data/karapace/plugins`, not under the home directory.
struct User {
    dir: tempfile::TempDir,
}

impl User {
    fn new() -> User {
        User {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("data/karapace/plugins")
    }

    /// The files in the plugin directory, sorted, but for the lock installs take turns on (a
    /// file of the user's, kept for the next install).
    fn plugin_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.plugin_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != ".install.lock")
            .collect();
        names.sort();
        names
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env("HOME", &home)
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env_remove("KARAPACE_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: exit {}\n{}",
            code(&out),
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `plugin list` (exit 0 whatever failed to load): whether `name` has a row, and stderr.
    fn listed(&self, name: &str) -> (bool, String) {
        let out = self.run(&["plugin", "list"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let shown = common::stdout(&out)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name));
        (shown, stderr(&out))
    }

    /// Asserts that `plugin list` skips the plugin `name`, saying `why`.
    fn assert_skipped(&self, name: &str, why: &str) {
        let (shown, err) = self.listed(name);
        assert!(!shown, "{name} is still loaded:\n{err}");
        assert!(err.contains(why), "expected {why:?} in:\n{err}");
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts that `out` exited with `expected` and said `needle` on stderr.
fn assert_exit(out: &Output, expected: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(code(out), expected, "{err}");
    assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
}

#[test]
fn plugin_install_checks_the_component_and_copies_it_into_the_xdg_plugin_directory() {
    let user = User::new();
    // Refused before anything is copied: it imports WASI.
    let out = user.run(&["plugin", "install", s(&wasi_import())]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("resolver plugins must import nothing"),
        "{err}"
    );
    assert!(
        err.contains("wasi-import.wasm"),
        "names the file given: {err}"
    );
    assert!(!err.contains(".install-"), "not the staging copy: {err}");
    assert!(
        user.plugin_files().is_empty(),
        "nothing installed or left behind: {:?}",
        user.plugin_files()
    );

    let out = user.ok(&["plugin", "install", s(&xbps_1_1())]);
    let dest = user.plugin_dir().join("xbps.wasm");
    assert!(
        out.contains("installed plugin xbps 0.1.0 (WIT 1.1.0)"),
        "{out}"
    );
    assert!(out.contains(s(&dest)), "{out}");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(xbps_1_1()).unwrap()
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
    assert!(
        !user.dir.path().join("home/.local").exists(),
        "XDG_DATA_HOME honoured"
    );

    // Same bytes again: nothing to do.
    let again = user.json(&["plugin", "install", s(&xbps_1_1())]);
    assert_eq!(again["status"], "unchanged");

    // Another plugin named xbps (the 1.0 build): refused without --force, kept as it was.
    let out = user.run(&["plugin", "install", s(&xbps_1_0())]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("plugin xbps is already installed at")
            && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(xbps_1_1()).unwrap()
    );
    let forced = user.json(&["plugin", "install", s(&xbps_1_0()), "--force"]);
    assert_eq!(forced["status"], "replaced");
    assert_eq!(forced["interface"], "1.0.0");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(xbps_1_0()).unwrap()
    );
    assert_eq!(
        user.plugin_files(),
        ["xbps.wasm"],
        "no temporary files left"
    );

    // The same plugin under another file name is replaced as well, never left as a duplicate.
    std::fs::copy(xbps_1_1(), user.plugin_dir().join("my-xbps.wasm")).unwrap();
    let out = user.run(&["plugin", "install", s(&xbps_1_1())]);
    assert_eq!(code(&out), 1, "xbps.wasm still holds the 1.0 build");
    user.ok(&["plugin", "install", s(&xbps_1_1()), "--force"]);
    assert_eq!(user.plugin_files(), ["xbps.wasm"]);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(xbps_1_1()).unwrap()
    );
}

/// The committed xbps component with its name changed to `xbpz` (the same length, so nothing
/// else moves): a plugin of another name with the same detect path, `usr/bin/xbps-install`.
fn renamed_xbps(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(xbps_1_1()).unwrap();
    let at = bytes
        .windows(24)
        .position(|w| w == b"xbpsusr/bin/xbps-install")
        .expect("the name beside the detect path in the example's data");
    bytes[at..at + 4].copy_from_slice(b"xbpz");
    let path = dir.join("xbpz.wasm");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn plugin_install_refuses_a_plugin_that_would_take_over_another_plugins_images() {
    let user = User::new();
    user.ok(&["plugin", "install", s(&xbps_1_1())]);
    let xbpz = renamed_xbps(user.dir.path());
    let listed = user.ok(&["plugin", "test", s(&xbpz)]);
    assert!(listed.contains("plugin xbpz 0.1.0"), "{listed}");

    // Another name, the same images: the two would contend for them (within a directory the
    // first file name wins; in a directory of higher priority, the newcomer would).
    let out = user.run(&["plugin", "install", s(&xbpz)]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("plugin xbpz detects usr/bin/xbps-install, as the user xbps plugin does")
            && err.contains("--force"),
        "{err}"
    );
    assert!(!user.plugin_dir().join("xbpz.wasm").exists());

    let forced = user.run(&["plugin", "install", s(&xbpz), "--force"]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    assert!(
        stderr(&forced).contains("note: it detects usr/bin/xbps-install, as the user xbps"),
        "{}",
        stderr(&forced)
    );
    // Installed once, the same bytes again change nothing and need no --force.
    let again = user.json(&["plugin", "install", s(&xbpz)]);
    assert_eq!(again["status"], "unchanged");
    assert_eq!(again["overlaps"][0]["plugin"], "xbps");
    assert_eq!(again["overlaps"][0]["source"], "user");
    assert_eq!(again["overlaps"][0]["path"], "usr/bin/xbps-install");
    // A plugin without overlaps says so.
    let emerge = user.json(&["plugin", "install", s(&emerge())]);
    assert_eq!(emerge["overlaps"], serde_json::json!([]));
}

#[test]
fn plugin_installs_take_turns_so_the_second_sees_the_first() {
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::PermissionsExt;
    let user = User::new();
    let xbpz = renamed_xbps(user.dir.path());
    let dir = user.plugin_dir();
    std::fs::create_dir_all(&dir).unwrap();
    // Another install's turn, held here: while it lasts, this one must wait, then see what
    // the other one installed (xbps, whose images xbpz would take) and refuse.
    let lock = std::fs::File::create(dir.join(".install.lock")).unwrap();
    let held = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let mut waiting = user
        .cmd(&["plugin", "install", s(&xbpz)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It waits with the lock file open (and has loaded nothing yet): seen in /proc, so a slow
    // start cannot pass for waiting.
    let fds = format!("/proc/{}/fd", waiting.id());
    let holds_lock = || {
        std::fs::read_dir(&fds)
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.ends_with(".install.lock")))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !holds_lock() && std::time::Instant::now() < deadline {
        assert!(
            waiting.try_wait().unwrap().is_none(),
            "install ended without waiting for the one holding the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(holds_lock(), "install never opened the lock file");
    // An install takes about a second unhindered: still there well after that, it waits.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "install did not wait for the one holding the lock"
    );
    std::fs::copy(xbps_1_1(), dir.join("xbps.wasm")).unwrap();
    drop(held);
    let out = waiting.wait_with_output().unwrap();
    assert_exit(&out, 1, "as the user xbps plugin does");
    assert!(!dir.join("xbpz.wasm").exists());
    assert_eq!(user.plugin_files(), ["xbps.wasm"]);
    // The test made the lock file with its umask: install made it the user's alone.
    assert_eq!(
        std::fs::metadata(dir.join(".install.lock"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Only the user's own lock file, linked nowhere else, is locked.
    let lock = dir.join(".install.lock");
    let other_name = user.dir.path().join("elsewhere");
    std::fs::hard_link(&lock, &other_name).unwrap();
    let out = user.run(&["plugin", "install", s(&emerge())]);
    assert_exit(&out, 1, "is not a lock file of yours");
    std::fs::remove_file(&other_name).unwrap();
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(&lock, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        let out = user.run(&["plugin", "install", s(&emerge())]);
        assert_exit(&out, 1, "is not a lock file of yours");
        nix::unistd::chown(&lock, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    }
    user.ok(&["plugin", "install", s(&emerge())]);
}

/// A plugin named as a built-in takes its place in every build: not without --force.
#[test]
fn plugin_install_replaces_a_built_in_only_when_asked_to() {
    let user = User::new();
    let apt_1_0 = repo("core/plugin-host/tests/fixtures/v1.0/apt.wasm");
    let out = user.run(&["plugin", "install", s(&apt_1_0)]);
    assert_exit(
        &out,
        1,
        "plugin apt would replace the built-in apt plugin in your builds; pass --force",
    );
    assert!(!user.plugin_dir().join("apt.wasm").exists());
    let forced = user.json(&["plugin", "install", s(&apt_1_0), "--force"]);
    assert_eq!(forced["status"], "installed");
    assert_eq!(forced["replaces"], "built-in");
    assert_eq!(
        forced["overlaps"],
        serde_json::json!([]),
        "its own name is no overlap"
    );
    // Installed, it is the user's apt: the same bytes again need nothing more.
    let again = user.json(&["plugin", "install", s(&apt_1_0)]);
    assert_eq!(again["status"], "unchanged");
    assert_eq!(again["replaces"], serde_json::Value::Null);
}

#[test]
fn plugin_install_never_follows_or_blocks_on_what_is_at_the_destination() {
    let user = User::new();
    std::fs::create_dir_all(user.plugin_dir()).unwrap();
    let dest = user.plugin_dir().join("xbps.wasm");
    // A link to the very same bytes is still not the installed plugin: refused, then replaced.
    let elsewhere = user.dir.path().join("elsewhere.wasm");
    std::fs::copy(xbps_1_1(), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &dest).unwrap();
    let out = user.run(&["plugin", "install", s(&xbps_1_1())]);
    assert_exit(&out, 1, "already installed at");
    user.ok(&["plugin", "install", s(&xbps_1_1()), "--force"]);
    assert!(!dest.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(
        std::fs::read(&elsewhere).unwrap(),
        std::fs::read(xbps_1_1()).unwrap()
    );

    // A FIFO there: compared without opening it for a writer that never comes.
    std::fs::remove_file(&dest).unwrap();
    nix::unistd::mkfifo(&dest, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let mut child = user
        .cmd(&["plugin", "install", s(&xbps_1_1())])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("plugin install blocked on a FIFO at its destination");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 1, "refused: not the plugin's content");
}

#[test]
fn plugins_that_other_users_may_write_are_not_loaded_and_nothing_is_installed_among_them() {
    use std::os::unix::fs::PermissionsExt;
    let user = User::new();
    user.ok(&["plugin", "install", s(&xbps_1_1())]);
    let dir = user.plugin_dir();
    let dest = dir.join("xbps.wasm");

    // A file every user may write: skipped, with the reason.
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o666)).unwrap();
    user.assert_skipped("xbps", "not loaded: writable by every user (mode 666)");
    // The same bytes installed again are written again, with the plugin's mode: "unchanged"
    // would leave builds skipping it.
    let again = user.json(&["plugin", "install", s(&xbps_1_1())]);
    assert_eq!(again["status"], "replaced");
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(user.listed("xbps").0);
    // Group-writable: only for the caller's own private group (root's and kptest's in CI; a
    // developer whose primary group is shared sees it refused, which is the rule too).
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (shown, err) = user.listed("xbps");
    let own_group = nix::unistd::Group::from_gid(nix::unistd::getegid())
        .ok()
        .flatten()
        .zip(
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten(),
        )
        .is_some_and(|(g, u)| g.name == u.name);
    assert_eq!(shown, own_group, "{err}");
    if nix::unistd::geteuid().is_root() {
        // A shared group (Debian's `users`), and another owner.
        nix::unistd::chown(&dest, None, Some(nix::unistd::Gid::from_raw(100))).unwrap();
        user.assert_skipped("xbps", "writable by group 100, which is not yours alone");
        nix::unistd::chown(
            &dest,
            Some(nix::unistd::Uid::from_raw(4242)),
            Some(nix::unistd::Gid::from_raw(0)),
        )
        .unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();
        user.assert_skipped("xbps", "owned by uid 4242, neither you nor root");
        nix::unistd::chown(&dest, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    }
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(user.listed("xbps").0);

    // A directory above that others may write: what is below could be replaced.
    let above = dir.parent().unwrap();
    std::fs::set_permissions(above, std::fs::Permissions::from_mode(0o777)).unwrap();
    user.assert_skipped(
        "xbps",
        &format!(
            "in {}, which is writable by every user (mode 777)",
            above.display()
        ),
    );
    std::fs::set_permissions(above, std::fs::Permissions::from_mode(0o755)).unwrap();

    // The directory: nothing in it is loaded, and install refuses to put anything there.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(!user.listed("xbps").0);
    let out = user.run(&["plugin", "install", s(&emerge())]);
    assert_exit(&out, 1, "writable by every user (mode 777)");
    assert!(!dir.join("emerge.wasm").exists());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn plugin_list_shows_source_path_and_wit_version_like_doctor() {
    let user = User::new();
    user.ok(&["plugin", "install", s(&xbps_1_0())]);
    user.ok(&["plugin", "install", s(&emerge())]);
    std::fs::write(user.plugin_dir().join("broken.wasm"), b"not a component").unwrap();

    let out = user.run(&["plugin", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = common::stdout(&out);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        text.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["NAME", "VERSION", "WIT", "SOURCE", "PATH"]
    );
    assert_eq!(row("apt")[2..], ["1.1.0", "built-in", "-"]);
    let xbps = user.plugin_dir().join("xbps.wasm");
    assert_eq!(row("xbps")[2..], ["1.0.0", "user", s(&xbps)]);
    assert_eq!(row("emerge")[2], "1.1.0");
    let err = stderr(&out);
    assert!(
        err.contains("broken.wasm") && err.contains("cannot load"),
        "{err}"
    );

    let json = user.json(&["plugin", "list"]);
    let plugins = json["plugins"].as_array().unwrap();
    let names: Vec<&str> = plugins
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names[..2],
        ["emerge", "xbps"],
        "directory plugins first: {names:?}"
    );
    for builtin in ["apt", "dnf", "zypper", "pacman", "apk"] {
        assert!(names.contains(&builtin), "{names:?}");
    }
    let x = &plugins[1];
    assert_eq!(x["source"], "user");
    assert_eq!(x["interface"], "1.0.0");
    assert_eq!(x["path"], s(&xbps));
    assert_eq!(plugins[2]["source"], "built-in");
    assert!(plugins[2]["path"].is_null());
    assert_eq!(json["user_dir"], s(&user.plugin_dir()));
    assert_eq!(json["failures"].as_array().unwrap().len(), 1);

    // doctor says the same, with the WIT version.
    let doctor = user.json(&["doctor"]);
    let messages: Vec<&str> = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "plugins")
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert!(
        messages[0].contains(&format!("xbps 0.1.0 (user, WIT 1.0.0: {})", xbps.display()))
            && messages[0].contains("apt 1.1.0 (built-in, WIT 1.1.0)"),
        "{messages:?}"
    );
}

/// The Gentoo example: category atoms reach the plugin, the steps it asks for are shown, and
/// real `qlist -Iv` output maps back to the atoms requested.
#[test]
fn plugin_test_shows_what_the_host_would_run_and_what_it_parsed() {
    let user = User::new();
    let rootfs = user.dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("usr/bin")).unwrap();
    std::fs::write(rootfs.join("usr/bin/emerge"), "#!/bin/sh\n").unwrap();
    let fixture = repo("examples/plugin-emerge/fixtures/qlist-Iv.txt");
    let emerge = emerge();
    let args = [
        "plugin",
        "test",
        s(&emerge),
        "--detect",
        s(&rootfs),
        "--install",
        "app-editors/vim",
        "--install",
        "=dev-lang/perl-5.38.2-r3",
        "--install",
        "dev-lang/python=3.12.3-r1",
        "--parse",
        s(&fixture),
    ];
    let out = user.ok(&args);
    let expected_lines = [
        "plugin emerge 0.1.0 (WIT 1.1.0), imports nothing",
        "detect: claimed (found usr/bin/emerge)",
        "refresh: emerge --sync --quiet",
        "install: emerge --quiet --noreplace app-editors/vim '=dev-lang/perl-5.38.2-r3' '=dev-lang/python-3.12.3-r1'",
        "parsed: =dev-lang/perl-5.38.2-r3 5.38.2-r3",
        "query: qlist -Iv",
        "parsed: app-editors/vim 9.1.0366",
    ];
    for line in expected_lines {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }

    let json = user.json(&args);
    assert_eq!(json["detect"]["claimed"], true);
    assert_eq!(
        json["install_steps"][0]["argv"],
        serde_json::json!([
            "emerge",
            "--quiet",
            "--noreplace",
            "app-editors/vim",
            "=dev-lang/perl-5.38.2-r3",
            "=dev-lang/python-3.12.3-r1"
        ])
    );
    let parsed = json["parsed"].as_array().unwrap();
    assert!(
        parsed.contains(&serde_json::json!({"name": "app-editors/vim", "version": "9.1.0366"}))
    );

    // Not its image: exit 1, said plainly.
    let empty = user.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = user.run(&["plugin", "test", s(&emerge), "--detect", s(&empty)]);
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains("detect: not claimed"));

    // A name the plugin refuses is a usage error naming the plugin once.
    let out = user.run(&["plugin", "test", s(&emerge), "--install", "app editors/vim"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("emerge").count(), 1, "{err}");

    // A component that imports something never runs.
    let out = user.run(&["plugin", "test", s(&wasi_import()), "--install", "x"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("must import nothing"),
        "{}",
        stderr(&out)
    );
}

/// What cargo and rustup would read from above a crate must be the user's or root's: a file
/// another user may write is refused before any toolchain runs (no wasm toolchain needed here:
/// an unknown route is the first thing checked after it).
#[test]
fn plugin_build_refuses_cargo_and_rustup_files_others_may_write_above_the_crate() {
    use std::os::unix::fs::PermissionsExt;
    let user = User::new();
    let shared = user.dir.path().join("shared");
    let crate_dir = shared.join("project/karapace-resolver-xbps");
    std::fs::create_dir_all(crate_dir.join("src")).unwrap();
    std::fs::write(
        crate_dir.join("Cargo.toml"),
        "[package]\nname = \"karapace-resolver-xbps\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    let build = || {
        user.cmd(&["plugin", "build", s(&crate_dir)])
            .env("KARAPACE_PLUGIN_ROUTE", "none-such")
            .output()
            .unwrap()
    };
    // Nothing above the crate: the check passes and the (unknown) route is what fails.
    let out = build();
    assert_exit(&out, 2, "KARAPACE_PLUGIN_ROUTE=none-such");

    for (name, text) in [
        (
            ".cargo/config.toml",
            "[build]\nrustc-wrapper = \"/tmp/evil\"\n",
        ),
        ("Cargo.toml", "[workspace]\nmembers = [\"project/*\"]\n"),
        ("rust-toolchain.toml", "[toolchain]\npath = \"/tmp/evil\"\n"),
    ] {
        let planted = shared.join(name);
        std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
        std::fs::write(&planted, text).unwrap();
        // The user's own, writable by no one else: what any workspace or config of theirs is.
        let out = build();
        assert_eq!(code(&out), 2, "{name}: {}", stderr(&out));
        // Writable by every user: anyone's.
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
        let out = build();
        let needle = format!(
            "{} is writable by every user (mode 666): cargo or rustup would read it",
            planted.display()
        );
        assert_exit(&out, 1, &needle);
        std::fs::remove_file(&planted).unwrap();
    }
    // A `.cargo` directory others may write: what is in it could be replaced at any time.
    let dot_cargo = shared.join(".cargo");
    std::fs::write(dot_cargo.join("config.toml"), "").unwrap();
    std::fs::set_permissions(&dot_cargo, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = build();
    let needle = format!("{} is writable by every user", dot_cargo.display());
    assert_exit(&out, 1, &needle);
    std::fs::set_permissions(&dot_cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Another user's file (as root: a chown away), and a link another user made to ours.
    if nix::unistd::geteuid().is_root() {
        let planted = shared.join("rust-toolchain");
        std::fs::write(&planted, "stable\n").unwrap();
        let other = nix::unistd::Uid::from_raw(4242);
        nix::unistd::chown(&planted, Some(other), None).unwrap();
        let out = build();
        assert_exit(&out, 1, "is owned by uid 4242");
        std::fs::remove_file(&planted).unwrap();
        let link = shared.join("Cargo.toml");
        std::os::unix::fs::symlink(crate_dir.join("Cargo.toml"), &link).unwrap();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &link,
            Some(other),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let out = build();
        assert_exit(&out, 1, "is a link made by uid 4242");
    }
}

/// `plugin build` on a copy of the xbps example that depends on the SDK by version (as a
/// crate outside a Karapace checkout would): the embedded SDK is used, the component is made
/// in-process and loads. Needs a wasm toolchain (rustup's target or Debian's rustc-web); skips
/// without one unless CI=true.
#[test]
fn plugin_build_makes_a_component_without_a_karapace_checkout() {
    let debian = Path::new("/usr/bin/wasm-ld").exists()
        && Path::new("/usr/lib/rustlib/src/rust/library").is_dir();
    let rustup = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"));
    if !debian && !rustup {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have a wasm toolchain (scripts/install-deps)"
        );
        eprintln!("skipped: no wasm toolchain");
        return;
    }
    if std::env::var_os("CI").is_some() && !nix::unistd::Uid::effective().is_root() {
        // CI builds it once, in the root run: the same code, and a minute of CI time.
        eprintln!("skipped: built in the root run");
        return;
    }
    let user = User::new();
    let crate_dir = user.dir.path().join("karapace-resolver-xbps");
    std::fs::create_dir_all(crate_dir.join("src")).unwrap();
    std::fs::copy(
        repo("examples/plugin-xbps/src/lib.rs"),
        crate_dir.join("src/lib.rs"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(repo("examples/plugin-xbps/Cargo.toml")).unwrap();
    let manifest = manifest.replace(
        "karapace-plugin-sdk = { path = \"../../plugins/sdk\" }",
        "karapace-plugin-sdk = \"1\"",
    );
    assert!(manifest.contains("karapace-plugin-sdk = \"1\""));
    std::fs::write(crate_dir.join("Cargo.toml"), manifest).unwrap();

    let started = std::time::Instant::now();
    let mut cmd = user.cmd(&["plugin", "build", s(&crate_dir), "--json"]);
    // The user's registry cache (not the private HOME), its own target dir, nothing of the
    // test's own cargo run.
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
    {
        cmd.env("CARGO_HOME", home);
    }
    if let Some(rustup) = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))
    {
        cmd.env("RUSTUP_HOME", rustup);
    }
    for var in [
        "CARGO_BUILD_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    // A target dir kept between runs (std and wit-bindgen build once: ≈ 2 min cold on the
    // Debian route, seconds after), per user; the crate itself is new every run.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("plugin-build-{}", nix::unistd::Uid::effective()));
    if std::fs::create_dir_all(&target).is_ok() {
        cmd.env("CARGO_TARGET_DIR", &target);
    } else {
        cmd.env_remove("CARGO_TARGET_DIR");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "exit {}\n{}",
        code(&out),
        stderr(&out)
    );
    eprintln!("plugin build took {:.1} s", started.elapsed().as_secs_f64());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let built = crate_dir.join("dist/xbps.wasm");
    assert_eq!(json["path"], s(&built));
    assert_eq!(json["name"], "xbps");
    assert_eq!(json["interface"], "1.1.0");
    assert!(json["bytes"].as_u64().unwrap() < 200_000);

    // The component works through the host and installs.
    let out = user.ok(&["plugin", "test", s(&built), "--install", "bash=5.2.021_1"]);
    assert!(
        out.lines()
            .any(|l| l == "install: xbps-install -y bash-5.2.021_1"),
        "{out}"
    );
    user.ok(&["plugin", "install", s(&built)]);
    // The SDK came from the binary, into the cache.
    assert!(user.dir.path().join("cache/karapace/plugin-sdk").is_dir());
}
