//! The Policy layer: the topmost read-only layer of every environment, holding what the runtime
//! needs after the build — the normalized manifest, its lock (backend, mounts, hardware, network
//! isolation, limits) and the manifest's directory (for `./` mounts). It lives in the environment at
//! `/etc/karapace/`, so the workload can see what it was built from. Keeping it as a layer means gc
//! keeps it with the environment and push/pull carry it.

use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::host_sharing::policy::split_mount_mode;
use karapace_schema::{LockFile, NormalizedManifest};
use karapace_store::beneath::read_regular_in_root;
use karapace_store::{EnvMetadata, LayerHash, LayerKind, Store};

use crate::error::{CoreError, Result};

const DIR: &str = "etc/karapace";
const MANIFEST_FILE: &str = "manifest.json";
const LOCK_FILE: &str = "karapace.lock";
const SOURCE_DIR_FILE: &str = "source-dir";
/// apt's configuration for root sessions whose id map is collapsed to one id
/// ([`super::runtime::as_root`]): apt cannot switch to its `_apt` sandbox user there, so it stays
/// root — the setting the apt plugin's build steps pass as `-o APT::Sandbox::User=root`. Only
/// `APT_CONFIG` of such sessions names the file; nothing else reads it.
pub const APT_COLLAPSED_CONF: &str = "/etc/karapace/apt-collapsed.conf";
const APT_COLLAPSED_CONF_TEXT: &str = "APT::Sandbox::User \"root\";\n";
/// Largest `etc/passwd` / `etc/group` taken from an image (real ones are a few KiB).
const MAX_IDENTITY_FILE: u64 = 4 << 20;
/// Largest lock or source-dir record read back from a policy layer.
const MAX_RECORD: u64 = 16 << 20;

/// Writes the Policy layer and returns its hash.
pub fn write(
    store: &Store,
    manifest: &NormalizedManifest,
    lock: &LockFile,
    source_dir: &Path,
    lowers: &[PathBuf],
    parent: Option<&LayerHash>,
) -> Result<LayerHash> {
    write_records(
        store,
        manifest.canonical_json().as_bytes(),
        lock,
        Some(source_dir),
        lowers,
        parent,
    )
}

/// Writes the Policy layer from the manifest's canonical JSON (as recorded, e.g. pulled from a
/// remote). Without a source directory (a pulled environment), `./` mounts resolve against the
/// directory the command runs in.
pub fn write_records(
    store: &Store,
    manifest_json: &[u8],
    lock: &LockFile,
    source_dir: Option<&Path>,
    lowers: &[PathBuf],
    parent: Option<&LayerHash>,
) -> Result<LayerHash> {
    let staging = store.staging_dir()?;
    let dir = staging.path().join(DIR);
    let io = |e| CoreError::io("cannot stage the policy layer", e);
    fs::create_dir_all(&dir).map_err(io)?;
    fs::write(dir.join(MANIFEST_FILE), manifest_json).map_err(io)?;
    fs::write(
        dir.join(SOURCE_DIR_FILE),
        source_dir.map_or(&[][..], |d| d.as_os_str().as_encoded_bytes()),
    )
    .map_err(io)?;
    lock.write_atomic(&dir.join(LOCK_FILE))?;
    fs::write(
        staging
            .path()
            .join(APT_COLLAPSED_CONF.trim_start_matches('/')),
        APT_COLLAPSED_CONF_TEXT,
    )
    .map_err(io)?;
    for target in mount_targets(lock) {
        fs::create_dir_all(staging.path().join(target)).map_err(io)?;
    }
    add_caller_identity(staging.path(), lowers).map_err(io)?;
    let layer = store.import_layer_dir(staging.path(), LayerKind::Policy, parent)?;
    Ok(layer.hash)
}

