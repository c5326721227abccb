//! Normalization: the one canonical form of a manifest that identity and
//! locks are computed from.
//!
//! Rules (formats.md): trim strings; drop empty packages/apps; sort (byte
//! order) and dedup packages and apps; sort mounts by label; lowercase the
//! backend. Validation happens on the trimmed values, so whitespace padding
//! never changes the outcome.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Location, ManifestError, ManifestErrorKind, NameError};
use crate::manifest::{
    BaseSection, GuiSection, HardwareSection, Manifest, ResourceLimits, RuntimeSection,
    SystemSection,
};
use crate::names::{validate_package_name, validate_portable_package_name};

/// The runtime backend an environment runs on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Namespace,
    Oci,
    Mock,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Namespace, Backend::Oci, Backend::Mock];

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Namespace => "namespace",
            Backend::Oci => "oci",
            Backend::Mock => "mock",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a backend the way the manifest does: trimmed, case-insensitive.
impl FromStr for Backend {
    type Err = ManifestErrorKind;

    fn from_str(s: &str) -> Result<Backend, ManifestErrorKind> {
        let v = s.trim().to_lowercase();
        Backend::ALL.into_iter().find(|b| b.as_str() == v).ok_or(
            ManifestErrorKind::InvalidBackend {
                value: s.to_owned(),
            },
        )
    }
}

/// One bind mount, trimmed. Paths are kept as written (`./x`, `~/x`); the
/// engine resolves them, so the lock and `env_id` stay portable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    pub label: String,
    pub host_path: String,
    pub container_path: String,
}

/// A validated manifest in canonical form. Its serde form is the canonical
/// JSON (field order included), so it can be stored and read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizedManifest {
    pub manifest_version: u32,
    pub base_image: String,
    pub system_packages: Vec<String>,
    pub gui_apps: Vec<String>,
    pub hardware_gpu: bool,
    pub hardware_audio: bool,
    pub mounts: Vec<MountSpec>,
    pub runtime_backend: Backend,
    pub network_isolation: bool,
    pub cpu_shares: Option<u64>,
    pub memory_limit_mb: Option<u64>,
}

impl Manifest {
    /// Validates the manifest and returns its canonical form.
    pub fn normalize(&self) -> Result<NormalizedManifest, ManifestError> {
        let pos = &self.positions;
        if self.manifest_version != 1 {
            return Err(ManifestError::at(
                pos.locate(pos.version),
                ManifestErrorKind::UnsupportedVersion {
                    found: self.manifest_version,
                },
            ));
        }

        let base_image = self.base.image.trim().to_owned();
        if base_image.is_empty() {
            return Err(ManifestError::at(
                pos.locate(pos.image),
                ManifestErrorKind::EmptyBaseImage,
            ));
        }

        let system_packages = normalize_names(
            &self.system.packages,
            validate_package_name,
            |i| pos.locate(pos.packages.get(i).copied()),
            |name, reason| ManifestErrorKind::InvalidPackage { name, reason },
        )?;
        let gui_apps = normalize_names(
            &self.gui.apps,
            validate_portable_package_name,
            |i| pos.locate(pos.apps.get(i).copied()),
            |name, reason| ManifestErrorKind::InvalidApp { name, reason },
        )?;

        let mut by_label: BTreeMap<String, MountSpec> = BTreeMap::new();
        for (raw_label, spec) in &self.mounts {
            let location = pos.locate(pos.mounts.get(raw_label).copied());
            let mount = parse_mount(raw_label, spec).map_err(|k| ManifestError::at(location, k))?;
            if by_label.contains_key(&mount.label) {
                return Err(ManifestError::at(
                    location,
                    ManifestErrorKind::DuplicateMountLabel { label: mount.label },
                ));
            }
            by_label.insert(mount.label.clone(), mount);
        }
        // BTreeMap iteration is byte order of the trimmed label.
        let mounts = by_label.into_values().collect();

        let runtime_backend = match &self.runtime.backend {
            None => Backend::default(),
            Some(b) => b
                .parse()
                .map_err(|k| ManifestError::at(pos.locate(pos.backend), k))?,
        };

        Ok(NormalizedManifest {
            manifest_version: 1,
            base_image,
            system_packages,
            gui_apps,
            hardware_gpu: self.hardware.gpu,
            hardware_audio: self.hardware.audio,
            mounts,
            runtime_backend,
            network_isolation: self.runtime.network_isolation,
            cpu_shares: self.runtime.resource_limits.cpu_shares,
            memory_limit_mb: self.runtime.resource_limits.memory_limit_mb,
        })
    }
}

