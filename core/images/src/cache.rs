//! The content-addressed image cache.
//!
//! ```text
//! <cache>/blobs/sha256/<hex>   archive bytes, named by their sha256 (read-only)
//! <cache>/index.json           {"version":1, "urls":{url→{sha256,size}}, "aliases":{key→{url,sha256,build}}}
//! <cache>/tmp/<pid>.<rand>.partial   downloads in progress
//! <cache>/lock                 serializes index updates between processes
//! ```
//! Two URLs or aliases with the same bytes share one blob. A blob appears only after its hash was
//! checked (rename from `tmp/`), so a reader never sees a partial or unverified archive.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ImageError, Result};

const INDEX_VERSION: u32 = 1;

/// A verified archive in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    /// The blob file (`<cache>/blobs/sha256/<hex>`).
    pub path: PathBuf,
    /// `sha256:<hex>` of the archive bytes: the lock's `base_image_digest`.
    pub digest: String,
    /// Archive size in bytes.
    pub size: u64,
    /// URL the archive was fetched from.
    pub url: String,
}

impl CachedImage {
    /// The bare hex part of [`CachedImage::digest`].
    pub fn sha256_hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

/// Handle on a cache directory (created lazily by the first write).
#[derive(Debug, Clone)]
pub struct ImageCache {
    root: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheIndex {
    version: u32,
    #[serde(default)]
    urls: BTreeMap<String, UrlEntry>,
    #[serde(default)]
    aliases: BTreeMap<String, AliasEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UrlEntry {
    sha256: String,
    size: u64,
}

/// The last successful resolution of an alias on one server and architecture.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AliasEntry {
    pub url: String,
    pub sha256: String,
    #[serde(default)]
    pub build: Option<String>,
}

impl ImageCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ImageCache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the archive with this sha256 (lowercase hex) lives or would live.
    pub fn blob_path(&self, sha256_hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(sha256_hex)
    }

    /// The cached archive previously fetched from `url`, if its blob is still there.
    /// Does not re-hash (see [`ImageCache::verify`]).
    pub fn lookup_url(&self, url: &str) -> Result<Option<CachedImage>> {
        let index = self.read_index()?;
        Ok(index
            .urls
            .get(url)
            .and_then(|e| self.present(url, &e.sha256)))
    }

    /// The cached archive with this content, if any.
    pub fn lookup_sha256(&self, sha256_hex: &str, url: &str) -> Option<CachedImage> {
        self.present(url, sha256_hex)
    }

    /// Re-hashes a cached blob. On mismatch the blob is deleted and `CacheCorrupt` returned.
    pub fn verify(&self, image: &CachedImage) -> Result<()> {
        let actual = sha256_file(&image.path)?;
        if actual == image.sha256_hex() {
            return Ok(());
        }
        // A corrupt blob must not be served again; its index entries become dangling and are
        // ignored by `present`.
        let _ = fs::remove_file(&image.path);
        Err(ImageError::CacheCorrupt {
            path: image.path.clone(),
            expected: image.sha256_hex().to_string(),
            actual,
        })
    }

    pub(crate) fn alias(&self, key: &str) -> Result<Option<AliasEntry>> {
        let index = self.read_index()?;
        Ok(index
            .aliases
            .get(key)
            .filter(|a| self.blob_path(&a.sha256).is_file())
            .cloned())
    }

    /// Records `url` (and optionally an alias) → content, under the cache lock.
    pub(crate) fn record(
        &self,
        url: &str,
        sha256_hex: &str,
        size: u64,
        alias: Option<(&str, Option<&str>)>,
    ) -> Result<()> {
        let current = self.read_index()?;
        let url_known = current
            .urls
            .get(url)
            .is_some_and(|e| e.sha256 == sha256_hex);
        let alias_known = alias.is_none_or(|(key, build)| {
            current.aliases.get(key).is_some_and(|a| {
                a.url == url && a.sha256 == sha256_hex && a.build.as_deref() == build
            })
        });
        if url_known && alias_known {
            // Cache hits (every build) must not rewrite and fsync the index.
            return Ok(());
        }
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        index.version = INDEX_VERSION;
        index.urls.insert(
            url.to_string(),
            UrlEntry {
                sha256: sha256_hex.to_string(),
                size,
            },
        );
        if let Some((key, build)) = alias {
            index.aliases.insert(
                key.to_string(),
                AliasEntry {
                    url: url.to_string(),
                    sha256: sha256_hex.to_string(),
                    build: build.map(str::to_string),
                },
            );
        }
        self.write_index(&index)
    }

    /// A fresh partial-download file in `<cache>/tmp`, removed on drop. Leftovers of dead
    /// processes (killed mid-download) are cleaned up first.
    pub(crate) fn new_partial(&self) -> Result<tempfile::NamedTempFile> {
        let tmp = self.root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        remove_stale_partials(&tmp);
        tempfile::Builder::new()
            .prefix(&format!("{}.", std::process::id()))
            .suffix(".partial")
            .tempfile_in(&tmp)
            .map_err(|e| ImageError::io(&tmp, e))
    }

