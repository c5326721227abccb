//! Lock v2: layout, round trip, atomic write, integrity and intent checks.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use karapace_schema::{
    Backend, EnvId, LockError, LockFile, MountSpec, NormalizedManifest, ResolvedPackage,
    parse_manifest,
};

fn pkg(name: &str, version: &str) -> ResolvedPackage {
    ResolvedPackage {
        name: name.into(),
        version: version.into(),
    }
}

fn normalized(text: &str) -> NormalizedManifest {
    parse_manifest(text).unwrap().normalize().unwrap()
}

/// The manifest of golden vector 8 (formats.md), written as a user would.
const GOLDEN8_MANIFEST: &str = r#"manifest_version = 1
[base]
image = "debian/bookworm"
[system]
packages = ["curl"]
[gui]
apps = ["vlc"]
[hardware]
gpu = true
audio = true
[mounts]
data = "/mnt/data:/data"
[runtime]
network_isolation = true
[runtime.resource_limits]
cpu_shares = 2048
memory_limit_mb = 8192
"#;
const GOLDEN8_ID: &str = "44f9547036b4f24f8fe32844f2672804020c6260e29b7f72e17fd29d441ebc27";

fn golden8() -> LockFile {
    LockFile::from_resolved(
        &normalized(GOLDEN8_MANIFEST),
        "sha256:abc123",
        vec![pkg("curl", "7.88.1")],
    )
}

#[test]
fn manifest_to_lock_reproduces_golden_vector_8() {
    let lock = golden8();
    assert_eq!(lock.env_id, GOLDEN8_ID);
    assert_eq!(lock.short_id, "44f9547036b4");
    assert_eq!(lock.lock_version, 2);
    lock.verify_integrity().unwrap();
    lock.verify_intent(&normalized(GOLDEN8_MANIFEST)).unwrap();
}

#[test]
fn manifest_to_lock_reproduces_golden_vectors_1_and_7() {
    let m =
        normalized("manifest_version = 1\n[base]\nimage = \"x\"\n[runtime]\nbackend = \"MOCK\"\n");
    let lock = LockFile::from_resolved(&m, "sha256:abc123", vec![]);
    assert_eq!(
        lock.env_id,
        "aabaeaeda3b27db42054f64719a16afd49e72b4fc6e8493e2fce9d862d240806"
    );
    // Vector 7 hashes apps in lock order "firefox, code"; a lock written that
    // way (not by from_resolved, which sorts) must still verify.
    let mut lock7 = lock.clone();
    lock7.resolved_apps = vec!["firefox".into(), "code".into()];
    lock7.env_id =
        EnvId::parse("1aaf066c7b1e18178e838b0cf33c0bc67cd7401e586df826daa9033178ccfdf3").unwrap();
    lock7.short_id = lock7.env_id.short_id().into();
    lock7.verify_integrity().unwrap();
}

#[test]
fn from_resolved_sorts_by_name_then_version() {
    let m = normalized(
        "manifest_version = 1\n[base]\nimage = \"d\"\n[system]\npackages = [\"b\", \"a\"]\n",
    );
    let lock = LockFile::from_resolved(
        &m,
        "sha256:x",
        vec![
            pkg("b", "2"),
            pkg("a", "2"),
            pkg("a", "10"),
            pkg("b", "2"),
            pkg("A", "1"),
        ],
    );
    assert_eq!(
        lock.resolved_packages,
        [pkg("A", "1"), pkg("a", "10"), pkg("a", "2"), pkg("b", "2")]
    );
    lock.verify_integrity().unwrap();
}

#[test]
fn exact_layout_full() {
    let expected = format!(
        r#"lock_version = 2
env_id = "{GOLDEN8_ID}"
short_id = "44f9547036b4"
base_image = "debian/bookworm"
base_image_digest = "sha256:abc123"
resolved_apps = ["vlc"]
runtime_backend = "namespace"
hardware_gpu = true
hardware_audio = true
network_isolation = true
cpu_shares = 2048
memory_limit_mb = 8192

[[resolved_packages]]
name = "curl"
version = "7.88.1"

[[mounts]]
label = "data"
host_path = "/mnt/data"
container_path = "/data"
"#
    );
    assert_eq!(golden8().to_toml_string(), expected);
}