impl NormalizedManifest {
    /// The manifest that normalizes to `self` (used to rewrite a manifest
    /// file and to check that normalization is idempotent).
    pub fn to_manifest(&self) -> Manifest {
        Manifest {
            manifest_version: i64::from(self.manifest_version),
            base: BaseSection {
                image: self.base_image.clone(),
            },
            system: SystemSection {
                packages: self.system_packages.clone(),
            },
            gui: GuiSection {
                apps: self.gui_apps.clone(),
            },
            hardware: HardwareSection {
                gpu: self.hardware_gpu,
                audio: self.hardware_audio,
            },
            mounts: self
                .mounts
                .iter()
                .map(|m| {
                    (
                        m.label.clone(),
                        format!("{}:{}", m.host_path, m.container_path),
                    )
                })
                .collect(),
            runtime: RuntimeSection {
                backend: Some(self.runtime_backend.as_str().to_owned()),
                network_isolation: self.network_isolation,
                resource_limits: ResourceLimits {
                    cpu_shares: self.cpu_shares,
                    memory_limit_mb: self.memory_limit_mb,
                },
            },
            positions: crate::manifest::Positions::default(),
        }
    }
}

/// Trim, drop empties, validate, sort by bytes, dedup.
fn normalize_names(
    raw: &[String],
    validate: fn(&str) -> Result<(), NameError>,
    locate: impl Fn(usize) -> Option<Location>,
    make_err: impl Fn(String, NameError) -> ManifestErrorKind,
) -> Result<Vec<String>, ManifestError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, item) in raw.iter().enumerate() {
        let name = item.trim();
        if name.is_empty() {
            continue;
        }
        if let Err(reason) = validate(name) {
            return Err(ManifestError::at(
                locate(i),
                make_err(name.to_owned(), reason),
            ));
        }
        out.push(name.to_owned());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn parse_mount(raw_label: &str, spec: &str) -> Result<MountSpec, ManifestErrorKind> {
    let label = raw_label.trim();
    if label.is_empty() {
        return Err(ManifestErrorKind::EmptyMountLabel);
    }
    // A ':' in a label would make `mount:<label>:<host>:<container>` in the
    // env_id ambiguous (two different mounts, one identity).
    if label.contains(':') {
        return Err(ManifestErrorKind::InvalidMountLabel {
            label: label.to_owned(),
            reason: "labels must not contain ':'",
        });
    }
    if label.chars().any(char::is_control) {
        return Err(ManifestErrorKind::InvalidMountLabel {
            label: label.to_owned(),
            reason: "labels must not contain control characters",
        });
    }
    let bad = |reason| ManifestErrorKind::InvalidMount {
        label: label.to_owned(),
        spec: spec.to_owned(),
        reason,
    };
    let (host, container) = spec
        .split_once(':')
        .ok_or_else(|| bad("no ':' separator"))?;
    let (host, container) = (host.trim(), container.trim());
    if host.is_empty() {
        return Err(bad("host path is empty"));
    }
    if container.is_empty() {
        return Err(bad("container path is empty"));
    }
    // NUL or newlines can never name a real path and would corrupt the lock.
    if host.chars().chain(container.chars()).any(char::is_control) {
        return Err(bad("paths must not contain control characters"));
    }
    Ok(MountSpec {
        label: label.to_owned(),
        host_path: host.to_owned(),
        container_path: container.to_owned(),
    })
}
