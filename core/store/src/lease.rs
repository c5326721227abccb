//! Build leases. A build imports its layers before the environment that references them exists,
//! so for a while they look like garbage. Every build holds a lease (a shared `flock` on
//! `store/build.lock`) from its first import until its metadata is written; gc takes the same lock
//! exclusively, so it waits for running builds and never collects their layers. Builds never wait
//! for each other.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Result, StoreError};
use crate::store::Store;

/// Held for the duration of a build (see the module docs). Released on drop.
#[derive(Debug)]
pub struct BuildLease {
    _lock: Flock<File>,
}

impl Store {
    /// Takes a build lease (shared; blocks only while gc runs).
    pub fn build_lease(&self) -> Result<BuildLease> {
        self.lease(FlockArg::LockShared)
    }

    /// The exclusive side, for gc: waits until no build holds a lease.
    pub(crate) fn gc_lease(&self) -> Result<BuildLease> {
        self.lease(FlockArg::LockExclusive)
    }

    fn lease(&self, arg: FlockArg) -> Result<BuildLease> {
        let path = self.layout.store.join("build.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::Lock(format!("cannot open {}: {e}", path.display())))?;
        let lock = Flock::lock(file, arg)
            .map_err(|(_, e)| StoreError::Lock(format!("cannot lock {}: {e}", path.display())))?;
        Ok(BuildLease { _lock: lock })
    }
}
