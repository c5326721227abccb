//! `plugin install <wasm>`: loads the component in the host exactly as a plugin directory would
//! (so a component that imports anything, exports no supported interface or returns bad
//! metadata is refused here, not at the next build), then moves it into the user's plugin
//! directory atomically as `<plugin name>.wasm`.
//!
//! A plugin decides what runs in every later build, so without `--force` it refuses to
//! - replace an installed plugin of the same name with other content;
//! - put in a plugin whose detect paths overlap another plugin's: the user's plugins are asked
//!   first when an image is detected, so it could claim that plugin's images (a Debian image
//!   from the built-in apt plugin, say) under a name that does not say so.

use std::path::{Path, PathBuf};

use karapace_plugin_host::{Plugin, PluginError, PluginHost, PluginSource, Untrusted};

use crate::cli::Ctx;
use crate::error::{CoreError, Result};
use crate::output;

/// Larger files are refused before reading: the host's own cap.
const MAX_BYTES: u64 = karapace_plugin_host::MAX_PLUGIN_FILE_BYTES;

/// A detect path of the new plugin and the loaded plugin it overlaps.
struct Overlap {
    ours: String,
    theirs: String,
    plugin: String,
    source: &'static str,
}

pub fn run(ctx: &Ctx, wasm: &Path, force: bool) -> Result<i32> {
    let dir = PluginHost::user_dir()
        .ok_or_else(|| CoreError::Usage("no plugin directory: set HOME or XDG_DATA_HOME".into()))?;
    let bytes = read_component(wasm)?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| CoreError::io(format!("cannot create {}", dir.display()), e))?;
    // Nothing is done in a directory builds would not load, not even taking a turn there.
    karapace_plugin_host::check_plugin_dir(&dir)
        .map_err(|e| CoreError::Refused(format!("cannot check what is installed: {e}")))?;
    // Installs take turns: what is checked below (names, overlaps) must still hold when the
    // file is renamed into place, so a second install sees the first one's plugin.
    let _turn = take_turn(&dir)?;
    // First: a directory builds would not load (or that cannot be read) gets nothing staged.
    let loaded = load_installed(&dir)?;

    // Validate exactly the bytes that will be installed: written to a temporary file in the
    // target directory (no .wasm suffix, so concurrent loads ignore it), loaded from there.
    let (staged, plugin) = super::stage_and_load(&dir, ".install-", &bytes, wasm)?;
    let dest = dir.join(format!("{}.wasm", plugin.name()));

    let same_name = installed_with_name(&loaded, &dir, plugin.name(), &dest);
    let identical = |p: &PathBuf| read_installed(p).is_ok_and(|b| b == bytes);
    if !force && let Some(other) = same_name.iter().find(|p| !identical(p)) {
        return Err(CoreError::Refused(format!(
            "plugin {} is already installed at {} with other content; pass --force to replace it",
            plugin.name(),
            other.display()
        )));
    }
    // Unchanged only when builds load it as it is: the same bytes in a file they skip (one
    // others may write, say) are written again, with the plugin's mode.
    let loaded_from = |p: &Path| loaded.plugins().iter().any(|q| q.path() == Some(p));
    let status = match same_name.as_slice() {
        [] => "installed",
        [only] if *only == dest && identical(only) && loaded_from(only) => "unchanged",
        _ => "replaced",
    };
    let replaces = replaced_source(&plugin, &loaded, &dir);
    let overlaps = detect_overlaps(&plugin, &loaded);
    // An unchanged plugin changes nothing, whatever it replaces or overlaps.
    if !force && status != "unchanged" {
        if let Some(source) = replaces {
            return Err(CoreError::Refused(format!(
                "plugin {0} would replace the {source} {0} plugin in your builds; pass --force \
                 to install it anyway",
                plugin.name()
            )));
        }
        if !overlaps.is_empty() {
            return Err(CoreError::Refused(format!(
                "plugin {} {}; for images with such a path the first of them to claim one gets \
                 its builds (your plugins before system ones before built-ins, by file name \
                 within a directory); pass --force to install it anyway",
                plugin.name(),
                describe(&overlaps)
            )));
        }
    }
    if status != "unchanged" {
        set_mode(staged.as_file())?;
        staged
            .persist(&dest)
            .map_err(|e| CoreError::io(format!("cannot install {}", dest.display()), e.error))?;
        // The same plugin under another file name would now be a duplicate.
        for old in same_name.iter().filter(|p| **p != dest) {
            std::fs::remove_file(old)
                .map_err(|e| CoreError::io(format!("cannot remove {}", old.display()), e))?;
        }
        // Installed whatever this says: a failed sync only weakens what a crash keeps.
        if let Err(e) = karapace_atomic_file::sync_dir(&dir) {
            output::note(&format!(
                "warning: cannot sync {} ({e}): a crash now could lose the install",
                dir.display()
            ));
        }
    }
    report(
        ctx,
        &Installed {
            plugin: &plugin,
            dest: &dest,
            status,
            replaces,
            overlaps: &overlaps,
        },
    )
}

