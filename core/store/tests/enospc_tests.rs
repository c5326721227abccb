//! ENOSPC: a commit/import that cannot fit fails with a clear typed error and leaves the
//! store unchanged.
//!
//! Needs root to mount a small tmpfs. Mounting happens here, in test code only: the store
//! itself never mounts anything (that is the helper's job); the test merely needs a small
//! filesystem to fill.

mod common;

use common::{leftovers, make_env, write};
use karapace_store::{LayerKind, Store, StoreError};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn fill(path: &Path, leave: u64) {
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            assert_eq!(
                e.raw_os_error(),
                Some(nix::errno::Errno::ENOSPC as i32),
                "expected ENOSPC, got {e}"
            );
            break;
        }
    }
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
    f.sync_all().unwrap();
}

fn object_count(root: &Path) -> usize {
    let mut n = 0;
    for shard in fs::read_dir(root.join("store/objects")).unwrap() {
        n += fs::read_dir(shard.unwrap().path()).unwrap().count();
    }
    n
}

#[test]
fn enospc_leaves_store_unchanged() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP enospc_leaves_store_unchanged: needs root to mount a tmpfs");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    if let Err(e) = mount(
        Some("tmpfs"),
        &mnt,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=2m"),
    ) {
        println!("SKIP enospc_leaves_store_unchanged: cannot mount tmpfs ({e})");
        return;
    }
    let _guard = Mounted(mnt.clone());
    let root = mnt.join("store");
    let store = Store::open_or_init(&root).unwrap();
    let base_src = t.path().join("base");
    write(&base_src.join("etc/os-release"), b"ID=tiny\n");
    let base = store
        .import_layer_dir(&base_src, LayerKind::Base, None)
        .unwrap()
        .hash;
    let a = make_env(&store, "alpha", &base);
    // Upper content that fits once, but not twice (as the snapshot object).
    let upper = store.env_upper(&a);
    for i in 0..6 {
        let data: Vec<u8> = (0..100 * 1024u32)
            .map(|x| (x.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0] ^ i)
            .collect();
        write(&upper.join(format!("blob{i}")), &data);
    }
    let s1 = store.commit(&a).unwrap();
    for i in 0..6 {
        write(&upper.join(format!("new{i}")), &vec![i; 100 * 1024]);
    }
    fill(&mnt.join("filler"), 64 * 1024);
    let objects_before = object_count(&root);

    let err = store.commit(&a).unwrap_err();
    assert!(matches!(err, StoreError::NoSpace { .. }), "{err:?}");
    assert!(err.to_string().contains("no space"), "{err}");
    assert!(err.is_no_space());
    assert_eq!(store.snapshots(&a).unwrap().len(), 1);
    assert_eq!(
        object_count(&root),
        objects_before,
        "no partial object left"
    );
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));

    let big = t.path().join("big");
    write(&big.join("payload"), &vec![1u8; 512 * 1024]);
    let err = store
        .import_layer_dir(&big, LayerKind::Dependency, Some(&base))
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSpace { .. }), "{err:?}");
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));

    // Restore needs room for the unpacked snapshot: with none left it must fail cleanly and
    // leave the current upper in place.
    let before = common::snapshot_tree(&upper);
    let err = store.restore(&a, &s1).unwrap_err();
    assert!(matches!(err, StoreError::NoSpace { .. }), "{err:?}");
    assert_eq!(common::snapshot_tree(&upper), before);
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));

    let v = store.verify().unwrap();
    assert!(v.is_clean(), "{:?}", v.failures);
    drop(store);
    fs::remove_file(mnt.join("filler")).unwrap();
    let store = Store::open_or_init(&root).unwrap();
    assert!(store.verify().unwrap().is_clean());
    // With room again, the same store keeps working.
    for i in 0..6 {
        fs::remove_file(upper.join(format!("new{i}"))).unwrap();
    }
    assert_eq!(store.commit(&a).unwrap(), s1);
    store.restore(&a, &s1).unwrap();
    assert!(store.verify().unwrap().is_clean());
}
