//! Deterministic layer tars: pack a directory into a tar stream and unpack one safely.
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

use crate::error::{Result, StoreError, io_at, io_err};
use crate::fsutil::{
    OpenedDirs, chmod_nofollow, open_regular_beneath, settle_time, without_set_id,
};
use karapace_protocol::{MAX_INSIDE_ID, OVERFLOW_ID};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use tar::{EntryType, Header};

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

/// What kind of node a walked path is, as it will appear in the tar.
#[derive(Debug)]
enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        size: u64,
        dev_ino: Option<(u64, u64)>,
    },
    Symlink {
        target: PathBuf,
    },
    Device {
        kind: EntryType,
        mode: u32,
        major: u32,
        minor: u32,
    },
    Fifo {
        mode: u32,
    },
    /// An empty OCI marker file (`.wh.<name>` or `.wh..wh..opq`).
    Marker,
}

struct Walked {
    tar_path: Vec<u8>,
    src: PathBuf,
    node: Node,
    /// uid and gid recorded in the tar.
    owner: (u32, u32),
}

impl Walked {
    /// An OCI marker entry (whiteout or opaque directory), owned by 0:0 like every marker.
    fn marker(tar_path: Vec<u8>, src: PathBuf) -> Walked {
        Walked {
            tar_path,
            src,
            node: Node::Marker,
            owner: (0, 0),
        }
    }
}

/// Whose ids a tree's files carry, and so what a layer records about owners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Owners {
    /// Every file belongs to the store's owner, who is root inside the environment: layers
    /// record 0:0 and unpacking sets no owner (a store owner without a subordinate id range).
    #[default]
    Collapse,
    /// Files carry the owners they have inside the environment, because this process runs
    /// where exactly those ids are mapped (root on the host, whose environments map every
    /// id to itself, or the helper's tree worker in the environment's user namespace):
    /// layers record them and unpacking restores them. Owners above [`MAX_INSIDE_ID`]
    /// become [`OVERFLOW_ID`] (`nobody`), on every machine alike.
    Keep,
}

fn inside_id(id: u64) -> u32 {
    u32::try_from(id)
        .ok()
        .filter(|id| *id <= MAX_INSIDE_ID)
        .unwrap_or(OVERFLOW_ID)
}

impl Owners {
    /// What a tar records for a file with these host-visible ids.
    fn recorded(self, meta: &fs::Metadata) -> (u32, u32) {
        match self {
            Owners::Collapse => (0, 0),
            Owners::Keep => (
                inside_id(u64::from(meta.uid())),
                inside_id(u64::from(meta.gid())),
            ),
        }
    }
}

fn has_xattr_y(path: &Path, names: &[&str]) -> bool {
    names.iter().any(
        |n| matches!(xattr::get(path, n), Ok(Some(v)) if v.first() == Some(&b'y') || v.is_empty()),
    )
}

fn is_xattr_whiteout(path: &Path, meta: &fs::Metadata) -> bool {
    // Whiteout files are always empty; skip the xattr syscalls for anything else.
    meta.len() == 0
        && WHITEOUT_XATTRS
            .iter()
            .any(|n| matches!(xattr::get(path, n), Ok(Some(_))))
}

