//! Host-integration policy. The helper never parses TOML, so the policy files
//! are read here, in the core, and lowered to plain bind mounts, devices and
//! an allowed-prefix list that the helper re-checks with `openat2`.
//!
//! `/etc/karapace/policy.toml` (administrator) is applied first;
//! `~/.config/karapace/policy.toml` (user) may only tighten it.
//!
//! ```toml
//! home = "read-write"            # "read-write" | "read-only" | "none"
//! mount_prefixes = ["~/", "/srv"] # where manifest mounts may come from
//! gui = true                      # Wayland, X11, PipeWire, PulseAudio, D-Bus, fonts
//! gpu = true                      # /dev/dri, /dev/nvidia* when the manifest asks
//! audio = true                    # /dev/snd when the manifest asks
//! ```

use std::path::{Component, Path, PathBuf};

use karapace_protocol::BindMount;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("mount {0:?} is outside the allowed mount prefixes")]
    MountNotAllowed(PathBuf),
    #[error("mount source {path:?}: {source}")]
    MountSource {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount target {0:?} must be an absolute path without '..'")]
    BadTarget(String),
}

/// How the home directory is shared; ordered from tightest to loosest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HomeAccess {
    None,
    ReadOnly,
    ReadWrite,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    home: Option<HomeAccess>,
    mount_prefixes: Option<Vec<String>>,
    gui: Option<bool>,
    gpu: Option<bool>,
    audio: Option<bool>,
}

/// The effective, validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub home: HomeAccess,
    /// Canonical host prefixes manifest mounts may come from.
    pub mount_prefixes: Vec<PathBuf>,
    pub gui: bool,
    pub gpu: bool,
    pub audio: bool,
}

fn expand(p: &str, home: &Path, base: &Path) -> PathBuf {
    if p == "~" {
        home.to_path_buf()
    } else if let Some(rest) = p.strip_prefix("~/") {
        home.join(rest)
    } else if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        base.join(p)
    }
}

impl Policy {
    /// Defaults when no file says otherwise (what users of the standard
    /// tool expect: home read-write, host /tmp never shared).
    pub fn default_for(home: &Path) -> Policy {
        let mut prefixes = vec![home.to_path_buf()];
        prefixes.extend(["/media", "/mnt", "/srv", "/opt"].map(PathBuf::from));
        Policy {
            home: HomeAccess::ReadWrite,
            mount_prefixes: canonical_all(prefixes),
            gui: true,
            gpu: true,
            audio: true,
        }
    }

    /// Loads /etc/karapace/policy.toml and ~/.config/karapace/policy.toml.
    pub fn load(home: &Path) -> Result<Policy, PolicyError> {
        let read = |p: &Path| -> Result<Option<String>, PolicyError> {
            match std::fs::read_to_string(p) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(PolicyError::File {
                    path: p.to_path_buf(),
                    message: e.to_string(),
                }),
            }
        };
        let admin = Path::new("/etc/karapace/policy.toml");
        let user = home.join(".config/karapace/policy.toml");
        Self::from_texts(
            read(admin)?.as_deref().map(|t| (admin, t)),
            read(&user)?.as_deref().map(|t| (user.as_path(), t)),
            home,
        )
    }

    /// Combines an administrator and a user policy text.
    pub fn from_texts(
        admin: Option<(&Path, &str)>,
        user: Option<(&Path, &str)>,
        home: &Path,
    ) -> Result<Policy, PolicyError> {
        let parse = |(path, text): (&Path, &str)| -> Result<PolicyFile, PolicyError> {
            toml::from_str(text).map_err(|e| PolicyError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        };
        let mut p = Policy::default_for(home);
        if let Some(a) = admin {
            let a = parse(a)?;
            p.home = a.home.unwrap_or(p.home);
            if let Some(m) = a.mount_prefixes {
                p.mount_prefixes =
                    canonical_all(m.iter().map(|s| expand(s, home, Path::new("/"))).collect());
            }
            p.gui = a.gui.unwrap_or(p.gui);
            p.gpu = a.gpu.unwrap_or(p.gpu);
            p.audio = a.audio.unwrap_or(p.audio);
        }
        if let Some(u) = user {
            let u = parse(u)?;
            // The user may only tighten: minimum of each setting, and
            // prefixes only where they lie inside an admin prefix.
            p.home = p.home.min(u.home.unwrap_or(p.home));
            p.gui &= u.gui.unwrap_or(true);
            p.gpu &= u.gpu.unwrap_or(true);
            p.audio &= u.audio.unwrap_or(true);
            if let Some(m) = u.mount_prefixes {
                let wanted =
                    canonical_all(m.iter().map(|s| expand(s, home, Path::new("/"))).collect());
                p.mount_prefixes = wanted
                    .into_iter()
                    .filter(|w| p.mount_prefixes.iter().any(|a| w.starts_with(a)))
                    .collect();
            }
        }
        Ok(p)
    }
}

