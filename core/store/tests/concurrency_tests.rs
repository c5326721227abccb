//! Several handles (each with its own lock file description, like separate processes)
//! mutating one store at once never corrupt it.

mod common;

use common::{env_id, leftovers, meta, write};
use karapace_store::{EnvState, Store, StoreError};
use std::path::PathBuf;

#[test]
fn eight_handles_mutating_concurrently() {
    let f = common::fixture();
    let root: PathBuf = f.root.clone();
    let base = f.base.clone();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let root = root.clone();
            let base = base.clone();
            std::thread::spawn(move || {
                let s = Store::open(&root).unwrap();
                let name = format!("env{w}");
                s.create_env(meta(&name, &base, EnvState::Built)).unwrap();
                let id = env_id(&name);
                let mut snaps = Vec::new();
                for round in 0..5 {
                    write(
                        &s.env_upper(&id).join(format!("file{round}")),
                        format!("{w}/{round}").as_bytes(),
                    );
                    snaps.push(s.commit(&id).unwrap());
                    // Everyone races for the same name: exactly one may hold it at a time.
                    match s.rename_env(&id, "shared-name") {
                        Ok(()) | Err(StoreError::DuplicateName(_)) => {}
                        Err(e) => panic!("rename: {e}"),
                    }
                    s.rename_env(&id, &name).unwrap();
                    s.restore(&id, &snaps[0]).unwrap();
                    drop(s.gc(round % 2 == 0).unwrap());
                    drop(s.list_envs().unwrap());
                }
                if w % 2 == 0 {
                    s.destroy_env(&id).unwrap();
                }
            })
        })
        .collect();
    for h in workers {
        h.join().unwrap();
    }
    let s = Store::open_or_init(&root).unwrap();
    let envs = s.list_envs().unwrap();
    assert_eq!(envs.len(), 4);
    for m in &envs {
        assert_eq!(s.snapshots(&m.env_id).unwrap().len(), 5);
        assert!(s.env_upper(&m.env_id).join("file0").is_file());
        assert!(
            !s.env_upper(&m.env_id).join("file1").exists(),
            "restored to the first snapshot"
        );
    }
    let v = s.verify().unwrap();
    assert!(v.is_clean(), "{:?}", v.failures);
    assert!(leftovers(&root).is_empty());
}

#[test]
fn store_can_move_between_threads() {
    fn assert_send<T: Send>(_: &T) {}
    let f = common::fixture();
    assert_send(&f.store);
    let root = f.root.clone();
    let s = Store::open(&root).unwrap();
    let n = std::thread::spawn(move || s.list_envs().unwrap().len())
        .join()
        .unwrap();
    assert_eq!(n, 0);
}
