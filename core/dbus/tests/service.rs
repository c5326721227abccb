//! `karapace-dbus` on a private session bus, driven as a desktop client would: every method with
//! its JSON, both properties, the error names, the ambiguity fix, every signal (also for changes
//! the CLI makes), `RunEnvironment`'s terminal, and D-Bus activation from the shipped file.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Harness, IFACE, NAME, Options, PATH, SOON, path_str};

#[test]
fn both_properties_answer_and_introspection_lists_the_whole_api() {
    let h = Harness::start();
    let version: u32 = h
        .client
        .property("ApiVersion")
        .expect("ApiVersion")
        .try_into()
        .expect("u");
    assert_eq!(version, 1);
    let root: String = h
        .client
        .property("StoreRoot")
        .expect("StoreRoot")
        .try_into()
        .expect("s");
    assert_eq!(root, path_str(&h.store()));

    let xml: String = h
        .client
        .conn
        .call_method(
            Some(NAME),
            PATH,
            Some("org.freedesktop.DBus.Introspectable"),
            "Introspect",
            &(),
        )
        .expect("introspect")
        .body()
        .deserialize()
        .expect("xml");
    for name in [
        "ListEnvironments",
        "GetEnvironmentStatus",
        "GetEnvironmentHash",
        "BuildEnvironment",
        "BuildNamedEnvironment",
        "DestroyEnvironment",
        "RunEnvironment",
        "RenameEnvironment",
        "ListPresets",
        "GarbageCollect",
        "VerifyStore",
        "EnvironmentCreated",
        "EnvironmentRemoved",
        "EnvironmentStateChanged",
        "BuildProgress",
    ] {
        assert!(
            xml.contains(&format!("name=\"{name}\"")),
            "{name} missing:\n{xml}"
        );
    }
    assert!(
        xml.contains(r#"<property name="ApiVersion" type="u" access="read">"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<property name="StoreRoot" type="s" access="read">"#),
        "{xml}"
    );
    // Neither property ever changes while the service runs: clients need not watch them.
    assert_eq!(
        xml.matches(r#"name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const""#)
            .count(),
        2,
        "{xml}"
    );
}

#[test]
fn every_method_returns_the_documented_json() {
    let h = Harness::start();
    let c = &h.client;
    assert_eq!(c.ok("ListEnvironments", &()), "[]");

    let presets = c.json("ListPresets", &());
    let names: Vec<&str> = presets
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["minimal", "dev", "gui-dev", "rust-dev", "ubuntu-dev"]
    );
    assert!(
        presets
            .as_array()
            .into_iter()
            .flatten()
            .all(|p| p["description"].as_str().is_some_and(|d| !d.is_empty())),
        "{presets}"
    );

    let web = h.mock_manifest("web", &["git"]);
    let built = c.ok("BuildNamedEnvironment", &(path_str(&web), "web"));
    let v: serde_json::Value = serde_json::from_str(&built).expect("json");
    let id = v["env_id"].as_str().expect("env_id").to_owned();
    let short = v["short_id"].as_str().expect("short_id").to_owned();
    assert_eq!(id.len(), 64);
    assert!(id.starts_with(&short));
    assert_eq!(
        built,
        format!(r#"{{"env_id":"{id}","short_id":"{short}","state":"built","name":"web"}}"#)
    );

    let other = h.mock_manifest("other", &["curl"]);
    let plain = c.ok("BuildEnvironment", &(path_str(&other),));
    let v: serde_json::Value = serde_json::from_str(&plain).expect("json");
    let other_id = v["env_id"].as_str().expect("env_id").to_owned();
    assert_eq!(
        plain,
        format!(
            r#"{{"env_id":"{other_id}","short_id":"{}","state":"built"}}"#,
            &other_id[..12]
        )
    );
    // The build wrote the lock beside the manifest, as the CLI does.
    assert!(web.with_file_name("karapace.lock").is_file());

    let list = c.ok("ListEnvironments", &());
    assert!(
        list.contains(&format!(
            r#"{{"env_id":"{id}","short_id":"{short}","name":"web","state":"built"}}"#
        )),
        "{list}"
    );
    assert!(
        list.contains(&format!(
            r#"{{"env_id":"{other_id}","short_id":"{}","state":"built"}}"#,
            &other_id[..12]
        )),
        "an unnamed environment has no name key: {list}"
    );

    let by_name = c.ok("GetEnvironmentStatus", &("web",));
    assert_eq!(
        by_name,
        format!(r#"{{"env_id":"{id}","short_id":"{short}","name":"web","state":"built"}}"#)
    );
    assert_eq!(c.ok("GetEnvironmentStatus", &(short.as_str(),)), by_name);
    assert_eq!(c.ok("GetEnvironmentStatus", &(&id[..20],)), by_name);
    assert_eq!(c.ok("GetEnvironmentHash", &("web",)), id);

    assert_eq!(
        c.ok("RenameEnvironment", &("web", "site")),
        format!(r#"{{"env_id":"{id}","name":"site"}}"#)
    );

    assert_eq!(
        c.ok("RunEnvironment", &("site",)),
        format!(r#"{{"entered":"{id}"}}"#)
    );
    let argv = wait_for_file(&h.terminal_log());
    let cli = common::karapace_cli();
    assert_eq!(
        argv.lines().collect::<Vec<_>>(),
        [
            "-e",
            path_str(&cli),
            "--store",
            path_str(&h.store()),
            "enter",
            id.as_str()
        ],
        "the terminal runs `karapace enter` with the resolved env_id"
    );
}

#[test]
fn store_jobs_and_destroy_return_the_documented_json() {
    let h = Harness::start();
    let c = &h.client;
    let site = h.mock_manifest("site", &["git"]);
    let id = c.json("BuildNamedEnvironment", &(path_str(&site), "site"))["env_id"]
        .as_str()
        .expect("env_id")
        .to_owned();

    let dry = c.json("GarbageCollect", &(true,));
    assert_eq!(dry["dry_run"], true);
    for key in ["removed_envs", "removed_layers", "removed_objects"] {
        assert!(dry[key].is_u64(), "{key}: {dry}");
    }
    let gc = c.ok("GarbageCollect", &(false,));
    assert!(
        gc.starts_with(r#"{"dry_run":false,"removed_envs":"#),
        "keys in the spec's order: {gc}"
    );

    let verify = c.json("VerifyStore", &());
    let checked = verify["checked"].as_u64().expect("checked");
    assert!(checked > 0, "{verify}");
    assert_eq!(verify["passed"].as_u64(), Some(checked));
    assert_eq!(verify["failed"].as_u64(), Some(0));

    assert_eq!(
        c.ok("DestroyEnvironment", &("site",)),
        format!(r#"{{"destroyed":"{id}"}}"#)
    );
    assert_eq!(
        c.err("GetEnvironmentStatus", &(id.as_str(),)).name,
        "org.karapace.Error.NotFound"
    );
}

/// Reads a file another process writes (atomically) soon.
fn wait_for_file(path: &std::path::Path) -> String {
    let deadline = Instant::now() + SOON;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failures_carry_karapace_error_names() {
    let h = Harness::start();
    let c = &h.client;

    let miss = c.err("GetEnvironmentStatus", &("nope",));
    assert_eq!(miss.name, "org.karapace.Error.NotFound");
    assert_eq!(miss.message, "no environment matching 'nope'");
    assert_eq!(
        c.err("GetEnvironmentHash", &("nope",)).name,
        "org.karapace.Error.NotFound"
    );
    assert_eq!(
        c.err("DestroyEnvironment", &("nope",)).name,
        "org.karapace.Error.NotFound"
    );

    let broken = h.manifest("broken", "manifest_version = 1\n[base\n");
    let invalid = c.err("BuildEnvironment", &(path_str(&broken),));
    assert_eq!(
        invalid.name, "org.karapace.Error.InvalidManifest",
        "{invalid:?}"
    );
    let missing = h.work().join("missing/karapace.toml");
    assert_eq!(
        c.err("BuildEnvironment", &(path_str(&missing),)).name,
        "org.karapace.Error.InvalidManifest"
    );

    let a = h.mock_manifest("a", &["git"]);
    let b = h.mock_manifest("b", &["curl"]);
    c.ok("BuildNamedEnvironment", &(path_str(&a), "one"));
    c.ok("BuildNamedEnvironment", &(path_str(&b), "two"));
    assert_eq!(
        c.err("BuildNamedEnvironment", &(path_str(&a), "not a name"))
            .name,
        "org.karapace.Error.InvalidArgument"
    );
    let taken = c.err("RenameEnvironment", &("two", "one"));
    assert_eq!(taken.name, "org.karapace.Error.AlreadyExists", "{taken:?}");

    h.cli(&["archive", "two"]);
    let archived = c.err("RunEnvironment", &("two",));
    assert_eq!(
        archived.name, "org.karapace.Error.InvalidState",
        "{archived:?}"
    );
    assert!(
        !h.terminal_log().exists(),
        "no terminal for an archived environment"
    );

    // Independent clients see the same names: GLib's gdbus and systemd's busctl (the examples
    // of docs/dbus.md).
    let out = Command::new("gdbus")
        .args(["call", "--session", "--dest", NAME, "--object-path", PATH])
        .args(["--method", &format!("{IFACE}.GetEnvironmentStatus"), "nope"])
        .env("DBUS_SESSION_BUS_ADDRESS", &h.bus.address)
        .output()
        .expect("gdbus (Debian package libglib2.0-bin) is needed: scripts/install-deps");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GDBus.Error:org.karapace.Error.NotFound: no environment matching 'nope'"),
        "{stderr}"
    );
    let out = Command::new("busctl")
        .args(["--user", "call", NAME, PATH, IFACE, "ListEnvironments"])
        .env("DBUS_SESSION_BUS_ADDRESS", &h.bus.address)
        .output()
        .expect("busctl (Debian package systemd) is needed: scripts/install-deps");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("s \"[{\\\"env_id\\\":"), "{stdout}");
}

#[test]
fn an_ambiguous_prefix_is_an_error_not_the_first_match() {
    let h = Harness::start();
    let c = &h.client;
    // Build environments until two share their first hex digit (at most 17 by pigeonhole).
    let mut ids: Vec<String> = Vec::new();
    let (first, second) = 'found: {
        for i in 0..17 {
            let m = h.mock_manifest(&format!("m{i}"), &[&format!("pkg{i}")]);
            let v: serde_json::Value =
                serde_json::from_str(&c.ok("BuildEnvironment", &(path_str(&m),))).expect("json");
            let id = v["env_id"].as_str().expect("env_id").to_owned();
            if let Some(prev) = ids.iter().find(|p| p[..1] == id[..1]) {
                break 'found (prev.clone(), id);
            }
            ids.push(id);
        }
        panic!("17 environments and no shared first digit: {ids:?}");
    };
    let common_len = first
        .bytes()
        .zip(second.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let prefix = &first[..common_len];

    let e = c.err("GetEnvironmentStatus", &(prefix,));
    assert_eq!(e.name, "org.karapace.Error.Ambiguous", "{e:?}");
    assert_eq!(
        e.message,
        format!("ambiguous env_id prefix '{prefix}': matches 2 environments")
    );
    for method in ["GetEnvironmentHash", "DestroyEnvironment", "RunEnvironment"] {
        assert_eq!(
            c.err(method, &(prefix,)).name,
            "org.karapace.Error.Ambiguous",
            "{method}"
        );
    }
    assert_eq!(
        c.err("RenameEnvironment", &(prefix, "x")).name,
        "org.karapace.Error.Ambiguous"
    );
    // Nothing was destroyed, and one more digit resolves.
    assert_eq!(c.ok("GetEnvironmentHash", &(&first[..=common_len],)), first);
    assert_eq!(
        c.ok("GetEnvironmentHash", &(&second[..=common_len],)),
        second
    );
}

#[test]
fn the_services_own_changes_are_signalled_once_each() {
    let h = Harness::start();
    let mut signals = h.client.signals();
    let m = h.mock_manifest("web", &["git"]);
    let shown = path_str(&m);
    let v = h.client.json("BuildNamedEnvironment", &(shown, "web"));
    let id = v["env_id"].as_str().expect("env_id");
    let short = v["short_id"].as_str().expect("short_id");
    signals.expect("BuildProgress", &[shown, "building"]);
    signals.expect("EnvironmentCreated", &[id]);
    signals.expect("BuildProgress", &[shown, &format!("built {short}")]);

    // A build of an unchanged manifest changes nothing: no second EnvironmentCreated.
    h.client.ok("BuildEnvironment", &(shown,));
    signals.expect("BuildProgress", &[shown, &format!("unchanged {short}")]);

    h.client.ok("DestroyEnvironment", &("web",));
    signals.expect("EnvironmentRemoved", &[id]);

    // The store watcher saw the same changes: they must not be signalled twice.
    signals.drain(Duration::from_secs(1));
    assert_eq!(
        signals.count("EnvironmentCreated", &[id]),
        1,
        "{:?}",
        signals.seen
    );
    assert_eq!(
        signals.count("EnvironmentRemoved", &[id]),
        1,
        "{:?}",
        signals.seen
    );

    let failed = h.manifest("broken", "not toml [");
    let shown = path_str(&failed);
    h.client.err("BuildEnvironment", &(shown,));
    signals.drain(Duration::from_millis(500));
    assert!(
        signals.seen.iter().any(|s| s.member == "BuildProgress"
            && s.args[0] == shown
            && s.args[1].starts_with("failed: ")),
        "{:?}",
        signals.seen
    );
}

#[test]
fn changes_made_by_the_cli_while_the_service_runs_are_signalled() {
    let h = Harness::start();
    let mut signals = h.client.signals();
    let m = h.mock_manifest("cli", &["git"]);

    let out = h.cli(&["build", path_str(&m), "--name", "cli", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let id = v["env_id"].as_str().expect("env_id").to_owned();
    signals.expect("EnvironmentCreated", &[&id]);

    h.cli(&["freeze", "cli"]);
    signals.expect("EnvironmentStateChanged", &[&id, "frozen"]);
    h.cli(&["archive", "cli"]);
    signals.expect("EnvironmentStateChanged", &[&id, "archived"]);

    // A rename is no state change, but clients that list again see it at once.
    h.cli(&["rename", "cli", "renamed"]);
    let status = h.client.json("GetEnvironmentStatus", &(id.as_str(),));
    assert_eq!(status["name"], "renamed");

    // A session makes the environment running, and its end built again. (The mock backend
    // runs nothing, so the session is a process of the test's, recorded in the store as a
    // backend records its sessions.)
    h.cli(&["build", path_str(&m)]);
    signals.expect("EnvironmentStateChanged", &[&id, "built"]);
    let mut sleeper = Command::new("sleep")
        .arg("2")
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("sleep");
    let store = karapace_store::Store::open(&h.store()).expect("open store");
    let record = store
        .begin_session(&id, sleeper.id(), None)
        .expect("record the session");
    signals.expect("EnvironmentStateChanged", &[&id, "running"]);
    assert!(sleeper.wait().expect("wait").success());
    drop(record);
    signals.expect("EnvironmentStateChanged", &[&id, "built"]);

    h.cli(&["destroy", "renamed"]);
    signals.expect("EnvironmentRemoved", &[&id]);
}

#[test]
fn run_environment_without_a_terminal_says_how_to_configure_one() {
    let h = Harness::with(&Options {
        terminal: Some("/nonexistent/terminal -e".into()),
        ..Options::default()
    });
    let m = h.mock_manifest("web", &[]);
    h.client.ok("BuildNamedEnvironment", &(path_str(&m), "web"));
    let e = h.client.err("RunEnvironment", &("web",));
    assert_eq!(e.name, "org.karapace.Error.Failed");
    assert!(
        e.message.contains("/nonexistent/terminal") && e.message.contains("KARAPACE_TERMINAL"),
        "{e:?}"
    );
}

#[test]
fn dbus_activation_starts_the_service_from_the_shipped_file() {
    let shipped = include_str!("../data/org.karapace.Manager1.service");
    assert!(shipped.contains("\nName=org.karapace.Manager1\n"));
    assert!(shipped.contains("\nSystemdService=karapace-dbus.service\n"));
    // What a user manager does with these files is tested under a real one
    // (run-under-systemd.sh); here, what they say.
    let unit = include_str!("../data/karapace-dbus.service");
    let confined = include_str!("../data/karapace-dbus-confined.conf");
    for line in [
        "Type=dbus",
        "BusName=org.karapace.Manager1",
        "UMask=0077",
        "LimitCORE=0",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // Each of these stops newuidmap from mapping the user's subordinate ids (no_new_privs, or a
    // user namespace of the service's own): only the confined drop-in may set them.
    for option in [
        "NoNewPrivileges=",
        "PrivateUsers=",
        "RestrictAddressFamilies=",
        "SystemCallArchitectures=",
        "ProtectKernelModules=",
    ] {
        assert!(
            !unit.lines().any(|l| l.starts_with(option)),
            "the unit sets {option}"
        );
        assert!(
            confined.lines().any(|l| l.starts_with(option)),
            "the confined drop-in lacks {option}"
        );
    }

    // The shipped file with Exec= pointing at this build.
    let services = tempfile::tempdir().expect("service dir");
    let file: String = shipped
        .lines()
        .map(|l| {
            if l.starts_with("Exec=") {
                format!("Exec={}\n", common::SERVICE)
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(services.path().join("org.karapace.Manager1.service"), file)
        .expect("activation file");
    let home = tempfile::tempdir().expect("home");
    let store = home.path().join("store");
    let bus = common::Bus::start(&common::BusOptions {
        service_dir: Some(services.path().to_path_buf()),
        env: vec![
            ("HOME".into(), path_str(home.path()).into()),
            ("KARAPACE_STORE".into(), path_str(&store).into()),
            ("KARAPACE_DBUS_IDLE_TIMEOUT".into(), "2".into()),
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ],
        ..common::BusOptions::default()
    });
    let client = bus.client();
    assert!(
        !client.name_has_owner(),
        "nothing runs before the first call"
    );
    assert_eq!(client.ok("ListEnvironments", &()), "[]");
    let root: String = client
        .property("StoreRoot")
        .expect("StoreRoot")
        .try_into()
        .expect("s");
    assert_eq!(root, path_str(&store));
    // Activated, it still exits when idle, and the next call starts it again.
    let deadline = Instant::now() + SOON;
    while client.name_has_owner() {
        assert!(
            Instant::now() < deadline,
            "the activated service never exited"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(client.ok("ListEnvironments", &()), "[]");
}

/// Serves one file over HTTP/1.1 on 127.0.0.1 (GET and HEAD, one request per connection) until
/// dropped.
struct FileServer {
    port: u16,
}

impl FileServer {
    fn serve(body: Vec<u8>) -> FileServer {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: application/x-xz\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                if !request.starts_with(b"HEAD ") {
                    let _ = stream.write_all(&body);
                }
            }
        });
        FileServer { port }
    }
}

#[test]
fn a_builds_engine_steps_reach_build_progress() {
    let helper = std::path::Path::new(common::SERVICE).with_file_name("karapace-helper");
    assert!(
        helper.is_file(),
        "{} is needed to build (`cargo build -p karapace-helper`; `cargo test --workspace` \
         builds it)",
        helper.display()
    );
    let h = Harness::start();
    // A tiny image without a package manager: the build extracts it, then fails at once.
    let rootfs = h.dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("rootfs");
    std::fs::write(rootfs.join("hello"), "hi\n").expect("file");
    let archive = h.dir.path().join("rootfs.tar.xz");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cJf")
        .arg(&archive)
        .arg(".")
        .status()
        .expect("tar (with xz-utils)");
    assert!(tar.success());
    let server = FileServer::serve(std::fs::read(&archive).expect("archive"));
    let url = format!("http://127.0.0.1:{}/rootfs.tar.xz", server.port);
    let manifest = h.manifest(
        "tiny",
        &format!(
            "manifest_version = 1\n[base]\nimage = \"{url}\"\n[system]\npackages = [\"curl\"]\n"
        ),
    );
    let shown = path_str(&manifest);
    let mut signals = h.client.signals();
    let failure = h.client.err("BuildEnvironment", &(shown,));
    assert_eq!(failure.name, "org.karapace.Error.Failed", "{failure:?}");
    signals.expect("BuildProgress", &[shown, "building"]);
    signals.expect("BuildProgress", &[shown, &format!("extracting {url}")]);
    signals.expect(
        "BuildProgress",
        &[shown, &format!("failed: {}", failure.message)],
    );
}
