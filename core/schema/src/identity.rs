//! The `env_id` contract (formats.md): blake3 over the concatenation, without
//! separators, of tagged strings built from the *locked* inputs, in a fixed
//! order. Same lock inputs → same `env_id`, here and in the standard tool.

use crate::lock::ResolvedPackage;
use crate::normalize::{Backend, MountSpec};

pub use karapace_ids::{EnvId, SHORT_ID_LEN};

/// Everything the `env_id` depends on, borrowed in the order it is hashed.
/// Lists are hashed in the order given: callers pass lock order (packages
/// sorted by name then version, apps and mounts in normalized order).
#[derive(Debug, Clone, Copy)]
pub struct IdentityInputs<'a> {
    pub base_image_digest: &'a str,
    pub packages: &'a [ResolvedPackage],
    pub apps: &'a [String],
    pub hardware_gpu: bool,
    pub hardware_audio: bool,
    pub mounts: &'a [MountSpec],
    pub backend: Backend,
    pub network_isolation: bool,
    pub cpu_shares: Option<u64>,
    pub memory_limit_mb: Option<u64>,
}

/// Computes the `env_id` of the given locked inputs.
pub fn compute_env_id(inputs: &IdentityInputs<'_>) -> EnvId {
    let mut h = blake3::Hasher::new();
    let mut put = |parts: &[&str]| {
        for p in parts {
            h.update(p.as_bytes());
        }
    };
    put(&["base_digest:", inputs.base_image_digest]);
    for p in inputs.packages {
        put(&["pkg:", &p.name, "@", &p.version]);
    }
    for a in inputs.apps {
        put(&["app:", a]);
    }
    if inputs.hardware_gpu {
        put(&["hw:gpu"]);
    }
    if inputs.hardware_audio {
        put(&["hw:audio"]);
    }
    for m in inputs.mounts {
        put(&[
            "mount:",
            &m.label,
            ":",
            &m.host_path,
            ":",
            &m.container_path,
        ]);
    }
    put(&["backend:", inputs.backend.as_str()]);
    if inputs.network_isolation {
        put(&["net:isolated"]);
    }
    if let Some(cpu) = inputs.cpu_shares {
        put(&["cpu:", &cpu.to_string()]);
    }
    if let Some(mem) = inputs.memory_limit_mb {
        put(&["mem:", &mem.to_string()]);
    }
    EnvId::from_digest(h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> ResolvedPackage {
        ResolvedPackage {
            name: name.to_owned(),
            version: version.to_owned(),
        }
    }

    fn mount(label: &str, host: &str, container: &str) -> MountSpec {
        MountSpec {
            label: label.to_owned(),
            host_path: host.to_owned(),
            container_path: container.to_owned(),
        }
    }

    fn base(backend: Backend) -> IdentityInputs<'static> {
        IdentityInputs {
            base_image_digest: "sha256:abc123",
            packages: &[],
            apps: &[],
            hardware_gpu: false,
            hardware_audio: false,
            mounts: &[],
            backend,
            network_isolation: false,
            cpu_shares: None,
            memory_limit_mb: None,
        }
    }

    fn id(i: &IdentityInputs<'_>) -> String {
        compute_env_id(i).into_string()
    }

    #[test]
    fn golden_1_no_packages_mock() {
        assert_eq!(
            id(&base(Backend::Mock)),
            "aabaeaeda3b27db42054f64719a16afd49e72b4fc6e8493e2fce9d862d240806"
        );
    }

    #[test]
    fn golden_2_curl_git_namespace() {
        let pkgs = [pkg("curl", "7.88.1"), pkg("git", "2.39.2")];
        let i = IdentityInputs {
            packages: &pkgs,
            ..base(Backend::Namespace)
        };
        assert_eq!(
            id(&i),
            "dfea3163e5925ee788a97fae24d9ec08f774c29c64c9180befe771d877e62f18"
        );
    }

    #[test]
    fn golden_3_vim_mount_gpu_audio() {
        let pkgs = [pkg("vim", "9.0.1")];
        let mounts = [mount("home", "/home/user", "/home")];
        let i = IdentityInputs {
            packages: &pkgs,
            mounts: &mounts,
            hardware_gpu: true,
            hardware_audio: true,
            ..base(Backend::Namespace)
        };
        assert_eq!(
            id(&i),
            "d6ca89829da264240d0508bd58bffc28c2014f643426bbecff3db5a525793546"
        );
    }

    #[test]
    fn golden_4_network_isolation() {
        let i = IdentityInputs {
            network_isolation: true,
            ..base(Backend::Mock)
        };
        assert_eq!(
            id(&i),
            "dcdae57b3749d0aa2d3948de9fde99ceedad34deaef9b618c2d9f939dac25596"
        );
    }

    #[test]
    fn golden_5_cpu() {
        let i = IdentityInputs {
            cpu_shares: Some(1024),
            ..base(Backend::Mock)
        };
        assert_eq!(
            id(&i),
            "d966f9ee1c5e8959ae29d0483c45fc66813ec47201aa9f26c6371336b3dfd252"
        );
    }

    #[test]
    fn golden_6_mem() {
        let i = IdentityInputs {
            memory_limit_mb: Some(4096),
            ..base(Backend::Mock)
        };
        assert_eq!(
            id(&i),
            "74823889e305b7b28394508b5813568faf9c814b4ef8f1f97e8d3dcd9a7a6bae"
        );
    }

    #[test]
    fn golden_7_apps_in_given_order() {
        let apps = ["firefox".to_owned(), "code".to_owned()];
        let i = IdentityInputs {
            apps: &apps,
            ..base(Backend::Mock)
        };
        assert_eq!(
            id(&i),
            "1aaf066c7b1e18178e838b0cf33c0bc67cd7401e586df826daa9033178ccfdf3"
        );
        // Order matters: the hash is over lock order, not re-sorted.
        let swapped = ["code".to_owned(), "firefox".to_owned()];
        let j = IdentityInputs {
            apps: &swapped,
            ..i
        };
        assert_ne!(id(&j), id(&i));
    }

    #[test]
    fn golden_8_everything() {
        let pkgs = [pkg("curl", "7.88.1")];
        let mounts = [mount("data", "/mnt/data", "/data")];
        let apps = ["vlc".to_owned()];
        let i = IdentityInputs {
            base_image_digest: "sha256:abc123",
            packages: &pkgs,
            apps: &apps,
            hardware_gpu: true,
            hardware_audio: true,
            mounts: &mounts,
            backend: Backend::Namespace,
            network_isolation: true,
            cpu_shares: Some(2048),
            memory_limit_mb: Some(8192),
        };
        assert_eq!(
            id(&i),
            "44f9547036b4f24f8fe32844f2672804020c6260e29b7f72e17fd29d441ebc27"
        );
    }

    #[test]
    fn golden_9_gpu_only() {
        let i = IdentityInputs {
            hardware_gpu: true,
            ..base(Backend::Mock)
        };
        assert_eq!(
            id(&i),
            "f761765ba48777bcc64c2cd5169cb44be27bcd2d6587c64c28bc98fa0964b266"
        );
    }

    #[test]
    fn golden_10_audio_only() {
        let i = IdentityInputs {
            hardware_audio: true,
            ..base(Backend::Mock)
        };
        assert_eq!(
            id(&i),
            "428d91b41a03c1625e01bab1278ef231fb186833bff80a6bdc8227a2276f4318"
        );
    }

    #[test]
    fn short_id_is_first_twelve_and_parse_is_strict() {
        let e = compute_env_id(&base(Backend::Mock));
        assert_eq!(e.short_id(), "aabaeaeda3b2");
        assert_eq!(EnvId::parse(e.as_str()), Some(e.clone()));
        assert_eq!(EnvId::parse(&e.as_str().to_uppercase()), None);
        assert_eq!(EnvId::parse(&e.as_str()[..63]), None);
        assert_eq!(EnvId::parse("g".repeat(64).as_str()), None);
        assert_eq!(e.to_string(), e.as_str());
    }
}