fn join_tar(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + name.len() + 1);
    if !parent.is_empty() {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn major(rdev: u64) -> u32 {
    // glibc's encoding of dev_t.
    u32::try_from(((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff)).unwrap_or(u32::MAX)
}
fn minor(rdev: u64) -> u32 {
    u32::try_from(((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff)).unwrap_or(u32::MAX)
}

/// Walk `root` and collect every node with its tar path (paths only; contents stay on disk).
/// Directories the owner cannot list or search (mode 000 from an image, say) are opened up in
/// `opened`, which gives them their modes back when the caller is done reading.
fn walk(root: &Path, opened: &mut OpenedDirs, owners: Owners) -> Result<Vec<Walked>> {
    let mut out = Vec::new();
    let root_meta = fs::symlink_metadata(root).map_err(io_at("stat", root))?;
    opened
        .open(root, root_meta.mode())
        .map_err(io_at("open up", root))?;
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, tar_dir)) = stack.pop() {
        let rd = fs::read_dir(&dir).map_err(io_at("read directory", &dir))?;
        for ent in rd {
            let ent = ent.map_err(io_at("read directory", &dir))?;
            let name = ent.file_name();
            let src = ent.path();
            let meta = fs::symlink_metadata(&src).map_err(io_at("stat", &src))?;
            let ft = meta.file_type();
            let mode = meta.mode() & 0o7777;
            let owner = owners.recorded(&meta);
            let tar_path = join_tar(&tar_dir, name.as_bytes());
            let whiteout_path = || {
                let mut n = WHITEOUT_PREFIX.as_bytes().to_vec();
                n.extend_from_slice(name.as_bytes());
                join_tar(&tar_dir, &n)
            };
            if ft.is_dir() {
                if has_xattr_y(&src, &OPAQUE_XATTRS) {
                    let mut marker = tar_path.clone();
                    marker.push(b'/');
                    marker.extend_from_slice(OPAQUE_MARKER.as_bytes());
                    out.push(Walked::marker(marker, src.clone()));
                }
                out.push(Walked {
                    tar_path: tar_path.clone(),
                    src: src.clone(),
                    node: Node::Dir { mode },
                    owner,
                });
                opened.open(&src, mode).map_err(io_at("open up", &src))?;
                stack.push((src, tar_path));
            } else if ft.is_file() {
                if is_xattr_whiteout(&src, &meta) {
                    out.push(Walked::marker(whiteout_path(), src));
                } else {
                    let dev_ino = (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
                    out.push(Walked {
                        tar_path,
                        src,
                        node: Node::File {
                            mode: without_set_id(mode),
                            size: meta.len(),
                            dev_ino,
                        },
                        owner,
                    });
                }
            } else if ft.is_symlink() {
                let target = fs::read_link(&src).map_err(io_at("read link", &src))?;
                out.push(Walked {
                    tar_path,
                    src,
                    node: Node::Symlink { target },
                    owner,
                });
            } else if ft.is_char_device() && meta.rdev() == 0 {
                out.push(Walked::marker(whiteout_path(), src));
            } else if ft.is_char_device() || ft.is_block_device() {
                let kind = if ft.is_char_device() {
                    EntryType::Char
                } else {
                    EntryType::Block
                };
                let (major, minor) = (major(meta.rdev()), minor(meta.rdev()));
                out.push(Walked {
                    tar_path,
                    src,
                    node: Node::Device {
                        kind,
                        mode,
                        major,
                        minor,
                    },
                    owner,
                });
            } else if ft.is_fifo() {
                out.push(Walked {
                    tar_path,
                    src,
                    node: Node::Fifo { mode },
                    owner,
                });
            }
            // Sockets: skipped on purpose (runtime artefacts).
        }
    }
    out.sort_by(|a, b| a.tar_path.cmp(&b.tar_path));
    Ok(out)
}

fn header(kind: EntryType, mode: u32, size: u64, owner: (u32, u32)) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(u64::from(owner.0));
    h.set_gid(u64::from(owner.1));
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// Reads exactly `remaining` bytes or fails: a file that shrinks while being packed must not
/// produce a corrupt archive (and one that grows is truncated at its stat size).
struct ExactReader<R> {
    inner: R,
    remaining: u64,
    path: PathBuf,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being packed", self.path.display()),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Counts of what was packed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PackStats {
    pub entries: u64,
    pub file_bytes: u64,
}

/// Open the file `path` (below the packed directory `root`) to pack it: no symlink followed on
/// the way from `root`, no blocking on a FIFO put in its place, nothing but a regular file
/// read. A file its owner may not read (mode 000, as some images ship `/etc/shadow`) is made
/// readable for the open and given its mode back.
fn open_for_pack(root: &Path, path: &Path) -> Result<File> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    match open_regular_beneath(root, rel) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let meta = fs::symlink_metadata(path).map_err(io_at("stat", path))?;
            let mode = meta.mode() & 0o7777;
            chmod_nofollow(path, mode | 0o400).map_err(io_at("open", path))?;
            let f = open_regular_beneath(root, rel);
            chmod_nofollow(path, mode).map_err(io_at("chmod", path))?;
            f.map_err(io_at("open", path))
        }
        r => r.map_err(io_at("open", path)),
    }
}

/// Pack `dir` into a deterministic tar stream written to `out`, every entry owned by 0:0;
/// returns `out` and stats.
pub fn pack_dir<W: Write>(dir: &Path, out: W) -> Result<(W, PackStats)> {
    pack_dir_with(dir, out, Owners::Collapse)
}

