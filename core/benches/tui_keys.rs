//! Is `karapace tui` responsive (< 50 ms per key) on a store with 200 environments?
//!
//! ```text
//! cargo bench -p karapace --bench tui_keys        # KARAPACE_BENCH_ENVS (default 200)
//! ```
//!
//! Builds 200 mock-backend environments with the CLI into a temporary store, then runs the real
//! `karapace tui` on a pseudo-terminal of its own (100×30; `setsid -c`, so it is the UI's
//! controlling terminal) and, for each key, measures from writing the key's bytes to the end of
//! the frame that answers it. Every frame the UI draws ends with the synchronized-output
//! sequence `ESC [ ? 2026 l`, which this program watches for on the terminal's output. So a
//! time covers everything the user waits for: reading the key, the engine's work (a `list` of
//! all environments after every action; `inspect`, `snapshots` and `diff` for the detail view),
//! drawing, and writing the frame. Keys that change the store are answered at once (the status
//! line says what is being done) and the change runs on the UI's worker thread: their time is
//! that answer; the change itself costs what the CLI baselines of `freeze` and `archive` show.
//! Its outcome and the store watcher's redraws come as later frames, which are waited out and
//! not counted.
//!
//! Baselines, measured in the same run on the same store: `karapace list`, `karapace inspect` and
//! `karapace diff` as separate processes (what the same information costs from the CLI).
//! This is a benchmark, not a test: a missed target is reported, not a failure.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_karapace");
/// The issue's target for one key.
const TARGET: Duration = Duration::from_millis(50);
/// The end of every frame the UI draws (crossterm's `EndSynchronizedUpdate`).
const FRAME_END: &[u8] = b"\x1b[?2026l";
/// Longer than the store watcher's debounce (50 ms of quiet, at most 250 ms): after it, no
/// frame of an earlier key is still coming.
const SETTLE: Duration = Duration::from_millis(400);

