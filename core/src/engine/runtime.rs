//! Lowering an environment (or a build step) to the helper's declarative `RunSpec`.
//! The core decides *what* runs where; the helper checks it again and does the privileged work.

use std::path::{Path, PathBuf};

use super::host_sharing::env as host_env;
use super::host_sharing::policy::{HostRequest, HostSetup, Policy, PolicyError, host_integration};
use karapace_helper_client::{Capabilities, IdMapMode, Identity, Limits, Network, RunSpec, Upper};
use karapace_schema::LockFile;
use karapace_store::{EnvMetadata, Store};

use crate::error::{CoreError, Result};

/// Key of `~/.config/karapace/config.toml` that lets environments run on a kernel without
/// Landlock, like `--allow-without-landlock`.
pub const ALLOW_WITHOUT_LANDLOCK_KEY: &str = "allow_without_landlock";

/// Whether requests may run on a kernel without Landlock: the command-line flag, else the
/// user's config. The helper decides with this whether to refuse such a kernel.
pub fn allow_without_landlock(flag: bool) -> Result<bool> {
    if flag {
        return Ok(true);
    }
    let file = karapace_images::config::config_file_path();
    Ok(karapace_images::config::config_flag(
        file.as_deref(),
        ALLOW_WITHOUT_LANDLOCK_KEY,
    )?)
}

/// The caller's home directory.
pub fn home() -> Result<PathBuf> {
    karapace_dirs::home().ok_or_else(|| CoreError::Host("HOME is not set".into()))
}

fn user_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map_or_else(|| "user".to_owned(), |u| u.name)
        })
}

/// Overlay lowers (top first) of a built environment, as directories in the store; the policy
/// layer's tree is already known (`policy_layer::layer_tree`).
pub fn lowers(store: &Store, env: &EnvMetadata, policy_tree: &Path) -> Result<Vec<PathBuf>> {
    env.lower_layers_top_first()
        .iter()
        .map(|h| {
            if env.policy_layer.as_ref() == Some(h) {
                Ok(policy_tree.to_path_buf())
            } else {
                Ok(store.layer_tree(h)?)
            }
        })
        .collect()
}

/// What of the host a session of this environment sees: the policy files applied to the lock's
/// mounts and hardware (and, for interactive sessions, the GUI integrations the policy grants).
pub fn host_setup(
    lock: &LockFile,
    source_dir: &Path,
    home: &Path,
    vars: &[(String, String)],
    interactive: bool,
) -> Result<HostSetup> {
    let policy = Policy::load(home)?;
    let request = HostRequest {
        gui: interactive,
        gpu: lock.hardware_gpu,
        audio: lock.hardware_audio,
        mounts: lock
            .mounts
            .iter()
            .map(|m| (m.host_path.clone(), m.container_path.clone()))
            .collect(),
        manifest_dir: source_dir.to_path_buf(),
        home: home.to_path_buf(),
    };
    Ok(host_integration(&policy, &request, vars)?)
}

/// Checks a manifest's mounts against the host-sharing policy before anything is built, so a
/// mount sessions would refuse fails the build at once, with the prefixes and the policy line
/// that would allow it (rather than every later `exec`).
pub fn check_manifest_mounts(
    manifest: &karapace_schema::NormalizedManifest,
    source_dir: &Path,
) -> Result<()> {
    if manifest.mounts.is_empty() {
        return Ok(());
    }
    let home = home()?;
    let policy = Policy::load(&home)?;
    for m in &manifest.mounts {
        let request = HostRequest {
            mounts: vec![(m.host_path.clone(), m.container_path.clone())],
            manifest_dir: source_dir.to_path_buf(),
            home: home.clone(),
            ..HostRequest::default()
        };
        // Only a source outside every prefix fails the build: that needs an administrator
        // (or a move). What the user's own `home` setting refuses, or a source that does not
        // exist yet (the templates' `~/projects`), may change before the first session; `build`
        // lists it among the paths sessions would refuse.
        if let Err(e @ PolicyError::MountNotAllowed { .. }) =
            host_integration(&policy, &request, &[])
        {
            return Err(e.into());
        }
    }
    Ok(())
}

