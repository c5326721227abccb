//! Compile cache for directory plugins: compiling a component costs 25–40 ms,
//! loading the compiled artifact well under 1 ms.
//!
//! Key = blake3(format tag ‖ karapace version ‖ engine compatibility hash ‖
//! blake3(component bytes)), so a new karapace, a different wasmtime config or
//! a changed plugin never hits a stale entry. The cache holds machine code that
//! is loaded without verification, so it must be private to the user: the
//! directory is created 0700 and must be owned by us with no group/other
//! access, files are 0600, opened without following symlinks, written by
//! temp file + rename. Anything unexpected means "compile again"; if the
//! directory itself is unsafe the cache is not used at all.

use std::fs::{self, OpenOptions};
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::builtin::deserialize_trusted;

/// Changes whenever the cache layout or key recipe changes.
const FORMAT_TAG: &[u8] = b"karapace-plugin-cache/1";
/// A compiled resolver is well under 1 MiB; refuse absurd files.
const MAX_ARTIFACT_BYTES: u64 = 64 * 1024 * 1024;

/// How a directory plugin was obtained (reported for benchmarks/diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache.
    Hit,
    /// Compiled and stored in the cache.
    Compiled,
    /// Compiled; no usable cache directory.
    Uncached,
}

/// The compile cache (possibly disabled).
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: Option<PathBuf>,
}

/// Feeds `Hash` output into blake3 (for the engine compatibility hash).
struct Blake3Hasher<'a>(&'a mut blake3::Hasher);

impl Hasher for Blake3Hasher<'_> {
    fn finish(&self) -> u64 {
        0 // unused: we read the blake3 digest instead
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl Cache {
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// Cache file name for `component` under `engine`.
    pub(crate) fn key(engine: &Engine, component: &[u8]) -> String {
        let mut h = blake3::Hasher::new();
        h.update(FORMAT_TAG);
        h.update(&[0]);
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update(&[0]);
        std::hash::Hash::hash(
            &engine.precompile_compatibility_hash(),
            &mut Blake3Hasher(&mut h),
        );
        h.update(blake3::hash(component).as_bytes());
        h.finalize().to_hex().to_string()
    }

    /// Loads `component` from the cache or compiles (and caches) it.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        component: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = self.dir.as_deref().filter(|d| private_dir(d)) else {
            return Ok((Component::new(engine, component)?, CacheOutcome::Uncached));
        };
        let file = dir.join(format!("{}.cwasm", Self::key(engine, component)));
        if let Some(bytes) = read_private(&file)
            && let Ok(c) = deserialize_trusted(engine, &bytes)
        {
            return Ok((c, CacheOutcome::Hit));
        }
        // Miss, or an entry that fails to load (truncated, other engine...):
        // compile again and replace it.
        let compiled = Component::new(engine, component)?;
        let outcome = match compiled.serialize() {
            Ok(bytes) if write_atomic(dir, &file, &bytes).is_ok() => CacheOutcome::Compiled,
            _ => CacheOutcome::Uncached,
        };
        Ok((compiled, outcome))
    }
}

/// Creates `dir` (0700) if needed; true if it is ours and private.
fn private_dir(dir: &Path) -> bool {
    if fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .is_err()
    {
        return false;
    }
    match fs::symlink_metadata(dir) {
        Ok(m) => m.is_dir() && m.uid() == nix::unistd::getuid().as_raw() && owner_only(m.mode()),
        Err(_) => false,
    }
}

/// No permission bits for group or others.
#[allow(clippy::verbose_bit_mask)] // the octal mask says what it means
fn owner_only(mode: u32) -> bool {
    mode & 0o077 == 0
}

/// Reads a cache file if it is a regular file we own, 0600-ish, sane size.
fn read_private(file: &Path) -> Option<Vec<u8>> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(file)
        .ok()?;
    let m = f.metadata().ok()?;
    let ok = m.is_file()
        && m.uid() == nix::unistd::getuid().as_raw()
        && owner_only(m.mode())
        && m.len() <= MAX_ARTIFACT_BYTES;
    if !ok {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(m.len()).ok()?);
    f.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Temp file (0600, same directory) + fsync + rename: readers never see a
/// partial artifact.
fn write_atomic(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    karapace_atomic_file::write_via(dir, file, bytes, karapace_atomic_file::Mode::Exactly(0o600))
}

/// `$XDG_CACHE_HOME/karapace/plugins`, else `~/.cache/karapace/plugins`.
pub fn default_cache_dir() -> Option<PathBuf> {
    karapace_dirs::karapace_cache().map(|c| c.join("plugins"))
}