#[test]
fn exact_layout_minimal_omits_absent_limits() {
    let m =
        normalized("manifest_version = 1\n[base]\nimage = \"d\"\n[runtime]\nbackend = \"mock\"\n");
    let lock = LockFile::from_resolved(&m, "sha256:abc123", vec![]);
    let text = lock.to_toml_string();
    assert_eq!(
        text,
        format!(
            "lock_version = 2\nenv_id = \"{id}\"\nshort_id = \"{short}\"\nbase_image = \"d\"\n\
             base_image_digest = \"sha256:abc123\"\nresolved_packages = []\nresolved_apps = []\n\
             runtime_backend = \"mock\"\nhardware_gpu = false\nhardware_audio = false\n\
             network_isolation = false\nmounts = []\n",
            id = lock.env_id,
            short = lock.short_id
        )
    );
    assert!(!text.contains("cpu_shares") && !text.contains("memory_limit_mb"));
}

#[test]
fn round_trip_through_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("karapace.lock");
    let mut lock = golden8();
    lock.resolved_packages
        .push(pkg("weird\"name\\", "1:2.3~rc1+dfsg-1\u{1}é"));
    lock.base_image = "https://例え.jp/a b.tar.xz".into();
    lock.write_atomic(&path).unwrap();
    assert_eq!(LockFile::read(&path).unwrap(), lock);

    // Only the lock is left behind, readable by others, and overwriting keeps its mode.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["karapace.lock"]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o644);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    golden8().write_atomic(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(LockFile::read(&path).unwrap(), golden8());
}

#[test]
fn write_into_missing_directory_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/karapace.lock");
    let e = golden8().write_atomic(&path).unwrap_err();
    assert!(matches!(e, LockError::Write { .. }), "{e:?}");
}

#[test]
fn missing_lock_is_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = LockFile::read(&dir.path().join("karapace.lock")).unwrap_err();
    assert!(matches!(e, LockError::Missing { .. }), "{e:?}");
    let e = LockFile::read(dir.path()).unwrap_err();
    assert!(matches!(e, LockError::Read { .. }), "{e:?}");
}

#[test]
fn reads_locks_in_other_valid_toml_layouts() {
    // Inline tables and a different key order are the same lock.
    let text = format!(
        r#"lock_version = 2
short_id = "44f9547036b4"
env_id = "{GOLDEN8_ID}"
base_image = "debian/bookworm"
base_image_digest = "sha256:abc123"
resolved_packages = [{{ name = "curl", version = "7.88.1" }}]
resolved_apps = ["vlc"]
runtime_backend = "namespace"
hardware_gpu = true
hardware_audio = true
network_isolation = true
mounts = [{{ label = "data", host_path = "/mnt/data", container_path = "/data" }}]
cpu_shares = 2048
memory_limit_mb = 8192
"#
    );
    let lock = LockFile::parse(&text).unwrap();
    assert_eq!(lock, golden8());
    // Optional keys may be absent.
    let m = normalized("manifest_version = 1\n[base]\nimage = \"d\"\n");
    let bare = LockFile::from_resolved(&m, "sha256:abc123", vec![]);
    let text = bare
        .to_toml_string()
        .replace("resolved_packages = []\n", "")
        .replace("mounts = []\n", "");
    assert_eq!(LockFile::parse(&text).unwrap(), bare);
}

