//! The trash (`store/trash/`): trees that are garbage from the moment they arrive, removed later,
//! off the critical path of the operation that discarded them.
//!
//! `restore` moves the environment's old writable layer here with one rename once the restored
//! one is in place, instead of deleting tens of thousands of files inside the operation. Nothing
//! in the store refers to the trash: gc, verify, diff and usage of environments never read it,
//! and whatever is in it may be removed at any time by whoever empties it.
//!
//! Emptying needs no store lock. Emptiers take turns on a `flock` of the trash directory itself,
//! without waiting: a second emptier returns at once rather than fight over the same files or
//! hold up its command. A crash while emptying leaves the rest for the next emptier (gc, the
//! recovery after an interrupted operation, or the CLI after `restore` has printed its result).
//! Files of the environment's subordinate ids go to the store's [`crate::TreeWorker`] by way of
//! `store/staging` (see [`Store::remove_discarded`]).

use crate::crash::crash_point;
use crate::error::{Result, StoreError, io_at};
use crate::fsutil::{create_dir_all_private, exists_nofollow, fsync_dir, unique_name};
use crate::store::Store;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

impl Store {
    /// Discards `tree` (garbage from now on: the caller is past its operation's commit point) by
    /// moving it into the trash with one rename. Where it cannot move — another file system, or
    /// a directory whose owner may not move it (renaming a directory into another one needs
    /// write permission on it, and a workload may have taken that away) — it is removed in place,
    /// as before the trash existed.
    pub(crate) fn discard_tree(&self, tree: &Path) -> Result<()> {
        if !exists_nofollow(tree) {
            return Ok(());
        }
        let parent = tree.parent().unwrap_or(Path::new("/"));
        let trash = &self.layout.trash;
        create_dir_all_private(trash).map_err(io_at("create", trash))?;
        let dest = trash.join(unique_name("tree"));
        let mut moved = fs::rename(tree, &dest);
        if matches!(&moved, Err(e) if e.kind() == io::ErrorKind::PermissionDenied) {
            // The tree is garbage: giving its top directory back its owner's write permission
            // changes nothing anyone will read. Fails harmlessly on a directory of another owner.
            if fs::set_permissions(tree, fs::Permissions::from_mode(0o700)).is_ok() {
                moved = fs::rename(tree, &dest);
            }
        }
        if moved.is_ok() {
            fsync_dir(trash)?;
            fsync_dir(parent)?;
            crash_point("trash.after_move");
        } else {
            self.remove_tree_parallel(tree)?;
            fsync_dir(parent)?;
        }
        Ok(())
    }

    /// Removes everything in the trash, unless another process is emptying it right now (then
    /// it returns at once with `Ok(0)`). Takes no store lock and never waits for one, so it
    /// holds up no other command. Returns how many discarded trees it removed.
    pub fn empty_trash(&self) -> Result<usize> {
        let trash = &self.layout.trash;
        let dir = match File::open(trash) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_at("open", trash)(e)),
        };
        let _claim = match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(held) => held,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(0),
            Err((_, e)) => {
                return Err(StoreError::Lock(format!("flock {}: {e}", trash.display())));
            }
        };
        let mut removed = 0;
        for entry in fs::read_dir(trash).map_err(io_at("read", trash))? {
            let entry = entry.map_err(io_at("read", trash))?;
            self.remove_discarded(&entry.path())?;
            removed += 1;
            if removed == 1 {
                crash_point("trash.mid_empty");
            }
        }
        if removed > 0 {
            fsync_dir(trash)?;
        }
        Ok(removed)
    }

    /// Removes one discarded tree: by the store owner alone when that works; else (files of the
    /// environment's subordinate ids) by the [`crate::TreeWorker`], after moving the tree into
    /// `store/staging` under a name recording this process — the helper removes trees only
    /// there, in the tree cache and in environments, and should this process die before the
    /// worker is done, the recovery that removes dead processes' staging directories finishes.
    fn remove_discarded(&self, tree: &Path) -> Result<()> {
        match crate::fsutil::remove_tree_if_exists(tree) {
            Err(e) if e.is_permission_denied() => {
                let staging = &self.layout.staging;
                create_dir_all_private(staging).map_err(io_at("create", staging))?;
                let pid = std::process::id();
                let start = crate::sessions::process_start_time(pid).unwrap_or(0);
                let claimed = staging.join(format!("{pid}-{start}-{}", unique_name("trash")));
                fs::rename(tree, &claimed).map_err(io_at("move out of the trash", tree))?;
                self.tree_worker().remove(&claimed).map(drop)
            }
            r => r.map(drop),
        }
    }

    /// Allocated bytes of what is in the trash (gc counts them among what it frees).
    pub(crate) fn trash_bytes(&self) -> u64 {
        crate::usage::tree_bytes(&self.layout.trash).saturating_sub(
            fs::symlink_metadata(&self.layout.trash).map_or(0, |m| {
                std::os::unix::fs::MetadataExt::blocks(&m).saturating_mul(512)
            }),
        )
    }
}
