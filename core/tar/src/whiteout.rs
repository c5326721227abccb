//! Whiteouts: how overlayfs marks a deleted entry or an opaque directory in a writable layer,
//! and how an OCI layer tar records the same (`.wh.<name>`, `.wh..wh..opq`).

use std::fs;
use std::path::Path;

/// OCI whiteout file prefix.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// OCI opaque-directory marker file name.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Xattrs overlayfs uses to mark an opaque directory (privileged and rootless forms).
pub const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];
/// Xattrs marking a regular file as a whiteout (overlayfs ≥ 6.7 "xwhiteouts").
pub const WHITEOUT_XATTRS: [&str; 2] = ["trusted.overlay.whiteout", "user.overlay.whiteout"];
/// The xattr this store writes for opaque directories when converting `.wh..wh..opq`.
///
/// `user.` and not `trusted.`: rootless overlayfs (mounted with `userxattr` inside a user
/// namespace) only reads `user.overlay.*`, and an unprivileged process cannot write
/// `trusted.*` at all.
pub const STORE_OPAQUE_XATTR: &str = "user.overlay.opaque";

/// What to do with OCI whiteout entries (`.wh.<name>`, `.wh..wh..opq`) when unpacking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Turn them back into overlayfs whiteouts: char device 0:0 (unprivileged mknod of a
    /// 0:0 whiteout is allowed since Linux 5.8) and the `user.overlay.opaque` xattr.
    Convert,
    /// Keep them as ordinary empty files (plain extraction of an OCI layer).
    AsFiles,
    /// Refuse the archive.
    Reject,
}

pub(crate) fn has_xattr_y(path: &Path, names: &[&str]) -> bool {
    names.iter().any(
        |n| matches!(xattr::get(path, n), Ok(Some(v)) if v.first() == Some(&b'y') || v.is_empty()),
    )
}

pub(crate) fn is_xattr_whiteout(path: &Path, meta: &fs::Metadata) -> bool {
    // Whiteout files are always empty; skip the xattr syscalls for anything else.
    meta.len() == 0
        && WHITEOUT_XATTRS
            .iter()
            .any(|n| matches!(xattr::get(path, n), Ok(Some(_))))
}
