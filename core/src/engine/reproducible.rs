//! Reproducible Dependency layers: the same base image and lock give the same layer bytes on any
//! machine, on any day (issue 13, item 2; `docs/storage-format.md`, "Reproducible layers").
//!
//! Two things make an install differ between two builds of the same packages at the same
//! versions (measured: two installs of the same set in two copies of the test image):
//!
//! * the clock — `useradd` in maintainer scripts writes today's day into `/etc/shadow`; tools that
//!   follow the reproducible-builds convention take [`SOURCE_DATE_EPOCH`] instead, so every build
//!   step gets a fixed one;
//! * files that describe the build rather than the result (apt's binary caches and downloaded
//!   lists, ldconfig's aux-cache, installer logs) and secrets generated at install time (host
//!   keys, snakeoil keys, a database cluster's identity). [`clean_upper`] removes them from the
//!   build's overlay upper directory before it is packed.
//!
//! Removing an entry from the *upper directory* on the host lets the base image's copy (if any)
//! show through, which is what a cache or log must do; deleting it inside the environment would
//! instead leave a whiteout that hides the base's copy. Whiteouts found here are left alone for the
//! same reason: they record a deletion the packages made.
//!
//! Everything in the upper was written by packages, hostile by assumption: nothing here follows a
//! symbolic link. Each path component is checked with `lstat` before it is entered, and a symlink
//! standing where a rule expects a file is removed itself, never its target. The upper is quiescent
//! while this runs (every build step has exited, with its pid namespace), so nothing can swap a
//! component between the check and the use.

use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use karapace_store::tar::WHITEOUT_XATTRS;

use crate::error::{CoreError, Result};

/// `SOURCE_DATE_EPOCH` of every build step: 2024-01-01T00:00:00Z.
///
/// A constant, not a value derived from the image digest or the lock: the layer is already a
/// function of those inputs, and a constant keeps it so while giving the tools that read it a
/// plausible date (a hash turned into a time would be an arbitrary one, and would change every
/// date-bearing file whenever the image changes, for no reason). It must not be 0: `useradd`
/// writes it (in days) as the password's last change, and 0 there means "must change at next
/// login". It is never the clock, which is the point.
pub const SOURCE_DATE_EPOCH: u64 = 1_704_067_200;

const SDE_NAME: &str = "SOURCE_DATE_EPOCH";

/// The environment of a build step: the plugin's variables with any `SOURCE_DATE_EPOCH` of its
/// own replaced by ours (one definition, so no program can pick another one up).
pub fn step_env(plugin_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = plugin_env
        .iter()
        .filter(|(k, _)| k != SDE_NAME)
        .cloned()
        .collect();
    env.push((SDE_NAME.to_owned(), SOURCE_DATE_EPOCH.to_string()));
    env
}

/// What a rule removes at the paths its pattern matches.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// The matched non-directory itself.
    Entry,
    /// Every non-directory at any depth below the matched directory. The directories stay: they
    /// are what the packages set up (owners, modes), identical from build to build.
    FilesBelow,
    /// The matched directory and everything in it (or whatever non-directory stands there).
    Tree,
    /// A symbolic link whose target is exactly this text (the hash link of a removed certificate).
    LinkTo(&'static str),
}

/// A path pattern relative to the environment's `/`. Each `/`-separated segment is a name in
/// which `*` matches any run of characters; there is no `**` and no other syntax.
struct Rule {
    pattern: &'static str,
    scope: Scope,
}

const fn rule(pattern: &'static str, scope: Scope) -> Rule {
    Rule { pattern, scope }
}

/// What is left out of every Dependency layer. See `docs/storage-format.md` for why each is safe to
/// drop and how the secrets are regenerated inside an environment.
const RULES: &[Rule] = &[
    // apt: indexes downloaded by `apt-get update` (dated, change with the mirror; `apt-get update`
    // fetches them again), the binary caches built from them (hold build-time state), and the
    // downloaded .deb files (a download cache, tens of MiB).
    rule("var/lib/apt/lists", Scope::FilesBelow),
    rule("var/cache/apt", Scope::FilesBelow),
    // ldconfig's aux-cache records inode numbers and change times; /etc/ld.so.cache stays.
    rule("var/cache/ldconfig/aux-cache", Scope::Entry),
    // Installer logs: timestamps of this build.
    rule("var/log/dpkg.log", Scope::Entry),
    rule("var/log/alternatives.log", Scope::Entry),
    rule("var/log/apt", Scope::FilesBelow),
    // Secrets generated at install: everyone given the layer would share them.
    rule("etc/ssh/ssh_host_*_key", Scope::Entry),
    rule("etc/ssh/ssh_host_*_key.pub", Scope::Entry),
    rule("etc/dropbear/dropbear_*_host_key", Scope::Entry),
    rule("etc/ssl/private/ssl-cert-snakeoil.key", Scope::Entry),
    rule("etc/ssl/certs/ssl-cert-snakeoil.pem", Scope::Entry),
    rule("etc/ssl/certs/*", Scope::LinkTo("ssl-cert-snakeoil.pem")),
    rule("etc/machine-id", Scope::Entry),
    rule("var/lib/dbus/machine-id", Scope::Entry),
    rule("var/lib/systemd/random-seed", Scope::Entry),
    rule("var/lib/systemd/credential.secret", Scope::Entry),
    // The cluster Debian's postgresql creates at install: a random system identifier, WAL and
    // statistics written at that moment. Its configuration goes with it, so no half cluster is
    // left; `pg_createcluster` makes a fresh one.
    rule("var/lib/postgresql/*/main", Scope::Tree),
    rule("etc/postgresql/*/main", Scope::Tree),
];

