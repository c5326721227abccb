//! Store directories are private whatever the umask (its own binary: the umask is
//! process-wide).

use karapace_store::Store;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn store_directories_are_private_under_an_open_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("share/karapace");
    let store = Store::open_or_init(&root).unwrap();
    let staging = store.staging_dir().unwrap();
    for d in [
        "",
        "store",
        "store/objects",
        "store/layers",
        "store/metadata",
        "store/trees",
        "store/wal",
        "store/tmp",
        "store/staging",
        "env",
    ] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d:?}");
    }
    assert_eq!(mode(staging.path()), 0o700);
    // Above the store: the user's own directories, not the store's business.
    assert_eq!(mode(&t.path().join("share")), 0o777);
}