/// Pack `dir` into a deterministic tar stream written to `out`, recording owners as `owners`
/// says; returns `out` and stats.
pub fn pack_dir_with<W: Write>(dir: &Path, out: W, owners: Owners) -> Result<(W, PackStats)> {
    let mut opened = OpenedDirs::default();
    let entries = walk(dir, &mut opened, owners)?;
    let mut b = tar::Builder::new(out);
    let mut stats = PackStats::default();
    let mut seen_inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for w in entries {
        let path = Path::new(OsStr::from_bytes(&w.tar_path));
        let ctx = || format!("pack {}", w.src.display());
        stats.entries += 1;
        match w.node {
            Node::Dir { mode } => {
                let mut h = header(EntryType::Directory, mode, 0, w.owner);
                b.append_data(&mut h, path, io::empty())
                    .map_err(io_err(ctx()))?;
            }
            Node::Marker => {
                let mut h = header(EntryType::Regular, 0o644, 0, w.owner);
                b.append_data(&mut h, path, io::empty())
                    .map_err(io_err(ctx()))?;
            }
            Node::File {
                mode,
                size,
                dev_ino,
            } => {
                if let Some(key) = dev_ino {
                    if let Some(first) = seen_inodes.get(&key) {
                        let mut h = header(EntryType::Link, mode, 0, w.owner);
                        let target = Path::new(OsStr::from_bytes(first));
                        b.append_link(&mut h, path, target).map_err(io_err(ctx()))?;
                        continue;
                    }
                    seen_inodes.insert(key, w.tar_path.clone());
                }
                let f = open_for_pack(dir, &w.src)?;
                let mut h = header(EntryType::Regular, mode, size, w.owner);
                let r = ExactReader {
                    inner: f,
                    remaining: size,
                    path: w.src.clone(),
                };
                b.append_data(&mut h, path, r).map_err(io_err(ctx()))?;
                stats.file_bytes += size;
            }
            Node::Symlink { target } => {
                let mut h = header(EntryType::Symlink, 0o777, 0, w.owner);
                b.append_link(&mut h, path, &target)
                    .map_err(io_err(ctx()))?;
            }
            Node::Device {
                kind,
                mode,
                major,
                minor,
            } => {
                let mut h = header(kind, mode, 0, w.owner);
                h.set_device_major(major).map_err(io_err(ctx()))?;
                h.set_device_minor(minor).map_err(io_err(ctx()))?;
                b.append_data(&mut h, path, io::empty())
                    .map_err(io_err(ctx()))?;
            }
            Node::Fifo { mode } => {
                let mut h = header(EntryType::Fifo, mode, 0, w.owner);
                b.append_data(&mut h, path, io::empty())
                    .map_err(io_err(ctx()))?;
            }
        }
    }
    b.finish().map_err(io_err("finish tar stream"))?;
    let out = b.into_inner().map_err(io_err("finish tar stream"))?;
    drop(opened);
    Ok((out, stats))
}

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
fn archive_err(e: io::Error) -> StoreError {
    if matches!(
        e.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::Other
    ) {
        StoreError::Integrity {
            key: "archive".into(),
            reason: e.to_string(),
        }
    } else {
        io_err("read archive")(e)
    }
}