fn main() {
    let count: usize = std::env::var("KARAPACE_BENCH_ENVS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");

    let started = Instant::now();
    for i in 0..count {
        build(&store, &work, i);
    }
    eprintln!(
        "tui_keys: built {count} mock environments in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mid = format!("env-{:03}", count / 2);
    // Drift for the detail view to show, written where a session's writes land (the mock backend
    // runs nothing).
    let out = command(&store, &["inspect", &mid, "--json"])
        .output()
        .expect("run karapace");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect --json");
    let env_id = meta["env_id"].as_str().expect("env_id");
    let etc = store.join("env").join(env_id).join("upper/etc");
    std::fs::create_dir_all(&etc).expect("upper/etc");
    std::fs::write(etc.join("motd"), "hi\n").expect("upper/etc/motd");

    let mut rows: Vec<Row> = Vec::new();
    for (what, args) in [
        ("`karapace list` (200 environments)", vec!["list"]),
        ("`karapace inspect <name>`", vec!["inspect", &mid]),
        ("`karapace diff <name>`", vec!["diff", &mid]),
    ] {
        let samples = (0..20).map(|_| time_cli(&store, &args)).collect();
        rows.push(Row::new(what, "baseline: a CLI process", samples));
    }

    // The same store mutations from the CLI (environments 100–119, which the UI's part below
    // does not touch): their time includes the store's durable writes, as the UI's do.
    let (mut freeze, mut archive) = (Vec::new(), Vec::new());
    for i in 100..120 {
        let name = format!("env-{i:03}");
        freeze.push(time_cli(&store, &["freeze", &name]));
        archive.push(time_cli(&store, &["archive", &name]));
    }
    rows.push(Row::new(
        "`karapace freeze <name>`",
        "baseline: a CLI process",
        freeze,
    ));
    rows.push(Row::new(
        "`karapace archive <name>`",
        "baseline: a CLI process",
        archive,
    ));

    let startups = (0..5)
        .map(|_| {
            let ui = Ui::start(&store);
            let first = ui.first_frame;
            ui.quit();
            first
        })
        .collect();
    rows.push(Row::new(
        "start-up",
        "process start to the first frame",
        startups,
    ));
    let mut ui = Ui::start(&store);
    let keys = measure_keys(&mut ui);
    rows.extend(keys);
    ui.quit();

    print_table(count, &rows);
}

/// Builds environment `i` (mock backend, its own package so its own `env_id`), named `env-NNN`.
fn build(store: &Path, work: &Path, i: usize) {
    let manifest = work.join(format!("m{i}.toml"));
    std::fs::write(
        &manifest,
        format!(
            "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[system]\npackages = [\"pkg-{i}\"]\n[runtime]\nbackend = \"mock\"\n"
        ),
    )
    .expect("manifest");
    let name = format!("env-{i:03}");
    cli(
        store,
        &["build", &manifest.to_string_lossy(), "--name", &name],
    );
}

fn command(store: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--store")
        .arg(store)
        .args(args)
        .env_remove("KARAPACE_LOG")
        .stdin(Stdio::null());
    c
}

fn cli(store: &Path, args: &[&str]) {
    let out = command(store, args).output().expect("run karapace");
    assert!(
        out.status.success(),
        "karapace {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn time_cli(store: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let status = command(store, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run karapace");
    let elapsed = t.elapsed();
    assert!(status.success(), "karapace {args:?} failed");
    elapsed
}

/// The UI on a pseudo-terminal, and a thread that reports the time each frame ended.
struct Ui {
    child: Child,
    master: std::fs::File,
    frames: Receiver<Instant>,
    first_frame: Duration,
}

impl Ui {
    fn start(store: &Path) -> Ui {
        let size = nix::pty::Winsize {
            ws_row: 30,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup pty"));
        let t = Instant::now();
        let child = Command::new(setsid())
            .arg("-c")
            .arg(BIN)
            .arg("--store")
            .arg(store)
            .arg("tui")
            .env_remove("KARAPACE_LOG")
            .env_remove("NO_COLOR")
            .env("TERM", "xterm-256color")
            .stdin(slave(&pty.slave))
            .stdout(slave(&pty.slave))
            .stderr(slave(&pty.slave))
            .spawn()
            .expect("start karapace tui");
        drop(pty.slave);
        let master = std::fs::File::from(pty.master);
        let mut reader = master.try_clone().expect("dup pty master");
        let (tx, frames) = channel();
        std::thread::spawn(move || {
            // Keep reading whatever comes (a full pty would block the UI), and note when a
            // frame's end arrives; the sequence may straddle two reads.
            let mut tail: Vec<u8> = Vec::new();
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                tail.extend_from_slice(&buf[..n]);
                let ends = tail
                    .windows(FRAME_END.len())
                    .filter(|w| *w == FRAME_END)
                    .count();
                for _ in 0..ends {
                    if tx.send(now).is_err() {
                        return;
                    }
                }
                let keep = tail.len().min(FRAME_END.len() - 1);
                let cut = if ends > 0 {
                    // Everything up to the last frame end is counted.
                    let last = tail
                        .windows(FRAME_END.len())
                        .rposition(|w| w == FRAME_END)
                        .map_or(0, |p| p + FRAME_END.len());
                    last.max(tail.len() - keep)
                } else {
                    tail.len() - keep
                };
                tail.drain(..cut);
            }
        });
        let first = frames
            .recv_timeout(Duration::from_secs(30))
            .expect("the UI drew its first frame");
        let mut ui = Ui {
            child,
            master,
            frames,
            first_frame: first - t,
        };
        ui.settle();
        ui
    }

    /// Waits until no frame has come for [`SETTLE`], discarding them.
    fn settle(&mut self) {
        loop {
            match self.frames.recv_timeout(SETTLE) {
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => panic!("the UI went away"),
            }
        }
    }

    /// Sends `bytes` (one key) and returns the time to the end of the next frame.
    fn key(&mut self, bytes: &[u8]) -> Duration {
        while self.frames.try_recv().is_ok() {}
        let t = Instant::now();
        self.master.write_all(bytes).expect("write key");
        let frame = self
            .frames
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no frame after key {bytes:?}"));
        frame.saturating_duration_since(t)
    }

    fn quit(mut self) {
        let _ = self.master.write_all(b"q");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setsid() -> PathBuf {
    ["/usr/bin/setsid", "/bin/setsid"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("setsid (util-linux)")
}

/// Times each key of the UI, as a user would press them.
fn measure_keys(ui: &mut Ui) -> Vec<Row> {
    const DOWN: &[u8] = b"\x1b[B";
    let mut rows = Vec::new();
    let mut samples = |key: &str, what: &str, list: Vec<Duration>| {
        rows.push(Row::new(key, what, list));
    };

    samples(
        "`j` / `↓`",
        "next row",
        (0..50)
            .map(|i| ui.key(if i % 2 == 0 { b"j" } else { DOWN }))
            .collect(),
    );
    samples(
        "`k`",
        "previous row",
        (0..50).map(|_| ui.key(b"k")).collect(),
    );
    let (mut end, mut home) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        end.push(ui.key(b"G"));
        home.push(ui.key(b"g"));
    }
    samples("`G`", "last row", end);
    samples("`g`", "first row", home);

    let (mut typed, mut clear) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        ui.key(b"/");
        for c in b"env-1" {
            typed.push(ui.key(&[*c]));
        }
        ui.key(b"\r");
        clear.push(ui.key(b"\x1b"));
    }
    samples("`/` + typing", "filter the 200 rows as you type", typed);
    samples("`Esc`", "clear the search", clear);

    samples(
        "`s`",
        "next sort order",
        (0..30).map(|_| ui.key(b"s")).collect(),
    );
    samples(
        "`S`",
        "reverse the sort",
        (0..20).map(|_| ui.key(b"S")).collect(),
    );
    // Back to name order, ascending (the sort cycles through three keys).
    ui.key(b"g");

    samples(
        "`r`",
        "refresh: `Engine::list` of the store",
        (0..20)
            .map(|_| {
                let d = ui.key(b"r");
                ui.settle();
                d
            })
            .collect(),
    );

    let (mut open, mut back) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        open.push(ui.key(b"\r"));
        back.push(ui.key(b"\x1b"));
    }
    samples("`Enter`", "detail: `inspect` + `snapshots` + `diff`", open);
    samples("`Esc` (detail)", "back to the list", back);

    let mut help = Vec::new();
    for _ in 0..20 {
        help.push(ui.key(b"?"));
        ui.key(b"x");
    }
    samples("`?`", "help", help);

    // Mutations, each on its own environment (sorted by name, row i is env-i), the store
    // watcher's redraw waited out after each.
    let freeze = mutate(ui, 0, |_| vec![b"f".to_vec()], b"j");
    ui.key(b"g");
    let archive = mutate(ui, 0, |_| vec![b"a".to_vec()], b"j");
    let commit = mutate(ui, 20, |_| vec![b"c".to_vec()], b"j");
    // A new name that keeps the order: env-040 becomes env-040-r.
    let rename = mutate(
        ui,
        40,
        |row| {
            let mut keys = vec![b"n".to_vec()];
            keys.extend(format!("env-{row:03}-r").bytes().map(|b| vec![b]));
            keys.push(b"\r".to_vec());
            keys
        },
        b"j",
    );
    samples("`f`", "freeze, answered (runs on the worker)", freeze);
    samples("`a`", "archive, answered (runs on the worker)", archive);
    samples("`c`", "commit, answered (runs on the worker)", commit);
    samples(
        "`n` … `Enter`",
        "rename, answered (time of `Enter`)",
        rename,
    );
    ui.key(b"G");
    let destroy = mutate(ui, 0, |_| vec![b"d".to_vec(), b"y".to_vec()], b"G");
    samples("`d` `y`", "destroy, answered (time of `y`)", destroy);
    rows
}

/// Twenty times: moves to row `first + i` (it is there already), presses `keys(row)` and times
/// the last of them, waits out the watcher's redraw, then presses `next`.
fn mutate(
    ui: &mut Ui,
    first: usize,
    keys: impl Fn(usize) -> Vec<Vec<u8>>,
    next: &[u8],
) -> Vec<Duration> {
    (0..20)
        .map(|i| {
            let keys = keys(first + i);
            let Some((last, before)) = keys.split_last() else {
                return Duration::ZERO;
            };
            for k in before {
                ui.key(k);
            }
            let d = ui.key(last);
            ui.settle();
            ui.key(next);
            d
        })
        .collect()
}

struct Row {
    key: String,
    what: String,
    samples: Vec<Duration>,
}

impl Row {
    fn new(key: &str, what: &str, mut samples: Vec<Duration>) -> Row {
        samples.sort();
        Row {
            key: key.to_owned(),
            what: what.to_owned(),
            samples,
        }
    }

    fn median(&self) -> Duration {
        self.samples[self.samples.len() / 2]
    }

    fn p90(&self) -> Duration {
        self.samples[(self.samples.len() * 9 / 10).min(self.samples.len() - 1)]
    }

    fn max(&self) -> Duration {
        self.samples[self.samples.len() - 1]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn print_table(count: usize, rows: &[Row]) {
    println!(
        "\n`karapace tui` on {count} mock environments, 100×30 pseudo-terminal; key → end of the frame answering it\n"
    );
    // The machine is shared: say how busy it was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!("load average at the end: {}\n", load.join(" "));
    }
    println!("| key | what it runs | n | median | p90 | max | < 50 ms |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let verdict = if r.what.starts_with("baseline") || r.key == "start-up" {
            "–".to_owned()
        } else if r.max() < TARGET {
            "yes".to_owned()
        } else if r.median() < TARGET {
            "median yes, max no".to_owned()
        } else {
            "**no**".to_owned()
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {verdict} |",
            r.key,
            r.what,
            r.samples.len(),
            ms(r.median()),
            ms(r.p90()),
            ms(r.max())
        );
    }
}
