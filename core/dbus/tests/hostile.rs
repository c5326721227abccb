//! The attacker's view: what a hostile or broken client sends gets a clear error and never a
//! panic, a hang or a file touched; and a caller of another uid gets nothing at all.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BusOptions, Failure, Harness, IFACE, NAME, Options, PATH, path_str};

/// Asserts the error's name, that its message contains `says`, and that the message is one
/// short, printable line (a hostile argument is never echoed whole or raw).
fn refused(f: &Failure, name: &str, says: &str) {
    assert_eq!(f.name, name, "{f:?}");
    assert!(f.message.contains(says), "{f:?} does not say {says:?}");
    assert!(
        f.message.len() < 400,
        "message of {} bytes",
        f.message.len()
    );
    assert!(!f.message.chars().any(char::is_control), "{f:?}");
}

const INVALID: &str = "org.karapace.Error.InvalidArgument";

/// A service with one environment `web`; the second value is `ListEnvironments` now, which
/// must be the same after the attack.
fn victim() -> (Harness, String) {
    let h = Harness::start();
    let good = h.mock_manifest("good", &["git"]);
    h.client
        .ok("BuildNamedEnvironment", &(path_str(&good), "web"));
    let before = h.client.ok("ListEnvironments", &());
    (h, before)
}

#[test]
fn hostile_identifiers_and_names_get_clear_errors() {
    let (h, before) = victim();
    let c = &h.client;
    let good = h.work().join("good/karapace.toml");

    // Identifiers: empty, huge, control characters; strings that look like options or paths are
    // only names that do not exist.
    refused(
        &c.err("GetEnvironmentStatus", &("",)),
        INVALID,
        "must not be empty",
    );
    let huge = "a".repeat(1 << 20);
    refused(
        &c.err("GetEnvironmentStatus", &(huge.as_str(),)),
        INVALID,
        "bytes long",
    );
    refused(
        &c.err("DestroyEnvironment", &(huge.as_str(),)),
        INVALID,
        "bytes long",
    );
    refused(
        &c.err("GetEnvironmentStatus", &("web\u{1b}[2J\u{7}",)),
        INVALID,
        "control characters",
    );
    refused(
        &c.err("RunEnvironment", &("web\n",)),
        INVALID,
        "control characters",
    );
    for name in ["--store=/etc", "../../etc/passwd", "/", "*", "web "] {
        refused(
            &c.err("GetEnvironmentStatus", &(name,)),
            "org.karapace.Error.NotFound",
            "no environment matching",
        );
    }

    // New names: the store's grammar, plus our bounds.
    for bad in ["x\ny", "../evil", "a/b", "\u{202e}txt.exe", "", " "] {
        let e = c.err("RenameEnvironment", &("web", bad));
        assert_eq!(e.name, INVALID, "{bad:?}: {e:?}");
        assert!(!e.message.chars().any(char::is_control), "{e:?}");
    }
    refused(
        &c.err("RenameEnvironment", &("web", "n".repeat(300).as_str())),
        INVALID,
        "bytes long",
    );
    // NUL is not allowed in a D-Bus string: the bus drops the sender's connection before the
    // service sees anything (the service would refuse it as a control character).
    let throwaway = h.bus.client();
    assert!(
        throwaway
            .conn
            .call_method(
                Some(NAME),
                PATH,
                Some(IFACE),
                "BuildNamedEnvironment",
                &(path_str(&good), "bad\u{0}name"),
            )
            .is_err()
    );

    assert_eq!(c.ok("ListEnvironments", &()), before);
}

