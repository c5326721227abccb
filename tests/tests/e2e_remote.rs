//! Issue 14: a real Debian environment travels through `karapace-server` (protocol v1) on
//! 127.0.0.1 — push with a snapshot and a tag, pull into an empty store as an unprivileged user,
//! `exec` and `restore` there, `verify-store` clean; a second push uploads no blob; a push
//! without the token is refused; a blob corrupted on the server fails the pull and leaves the
//! store as it was; a pull killed with SIGKILL half-way leaves nothing listed and the next pull
//! completes.
//!
//! Runs in both passes: as root (the pull side switches to `kptest` with `runuser`) and as the
//! unprivileged user (both sides are that user).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use karapace_tests::remote::{PullSide, assert_store_clean, env_ids};
use karapace_tests::{Karapace, Mirror, TestDir, server_bin};

const MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["curl"]
"#;

const TOKEN: &str = "e2e-remote-token-0123456789abcdef";

/// `karapace-server` on 127.0.0.1, killed on drop.
struct Server {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server on an ephemeral port with a read-write token; reads the port it reports.
fn start_server(dir: &Path, name: &str) -> Server {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).expect("data dir");
    let tokens = dir.join(format!("{name}.tokens"));
    std::fs::write(&tokens, format!("read-write {TOKEN}\n")).expect("token file");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let child = Command::new(server_bin())
        .args(["--bind", "127.0.0.1", "--port", "0", "--data-dir"])
        .arg(&data)
        .arg("--token-file")
        .arg(&tokens)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn karapace-server");
    // In the guard at once: it kills and reaps the server on every path, panics included.
    let mut server = Server {
        child,
        url: String::new(),
        data,
    };
    let stderr = server.child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("karapace-server did not report its address"));
        if let Some(port) = port_in(&line) {
            // Keep draining its log so the server never blocks on a full pipe.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            server.url = format!("http://127.0.0.1:{port}");
            return server;
        }
    }
}

/// The port of the first `127.0.0.1:<port>` in a log line.
fn port_in(line: &str) -> Option<u16> {
    let at = line.find("127.0.0.1:")? + "127.0.0.1:".len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|p| *p != 0)
}

/// The largest file under `dir` (the base layer's tar, on the server).
fn largest_file(dir: &Path) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let m = e.metadata().expect("stat");
            if m.is_dir() {
                stack.push(e.path());
            } else if best.as_ref().is_none_or(|(len, _)| m.len() > *len) {
                best = Some((m.len(), e.path()));
            }
        }
    }
    best.expect("a file").1
}

#[test]
fn a_debian_environment_travels_through_karapace_server() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let dir = TestDir::new("remote");
    dir.write_project_file("karapace.toml", MANIFEST);
    let k = Karapace::new(&dir)
        .image_server(mirror.file_url())
        .env("KARAPACE_REMOTE_TOKEN", TOKEN);
    let env = k.json(&["build", "karapace.toml", "--name", "web"])["env_id"]
        .as_str()
        .expect("env_id")
        .to_owned();
    k.exec(
        "web",
        &["sh", "-c", "echo travelled > /etc/karapace-remote-note"],
    )
    .assert_success();
    let snapshot = k.json(&["commit", "web"])["snapshot_hash"]
        .as_str()
        .expect("snapshot_hash")
        .to_owned();
    k.exec("web", &["rm", "/etc/karapace-remote-note"])
        .assert_success();

    let server = start_server(dir.path(), "data");
    push_twice(&dir, &mirror, &k, &env, &server.url);
    pull_and_run(&mirror, &env, &snapshot, &server.url);
    corrupt_blob_fails_cleanly(&mirror, &env, &server);
    killed_pull_resumes(&mirror, &env, &server.url);
}

/// Push without the token (refused), with it (everything), again (no blob).
fn push_twice(dir: &TestDir, mirror: &Mirror, k: &Karapace, env: &str, remote: &str) {
    let refused = Karapace::new(dir)
        .image_server(mirror.file_url())
        .run(&["push", "web", "--tag", "web@v1", "--remote", remote]);
    refused.assert_code(1);
    assert!(
        refused.stderr_str().contains("401")
            || refused.stderr_str().to_lowercase().contains("auth"),
        "{}",
        refused.stderr_str()
    );
    let pushed = k.json(&["push", "web", "--tag", "web@v1", "--remote", remote]);
    assert_eq!(pushed["env_id"], env);
    assert_eq!(pushed["tag"], "web@v1");
    assert!(
        pushed["objects_pushed"].as_u64().unwrap_or(0) >= 5,
        "{pushed}"
    );
    assert!(
        pushed["layers_pushed"].as_u64().unwrap_or(0) >= 3,
        "{pushed}"
    );
    let again = k.json(&["push", "web", "--tag", "web@v1", "--remote", remote]);
    assert_eq!(again["objects_pushed"], 0, "{again}");
    assert_eq!(again["layers_pushed"], 0, "{again}");
    // The standard tool's lines, which scripts parse: all skipped the second time.
    let skipped = again["objects_skipped"].as_u64().unwrap_or(0)
        + again["layers_skipped"].as_u64().unwrap_or(0);
    let text = k
        .ok(&["push", "web", "--tag", "web@v1", "--remote", remote])
        .stdout_str();
    assert_eq!(
        text,
        format!(
            "pushed {} (0 objects, 0 layers; {skipped} skipped)\ntagged as 'web@v1'\n",
            &env[..12]
        )
    );
}

