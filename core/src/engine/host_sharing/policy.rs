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
//! gui = true                      # master switch for everything below and fonts/icons/themes
//! wayland = true                  # the Wayland socket (interactive sessions)
//! x11 = true                      # /tmp/.X11-unix, DISPLAY, XAUTHORITY (interactive sessions)
//! pipewire = true                 # PipeWire and PulseAudio sockets (interactive sessions)
//! dbus = false                    # the session bus: host code execution (systemd --user, portals)
//! ssh_agent = false               # SSH_AUTH_SOCK and its socket
//! gpu = true                      # /dev/dri, /dev/nvidia* when the manifest asks
//! audio = true                    # /dev/snd when the manifest asks
//! ```
//!
//! Manifest mounts inside the home directory (or containing it) obey `home`: refused under
//! `"none"`, read-only under `"read-only"` — unless a policy file names a mount prefix that
//! covers them (the administrator's always; the user's only where the administrator left the home
//! read-write). A manifest is someone else's file; the policy is the user's word.

use std::path::{Component, Path, PathBuf};

use karapace_helper_client::BindMount;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "mount {src:?} is outside the allowed mount prefixes ({}); {advice}",
        allowed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    MountNotAllowed {
        src: PathBuf,
        allowed: Vec<PathBuf>,
        advice: String,
    },
    #[error("mount source {path:?}: {source}")]
    MountSource {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount target {0:?} must be an absolute path without '..'")]
    BadTarget(String),
    #[error(
        "mount {src:?} reaches into your home directory, which your policy does not share \
         (home = \"none\"); name a prefix covering it in mount_prefixes of \
         ~/.config/karapace/policy.toml to allow it"
    )]
    HomeNotShared { src: PathBuf },
}

/// What to tell the user about a refused mount: the line an administrator could add, when it is
/// a path that may sensibly be granted — never `/`, a home directory or a path holding one
/// (an administrator's prefix lifts the `home` rule beneath it).
fn grant_advice(src: &Path, home: &Path) -> String {
    let holds_a_home = home.starts_with(src) || Path::new("/home").starts_with(src);
    if src.parent().is_none() || holds_a_home || src.starts_with(home) {
        return "move the project beneath one of them".to_owned();
    }
    format!(
        "move the project beneath one of them, or have an administrator add {:?} to \
         mount_prefixes in /etc/karapace/policy.toml (an administrator's prefix is shared \
         whatever `home` says)",
        src.display().to_string()
    )
}

/// The directory of the manifest, as a mount prefix of its own (a project under `/tmp`), when
/// sharing it widens nothing the policy restricts: the policy shares the home read-write and no
/// policy file lists `mount_prefixes` (a list is all there is), the caller is not root (for
/// whom "owned by me" says nothing), and the directory and every ancestor are safe from other
/// users: owned by the caller or root and writable by nobody else, except root-owned sticky
/// directories like `/tmp` (where only an entry's owner can rename or remove it). So no other
/// user can have chosen what lies beneath it, nor swap it for something else later.
fn manifest_prefix(policy: &Policy, manifest_dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if policy.prefixes_listed || policy.home != HomeAccess::ReadWrite {
        return None;
    }
    let me = rustix::process::geteuid().as_raw();
    if me == 0 {
        return None;
    }
    let dir = std::fs::canonicalize(manifest_dir).ok()?;
    // Not `/`: the whole host is no project.
    dir.parent()?;
    let own = std::fs::metadata(&dir).ok()?;
    if !own.is_dir() || own.uid() != me || own.mode() & 0o022 != 0 {
        return None;
    }
    for ancestor in dir.ancestors().skip(1) {
        let m = std::fs::metadata(ancestor).ok()?;
        let sticky_root = m.uid() == 0 && m.mode() & 0o1000 != 0;
        let safe_owner = m.uid() == me || m.uid() == 0;
        if !safe_owner || (m.mode() & 0o022 != 0 && !sticky_root) {
            return None;
        }
    }
    Some(dir)
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
    wayland: Option<bool>,
    x11: Option<bool>,
    pipewire: Option<bool>,
    dbus: Option<bool>,
    ssh_agent: Option<bool>,
    gpu: Option<bool>,
    audio: Option<bool>,
}

