//! The `mock` runtime backend: deterministic and isolation-free, for tests only.
//!
//! A manifest selects it explicitly with `[runtime] backend = "mock"`; Karapace never falls back to
//! it. It fetches no image and runs no package manager: the base tree is synthesised from the image
//! name, every package "resolves" to [`MOCK_VERSION`] (or to its locked version), and commands run
//! on the host with the environment's writable layer as their working directory. That is enough to
//! exercise the whole lifecycle — build, exec, commit, diff, restore, gc — without namespaces.

use std::fs;
use std::io;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// Version every package resolves to when no lock pins another one.
pub const MOCK_VERSION: &str = "0.0.0-mock";

/// Directory (relative to the environment root) where mock "installed" packages are recorded.
pub const PACKAGE_DB: &str = "var/lib/karapace-mock/packages";

/// The digest recorded as `base_image_digest` for a mock image. The mock base tree is a pure
/// function of the image name, so hashing the name identifies its content.
pub fn base_digest(image: &str) -> String {
    format!("mock:{}", blake3::hash(image.as_bytes()).to_hex())
}

/// Writes the synthetic base tree for `image` into `dir` (which must exist).
pub fn write_base_tree(dir: &Path, image: &str) -> io::Result<()> {
    for sub in ["bin", "etc", "home", "root", "tmp", "usr/bin", "var/lib"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    fs::write(
        dir.join("etc/os-release"),
        format!(
            "ID=karapace-mock\nNAME=\"Karapace mock image\"\nIMAGE=\"{}\"\n",
            image.escape_default()
        ),
    )?;
    fs::write(dir.join("etc/hostname"), "karapace-mock\n")?;
    Ok(())
}

/// Resolves package names to versions: the locked version when one is given, else [`MOCK_VERSION`].
pub fn resolve(packages: &[String], locked: &[(String, String)]) -> Vec<(String, String)> {
    packages
        .iter()
        .map(|name| {
            let version = locked
                .iter()
                .find(|(n, _)| n == name)
                .map_or_else(|| MOCK_VERSION.to_owned(), |(_, v)| v.clone());
            (name.clone(), version)
        })
        .collect()
}

/// Writes the dependency layer for `resolved` packages into `dir`: one file per package under
/// [`PACKAGE_DB`] holding its version.
pub fn write_dependency_tree(dir: &Path, resolved: &[(String, String)]) -> io::Result<()> {
    let db = dir.join(PACKAGE_DB);
    fs::create_dir_all(&db)?;
    for (name, version) in resolved {
        fs::write(db.join(name), format!("{version}\n"))?;
    }
    Ok(())
}

/// Starts `argv` on the host with `cwd` as working directory and a scrubbed environment
/// (`PATH`, `HOME`, `TERM`, `LANG` kept; `KARAPACE_ENV=1` added). Standard streams are inherited.
pub fn spawn(
    cwd: &Path,
    argv: &[String],
    extra_env: &[(String, String)],
) -> io::Result<std::process::Child> {
    let (program, arguments) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(arguments)
        .current_dir(cwd)
        .env_clear()
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    for key in ["PATH", "HOME", "TERM", "LANG"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.env("KARAPACE_ENV", "1");
    for (name, value) in extra_env {
        cmd.env(name, value);
    }
    cmd.spawn()
}

/// Maps a child's status to a shell-style exit code: its own code, or 128+N for signal N.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_prefers_locked_versions() {
        let pkgs = vec!["curl".to_owned(), "git".to_owned()];
        let locked = vec![("git".to_owned(), "2.39.2".to_owned())];
        assert_eq!(
            resolve(&pkgs, &locked),
            vec![
                ("curl".to_owned(), MOCK_VERSION.to_owned()),
                ("git".to_owned(), "2.39.2".to_owned())
            ]
        );
    }

    #[test]
    fn digest_depends_on_image() {
        assert_ne!(base_digest("debian"), base_digest("fedora"));
        assert_eq!(base_digest("debian"), base_digest("debian"));
        assert!(base_digest("x").starts_with("mock:"));
    }

    #[test]
    fn trees_and_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        write_base_tree(dir.path(), "debian/bookworm").unwrap();
        let os = fs::read_to_string(dir.path().join("etc/os-release")).unwrap();
        assert!(os.contains("debian/bookworm"));
        write_dependency_tree(dir.path(), &[("curl".into(), "1".into())]).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(PACKAGE_DB).join("curl")).unwrap(),
            "1\n"
        );

        let argv: Vec<String> = [
            "sh",
            "-c",
            "test \"$KARAPACE_ENV\" = 1 && pwd > here && exit 7",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let status = spawn(dir.path(), &argv, &[]).unwrap().wait().unwrap();
        assert_eq!(exit_code(status), 7);
        assert!(dir.path().join("here").exists());
        let argv: Vec<String> = ["sh", "-c", "kill -TERM $$"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let status = spawn(dir.path(), &argv, &[]).unwrap().wait().unwrap();
        assert_eq!(exit_code(status), 128 + 15);
        assert!(spawn(dir.path(), &[], &[]).is_err());
    }
}