/// The spec for an interactive or exec session of a built environment.
pub fn session_spec(
    store: &Store,
    env: &EnvMetadata,
    lock: &LockFile,
    policy_tree: &Path,
    source_dir: &Path,
    argv: Vec<String>,
    tty: Option<karapace_helper_client::TerminalSize>,
) -> Result<RunSpec> {
    let home = home()?;
    let hostname = format!("karapace-{}", env.short_id);
    let (vars, dropped) = super::host_sharing::env::text_vars(std::env::vars_os());
    for name in dropped
        .iter()
        .filter(|n| super::host_sharing::env::read_by_sessions(n))
    {
        tracing::warn!("{name} is not UTF-8: not passed into the environment");
    }
    let host = host_setup(lock, source_dir, &home, &vars, tty.is_some())?;
    let cwd = if host.binds.iter().any(|b| b.dst == home) {
        home.clone()
    } else {
        PathBuf::from("/")
    };
    if lock.cpu_shares.is_some() || lock.memory_limit_mb.is_some() {
        tracing::warn!(
            "resource limits (cpu_shares, memory_limit_mb) are recorded but not enforced yet (no cgroup of the session's own to apply them to)"
        );
    }
    let root = canonical_root(store)?;
    let beneath = |p: &Path| in_root(store, &root, p);
    Ok(RunSpec {
        lowers: lowers(store, env, policy_tree)?
            .iter()
            .map(|p| beneath(p))
            .collect(),
        upper: Upper::Store {
            upper: beneath(&store.env_upper(&env.env_id)),
            work: beneath(&store.env_work(&env.env_id)),
        },
        store_root: root.clone(),
        argv,
        env: host_env::workload_env(
            vars,
            &host.env,
            &home.to_string_lossy(),
            &user_name(),
            &hostname,
        ),
        cwd,
        hostname,
        binds: host.binds,
        devices: host.devices,
        network: if lock.network_isolation {
            Network::Isolated
        } else {
            Network::Host
        },
        limits: Limits {
            memory_mb: lock.memory_limit_mb,
            cpu_shares: lock.cpu_shares,
            ..Limits::default()
        },
        identity: Identity::Caller,
        id_map: super::trees::Ownership::session_id_map_for_caller(),
        capabilities: Capabilities::None,
        tty,
        allowed_mount_prefixes: host.allowed_mount_prefixes,
        join: Vec::new(),
        // Set by the caller from the user's opt-out.
        allow_without_landlock: false,
        oci: None,
    })
}

/// The name session records give the id maps of a session's user namespace
/// (`karapace_store::SessionInfo::id_maps`): a new session joins only running sessions whose
/// maps are the ones it would write itself. For root on the host plain and `--root` sessions
/// map the same ids; a user's plain session maps its own id to itself, a `--root` one maps it
/// to 0 (with the subordinate range, if any), so the two kinds cannot share namespaces. An
/// `oci` session always maps the caller's id to 0 (the runtime runs as root there; plain
/// workloads differ only in their capabilities), so without a subordinate range its plain and
/// `--root` sessions share namespaces.
pub fn id_maps_name(spec: &RunSpec) -> &'static str {
    match (spec.id_map, spec.identity) {
        (IdMapMode::Full, _) => "full",
        (_, Identity::Root) => ROOT_SESSION_MAPS,
        (_, Identity::Caller) if spec.oci.is_some() => ROOT_SESSION_MAPS,
        (_, Identity::Caller) => PLAIN_SESSION_MAPS,
    }
}

/// [`id_maps_name`] of a user's plain session: only the caller's own id, mapped to itself.
pub const PLAIN_SESSION_MAPS: &str = "own-id";

/// [`id_maps_name`] of a session that maps only the caller's own id, to root.
const ROOT_SESSION_MAPS: &str = "own-id-as-root";

/// Environment variables of root sessions whose id map is collapsed ([`as_root`]).
pub const COLLAPSED_SESSION_ENV: [(&str, &str); 1] =
    [("APT_CONFIG", super::policy_layer::APT_COLLAPSED_CONF)];

/// Makes a session spec a root session (`exec/enter --root`): root inside with the id maps and
/// the capabilities of a build's package-manager steps, so `apt-get install` and its kin work as
/// on a normal system. The capabilities hold only inside the session's user namespace, over the
/// ids it maps: the caller's own and its subordinate range (for a caller that is root, the
/// identity map of `0..=65535`). Host sharing stays as the policy grants it.
///
/// Where the caller has no subordinate range the map is collapsed (one id; `chown` succeeds
/// without effect): a package manager that drops privileges to a system user cannot, so the
/// environment variables of [`COLLAPSED_SESSION_ENV`] point it at a configuration that keeps it
/// root (the same fallback the build's steps use).
pub fn as_root(spec: &mut RunSpec) {
    spec.identity = Identity::Root;
    spec.capabilities = Capabilities::PackageManager;
    spec.id_map = super::trees::Ownership::detect().build_id_map();
    let mut vars: Vec<(&str, &str)> =
        vec![("HOME", "/root"), ("USER", "root"), ("LOGNAME", "root")];
    if spec.id_map != IdMapMode::Full {
        vars.extend(COLLAPSED_SESSION_ENV);
    }
    for (k, v) in vars {
        spec.env.retain(|(name, _)| name != k);
        spec.env.push((k.to_owned(), v.to_owned()));
    }
}