/// The effective, validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // one switch per host integration, as in the file
pub struct Policy {
    pub home: HomeAccess,
    /// Canonical host prefixes manifest mounts may come from.
    pub mount_prefixes: Vec<PathBuf>,
    /// Prefixes a policy file names itself (never the defaults): manifest mounts beneath them
    /// are not restricted by `home`.
    pub granted_prefixes: Vec<PathBuf>,
    /// A policy file (the administrator's or the user's) lists `mount_prefixes`: then those are
    /// all there is (a manifest's own directory is not added).
    pub prefixes_listed: bool,
    pub gui: bool,
    pub wayland: bool,
    pub x11: bool,
    pub pipewire: bool,
    pub dbus: bool,
    pub ssh_agent: bool,
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
            granted_prefixes: Vec::new(),
            prefixes_listed: false,
            gui: true,
            wayland: true,
            x11: true,
            pipewire: true,
            dbus: false,
            ssh_agent: false,
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
        // Switches that grant a handle to host code (the session bus, the SSH agent) are off by
        // default; the user may turn them on unless the administrator said no.
        let mut admin_forbids = (false, false);
        if let Some(a) = admin {
            let a = parse(a)?;
            p.home = a.home.unwrap_or(p.home);
            if let Some(m) = a.mount_prefixes {
                p.mount_prefixes =
                    canonical_all(m.iter().map(|s| expand(s, home, Path::new("/"))).collect());
                p.granted_prefixes.clone_from(&p.mount_prefixes);
                p.prefixes_listed = true;
            }
            p.gui = a.gui.unwrap_or(p.gui);
            p.wayland = a.wayland.unwrap_or(p.wayland);
            p.x11 = a.x11.unwrap_or(p.x11);
            p.pipewire = a.pipewire.unwrap_or(p.pipewire);
            p.dbus = a.dbus.unwrap_or(p.dbus);
            p.ssh_agent = a.ssh_agent.unwrap_or(p.ssh_agent);
            p.gpu = a.gpu.unwrap_or(p.gpu);
            p.audio = a.audio.unwrap_or(p.audio);
            admin_forbids = (a.dbus == Some(false), a.ssh_agent == Some(false));
        }
        if let Some(u) = user {
            let u = parse(u)?;
            // The user may only tighten: minimum of each setting, and
            // prefixes only where they lie inside an admin prefix.
            let admin_home = p.home;
            p.home = p.home.min(u.home.unwrap_or(p.home));
            p.gui &= u.gui.unwrap_or(true);
            p.wayland &= u.wayland.unwrap_or(true);
            p.x11 &= u.x11.unwrap_or(true);
            p.pipewire &= u.pipewire.unwrap_or(true);
            p.gpu &= u.gpu.unwrap_or(true);
            p.audio &= u.audio.unwrap_or(true);
            p.dbus = u.dbus.unwrap_or(p.dbus) && !admin_forbids.0;
            p.ssh_agent = u.ssh_agent.unwrap_or(p.ssh_agent) && !admin_forbids.1;
            if let Some(m) = u.mount_prefixes {
                p.prefixes_listed = true;
                let wanted =
                    canonical_all(m.iter().map(|s| expand(s, home, Path::new("/"))).collect());
                p.mount_prefixes = wanted
                    .into_iter()
                    .filter(|w| p.mount_prefixes.iter().any(|a| w.starts_with(a)))
                    .collect();
                // The user's own prefixes lift their own `home` restriction, never the
                // administrator's.
                if admin_home == HomeAccess::ReadWrite {
                    p.granted_prefixes.clone_from(&p.mount_prefixes);
                } else {
                    let admin_granted = std::mem::take(&mut p.granted_prefixes);
                    p.granted_prefixes = p
                        .mount_prefixes
                        .iter()
                        .filter(|m| admin_granted.iter().any(|g| m.starts_with(g)))
                        .cloned()
                        .collect();
                }
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
    /// servers, D-Bus, fonts) as far as the policy grants each.
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
    /// Variables of the caller that a granted integration needs (`WAYLAND_DISPLAY`,
    /// `SSH_AUTH_SOCK`, …); everything else follows the allowlist in [`super::env`].
    pub env: Vec<(String, String)>,
}

impl HostSetup {
    /// Shares `src` (if it exists) at `dst`; true when it was added.
    fn add(&mut self, src: &Path, dst: &Path, readonly: bool) -> bool {
        let Ok(src) = std::fs::canonicalize(src) else {
            return false;
        };
        self.allowed_mount_prefixes.push(src.clone());
        self.binds.push(BindMount {
            src,
            dst: dst.to_path_buf(),
            readonly,
        });
        true
    }

    /// Shares the socket a variable names and passes the variable on.
    fn add_with_var(&mut self, var: (&str, Option<String>), socket: &Path, readonly: bool) {
        if let (name, Some(value)) = var
            && self.add(socket, socket, readonly)
        {
            self.env.push((name.to_owned(), value));
        }
    }
}

/// A manifest mount's container side: `path` or `path:ro` / `path:rw` (read-write, as before).
/// Returns the path and whether the manifest asked for read-only.
pub fn split_mount_mode(container: &str) -> (&str, bool) {
    if let Some(path) = container.strip_suffix(":ro") {
        (path.trim_end(), true)
    } else if let Some(path) = container.strip_suffix(":rw") {
        (path.trim_end(), false)
    } else {
        (container, false)
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

/// The caller's variables [`host_integration`] reads (beside the allowlist of `env.rs`).
pub const HOST_VARS: &[&str] = &[
    "SSH_AUTH_SOCK",
    "XDG_RUNTIME_DIR",
    "WAYLAND_DISPLAY",
    "PULSE_SERVER",
    "DBUS_SESSION_BUS_ADDRESS",
    "DISPLAY",
    "XAUTHORITY",
];

/// Lowers `policy` and `req` (with the caller's environment `vars`) to bind
/// mounts, devices and the variables they need. Every source is canonicalized here (symlinks
/// resolved) and, for manifest mounts, checked component-wise against the
/// policy's prefixes and its home setting; the helper checks again with `openat2`.
pub fn host_integration(
    policy: &Policy,
    req: &HostRequest,
    vars: &[(String, String)],
) -> Result<HostSetup, PolicyError> {
    let var = |k: &str| {
        debug_assert!(HOST_VARS.contains(&k), "{k} missing from HOST_VARS");
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    let mut s = HostSetup::default();
    match policy.home {
        HomeAccess::ReadWrite => _ = s.add(&req.home, &req.home, false),
        HomeAccess::ReadOnly => _ = s.add(&req.home, &req.home, true),
        HomeAccess::None => {}
    }
    if req.gui && policy.gui {
        gui_integration(policy, &var, &mut s);
    }
    if policy.ssh_agent
        && let Some(sock) = var("SSH_AUTH_SOCK")
    {
        s.add_with_var(
            ("SSH_AUTH_SOCK", Some(sock.clone())),
            Path::new(&sock),
            false,
        );
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
    let home = std::fs::canonicalize(&req.home).unwrap_or_else(|_| req.home.clone());
    for (host, inside) in &req.mounts {
        let src = expand(host, &req.home, &req.manifest_dir);
        let src = std::fs::canonicalize(&src).map_err(|e| PolicyError::MountSource {
            path: src.clone(),
            source: e,
        })?;
        let own_dir = manifest_prefix(policy, &req.manifest_dir);
        let Some(prefix) = policy
            .mount_prefixes
            .iter()
            .chain(own_dir.iter())
            .find(|p| src.starts_with(p))
            .cloned()
        else {
            let mut allowed = policy.mount_prefixes.clone();
            allowed.extend(own_dir);
            let advice = grant_advice(&src, &req.home);
            return Err(PolicyError::MountNotAllowed {
                src,
                allowed,
                advice,
            });
        };
        let (inside, asked_readonly) = split_mount_mode(inside);
        let dst = normalized_target(inside, &req.home)?;
        // A manifest may not widen what the policy shares of the home directory: a mount inside
        // it (or of a directory holding it) gets at most the home setting, unless a policy file
        // grants a prefix covering it.
        let reaches_home = src.starts_with(&home) || home.starts_with(&src);
        let granted = policy.granted_prefixes.iter().any(|g| src.starts_with(g));
        let home_cap = if reaches_home && !granted {
            policy.home
        } else {
            HomeAccess::ReadWrite
        };
        let readonly = match home_cap {
            HomeAccess::None => return Err(PolicyError::HomeNotShared { src }),
            HomeAccess::ReadOnly => true,
            HomeAccess::ReadWrite => asked_readonly,
        };
        // The helper checks every bind source again, beneath the prefixes it is given: hand it
        // the policy's prefix, not the source itself, so that check is a policy check too.
        if !s.allowed_mount_prefixes.contains(&prefix) {
            s.allowed_mount_prefixes.push(prefix);
        }
        s.binds.push(BindMount { src, dst, readonly });
    }
    Ok(s)
}

/// Wayland, X11, PipeWire/PulseAudio, the session bus and fonts, each as far as the policy
/// grants it. The variables a socket needs pass only with that socket.
fn gui_integration(policy: &Policy, var: &dyn Fn(&str) -> Option<String>, s: &mut HostSetup) {
    let runtime_dir = var("XDG_RUNTIME_DIR");
    let mut shared_runtime = false;
    if let Some(rt) = runtime_dir.as_deref().map(PathBuf::from) {
        if policy.wayland
            && let Some(w) = var("WAYLAND_DISPLAY")
        {
            let before = s.binds.len();
            s.add_with_var(("WAYLAND_DISPLAY", Some(w.clone())), &rt.join(&w), false);
            shared_runtime |= s.binds.len() > before;
        }
        if policy.pipewire {
            shared_runtime |= s.add(&rt.join("pipewire-0"), &rt.join("pipewire-0"), false);
            let pulse = s.add(&rt.join("pulse/native"), &rt.join("pulse/native"), false);
            shared_runtime |= pulse;
            // Only with the socket it is there to name.
            if let (true, Some(ps)) = (pulse, var("PULSE_SERVER")) {
                s.env.push(("PULSE_SERVER".to_owned(), ps));
            }
        }
        if policy.dbus {
            shared_runtime |= s.add(&rt.join("bus"), &rt.join("bus"), false);
        }
    }
    if policy.dbus
        && let Some(addr) = var("DBUS_SESSION_BUS_ADDRESS")
    {
        if let Some(path) = addr
            .strip_prefix("unix:path=")
            .map(|p| p.split(',').next().unwrap_or(p))
        {
            s.add(Path::new(path), Path::new(path), false);
        }
        s.env.push(("DBUS_SESSION_BUS_ADDRESS".to_owned(), addr));
    }
    if let (true, Some(rt)) = (shared_runtime, runtime_dir) {
        s.env.push(("XDG_RUNTIME_DIR".to_owned(), rt));
    }
    if policy.x11
        && let Some(display) = var("DISPLAY")
    {
        s.add(
            Path::new("/tmp/.X11-unix"),
            Path::new("/tmp/.X11-unix"),
            true,
        );
        s.env.push(("DISPLAY".to_owned(), display));
        if let Some(xa) = var("XAUTHORITY") {
            s.add_with_var(("XAUTHORITY", Some(xa.clone())), Path::new(&xa), true);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_home_is_shared_as_the_policy_says() {
        let home = std::fs::canonicalize(tempfile::tempdir().unwrap().keep()).unwrap();
        let req = HostRequest {
            home: home.clone(),
            manifest_dir: home.clone(),
            ..HostRequest::default()
        };
        let mut policy = Policy::default_for(&home);
        for (access, want) in [
            (HomeAccess::ReadOnly, Some(true)),
            (HomeAccess::ReadWrite, Some(false)),
            (HomeAccess::None, None),
        ] {
            policy.home = access;
            let setup = host_integration(&policy, &req, &[]).unwrap();
            let got = setup
                .binds
                .iter()
                .find(|b| b.dst == home)
                .map(|b| b.readonly);
            assert_eq!(got, want, "{access:?}");
        }
        std::fs::remove_dir(&home).unwrap();
    }

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
            home: HomeAccess::ReadWrite,
            mount_prefixes: vec![home.clone()],
            ..Policy::default_for(&home)
        };
        let mut req = HostRequest {
            home: home.clone(),
            manifest_dir: home.clone(),
            ..HostRequest::default()
        };
        req.mounts = vec![("./proj".into(), "/work".into())];
        let s = host_integration(&policy, &req, &[]).unwrap();
        let work = s
            .binds
            .iter()
            .find(|b| b.dst == Path::new("/work"))
            .unwrap();
        assert_eq!(work.src, home.join("proj"));
        // The helper re-checks against the policy's prefix, not against the source itself.
        assert_eq!(s.allowed_mount_prefixes, vec![home.clone()]);
        req.mounts = vec![("~/evil".into(), "/x".into())];
        assert!(matches!(
            host_integration(&policy, &req, &[]),
            Err(PolicyError::MountNotAllowed { .. })
        ));
        req.mounts = vec![("./proj".into(), "/../etc".into())];
        assert!(matches!(
            host_integration(&policy, &req, &[]),
            Err(PolicyError::BadTarget(_))
        ));
    }

    /// A project outside every prefix (under `/tmp`, `/var/tmp`, …) may mount what lies beneath
    /// its own directory when the user owns that directory and nobody else can write to it;
    /// anything else gets an error naming the prefixes and the policy line that would allow it.
    #[test]
    fn the_manifests_own_directory_is_a_prefix_when_it_is_the_users() {
        use std::os::unix::fs::PermissionsExt;
        let root = rustix::process::geteuid().is_root();
        let home_dir = tempfile::tempdir().unwrap();
        let home = std::fs::canonicalize(home_dir.path()).unwrap();
        let project_dir = tempfile::tempdir().unwrap();
        let project = std::fs::canonicalize(project_dir.path()).unwrap();
        std::fs::set_permissions(&project, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(project.join("data")).unwrap();
        let policy = Policy::default_for(&home);
        let mut req = HostRequest {
            home: home.clone(),
            manifest_dir: project.clone(),
            mounts: vec![("./data".into(), "/data".into())],
            ..HostRequest::default()
        };
        let shared = host_integration(&policy, &req, &[]);
        if root {
            // For root "owned by me" says nothing: no implicit prefix.
            assert!(matches!(shared, Err(PolicyError::MountNotAllowed { .. })));
        } else {
            let s = shared.unwrap();
            assert!(s.binds.iter().any(|b| b.src == project.join("data")));
            assert!(s.allowed_mount_prefixes.contains(&project));
        }

        // Out of the project: refused, naming the prefixes and what an administrator could add.
        req.mounts = vec![("/etc".into(), "/x".into())];
        let err = host_integration(&policy, &req, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the allowed mount prefixes"), "{err}");
        assert!(err.contains("have an administrator add \"/etc\""), "{err}");
        // Never advice that would grant `/` or a home directory.
        req.mounts = vec![("/".into(), "/x".into())];
        let err = host_integration(&policy, &req, &[])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("administrator add"), "{err}");

        if root {
            return;
        }
        req.mounts = vec![("./data".into(), "/data".into())];
        let refused = |policy: &Policy, req: &HostRequest| {
            matches!(
                host_integration(policy, req, &[]),
                Err(PolicyError::MountNotAllowed { .. })
            )
        };
        // A project directory others may write to is not the user's alone.
        std::fs::set_permissions(&project, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(refused(&policy, &req));
        std::fs::set_permissions(&project, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Nor one beneath a directory others may write to (they could swap it).
        let shared_parent = tempfile::tempdir().unwrap();
        std::fs::set_permissions(shared_parent.path(), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let inner = shared_parent.path().join("proj");
        std::fs::create_dir_all(inner.join("data")).unwrap();
        let nested = HostRequest {
            manifest_dir: inner,
            ..req.clone()
        };
        assert!(refused(&policy, &nested));
        // Not when the home is not shared read-write, nor when any policy file lists prefixes.
        for (admin, user) in [
            (None, Some("home = \"none\"")),
            (None, Some("home = \"read-only\"")),
            (None, Some("mount_prefixes = []")),
            (
                Some(format!(
                    "mount_prefixes = [{:?}]",
                    home.display().to_string()
                )),
                None,
            ),
        ] {
            let p = Policy::from_texts(
                admin.as_deref().map(|t| (Path::new("a"), t)),
                user.map(|t| (Path::new("u"), t)),
                &home,
            )
            .unwrap();
            assert!(refused(&p, &req), "{admin:?} {user:?}");
        }
    }

    /// A hostile manifest's `../:/workspace` (or `./` deep in the home) must not widen what the
    /// policy shares of the home directory.
    #[test]
    fn manifest_mounts_obey_the_home_setting() {
        let dir = tempfile::tempdir().unwrap();
        let home = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(home.join("repo/sub")).unwrap();
        let mut policy = Policy::default_for(&home);
        policy.mount_prefixes = vec![home.clone()];
        let mut req = HostRequest {
            home: home.clone(),
            manifest_dir: home.join("repo"),
            ..HostRequest::default()
        };
        let climb = vec![("../".to_owned(), "/workspace".to_owned())];
        let inside = vec![("./sub".to_owned(), "/work:ro".to_owned())];

        policy.home = HomeAccess::None;
        req.mounts.clone_from(&climb);
        assert!(matches!(
            host_integration(&policy, &req, &[]),
            Err(PolicyError::HomeNotShared { .. })
        ));
        req.mounts.clone_from(&inside);
        assert!(matches!(
            host_integration(&policy, &req, &[]),
            Err(PolicyError::HomeNotShared { .. })
        ));

        policy.home = HomeAccess::ReadOnly;
        req.mounts = vec![("../".to_owned(), "/workspace".to_owned())];
        let s = host_integration(&policy, &req, &[]).unwrap();
        let ws = s
            .binds
            .iter()
            .find(|b| b.dst == Path::new("/workspace"))
            .unwrap();
        assert!(ws.readonly, "forced read-only under home = read-only");

        // A prefix a policy file names itself lifts the restriction, with the manifest's mode.
        policy.home = HomeAccess::None;
        policy.granted_prefixes = vec![home.join("repo")];
        req.mounts.clone_from(&inside);
        let s = host_integration(&policy, &req, &[]).unwrap();
        assert_eq!(s.binds.len(), 1);
        assert_eq!(s.binds[0].dst, Path::new("/work"));
        assert!(s.binds[0].readonly, "`:ro` asks for read-only");
        req.mounts = vec![("./sub".to_owned(), "/work".to_owned())];
        assert!(!host_integration(&policy, &req, &[]).unwrap().binds[0].readonly);
        // … but not for the directory above it.
        req.mounts.clone_from(&climb);
        assert!(host_integration(&policy, &req, &[]).is_err());
    }

    #[test]
    fn only_the_administrator_or_a_user_with_a_shared_home_grants_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let home = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(home.join("proj")).unwrap();
        let user = format!(
            "home = \"none\"\nmount_prefixes = [{:?}]",
            home.join("proj")
        );
        let p = Policy::from_texts(None, Some((Path::new("u"), &user)), &home).unwrap();
        assert_eq!(p.granted_prefixes, vec![home.join("proj")]);
        // The administrator said none: the user cannot hand parts of the home back.
        let admin = "home = \"none\"";
        let p = Policy::from_texts(
            Some((Path::new("a"), admin)),
            Some((Path::new("u"), &user)),
            &home,
        )
        .unwrap();
        assert!(p.granted_prefixes.is_empty());
        assert_eq!(p.home, HomeAccess::None);
    }

    #[test]
    fn split_mount_mode_keeps_plain_targets() {
        assert_eq!(split_mount_mode("/data"), ("/data", false));
        assert_eq!(split_mount_mode("/data:ro"), ("/data", true));
        assert_eq!(split_mount_mode("/data:rw"), ("/data", false));
    }

    /// The session bus and the SSH agent are handles to host code: off unless a policy grants
    /// them; the administrator can forbid them. Their variables pass only with their sockets.
    #[test]
    fn session_bus_and_ssh_agent_need_a_grant() {
        let dir = tempfile::tempdir().unwrap();
        let home = std::fs::canonicalize(dir.path()).unwrap();
        let rt = home.join("run");
        std::fs::create_dir_all(&rt).unwrap();
        for f in ["bus", "wayland-0", "agent.sock"] {
            std::fs::write(rt.join(f), b"").unwrap();
        }
        let vars: Vec<(String, String)> = [
            ("XDG_RUNTIME_DIR", rt.to_str().unwrap().to_owned()),
            ("WAYLAND_DISPLAY", "wayland-0".to_owned()),
            (
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", rt.join("bus").display()),
            ),
            (
                "SSH_AUTH_SOCK",
                rt.join("agent.sock").to_str().unwrap().to_owned(),
            ),
            ("DISPLAY", ":0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let req = HostRequest {
            gui: true,
            home: home.clone(),
            manifest_dir: home.clone(),
            ..HostRequest::default()
        };
        let names = |s: &HostSetup| s.env.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        let srcs = |s: &HostSetup| s.binds.iter().map(|b| b.src.clone()).collect::<Vec<_>>();

        let p = Policy::from_texts(None, None, &home).unwrap();
        let s = host_integration(&p, &req, &vars).unwrap();
        assert!(names(&s).contains(&"WAYLAND_DISPLAY".to_owned()));
        assert!(!names(&s).contains(&"DBUS_SESSION_BUS_ADDRESS".to_owned()));
        assert!(!names(&s).contains(&"SSH_AUTH_SOCK".to_owned()));
        assert!(!srcs(&s).contains(&rt.join("bus")));
        assert!(!srcs(&s).contains(&rt.join("agent.sock")));

        let user = "dbus = true\nssh_agent = true\nx11 = false";
        let p = Policy::from_texts(None, Some((Path::new("u"), user)), &home).unwrap();
        let s = host_integration(&p, &req, &vars).unwrap();
        assert!(names(&s).contains(&"DBUS_SESSION_BUS_ADDRESS".to_owned()));
        assert!(names(&s).contains(&"SSH_AUTH_SOCK".to_owned()));
        assert!(srcs(&s).contains(&rt.join("bus")));
        assert!(srcs(&s).contains(&rt.join("agent.sock")));
        assert!(!names(&s).contains(&"DISPLAY".to_owned()), "x11 = false");

        let admin = "dbus = false\nssh_agent = false";
        let p = Policy::from_texts(
            Some((Path::new("a"), admin)),
            Some((Path::new("u"), user)),
            &home,
        )
        .unwrap();
        assert!(!p.dbus && !p.ssh_agent);

        // No GUI for non-interactive sessions, whatever the policy.
        let p = Policy::from_texts(None, Some((Path::new("u"), user)), &home).unwrap();
        let exec = HostRequest {
            gui: false,
            ..req.clone()
        };
        let s = host_integration(&p, &exec, &vars).unwrap();
        assert!(!names(&s).contains(&"WAYLAND_DISPLAY".to_owned()));
        assert!(!names(&s).contains(&"DBUS_SESSION_BUS_ADDRESS".to_owned()));
    }
}
