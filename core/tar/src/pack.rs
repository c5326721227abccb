//! Packing: a directory into a deterministic tar stream.

use crate::error::{Result, io_at, io_err};
use crate::fs::{OpenedDirs, chmod_nofollow, open_regular_beneath, without_set_id};
use crate::owners::Owners;
use crate::whiteout::{
    OPAQUE_MARKER, OPAQUE_XATTRS, WHITEOUT_PREFIX, has_xattr_y, is_xattr_whiteout,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

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
