//! The `oci` backend: sessions run by an OCI runtime (crun, runc, youki) that the helper
//! drives, on a bundle it generates from the same declarative request the namespace backend
//! runs (`backends/namespace/src/oci.rs`). The runtime is resolved here, once per session, to
//! an absolute path: `KARAPACE_OCI_RUNTIME`, else `oci_runtime` in the user's config.
//!
//! The user must name it: a manifest alone cannot pick this backend for its sessions, because
//! they run without Landlock (a cloned repository whose manifest says `backend = "oci"` would
//! otherwise lower the isolation of the sessions its owner starts without them knowing).
//!
//! Builds run the namespace backend's build steps (the package manager under the helper's own
//! sandbox): the layers they make are the same either way, and the environment's sessions then
//! run under the OCI runtime.

use std::path::{Path, PathBuf};

use karapace_helper_client::{OciFlavour, OciRuntime};

use super::namespace;
use super::{BuildJob, RuntimeBackend, Session};
use crate::engine::pipeline::Built;
use crate::error::{CoreError, Result};

pub struct Oci;

/// Environment variable naming the OCI runtime (a name on `PATH` or an absolute path).
pub const RUNTIME_ENV: &str = "KARAPACE_OCI_RUNTIME";
/// Key of `~/.config/karapace/config.toml` naming the OCI runtime, like [`RUNTIME_ENV`].
pub const RUNTIME_KEY: &str = "oci_runtime";
/// The runtimes karapace drives, as named in the error that asks the user to choose one.
const SEARCHED: [&str; 3] = ["crun", "runc", "youki"];

impl RuntimeBackend for Oci {
    fn build(&self, job: &BuildJob<'_>) -> Result<Built> {
        namespace::Namespace.build(job)
    }

    fn run(&self, session: Session<'_>) -> Result<i32> {
        let runtime = resolve()?;
        super::oci_version::check(&runtime)?;
        tracing::debug!("OCI runtime: {}", runtime.path.display());
        namespace::run_session(session, Some(runtime))
    }

    fn caveat(&self) -> Option<&'static str> {
        Some(
            "the 'oci' backend: its sessions run under an OCI runtime without Landlock (host \
             abstract sockets and files the mounts expose are not closed off as in a namespace \
             session), and only once you name the runtime (KARAPACE_OCI_RUNTIME or oci_runtime \
             in config.toml)",
        )
    }
}

/// The OCI runtime to run sessions with (see the module's documentation).
pub fn resolve() -> Result<OciRuntime> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path_var).collect();
    let named = match std::env::var(RUNTIME_ENV) {
        Ok(v) if !v.is_empty() => Some((v, RUNTIME_ENV.to_owned())),
        _ => configured()?.map(|v| (v, format!("{RUNTIME_KEY} in the config file"))),
    };
    let Some((name, source)) = named else {
        let installed: Vec<&str> = SEARCHED
            .into_iter()
            .filter(|n| search(&dirs, n).is_some())
            .collect();
        let example = installed.first().copied().unwrap_or("crun");
        return Err(CoreError::OciRuntime(format!(
            "this environment's manifest selects the 'oci' backend, whose sessions run under an \
             OCI runtime without Landlock (docs/security-model.md §13); a manifest cannot choose \
             that for you: to run it, name the runtime yourself with {RUNTIME_ENV}={example} or \
             '{RUNTIME_KEY} = \"{example}\"' in ~/.config/karapace/config.toml ({})",
            if installed.is_empty() {
                format!(
                    "none of {} is on PATH; Debian: apt install crun",
                    SEARCHED.join(", ")
                )
            } else {
                format!("found on PATH: {}", installed.join(", "))
            }
        )));
    };
    {
        let found = if name.contains('/') {
            Some(PathBuf::from(&name)).filter(|p| p.is_absolute() && is_executable(p))
        } else {
            search(&dirs, &name)
        };
        let path = found.ok_or_else(|| {
            CoreError::OciRuntime(format!(
                "OCI runtime '{name}' (from {source}) not found: give an absolute path to an \
                 executable, or a name found on PATH"
            ))
        })?;
        canonical(&path)
    }
}

fn configured() -> Result<Option<String>> {
    let Some(file) = karapace_images::config::config_file_path() else {
        return Ok(None);
    };
    let table = karapace_images::config::read_config(&file)?;
    match table.as_ref().and_then(|t| t.get(RUNTIME_KEY)) {
        None => Ok(None),
        Some(v) if v.as_str().is_some_and(|s| !s.is_empty()) => Ok(v.as_str().map(str::to_owned)),
        Some(_) => Err(CoreError::OciRuntime(format!(
            "{}: '{RUNTIME_KEY}' must be the name or absolute path of an OCI runtime",
            file.display()
        ))),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn search(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// The runtime's symlink-free path (the helper accepts no other) and which command line it
/// speaks, from its file name.
fn canonical(path: &Path) -> Result<OciRuntime> {
    let real = path
        .canonicalize()
        .map_err(|e| CoreError::io(format!("cannot resolve {}", path.display()), e))?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let flavour = flavour_of(&name).ok_or_else(|| {
        CoreError::OciRuntime(format!(
            "OCI runtime {}: unknown runtime (karapace drives crun, runc and youki)",
            real.display()
        ))
    })?;
    Ok(OciRuntime {
        path: real,
        flavour,
    })
}

fn flavour_of(file_name: &str) -> Option<OciFlavour> {
    if file_name.contains("crun") {
        Some(OciFlavour::Crun)
    } else if file_name.contains("runc") {
        Some(OciFlavour::Runc)
    } else if file_name.contains("youki") {
        Some(OciFlavour::Youki)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavours_by_file_name() {
        assert_eq!(flavour_of("crun"), Some(OciFlavour::Crun));
        assert_eq!(flavour_of("runc"), Some(OciFlavour::Runc));
        assert_eq!(flavour_of("runc.amd64"), Some(OciFlavour::Runc));
        assert_eq!(flavour_of("youki"), Some(OciFlavour::Youki));
        assert_eq!(flavour_of("sh"), None);
    }

    #[test]
    fn search_finds_the_first_executable() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("crun"), "").unwrap();
        let exe = b.path().join("crun");
        std::fs::write(&exe, "").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(search(&dirs, "crun"), Some(exe));
        assert_eq!(search(&dirs, "runc"), None);
    }
}
