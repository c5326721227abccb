//! Who works on the store's trees (layer trees, environment uppers, build scratch trees).
//!
//! When environments keep their files' owners, a tree holds files of the environment's
//! subordinate ids: its owner can neither read all of them, nor give a file another owner,
//! nor always remove them. Those jobs then go to a [`TreeWorker`] that runs where the
//! environment's ids are mapped (the engine hands the store one that asks the helper, see
//! `core/src/engine/trees.rs`). Everything else in the store stays plain file-system code.
//!
//! The store never follows a link inside a tree: packing opens with no-follow semantics and
//! removal unlinks links themselves.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

use crate::error::Result;
use crate::fsutil::{clear_set_id, settle_times};
use crate::tar::{Owners, PackStats, UnpackOptions, UnpackStats, pack_dir_with};
use karapace_tar::UnpackWorker;

/// Packs, unpacks and removes trees whose files may belong to the environment's ids.
pub trait TreeWorker: fmt::Debug {
    /// What layers record about owners (and so what unpacking restores).
    fn owners(&self) -> Owners;
    /// Writes the deterministic layer tar of `dir` to `out`. With `adopt`, `dir` is about to
    /// become a layer tree as it is: it first loses its setuid/setgid bits and file
    /// capabilities, and every entry gets the tree time, as if unpacked from the layer.
    fn pack(&self, dir: &Path, adopt: bool, out: &mut dyn Write) -> Result<PackStats>;
    /// Unpacks the tar read from `from` into the existing directory `dest`.
    fn unpack(&self, from: &mut dyn Read, dest: &Path, opts: UnpackOptions) -> Result<UnpackStats>;
    /// Removes `path` and everything beneath it; `Ok(false)` when nothing was there.
    fn remove(&self, path: &Path) -> Result<bool>;
    /// Compares the writable layer `upper` with the layer trees `lowers` (top first): sessions
    /// that were root inside may have left directories only their owners can read.
    fn diff(&self, upper: &Path, lowers: &[std::path::PathBuf]) -> Result<crate::Diff> {
        crate::diff_trees(upper, lowers)
    }
}

/// The worker of a store whose owner can do every job alone: its environments either give
/// every file to the store owner ([`Owners::Collapse`]), or map every id to itself because
/// the owner is root ([`Owners::Keep`]).
pub use karapace_tar::InProcess;

impl TreeWorker for InProcess {
    fn owners(&self) -> Owners {
        self.owners
    }

    fn pack(&self, dir: &Path, adopt: bool, out: &mut dyn Write) -> Result<PackStats> {
        if adopt {
            clear_set_id(dir)?;
            settle_times(dir)?;
        }
        let (_, stats) = pack_dir_with(dir, out, self.owners)?;
        Ok(stats)
    }

    fn unpack(&self, from: &mut dyn Read, dest: &Path, opts: UnpackOptions) -> Result<UnpackStats> {
        Ok(UnpackWorker::unpack_tar(self, from, dest, opts)?)
    }

    fn remove(&self, path: &Path) -> Result<bool> {
        crate::fsutil::remove_tree_if_exists(path)
    }
}

/// A store's worker unpacks for those who need only that (base images, `karapace-images`).
impl UnpackWorker for dyn TreeWorker + Send + Sync {
    fn owners(&self) -> Owners {
        TreeWorker::owners(self)
    }

    fn unpack_tar(
        &self,
        from: &mut dyn Read,
        dest: &Path,
        opts: UnpackOptions,
    ) -> karapace_tar::Result<UnpackStats> {
        Ok(TreeWorker::unpack(self, from, dest, opts)?)
    }
}

/// Removes a tree: by the store owner alone when that works (the common case, and the fast
/// one), else by `worker` (files of subordinate ids in directories the owner may not write).
pub(crate) fn remove_tree(worker: &dyn TreeWorker, path: &Path) -> Result<bool> {
    match crate::fsutil::remove_tree_if_exists(path) {
        Err(e) if e.is_permission_denied() => worker.remove(path),
        r => r,
    }
}

/// [`remove_tree`], removing big trees on every core when the owner may.
pub(crate) fn remove_tree_parallel(worker: &dyn TreeWorker, path: &Path) -> Result<bool> {
    match crate::fsutil::remove_tree_parallel(path) {
        Err(e) if e.is_permission_denied() => worker.remove(path),
        r => r,
    }
}
