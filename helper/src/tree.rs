//! `Request::Tree`: pack, unpack or remove a tree of the caller's store in a user namespace
//! with the environment's full id maps (see `karapace_backend_namespace::worker`).
//!
//! Why this is safe for a less trusted caller: every path must lie beneath the caller's own
//! store root and is resolved there without following any symbolic link; removal is limited
//! to the store's scratch, tree and environment directories; the work runs with capabilities
//! only over the caller's own ids and the caller's subordinate ids, confined by Landlock to
//! the store root; the archive code refuses every entry that could leave the target.

use std::io::{self, BufReader, BufWriter, Write};
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use karapace_backend_namespace::{IdMap, landlock_decision, worker};
use karapace_protocol::{
    DiffEntry, Refusal, SetupStep, TreeFailure, TreeJob, TreeOp, TreeStats, UnpackSpec, Whiteouts,
};
use karapace_store::StoreError;
use karapace_store::tar::{
    ArchiveLimits, Owners, UnpackOptions, WhiteoutMode, pack_dir_with, unpack,
};
use nix::sys::stat::fstat;

use crate::validate::{normalized, open_absolute, open_beneath};

/// Directories of a store (relative to its root) whose subtrees a job may remove: scratch
/// space, layer trees and environments. Never the objects, layers, metadata or the WAL.
const REMOVABLE_UNDER: [&str; 4] = ["store/tmp", "store/staging", "store/trees", "env"];

/// Checks `job` and runs it; `landlock_abi` is the kernel's.
pub fn serve(
    job: TreeJob,
    uid: u32,
    gid: u32,
    landlock_abi: Option<i32>,
) -> Result<TreeStats, Refusal> {
    // A tree job belongs to the core's store operation: when the core dies (crash, SIGKILL),
    // so do this process and its worker, before the next command recovers the store.
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| karapace_backend_namespace::Step(SetupStep::DeathSignal, e))?;
    if nix::unistd::getppid() != parent {
        return Err(Refusal::PeerRejected("the core is gone".into()));
    }
    let landlock = landlock_decision(landlock_abi, job.allow_without_landlock)?;
    let map = IdMap::full(uid, gid)?;
    let root_path = job.store_root.clone();
    canonical(&root_path)?;
    let root = open_absolute(&root_path, true)?;
    let st = fstat(root.as_fd()).map_err(|e| Refusal::Open {
        path: root_path.clone(),
        errno: e as i32,
    })?;
    if st.st_uid != uid {
        return Err(Refusal::NotOwner(root_path));
    }
    // The worker's root is the store root: it gets every path as seen from there.
    let inside = |p: &Path| {
        worker::inside(&root_path, p).ok_or_else(|| Refusal::OutsideStore(p.to_path_buf()))
    };
    match job.op {
        TreeOp::Pack { dir, adopt } => {
            canonical(&dir)?;
            open_beneath(&root, &root_path, &dir, true)?;
            let dir = inside(&dir)?;
            worker::run(map, &root_path, landlock, move || pack(&dir, adopt))
        }
        TreeOp::Unpack { dir, options } => {
            canonical(&dir)?;
            open_beneath(&root, &root_path, &dir, true)?;
            let dir = inside(&dir)?;
            worker::run(map, &root_path, landlock, move || {
                unpack_stdin(&dir, options)
            })
        }
        TreeOp::Remove { path } => {
            canonical(&path)?;
            let parent = removable_parent(&root_path, &path)?;
            open_beneath(&root, &root_path, &parent, true)?;
            let path = inside(&path)?;
            worker::run(map, &root_path, landlock, move || remove(&path))
        }
        TreeOp::Diff { upper, lowers } => {
            crate::validate::check_len(
                "lower layers",
                lowers.len(),
                karapace_protocol::limits::MAX_LOWERS,
            )?;
            let mut inside_lowers = Vec::with_capacity(lowers.len());
            for dir in std::iter::once(&upper).chain(&lowers) {
                canonical(dir)?;
                open_beneath(&root, &root_path, dir, true)?;
                inside_lowers.push(inside(dir)?);
            }
            let upper = inside_lowers.remove(0);
            worker::run(map, &root_path, landlock, move || {
                diff(&upper, &inside_lowers)
            })
        }
    }
}

