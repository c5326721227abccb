//! Precompiles the committed built-in plugin components (`plugins/dist/*.wasm`)
//! for the target with the same engine config the runtime uses, and generates
//! the table that embeds them. It also runs each plugin's `metadata`,
//! `detect-paths` and (interface 1.1) `detect-files` once here, so that
//! loading the built-ins at run time costs nothing: a built-in is only
//! deserialized when it is first called.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wasmtime::component::{Component, Linker, Val};

#[path = "src/engine_config.rs"]
mod engine_config;

/// Detection order of the built-ins.
const BUILTINS: [&str; 5] = ["apt", "dnf", "zypper", "pacman", "apk"];

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dist = manifest.join("../../plugins/dist");
    println!("cargo::rerun-if-changed=src/engine_config.rs");

    let mut config = engine_config::plugin_engine_config();
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    config
        .target(&target)
        .expect("wasmtime supports the target");
    let engine = wasmtime::Engine::new(&config).expect("engine config is valid");
    // For running the plugins here, on the build machine.
    let host_engine = wasmtime::Engine::new(&engine_config::plugin_engine_config())
        .expect("engine config is valid");

    let mut table = String::from("static BUILTIN_PLUGINS: &[Builtin] = &[\n");
    for name in BUILTINS {
        let src = dist.join(format!("{name}.wasm"));
        println!("cargo::rerun-if-changed={}", src.display());
        let component = std::fs::read(&src)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-plugins)", src.display()));
        let compiled = engine
            .precompile_component(&component)
            .unwrap_or_else(|e| panic!("{}: cannot precompile: {e:#}", src.display()));
        let artifact = out.join(format!("{name}.cwasm"));
        write_if_changed(&artifact, &compiled);
        let probed = probe(&host_engine, &component, &src);
        let (meta_name, version) = (&probed.name, &probed.version);
        assert_eq!(
            meta_name,
            name,
            "{}: plugin calls itself {meta_name:?}",
            src.display()
        );
        let _ = writeln!(
            table,
            "    Builtin {{ name: {name:?}, version: {version:?}, interface: {:?}, detect_paths: &{:?}, detect_files: &{:?}, artifact: include_bytes!({:?}) }},",
            probed.interface,
            probed.detect_paths,
            probed.detect_files,
            artifact.display().to_string()
        );
    }
    table.push_str("];\n");
    write_if_changed(&out.join("builtin_plugins.rs"), table.as_bytes());
}

fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// What `probe` learnt from a built-in component.
struct Probed {
    name: String,
    version: String,
    interface: &'static str,
    detect_paths: Vec<String>,
    detect_files: Vec<String>,
}

/// Interface versions the host supports, newest first: (export, version).
const INTERFACES: [(&str, &str); 2] = [
    ("karapace:resolver/resolver@1.1.0", "1.1.0"),
    ("karapace:resolver/resolver@1.0.0", "1.0.0"),
];

/// Calls `metadata`, `detect-paths` and (1.1) `detect-files` of a built-in
/// component.
fn probe(engine: &wasmtime::Engine, component: &[u8], src: &Path) -> Probed {
    let fail = |what: &str| -> ! { panic!("{}: {what}", src.display()) };
    let component = Component::new(engine, component).unwrap_or_else(|e| fail(&format!("{e:#}")));
    let mut store = wasmtime::Store::new(engine, ());
    store
        .set_fuel(1_000_000_000)
        .unwrap_or_else(|e| fail(&format!("{e:#}")));
    let instance = Linker::<()>::new(engine)
        .instantiate(&mut store, &component)
        .unwrap_or_else(|e| fail(&format!("imports something? {e:#}")));
    // Exact export names: a by-name lookup treats 1.0.0 and 1.1.0 as
    // semver-compatible and would find either.
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(n, _)| n.to_string())
        .collect();
    let (export, interface) = INTERFACES
        .iter()
        .find(|(export, _)| exports.iter().any(|e| e == export))
        .copied()
        .unwrap_or_else(|| fail("no karapace:resolver/resolver@1.x.0 export"));
    let iface = instance
        .get_export_index(&mut store, None, export)
        .unwrap_or_else(|| fail(export));
    let mut call = |func: &str| -> Val {
        let index = instance
            .get_export_index(&mut store, Some(&iface), func)
            .unwrap_or_else(|| fail(func));
        let f = instance
            .get_func(&mut store, index)
            .unwrap_or_else(|| fail(func));
        let mut results = [Val::Bool(false)];
        f.call(&mut store, &[], &mut results)
            .unwrap_or_else(|e| fail(&format!("{func}: {e:#}")));
        let [result] = results;
        result
    };
    let Val::Record(fields) = call("metadata") else {
        fail("metadata is not a record")
    };
    let field = |n: &str| match fields.iter().find(|(k, _)| k == n) {
        Some((_, Val::String(s))) => s.clone(),
        _ => fail(&format!("metadata.{n}")),
    };
    let (name, version) = (field("name"), field("version"));
    let mut strings = |func: &str| -> Vec<String> {
        let Val::List(paths) = call(func) else {
            fail(&format!("{func} is not a list"))
        };
        paths
            .into_iter()
            .map(|p| match p {
                Val::String(s) => s,
                _ => fail(&format!("{func}: not a string")),
            })
            .collect()
    };
    let detect_paths = strings("detect-paths");
    let detect_files = if interface == "1.0.0" {
        Vec::new()
    } else {
        strings("detect-files")
    };
    Probed {
        name,
        version,
        interface,
        detect_paths,
        detect_files,
    }
}
