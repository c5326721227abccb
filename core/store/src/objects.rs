//! Content-addressed objects: `store/objects/<2 hex>/<64 hex>`, keyed by blake3.
//!
//! Writes stream from a reader into a temp file in the store (same filesystem) while
//! hashing, then fsync → rename → fsync the directory. Reads verify: [`ObjectReader`]
//! hashes what it returns and fails at end of file if the content does not match its key.

use crate::crash::crash_point;
use crate::error::{Result, StoreError, io_at, io_err};
use crate::fsutil::{fsync_dir, unique_name};
use crate::write_behind::WriteBehind;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Lowercase 64-hex blake3 of an object's bytes.
pub type ObjectHash = String;

/// Buffer size for streaming object I/O: big enough for blake3's SIMD paths and few
/// syscalls, small enough that memory stays bounded per stream.
pub(crate) const IO_BUF: usize = 1 << 20;

/// An I/O error kept to be returned again, so that every later call fails the same way (with
/// the same OS error, which decides e.g. whether the store reports "no space left").
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    kind: io::ErrorKind,
    os: Option<i32>,
    msg: String,
}

impl Failure {
    pub(crate) fn of(e: &io::Error) -> Self {
        Failure {
            kind: e.kind(),
            os: e.raw_os_error(),
            msg: e.to_string(),
        }
    }

    pub(crate) fn again(&self) -> io::Error {
        match self.os {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.kind, self.msg.clone()),
        }
    }
}

/// True for a 64-character lowercase hex key.
pub fn is_valid_key(key: &str) -> bool {
    key.len() == 64
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) fn object_path(objects_dir: &Path, hash: &str) -> PathBuf {
    objects_dir.join(&hash[..2]).join(hash)
}

/// Hash a chunk, using several cores for big ones (blake3's tree mode makes that free of
/// ordering issues); small chunks stay on this thread where splitting costs more.
pub(crate) fn hash_chunk(hasher: &mut blake3::Hasher, chunk: &[u8]) {
    if chunk.len() >= 256 * 1024 {
        hasher.update_rayon(chunk);
    } else {
        hasher.update(chunk);
    }
}

/// Starts writeback of a file being written in the background: every `SYNC_EVERY` bytes a
/// helper thread calls `fdatasync` on a clone of the fd, so the final `fsync` in
/// [`ObjectWriter::finish`] has little left to flush and disk I/O overlaps with hashing.
struct Syncer {
    tx: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
    pending: u64,
}

const SYNC_EVERY: u64 = 64 << 20;

impl Syncer {
    fn new(f: &File) -> Self {
        let Ok(clone) = f.try_clone() else {
            return Syncer {
                tx: None,
                handle: None,
                pending: 0,
            };
        };
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("karapace-writeback".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // Errors surface at the final fsync, which is the one that counts.
                    let _ = clone.sync_data();
                }
            })
            .ok();
        Syncer {
            tx: handle.as_ref().map(|_| tx),
            handle,
            pending: 0,
        }
    }
    fn wrote(&mut self, n: usize) {
        self.pending += n as u64;
        if self.pending >= SYNC_EVERY {
            self.pending = 0;
            if let Some(tx) = &self.tx {
                let _ = tx.send(());
            }
        }
    }
    fn stop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// File writer that feeds the background [`Syncer`].
pub(crate) struct SyncingFile {
    f: File,
    syncer: Syncer,
}

impl Write for SyncingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.f.write(buf)?;
        self.syncer.wrote(n);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.f.flush()
    }
}

