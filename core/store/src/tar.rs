//! The store's layer tars: [`karapace_tar`] (packing, safe unpacking, whiteouts, the archive
//! guard), failing with the store's own errors (each [`karapace_tar::TarError`] becomes the
//! [`StoreError`] of the same name and message).

use crate::error::{Result, StoreError};
use std::io::{Read, Write};
use std::path::Path;

pub use karapace_tar::{
    ArchiveGuard, ArchiveLimits, MAX_META_ENTRY, OPAQUE_MARKER, OPAQUE_XATTRS, Owners, PackStats,
    STORE_OPAQUE_XATTR, UnpackOptions, UnpackStats, WHITEOUT_PREFIX, WHITEOUT_XATTRS, WhiteoutMode,
};

/// [`karapace_tar::pack_dir`]: every entry owned by 0:0.
pub fn pack_dir<W: Write>(dir: &Path, out: W) -> Result<(W, PackStats)> {
    karapace_tar::pack_dir(dir, out).map_err(StoreError::from)
}

/// [`karapace_tar::pack_dir_with`]: owners recorded as `owners` says.
pub fn pack_dir_with<W: Write>(dir: &Path, out: W, owners: Owners) -> Result<(W, PackStats)> {
    karapace_tar::pack_dir_with(dir, out, owners).map_err(StoreError::from)
}

/// [`karapace_tar::unpack`]: a tar stream into `dest` (which must exist).
pub fn unpack<R: Read>(r: R, dest: &Path, opts: UnpackOptions) -> Result<UnpackStats> {
    karapace_tar::unpack(r, dest, opts).map_err(StoreError::from)
}