/// Removes from `upper` (a build's overlay upper directory) everything [`RULES`] leaves out of a
/// layer. `remove` deletes one entry given its full path: a non-directory (a symbolic link itself,
/// never its target), or a directory with everything in it. It is a parameter because entries
/// owned by other ids are removed through the store (`Store::remove_tree`).
///
/// Directories of other ids that the store's owner may not read (apt's `partial` directories,
/// owned by `_apt` and empty once apt is done) are not entered: what they hold is not a cache or
/// log the rules name, and the reproducibility test would show it if it were.
///
/// Returns the removed paths, relative to `upper`, sorted.
pub fn clean_upper(
    upper: &Path,
    remove: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for rule in RULES {
        for rel in matches(upper, rule.pattern)? {
            let path = upper.join(&rel);
            let Some(meta) = lstat(&path)? else { continue };
            if is_whiteout(&path, &meta) {
                continue;
            }
            match rule.scope {
                Scope::Entry => {
                    if !meta.is_dir() {
                        remove(&path)?;
                        removed.push(rel);
                    }
                }
                Scope::LinkTo(target) => {
                    if meta.file_type().is_symlink()
                        && fs::read_link(&path)
                            .map_err(|e| io_err(&path, e))?
                            .as_os_str()
                            == OsStr::new(target)
                    {
                        remove(&path)?;
                        removed.push(rel);
                    }
                }
                Scope::FilesBelow => {
                    if meta.is_dir() {
                        remove_below(upper, &rel, remove, &mut removed)?;
                    }
                }
                Scope::Tree => {
                    remove(&path)?;
                    removed.push(rel);
                }
            }
        }
    }
    removed.sort();
    Ok(removed)
}

/// Removes an entry (a directory with everything in it) with the invoking user's rights alone.
#[cfg(test)]
pub fn remove_entry(path: &Path) -> Result<()> {
    karapace_store::fsutil::remove_tree_if_exists(path)?;
    Ok(())
}

/// Removes every non-directory below `upper/rel` (a real directory) but whiteouts; the
/// directories stay. Iterative: a hostile package may nest directories deeply.
fn remove_below(
    upper: &Path,
    rel: &Path,
    remove: &mut dyn FnMut(&Path) -> Result<()>,
    removed: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut todo = vec![rel.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for name in sorted_names(&upper.join(&dir))? {
            let child = dir.join(&name);
            let path = upper.join(&child);
            let Some(meta) = lstat(&path)? else { continue };
            if meta.is_dir() {
                todo.push(child);
            } else if !is_whiteout(&path, &meta) {
                remove(&path)?;
                removed.push(child);
            }
        }
    }
    Ok(())
}

/// The relative paths below `upper` that `pattern` names, every proper prefix of them a real
/// directory (a symbolic link is never entered).
fn matches(upper: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let mut found = vec![PathBuf::new()];
    let segments: Vec<&str> = pattern.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let mut next = Vec::new();
        for dir in &found {
            let names = if seg.contains('*') {
                sorted_names(&upper.join(dir))?
                    .into_iter()
                    .filter(|n| glob(seg.as_bytes(), n.as_bytes()))
                    .collect()
            } else {
                vec![std::ffi::OsString::from(seg)]
            };
            for name in names {
                let rel = dir.join(&name);
                match lstat(&upper.join(&rel))? {
                    Some(m) if last || m.is_dir() => next.push(rel),
                    _ => {}
                }
            }
        }
        found = next;
    }
    Ok(found)
}

/// Whether `name` matches `pattern`, where `*` matches any run of bytes.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| glob(rest, &name[i..])),
        Some((c, rest)) => name
            .split_first()
            .is_some_and(|(n, tail)| n == c && glob(rest, tail)),
    }
}

/// The names in `dir` (a real directory), sorted so that what is removed, and reported, does not
/// depend on directory order. A directory that vanished is empty.
fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::debug!("not entering {} (another id's): {e}", dir.display());
            return Ok(Vec::new());
        }
        Err(e) => return Err(io_err(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry.map_err(|e| io_err(dir, e))?.file_name());
    }
    names.sort();
    Ok(names)
}

fn lstat(path: &Path) -> Result<Option<Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // A regular file where a directory was expected on the way down.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// An overlay whiteout: a 0:0 character device, or an empty file carrying the whiteout xattr.
fn is_whiteout(path: &Path, meta: &Metadata) -> bool {
    (meta.file_type().is_char_device() && meta.rdev() == 0)
        || (meta.is_file()
            && meta.len() == 0
            && WHITEOUT_XATTRS
                .iter()
                .any(|n| matches!(xattr::get(path, n), Ok(Some(_)))))
}

fn io_err(path: &Path, e: std::io::Error) -> CoreError {
    CoreError::io(
        format!(
            "cannot leave build state out of the layer at {}",
            path.display()
        ),
        e,
    )
}

#[cfg(test)]
mod tests;