#[test]
fn hostile_manifest_paths_get_clear_errors_and_touch_nothing() {
    let (h, before) = victim();
    let c = &h.client;

    // Manifest paths: relative, climbing, not a regular file (a FIFO would block a reader
    // forever, /dev/zero would never end), too long, or not a manifest at all.
    let fifo = h.work().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let link = h.work().join("link.toml");
    std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
    let climbing = format!("{}/../work/good/karapace.toml", path_str(&h.work()));
    let long = format!("/{}", "d/".repeat(3000));
    let work = h.work();
    let cases: [(&str, &str); 8] = [
        ("good/karapace.toml", "must be absolute"),
        ("./karapace.toml", "must be absolute"),
        (&climbing, "must not contain '..'"),
        ("/dev/zero", "not a regular file"),
        (path_str(&fifo), "not a regular file"),
        (path_str(&link), "not a regular file"),
        (path_str(&work), "not a regular file"),
        (&long, "bytes long"),
    ];
    for (path, says) in cases {
        let asked = Instant::now();
        refused(&c.err("BuildEnvironment", &(path,)), INVALID, says);
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{path} took {:?}",
            asked.elapsed()
        );
    }
    refused(
        &c.err("BuildEnvironment", &("",)),
        INVALID,
        "must not be empty",
    );

    // Files that are not manifests: read with the caller's rights, refused as manifests, and
    // nothing is written beside them.
    let big = h.work().join("big.toml");
    std::fs::write(&big, "#".repeat(8 << 20)).expect("big file");
    let e = c.err("BuildEnvironment", &(path_str(&big),));
    assert_eq!(e.name, "org.karapace.Error.InvalidManifest", "{e:?}");
    let e = c.err("BuildEnvironment", &("/etc/passwd",));
    assert_eq!(e.name, "org.karapace.Error.InvalidManifest", "{e:?}");
    assert!(!std::path::Path::new("/etc/karapace.lock").exists());

    assert_eq!(c.ok("ListEnvironments", &()), before);
}

#[test]
fn malformed_calls_and_bursts_do_not_bring_the_service_down() {
    let (h, before) = victim();
    let c = &h.client;

    // Wrong argument types and unknown members are the bus library's errors, not crashes.
    let wrong = c
        .conn
        .call_method(
            Some(NAME),
            PATH,
            Some(IFACE),
            "GetEnvironmentStatus",
            &(42u32,),
        )
        .expect_err("an integer is no identifier");
    // (zbus names it org.freedesktop.zbus.Error, "Signature mismatch".)
    assert!(wrong.to_string().contains("Signature mismatch"), "{wrong}");
    let unknown = c
        .conn
        .call_method(Some(NAME), PATH, Some(IFACE), "DeleteEverything", &())
        .expect_err("no such method");
    assert!(unknown.to_string().contains("UnknownMethod"), "{unknown}");

    // A burst of store jobs: one runs, the rest may be Busy, none crashes the service.
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let client = h.bus.client();
            std::thread::spawn(move || client.call("GarbageCollect", &(true,)))
        })
        .collect();
    for handle in handles {
        match handle.join().expect("thread") {
            Ok(json) => assert!(json.contains("\"dry_run\":true"), "{json}"),
            Err(f) => assert_eq!(f.name, "org.karapace.Error.Busy", "{f:?}"),
        }
    }

    // Still serving, and nothing changed.
    assert_eq!(c.ok("ListEnvironments", &()), before);
    assert!(h.service.as_ref().is_some(), "service handle");
}

#[test]
fn another_users_calls_are_refused() {
    if !rustix::process::getuid().is_root() {
        eprintln!(
            "skipped: needs root to call as another user (it runs in the root pass of \
             scripts/test-all)"
        );
        return;
    }
    // A bus that lets every uid connect: what the attacker hopes for.
    let h = Harness::with(&Options {
        bus: BusOptions {
            any_user: true,
            ..BusOptions::default()
        },
        ..Options::default()
    });
    let m = h.mock_manifest("web", &[]);
    h.client.ok("BuildNamedEnvironment", &(path_str(&m), "web"));
    std::fs::set_permissions(h.bus.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("open the bus directory");

    let as_nobody = |args: &[&str]| {
        let out = Command::new("/usr/sbin/runuser")
            .args([
                "-u",
                "nobody",
                "--",
                "gdbus",
                "call",
                "--address",
                &h.bus.address,
            ])
            .args(["--dest", NAME, "--object-path", PATH, "--method"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("runuser");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for call in [
        vec![format!("{IFACE}.ListEnvironments")],
        vec![format!("{IFACE}.DestroyEnvironment"), "web".into()],
        vec![
            "org.freedesktop.DBus.Properties.Get".into(),
            IFACE.into(),
            "StoreRoot".into(),
        ],
    ] {
        let args: Vec<&str> = call.iter().map(String::as_str).collect();
        let (ok, stderr) = as_nobody(&args);
        assert!(!ok, "{call:?} succeeded for another uid");
        assert!(
            stderr.contains("org.freedesktop.DBus.Error.AccessDenied"),
            "{call:?}: {stderr}"
        );
    }
    // The environment is still there.
    assert_eq!(
        h.client.json("GetEnvironmentStatus", &("web",))["name"],
        "web"
    );
}