    /// Moves a verified partial into place as the blob for `sha256_hex`.
    pub(crate) fn commit_partial(
        &self,
        partial: tempfile::NamedTempFile,
        sha256_hex: &str,
    ) -> Result<PathBuf> {
        let dest = self.blob_path(sha256_hex);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| ImageError::io(&dir, e))?;
        partial
            .as_file()
            .sync_all()
            .map_err(|e| ImageError::io(partial.path(), e))?;
        let mut perms = partial
            .as_file()
            .metadata()
            .map_err(|e| ImageError::io(partial.path(), e))?
            .permissions();
        perms.set_readonly(true);
        fs::set_permissions(partial.path(), perms)
            .map_err(|e| ImageError::io(partial.path(), e))?;
        // Same content under the same name: if another process won the race, either file is fine.
        partial
            .persist(&dest)
            .map_err(|e| ImageError::io(&dest, e.error))?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(dest)
    }

    fn present(&self, url: &str, sha256_hex: &str) -> Option<CachedImage> {
        let path = self.blob_path(sha256_hex);
        let meta = fs::metadata(&path)
            .ok()
            .filter(std::fs::Metadata::is_file)?;
        Some(CachedImage {
            path,
            digest: format!("sha256:{sha256_hex}"),
            size: meta.len(),
            url: url.to_string(),
        })
    }

    /// Removes every cached archive whose sha256 (hex) is not in `keep`, the index entries that
    /// named it and the base layers imported from it (`base-layers/<sha256>…`), under the cache
    /// lock. Returns the removed hashes and the bytes freed. Only a cache is lost: an image
    /// removed here is downloaded again by the next build that needs it.
    /// With `dry_run`, nothing is removed: the result says what would be.
    pub fn prune(
        &self,
        keep: &std::collections::BTreeSet<String>,
        dry_run: bool,
    ) -> Result<(Vec<String>, u64)> {
        if !self.root.is_dir() {
            return Ok((Vec::new(), 0));
        }
        let _lock = self.lock()?;
        let blobs = self.root.join("blobs/sha256");
        let mut removed = Vec::new();
        let mut freed = 0u64;
        if let Ok(rd) = fs::read_dir(&blobs) {
            for entry in rd.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if keep.contains(&name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                let size = entry.metadata().map_or(0, |m| {
                    std::os::unix::fs::MetadataExt::blocks(&m).saturating_mul(512)
                });
                if dry_run || fs::remove_file(entry.path()).is_ok() {
                    freed = freed.saturating_add(size);
                    removed.push(name);
                }
            }
        }
        if dry_run {
            removed.sort();
            return Ok((removed, freed));
        }
        let mut index = self.read_index()?;
        index.urls.retain(|_, e| keep.contains(&e.sha256));
        index.aliases.retain(|_, a| keep.contains(&a.sha256));
        self.write_index(&index)?;
        // Base layers are recorded per image (and ownership case): `<sha256>` or `<sha256>-<case>`.
        if let Ok(rd) = fs::read_dir(self.root.join("base-layers")) {
            for entry in rd.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let sha = name.split('-').next().unwrap_or_default();
                if !keep.contains(sha) && entry.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        removed.sort();
        Ok((removed, freed))
    }

    fn lock(&self) -> Result<File> {
        fs::create_dir_all(&self.root).map_err(|e| ImageError::io(&self.root, e))?;
        let path = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io(&path, e))?;
        f.lock().map_err(|e| ImageError::io(&path, e))?;
        Ok(f)
    }

    fn read_index(&self) -> Result<CacheIndex> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            // An unreadable index only costs a re-download; do not fail builds over it.
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(CacheIndex::default()),
            Err(e) => Err(ImageError::io(path, e)),
        }
    }

    fn write_index(&self, index: &CacheIndex) -> Result<()> {
        let path = self.root.join("index.json");
        let mut tmp = tempfile::NamedTempFile::new_in(&self.root)
            .map_err(|e| ImageError::io(&self.root, e))?;
        let json = serde_json::to_vec_pretty(index)
            .map_err(|e| ImageError::io(&path, std::io::Error::other(e)))?;
        tmp.write_all(&json)
            .map_err(|e| ImageError::io(tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| ImageError::io(tmp.path(), e))?;
        tmp.persist(&path)
            .map_err(|e| ImageError::io(&path, e.error))?;
        Ok(())
    }
}

/// Lowercase hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::io(path, e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Removes partial downloads left by processes that no longer exist (killed mid-download).
fn remove_stale_partials(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = name.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if name.ends_with(".partial") && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}
