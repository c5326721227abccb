//! Issue 13, item 2 (reproducibility): the Dependency layer is a function of the lock and the base
//! image. The same manifest is built in two stores, seconds apart, the second `--locked` to the
//! first's lock, against the local image mirror (`scripts/test-image`) with real apt installs; the
//! layer hashes must be equal. When they are not, the test prints which files differ between the
//! two layer trees, so the next person sees why.
//!
//! Without the mirror the test prints why and passes, except under `CI`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use karapace_tests::{Karapace, LockInfo, Mirror, TestDir};
use serde_json::Value;

/// curl; git (more packages, perl, triggers); tcpdump, whose postinst adds a system user, so
/// `/etc/shadow` gets a date. All three install with today's single-id builds. Once packages with
/// files of other owners install (issue 13, item 1), `openssh-server` and `postgresql` belong here
/// too, with checks that their host keys and cluster are not in the layer.
const MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["curl", "git", "tcpdump"]
"#;

/// `SOURCE_DATE_EPOCH` of build steps (2024-01-01) in days: what `useradd` records as the last
/// password change instead of the day of the build.
const SOURCE_DATE_DAY: &str = "19723";

/// Build state that must never reach a layer (`core/src/engine/reproducible.rs`).
const LEFT_OUT: &[&str] = &[
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
    "var/cache/ldconfig/aux-cache",
    "var/log/dpkg.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
];

/// What one build produced.
struct Layers {
    env_id: String,
    base: String,
    dependencies: Vec<String>,
    /// `<store>/store/trees`, where the layer trees are.
    trees: PathBuf,
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("JSON has no string `{key}`: {v:#}"))
}

/// Builds `dir`'s manifest (with `extra` arguments) and reads its layers from `inspect --json`.
fn build(k: &Karapace, dir: &TestDir, extra: &[&str]) -> (Layers, Duration) {
    let manifest = dir.project().join("karapace.toml");
    let manifest_arg = manifest.to_string_lossy();
    let mut args = vec!["build", manifest_arg.as_ref()];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let v = k.json(&args);
    let took = started.elapsed();
    assert_eq!(str_field(&v, "status"), "built", "build --json: {v:#}");
    let env_id = str_field(&v, "env_id").to_owned();
    let meta = k.json(&["inspect", &env_id]);
    let dependencies: Vec<String> = meta
        .get("dependency_layers")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("inspect --json has no `dependency_layers`: {meta:#}"))
        .iter()
        .map(|h| {
            h.as_str()
                .unwrap_or_else(|| panic!("a layer hash is not a string: {meta:#}"))
                .to_owned()
        })
        .collect();
    assert_eq!(
        dependencies.len(),
        1,
        "one Dependency layer expected: {meta:#}"
    );
    let layers = Layers {
        env_id,
        base: str_field(&meta, "base_layer").to_owned(),
        dependencies,
        trees: dir.store().join("store").join("trees"),
    };
    (layers, took)
}

