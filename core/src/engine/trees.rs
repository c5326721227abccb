//! Who owns the files of this user's environments, and who works on their trees.
//!
//! Three cases (docs/storage-format.md, "Owners and id maps"):
//! * root: environments map every inside id to the same host id; the store's owner can read,
//!   give away and remove every file itself, so trees are worked on in this process and layers
//!   record the owners ([`Owners::Keep`]);
//! * a user with a subordinate id range of at least 65536 ids: environments map inside 0 to
//!   the user and the other ids to the range; files of those ids are worked on by the helper
//!   in a user namespace with the same maps ([`HelperTrees`]), and layers record the owners;
//! * a user without one: environments map only the user, every file is the user's, layers
//!   record 0:0 ([`Owners::Collapse`]) and builds skip `chown` ([`IdMapMode::Collapsed`]).
//!
//! The first two record the same layers for the same lock, on every machine.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use karapace_helper_client::{
    self as hc, HelperError, ID_MAPS_FULL, IdMapMode, MODE_PRIVILEGED, Refusal, TreeFailure,
    TreeJob, TreeOp, UnpackSpec, Whiteouts,
};
use karapace_store::tar::{PackStats, UnpackOptions, UnpackStats, WhiteoutMode};
use karapace_store::{InProcess, Owners, SharedTreeWorker, StoreError, TreeWorker};

/// Whose ids the files of this user's environments carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// The caller is root: every id maps to itself.
    Root,
    /// The caller's subordinate range maps every other inside id (the helper's description).
    Subordinate(String),
    /// Only the caller's ids: every file is the caller's (why, from the helper).
    Collapsed(String),
    /// A privileged helper (a host without unprivileged user namespaces): no id map at all,
    /// every file is the caller's, as with [`Ownership::Collapsed`] (the helper's words).
    Privileged(String),
}

impl Ownership {
    /// This user's case: root, else what the helper answers to `--id-maps`.
    pub fn detect() -> Ownership {
        if nix::unistd::geteuid().is_root() {
            return Ownership::Root;
        }
        let answer = hc::helper_path().ok().and_then(|helper| {
            std::process::Command::new(helper)
                .arg("--id-maps")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()
        });
        let text = answer
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        match text.split_once(' ') {
            Some((ID_MAPS_FULL, maps)) => Ownership::Subordinate(maps.to_owned()),
            Some((MODE_PRIVILEGED, why)) => Ownership::Privileged(why.to_owned()),
            Some((_, why)) => Ownership::Collapsed(why.to_owned()),
            None => Ownership::Collapsed(
                "karapace-helper did not say which id maps it can write".into(),
            ),
        }
    }

    /// The id maps of build steps.
    pub fn build_id_map(&self) -> IdMapMode {
        match self {
            Ownership::Root | Ownership::Subordinate(_) => IdMapMode::Full,
            Ownership::Collapsed(_) | Ownership::Privileged(_) => IdMapMode::Collapsed,
        }
    }

    /// The id maps of sessions, which run as the caller: root's are the full identity maps;
    /// a user's own uid is mapped to itself only in a single map (files of other ids then
    /// show as `nobody` in sessions). Needs no helper to know.
    pub fn session_id_map_for_caller() -> IdMapMode {
        if nix::unistd::geteuid().is_root() {
            IdMapMode::Full
        } else {
            IdMapMode::Single
        }
    }

    /// What layers record about owners.
    pub fn owners(&self) -> Owners {
        match self {
            Ownership::Collapsed(_) | Ownership::Privileged(_) => Owners::Collapse,
            _ => Owners::Keep,
        }
    }
}

impl Ownership {
    /// What a build whose files all become the caller's says about it (none otherwise).
    pub fn note(&self) -> Option<String> {
        match self {
            Ownership::Collapsed(why) => Some(collapsed_hint(why)),
            Ownership::Privileged(why) => Some(why.clone()),
            Ownership::Root | Ownership::Subordinate(_) => None,
        }
    }
}

/// The one-line hint a build without a subordinate range prints (`why` goes to the debug log).
pub fn collapsed_hint(why: &str) -> String {
    tracing::debug!("owners collapsed: {why}");
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| "$USER".to_owned(), |u| u.name);
    format!(
        "no subordinate id range for {user}, so files of system users are yours in this \
         environment; for their real owners: sudo usermod --add-subuids 100000-165535 \
         --add-subgids 100000-165535 {user} (a range no other user has), then rebuild"
    )
}

