//! Issue 12, end to end: a hostile image served from a local image server, hostile manifests and
//! hostile workloads, through the real `karapace` and `karapace-helper` binaries. Runs as root and
//! as an unprivileged user (scripts/test-all).
//!
//! The image is a busybox root file system made here (no Debian mirror needed) and served under
//! the `debian/bookworm` alias by a test server on 127.0.0.1, so an ordinary manifest builds it.

use std::path::{Path, PathBuf};
use std::process::Command;

use karapace_images::testing::{MirrorImage, TestServer, write_mirror};
use karapace_tests::{Karapace, TestDir};

const MANIFEST: &str = "manifest_version = 1\n\n[base]\nimage = \"debian/bookworm\"\n";

/// A busybox rootfs with the given extra symlinks (path inside → target), as a plain tar.
fn busybox_image(dir: &Path, links: &[(&str, &str)]) -> Vec<u8> {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "root", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    let list = Command::new("/usr/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    for (path, target) in links {
        std::os::unix::fs::symlink(target, root.join(path)).unwrap();
    }
    let out = Command::new("tar")
        .args(["-C"])
        .arg(&root)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    assert!(out.status.success(), "tar failed");
    out.stdout
}

/// Serves `archive` as `debian/bookworm` for this machine's architecture.
fn serve(dir: &Path, archive: &[u8]) -> TestServer {
    let mirror = dir.join("mirror");
    let arch = karapace_images::host_arch().expect("known architecture");
    write_mirror(
        &mirror,
        &[MirrorImage {
            distro: "debian",
            release: "bookworm",
            arch,
            build: "20261203_00:00",
            archive,
            published_sha256: None,
        }],
        true,
    )
    .expect("write mirror");
    TestServer::serve(&mirror).expect("serve mirror")
}

/// A home directory of the test's own (policy files go there), holding `repo/karapace.toml`.
fn fake_home(dir: &TestDir) -> PathBuf {
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config/karapace")).unwrap();
    std::fs::create_dir_all(home.join("repo")).unwrap();
    home
}

/// `<home>/repo/karapace.toml` with no packages and no mounts.
fn plain_manifest(home: &Path) -> PathBuf {
    let path = home.join("repo/karapace.toml");
    std::fs::write(&path, MANIFEST).unwrap();
    path
}

fn built_env(k: &Karapace, manifest: &Path) -> (String, String) {
    let out = k.ok(&["--json", "build", &manifest.to_string_lossy()]);
    let v = out.json();
    let id = v["env_id"].as_str().expect("env_id").to_owned();
    (id, out.stderr_str())
}

/// Finding 1: an image whose `etc/passwd` and `etc/group` are links to host files must not
/// bring those files into the environment (the core used to read them on the host).
#[test]
fn image_links_never_make_the_core_read_host_files() {
    let dir = TestDir::new("hostile-links");
    let secret = dir.path().join("host-secret");
    std::fs::write(&secret, "HOST-SECRET-KEY-MATERIAL\n").unwrap();
    let secret_path = secret.to_string_lossy().into_owned();
    let archive = busybox_image(
        dir.path(),
        &[
            ("etc/passwd", &secret_path),
            ("etc/group", "/proc/self/environ"),
        ],
    );
    let server = serve(dir.path(), &archive);
    let k = Karapace::new(&dir)
        .image_server(server.url())
        .env("KARAPACE_PROBE_SECRET", "ENV-SECRET-VALUE");
    let (env, _) = built_env(&k, &dir.write_project_file("karapace.toml", MANIFEST));
    let out = k.exec(
        &env,
        &["sh", "-c", "cat /etc/passwd /etc/group 2>/dev/null; true"],
    );
    out.assert_success();
    let seen = out.stdout_str();
    assert!(!seen.contains("HOST-SECRET"), "host file leaked: {out}");
    assert!(
        !seen.contains("ENV-SECRET"),
        "core's environment leaked: {out}"
    );
}