fn canonical_all(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths
        .into_iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect()
}

/// What the manifest and the session ask for.
#[derive(Debug, Clone, Default)]
pub struct HostRequest {
    /// Interactive session with GUI integration (Wayland, X11, audio
    /// servers, D-Bus, fonts).
    pub gui: bool,
    pub gpu: bool,
    pub audio: bool,
    /// Manifest mounts: (host path, container path); `~/` and `./` allowed.
    pub mounts: Vec<(String, String)>,
    /// Directory of the manifest (for `./` paths).
    pub manifest_dir: PathBuf,
    pub home: PathBuf,
}

/// Plain data for a `RunSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSetup {
    pub binds: Vec<BindMount>,
    pub devices: Vec<PathBuf>,
    pub allowed_mount_prefixes: Vec<PathBuf>,
}

impl HostSetup {
    fn add(&mut self, src: &Path, dst: &Path, readonly: bool) {
        if let Ok(src) = std::fs::canonicalize(src) {
            self.allowed_mount_prefixes.push(src.clone());
            self.binds.push(BindMount {
                src,
                dst: dst.to_path_buf(),
                readonly,
            });
        }
    }
}

fn normalized_target(t: &str, home: &Path) -> Result<PathBuf, PolicyError> {
    let p = expand(t, home, Path::new("/"));
    let ok = Path::new(t).is_absolute() || t.starts_with("~/");
    if ok
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
    {
        Ok(p)
    } else {
        Err(PolicyError::BadTarget(t.to_string()))
    }
}