/// What `plugin install` did, as it reports it.
struct Installed<'a> {
    plugin: &'a Plugin,
    dest: &'a Path,
    status: &'static str,
    /// The source (`built-in`, `system`) of a plugin of the same name it takes the place of.
    replaces: Option<&'static str>,
    overlaps: &'a [Overlap],
}

/// The built-in or system plugin of the same name that `new` would replace in the user's
/// builds (a user plugin of that name is [`installed_with_name`]'s).
fn replaced_source(new: &Plugin, loaded: &PluginHost, dir: &Path) -> Option<&'static str> {
    loaded
        .plugins()
        .iter()
        .find(|p| p.name() == new.name() && p.path().and_then(Path::parent) != Some(dir))
        .map(|p| super::source_label(p.info()))
}

/// Every plugin a build of this user would load (built-ins, the system directory, `dir`).
/// Refused: a plugin directory that cannot be read (its plugins would count as neither
/// installed nor overlapping), and a user directory others may write (builds would not load
/// what is installed there).
fn load_installed(dir: &Path) -> Result<PluginHost> {
    let host = PluginHost::load(&PluginHost::default_dirs())
        .map_err(|e| CoreError::Plugin(e.to_string()))?;
    // The user's directory must be one builds load and read whole; another directory that
    // cannot be read is loaded by no build of this user either, so it is only said that its
    // plugins were not checked for overlaps.
    let plugin_dirs = PluginHost::default_dirs();
    for failure in host.failures() {
        match &failure.error {
            PluginError::Io { path, .. } | PluginError::Unsafe { path, .. } if path == dir => {
                return Err(CoreError::Refused(format!(
                    "cannot check what is installed: {}",
                    failure.error
                )));
            }
            PluginError::Unsafe {
                path,
                reason: Untrusted::Unreadable(_),
            } if plugin_dirs.contains(path) => output::note(&format!(
                "warning: {} (its plugins, if any, were not checked for overlaps)",
                failure.error
            )),
            _ => {}
        }
    }
    Ok(host)
}

