//! Deterministic layer tars for Karapace: pack a directory into a tar stream and unpack one safely.
//!
//! Packing: entries sorted by path bytes, mtime 0, uid/gid 0 (the invoking user is root
//! inside a rootless environment), permission bits kept except setuid/setgid on regular files
//! (never part of a layer; xattrs such as file capabilities are never packed either),
//! symlinks kept, hardlinks kept as
//! links (tracked by dev+ino), regular files streamed. Overlay whiteouts (char device 0:0 or
//! a file carrying an `overlay.whiteout` xattr) become OCI `.wh.<name>` entries; opaque
//! directories get a `<dir>/.wh..wh..opq` entry. Sockets are skipped (they are runtime
//! artefacts, never content).
//!
//! Unpacking streams entry by entry and refuses anything that could write outside the
//! target: absolute paths, `..`, entries below a symlinked parent, hard links leaving the
//! tree, relative symlinks that resolve above the root (resolved through the symlinks of the
//! tree, during extraction and once more over the finished tree), and (unless told to skip
//! them) device nodes and fifos. Set-id bits are dropped from regular files unless asked to
//! keep them. Before the `tar` crate sees a byte, [`ArchiveGuard`] follows the 512-byte block
//! structure and refuses long-name, long-link and pax headers over [`MAX_META_ENTRY`] (the
//! crate would read them into memory whole) and archives over the [`ArchiveLimits`]. Trees
//! produced here must be read with no-follow semantics (`lstat`): absolute symlinks are kept
//! because they resolve inside the environment's root at run time.
//!
//! Its own crate so that what only needs tars (base images) does not depend on the store.
//! Modules: [`pack`] (a directory into a tar), [`unpack`] (a tar into a directory, refusing
//! whatever could escape it), [`whiteout`] (overlayfs and OCI whiteouts), [`guard`] (the
//! archive's block structure and size limits, checked before the `tar` crate reads it) and
//! [`fs`] (the no-follow file-system primitives they share with the store).
//!
//! ```no_run
//! use karapace_tar::{UnpackOptions, pack_dir, unpack};
//! let (tar, _stats) = pack_dir(std::path::Path::new("tree"), Vec::new())?;
//! unpack(&tar[..], std::path::Path::new("copy"), UnpackOptions::default())?;
//! # Ok::<(), karapace_tar::TarError>(())
//! ```
#![deny(unsafe_code)]

pub mod error;
pub mod fs;
pub mod guard;
mod owners;
pub mod pack;
pub mod unpack;
pub mod whiteout;
mod worker;

pub use error::{Result, TarError};
pub use guard::{ArchiveGuard, ArchiveLimits, MAX_META_ENTRY};
pub use owners::Owners;
pub use pack::{PackStats, pack_dir, pack_dir_with};
pub use unpack::{UnpackOptions, UnpackStats, unpack};
pub use whiteout::{
    OPAQUE_MARKER, OPAQUE_XATTRS, STORE_OPAQUE_XATTR, WHITEOUT_PREFIX, WHITEOUT_XATTRS,
    WhiteoutMode,
};
pub use worker::{InProcess, UnpackWorker};