/// Hashes everything written through it.
pub(crate) struct HashWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    len: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        hash_chunk(&mut self.hasher, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A streaming object writer: write bytes, then [`ObjectWriter::finish`] to publish.
/// Dropping it unfinished removes the temp file.
pub struct ObjectWriter {
    /// Hashed and written on a thread of its own while the caller produces the bytes.
    w: Option<WriteBehind<HashWriter<SyncingFile>>>,
    tmp: PathBuf,
    objects_dir: PathBuf,
    published: bool,
}

impl ObjectWriter {
    pub(crate) fn new(tmp_dir: &Path, objects_dir: &Path) -> Result<Self> {
        let tmp = tmp_dir.join(unique_name("object"));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_at("create temp object", &tmp))?;
        let syncer = Syncer::new(&f);
        let hw = HashWriter {
            inner: SyncingFile { f, syncer },
            hasher: blake3::Hasher::new(),
            len: 0,
        };
        let w = match WriteBehind::spawn(hw) {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_err("start writing the object")(e));
            }
        };
        Ok(ObjectWriter {
            w: Some(w),
            tmp,
            objects_dir: objects_dir.to_path_buf(),
            published: false,
        })
    }

    /// Durably publish the object; returns its hash and size.
    pub fn finish(mut self) -> Result<(ObjectHash, u64)> {
        let (hash, len) = self.seal()?;
        self.publish(&hash)?;
        Ok((hash, len))
    }

    /// Flushes and fsyncs the temp file and returns the bytes' hash and size, publishing
    /// nothing: the caller decides (e.g. only when the hash is the one it was promised).
    pub(crate) fn seal(&mut self) -> Result<(ObjectHash, u64)> {
        let Some(w) = self.w.take() else {
            return Err(StoreError::Invalid("object writer already sealed".into()));
        };
        let hw = w.finish().map_err(io_at("write", &self.tmp))?;
        let hash = hw.hasher.finalize().to_hex().to_string();
        let len = hw.len;
        let mut sf = hw.inner;
        sf.syncer.stop();
        sf.f.sync_all().map_err(io_at("fsync", &self.tmp))?;
        Ok((hash, len))
    }

    /// Renames a sealed temp file to `objects/<xx>/<hash>`.
    pub(crate) fn publish(mut self, hash: &str) -> Result<()> {
        if self.w.is_some() {
            return Err(StoreError::Invalid("object writer not sealed".into()));
        }
        let shard = self.objects_dir.join(&hash[..2]);
        let created = match crate::fsutil::create_dir_private(&shard) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io_at("create", &shard)(e)),
        };
        if created {
            fsync_dir(&self.objects_dir)?;
        }
        let dest = shard.join(hash);
        crash_point("object.before_rename");
        // Renaming over an existing object is the dedupe: same bytes, and it also heals a
        // damaged copy.
        fs::rename(&self.tmp, &dest).map_err(io_at("publish object", &dest))?;
        self.published = true;
        fsync_dir(&shard)?;
        crash_point("object.after_rename");
        Ok(())
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.w.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("object writer finished")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.w.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        drop(self.w.take());
        if !self.published {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Reads an object and verifies its hash when the end is reached: the final `read`
/// returning 0 is replaced by an `InvalidData` error on mismatch, and so is every read after
/// it (a caller that retries never sees an end of file).
pub struct ObjectReader {
    f: File,
    hasher: blake3::Hasher,
    expected: String,
    done: bool,
    mismatch: Option<Failure>,
}

impl ObjectReader {
    pub(crate) fn open(path: &Path, expected: &str) -> Result<Self> {
        let f = File::open(path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::Integrity {
                    key: format!("object:{expected}"),
                    reason: "object missing".into(),
                }
            } else {
                io_at("open object", path)(e)
            }
        })?;
        Ok(ObjectReader {
            f,
            hasher: blake3::Hasher::new(),
            expected: expected.to_string(),
            done: false,
            mismatch: None,
        })
    }

    /// Read to the end (verifying), discarding the rest.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = &self.mismatch {
            return Err(f.again());
        }
        if self.done {
            return Ok(0);
        }
        let n = self.f.read(buf)?;
        if n == 0 {
            self.done = true;
            let got = self.hasher.finalize().to_hex();
            if got.as_str() != self.expected {
                let e = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "object {} is corrupt (content hashes to {got})",
                        self.expected
                    ),
                );
                self.mismatch = Some(Failure::of(&e));
                return Err(e);
            }
            return Ok(0);
        }
        hash_chunk(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}

/// Re-hash an object file with a bounded buffer. `Ok(None)` when it matches,
/// `Ok(Some(reason))` when it does not.
pub fn verify_object(path: &Path, expected: &str) -> Result<Option<String>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some("object missing".into())),
        Err(e) => return Err(io_at("open object", path)(e)),
    };
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; IO_BUF];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Ok(Some(format!("read error: {e}"))),
        };
        // Large objects are hashed with both/all cores (blake3's tree mode); small reads
        // stay single-threaded where splitting would cost more than it gains.
        hash_chunk(&mut hasher, &buf[..n]);
    }
    let got = hasher.finalize().to_hex();
    if got.as_str() == expected {
        Ok(None)
    } else {
        Ok(Some(format!("content hashes to {got}")))
    }
}

/// Map an I/O error from reading a verifying reader into a store error.
pub(crate) fn read_err(key: &str) -> impl FnOnce(io::Error) -> StoreError {
    let key = key.to_string();
    move |e| {
        if e.kind() == io::ErrorKind::InvalidData {
            StoreError::Integrity {
                key: format!("object:{key}"),
                reason: e.to_string(),
            }
        } else {
            io_err(format!("read object {key}"))(e)
        }
    }
}