/// The plugins, other than the one being replaced, whose detect paths overlap the new one's
/// (`karapace_plugin_host::paths_overlap`).
fn detect_overlaps(new: &Plugin, loaded: &PluginHost) -> Vec<Overlap> {
    loaded
        .plugins()
        .iter()
        .filter(|p| p.name() != new.name())
        .flat_map(|other| {
            new.detect_overlaps(other)
                .into_iter()
                .map(|(ours, theirs)| Overlap {
                    ours: ours.to_owned(),
                    theirs: theirs.to_owned(),
                    plugin: other.name().to_owned(),
                    source: super::source_label(other.info()),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `detects usr/bin/apt-get, as the built-in apt plugin does (usr/bin/apt-get), …`
fn describe(overlaps: &[Overlap]) -> String {
    let each: Vec<String> = overlaps
        .iter()
        .map(|o| {
            format!(
                "detects {}, as the {} {} plugin does ({})",
                o.ours, o.source, o.plugin, o.theirs
            )
        })
        .collect();
    each.join("; ")
}

fn read_component(wasm: &Path) -> Result<Vec<u8>> {
    let err = |e| CoreError::io(format!("cannot read {}", wasm.display()), e);
    let meta = std::fs::metadata(wasm).map_err(err)?;
    if !meta.is_file() {
        return Err(CoreError::Usage(format!(
            "{} is not a regular file",
            wasm.display()
        )));
    }
    if meta.len() > MAX_BYTES {
        return Err(CoreError::Usage(format!(
            "{}: {} bytes, more than a plugin may have ({MAX_BYTES})",
            wasm.display(),
            meta.len()
        )));
    }
    // What was checked may have been replaced since: opened without blocking (a FIFO), checked
    // again on the handle, and never read more than one byte past the cap.
    let file = karapace_plugin_host::open_nonblocking(wasm).map_err(err)?;
    if !file.metadata().map_err(err)?.is_file() {
        return Err(CoreError::Usage(format!(
            "{} is not a regular file",
            wasm.display()
        )));
    }
    karapace_plugin_host::read_plugin_file(&file)
        .map_err(err)?
        .ok_or_else(|| {
            CoreError::Usage(format!(
                "{}: more than a plugin may have ({MAX_BYTES} bytes)",
                wasm.display()
            ))
        })
}

/// Files of the user's plugin directory that hold a plugin named `name`, and `dest` itself when
/// it exists (whatever it holds). Files that do not load are not ours to judge here.
fn installed_with_name(loaded: &PluginHost, dir: &Path, name: &str, dest: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = loaded
        .plugins()
        .iter()
        .filter(|p| p.source() == PluginSource::Directory && p.name() == name)
        .filter_map(|p| p.path().map(Path::to_path_buf))
        .filter(|p| p.parent() == Some(dir))
        .collect();
    // Files of that name the load refused as duplicates go too (they would stay duplicates).
    found.extend(loaded.failures().iter().filter_map(|f| match &f.error {
        PluginError::Duplicate { path, name: n, .. } if n == name && path.parent() == Some(dir) => {
            Some(path.clone())
        }
        _ => None,
    }));
    if dest.symlink_metadata().is_ok() && !found.iter().any(|p| p == dest) {
        found.push(dest.to_path_buf());
    }
    found
}

/// An installed file's bytes, for comparison only: not through a link (a link planted at the
/// destination is not the plugin's content), never blocking on a FIFO, at most one byte more
/// than a plugin may have.
fn read_installed(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    karapace_plugin_host::read_plugin_file(&file)?
        .ok_or_else(|| std::io::ErrorKind::FileTooLarge.into())
}

/// How long an install waits for another one to finish (one that hangs past this is reported).
const TURN_WAIT: std::time::Duration = std::time::Duration::from_mins(1);

/// An exclusive `flock` of `<dir>/.install.lock`, a file only the user may open (a lock on the
/// directory itself could be held by anyone who may read it). Not a `.wasm` file, so no load
/// looks at it. `None` on a file system without `flock` (NFS without a lock daemon, some
/// FUSE ones): installs there do not take turns, and a warning says so.
fn take_turn(dir: &Path) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    use nix::errno::Errno;
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let path = dir.join(".install.lock");
    let err = |e| CoreError::io(format!("cannot lock {}", path.display()), e);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(&path)
        .map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    // Only the user's own file, linked nowhere else, is locked (the directory is the user's
    // and no one else may write it; this holds if it was ever otherwise).
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.nlink() != 1 {
        return Err(CoreError::Refused(format!(
            "{} is not a lock file of yours (a regular file with one link); remove it",
            path.display()
        )));
    }
    // Made 0600, but one left readable (by an older version, or by hand) would let others open
    // it and hold the lock: `flock` needs no write access.
    if meta.mode() & 0o077 != 0 {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    let deadline = std::time::Instant::now() + TURN_WAIT;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(Some(held)),
            Err((_, e @ (Errno::ENOLCK | Errno::EOPNOTSUPP | Errno::ENOSYS))) => {
                output::note(&format!(
                    "warning: cannot lock {} ({e}): this install does not wait for others",
                    path.display()
                ));
                return Ok(None);
            }
            Err((back, Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                file = back;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(CoreError::Refused(format!(
                    "another plugin install has held {} for {} s; try again when it is done",
                    path.display(),
                    TURN_WAIT.as_secs()
                )));
            }
            Err((_, e)) => return Err(err(e.into())),
        }
    }
}

/// Plugin files are data read by every user's builds: 0644, like the system directory's.
fn set_mode(file: &std::fs::File) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| CoreError::io("cannot set the plugin's mode", e))
}

fn report(ctx: &Ctx, done: &Installed<'_>) -> Result<i32> {
    let plugin = done.plugin;
    if ctx.json() {
        let overlaps: Vec<_> = done
            .overlaps
            .iter()
            .map(|o| {
                serde_json::json!({
                    "path": o.ours,
                    "plugin": o.plugin,
                    "plugin_path": o.theirs,
                    "source": o.source,
                })
            })
            .collect();
        output::json(&serde_json::json!({
            "name": plugin.name(),
            "version": plugin.version(),
            "interface": plugin.interface(),
            "overlaps": overlaps,
            "path": done.dest,
            "replaces": done.replaces,
            "status": done.status,
        }))?;
    } else {
        output::line(&format!(
            "{} plugin {} {} (WIT {}) at {}",
            done.status,
            plugin.name(),
            plugin.version(),
            plugin.interface(),
            done.dest.display()
        ))?;
        if let Some(source) = done.replaces {
            output::note(&format!(
                "note: it replaces the {source} {} plugin in your builds",
                plugin.name()
            ));
        }
        if !done.overlaps.is_empty() {
            output::note(&format!(
                "note: it {}: for such images the first of them to claim one gets its builds",
                describe(done.overlaps)
            ));
        }
    }
    Ok(0)
}
