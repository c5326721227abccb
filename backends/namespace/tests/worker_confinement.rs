//! The tree worker sees nothing but the store: a job cannot change the mode, owner or times of
//! a file of the caller's outside the store (Landlock alone would not stop that), nor read it.
//! Run without the test harness: the worker forks, which needs a single-threaded process.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use karapace_backend_namespace::{IdMap, worker};
use karapace_protocol::{TreeFailure, TreeStats};

fn main() {
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let Ok(map) = IdMap::full(uid, gid) else {
        eprintln!("skipped: no full id maps for this user (no subordinate range)");
        return;
    };
    let base = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(base.path()).expect("canonical");
    let store = root.join("store");
    std::fs::create_dir(&store).expect("mkdir");
    let outside = root.join("outside");
    std::fs::write(&outside, "secret").expect("write");
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let before = std::fs::metadata(&outside).expect("stat");

    let target = outside.clone();
    let report = worker::run(map, &store, true, move || {
        let mut reached = Vec::new();
        for path in [target.clone(), Path::new("/../outside").to_path_buf()] {
            if std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).is_ok() {
                reached.push(format!("chmod {}", path.display()));
            }
            if std::os::unix::fs::lchown(&path, Some(5), Some(5)).is_ok() {
                reached.push(format!("chown {}", path.display()));
            }
            if std::fs::read(&path).is_ok() {
                reached.push(format!("read {}", path.display()));
            }
        }
        // The store itself is the worker's root.
        if std::fs::write("/written-by-the-worker", "x").is_err() {
            reached.push("nothing: cannot write its own store".into());
        }
        if reached.is_empty() {
            Ok(TreeStats::default())
        } else {
            Err(TreeFailure::Other(reached.join(", ")))
        }
    });
    assert!(
        report.is_ok(),
        "the worker reached outside the store: {report:?}"
    );
    let after = std::fs::metadata(&outside).expect("stat");
    assert_eq!(
        (after.mode(), after.uid(), after.gid(), after.mtime()),
        (before.mode(), before.uid(), before.gid(), before.mtime()),
        "the file outside the store changed"
    );
    assert!(
        store.join("written-by-the-worker").exists(),
        "the job ran in the store"
    );
    // The worker's parent lets go of stdout (its tar stream): report on stderr.
    eprintln!("test worker_confinement ... ok");
}