/// The tree worker of this user's stores: in this process for root and for users without a
/// subordinate range, through the helper otherwise. The case is found on first use, so
/// commands that never touch a tree never ask.
#[derive(Debug, Default)]
pub struct Trees {
    ownership: OnceLock<Ownership>,
    /// The store root as the store spells it (perhaps through a symbolic link of the user's:
    /// the store checks who owns such a link, so it keeps that spelling).
    root: PathBuf,
    allow_without_landlock: bool,
}

impl Trees {
    /// The worker for the store at `root`.
    pub fn for_store(root: &Path, allow_without_landlock: bool) -> SharedTreeWorker {
        std::sync::Arc::new(Trees {
            ownership: OnceLock::new(),
            root: root.to_path_buf(),
            allow_without_landlock,
        })
    }

    fn ownership(&self) -> &Ownership {
        self.ownership.get_or_init(Ownership::detect)
    }

    /// The in-process worker, for the cases that need no helper.
    fn local(&self) -> Option<InProcess> {
        match self.ownership() {
            Ownership::Subordinate(_) => None,
            other => Some(InProcess {
                owners: other.owners(),
            }),
        }
    }

    /// A job for the helper, which insists on symlink-free paths: the store root is resolved
    /// now (the store exists by the time a tree is worked on) and `path`, a path of the store,
    /// re-spelt beneath it.
    fn job(&self, path: &Path, op: impl FnOnce(PathBuf) -> TreeOp) -> io::Result<TreeJob> {
        self.job_of(&[path], |mut respelt| op(respelt.remove(0)))
    }