/// Pull into an empty store, as the unprivileged user; run, restore, verify.
fn pull_and_run(mirror: &Mirror, env: &str, snapshot: &str, remote: &str) {
    let side = PullSide::new("remote-pull", MANIFEST);
    let p = side.karapace(mirror).env("KARAPACE_REMOTE_TOKEN", TOKEN);
    let pulled = p.json(&["pull", "web@v1", "--remote", remote]);
    assert_eq!(pulled["env_id"], env, "{pulled}");
    assert_eq!(env_ids(&p), vec![env.to_owned()]);
    // Pulling again fetches no layer; the line is the standard tool's.
    let text = p.ok(&["pull", "web@v1", "--remote", remote]).stdout_str();
    let counts = text
        .strip_prefix(&format!("pulled {} (", &env[..12]))
        .and_then(|rest| rest.strip_suffix(" skipped)\n"))
        .unwrap_or_else(|| panic!("{text:?}"));
    let words: Vec<&str> = counts.split(' ').collect();
    assert_eq!(words.len(), 5, "{text:?}");
    assert_eq!(
        (words[1], words[2], words[3]),
        ("objects,", "0", "layers;"),
        "{text:?}"
    );
    assert!(
        words[0].parse::<u64>().is_ok() && words[4].parse::<u64>().is_ok(),
        "{text:?}"
    );
    let out = p.exec(env, &["curl", "--version"]);
    out.assert_success();
    assert!(
        out.stdout_str().starts_with("curl "),
        "{}",
        out.stdout_str()
    );
    let snaps = p.json(&["snapshots", env]);
    assert_eq!(snaps["snapshots"][0]["restore_hash"], snapshot, "{snaps}");
    p.ok(&["restore", env, snapshot]);
    let note = p.exec(env, &["cat", "/etc/karapace-remote-note"]);
    note.assert_success();
    assert_eq!(note.stdout_str(), "travelled\n");
    assert_store_clean(&p);
    let unknown = p.run(&["pull", "web@v2", "--remote", remote]);
    unknown.assert_code(1);
    assert!(
        unknown.stderr_str().contains("web@v2"),
        "{}",
        unknown.stderr_str()
    );
}

/// A blob corrupted on the server: the pull fails and the store stays as it was.
fn corrupt_blob_fails_cleanly(mirror: &Mirror, env: &str, server: &Server) {
    let side = PullSide::new("remote-corrupt", MANIFEST);
    let c = side.karapace(mirror).env("KARAPACE_REMOTE_TOKEN", TOKEN);
    let victim = largest_file(&server.data.join("objects"));
    let original = std::fs::read(&victim).expect("read blob");
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&victim, &bytes).expect("corrupt blob");
    let failed = c.run(&["pull", env, "--remote", &server.url]);
    std::fs::write(&victim, &original).expect("repair blob");
    failed.assert_code(1);
    assert!(
        failed.stderr_str().contains("not valid"),
        "{}",
        failed.stderr_str()
    );
    assert!(env_ids(&c).is_empty());
    assert_store_clean(&c);
}

/// Killed half-way: nothing listed, verify clean, and the next pull completes.
fn killed_pull_resumes(mirror: &Mirror, env: &str, remote: &str) {
    let side = PullSide::new("remote-killed", MANIFEST);
    let kk = side.karapace(mirror).env("KARAPACE_REMOTE_TOKEN", TOKEN);
    let (mut cmd, _) = kk.command(&["pull", env, "--remote", remote]);
    // Its own process group: in the root pass the pull runs under `runuser`, which does not
    // pass SIGKILL on; killing the group kills karapace itself.
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn pull");
    let staging = side.store().join("store/staging");
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut seen_download = false;
    while Instant::now() < deadline && !seen_download {
        // A temp object in the pull's staging directory: a download is in progress.
        seen_download = std::fs::read_dir(&staging)
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| {
                std::fs::read_dir(d.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|f| f.file_name().to_string_lossy().starts_with("object"))
            });
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    assert!(
        seen_download,
        "the pull never started downloading an object"
    );
    assert!(env_ids(&kk).is_empty(), "a killed pull lists nothing");
    assert_store_clean(&kk);
    let resumed = kk.json(&["pull", env, "--remote", remote]);
    assert_eq!(resumed["env_id"], env, "{resumed}");
    kk.exec(env, &["curl", "--version"]).assert_success();
    assert_store_clean(&kk);
}
