//! Unpacking: a tar stream into a directory, refusing whatever could write outside it.

use crate::error::{Result, TarError, io_at, io_err, shown_path};
use crate::fs::{settle_time, without_set_id};
use crate::guard::{ArchiveGuard, ArchiveLimits};
use crate::owners::{Owners, inside_id};
use crate::whiteout::{OPAQUE_MARKER, STORE_OPAQUE_XATTR, WHITEOUT_PREFIX, WhiteoutMode};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use tar::{EntryType, Header};

/// How to unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackOptions {
    pub whiteouts: WhiteoutMode,
    /// Skip device nodes and fifos instead of refusing the archive.
    pub skip_devices: bool,
    /// Refuse relative symlinks that climb above the unpack root.
    pub reject_escaping_symlinks: bool,
    /// Keep setuid/setgid bits on regular files (off: they are dropped and counted).
    pub keep_set_id: bool,
    /// Caps on the archive's size.
    pub limits: ArchiveLimits,
    /// Give entries their recorded owners ([`Owners::Keep`]) or none.
    pub owners: Owners,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            whiteouts: WhiteoutMode::AsFiles,
            skip_devices: false,
            reject_escaping_symlinks: true,
            keep_set_id: false,
            limits: ArchiveLimits::default(),
            owners: Owners::Collapse,
        }
    }
}

impl UnpackOptions {
    /// Options for rebuilding an overlay upper or lower tree from a layer of this store.
    pub fn overlay() -> Self {
        UnpackOptions {
            whiteouts: WhiteoutMode::Convert,
            skip_devices: true,
            ..UnpackOptions::default()
        }
    }
}

/// Counts of what was unpacked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub file_bytes: u64,
    /// Regular files whose setuid/setgid bits were dropped.
    pub set_id_cleared: u64,
}

/// Errors from reading the archive: malformed or corrupt input is an integrity error.
fn archive_err(e: io::Error) -> TarError {
    if matches!(
        e.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::Other
    ) {
        TarError::Integrity {
            key: "archive".into(),
            reason: e.to_string(),
        }
    } else {
        io_err("read archive")(e)
    }
}

fn unsafe_entry(path: &Path, reason: &str) -> TarError {
    TarError::UnsafeArchive {
        path: shown_path(path),
        reason: reason.to_string(),
    }
}

/// Split an archive path into plain components, refusing absolute paths and `..`.
fn clean_components(path: &Path) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(path, "absolute path"));
            }
            Component::ParentDir => return Err(unsafe_entry(path, "'..' component")),
        }
    }
    Ok(out)
}

/// Most symlinks one resolution may pass through (the kernel's limit too).
const MAX_LINK_HOPS: u32 = 40;

/// One step of a path being resolved.
enum Step {
    Root,
    Up,
    Name(OsString),
}

/// Push `path`'s steps onto `todo` (a stack: the first step ends up on top).
fn push_steps(todo: &mut Vec<Step>, path: &Path) {
    for c in path.components().rev() {
        todo.push(match c {
            Component::RootDir | Component::Prefix(_) => Step::Root,
            Component::ParentDir => Step::Up,
            Component::CurDir => continue,
            Component::Normal(n) => Step::Name(n.to_os_string()),
        });
    }
}

/// Resolve `target`, the target of the symlink at `link` (relative to `root`), through the
/// symlinks now in the tree, as `openat2(RESOLVE_IN_ROOT)` would (an absolute target, here
/// or on a link passed through, starts again at the root). `Ok(true)` when a `..` would
/// climb above the root. Components that do not exist (yet), or are not directories, are
/// taken lexically: the check after extraction sees what they became.
fn symlink_escapes(root: &Path, link: &Path, target: &Path) -> Result<bool> {
    let mut cur: PathBuf = link.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut todo = Vec::new();
    push_steps(&mut todo, target);
    let mut hops = 0;
    while let Some(step) = todo.pop() {
        match step {
            Step::Root => cur = PathBuf::new(),
            Step::Up => {
                if !cur.pop() {
                    return Ok(true);
                }
            }
            Step::Name(n) => {
                cur.push(&n);
                let abs = root.join(&cur);
                if fs::symlink_metadata(&abs).is_ok_and(|m| m.file_type().is_symlink()) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(unsafe_entry(link, "symlink chain too long to check"));
                    }
                    let next = fs::read_link(&abs).map_err(io_at("read link", &abs))?;
                    cur.pop();
                    push_steps(&mut todo, &next);
                }
            }
        }
    }
    Ok(false)
}

