//! Streaming, safe extraction of a rootfs archive into a directory.
//!
//! The tar walking itself is the store's deterministic-layer unpacker
//! (`karapace_tar::unpack`), so base images and layers obey one set of rules: no absolute
//! paths, no `..`, nothing below a symlinked parent, hard links only to earlier entries inside
//! the tree, relative symlinks may not climb above the root, nothing ever followed. This module
//! adds what is specific to images: compression detection, skipping device nodes and fifos
//! (an unprivileged user cannot create them, and a rootfs gets its `/dev` from the runtime), the
//! set-id policy, and the size caps of `~/.config/karapace/config.toml`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use karapace_tar::{ArchiveLimits, InProcess, TarError, UnpackOptions, UnpackWorker, WhiteoutMode};

use crate::cache::CachedImage;
use crate::config::{archive_limits_from, config_file_path};
use crate::error::{ImageError, Result};

/// Compression of an archive, recognised by its first bytes (never by file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
    /// Plain tar.
    None,
}

/// Identifies the compression from an archive's first bytes.
pub fn detect_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Extraction policy knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtractOptions {
    /// Keep setuid/setgid bits on regular files. Off by default: the extracted tree lives on the
    /// host filesystem, owned by the invoking user (or root), where a set-id executable would be
    /// a real privilege-carrying file outside any container. Nothing in a rootless environment
    /// needs them (its root is the mapped invoking user).
    pub keep_set_id: bool,
    /// Caps on entries and content bytes (see [`crate::ImageConfig::archive_limits`]).
    pub limits: ArchiveLimits,
}

/// What an extraction produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtractReport {
    /// Entries created (device nodes and fifos are skipped and not counted).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub file_bytes: u64,
    /// Regular files whose setuid/setgid bits were cleared.
    pub set_id_cleared: u64,
}

/// Extracts a cached (already verified) image into `dest` (created if missing), with the
/// archive caps of this user's configuration (`archive_max_entries`, `archive_max_bytes` in
/// `~/.config/karapace/config.toml`; defaults otherwise).
pub fn extract(image: &CachedImage, dest: &Path) -> Result<ExtractReport> {
    let limits = archive_limits_from(config_file_path().as_deref())?;
    extract_with(
        image,
        dest,
        ExtractOptions {
            limits,
            ..ExtractOptions::default()
        },
    )
}

/// Extracts a cached (already verified) image into `dest` (created if missing).
pub fn extract_with(
    image: &CachedImage,
    dest: &Path,
    opts: ExtractOptions,
) -> Result<ExtractReport> {
    let f = File::open(&image.path).map_err(|e| ImageError::io(&image.path, e))?;
    extract_archive(f, dest, opts)
}

/// Extracts a cached (already verified) image into `dest` (created if missing) through
/// `worker`, which decides who owns the extracted files (the owners the archive records, where
/// the environment's ids are mapped; else the invoking user), with this user's archive caps.
pub fn extract_with_worker<W: UnpackWorker + ?Sized>(
    image: &CachedImage,
    dest: &Path,
    worker: &W,
) -> Result<ExtractReport> {
    let limits = archive_limits_from(config_file_path().as_deref())?;
    let f = File::open(&image.path).map_err(|e| ImageError::io(&image.path, e))?;
    extract_archive_with(
        f,
        dest,
        ExtractOptions {
            limits,
            ..ExtractOptions::default()
        },
        worker,
    )
}

/// Extracts any tar stream — gzip, xz, zstd or plain, detected from its magic bytes — into
/// `dest`, streaming (no temporary copy). Files are owned by the invoking user; permission bits
/// are kept (set-id bits per [`ExtractOptions`]); symlinks and hard links are kept.
pub fn extract_archive(r: impl Read, dest: &Path, opts: ExtractOptions) -> Result<ExtractReport> {
    extract_archive_with(r, dest, opts, &InProcess::default())
}

/// [`extract_archive`] through `worker` (see [`extract_with_worker`]).
pub fn extract_archive_with<W: UnpackWorker + ?Sized>(
    r: impl Read,
    dest: &Path,
    opts: ExtractOptions,
    worker: &W,
) -> Result<ExtractReport> {
    fs::create_dir_all(dest).map_err(|e| ImageError::io(dest, e))?;
    let mut input = BufReader::with_capacity(256 * 1024, r);
    let head = input
        .fill_buf()
        .map_err(|e| ImageError::Archive(e.to_string()))?;
    let mut reader: Box<dyn Read> = match detect_compression(head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(input)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| ImageError::Archive(e.to_string()))?,
        ),
        Compression::None => Box::new(input),
    };
    let unpack_opts = UnpackOptions {
        whiteouts: WhiteoutMode::AsFiles,
        skip_devices: true,
        reject_escaping_symlinks: true,
        keep_set_id: opts.keep_set_id,
        limits: opts.limits,
        owners: worker.owners(),
    };
    // The unpacker drops set-id bits as it writes each file (the store's one rule for every
    // tree it unpacks), so no file is ever set-id on disk, not even for a moment.
    let stats = worker
        .unpack_tar(&mut reader, dest, unpack_opts)
        .map_err(map_tar_error)?;
    // Marks the end of extraction in `-v` logs (the build benchmark splits a build's time with it).
    tracing::debug!(
        "extracted {} entries ({} bytes of files) into {}",
        stats.entries,
        stats.file_bytes,
        dest.display()
    );
    Ok(ExtractReport {
        entries: stats.entries,
        file_bytes: stats.file_bytes,
        set_id_cleared: stats.set_id_cleared,
    })
}

fn map_tar_error(e: TarError) -> ImageError {
    match e {
        TarError::UnsafeArchive { path, reason } => ImageError::UnsafeEntry {
            entry: path,
            reason,
        },
        other => ImageError::Archive(other.to_string()),
    }
}
