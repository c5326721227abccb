//! The `Store` handle: layout, opening, format version and the store-wide lock.

use crate::error::{Result, StoreError, io_at};
use crate::fsutil::{
    PRIVATE_DIR_MODE, create_dir_all_private, create_dir_private, fsync_dir, write_atomic,
};
use nix::fcntl::{Flock, FlockArg};
use std::cell::RefCell;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::owners::{InProcess, TreeWorker};

/// The on-disk format this build reads and writes.
pub const STORE_FORMAT_VERSION: u32 = 3;

/// Paths of everything in a store (see docs/storage-format.md).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub root: PathBuf,
    pub store: PathBuf,
    pub version: PathBuf,
    pub objects: PathBuf,
    pub layers: PathBuf,
    pub metadata: PathBuf,
    pub trees: PathBuf,
    pub wal: PathBuf,
    pub tmp: PathBuf,
    pub staging: PathBuf,
    /// Created on first use (stores made before it existed have none).
    pub trash: PathBuf,
    pub envs: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        let store = root.join("store");
        Layout {
            root: root.to_path_buf(),
            version: store.join("version"),
            objects: store.join("objects"),
            layers: store.join("layers"),
            metadata: store.join("metadata"),
            trees: store.join("trees"),
            wal: store.join("wal"),
            tmp: store.join("tmp"),
            staging: store.join("staging"),
            trash: store.join("trash"),
            envs: root.join("env"),
            store,
        }
    }
    pub fn env_dir(&self, id: &str) -> PathBuf {
        self.envs.join(id)
    }
    pub fn upper(&self, id: &str) -> PathBuf {
        self.env_dir(id).join("upper")
    }
    pub fn work(&self, id: &str) -> PathBuf {
        self.env_dir(id).join("work")
    }
    pub fn sessions(&self, id: &str) -> PathBuf {
        self.env_dir(id).join("sessions")
    }
    pub fn meta_file(&self, id: &str) -> PathBuf {
        self.metadata.join(id)
    }
    pub fn layer_file(&self, hash: &str) -> PathBuf {
        self.layers.join(hash)
    }
    /// Every fixed directory, parents first.
    fn all_dirs(&self) -> [&PathBuf; 10] {
        [
            &self.root,
            &self.store,
            &self.objects,
            &self.layers,
            &self.metadata,
            &self.trees,
            &self.wal,
            &self.tmp,
            &self.staging,
            &self.envs,
        ]
    }
}

#[derive(Debug)]
struct LockInner {
    file: Option<File>,
    held: Option<Flock<File>>,
    shared: u32,
    exclusive: u32,
    /// Exclusive lock taken by `try_lock_exclusive` without recovery: the next
    /// `lock_exclusive` must still recover before any mutation.
    needs_recovery: bool,
}

/// An open store. Not `Sync`: use one `Store` per thread (each has its own lock file
/// description, so threads and processes serialize through `flock` alike).
#[derive(Debug)]
pub struct Store {
    pub(crate) layout: Layout,
    lock: RefCell<LockInner>,
    archive_limits: std::cell::Cell<crate::tar::ArchiveLimits>,
    trees: RefCell<SharedTreeWorker>,
}

/// The store's [`TreeWorker`], shared with the scratch directories it hands out.
pub type SharedTreeWorker = Arc<dyn TreeWorker + Send + Sync>;

/// A held store lock; released (or downgraded) on drop. Re-entrant within one `Store`.
#[derive(Debug)]
#[must_use = "the lock is released when this guard is dropped"]
pub struct StoreLock<'a> {
    store: &'a Store,
    exclusive: bool,
}

impl Drop for StoreLock<'_> {
    fn drop(&mut self) {
        self.store.release(self.exclusive);
    }
}

/// A scratch directory from [`Store::staging_dir`]; removed on drop.
#[derive(Debug)]
pub struct StagingDir {
    path: PathBuf,
    trees: SharedTreeWorker,
}

impl StagingDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = crate::owners::remove_tree(&*self.trees, &self.path);
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct VersionFile {
    format_version: u32,
}

/// Read the `format_version` of `store/version` (`None` when the file does not exist).
pub(crate) fn read_format_version(layout: &Layout) -> Result<Option<u32>> {
    let text = match fs::read_to_string(&layout.version) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at("read", &layout.version)(e)),
    };
    let v: VersionFile = serde_json::from_str(&text).map_err(|e| StoreError::Integrity {
        key: layout.version.display().to_string(),
        reason: format!("unreadable version file: {e}"),
    })?;
    Ok(Some(v.format_version))
}