struct Unpacker<'a> {
    root: &'a Path,
    opts: UnpackOptions,
    /// Directories (relative) known to be real directories we may write into.
    verified: HashSet<PathBuf>,
    dir_modes: Vec<(PathBuf, u32)>,
    /// Symlinks created (relative paths), checked again over the finished tree: a link
    /// extracted later can change where an earlier one leads.
    links: Vec<PathBuf>,
    buf: Vec<u8>,
}

impl Unpacker<'_> {
    /// Make sure every ancestor of `rel` is a real directory (creating missing ones);
    /// refuse symlinked or non-directory parents.
    fn ensure_parents(&mut self, rel: &[OsString], create: bool, shown: &Path) -> Result<()> {
        let mut cur = PathBuf::new();
        for c in &rel[..rel.len().saturating_sub(1)] {
            cur.push(c);
            if self.verified.contains(&cur) {
                continue;
            }
            let abs = self.root.join(&cur);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(unsafe_entry(shown, "parent directory is a symlink"));
                }
                Ok(_) => return Err(unsafe_entry(shown, "parent is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&abs).map_err(io_at("create directory", &abs))?;
                }
                Err(e) => return Err(io_at("stat", &abs)(e)),
            }
            self.verified.insert(cur.clone());
        }
        Ok(())
    }

    /// Remove whatever non-directory is at `abs` so a new entry can take its place.
    fn clear_slot(abs: &Path, shown: &Path, new_is_dir: bool) -> Result<bool> {
        match fs::symlink_metadata(abs) {
            Ok(m) if m.is_dir() => {
                if new_is_dir {
                    Ok(true)
                } else {
                    Err(unsafe_entry(shown, "would replace a directory"))
                }
            }
            Ok(_) => {
                fs::remove_file(abs).map_err(io_at("replace", abs))?;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_at("stat", abs)(e)),
        }
    }

    /// The owner to give an entry: its recorded one ([`Owners::Keep`]) or none.
    fn owner_of(&self, h: &Header) -> Option<(u32, u32)> {
        (self.opts.owners == Owners::Keep).then(|| {
            (
                inside_id(h.uid().unwrap_or(u64::MAX)),
                inside_id(h.gid().unwrap_or(u64::MAX)),
            )
        })
    }

    fn write_file(
        &mut self,
        abs: &Path,
        shown: &Path,
        mode: u32,
        owner: Option<(u32, u32)>,
        r: &mut dyn Read,
    ) -> Result<u64> {
        let create = || OpenOptions::new().write(true).create_new(true).open(abs);
        // Create first (the common case needs no extra stat); on EEXIST replace the old
        // entry (never a directory) and try again. O_EXCL never follows a symlink.
        let mut f = match create() {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Self::clear_slot(abs, shown, false)?;
                create().map_err(io_at("create", abs))?
            }
            Err(e) => return Err(io_at("create", abs)(e)),
        };
        let mut total = 0u64;
        loop {
            let n = match r.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(archive_err(e)),
            };
            f.write_all(&self.buf[..n]).map_err(io_at("write", abs))?;
            total += n as u64;
        }
        f.set_times(
            fs::FileTimes::new()
                .set_accessed(std::time::UNIX_EPOCH)
                .set_modified(std::time::UNIX_EPOCH),
        )
        .map_err(io_at("set the times of", abs))?;
        // Owner before mode: a change of owner clears the set-id bits.
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io_at("chown", abs))?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_at("chmod", abs))?;
        Ok(total)
    }

    /// The mode a regular file gets: set-id bits dropped (and counted) unless kept.
    fn file_mode(&self, mode: u32, stats: &mut UnpackStats) -> u32 {
        if self.opts.keep_set_id || without_set_id(mode) == mode {
            mode
        } else {
            stats.set_id_cleared += 1;
            without_set_id(mode)
        }
    }

    /// Check every symlink again now that the tree is complete.
    fn recheck_links(&mut self) -> Result<()> {
        self.links.sort();
        self.links.dedup();
        for rel in &self.links {
            let abs = self.root.join(rel);
            // Replaced by a later entry: that entry was checked on its own.
            let Ok(target) = fs::read_link(&abs) else {
                continue;
            };
            if symlink_escapes(self.root, rel, &target)? {
                return Err(unsafe_entry(rel, "symlink points outside the tree"));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_lines)] // one match over entry types reads best in one place
    fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>, stats: &mut UnpackStats) -> Result<()> {
        let raw_path = e
            .path()
            .map_err(io_err("read archive entry path"))?
            .into_owned();
        let comps = clean_components(&raw_path)?;
        let kind = e.header().entry_type();
        let mode = e
            .header()
            .mode()
            .map_err(io_err("read archive entry mode"))?
            & 0o7777;
        if comps.is_empty() {
            // The archive root ("./"): nothing to create.
            return Ok(());
        }
        let rel: PathBuf = comps.iter().collect();
        let owner = self.owner_of(e.header());
        let lchown = |abs: &Path| -> Result<()> {
            match owner {
                Some((uid, gid)) => std::os::unix::fs::lchown(abs, Some(uid), Some(gid))
                    .map_err(io_at("chown", abs)),
                None => Ok(()),
            }
        };
        let name = comps[comps.len() - 1].as_bytes();
        let is_marker = name.starts_with(WHITEOUT_PREFIX.as_bytes());
        if is_marker && self.opts.whiteouts != WhiteoutMode::AsFiles {
            if self.opts.whiteouts == WhiteoutMode::Reject {
                return Err(unsafe_entry(
                    &raw_path,
                    "whiteout entries are not accepted here",
                ));
            }
            self.ensure_parents(&comps, true, &raw_path)?;
            let parent_abs = self.root.join(rel.parent().unwrap_or(Path::new("")));
            if name == OPAQUE_MARKER.as_bytes() {
                xattr::set(&parent_abs, STORE_OPAQUE_XATTR, b"y")
                    .map_err(io_at("set opaque xattr on", &parent_abs))?;
            } else {
                let target = parent_abs.join(OsStr::from_bytes(&name[WHITEOUT_PREFIX.len()..]));
                if Self::clear_slot(&target, &raw_path, false)? {
                    return Err(unsafe_entry(
                        &raw_path,
                        "whiteout over a directory in the same layer",
                    ));
                }
                nix::sys::stat::mknod(
                    &target,
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::empty(),
                    nix::sys::stat::makedev(0, 0),
                )
                .map_err(|errno| io_at("create whiteout", &target)(io::Error::from(errno)))?;
            }
            stats.entries += 1;
            return Ok(());
        }
        let abs = self.root.join(&rel);
        match kind {
            EntryType::Directory => {
                self.ensure_parents(&comps, true, &raw_path)?;
                if !Self::clear_slot(&abs, &raw_path, true)? {
                    fs::create_dir(&abs).map_err(io_at("create directory", &abs))?;
                }
                lchown(&abs)?;
                // Owner must keep write access while children are created; the real mode is
                // applied at the end.
                self.verified.insert(rel.clone());
                self.dir_modes.push((abs, mode));
            }
            EntryType::Regular | EntryType::Continuous => {
                self.ensure_parents(&comps, true, &raw_path)?;
                let mode = self.file_mode(mode, stats);
                stats.file_bytes += self.write_file(&abs, &raw_path, mode, owner, &mut e)?;
            }
            EntryType::Symlink => {
                let target = e
                    .link_name()
                    .map_err(io_err("read link target"))?
                    .ok_or_else(|| unsafe_entry(&raw_path, "symlink without target"))?
                    .into_owned();
                self.ensure_parents(&comps, true, &raw_path)?;
                let check = self.opts.reject_escaping_symlinks;
                if check && symlink_escapes(self.root, &rel, &target)? {
                    return Err(unsafe_entry(&raw_path, "symlink points outside the tree"));
                }
                Self::clear_slot(&abs, &raw_path, false)?;
                std::os::unix::fs::symlink(&target, &abs).map_err(io_at("create symlink", &abs))?;
                lchown(&abs)?;
                settle_time(&abs).map_err(io_at("set the times of", &abs))?;
                if check {
                    self.links.push(rel.clone());
                }
            }
            EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(io_err("read link target"))?
                    .ok_or_else(|| unsafe_entry(&raw_path, "hard link without target"))?
                    .into_owned();
                let tcomps = clean_components(&target)
                    .map_err(|_| unsafe_entry(&raw_path, "hard link points outside the tree"))?;
                if tcomps.is_empty() {
                    return Err(unsafe_entry(&raw_path, "hard link to the root"));
                }
                self.ensure_parents(&tcomps, false, &raw_path)?;
                let src_abs = self.root.join(tcomps.iter().collect::<PathBuf>());
                let links_to_symlink = match fs::symlink_metadata(&src_abs) {
                    Ok(m) if m.is_dir() => {
                        return Err(unsafe_entry(&raw_path, "hard link to a directory"));
                    }
                    Ok(m) => m.file_type().is_symlink(),
                    Err(_) => return Err(unsafe_entry(&raw_path, "hard link to a missing entry")),
                };
                self.ensure_parents(&comps, true, &raw_path)?;
                // A hard link to a symlink is a second symlink with the same text in another
                // directory, where a relative target may climb out: check it like one.
                let check = self.opts.reject_escaping_symlinks && links_to_symlink;
                if check {
                    let text = fs::read_link(&src_abs).map_err(io_at("read link", &src_abs))?;
                    if symlink_escapes(self.root, &rel, &text)? {
                        return Err(unsafe_entry(&raw_path, "symlink points outside the tree"));
                    }
                }
                Self::clear_slot(&abs, &raw_path, false)?;
                fs::hard_link(&src_abs, &abs).map_err(io_at("create hard link", &abs))?;
                if check {
                    self.links.push(rel.clone());
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let major = e.header().device_major().ok().flatten().unwrap_or(1);
                let minor = e.header().device_minor().ok().flatten().unwrap_or(1);
                if kind == EntryType::Char
                    && major == 0
                    && minor == 0
                    && self.opts.whiteouts == WhiteoutMode::Convert
                {
                    // A raw overlay whiteout in a non-OCI tar: keep its meaning.
                    self.ensure_parents(&comps, true, &raw_path)?;
                    Self::clear_slot(&abs, &raw_path, false)?;
                    nix::sys::stat::mknod(
                        &abs,
                        nix::sys::stat::SFlag::S_IFCHR,
                        nix::sys::stat::Mode::empty(),
                        nix::sys::stat::makedev(0, 0),
                    )
                    .map_err(|errno| io_at("create whiteout", &abs)(io::Error::from(errno)))?;
                } else if self.opts.skip_devices {
                    return Ok(());
                } else {
                    return Err(unsafe_entry(
                        &raw_path,
                        "device nodes and fifos are not allowed",
                    ));
                }
            }
            // Metadata records (e.g. the pax global header `git archive` writes): no file.
            EntryType::XGlobalHeader | EntryType::XHeader => return Ok(()),
            other => {
                return Err(unsafe_entry(
                    &raw_path,
                    &format!("unsupported entry type {other:?}"),
                ));
            }
        }
        stats.entries += 1;
        Ok(())
    }
}

