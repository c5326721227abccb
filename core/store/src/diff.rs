//! Drift between an environment's upper and its read-only lower layers, whiteout-aware.
//!
//! The lower view follows overlayfs rules: layers are searched top first; a whiteout or a
//! non-directory hides everything below it; an opaque directory hides the same directory in
//! lower layers. All filesystem access is `lstat`/no-follow: file contents and link targets
//! are read beneath the layer's root one `O_NOFOLLOW` component at a time, and files are
//! opened `O_NONBLOCK` and checked to be regular on the open descriptor. A running workload
//! may swap anything in its upper at any moment: a FIFO never blocks `diff`, and a symlink
//! (to a host file, say) is never followed; an entry that stops being a regular file between
//! the listing and the read counts as modified.

use crate::error::{Result, StoreError, io_at};
use crate::fsutil::{
    is_not_regular_error, open_dir_beneath, open_regular_beneath, read_link_beneath,
};
use crate::store::Store;
use crate::tar::{OPAQUE_XATTRS, WHITEOUT_XATTRS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Paths relative to the environment root, sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub added: Vec<String>,
    pub modified: Vec<String>,
    pub removed: Vec<String>,
}

impl Diff {
    pub fn has_drift(&self) -> bool {
        !(self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty())
    }
}

fn lstat(p: &Path) -> Option<Metadata> {
    fs::symlink_metadata(p).ok()
}

fn is_whiteout(p: &Path, m: &Metadata) -> bool {
    (m.file_type().is_char_device() && m.rdev() == 0)
        || (m.is_file()
            && m.len() == 0
            && WHITEOUT_XATTRS
                .iter()
                .any(|n| matches!(xattr::get(p, n), Ok(Some(_)))))
}

fn is_opaque(p: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|n| matches!(xattr::get(p, n), Ok(Some(v)) if v.first() == Some(&b'y')))
}

/// How `layer` treats `rel` through rel's proper ancestors: (hidden here, blocks lower
/// layers). A missing ancestor hides nothing below; a whiteout or non-directory ancestor
/// hides rel in this and every lower layer; an opaque ancestor cuts off lower layers.
fn ancestor_state(layer: &Path, rel: &Path) -> (bool, bool) {
    let comps: Vec<_> = rel.components().collect();
    let mut blocks = false;
    let mut cur = layer.to_path_buf();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        match lstat(&cur) {
            None => return (true, blocks),
            Some(m) if is_whiteout(&cur, &m) || !m.is_dir() => return (true, true),
            Some(_) => {
                if is_opaque(&cur) {
                    blocks = true;
                }
            }
        }
    }
    (false, blocks)
}

/// The lower entry visible at `rel`, if any: the layer it is in and its metadata.
fn lower_lookup<'a>(lowers: &'a [PathBuf], rel: &Path) -> Option<(&'a Path, Metadata)> {
    for layer in lowers {
        let (hidden, blocks) = ancestor_state(layer, rel);
        if !hidden {
            let p = layer.join(rel);
            if let Some(m) = lstat(&p) {
                if is_whiteout(&p, &m) {
                    return None;
                }
                return Some((layer, m));
            }
        }
        if blocks {
            return None;
        }
    }
    None
}

/// Layers contributing to the merged lower directory `rel`, top first.
fn dir_layers(lowers: &[PathBuf], rel: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for layer in lowers {
        let (hidden, blocks) = ancestor_state(layer, rel);
        if !hidden {
            let p = layer.join(rel);
            if let Some(m) = lstat(&p) {
                if !m.is_dir() {
                    break;
                }
                let opaque = is_opaque(&p);
                out.push(p);
                if opaque {
                    break;
                }
            }
        }
        if blocks {
            break;
        }
    }
    out
}

/// Every visible lower path strictly below `rel` (merged view), handed to `found` one at a
/// time; stops at the first error `found` returns. Iterative: a deep tree costs heap, not stack.
/// What it holds at once (one directory's names, the directories still to walk) is bounded as a
/// diff is: a hostile layer may have a directory of millions of entries.
fn lower_descendants(
    lowers: &[PathBuf],
    rel: &Path,
    found: &mut impl FnMut(&Path) -> Result<()>,
) -> Result<()> {
    let mut pending = DiffBudget::default();
    let mut dirs = vec![rel.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        pending.release(dir.as_os_str().len());
        let mut names: BTreeSet<OsString> = BTreeSet::new();
        let mut listed = DiffBudget::default();
        for d in dir_layers(lowers, &dir) {
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    let name = e.file_name();
                    listed.take(name.len())?;
                    names.insert(name);
                }
            }
        }
        for n in names {
            let child = dir.join(&n);
            if let Some((_, m)) = lower_lookup(lowers, &child) {
                found(&child)?;
                if m.is_dir() {
                    pending.take(child.as_os_str().len())?;
                    dirs.push(child);
                }
            }
        }
    }
    Ok(())
}

