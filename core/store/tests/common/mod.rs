//! Shared fixtures for the store's integration tests.
#![allow(dead_code)]

use karapace_store::{EnvMetadata, EnvState, LayerHash, LayerKind, Store};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub fn env_id(name: &str) -> String {
    blake3::hash(name.as_bytes()).to_hex().to_string()
}

pub fn write(path: &Path, content: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, content).unwrap();
}

/// A small rootfs-like tree.
pub fn base_tree(dir: &Path) {
    write(&dir.join("etc/os-release"), b"ID=test\n");
    write(&dir.join("etc/hostname"), b"base\n");
    write(&dir.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n");
    fs::set_permissions(dir.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    write(&dir.join("usr/share/doc/a.txt"), b"doc a");
    write(&dir.join("usr/share/doc/b.txt"), b"doc b");
    write(&dir.join("opt/app/data/x"), b"x");
    std::os::unix::fs::symlink("/usr/bin/tool", dir.join("usr/bin/alias")).unwrap();
}

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub store: Store,
    pub base: LayerHash,
}

pub fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store-root");
    let store = Store::open_or_init(&root).unwrap();
    let src = tmp.path().join("base-src");
    fs::create_dir(&src).unwrap();
    base_tree(&src);
    let base = store
        .import_layer_dir(&src, LayerKind::Base, None)
        .unwrap()
        .hash;
    Fixture {
        tmp,
        root,
        store,
        base,
    }
}

pub fn meta(name: &str, base: &str, state: EnvState) -> EnvMetadata {
    EnvMetadata {
        env_id: env_id(name).parse().unwrap(),
        short_id: String::new(),
        name: Some(name.to_string()),
        state,
        manifest_hash: blake3::hash(b"manifest").to_hex().to_string(),
        base_layer: base.parse().unwrap(),
        dependency_layers: vec![],
        policy_layer: None,
        created_at: String::new(),
        updated_at: String::new(),
        checksum: String::new(),
    }
}

pub fn make_env(store: &Store, name: &str, base: &str) -> String {
    store.create_env(meta(name, base, EnvState::Built)).unwrap();
    env_id(name)
}

/// Sorted listing of a tree: (relative path, kind/mode/content summary).
pub fn snapshot_tree(dir: &Path) -> Vec<(String, String)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let ft = m.file_type();
            let desc = if ft.is_dir() {
                stack.push(p.clone());
                let opq = xattr::get(&p, "user.overlay.opaque")
                    .ok()
                    .flatten()
                    .is_some();
                format!("dir {:o} opaque={opq}", m.mode() & 0o7777)
            } else if ft.is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_char_device() {
                format!("chr {}", m.rdev())
            } else {
                format!(
                    "file {:o} {}",
                    m.mode() & 0o7777,
                    blake3::hash(&fs::read(&p).unwrap()).to_hex()
                )
            };
            out.push((rel, desc));
        }
    }
    out.sort();
    out
}

/// Entries in the store's tmp dir and any restore staging left behind.
pub fn leftovers(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root.join("store/tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.extend(
        fs::read_dir(root.join("store/wal"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    if let Ok(rd) = fs::read_dir(root.join("env")) {
        for e in rd {
            let e = e.unwrap();
            for n in ["upper.restore", "upper.old"] {
                let p = e.path().join(n);
                if p.exists() {
                    v.push(p);
                }
            }
        }
    }
    v
}