fn parse_err(text: &str) -> ((usize, usize), String) {
    match LockFile::parse(text) {
        Err(e @ LockError::Parse { .. }) => (e.line_col().unwrap(), e.to_string()),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn parse_errors_have_positions() {
    let good = golden8().to_toml_string();
    let ((l, c), msg) = parse_err(&good.replace("hardware_gpu = true", "hardware_gpu = \"yes\""));
    assert_eq!((l, c), (8, 16));
    assert!(msg.contains("expected a boolean"), "{msg}");
    let ((l, c), msg) = parse_err(&good.replace(
        "network_isolation = true",
        "network_isolation = true\nextra = 1",
    ));
    assert_eq!((l, c), (11, 1));
    assert!(msg.contains("unknown field `extra`"), "{msg}");
    let ((l, c), msg) = parse_err(&good.replace("\"namespace\"", "\"docker\""));
    assert_eq!((l, c), (7, 19));
    assert!(msg.contains("docker"), "{msg}");
    let ((l, _), _) = parse_err(&good.replace("version = \"7.88.1\"", "version = 7"));
    assert_eq!(l, 16);
    let ((l, _), msg) = parse_err(&good.replace("lock_version = 2", "lock_version = \"2\""));
    assert_eq!(l, 1, "{msg}");
    let (_, msg) = parse_err(&good.replace("lock_version = 2\n", ""));
    assert!(msg.contains("missing field `lock_version`"), "{msg}");
    let (_, msg) = parse_err("lock_version = 2\n[[\n");
    assert!(!msg.is_empty());

    // Through a file, the path is in the message.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("karapace.lock");
    std::fs::write(
        &path,
        good.replace("hardware_gpu = true", "hardware_gpu = 1"),
    )
    .unwrap();
    let e = LockFile::read(&path).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:8:16: ", path.display())),
        "{e}"
    );
}

#[test]
fn other_lock_versions_are_unsupported() {
    for v in [1, 3, 0, -2] {
        // Even with keys this version does not know: the version is checked first.
        let text = format!("lock_version = {v}\nsomething_else = true\n");
        match LockFile::parse(&text) {
            Err(LockError::UnsupportedVersion { found }) => assert_eq!(found, v),
            other => panic!("{v}: {other:?}"),
        }
    }
}

#[test]
fn integrity_detects_any_tampered_field() {
    let good = golden8();
    good.verify_integrity().unwrap();
    let tampers: Vec<fn(&mut LockFile)> = vec![
        |l| l.resolved_packages[0].version = "7.88.2".into(),
        |l| l.resolved_packages.push(pkg("zsh", "5")),
        |l| l.base_image_digest = "sha256:abc124".into(),
        |l| l.resolved_apps.clear(),
        |l| l.hardware_gpu = false,
        |l| l.hardware_audio = false,
        |l| l.mounts[0].container_path = "/srv".into(),
        |l| l.runtime_backend = Backend::Mock,
        |l| l.network_isolation = false,
        |l| l.cpu_shares = None,
        |l| l.memory_limit_mb = Some(1),
        |l| l.env_id = EnvId::parse(&"0".repeat(64)).unwrap(),
    ];
    for (i, tamper) in tampers.iter().enumerate() {
        let mut lock = good.clone();
        tamper(&mut lock);
        match lock.verify_integrity() {
            Err(LockError::IntegrityMismatch { expected, actual }) => {
                assert_eq!(actual, lock.env_id.as_str(), "tamper {i}");
                assert_eq!(expected, lock.compute_env_id().as_str(), "tamper {i}");
                assert_ne!(expected, actual);
            }
            other => panic!("tamper {i}: {other:?}"),
        }
    }
    // base_image is not an identity input (the digest is), so it is not integrity-checked.
    let mut lock = good.clone();
    lock.base_image = "debian".into();
    lock.verify_integrity().unwrap();
    // A short_id that does not match the env_id is caught too.
    let mut lock = good;
    lock.short_id = "000000000000".into();
    assert!(matches!(
        lock.verify_integrity(),
        Err(LockError::IntegrityMismatch { .. })
    ));
}

type Change = fn(&mut NormalizedManifest);

#[test]
fn intent_names_the_field_that_differs() {
    let lock = golden8();
    let m = normalized(GOLDEN8_MANIFEST);
    let cases: Vec<(&str, Change)> = vec![
        ("base image", |m| m.base_image = "ubuntu".into()),
        ("runtime backend", |m| m.runtime_backend = Backend::Oci),
        ("hardware.gpu", |m| m.hardware_gpu = false),
        ("hardware.audio", |m| m.hardware_audio = false),
        ("runtime.network_isolation", |m| m.network_isolation = false),
        ("system packages", |m| m.system_packages.push("git".into())),
        ("gui apps", |m| m.gui_apps.push("gimp".into())),
        ("mounts", |m| {
            m.mounts.push(MountSpec {
                label: "z".into(),
                host_path: "/z".into(),
                container_path: "/z".into(),
            });
        }),
        ("runtime.resource_limits.cpu_shares", |m| {
            m.cpu_shares = Some(1);
        }),
        ("runtime.resource_limits.memory_limit_mb", |m| {
            m.memory_limit_mb = None;
        }),
    ];
    for (field, change) in cases {
        let mut changed = m.clone();
        change(&mut changed);
        match lock.verify_intent(&changed) {
            Err(e @ LockError::IntentMismatch { .. }) => {
                let LockError::IntentMismatch { what, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(what, field);
                assert!(e.to_string().contains(field), "{e}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut changed = m.clone();
    changed.system_packages.push("git".into());
    let e = lock.verify_intent(&changed).unwrap_err();
    assert!(e.to_string().contains("\"git\""), "{e}");
    // Extra locked packages are fine: a resolver may lock more than was asked
    // for (apk's query lists everything installed).
    let mut more = lock.clone();
    more.resolved_packages.push(pkg("libcurl4", "7.88.1"));
    more.verify_intent(&m).unwrap();
}

#[test]
fn lock_errors_are_exit_code_one() {
    assert_eq!(LockError::EXIT_CODE, 1);
}
