//! Hostile plugins (built from plugins/hostile/, committed as fixtures) must
//! each be contained with a typed error, leaving the host and the other
//! plugins working.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use karapace_plugin_host::{
    ImageContext, LoadOptions, PackageRequest, Plugin, PluginError, PluginHost, StepOptions,
};

fn hostile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/hostile/dist")
        .join(format!("{name}.wasm"))
}

/// A plugin directory holding copies of the given hostile fixtures.
fn dir_with(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        std::fs::copy(hostile(n), dir.path().join(format!("{n}.wasm"))).unwrap();
    }
    dir
}

fn load(dir: &Path) -> PluginHost {
    PluginHost::load_with(&LoadOptions {
        dirs: vec![dir.to_path_buf()],
        cache_dir: None,
        limits: karapace_plugin_host::Limits::default(),
    })
    .unwrap()
}

fn misbehave(host: &PluginHost) -> &Plugin {
    host.get("misbehave")
        .expect("misbehave loads: its metadata is fine")
}

/// Every hostile call must also finish quickly: the limits bite, not a timeout.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(20), "{what} took {took:?}");
    eprintln!("{what}: contained in {took:?}");
    r
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let dir = dir_with(&["misbehave"]);
    let host = load(dir.path());
    let e = timed("loop", || {
        misbehave(&host)
            .validate_name(&ImageContext::EMPTY, "loop")
            .unwrap_err()
    });
    assert!(
        matches!(&e, PluginError::OutOfFuel { plugin, call: "validate-name", .. } if plugin == "misbehave"),
        "{e}"
    );
    assert!(e.to_string().contains("misbehave"), "{e}");
    // The same plugin still works afterwards: every call gets a fresh store.
    misbehave(&host)
        .validate_name(&ImageContext::EMPTY, "fine")
        .unwrap();
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let dir = dir_with(&["misbehave"]);
    let host = load(dir.path());
    let e = timed("membomb", || {
        misbehave(&host)
            .validate_name(&ImageContext::EMPTY, "membomb")
            .unwrap_err()
    });
    match e {
        PluginError::MemoryLimit {
            requested, limit, ..
        } => assert!(requested > limit && limit == 64 * 1024 * 1024),
        other => panic!("expected MemoryLimit, got {other}"),
    }
}

#[test]
fn deep_recursion_overflows_the_guest_stack() {
    let dir = dir_with(&["misbehave"]);
    let host = load(dir.path());
    let e = timed("recurse", || {
        misbehave(&host)
            .validate_name(&ImageContext::EMPTY, "recurse")
            .unwrap_err()
    });
    assert!(matches!(e, PluginError::StackOverflow { .. }), "{e}");
}

#[test]
fn panic_is_a_trap() {
    let dir = dir_with(&["misbehave"]);
    let host = load(dir.path());
    let e = misbehave(&host)
        .validate_name(&ImageContext::EMPTY, "panic")
        .unwrap_err();
    assert!(matches!(e, PluginError::Trap { .. }), "{e}");
}

#[test]
fn bad_argv_and_gigantic_output_are_refused() {
    let dir = dir_with(&["misbehave"]);
    let host = load(dir.path());
    let p = misbehave(&host);
    for (trigger, needle) in [
        ("nul", "NUL"),
        ("empty", "empty argv"),
        ("huge", "arguments"),
        ("long", "bytes"),
        ("env", "env key"),
    ] {
        let e = timed(trigger, || {
            p.install_steps(
                &ImageContext::EMPTY,
                &[PackageRequest::latest(trigger)],
                StepOptions::default(),
            )
            .unwrap_err()
        });
        match &e {
            PluginError::InvalidOutput {
                plugin,
                call,
                reason,
            } => {
                assert_eq!((plugin.as_str(), *call), ("misbehave", "install-steps"));
                assert!(reason.contains(needle), "{trigger}: {reason}");
            }
            other => panic!("{trigger}: expected InvalidOutput, got {other}"),
        }
    }
    let e = timed("gigantic", || {
        p.parse_query(&ImageContext::EMPTY, &[], "gigantic")
            .unwrap_err()
    });
    assert!(
        matches!(&e, PluginError::InvalidOutput { reason, .. } if reason.contains("packages")),
        "{e}"
    );
    // A returned name that would act as an option is re-validated away.
    let e = p
        .parse_query(&ImageContext::EMPTY, &[], "badname")
        .unwrap_err();
    assert!(
        matches!(&e, PluginError::InvalidOutput { reason, .. } if reason.contains("starts with '-'")),
        "{e}"
    );
}