/// Absolute, normalized and spelt exactly as its components (no trailing `/`, which would make
/// the kernel resolve the last component through a symbolic link).
fn canonical(p: &Path) -> Result<(), Refusal> {
    normalized(p)?;
    let rebuilt: PathBuf = p.components().collect();
    if rebuilt.as_os_str() == p.as_os_str() {
        Ok(())
    } else {
        Err(Refusal::NotNormalized(p.to_path_buf()))
    }
}

/// The parent of `path`, which must lie strictly below one of [`REMOVABLE_UNDER`].
fn removable_parent(root: &Path, path: &Path) -> Result<PathBuf, Refusal> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| Refusal::OutsideStore(path.to_path_buf()))?;
    let allowed = REMOVABLE_UNDER.iter().any(|base| {
        rel.strip_prefix(base).is_ok_and(|below| {
            below
                .components()
                .any(|c| matches!(c, Component::Normal(_)))
        })
    });
    match path.parent() {
        Some(parent) if allowed => Ok(parent.to_path_buf()),
        _ => Err(Refusal::Invalid(format!(
            "{} is not a tree the store may remove",
            path.display()
        ))),
    }
}

fn failure(e: StoreError) -> TreeFailure {
    match e {
        StoreError::UnsafeArchive { path, reason } => TreeFailure::UnsafeArchive { path, reason },
        StoreError::Integrity { reason, .. } => TreeFailure::Integrity(reason),
        other => TreeFailure::Other(other.to_string()),
    }
}

fn pack(dir: &Path, adopt: bool) -> Result<TreeStats, TreeFailure> {
    if adopt {
        karapace_store::fsutil::clear_set_id(dir).map_err(failure)?;
        karapace_store::fsutil::settle_times(dir).map_err(failure)?;
    }
    let out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let (mut out, stats) = pack_dir_with(dir, out, Owners::Keep).map_err(failure)?;
    out.flush()
        .map_err(|e| TreeFailure::Other(format!("write the archive: {e}")))?;
    Ok(TreeStats {
        entries: stats.entries,
        file_bytes: stats.file_bytes,
        ..TreeStats::default()
    })
}

fn unpack_stdin(dir: &Path, spec: UnpackSpec) -> Result<TreeStats, TreeFailure> {
    let opts = UnpackOptions {
        whiteouts: match spec.whiteouts {
            Whiteouts::Convert => WhiteoutMode::Convert,
            Whiteouts::AsFiles => WhiteoutMode::AsFiles,
            Whiteouts::Reject => WhiteoutMode::Reject,
        },
        skip_devices: spec.skip_devices,
        reject_escaping_symlinks: spec.reject_escaping_symlinks,
        keep_set_id: spec.keep_set_id,
        limits: ArchiveLimits {
            max_entries: spec.max_entries,
            max_bytes: spec.max_bytes,
        },
        owners: Owners::Keep,
    };
    let input = BufReader::with_capacity(1 << 20, io::stdin().lock());
    let stats = unpack(input, dir, opts).map_err(failure)?;
    Ok(TreeStats {
        entries: stats.entries,
        file_bytes: stats.file_bytes,
        set_id_cleared: stats.set_id_cleared,
        removed: false,
    })
}

/// Writes the differences of `upper` against `lowers` to stdout, one [`DiffEntry`] frame each.
fn diff(upper: &Path, lowers: &[PathBuf]) -> Result<TreeStats, TreeFailure> {
    let found = karapace_store::diff_trees(upper, lowers).map_err(failure)?;
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let entries = found
        .added
        .into_iter()
        .map(DiffEntry::Added)
        .chain(found.modified.into_iter().map(DiffEntry::Modified))
        .chain(found.removed.into_iter().map(DiffEntry::Removed));
    let mut n = 0;
    for entry in entries {
        let frame = karapace_protocol::frame(&entry)
            .map_err(|e| TreeFailure::Other(format!("encode a difference: {e}")))?;
        out.write_all(&frame)
            .map_err(|e| TreeFailure::Other(format!("write the differences: {e}")))?;
        n += 1;
    }
    out.flush()
        .map_err(|e| TreeFailure::Other(format!("write the differences: {e}")))?;
    Ok(TreeStats {
        entries: n,
        ..TreeStats::default()
    })
}

fn remove(path: &Path) -> Result<TreeStats, TreeFailure> {
    let removed = karapace_store::fsutil::remove_tree_if_exists(path).map_err(failure)?;
    Ok(TreeStats {
        removed,
        ..TreeStats::default()
    })
}