/// The spec for one package-manager step of a build: root inside the user namespace with the
/// capabilities a package manager needs, no host integration at all. Its id maps are the
/// single one here; the build sets those of the user's case (`trees::Ownership`).
pub fn build_step_spec(
    store_root: &Path,
    lowers: Vec<PathBuf>,
    upper: &Path,
    work: &Path,
    argv: Vec<String>,
    extra_env: &[(String, String)],
    network: Network,
) -> RunSpec {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), host_env::DEFAULT_PATH.into()),
        ("HOME".into(), "/root".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("KARAPACE_ENV".into(), "1".into()),
    ];
    env.extend(extra_env.iter().cloned());
    RunSpec {
        store_root: store_root.to_path_buf(),
        lowers,
        upper: Upper::Store {
            upper: upper.to_path_buf(),
            work: work.to_path_buf(),
        },
        argv,
        env,
        cwd: PathBuf::from("/"),
        hostname: "karapace-build".into(),
        binds: Vec::new(),
        devices: Vec::new(),
        network,
        limits: Limits::default(),
        identity: Identity::Root,
        id_map: IdMapMode::Single,
        capabilities: Capabilities::PackageManager,
        tty: None,
        allowed_mount_prefixes: Vec::new(),
        join: Vec::new(),
        // Set by the caller from the user's opt-out.
        allow_without_landlock: false,
        oci: None,
    }
}

/// `path`, a path of `store` (spelt beneath its root as given, perhaps through a symbolic link
/// of the user's), spelt beneath `canonical` (its resolved root, [`canonical_root`]): the
/// helper accepts only symlink-free paths beneath the root a request names.
pub fn in_root(store: &Store, canonical: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(store.root())
        .map_or_else(|_| path.to_path_buf(), |rel| canonical.join(rel))
}

/// The store root with symlinks resolved: the helper compares paths beneath it component-wise.
pub fn canonical_root(store: &Store) -> Result<PathBuf> {
    store
        .root()
        .canonicalize()
        .map_err(|e| CoreError::io(format!("cannot resolve {}", store.root().display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use karapace_helper_client::{OciFlavour, OciRuntime};

    fn a_spec() -> RunSpec {
        build_step_spec(
            Path::new("/s"),
            vec![PathBuf::from("/s/l")],
            Path::new("/s/u"),
            Path::new("/s/w"),
            vec!["true".into()],
            &[],
            Network::Isolated,
        )
    }

    #[test]
    fn plain_and_root_sessions_name_their_id_maps_apart_unless_both_are_full() {
        let mut spec = a_spec();
        let name = |spec: &RunSpec| id_maps_name(spec);
        spec.identity = Identity::Caller;
        spec.id_map = IdMapMode::Single;
        assert_eq!(name(&spec), PLAIN_SESSION_MAPS);
        spec.identity = Identity::Root;
        assert_eq!(name(&spec), ROOT_SESSION_MAPS);
        spec.id_map = IdMapMode::Collapsed;
        assert_eq!(
            name(&spec),
            ROOT_SESSION_MAPS,
            "collapsed maps one id, as single"
        );
        spec.id_map = IdMapMode::Full;
        let full_root = name(&spec);
        spec.identity = Identity::Caller;
        assert_eq!(name(&spec), full_root, "root on the host: one kind of map");
    }

    #[test]
    fn oci_sessions_map_the_caller_to_root_whatever_their_identity() {
        let mut spec = a_spec();
        spec.oci = Some(OciRuntime {
            path: PathBuf::from("/usr/bin/crun"),
            flavour: OciFlavour::Crun,
        });
        spec.id_map = IdMapMode::Single;
        spec.identity = Identity::Caller;
        let plain = id_maps_name(&spec);
        spec.identity = Identity::Root;
        assert_eq!(id_maps_name(&spec), plain);
        assert_ne!(plain, PLAIN_SESSION_MAPS);
        spec.id_map = IdMapMode::Full;
        assert_ne!(
            id_maps_name(&spec),
            plain,
            "a subordinate range maps more ids"
        );
    }
}