/// Lowers `policy` and `req` (with the caller's environment `vars`) to bind
/// mounts and devices. Every source is canonicalized here (symlinks
/// resolved) and, for manifest mounts, checked component-wise against the
/// policy's prefixes; the helper checks again with `openat2`.
pub fn host_integration(
    policy: &Policy,
    req: &HostRequest,
    vars: &[(String, String)],
) -> Result<HostSetup, PolicyError> {
    let var = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut s = HostSetup::default();
    match policy.home {
        HomeAccess::ReadWrite => s.add(&req.home, &req.home, false),
        HomeAccess::ReadOnly => s.add(&req.home, &req.home, true),
        HomeAccess::None => {}
    }
    if req.gui && policy.gui {
        if let Some(rt) = var("XDG_RUNTIME_DIR").map(PathBuf::from) {
            if let Some(w) = var("WAYLAND_DISPLAY") {
                let sock = rt.join(w);
                s.add(&sock, &sock, false);
            }
            for sock in ["pipewire-0", "pulse/native", "bus"] {
                s.add(&rt.join(sock), &rt.join(sock), false);
            }
        }
        if let Some(addr) = var("DBUS_SESSION_BUS_ADDRESS")
            && let Some(path) = addr
                .strip_prefix("unix:path=")
                .map(|p| p.split(',').next().unwrap_or(p))
        {
            s.add(Path::new(path), Path::new(path), false);
        }
        if var("DISPLAY").is_some() {
            s.add(
                Path::new("/tmp/.X11-unix"),
                Path::new("/tmp/.X11-unix"),
                true,
            );
            if let Some(xa) = var("XAUTHORITY") {
                s.add(Path::new(&xa), Path::new(&xa), true);
            }
        }
        for (host, inside) in [
            ("/usr/share/fonts", "/usr/local/share/fonts"),
            ("/usr/share/icons", "/usr/local/share/icons"),
            ("/usr/share/themes", "/usr/local/share/themes"),
        ] {
            s.add(Path::new(host), Path::new(inside), true);
        }
    }
    if req.gpu && policy.gpu {
        if Path::new("/dev/dri").is_dir() {
            s.devices.push("/dev/dri".into());
        }
        if let Ok(rd) = std::fs::read_dir("/dev") {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("nvidia") {
                    s.devices.push(e.path());
                }
            }
        }
    }
    if req.audio && policy.audio && Path::new("/dev/snd").is_dir() {
        s.devices.push("/dev/snd".into());
    }
    for (host, inside) in &req.mounts {
        let src = expand(host, &req.home, &req.manifest_dir);
        let src = std::fs::canonicalize(&src).map_err(|e| PolicyError::MountSource {
            path: src.clone(),
            source: e,
        })?;
        let Some(prefix) = policy.mount_prefixes.iter().find(|p| src.starts_with(p)) else {
            return Err(PolicyError::MountNotAllowed(src));
        };
        let dst = normalized_target(inside, &req.home)?;
        // The helper checks every bind source again, beneath the prefixes it is given: hand it
        // the policy's prefix, not the source itself, so that check is a policy check too.
        if !s.allowed_mount_prefixes.contains(prefix) {
            s.allowed_mount_prefixes.push(prefix.clone());
        }
        s.binds.push(BindMount {
            src,
            dst,
            readonly: false,
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_policy_only_tightens() {
        let home = std::env::temp_dir();
        let admin = "home = \"read-only\"\ngpu = false\n";
        let user = "home = \"read-write\"\ngpu = true\naudio = false\n";
        let p = Policy::from_texts(
            Some((Path::new("a"), admin)),
            Some((Path::new("u"), user)),
            &home,
        )
        .unwrap();
        assert_eq!(p.home, HomeAccess::ReadOnly);
        assert!(!p.gpu);
        assert!(!p.audio);
    }

    #[test]
    fn user_prefixes_must_lie_inside_admin_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("in");
        std::fs::create_dir(&inside).unwrap();
        let admin = format!("mount_prefixes = [{:?}]", dir.path());
        let user = format!("mount_prefixes = [{inside:?}, \"/etc\"]");
        let p = Policy::from_texts(
            Some((Path::new("a"), &admin)),
            Some((Path::new("u"), &user)),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            p.mount_prefixes,
            vec![std::fs::canonicalize(&inside).unwrap()]
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let home = std::env::temp_dir();
        assert!(Policy::from_texts(Some((Path::new("a"), "homme = 1")), None, &home).is_err());
    }

    #[test]
    fn manifest_mounts_are_resolved_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let home = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(home.join("proj")).unwrap();
        std::os::unix::fs::symlink("/etc", home.join("evil")).unwrap();
        let policy = Policy {
            home: HomeAccess::None,
            mount_prefixes: vec![home.clone()],
            gui: false,
            gpu: false,
            audio: false,
        };
        let mut req = HostRequest {
            home: home.clone(),
            manifest_dir: home.clone(),
            ..HostRequest::default()
        };
        req.mounts = vec![("./proj".into(), "/work".into())];
        let s = host_integration(&policy, &req, &[]).unwrap();
        assert_eq!(s.binds[0].src, home.join("proj"));
        // The helper re-checks against the policy's prefix, not against the source itself.
        assert_eq!(s.allowed_mount_prefixes, vec![home.clone()]);
        req.mounts = vec![("~/evil".into(), "/x".into())];
        assert!(matches!(
            host_integration(&policy, &req, &[]),
            Err(PolicyError::MountNotAllowed(_))
        ));
        req.mounts = vec![("./proj".into(), "/../etc".into())];
        assert!(matches!(
            host_integration(&policy, &req, &[]),
            Err(PolicyError::BadTarget(_))
        ));
    }
}
