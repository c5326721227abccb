//! A simulated hardened host — one that allows no user namespaces — with `karapace-helper`
//! installed privileged on it, for the privileged mode's end-to-end tests. It is the
//! `hardened-host` example of the helper crate (a user namespace of the test's own in which
//! `user.max_user_namespaces` is 0; see its documentation): nothing of this machine's settings
//! changes, and the helper's file capabilities count only in there.
//!
//! The host's root owns `<dir>/bin` (copies of `karapace`, `karapace-cli` and the helper, the
//! helper with its file capabilities); the caller, an unprivileged uid there, owns
//! `<dir>/home`, where its store, image cache and projects live. Every command is a fresh
//! `hardened-host` process: the files persist, as on a real host between two commands.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bins::{karapace_bin, profile_dir};
use crate::process::{Outcome, run, shell_quote};

/// Host ids of the simulated host: its `0..65536` are the machine's `BASE..BASE+65536`, ids
/// no real user of a test machine has.
const BASE: u32 = 300_000;
/// The caller's uid and gid on the simulated host.
pub const CALLER: u32 = 1001;

/// The manifest the privileged mode's test and benchmark build there (and, to compare, rootless).
pub const CURL_MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["curl"]
"#;

pub struct HardenedHost {
    dir: PathBuf,
    mirror_url: String,
    timeout: Duration,
}

fn hardened_host_bin() -> PathBuf {
    profile_dir().join("examples/hardened-host")
}

impl HardenedHost {
    /// A fresh simulated host with the binaries under test installed; `None` (and why, on
    /// stderr) when this process is not root, which only a root test pass is.
    pub fn new(label: &str, mirror_url: &str) -> Option<HardenedHost> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: simulating a hardened host takes root (the root pass runs it)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("kp-hardened-{label}-"))
            .tempdir_in("/tmp")
            .expect("temporary directory")
            .keep();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        std::fs::create_dir_all(dir.join("home/project")).expect("mkdir home");
        let built = karapace_bin();
        let built_dir = built.parent().expect("binary directory");
        for name in ["karapace", "karapace-cli", "karapace-helper"] {
            std::fs::copy(built_dir.join(name), bin.join(name))
                .unwrap_or_else(|e| panic!("cannot copy {name}: {e}"));
        }
        let host = HardenedHost {
            dir,
            mirror_url: mirror_url.to_owned(),
            timeout: Duration::from_mins(10),
        };
        let chown = |path: &Path, id: u32| {
            let out = Command::new("chown")
                .arg("-R")
                .arg(format!("{id}:{id}"))
                .arg(path)
                .status()
                .expect("chown");
            assert!(out.success(), "chown {}", path.display());
        };
        std::fs::set_permissions(
            &host.dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        chown(&host.dir, BASE);
        chown(&host.dir.join("home"), BASE + CALLER);
        let helper = bin.join("karapace-helper");
        let caps = Command::new(&helper)
            .arg("--file-capabilities")
            .output()
            .expect("karapace-helper --file-capabilities");
        let caps = String::from_utf8_lossy(&caps.stdout).trim().to_owned();
        let install = format!(
            "setcap {} {}",
            shell_quote(&caps),
            shell_quote(&helper.to_string_lossy())
        );
        host.as_root(&install).assert_success();
        Some(host)
    }

    /// The caller's home there (its store is `<home>/.local/share/karapace`).
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// The project directory commands start in.
    pub fn project(&self) -> PathBuf {
        self.home().join("project")
    }

    /// Writes `<project>/<name>`, owned by the caller.
    pub fn write_project_file(&self, name: &str, text: &str) {
        let path = self.project().join(name);
        std::fs::write(&path, text).expect("write project file");
        nix::unistd::chown(
            &path,
            Some(nix::unistd::Uid::from_raw(BASE + CALLER)),
            Some(nix::unistd::Gid::from_raw(BASE + CALLER)),
        )
        .expect("chown project file");
    }

    fn hardened_host(script: &str) -> (Command, String) {
        let mut cmd = Command::new(hardened_host_bin());
        cmd.arg("--uid-base")
            .arg(BASE.to_string())
            .args(["--", "sh", "-c", script]);
        let shown = format!("hardened-host -- sh -c {}", shell_quote(script));
        (cmd, shown)
    }

    /// Runs `script` as the simulated host's root.
    pub fn as_root(&self, script: &str) -> Outcome {
        let (cmd, shown) = Self::hardened_host(script);
        run(cmd, shown, None, self.timeout)
    }

    /// Runs `script` (`sh -c`) as the unprivileged caller in its project directory, with `$K`
    /// naming the installed `karapace` and `stdin` as its input.
    pub fn as_caller(&self, script: &str, stdin: Option<&[u8]>) -> Outcome {
        let inner = format!(
            "cd {project} && exec setpriv --reuid={CALLER} --regid={CALLER} --clear-groups -- \
             env -i PATH=/usr/bin:/bin HOME={home} TMPDIR=/tmp KARAPACE_IMAGE_SERVER={mirror} \
             K={k} sh -c {script}",
            project = shell_quote(&self.project().to_string_lossy()),
            home = shell_quote(&self.home().to_string_lossy()),
            mirror = shell_quote(&self.mirror_url),
            k = shell_quote(&self.dir.join("bin/karapace").to_string_lossy()),
            script = shell_quote(script),
        );
        let (cmd, shown) = Self::hardened_host(&inner);
        run(cmd, shown, stdin, self.timeout)
    }
}

impl Drop for HardenedHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