fn unsafe_entry(path: &Path, reason: &str) -> StoreError {
    StoreError::UnsafeArchive {
        path: crate::error::shown_path(path),
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
        return Err(StoreError::Invalid(format!(
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
        return Err(StoreError::UnsafeArchive {
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

/// Largest GNU long-name (`L`), long-link (`K`) or pax (`x`, `g`) entry accepted. The `tar`
/// crate reads these whole into memory, so their size field alone must never decide how much
/// memory an archive gets: real ones are a path or a few records.
pub const MAX_META_ENTRY: u64 = 1 << 20;

/// Caps on one archive (an image or a layer). The defaults are far above any real root
/// filesystem and still keep a hostile archive from filling the disk or the inode table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Entries (files, directories, links…; not counting long-name and pax headers).
    pub max_entries: u64,
    /// Sum of the entries' content sizes, in bytes.
    pub max_bytes: u64,
}

impl ArchiveLimits {
    pub const DEFAULT_MAX_ENTRIES: u64 = 10_000_000;
    pub const DEFAULT_MAX_BYTES: u64 = 256 << 30;
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

const BLOCK: usize = 512;

enum GuardState {
    /// At a header boundary.
    Header,
    /// Handing out the checked header block from `pos`.
    Serve { pos: usize, len: usize },
    /// Passing through an entry's content (`data`) and its padding (`pad`); a pax header's
    /// content is also kept, to learn the size it gives the next entry.
    Data { data: u64, pad: u64, pax: bool },
    /// After the end-of-archive block (or a short read): nothing more to check.
    Done,
}

/// A `Read` adapter in front of the `tar` crate that follows the archive's 512-byte
/// header/content block structure and refuses, before the crate reads them, long-name,
/// long-link and pax entries over [`MAX_META_ENTRY`], GNU sparse entries (its extra header
/// blocks would hide the structure; the unpacker refuses them anyway), and archives beyond
/// the [`ArchiveLimits`]. It mirrors how the crate finds entry boundaries (a pax `size`
/// record overrides the next entry's header size); a pax header it cannot parse exactly is
/// refused rather than guessed at.
pub struct ArchiveGuard<R> {
    inner: R,
    limits: ArchiveLimits,
    state: GuardState,
    block: [u8; BLOCK],
    pax: Vec<u8>,
    pax_size: Option<u64>,
    /// A pax (`x`) header was read and no entry has consumed it yet.
    pax_pending: bool,
    entries: u64,
    bytes: u64,
    /// What follows the header being served.
    after_header: Option<GuardState>,
    /// Why the archive was refused (set once; every later read fails too).
    violation: Option<String>,
}

/// The size field of a header: octal text, or GNU base-256 when the top bit is set (as the
/// `tar` crate reads it).
fn header_size(h: &[u8; BLOCK]) -> Option<u64> {
    let field = &h[124..136];
    if field[0] & 0x80 != 0 {
        return Some(
            field[4..]
                .iter()
                .fold(0u64, |n, b| (n << 8) | u64::from(*b)),
        );
    }
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end]).ok()?;
    u64::from_str_radix(text.trim(), 8).ok()
}

/// `ustar\0` + `00` (POSIX) or `ustar ` + ` \0` (GNU): headers the `tar` crate interprets
/// long-name and pax entries of.
fn recognized_magic(h: &[u8; BLOCK]) -> bool {
    let (magic, version) = (&h[257..263], &h[263..265]);
    (magic == b"ustar\0" && version == b"00") || (magic == b"ustar " && version == b" \0")
}

/// The `size` record of pax header content, parsed exactly as the `tar` crate does; an error
/// where the crate would silently ignore the records (so the two could disagree).
fn pax_size(data: &[u8]) -> std::result::Result<Option<u64>, String> {
    for line in data.split(|b| *b == b'\n') {
        if line.is_empty() {
            return Ok(None);
        }
        let bad = || "malformed pax header record".to_string();
        let sp = line.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&line[..sp])
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or_else(bad)?;
        if line.len() + 1 != len {
            return Err(bad());
        }
        let kv = &line[sp + 1..];
        let eq = kv.iter().position(|b| *b == b'=').ok_or_else(bad)?;
        if &kv[..eq] == b"size" {
            return std::str::from_utf8(&kv[eq + 1..])
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Some)
                .ok_or_else(|| "pax header with an invalid size record".to_string());
        }
    }
    Ok(None)
}

impl<R: Read> ArchiveGuard<R> {
    pub fn new(inner: R, limits: ArchiveLimits) -> Self {
        ArchiveGuard {
            inner,
            limits,
            state: GuardState::Header,
            block: [0; BLOCK],
            pax: Vec::new(),
            pax_size: None,
            pax_pending: false,
            entries: 0,
            bytes: 0,
            after_header: None,
            violation: None,
        }
    }

    /// Why the archive was refused, if it was.
    pub fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }

    /// The name field of the last header read (for error messages).
    fn entry_name(&self) -> String {
        let name = &self.block[..100];
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        String::from_utf8_lossy(&name[..end]).into_owned()
    }

    fn refuse(&mut self, reason: String) -> io::Error {
        let err = io::Error::new(io::ErrorKind::InvalidData, reason.clone());
        self.violation.get_or_insert(reason);
        err
    }

    /// Check the header in `self.block` and decide what follows it.
    fn check_header(&mut self) -> std::result::Result<GuardState, String> {
        let h = &self.block;
        if h.iter().all(|b| *b == 0) {
            return Ok(GuardState::Done);
        }
        let kind = h[156];
        let size = header_size(h).ok_or("unreadable size field in a tar header")?;
        let meta_name = match kind {
            b'L' => Some("GNU long-name"),
            b'K' => Some("GNU long-link"),
            b'x' => Some("pax"),
            b'g' => Some("pax global"),
            _ => None,
        };
        if let Some(what) = meta_name {
            if size > MAX_META_ENTRY {
                return Err(format!(
                    "{what} header claims {size} bytes (limit {MAX_META_ENTRY})"
                ));
            }
            if kind != b'g' && !recognized_magic(h) {
                return Err(format!("{what} header in a pre-POSIX tar header"));
            }
            // The tar crate hands a `g` entry back as an ordinary entry that consumes a pending
            // `x` (and its size), and errors on two `x` in a row; rather than follow it through
            // those corners (where the two could disagree on where entries start), refuse them.
            if self.pax_pending && matches!(kind, b'g' | b'x') {
                return Err(format!("{what} header right after a pax header"));
            }
            if kind == b'x' {
                self.pax.clear();
                self.pax_pending = true;
            }
            return Ok(GuardState::Data {
                data: size,
                pad: size.next_multiple_of(BLOCK as u64) - size,
                pax: kind == b'x',
            });
        }
        if kind == b'S' {
            return Err("GNU sparse entries are not supported".into());
        }
        let size = self.pax_size.take().unwrap_or(size);
        self.pax_pending = false;
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(size);
        if self.entries > self.limits.max_entries {
            return Err(format!(
                "more than {} entries (the configured limit)",
                self.limits.max_entries
            ));
        }
        if self.bytes > self.limits.max_bytes {
            return Err(format!(
                "more than {} bytes of content (the configured limit)",
                self.limits.max_bytes
            ));
        }
        let pad = size
            .checked_next_multiple_of(BLOCK as u64)
            .ok_or("entry size overflows")?
            - size;
        Ok(GuardState::Data {
            data: size,
            pad,
            pax: false,
        })
    }

    /// Read a whole header block (or what is left of a truncated archive).
    fn fill_block(&mut self) -> io::Result<usize> {
        let mut n = 0;
        while n < BLOCK {
            match self.inner.read(&mut self.block[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

impl<R: Read> Read for ArchiveGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(v) = &self.violation {
            return Err(io::Error::new(io::ErrorKind::InvalidData, v.clone()));
        }
        loop {
            match self.state {
                GuardState::Done => return self.inner.read(buf),
                GuardState::Header => {
                    let len = self.fill_block()?;
                    if len < BLOCK {
                        // Truncated: let the tar crate see (and report) what there is.
                        self.state = GuardState::Serve { pos: 0, len };
                        continue;
                    }
                    let next = match self.check_header() {
                        Ok(next) => next,
                        Err(reason) => return Err(self.refuse(reason)),
                    };
                    self.state = GuardState::Serve { pos: 0, len };
                    self.after_header = Some(next);
                }
                GuardState::Serve { pos, len } => {
                    if pos == len {
                        self.state = if len < BLOCK {
                            GuardState::Done
                        } else {
                            self.after_header.take().unwrap_or(GuardState::Done)
                        };
                        continue;
                    }
                    let n = buf.len().min(len - pos);
                    buf[..n].copy_from_slice(&self.block[pos..pos + n]);
                    self.state = GuardState::Serve { pos: pos + n, len };
                    return Ok(n);
                }
                GuardState::Data { data, pad, pax } => {
                    if data == 0 && pad == 0 {
                        if pax {
                            match pax_size(&self.pax) {
                                Ok(size) => self.pax_size = size,
                                Err(reason) => return Err(self.refuse(reason)),
                            }
                        }
                        self.state = GuardState::Header;
                        continue;
                    }
                    let left = if data > 0 { data } else { pad };
                    let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        self.state = GuardState::Done;
                        return Ok(0);
                    }
                    if data > 0 {
                        if pax {
                            self.pax.extend_from_slice(&buf[..n]);
                        }
                        self.state = GuardState::Data {
                            data: data - n as u64,
                            pad,
                            pax,
                        };
                    } else {
                        self.state = GuardState::Data {
                            data,
                            pad: pad - n as u64,
                            pax,
                        };
                    }
                    return Ok(n);
                }
            }
        }
    }
}