#[test]
fn same_lock_in_two_stores_gives_the_same_dependency_layer() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let server = mirror.serve_http();

    let first = TestDir::new("repro-a");
    first.write_project_file("karapace.toml", MANIFEST);
    let k1 = Karapace::new(&first).image_server(server.url());
    let (a, took_a) = build(&k1, &first, &[]);
    let lock = LockInfo::read(&first.project().join("karapace.lock"));
    for name in ["curl", "git", "tcpdump"] {
        assert!(
            lock.packages.contains_key(name),
            "lock without {name}:\n{}",
            lock.text
        );
    }

    // Apart in time: anything that records the clock (seconds and up) now differs.
    std::thread::sleep(Duration::from_secs(3));

    let second = TestDir::new("repro-b");
    second.write_project_file("karapace.toml", MANIFEST);
    fs::write(second.project().join("karapace.lock"), &lock.text)
        .unwrap_or_else(|e| panic!("cannot copy the lock: {e}"));
    let k2 = Karapace::new(&second).image_server(server.url());
    let (b, took_b) = build(&k2, &second, &["--locked"]);
    eprintln!(
        "first build {:.1} s, second (--locked, fresh store) {:.1} s",
        took_a.as_secs_f64(),
        took_b.as_secs_f64()
    );

    assert_eq!(a.base, b.base, "the same image gave two Base layers");
    let (tree_a, tree_b) = (
        a.trees.join(&a.dependencies[0]),
        b.trees.join(&b.dependencies[0]),
    );
    assert!(
        a.dependencies == b.dependencies,
        "the same lock gave two Dependency layers: {} and {}\n{}",
        a.dependencies[0],
        b.dependencies[0],
        explain(&tree_a, &tree_b)
    );
    assert_eq!(a.env_id, b.env_id, "the same lock gave two environments");

    // Build state is left out of the layer, and the environment still works without it.
    for rel in LEFT_OUT {
        assert!(
            fs::symlink_metadata(tree_a.join(rel)).is_err(),
            "{rel} is in the Dependency layer"
        );
    }
    let lists = tree_a.join("var/lib/apt/lists");
    let leftover: Vec<String> = fs::read_dir(&lists)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftover.is_empty(),
        "package lists are in the Dependency layer: {leftover:?}"
    );
    // dpkg's own state stays: the environment knows what is installed.
    assert!(tree_a.join("var/lib/dpkg/status").is_file());
    k2.exec(&b.env_id, &["curl", "--version"]).assert_success();
    k2.exec(&b.env_id, &["git", "--version"]).assert_success();
    // The user tcpdump's postinst added carries the fixed date, not the day of the build.
    let shadow = k2.sh(&b.env_id, "grep '^tcpdump:' /etc/shadow");
    assert_eq!(
        shadow.split(':').nth(2),
        Some(SOURCE_DATE_DAY),
        "useradd did not take SOURCE_DATE_EPOCH: {shadow}"
    );
}

/// One entry of a layer tree, as far as a layer records it.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir(u32),
    File(u32, u64),
    Link(PathBuf),
    Other(u32, u64),
}

/// Every entry below `root`, by relative path (never following a symlink).
fn walk(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = fs::read_dir(root.join(&dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let rel = dir.join(e.file_name());
            let Ok(m) = fs::symlink_metadata(root.join(&rel)) else {
                continue;
            };
            let mode = m.permissions().mode() & 0o7777;
            let entry = if m.file_type().is_symlink() {
                Entry::Link(fs::read_link(root.join(&rel)).unwrap_or_default())
            } else if m.is_dir() {
                todo.push(rel.clone());
                Entry::Dir(mode)
            } else if m.is_file() {
                Entry::File(mode, m.len())
            } else {
                Entry::Other(mode, m.rdev())
            };
            out.insert(rel, entry);
        }
    }
    out
}

/// Whether two files hold the same bytes (layer files are at most a few tens of MiB).
fn same_bytes(a: &Path, b: &Path) -> bool {
    match (fs::read(a), fs::read(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Which files differ between two layer trees, and how.
fn explain(a: &Path, b: &Path) -> String {
    if !a.is_dir() || !b.is_dir() {
        return format!(
            "(cannot compare: tree {} or {} is not unpacked)",
            a.display(),
            b.display()
        );
    }
    let (ta, tb) = (walk(a), walk(b));
    let mut lines = Vec::new();
    for (rel, ea) in &ta {
        match tb.get(rel) {
            None => lines.push(format!("  only in the first:  {} {ea:?}", rel.display())),
            Some(eb) if eb != ea => {
                lines.push(format!("  differs: {} {ea:?} vs {eb:?}", rel.display()));
            }
            Some(Entry::File(..)) if !same_bytes(&a.join(rel), &b.join(rel)) => {
                lines.push(format!("  content differs: {}", rel.display()));
            }
            Some(_) => {}
        }
    }
    for (rel, eb) in &tb {
        if !ta.contains_key(rel) {
            lines.push(format!("  only in the second: {} {eb:?}", rel.display()));
        }
    }
    let total = lines.len();
    lines.truncate(200);
    format!(
        "{total} differences between {} and {}:\n{}",
        a.display(),
        b.display(),
        lines.join("\n")
    )
}