    /// [`Trees::job`] on several paths of the store.
    fn job_of(
        &self,
        paths: &[&Path],
        op: impl FnOnce(Vec<PathBuf>) -> TreeOp,
    ) -> io::Result<TreeJob> {
        let root = self.root.canonicalize()?;
        let respelt = paths
            .iter()
            .map(|path| {
                let rel = path.strip_prefix(&self.root).map_err(|_| {
                    io::Error::other(format!(
                        "{} is not beneath the store root {}",
                        path.display(),
                        self.root.display()
                    ))
                })?;
                Ok(root.join(rel))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(TreeJob {
            op: op(respelt),
            store_root: root,
            // The flag, or the user's config saying the same.
            allow_without_landlock: super::runtime::allow_without_landlock(
                self.allow_without_landlock,
            )
            .unwrap_or(self.allow_without_landlock),
        })
    }
}

/// A helper's failure of a tree job, in the store's terms.
fn store_error(what: &str, path: &Path, e: HelperError) -> StoreError {
    match e {
        HelperError::Refused(Refusal::Tree(TreeFailure::UnsafeArchive { path, reason })) => {
            StoreError::UnsafeArchive { path, reason }
        }
        HelperError::Refused(Refusal::Tree(TreeFailure::Integrity(reason))) => {
            StoreError::Integrity {
                key: "archive".into(),
                reason,
            }
        }
        other => StoreError::Io {
            context: format!("{what} {} through karapace-helper", path.display()),
            source: io::Error::other(other.to_string()),
        },
    }
}

fn io_error(what: &str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let context = format!("{what} {}", path.display());
    move |source| StoreError::Io { context, source }
}

impl TreeWorker for Trees {
    fn owners(&self) -> Owners {
        self.ownership().owners()
    }

    fn pack(
        &self,
        dir: &Path,
        adopt: bool,
        out: &mut dyn Write,
    ) -> karapace_store::error::Result<PackStats> {
        if let Some(local) = self.local() {
            return local.pack(dir, adopt, out);
        }
        let (read, write) = io::pipe().map_err(io_error("pack", dir))?;
        let job = self
            .job(dir, |dir| TreeOp::Pack { dir, adopt })
            .map_err(io_error("pack", dir))?;
        let session =
            hc::tree(&job, Stdio::null(), write.into()).map_err(|e| store_error("pack", dir, e))?;
        // The helper and its worker hold the only write ends: end of file means the worker is
        // done (or gone, which `finish` reports).
        let copied = io::copy(&mut io::BufReader::with_capacity(1 << 20, read), out);
        let stats = session.finish().map_err(|e| store_error("pack", dir, e))?;
        copied.map_err(io_error("pack", dir))?;
        Ok(PackStats {
            entries: stats.entries,
            file_bytes: stats.file_bytes,
        })
    }

    fn unpack(
        &self,
        from: &mut dyn Read,
        dest: &Path,
        opts: UnpackOptions,
    ) -> karapace_store::error::Result<UnpackStats> {
        if let Some(local) = self.local() {
            return local.unpack(from, dest, opts);
        }
        let (read, mut write) = io::pipe().map_err(io_error("unpack into", dest))?;
        let options = UnpackSpec {
            whiteouts: match opts.whiteouts {
                WhiteoutMode::Convert => Whiteouts::Convert,
                WhiteoutMode::AsFiles => Whiteouts::AsFiles,
                WhiteoutMode::Reject => Whiteouts::Reject,
            },
            skip_devices: opts.skip_devices,
            reject_escaping_symlinks: opts.reject_escaping_symlinks,
            keep_set_id: opts.keep_set_id,
            max_entries: opts.limits.max_entries,
            max_bytes: opts.limits.max_bytes,
        };
        let job = self
            .job(dest, |dir| TreeOp::Unpack { dir, options })
            .map_err(io_error("unpack into", dest))?;
        let session = hc::tree(&job, read.into(), Stdio::null())
            .map_err(|e| store_error("unpack into", dest, e))?;
        // A worker that stops reading (the archive's end, or a refusal) breaks the pipe: the
        // rest of the input is still read, so a verifying reader sees all of it, and the
        // worker's own report says what happened.
        let fed = feed(from, &mut write);
        drop(write);
        let stats = session
            .finish()
            .map_err(|e| store_error("unpack into", dest, e))?;
        fed.map_err(io_error("unpack into", dest))?;
        Ok(UnpackStats {
            entries: stats.entries,
            file_bytes: stats.file_bytes,
            set_id_cleared: stats.set_id_cleared,
        })
    }

    fn remove(&self, path: &Path) -> karapace_store::error::Result<bool> {
        if let Some(local) = self.local() {
            return local.remove(path);
        }
        let job = self
            .job(path, |path| TreeOp::Remove { path })
            .map_err(io_error("remove", path))?;
        let session = hc::tree(&job, Stdio::null(), Stdio::null())
            .map_err(|e| store_error("remove", path, e))?;
        let stats = session
            .finish()
            .map_err(|e| store_error("remove", path, e))?;
        Ok(stats.removed)
    }

    fn diff(
        &self,
        upper: &Path,
        lowers: &[PathBuf],
    ) -> karapace_store::error::Result<karapace_store::Diff> {
        if let Some(local) = self.local() {
            return local.diff(upper, lowers);
        }
        let paths: Vec<&Path> = std::iter::once(upper)
            .chain(lowers.iter().map(PathBuf::as_path))
            .collect();
        let job = self
            .job_of(&paths, |mut respelt| {
                let upper = respelt.remove(0);
                TreeOp::Diff {
                    upper,
                    lowers: respelt,
                }
            })
            .map_err(io_error("compare", upper))?;
        let (read, write) = io::pipe().map_err(io_error("compare", upper))?;
        let session = hc::tree(&job, Stdio::null(), write.into())
            .map_err(|e| store_error("compare", upper, e))?;
        let diff = read_diff(read);
        // A diff refused for its size closed the pipe, which the worker then fails on: the
        // size is the reason to report, not the broken pipe.
        let finished = session.finish();
        let diff = diff.map_err(io_error("compare", upper))?;
        finished.map_err(|e| store_error("compare", upper, e))?;
        Ok(diff)
    }
}

/// Reads the frames of a helper's diff until the worker closes its output, within the bounds
/// the store's own diff keeps (`karapace_store::DiffBudget`): a helper is not trusted to.
fn read_diff(from: impl Read) -> io::Result<karapace_store::Diff> {
    use hc::{DiffEntry, FrameError, read_frame};
    let mut from = io::BufReader::with_capacity(1 << 16, from);
    let mut diff = karapace_store::Diff::default();
    let mut budget = karapace_store::DiffBudget::default();
    loop {
        let (list, path) = match read_frame::<DiffEntry>(&mut from) {
            Ok(DiffEntry::Added(p)) => (&mut diff.added, p),
            Ok(DiffEntry::Modified(p)) => (&mut diff.modified, p),
            Ok(DiffEntry::Removed(p)) => (&mut diff.removed, p),
            Err(FrameError::Closed) => return Ok(diff),
            Err(e) => return Err(io::Error::other(e.to_string())),
        };
        budget
            .take(path.len())
            .map_err(|e| io::Error::other(e.to_string()))?;
        list.push(path);
    }
}

/// Copies `from` into `to` until `from` ends; once `to` is broken the rest is only read.
fn feed(from: &mut dyn Read, to: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut broken = false;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if !broken {
            match to.write_all(&buf[..n]) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => broken = true,
                Err(e) => return Err(e),
            }
        }
    }
}