/// Directories that sessions bind-mount onto: the user's home, the manifest's mount targets and
/// the read-only font/icon/theme targets. Creating them here, in a read-only layer, means a
/// session never has to create mountpoints in the user's writable layer (which would show up in
/// `diff` and in snapshots).
fn mount_targets(lock: &LockFile) -> Vec<PathBuf> {
    let home = karapace_dirs::home();
    let mut targets: Vec<PathBuf> = [
        "usr/local/share/fonts",
        "usr/local/share/icons",
        "usr/local/share/themes",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let expand = |p: &str| -> Option<PathBuf> {
        match (p.strip_prefix("~/"), &home) {
            (Some(rest), Some(h)) => Some(h.join(rest)),
            _ => Some(PathBuf::from(p)).filter(|p| p.is_absolute()),
        }
    };
    targets.extend(home.clone());
    targets.extend(
        lock.mounts
            .iter()
            .filter_map(|m| expand(split_mount_mode(&m.container_path).0)),
    );
    // Only plain components below the root: never `..`, never anything absolute after stripping.
    targets
        .into_iter()
        .filter_map(|t| {
            let rel: PathBuf = t
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n),
                    _ => None,
                })
                .collect();
            (t.components()
                .all(|c| !matches!(c, std::path::Component::ParentDir))
                && !rel.as_os_str().is_empty())
            .then_some(rel)
        })
        .collect()
}

/// Sessions run as the caller's own uid (see the runtime); give that uid a `passwd` and `group`
/// entry so tools inside show a name instead of "I have no name!". The files are copied from the
/// topmost lower that has them and shadow it from this read-only layer, so the user's writable
/// layer and `diff` are untouched. Nothing to do for root, or for images without these files.
fn add_caller_identity(staging: &Path, lowers: &[PathBuf]) -> std::io::Result<()> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    if uid.is_root() {
        return Ok(());
    }
    let raw_name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default();
    // Only characters that cannot break the colon-separated format.
    let name: String = raw_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    let name = if name.is_empty() {
        "user".to_owned()
    } else {
        name
    };
    let home = std::env::var("HOME")
        .ok()
        .filter(|h| !h.contains([':', '\n']))
        .unwrap_or_else(|| format!("/home/{name}"));
    add_identity(staging, lowers, (uid.as_raw(), gid.as_raw()), &name, &home)
}

/// Adds `name` with `uid`/`gid` and `home` to the image's `etc/passwd` and `etc/group` (see
/// [`add_caller_identity`]).
fn add_identity(
    staging: &Path,
    lowers: &[PathBuf],
    (uid, gid): (u32, u32),
    name: &str,
    home: &str,
) -> std::io::Result<()> {
    let entries = [
        (
            "etc/passwd",
            uid,
            format!("{name}:x:{uid}:{gid}::{home}:/bin/sh"),
        ),
        ("etc/group", gid, format!("{name}:x:{gid}:")),
    ];
    for (file, id, line) in entries {
        // The topmost lower that has the file; read beneath that layer's tree only (links resolve
        // inside it, never on the host — an image's `etc/passwd -> ~/.ssh/id_ed25519` must not
        // put the user's key into the environment).
        let mut source = None;
        for lower in lowers {
            if let Some(found) = read_regular_in_root(lower, Path::new(file), MAX_IDENTITY_FILE)? {
                source = Some(found);
                break;
            }
        }
        let Some(source) = source else {
            continue;
        };
        let mut text = String::from_utf8(source.bytes).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the image's {file} is not UTF-8 text"),
            )
        })?;
        let id = id.to_string();
        if text
            .lines()
            .any(|l| l.split(':').nth(2) == Some(id.as_str()))
        {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        text.push('\n');
        let target = staging.join(file);
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&target, text)?;
        // Permission bits only: never a set-id or sticky bit from the image.
        fs::set_permissions(&target, fs::Permissions::from_mode(source.mode & 0o777))?;
    }
    Ok(())
}

/// The policy layer's tree in the store (unpacked if needed). Read it once per command and pass
/// it to [`read_lock`] and [`read_source_dir`]: each lookup reads the layer's metadata.
pub fn layer_tree(store: &Store, env: &EnvMetadata) -> Result<PathBuf> {
    let policy = env.policy_layer.as_deref().ok_or_else(|| {
        CoreError::Damaged(format!(
            "environment {} has no policy layer; rebuild it",
            env.short_id
        ))
    })?;
    Ok(store.layer_tree(policy)?)
}

/// Reads a record of the policy layer (its tree may have come from another machine: read it
/// beneath the tree, no-follow, capped, like any layer content).
fn read_record(policy_tree: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let rel = Path::new(DIR).join(name);
    read_regular_in_root(policy_tree, &rel, MAX_RECORD)
        .map(|f| f.map(|f| f.bytes))
        .map_err(|e| CoreError::io("cannot read the environment's policy layer", e))
}

