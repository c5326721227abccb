//! Who unpacks: this process, or a worker that runs where an environment's ids are mapped.

use crate::error::Result;
use crate::owners::Owners;
use crate::unpack::{UnpackOptions, UnpackStats, unpack};
use std::io::Read;
use std::path::Path;

/// Unpacks tars into trees whose files may belong to an environment's ids. The store's
/// `TreeWorker`s are ones (a worker in the environment's user namespace keeps the recorded
/// owners; this process alone gives every file to its user); base images are extracted
/// through one, without depending on the store.
pub trait UnpackWorker {
    /// What unpacking does with the owners the archive records.
    fn owners(&self) -> Owners;
    /// Unpacks the tar read from `from` into the existing directory `dest`.
    fn unpack_tar(
        &self,
        from: &mut dyn Read,
        dest: &Path,
        opts: UnpackOptions,
    ) -> Result<UnpackStats>;
}

/// Unpacking in this process, with the owners `owners` says.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess {
    pub owners: Owners,
}

impl UnpackWorker for InProcess {
    fn owners(&self) -> Owners {
        self.owners
    }

    fn unpack_tar(
        &self,
        from: &mut dyn Read,
        dest: &Path,
        opts: UnpackOptions,
    ) -> Result<UnpackStats> {
        unpack(
            from,
            dest,
            UnpackOptions {
                owners: self.owners,
                ..opts
            },
        )
    }
}