/// Creates the store at `layout`, or finds it created by a concurrent command. Creators take
/// turns on a lock file in the root and the version file is written last, so a concurrent
/// opener sees no store or a complete one, never a half-made one (two `build`s into a fresh
/// store, started together, used to fail on each other's half-made store).
fn create_store(layout: &Layout) -> Result<()> {
    let root = &layout.root;
    match create_dir_private(root) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        r => r.map_err(io_at("create", root))?,
    }
    // Check the root before creating anything in it: a root someone else owns is refused
    // untouched.
    secure_root(root)?;
    let lock_path = root.join(INIT_LOCK);
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(io_at("open", &lock_path))?;
    let _creating = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| StoreError::Lock(format!("{}: {e}", lock_path.display())))?;
    if read_format_version(layout)?.is_some() {
        // Another command finished creating it while this one waited.
        return Ok(());
    }
    if has_content(&layout.envs) || has_content(&layout.objects) {
        // Store content without a version file, and nobody creating it: never guess.
        return Err(StoreError::Integrity {
            key: layout.version.display().to_string(),
            reason: "store has no version file".into(),
        });
    }
    for d in &layout.all_dirs()[1..] {
        match create_dir_private(d) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            r => r.map_err(io_at("create", d))?,
        }
    }
    let body = serde_json::to_vec_pretty(&VersionFile {
        format_version: STORE_FORMAT_VERSION,
    })
    .map_err(|e| StoreError::Invalid(e.to_string()))?;
    // The temporary file lives in the root, not in `store/tmp`, which an opener's recovery
    // empties.
    write_atomic(root, &layout.version, &body)?;
    fsync_dir(root)
}

/// Lock file in a store root that serialises creating the store.
const INIT_LOCK: &str = ".create.lock";

/// Whether `dir` exists and has at least one entry.
fn has_content(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut rd| rd.next().is_some())
}