/// Finding 3: a cloned repository's `../:/workspace` cannot widen what the policy shares of the
/// home directory; `:ro` is honoured; build says which host paths the environment sees.
#[test]
fn manifest_mounts_obey_the_home_policy() {
    let dir = TestDir::new("hostile-mounts");
    let home = fake_home(&dir);
    std::fs::write(home.join("dotfile"), "in the home\n").unwrap();
    std::fs::create_dir_all(home.join("repo/data")).unwrap();
    let archive = busybox_image(dir.path(), &[]);
    let server = serve(dir.path(), &archive);
    let k = Karapace::new(&dir)
        .image_server(server.url())
        .env("HOME", &home);
    let policy = home.join(".config/karapace/policy.toml");
    let manifest = home.join("repo/karapace.toml");
    std::fs::write(
        &manifest,
        format!("{MANIFEST}\n[mounts]\nwork = \"../:/workspace\"\n"),
    )
    .unwrap();

    std::fs::write(&policy, "home = \"none\"\n").unwrap();
    let (env, stderr) = built_env(&k, &manifest);
    assert!(
        stderr.contains("sessions of this environment will be refused")
            && stderr.contains("home directory"),
        "build should warn about the refused mount: {stderr}"
    );
    let out = k.exec(&env, &["cat", "/workspace/dotfile"]);
    out.assert_code(1);
    assert!(
        out.stderr_str().contains("home directory") && !out.stdout_str().contains("in the home"),
        "{out}"
    );

    std::fs::write(&policy, "home = \"read-only\"\n").unwrap();
    let out = k.exec(
        &env,
        &[
            "sh",
            "-c",
            "cat /workspace/dotfile; echo x > /workspace/written && echo WROTE",
        ],
    );
    assert!(out.stdout_str().contains("in the home"), "{out}");
    assert!(!out.stdout_str().contains("WROTE"), "{out}");
    assert!(
        !home.join("written").exists(),
        "wrote into a read-only home"
    );

    // Default policy (home read-write): `:ro` in the manifest is honoured, and build lists it.
    std::fs::remove_file(&policy).unwrap();
    std::fs::write(
        &manifest,
        format!("{MANIFEST}\n[mounts]\ndata = \"./data:/data:ro\"\n"),
    )
    .unwrap();
    let (env, stderr) = built_env(&k, &manifest);
    let data = std::fs::canonicalize(home.join("repo/data")).unwrap();
    assert!(
        stderr.contains(&format!("{} -> /data (read-only)", data.display())),
        "build should list the shared host paths: {stderr}"
    );
    let out = k.exec(&env, &["sh", "-c", "echo x > /data/f && echo WROTE"]);
    assert!(!out.stdout_str().contains("WROTE"), "{out}");
    assert!(!home.join("repo/data/f").exists());
}

/// The session bus, the SSH agent and the display are handles to host code: their variables do
/// not reach a session that was not granted them.
#[test]
fn host_handles_are_not_forwarded_without_a_grant() {
    let dir = TestDir::new("hostile-vars");
    let home = fake_home(&dir);
    let archive = busybox_image(dir.path(), &[]);
    let server = serve(dir.path(), &archive);
    let k = Karapace::new(&dir)
        .image_server(server.url())
        .env("HOME", &home)
        .env("DISPLAY", ":0")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/0/bus")
        .env("SSH_AUTH_SOCK", "/tmp/ssh-agent.sock")
        .env("WAYLAND_DISPLAY", "wayland-0")
        .env("XAUTHORITY", "/tmp/xauth");
    let (env, _) = built_env(&k, &plain_manifest(&home));
    let out = k.exec(&env, &["env"]);
    out.assert_success();
    for var in [
        "DISPLAY=",
        "DBUS_SESSION_BUS_ADDRESS=",
        "SSH_AUTH_SOCK=",
        "WAYLAND_DISPLAY=",
        "XAUTHORITY=",
    ] {
        assert!(!out.stdout_str().contains(var), "{var} reached exec: {out}");
    }
}

/// Finding 8: names a workload chooses reach the user's terminal only with their control
/// characters made visible (`diff`), while `--json` keeps them exact.
#[test]
fn terminal_escapes_from_workload_names_are_made_visible() {
    let dir = TestDir::new("hostile-escapes");
    let home = fake_home(&dir);
    let archive = busybox_image(dir.path(), &[]);
    let server = serve(dir.path(), &archive);
    let k = Karapace::new(&dir)
        .image_server(server.url())
        .env("HOME", &home);
    let (env, _) = built_env(&k, &plain_manifest(&home));
    k.sh(
        &env,
        "touch \"/etc/$(printf 'x\\033]0;pwned\\007y')\" \"/etc/$(printf 'z\\n  - forged')\"",
    );
    let out = k.ok(&["diff", &env]);
    let text = out.stdout_str();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("x\\x1b]0;pwned\\x07y"), "{text:?}");
    // A newline in a name cannot forge a line of output ("forged" removed).
    assert!(text.contains("z\\x0a  - forged"), "{text:?}");
    assert!(
        !text.lines().any(|l| l.starts_with("  - forged")),
        "{text:?}"
    );
    let json = k.ok(&["--json", "diff", &env]).json();
    assert!(
        json.to_string().contains("x\\u001b]0;pwned\\u0007y"),
        "JSON keeps the exact name: {json}"
    );
}