fn unpack_entries<R: Read>(r: R, u: &mut Unpacker<'_>, stats: &mut UnpackStats) -> Result<()> {
    let mut ar = tar::Archive::new(r);
    let entries = ar.entries().map_err(archive_err)?;
    for e in entries {
        let e = e.map_err(archive_err)?;
        u.entry(e, stats)?;
    }
    Ok(())
}

/// Unpack a tar stream into `dest` (which must exist), streaming entry by entry.
pub fn unpack<R: Read>(r: R, dest: &Path, opts: UnpackOptions) -> Result<UnpackStats> {
    let meta = fs::symlink_metadata(dest).map_err(io_at("stat unpack target", dest))?;
    if !meta.is_dir() {
        return Err(TarError::Invalid(format!(
            "{} is not a directory",
            dest.display()
        )));
    }
    let mut u = Unpacker {
        root: dest,
        opts,
        verified: HashSet::new(),
        dir_modes: Vec::new(),
        links: Vec::new(),
        buf: vec![0; 256 * 1024],
    };
    let mut stats = UnpackStats::default();
    let mut guard = ArchiveGuard::new(r, opts.limits);
    let res = unpack_entries(&mut guard, &mut u, &mut stats);
    if let Some(reason) = guard.violation.take() {
        return Err(TarError::UnsafeArchive {
            path: guard.entry_name(),
            reason,
        });
    }
    res?;
    u.recheck_links()?;
    // Deepest first, so a read-only parent never blocks a child's chmod.
    u.dir_modes
        .sort_by_key(|d| std::cmp::Reverse(d.0.as_os_str().len()));
    // Directories last: every entry created in one changed its times.
    for (p, mode) in u.dir_modes {
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io_at("chmod", &p))?;
        settle_time(&p).map_err(io_at("set the times of", &p))?;
    }
    settle_time(dest).map_err(io_at("set the times of", dest))?;
    Ok(stats)
}
