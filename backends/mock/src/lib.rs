//! The `mock` runtime backend: deterministic, for tests only, and it never executes anything.
//!
//! A manifest selects it explicitly with `[runtime] backend = "mock"`; Karapace never falls back to
//! it. It fetches no image and runs no package manager: the base tree is synthesised from the image
//! name, every package "resolves" to [`MOCK_VERSION`] (or to its locked version). A session prints
//! the command it stands for ([`exec_line`], [`enter_line`]) and succeeds: that is enough to
//! exercise the whole lifecycle — build, exec, commit, diff, restore, gc — without namespaces.
//!
//! What it must never do: run a command. A manifest is someone else's file; were the mock to run
//! commands it would run them on the host, unconfined, behind an `enter` that looks like an
//! environment.
//!
//! ```
//! let argv = vec!["sh".to_owned(), "-c".to_owned(), "exit 7".to_owned()];
//! assert_eq!(karapace_backend_mock::exec_line(&argv), "mock-exec: sh -c exit 7\n");
//! ```

use std::fs;
use std::io;
use std::path::Path;

/// What users of a mock environment are told (by `build` and `doctor`), after "this environment
/// uses".
pub const CAVEAT: &str = "the test-only mock backend: it isolates nothing and runs nothing \
     (exec and enter only print the command they would run)";

/// Version every package resolves to when no lock pins another one.
pub const MOCK_VERSION: &str = "0.0.0-mock";

/// Directory (relative to the environment root) where mock "installed" packages are recorded.
pub const PACKAGE_DB: &str = "var/lib/karapace-mock/packages";

/// The digest recorded as `base_image_digest` for a mock image: the standard tool's,
/// `blake3("mock-image:" + image)` in lowercase hex, so that a mock manifest gets the same `env_id`
/// in both tools. (The mock base tree is a pure function of the image name, so hashing the name
/// identifies its content.)
pub fn base_digest(image: &str) -> String {
    blake3::hash(format!("mock-image:{image}").as_bytes())
        .to_hex()
        .to_string()
}

/// What `exec` of a mock environment prints on stdout instead of running `argv`: the standard
/// tool's line, `mock-exec: ` and the arguments joined by spaces.
pub fn exec_line(argv: &[String]) -> String {
    format!("mock-exec: {}\n", argv.join(" "))
}

/// What `enter` of a mock environment prints on stdout instead of running `argv` (the command
/// given, or the login shell a real backend would start).
pub fn enter_line(argv: &[String]) -> String {
    format!("mock-enter: {}\n", argv.join(" "))
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
///
/// A name is a file name here, so only one plain path component is accepted: a manifest's
/// package names are someone else's data, and `db.join("/home/u/.bashrc")` would be that path.
pub fn write_dependency_tree(dir: &Path, resolved: &[(String, String)]) -> io::Result<()> {
    let db = dir.join(PACKAGE_DB);
    fs::create_dir_all(&db)?;
    for (name, version) in resolved {
        let mut parts = Path::new(name).components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        ) || name.contains('/')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("package name {name:?} is not a plain file name"),
            ));
        }
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(db.join(name))
            .and_then(|mut f| io::Write::write_all(&mut f, format!("{version}\n").as_bytes()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_never_leave_the_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        for name in [
            outside.to_str().expect("utf8"),
            "../../outside",
            "a/b",
            "..",
            ".",
            "",
        ] {
            let r = write_dependency_tree(
                &dir.path().join("layer"),
                &[(name.to_owned(), "1\n".to_owned())],
            );
            assert!(r.is_err(), "{name:?} was accepted");
        }
        assert!(!outside.exists());
        write_dependency_tree(
            &dir.path().join("layer"),
            &[("curl".to_owned(), "1".to_owned())],
        )
        .expect("a plain name");
    }

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
    fn the_base_digest_is_the_standard_tools() {
        // Computed outside this code: printf %s 'mock-image:debian/bookworm' | b3sum
        assert_eq!(
            base_digest("debian/bookworm"),
            "9fcb8924e0dcbde6e054af462b0289284608ca5eb84ea16b4c53dd3cb0fe423a"
        );
        // printf %s 'mock-image:rolling' | b3sum
        assert_eq!(
            base_digest("rolling"),
            "8f5a576f14f6a9d22f7b7c901865a89ceee954b235faa365a3631098b1a7019e"
        );
    }

    #[test]
    fn sessions_print_the_command_they_stand_for() {
        let argv: Vec<String> = ["sh", "-c", "touch /tmp/x"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(exec_line(&argv), "mock-exec: sh -c touch /tmp/x\n");
        assert_eq!(enter_line(&argv), "mock-enter: sh -c touch /tmp/x\n");
    }

    #[test]
    fn trees_record_the_image_and_the_packages() {
        let dir = tempfile::tempdir().unwrap();
        write_base_tree(dir.path(), "debian/bookworm").unwrap();
        let os = fs::read_to_string(dir.path().join("etc/os-release")).unwrap();
        assert!(os.contains("debian/bookworm"));
        write_dependency_tree(dir.path(), &[("curl".into(), "1".into())]).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(PACKAGE_DB).join("curl")).unwrap(),
            "1\n"
        );
    }
}