/// The store root must be the caller's and private: other local users must not be able to
/// reach environment uppers (whatever a workload wrote there, set-id files included) or
/// layer trees. A root open to group/other is repaired to 0700 with a warning on stderr; a
/// root owned by someone else is refused (the caller cannot make it safe: its owner could
/// open it again at any time).
pub(crate) fn secure_root(root: &Path) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    // A store root may be a symlink of the user's own (a store on another disk), never one
    // another user planted (`/tmp/x -> ~victim`: the store, and its chmod, would land there).
    let link = fs::symlink_metadata(root).map_err(io_at("stat store root", root))?;
    if link.file_type().is_symlink() && link.uid() != me && link.uid() != 0 {
        return Err(StoreError::Insecure(format!(
            "the store root {} is a symbolic link owned by uid {}, not by you (uid {me});              choose another root with --store",
            root.display(),
            link.uid()
        )));
    }
    let meta = fs::metadata(root).map_err(io_at("stat store root", root))?;
    if meta.uid() != me {
        return Err(StoreError::Insecure(format!(
            "the store root {} belongs to uid {}, not to you (uid {me}); a store must be \
             owned by the user who runs karapace (choose another root with --store, or \
             fix its owner)",
            root.display(),
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs::set_permissions(root, fs::Permissions::from_mode(PRIVATE_DIR_MODE)).map_err(|e| {
            StoreError::Insecure(format!(
                "the store root {} is accessible to other users (mode {mode:o}) and \
                     could not be changed to 700: {e}",
                root.display()
            ))
        })?;
        eprintln!(
            "karapace: warning: the store root {} was accessible to other users (mode \
             {mode:o}); changed it to 700",
            root.display()
        );
    }
    Ok(())
}

impl Store {
    fn with_layout(layout: Layout) -> Result<Store> {
        let file = File::open(&layout.store).map_err(io_at("open store", &layout.store))?;
        Ok(Store {
            layout,
            lock: RefCell::new(LockInner {
                file: Some(file),
                held: None,
                shared: 0,
                exclusive: 0,
                needs_recovery: false,
            }),
            archive_limits: std::cell::Cell::new(crate::tar::ArchiveLimits::default()),
            trees: RefCell::new(Arc::new(InProcess::default())),
        })
    }

    /// Who packs, unpacks and removes this store's trees from now on (see [`TreeWorker`]);
    /// the default does it in this process and records every file as root's.
    pub fn set_tree_worker(&self, worker: SharedTreeWorker) {
        *self.trees.borrow_mut() = worker;
    }

    /// The store's [`TreeWorker`].
    pub fn tree_worker(&self) -> SharedTreeWorker {
        Arc::clone(&self.trees.borrow())
    }

    /// Removes a tree of this store (by its owner alone when possible, else by the
    /// [`TreeWorker`]); `Ok(false)` when nothing was there.
    pub fn remove_tree(&self, path: &Path) -> Result<bool> {
        crate::owners::remove_tree(&*self.tree_worker(), path)
    }

    pub(crate) fn remove_tree_parallel(&self, path: &Path) -> Result<bool> {
        crate::owners::remove_tree_parallel(&*self.tree_worker(), path)
    }

    /// Caps applied when this store unpacks a layer (see [`crate::tar::ArchiveLimits`]).
    pub fn set_archive_limits(&self, limits: crate::tar::ArchiveLimits) {
        self.archive_limits.set(limits);
    }

    /// The caps applied when this store unpacks a layer.
    pub fn archive_limits(&self) -> crate::tar::ArchiveLimits {
        self.archive_limits.get()
    }

    /// Open an existing store without creating or modifying anything (read-only commands).
    pub fn open(root: &Path) -> Result<Store> {
        let layout = Layout::new(root);
        match read_format_version(&layout)? {
            None => Err(StoreError::NoStore(root.to_path_buf())),
            Some(STORE_FORMAT_VERSION) => {
                secure_root(root)?;
                Store::with_layout(layout)
            }
            Some(found) => Err(StoreError::Version {
                found,
                expected: STORE_FORMAT_VERSION,
            }),
        }
    }

    /// Open the store, creating it if absent, and run WAL recovery (mutating commands).
    pub fn open_or_init(root: &Path) -> Result<Store> {
        Store::open_or_init_with(root, Arc::new(InProcess::default()))
    }

    /// [`Store::open_or_init`] with the [`TreeWorker`] that recovery (which may remove the
    /// trees of interrupted builds) and everything after it use.
    pub fn open_or_init_with(root: &Path, trees: SharedTreeWorker) -> Result<Store> {
        let layout = Layout::new(root);
        let existing = read_format_version(&layout)?;
        if let Some(found) = existing.filter(|v| *v != STORE_FORMAT_VERSION) {
            return Err(StoreError::Version {
                found,
                expected: STORE_FORMAT_VERSION,
            });
        }
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Above the store (e.g. ~/.local/share): the user's own directories, usual modes.
            fs::create_dir_all(parent).map_err(io_at("create", parent))?;
        }
        if existing.is_none() {
            create_store(&layout)?;
        } else {
            secure_root(root)?;
        }
        // Stores made before directories were private: close the fixed ones too.
        for d in &layout.all_dirs()[1..] {
            let m = fs::symlink_metadata(d).map_err(io_at("stat", d))?;
            if m.is_dir() && m.mode() & 0o077 != 0 {
                fs::set_permissions(d, fs::Permissions::from_mode(PRIVATE_DIR_MODE))
                    .map_err(io_at("chmod", d))?;
            }
        }
        let store = Store::with_layout(layout)?;
        store.set_tree_worker(trees);
        // Taking the exclusive lock fresh runs recovery.
        drop(store.lock_exclusive()?);
        Ok(store)
    }

    /// The store root directory.
    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    /// Exclusive store lock (mutations). Acquiring it fresh first completes or rolls back any
    /// interrupted operation found in the write-ahead log.
    pub fn lock_exclusive(&self) -> Result<StoreLock<'_>> {
        let fresh = self.acquire(true)?;
        let guard = StoreLock {
            store: self,
            exclusive: true,
        };
        let pending = std::mem::take(&mut self.lock.borrow_mut().needs_recovery);
        if (fresh || pending)
            && let Err(e) = self.recover()
        {
            self.lock.borrow_mut().needs_recovery = true;
            return Err(e);
        }
        Ok(guard)
    }

    /// Take the exclusive lock only if it is free right now (`Ok(None)` when another handle
    /// holds the store lock). A probe: it does not run recovery itself, but the next
    /// mutation still does before touching anything.
    pub fn try_lock_exclusive(&self) -> Result<Option<StoreLock<'_>>> {
        let mut l = self.lock.borrow_mut();
        if l.held.is_some() {
            if l.exclusive == 0 {
                // Held shared by this handle: converting could block, so report it as taken.
                return Ok(None);
            }
            l.exclusive += 1;
            return Ok(Some(StoreLock {
                store: self,
                exclusive: true,
            }));
        }
        let file = l
            .file
            .take()
            .ok_or_else(|| StoreError::Lock("lock file handle lost".into()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(h) => {
                l.held = Some(h);
                l.exclusive = 1;
                l.needs_recovery = true;
                Ok(Some(StoreLock {
                    store: self,
                    exclusive: true,
                }))
            }
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                l.file = Some(file);
                Ok(None)
            }
            Err((file, e)) => {
                l.file = Some(file);
                Err(StoreError::Lock(format!(
                    "flock {}: {e}",
                    self.layout.store.display()
                )))
            }
        }
    }

    /// Shared store lock (reads).
    pub fn lock_shared(&self) -> Result<StoreLock<'_>> {
        self.acquire(false)?;
        Ok(StoreLock {
            store: self,
            exclusive: false,
        })
    }

    /// Returns true when this call took the exclusive lock from nothing/shared.
    fn acquire(&self, exclusive: bool) -> Result<bool> {
        let mut l = self.lock.borrow_mut();
        let lock_err = |e: nix::errno::Errno| {
            StoreError::Lock(format!("flock {}: {e}", self.layout.store.display()))
        };
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        let mut fresh = false;
        if let Some(held) = l.held.as_ref() {
            if exclusive && l.exclusive == 0 {
                held.relock(FlockArg::LockExclusive).map_err(lock_err)?;
                fresh = true;
            }
        } else {
            let file = l
                .file
                .take()
                .ok_or_else(|| StoreError::Lock("lock file handle lost".into()))?;
            match Flock::lock(file, arg) {
                Ok(h) => l.held = Some(h),
                Err((file, e)) => {
                    l.file = Some(file);
                    return Err(lock_err(e));
                }
            }
            fresh = exclusive;
        }
        if exclusive {
            l.exclusive += 1;
        } else {
            l.shared += 1;
        }
        Ok(fresh)
    }

    fn release(&self, exclusive: bool) {
        let mut l = self.lock.borrow_mut();
        if exclusive {
            l.exclusive = l.exclusive.saturating_sub(1);
        } else {
            l.shared = l.shared.saturating_sub(1);
        }
        if l.exclusive == 0 && l.shared == 0 {
            if let Some(h) = l.held.take() {
                match h.unlock() {
                    Ok(f) => l.file = Some(f),
                    // Unlock failed: dropping the Flock closes the fd, which releases it anyway;
                    // reopen so the Store stays usable.
                    Err((h, _)) => {
                        drop(h);
                        l.file = File::open(&self.layout.store).ok();
                    }
                }
            }
        } else if exclusive
            && l.exclusive == 0
            && let Some(h) = l.held.as_ref()
        {
            let _ = h.relock(FlockArg::LockShared);
        }
    }

    /// A private scratch directory inside the store (same filesystem as the layer trees, so
    /// `ImportOptions::adopt_tree` can rename out of it). Removed when the guard drops; a
    /// crashed owner's directory is removed by the next recovery (the name records the
    /// owner's pid and start time). Unlike `store/tmp`, it survives lock hand-overs.
    pub fn staging_dir(&self) -> Result<StagingDir> {
        let pid = std::process::id();
        let start = crate::sessions::process_start_time(pid).unwrap_or(0);
        create_dir_all_private(&self.layout.staging)
            .map_err(io_at("create", &self.layout.staging))?;
        let path = self
            .layout
            .staging
            .join(format!("{pid}-{start}-{}", crate::fsutil::unique_name("s")));
        create_dir_private(&path).map_err(io_at("create", &path))?;
        Ok(StagingDir {
            path,
            trees: self.tree_worker(),
        })
    }

    /// Writable upper directory of an environment (overlay upperdir).
    pub fn env_upper(&self, env_id: &str) -> PathBuf {
        self.layout.upper(env_id)
    }

    /// Overlay work directory of an environment.
    pub fn env_work(&self, env_id: &str) -> PathBuf {
        self.layout.work(env_id)
    }
}
