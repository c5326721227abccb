//! `karapace tui` driven in a real terminal: a private tmux server runs a shell in a 100×30
//! pane, the test types into it (`send-keys`) and reads the screen (`capture-pane`). Mock-backend
//! environments, so no network is needed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BIN, Kp};

/// How long a screen may take to show what a test waits for (a loaded CI machine is slow).
const PATIENCE: Duration = Duration::from_secs(20);

/// A tmux server of this test's own (its socket in the test's directory), with one session
/// running `sh`. Killed on drop.
struct Tmux {
    socket: PathBuf,
    dir: PathBuf,
}

impl Tmux {
    fn start(dir: &Path) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
            dir: dir.to_path_buf(),
        };
        let out = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            "-s",
            "t",
            // A plain shell with a prompt the test recognises; no user start-up files.
            "env -u KARAPACE_LOG PS1='kp-test$ ' sh",
        ]);
        assert!(out.status.success(), "tmux: {}", common::stderr(&out));
        tmux.wait_for("kp-test$");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("tmux is installed (scripts/install-deps)")
    }

    /// Presses keys by tmux's names (`Enter`, `Escape`, `Down`, or a character).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend(keys);
        assert!(self.run(&args).status.success());
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        assert!(
            self.run(&["send-keys", "-t", "t", "-l", text])
                .status
                .success()
        );
    }

    /// Types a shell command line and runs it.
    fn shell(&self, line: &str) {
        self.type_text(line);
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        stdout(&self.run(&["capture-pane", "-p", "-t", "t"]))
    }

    /// The screen with its attributes as escape sequences (`capture-pane -e`).
    fn screen_with_attributes(&self) -> String {
        stdout(&self.run(&["capture-pane", "-p", "-e", "-t", "t"]))
    }

    fn show(&self, format: &str) -> String {
        stdout(&self.run(&["display-message", "-p", "-t", "t", format]))
            .trim()
            .to_owned()
    }

    fn alternate_screen(&self) -> bool {
        self.show("#{alternate_on}") == "1"
    }

    /// Waits until the screen shows all of `needles`; returns it.
    fn wait_for_all(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {needles:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&self, needle: &str) -> String {
        self.wait_for_all(&[needle])
    }

    /// Waits until the screen no longer shows `needle`; returns it.
    fn wait_without(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if !screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen still shows {needle:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `karapace tui` on `store` from the pane's shell, recording the terminal's modes
    /// before and after it (`stty -g`), its pid and its exit status.
    fn start_tui(&self, store: &Path) {
        self.start_tui_with(store, "");
    }

    /// [`Tmux::start_tui`] with `env` (`NAME=value …`) in the UI's environment.
    fn start_tui_with(&self, store: &Path, env: &str) {
        let d = self.dir.display();
        self.shell("clear");
        self.shell(&format!(
            "stty -g > {d}/stty.before; {env} sh -c 'echo $$ > {d}/tui.pid; exec {BIN} --store {} tui'; \
             echo TUI-EXIT=$?; stty -g > {d}/stty.after",
            store.display()
        ));
        self.wait_for("Environments (");
        assert!(self.alternate_screen(), "the UI is on the alternate screen");
    }

    fn tui_pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.dir.join("tui.pid")).expect("tui.pid");
        text.trim().parse().expect("a pid")
    }

    /// Checks that the UI has exited with `code` and left the terminal as it found it: the
    /// normal screen with the shell's prompt, the same terminal modes.
    fn assert_restored(&self, code: i32) {
        let screen = self.wait_for(&format!("TUI-EXIT={code}"));
        let after = self.dir.join("stty.after");
        let deadline = Instant::now() + PATIENCE;
        while !after.exists() {
            assert!(Instant::now() < deadline, "stty never ran after the UI");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(!self.alternate_screen(), "still on the alternate screen");
        assert!(screen.contains("kp-test$"), "no shell prompt:\n{screen}");
        assert!(
            !screen.contains("Environments ("),
            "the UI's screen is left over:\n{screen}"
        );
        let before = std::fs::read_to_string(self.dir.join("stty.before")).expect("stty.before");
        let after = std::fs::read_to_string(after).expect("stty.after");
        assert_eq!(before, after, "terminal modes changed (raw mode left on?)");
        std::fs::remove_file(self.dir.join("stty.after")).expect("rm stty.after");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A store with `web`, `db` and an unnamed environment, and a tmux server in the test's
/// directory.
fn setup() -> (Kp, Tmux, [String; 3]) {
    let kp = Kp::new();
    let web = kp.build_mock("web.toml", &["pkg-web"], Some("web"));
    let db = kp.build_mock("db.toml", &["pkg-db"], Some("db"));
    let unnamed = kp.build_mock("u.toml", &["pkg-u"], None);
    let tmux = Tmux::start(kp.dir.path());
    (kp, tmux, [web, db, unnamed])
}

#[test]
fn list_search_detail_and_quit_leave_the_terminal_as_it_was() {
    let (kp, tmux, [web, db, unnamed]) = setup();
    tmux.start_tui(&kp.store());
    let screen = tmux.wait_for_all(&["Environments (3/3)", "SHORT_ID", "ENV_ID"]);
    // At 100 columns a row shows the short id and as much of the env_id as fits.
    let row = |id: &str| {
        let short = &id[..12];
        screen
            .find(&format!("{short} "))
            .unwrap_or_else(|| panic!("{short} listed:\n{screen}"))
    };
    // Sorted by name: db, web, then the unnamed one.
    assert!(row(&db) < row(&web) && row(&web) < row(&unnamed));

    tmux.type_text("/WE");
    tmux.wait_for_all(&["Environments (1/3)", "/WE"]);
    tmux.keys(&["Enter"]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for_all(&["env_id:      ", "snapshots: none", "diff: no drift"]);
    assert!(screen.contains(&format!("env_id:      {web}")), "{screen}");
    assert!(screen.contains("policy_layer: "), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.wait_for("Environments (1/3)");
    tmux.keys(&["Escape"]);
    tmux.wait_for("Environments (3/3)");

    tmux.keys(&["?"]);
    tmux.wait_for("any key closes this help");
    tmux.keys(&["q"]);
    tmux.wait_without("any key closes this help");
    assert!(
        tmux.alternate_screen(),
        "q closes the help, it does not quit"
    );

    tmux.keys(&["q"]);
    tmux.assert_restored(0);
}

#[test]
fn rename_and_destroy_with_confirmation() {
    let (kp, tmux, [web, _db, _]) = setup();
    tmux.start_tui(&kp.store());
    tmux.wait_for("Environments (3/3)");
    // db, web, unnamed: web is the second row.
    tmux.keys(&["j", "n"]);
    tmux.wait_for("rename web to:");
    tmux.type_text("site");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&format!("renamed {} \u{2192} 'site'", &web[..12]));
    assert_eq!(kp.json(&["inspect", &web])["name"], "site");

    // A name the engine refuses is reported, escaped, and nothing changes.
    tmux.keys(&["n"]);
    tmux.type_text("bad name");
    tmux.keys(&["Enter"]);
    tmux.wait_for("error: invalid environment name 'bad name'");
    tmux.keys(&["n"]);
    tmux.type_text("other");
    tmux.keys(&["Escape"]);
    tmux.wait_for("rename of site cancelled");
    assert_eq!(kp.json(&["inspect", &web])["name"], "site");

    tmux.keys(&["d"]);
    tmux.wait_for("destroy site? y destroys it");
    tmux.keys(&["n"]);
    tmux.wait_for("destroy of site cancelled");
    assert_eq!(kp.json(&["list"]).as_array().map(Vec::len), Some(3));

    tmux.keys(&["d"]);
    tmux.wait_for("destroy site?");
    tmux.keys(&["y"]);
    let screen = tmux.wait_for_all(&["destroyed environment site", "Environments (2/2)"]);
    assert!(!screen.contains(&web[..12]), "{screen}");
    let list = kp.json(&["list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert!(
        list.as_array()
            .into_iter()
            .flatten()
            .all(|e| e["env_id"] != web.as_str())
    );

    tmux.keys(&["q"]);
    tmux.assert_restored(0);
}

#[test]
fn freeze_archive_and_commit_report_their_results() {
    let (kp, tmux, [_, db, _]) = setup();
    tmux.start_tui(&kp.store());
    tmux.wait_for("Environments (3/3)");
    tmux.keys(&["c"]);
    let screen = tmux.wait_for("committed snapshot ");
    assert!(screen.contains("for db"), "{screen}");
    tmux.keys(&["f"]);
    tmux.wait_for("frozen environment db");
    assert_eq!(kp.json(&["inspect", &db])["state"], "Frozen");
    tmux.keys(&["e"]);
    tmux.wait_for("error: environment 'db' is frozen and cannot be entered");
    assert!(tmux.alternate_screen());
    tmux.keys(&["a"]);
    tmux.wait_for("archived environment db");
    tmux.keys(&["a"]);
    tmux.wait_for("error: cannot archive environment 'db': it is archived");
    tmux.keys(&["Enter"]);
    tmux.wait_for_all(&["state:       archived", "snapshots: 1"]);
    tmux.keys(&["q"]);
    tmux.assert_restored(0);
}

#[test]
fn sigterm_sighup_and_sigint_restore_the_terminal() {
    let (kp, tmux, _) = setup();
    for (signal, name) in [
        (nix::sys::signal::Signal::SIGTERM, 15),
        (nix::sys::signal::Signal::SIGHUP, 1),
        (nix::sys::signal::Signal::SIGINT, 2),
    ] {
        tmux.start_tui(&kp.store());
        // Mid-prompt, too: the signal is not a key for the prompt.
        tmux.keys(&["n"]);
        tmux.wait_for("rename ");
        let pid = nix::unistd::Pid::from_raw(tmux.tui_pid());
        nix::sys::signal::kill(pid, signal).expect("kill");
        tmux.assert_restored(128 + name);
    }
}

#[test]
fn changes_made_elsewhere_show_up_without_a_key() {
    let (kp, tmux, [web, _, _]) = setup();
    tmux.start_tui(&kp.store());
    tmux.wait_for("Environments (3/3)");
    let new = kp.build_mock("new.toml", &["pkg-new"], Some("fresh"));
    tmux.wait_for_all(&["Environments (4/4)", &new[..12], "fresh"]);
    kp.ok(&["rename", &web, "renamed-elsewhere"]);
    tmux.wait_for("renamed-elsewhere");
    kp.ok(&["freeze", "fresh"]);
    tmux.wait_for("frozen");
    kp.ok(&["destroy", "fresh"]);
    let screen = tmux.wait_for("Environments (3/3)");
    assert!(!screen.contains(&new[..12]));
    tmux.keys(&["q"]);
    tmux.assert_restored(0);
}

/// `e` hands the terminal to `karapace enter` and takes it back. On the mock backend `enter` runs
/// nothing: it prints the login shell it would start, and the UI is back at once.
#[test]
fn e_enters_the_environment_and_comes_back() {
    let (kp, tmux, [_, _db, _]) = setup();
    tmux.start_tui(&kp.store());
    tmux.wait_for("Environments (3/3)");
    tmux.keys(&["e"]);
    tmux.wait_for_all(&["Environments (3/3)", "left environment db (exit status 0)"]);
    assert!(tmux.alternate_screen());
    // Keys reach the UI again.
    tmux.keys(&["?"]);
    tmux.wait_for("any key closes this help");
    // Esc and q sent at once would read as Alt-q, as from any terminal.
    tmux.keys(&["Escape"]);
    tmux.wait_without("any key closes this help");
    tmux.keys(&["q"]);
    tmux.assert_restored(0);
    // What `enter` printed went to the normal screen, which is back.
    let screen = tmux.wait_for("mock-enter: /bin/sh -c");
    assert!(screen.contains("bash -l"), "{screen}");
}

#[test]
fn a_hostile_file_name_in_the_diff_is_shown_escaped() {
    let (kp, tmux, [_, db, _]) = setup();
    let upper = kp.upper(&db);
    std::fs::write(upper.join("evil\u{1b}]2;pwned\u{7}\u{1b}[2J"), b"x").expect("hostile file");
    tmux.start_tui(&kp.store());
    tmux.wait_for("Environments (3/3)");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("diff: 1 change");
    assert!(
        screen.contains("+ evil\\x1b]2;pwned\\x07\\x1b[2J"),
        "shown escaped:\n{screen}"
    );
    assert_ne!(tmux.show("#{pane_title}"), "pwned", "the title was not set");
    tmux.keys(&["q"]);
    tmux.assert_restored(0);
}

#[test]
fn json_is_refused_and_no_terminal_is_an_error() {
    let kp = Kp::new();
    let out = kp.run(&["tui", "--json"]);
    assert_eq!(common::code(&out), 1);
    assert!(common::stderr(&out).contains("JSON output is not supported for 'tui'"));
    // stdin is /dev/null here.
    let out = kp.run(&["tui"]);
    assert_eq!(common::code(&out), 2, "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("needs a terminal"));
}

/// The parameters of every SGR sequence (`ESC [ … m`) in `screen` (from `capture-pane -e`).
fn sgr_parameters(screen: &str) -> Vec<u32> {
    screen
        .split("\x1b[")
        .skip(1)
        .filter_map(|seq| {
            let end = seq.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
            seq[end..].starts_with('m').then(|| &seq[..end])
        })
        .flat_map(|params| params.split(';').filter_map(|p| p.parse().ok()))
        .collect()
}

/// Whether `screen` sets a colour: a foreground or background SGR parameter.
fn has_colour(screen: &str) -> bool {
    sgr_parameters(screen)
        .iter()
        .any(|p| matches!(p, 30..=38 | 40..=48 | 90..=97 | 100..=107))
}

#[test]
fn no_color_turns_colours_off() {
    let (kp, tmux, _) = setup();
    tmux.start_tui(&kp.store());
    tmux.wait_for("Environments (3/3)");
    assert!(
        has_colour(&tmux.screen_with_attributes()),
        "colours by default"
    );
    tmux.keys(&["q"]);
    tmux.assert_restored(0);
    tmux.start_tui_with(&kp.store(), "NO_COLOR=1");
    tmux.wait_for("Environments (3/3)");
    let screen = tmux.screen_with_attributes();
    assert!(!has_colour(&screen), "no colour with NO_COLOR:\n{screen:?}");
    assert!(
        sgr_parameters(&screen).contains(&7),
        "the selection in reverse video"
    );
    tmux.keys(&["q"]);
    tmux.assert_restored(0);
}

/// `core/examples/tui_panic.rs`, which `cargo test` builds beside the test binaries.
fn panic_example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let example = profile_dir.join("examples/tui_panic");
    assert!(
        example.is_file(),
        "{} is missing: cargo test builds it (or: cargo build -p karapace --example tui_panic)",
        example.display()
    );
    example
}

#[test]
fn a_panic_gives_the_terminal_back_and_its_message_reaches_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::start(dir.path());
    let d = dir.path().display();
    tmux.shell(&format!(
        "stty -g > {d}/stty.before; {}; echo TUI-EXIT=$?; stty -g > {d}/stty.after",
        panic_example().display()
    ));
    tmux.wait_for("PANIC-TEST-UP");
    assert!(tmux.alternate_screen());
    tmux.keys(&["x"]);
    // The message was written after the hook put stderr back on the terminal.
    tmux.assert_restored(101);
    assert!(
        tmux.screen()
            .contains("deliberate panic of the terminal-restore test"),
        "{}",
        tmux.screen()
    );
}