/// Whether `rel` exists in `upper` reached without following a symbolic link (a running
/// workload may swap a directory of its upper for one at any moment).
fn in_upper(upper: &Path, rel: &Path) -> bool {
    let mut cur = upper.to_path_buf();
    let mut comps = rel.components().peekable();
    while let Some(c) = comps.next() {
        cur.push(c);
        match lstat(&cur) {
            None => return false,
            Some(m) if comps.peek().is_some() && !m.is_dir() => return false,
            Some(_) => {}
        }
    }
    true
}

/// Whether `rel` has the same bytes in the trees `a` and `b` (see the module doc for how the
/// files are opened). `Ok(false)` when either is no longer a regular file reachable without
/// following a symlink.
fn same_content(a: &Path, b: &Path, rel: &Path) -> io::Result<bool> {
    let open = |base: &Path| match open_regular_beneath(base, rel) {
        Ok(f) => Ok(Some(f)),
        Err(e) if is_not_regular_error(&e) => Ok(None),
        Err(e) => Err(e),
    };
    let (Some(mut fa), Some(mut fb)) = (open(a)?, open(b)?) else {
        return Ok(false);
    };
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether `rel` differs between the upper `upper` (metadata `um`) and the lower layer
/// `lower` (metadata `lm`).
fn differs(upper: &Path, lower: &Path, rel: &Path, um: &Metadata, lm: &Metadata) -> Result<bool> {
    let (ut, lt) = (um.file_type(), lm.file_type());
    if ut.is_dir() != lt.is_dir()
        || ut.is_file() != lt.is_file()
        || ut.is_symlink() != lt.is_symlink()
    {
        return Ok(true);
    }
    if ut.is_symlink() {
        return Ok(read_link_beneath(upper, rel).ok() != read_link_beneath(lower, rel).ok());
    }
    if (um.mode() & 0o7777) != (lm.mode() & 0o7777) {
        return Ok(true);
    }
    if ut.is_file() {
        if um.len() != lm.len() {
            return Ok(true);
        }
        let shown = upper.join(rel);
        return Ok(!same_content(upper, lower, rel).map_err(io_at("compare", &shown))?);
    }
    if !ut.is_dir() {
        return Ok(um.rdev() != lm.rdev());
    }
    Ok(false)
}

fn show(rel: &Path) -> String {
    rel.to_string_lossy().into_owned()
}

/// Most differences one diff reports: far beyond any real environment (a million paths), and a
/// bound on what a writable layer full of hostile names can make `diff` (and whoever reads a
/// diff, such as the core from the helper's tree worker) hold.
pub const MAX_DIFF_ENTRIES: usize = 1 << 20;

/// Most bytes of path names one diff reports (with [`MAX_DIFF_ENTRIES`], a bound on its memory:
/// a million names of a few kilobytes each would otherwise be gigabytes).
pub const MAX_DIFF_NAME_BYTES: usize = 256 << 20;

/// The error of a diff past [`MAX_DIFF_ENTRIES`] or [`MAX_DIFF_NAME_BYTES`].
pub fn too_large_diff() -> StoreError {
    StoreError::Invalid(format!(
        "the writable layer differs in more than {MAX_DIFF_ENTRIES} paths or \
         {} MiB of path names; refusing to list them all",
        MAX_DIFF_NAME_BYTES >> 20
    ))
}

/// Counts what a diff holds against its bounds.
#[derive(Default)]
pub struct DiffBudget {
    entries: usize,
    bytes: usize,
}

impl DiffBudget {
    /// Accounts for one more path of `len` bytes; an error once past either bound.
    pub fn take(&mut self, len: usize) -> Result<()> {
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(len);
        if self.entries > MAX_DIFF_ENTRIES || self.bytes > MAX_DIFF_NAME_BYTES {
            return Err(too_large_diff());
        }
        Ok(())
    }

    /// Gives back a path of `len` bytes taken earlier (one no longer held).
    pub fn release(&mut self, len: usize) {
        self.entries = self.entries.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(len);
    }
}

/// Compare an upper directory with lower trees (top first).
pub fn diff_trees(upper: &Path, lowers: &[PathBuf]) -> Result<Diff> {
    let mut d = Diff::default();
    let mut budget = DiffBudget::default();
    let mut note = |list: &mut Vec<String>, rel: &Path| -> Result<()> {
        let shown = show(rel);
        budget.take(shown.len())?;
        list.push(shown);
        Ok(())
    };
    // Directories still to list, and whether an opaque ancestor's walk of the lower layers has
    // covered them (a nested opaque directory would list the same lower paths again).
    let mut stack = vec![(PathBuf::new(), false)];
    let mut pending = DiffBudget::default();
    while let Some((rel_dir, under_opaque)) = stack.pop() {
        pending.release(rel_dir.as_os_str().len());
        let shown = upper.join(&rel_dir);
        // Listed through the descriptor of the directory itself: a running workload that
        // swaps it (or a parent) for a symlink cannot point the listing at a host directory.
        let (_dir, abs_dir) = match open_dir_beneath(upper, &rel_dir) {
            Ok(d) => d,
            // No longer a directory reachable without a symlink: it was reported already.
            Err(e) if is_not_regular_error(&e) && !rel_dir.as_os_str().is_empty() => continue,
            Err(e) => return Err(io_at("open", &shown)(e)),
        };
        let rd = fs::read_dir(&abs_dir).map_err(io_at("read", &shown))?;
        for e in rd {
            let e = e.map_err(io_at("read", &shown))?;
            let rel = rel_dir.join(e.file_name());
            let up = e.path();
            let Some(um) = lstat(&up) else { continue };
            if is_whiteout(&up, &um) {
                if lower_lookup(lowers, &rel).is_some() {
                    note(&mut d.removed, &rel)?;
                }
                continue;
            }
            match lower_lookup(lowers, &rel) {
                None => note(&mut d.added, &rel)?,
                Some((lower, lm)) => {
                    if differs(upper, lower, &rel, &um, &lm)? {
                        note(&mut d.modified, &rel)?;
                    }
                }
            }
            if um.is_dir() {
                let opaque = is_opaque(&up);
                if opaque && !under_opaque {
                    lower_descendants(lowers, &rel, &mut |p| {
                        if !in_upper(upper, p) {
                            note(&mut d.removed, p)?;
                        }
                        Ok(())
                    })?;
                }
                pending.take(rel.as_os_str().len())?;
                stack.push((rel, under_opaque || opaque));
            }
        }
    }
    d.added.sort();
    d.modified.sort();
    d.removed.sort();
    d.removed.dedup();
    Ok(d)
}

impl Store {
    /// Drift of an environment's upper against its layers.
    pub fn diff(&self, env_id: &str) -> Result<Diff> {
        let _l = self.lock_shared()?;
        let m = self.read_meta_raw(env_id)?;
        let mut lowers = Vec::new();
        for h in m.lower_layers_top_first() {
            lowers.push(self.layer_tree(&h)?);
        }
        self.tree_worker().diff(&self.layout.upper(env_id), &lowers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_budget_refuses_past_either_bound() {
        let mut many = DiffBudget::default();
        for _ in 0..MAX_DIFF_ENTRIES {
            many.take(1).unwrap();
        }
        assert!(many.take(1).is_err(), "entry bound");
        let mut long = DiffBudget::default();
        long.take(MAX_DIFF_NAME_BYTES - 1).unwrap();
        long.take(1).unwrap();
        assert!(long.take(1).is_err(), "name bytes bound");
        assert!(DiffBudget::default().take(usize::MAX).is_err());
    }

    #[test]
    fn nested_opaque_directories_and_swapped_links_report_each_removal_once() {
        let t = tempfile::tempdir().unwrap();
        let (upper, lower) = (t.path().join("upper"), t.path().join("lower"));
        fs::create_dir_all(lower.join("d/a")).unwrap();
        for f in ["d/a/x", "d/a/y", "d/b"] {
            fs::write(lower.join(f), b"l").unwrap();
        }
        fs::create_dir_all(upper.join("d/a")).unwrap();
        fs::write(upper.join("d/a/x"), b"l").unwrap();
        let opaque = OPAQUE_XATTRS.iter().find(|n| n.starts_with("user."));
        let Some(opaque) = opaque else { return };
        for dir in ["d", "d/a"] {
            if xattr::set(upper.join(dir), opaque, b"y").is_err() {
                return; // no user xattrs on this file system
            }
        }
        let d = diff_trees(&upper, std::slice::from_ref(&lower)).unwrap();
        assert_eq!(d.removed, vec!["d/a/y".to_owned(), "d/b".to_owned()]);
        // A link in the upper (a workload can plant one at any moment): nothing below it counts
        // as the upper's, whatever its target holds.
        fs::create_dir_all(t.path().join("elsewhere")).unwrap();
        assert!(!in_upper(&upper, Path::new("d/a/y")));
        std::os::unix::fs::symlink(t.path().join("elsewhere"), upper.join("d/link")).unwrap();
        fs::write(t.path().join("elsewhere/y"), b"h").unwrap();
        assert!(!in_upper(&upper, Path::new("d/link/y")));
        assert!(in_upper(&upper, Path::new("d/link")));
        assert!(in_upper(&upper, Path::new("d/a/x")));
    }

    #[test]
    fn descendants_of_a_deep_opaque_directory_are_listed_without_recursion() {
        // Every level of a deep tree is walked (its place is kept on the heap, not the stack).
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let mut deep = lower.join("d");
        for i in 0..50 {
            deep.push(format!("l{i}"));
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("f"), b"x").unwrap();
        let mut seen = Vec::new();
        lower_descendants(&[lower], Path::new("d"), &mut |p| {
            seen.push(p.to_path_buf());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 51, "50 directories and the file");
        assert!(seen.last().unwrap().ends_with("l49/f"));
    }
    use std::sync::mpsc;
    use std::time::Duration;

    /// An upper and a lower that both hold `etc/f` = "same", with the metadata `diff` saw
    /// when it listed them; the caller then swaps the upper's entry as a running workload can.
    fn listed() -> (tempfile::TempDir, PathBuf, PathBuf, Metadata, Metadata) {
        let t = tempfile::tempdir().unwrap();
        let (upper, lower) = (t.path().join("upper"), t.path().join("lower"));
        for d in [&upper, &lower] {
            fs::create_dir_all(d.join("etc")).unwrap();
            fs::write(d.join("etc/f"), b"same").unwrap();
        }
        let um = lstat(&upper.join("etc/f")).unwrap();
        let lm = lstat(&lower.join("etc/f")).unwrap();
        (t, upper, lower, um, lm)
    }

    #[test]
    fn a_file_swapped_for_a_fifo_does_not_block_diff() {
        let (_t, upper, lower, um, lm) = listed();
        let fifo = upper.join("etc/f");
        fs::remove_file(&fifo).unwrap();
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let (tx, rx) = mpsc::channel();
        let (u, l) = (upper.clone(), lower.clone());
        std::thread::spawn(move || {
            let r = differs(&u, &l, Path::new("etc/f"), &um, &lm).map_err(|e| e.to_string());
            let _ = tx.send(r);
        });
        let Ok(r) = rx.recv_timeout(Duration::from_mins(1)) else {
            // Release the blocked reader before failing.
            let _ = fs::OpenOptions::new().write(true).open(&fifo);
            panic!("diff blocked opening a FIFO");
        };
        assert!(r.unwrap(), "a FIFO where a file was is a modification");
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_is_not_listed() {
        let (t, upper, _lower, _um, _lm) = listed();
        let host = t.path().join("host");
        fs::create_dir(&host).unwrap();
        fs::write(host.join("secret"), b"s").unwrap();
        fs::remove_dir_all(upper.join("etc")).unwrap();
        std::os::unix::fs::symlink(&host, upper.join("etc")).unwrap();
        let e = open_dir_beneath(&upper, Path::new("etc")).unwrap_err();
        assert!(is_not_regular_error(&e), "{e}");
        // The whole diff: `etc` is reported as what it now is, nothing below it is listed.
        let d = diff_trees(&upper, &[]).unwrap();
        assert_eq!(d.added, ["etc"]);
    }

    #[test]
    fn a_file_swapped_for_a_symlink_to_a_host_file_is_not_read() {
        let (t, upper, lower, um, lm) = listed();
        // The host file has exactly the lower's content: reading it would say "unchanged".
        let host = t.path().join("host");
        fs::create_dir(&host).unwrap();
        fs::write(host.join("f"), b"same").unwrap();
        fs::remove_file(upper.join("etc/f")).unwrap();
        std::os::unix::fs::symlink(host.join("f"), upper.join("etc/f")).unwrap();
        assert!(differs(&upper, &lower, Path::new("etc/f"), &um, &lm).unwrap());
        // The same through a directory swapped for a symlink.
        fs::remove_dir_all(upper.join("etc")).unwrap();
        std::os::unix::fs::symlink(&host, upper.join("etc")).unwrap();
        assert!(differs(&upper, &lower, Path::new("etc/f"), &um, &lm).unwrap());
    }
}