#[test]
fn invalid_utf8_is_an_abi_error() {
    let dir = dir_with(&["misbehave"]);
    let host = load(dir.path());
    let e = misbehave(&host)
        .parse_query(&ImageContext::EMPTY, &[], "invalid-utf8")
        .unwrap_err();
    assert!(matches!(e, PluginError::Abi { .. }), "{e}");
}

#[test]
fn importing_component_and_bad_metadata_are_refused_at_load() {
    let dir = dir_with(&["wasi-import", "bad-metadata", "misbehave"]);
    let host = load(dir.path());
    // Refused plugins are reported, the rest still load, built-ins included.
    assert!(host.get("wasi-import").is_none());
    assert!(host.get("misbehave").is_some());
    assert_eq!(
        host.get("apt").map(Plugin::source),
        Some(karapace_plugin_host::PluginSource::Builtin)
    );
    let failures = host.failures();
    assert_eq!(failures.len(), 2, "{failures:?}");

    let wasi = failures
        .iter()
        .find(|f| f.path.ends_with("wasi-import.wasm"))
        .unwrap();
    match &wasi.error {
        PluginError::HasImports { imports, .. } => {
            assert_eq!(imports, &["wasi:cli/environment@0.2.0"]);
        }
        other => panic!("expected HasImports, got {other}"),
    }
    assert!(wasi.error.to_string().contains("wasi-import.wasm"));

    let bad = failures
        .iter()
        .find(|f| f.path.ends_with("bad-metadata.wasm"))
        .unwrap();
    assert!(
        matches!(
            &bad.error,
            PluginError::InvalidOutput {
                call: "metadata",
                ..
            }
        ),
        "{}",
        bad.error
    );
}

#[test]
fn garbage_files_are_load_failures() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.wasm"), b"not wasm at all").unwrap();
    std::fs::write(dir.path().join("ignored.txt"), b"not a plugin").unwrap();
    let host = load(dir.path());
    assert_eq!(host.plugins().len(), 5);
    assert_eq!(host.failures().len(), 1);
    assert!(matches!(host.failures()[0].error, PluginError::Load { .. }));
}

/// The interface 1.1 additions are validated like everything else.
#[test]
fn v1_1_outputs_are_validated() {
    let dir = dir_with(&["misbehave"]);
    let host = load(dir.path());
    let p = misbehave(&host);
    let img = ImageContext::EMPTY;
    let e = p
        .parse_query(&img, &["bash".to_string()], "satisfies-unrequested")
        .unwrap_err();
    assert!(
        matches!(&e, PluginError::InvalidOutput { reason, .. } if reason.contains("not requested")),
        "{e}"
    );
    let asked = vec!["bash".to_string()];
    let e = p.parse_available(&img, &asked, "unasked").unwrap_err();
    assert!(matches!(e, PluginError::InvalidOutput { .. }), "{e}");
    let e = timed("flood", || {
        p.parse_available(&img, &asked, "flood").unwrap_err()
    });
    assert!(
        matches!(&e, PluginError::InvalidOutput { reason, .. } if reason.contains("candidates")),
        "{e}"
    );

    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("hostile")).unwrap();
    std::fs::write(root.path().join("hostile/never-present"), b"").unwrap();
    std::fs::write(root.path().join("hostile/variant"), b"escape\n").unwrap();
    let e = p.detect_image(root.path()).unwrap_err();
    assert!(
        matches!(&e, PluginError::InvalidOutput { reason, .. } if reason.contains("control")),
        "{e}"
    );
}

/// The released 1.0 build of the hostile fixture is contained the same way.
#[test]
fn a_1_0_hostile_component_is_still_contained() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1.0/misbehave.wasm"),
        dir.path().join("misbehave.wasm"),
    )
    .unwrap();
    let host = load(dir.path());
    let p = misbehave(&host);
    assert_eq!(p.interface(), "1.0.0");
    let e = timed("loop (1.0)", || {
        p.validate_name(&ImageContext::EMPTY, "loop").unwrap_err()
    });
    assert!(matches!(e, PluginError::OutOfFuel { .. }), "{e}");
    let e = p
        .parse_query(&ImageContext::EMPTY, &[], "badname")
        .unwrap_err();
    assert!(matches!(e, PluginError::InvalidOutput { .. }), "{e}");
}