/// The records another machine needs to rebuild this policy layer for its own user: the lock
/// file's text and the manifest's canonical JSON, as stored.
pub fn read_shared_records(policy_tree: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let missing = |name: &str| {
        CoreError::Damaged(format!(
            "the environment's policy layer has no {name}; rebuild it"
        ))
    };
    let lock = read_record(policy_tree, LOCK_FILE)?.ok_or_else(|| missing(LOCK_FILE))?;
    let manifest =
        read_record(policy_tree, MANIFEST_FILE)?.ok_or_else(|| missing(MANIFEST_FILE))?;
    Ok((lock, manifest))
}

/// Reads back the lock of a built environment from its policy layer's tree.
pub fn read_lock(policy_tree: &Path) -> Result<LockFile> {
    let path = policy_tree.join(DIR).join(LOCK_FILE);
    let bytes = read_record(policy_tree, LOCK_FILE)?.ok_or_else(|| {
        CoreError::from(karapace_schema::LockError::Missing { path: path.clone() })
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CoreError::Damaged(format!("{} is not UTF-8 text", path.display())))?;
    Ok(LockFile::parse(&text)?)
}

/// The directory of the manifest the environment was built from (for `./` mounts); the current
/// directory when unknown.
pub fn read_source_dir(policy_tree: &Path) -> Result<PathBuf> {
    let bytes = read_record(policy_tree, SOURCE_DIR_FILE)?.unwrap_or_default();
    if bytes.is_empty() {
        return std::env::current_dir()
            .map_err(|e| CoreError::io("cannot read the current directory", e));
    }
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A hostile image's `etc/passwd -> <host file>` and `etc/group -> /proc/self/environ` must
    /// not copy host content into the environment (the review's finding 1).
    #[test]
    fn identity_files_are_never_read_through_host_links() {
        let host = tempfile::tempdir().unwrap();
        let secret = host.path().join("id_ed25519");
        fs::write(&secret, "-----BEGIN OPENSSH PRIVATE KEY----- host secret\n").unwrap();
        let image = tempfile::tempdir().unwrap();
        fs::create_dir(image.path().join("etc")).unwrap();
        symlink(&secret, image.path().join("etc/passwd")).unwrap();
        symlink("/proc/self/environ", image.path().join("etc/group")).unwrap();
        let staging = tempfile::tempdir().unwrap();
        let lowers = vec![image.path().to_path_buf()];
        add_identity(staging.path(), &lowers, (1000, 1000), "u", "/home/u").unwrap();
        // Both links resolve inside the image, where nothing exists: nothing to extend.
        assert!(!staging.path().join("etc/passwd").exists());
        assert!(!staging.path().join("etc/group").exists());

        // A relative link climbing out is clamped at the image's root too.
        fs::remove_file(image.path().join("etc/passwd")).unwrap();
        let climb = format!("{}{}", "../".repeat(40), secret.display());
        symlink(climb, image.path().join("etc/passwd")).unwrap();
        add_identity(staging.path(), &lowers, (1000, 1000), "u", "/home/u").unwrap();
        assert!(!staging.path().join("etc/passwd").exists());

        // A FIFO is refused instead of hanging the build.
        fs::remove_file(image.path().join("etc/passwd")).unwrap();
        nix::unistd::mkfifo(
            &image.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert!(add_identity(staging.path(), &lowers, (1000, 1000), "u", "/home/u").is_err());
    }

    #[test]
    fn identity_is_added_to_the_images_own_files() {
        let image = tempfile::tempdir().unwrap();
        fs::create_dir(image.path().join("etc")).unwrap();
        fs::write(
            image.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\n",
        )
        .unwrap();
        // A link inside the image is followed as the environment would.
        fs::write(image.path().join("etc/group.real"), "root:x:0:\n").unwrap();
        symlink("/etc/group.real", image.path().join("etc/group")).unwrap();
        let staging = tempfile::tempdir().unwrap();
        let lowers = vec![image.path().to_path_buf()];
        add_identity(staging.path(), &lowers, (1000, 1001), "u", "/home/u").unwrap();
        assert_eq!(
            fs::read_to_string(staging.path().join("etc/passwd")).unwrap(),
            "root:x:0:0::/root:/bin/sh\nu:x:1000:1001::/home/u:/bin/sh\n"
        );
        assert_eq!(
            fs::read_to_string(staging.path().join("etc/group")).unwrap(),
            "root:x:0:\nu:x:1001:\n"
        );
    }
}
