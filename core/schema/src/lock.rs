//! Lock v2 (`karapace.lock`): what a build actually resolved.
//!
//! The text is written by hand so the key order is exactly the one of
//! formats.md (plain keys first, then the arrays of tables), independent of
//! any serializer's choices. Reading is strict: unknown keys are errors, as a
//! lock is machine-written and `lock_version` governs its shape.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EnvId;
use crate::error::{Location, LockError};
use crate::identity::{IdentityInputs, compute_env_id};
use crate::manifest::{toml_string, toml_string_array};
use crate::normalize::{Backend, MountSpec, NormalizedManifest};

/// The lock format version this crate reads and writes.
pub const LOCK_VERSION: u32 = 2;
/// File name of the lock, written beside the manifest.
pub const LOCK_FILE_NAME: &str = "karapace.lock";

/// A package as installed: the name that was asked for and the exact
/// version the package manager reported. Ordered by name, then version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvedPackage {
    pub name: String,
    pub version: String,
}

/// The contents of a lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockFile {
    pub lock_version: u32,
    pub env_id: EnvId,
    pub short_id: String,
    pub base_image: String,
    pub base_image_digest: String,
    pub resolved_packages: Vec<ResolvedPackage>,
    pub resolved_apps: Vec<String>,
    pub runtime_backend: Backend,
    pub hardware_gpu: bool,
    pub hardware_audio: bool,
    pub network_isolation: bool,
    pub mounts: Vec<MountSpec>,
    pub cpu_shares: Option<u64>,
    pub memory_limit_mb: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    // Checked separately before this struct is read; kept so the key is known.
    #[allow(dead_code)]
    lock_version: i64,
    env_id: EnvId,
    short_id: String,
    base_image: String,
    base_image_digest: String,
    #[serde(default)]
    resolved_packages: Vec<ResolvedPackage>,
    #[serde(default)]
    resolved_apps: Vec<String>,
    runtime_backend: Backend,
    hardware_gpu: bool,
    hardware_audio: bool,
    network_isolation: bool,
    #[serde(default)]
    mounts: Vec<MountSpec>,
    #[serde(default)]
    cpu_shares: Option<u64>,
    #[serde(default)]
    memory_limit_mb: Option<u64>,
}

impl LockFile {
    /// Builds the lock of a fresh build: packages sorted by name then version
    /// (exact duplicates dropped), apps and mounts in normalized order, and
    /// the `env_id` computed from exactly these fields.
    pub fn from_resolved(
        m: &NormalizedManifest,
        base_image_digest: &str,
        mut packages: Vec<ResolvedPackage>,
    ) -> LockFile {
        packages.sort();
        packages.dedup();
        let mut lock = LockFile {
            lock_version: LOCK_VERSION,
            // Replaced below, once the fields it hashes are in place.
            env_id: EnvId::from_digest(&[0; 32]),
            short_id: String::new(),
            base_image: m.base_image.clone(),
            base_image_digest: base_image_digest.to_owned(),
            resolved_packages: packages,
            resolved_apps: m.gui_apps.clone(),
            runtime_backend: m.runtime_backend,
            hardware_gpu: m.hardware_gpu,
            hardware_audio: m.hardware_audio,
            network_isolation: m.network_isolation,
            mounts: m.mounts.clone(),
            cpu_shares: m.cpu_shares,
            memory_limit_mb: m.memory_limit_mb,
        };
        let id = lock.compute_env_id();
        id.short_id().clone_into(&mut lock.short_id);
        lock.env_id = id;
        lock
    }

    /// The `env_id` this lock's own fields hash to (in lock order).
    pub fn compute_env_id(&self) -> EnvId {
        compute_env_id(&IdentityInputs {
            base_image_digest: &self.base_image_digest,
            packages: &self.resolved_packages,
            apps: &self.resolved_apps,
            hardware_gpu: self.hardware_gpu,
            hardware_audio: self.hardware_audio,
            mounts: &self.mounts,
            backend: self.runtime_backend,
            network_isolation: self.network_isolation,
            cpu_shares: self.cpu_shares,
            memory_limit_mb: self.memory_limit_mb,
        })
    }

    /// Parses lock text (no path known; see [`LockFile::read`]).
    pub fn parse(text: &str) -> Result<LockFile, LockError> {
        let parse_err = |e: &toml::de::Error| LockError::Parse {
            path: None,
            location: e.span().map(|s| Location::from_offset(text, s.start)),
            message: e.message().trim_end().to_owned(),
        };
        // Look at the version first: a lock of another version may have other
        // keys, and "unsupported version" is the useful message then.
        let table: toml::Table = toml::from_str(text).map_err(|e| parse_err(&e))?;
        match table.get("lock_version") {
            Some(toml::Value::Integer(v)) if *v == i64::from(LOCK_VERSION) => {}
            Some(toml::Value::Integer(v)) => {
                return Err(LockError::UnsupportedVersion { found: *v });
            }
            // Missing or mistyped: let the typed parse below report it with a position.
            _ => {}
        }
        let raw: RawLock = toml::from_str(text).map_err(|e| parse_err(&e))?;
        Ok(LockFile {
            lock_version: LOCK_VERSION,
            env_id: raw.env_id,
            short_id: raw.short_id,
            base_image: raw.base_image,
            base_image_digest: raw.base_image_digest,
            resolved_packages: raw.resolved_packages,
            resolved_apps: raw.resolved_apps,
            runtime_backend: raw.runtime_backend,
            hardware_gpu: raw.hardware_gpu,
            hardware_audio: raw.hardware_audio,
            network_isolation: raw.network_isolation,
            mounts: raw.mounts,
            cpu_shares: raw.cpu_shares,
            memory_limit_mb: raw.memory_limit_mb,
        })
    }

    /// Reads a lock file. A missing file is [`LockError::Missing`].
    pub fn read(path: &Path) -> Result<LockFile, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                LockError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                LockError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        LockFile::parse(&text).map_err(|e| match e {
            LockError::Parse {
                location, message, ..
            } => LockError::Parse {
                path: Some(path.to_path_buf()),
                location,
                message,
            },
            other => other,
        })
    }

    /// The lock as TOML, keys in the order of formats.md.
    pub fn to_toml_string(&self) -> String {
        let mut out = String::with_capacity(512);
        let mut kv = |k: &str, v: &str| {
            let _ = writeln!(out, "{k} = {v}");
        };
        kv("lock_version", &self.lock_version.to_string());
        kv("env_id", &toml_string(self.env_id.as_str()));
        kv("short_id", &toml_string(&self.short_id));
        kv("base_image", &toml_string(&self.base_image));
        kv("base_image_digest", &toml_string(&self.base_image_digest));
        // An empty array of tables has no `[[...]]` header to write, so it is
        // written as an empty inline array in its place (readers that require
        // the key still find it).
        if self.resolved_packages.is_empty() {
            kv("resolved_packages", "[]");
        }
        kv("resolved_apps", &toml_string_array(&self.resolved_apps));
        kv(
            "runtime_backend",
            &toml_string(self.runtime_backend.as_str()),
        );
        kv("hardware_gpu", &self.hardware_gpu.to_string());
        kv("hardware_audio", &self.hardware_audio.to_string());
        kv("network_isolation", &self.network_isolation.to_string());
        if self.mounts.is_empty() {
            kv("mounts", "[]");
        }
        if let Some(c) = self.cpu_shares {
            kv("cpu_shares", &c.to_string());
        }
        if let Some(m) = self.memory_limit_mb {
            kv("memory_limit_mb", &m.to_string());
        }
        for p in &self.resolved_packages {
            let _ = write!(
                out,
                "\n[[resolved_packages]]\nname = {}\nversion = {}\n",
                toml_string(&p.name),
                toml_string(&p.version)
            );
        }
        for m in &self.mounts {
            let _ = write!(
                out,
                "\n[[mounts]]\nlabel = {}\nhost_path = {}\ncontainer_path = {}\n",
                toml_string(&m.label),
                toml_string(&m.host_path),
                toml_string(&m.container_path)
            );
        }
        out
    }

    /// Writes the lock so that readers see either the old or the new file, never a torn one
    /// (`karapace_atomic_file`). A lock is a project file meant to be shared and committed: it
    /// keeps the old file's mode, or gets 0644.
    pub fn write_atomic(&self, path: &Path) -> Result<(), LockError> {
        karapace_atomic_file::write(
            path,
            self.to_toml_string().as_bytes(),
            karapace_atomic_file::Mode::KeepOr(0o644),
        )
        .map_err(|source| LockError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The stored `env_id` (and `short_id`) must be what the lock's fields hash to.
    pub fn verify_integrity(&self) -> Result<(), LockError> {
        let computed = self.compute_env_id();
        if self.env_id != computed {
            return Err(LockError::IntegrityMismatch {
                expected: computed.into_string(),
                actual: self.env_id.to_string(),
            });
        }
        if self.short_id != computed.short_id() {
            return Err(LockError::IntegrityMismatch {
                expected: computed.short_id().to_owned(),
                actual: self.short_id.clone(),
            });
        }
        Ok(())
    }

    /// The lock must still describe what the manifest asks for. Checks every
    /// input of the `env_id` that comes from the manifest; packages only in one
    /// direction (each manifest package must have a locked version), because
    /// a resolver may legitimately lock more than was asked for.
    pub fn verify_intent(&self, m: &NormalizedManifest) -> Result<(), LockError> {
        fn differ(what: &str, lock: String, manifest: String) -> Result<(), LockError> {
            Err(LockError::IntentMismatch {
                what: what.to_owned(),
                lock,
                manifest,
            })
        }
        if self.base_image != m.base_image {
            return differ(
                "base image",
                format!("{:?}", self.base_image),
                format!("{:?}", m.base_image),
            );
        }
        if self.runtime_backend != m.runtime_backend {
            return differ(
                "runtime backend",
                self.runtime_backend.to_string(),
                m.runtime_backend.to_string(),
            );
        }
        for (what, lock, manifest) in [
            ("hardware.gpu", self.hardware_gpu, m.hardware_gpu),
            ("hardware.audio", self.hardware_audio, m.hardware_audio),
            (
                "runtime.network_isolation",
                self.network_isolation,
                m.network_isolation,
            ),
        ] {
            if lock != manifest {
                return differ(what, lock.to_string(), manifest.to_string());
            }
        }
        if let Some(missing) = m
            .system_packages
            .iter()
            .find(|p| !self.resolved_packages.iter().any(|r| &r.name == *p))
        {
            return differ(
                "system packages",
                format!("no {missing:?}"),
                format!("{missing:?}"),
            );
        }
        if self.resolved_apps != m.gui_apps {
            return differ(
                "gui apps",
                format!("{:?}", self.resolved_apps),
                format!("{:?}", m.gui_apps),
            );
        }
        if self.mounts != m.mounts {
            return differ("mounts", fmt_mounts(&self.mounts), fmt_mounts(&m.mounts));
        }
        for (what, lock, manifest) in [
            (
                "runtime.resource_limits.cpu_shares",
                self.cpu_shares,
                m.cpu_shares,
            ),
            (
                "runtime.resource_limits.memory_limit_mb",
                self.memory_limit_mb,
                m.memory_limit_mb,
            ),
        ] {
            if lock != manifest {
                return differ(what, fmt_opt(lock), fmt_opt(manifest));
            }
        }
        Ok(())
    }
}

fn fmt_mounts(mounts: &[MountSpec]) -> String {
    let parts: Vec<String> = mounts
        .iter()
        .map(|m| format!("{}={}:{}", m.label, m.host_path, m.container_path))
        .collect();
    format!("[{}]", parts.join(", "))
}

fn fmt_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "none".to_owned(), |n| n.to_string())
}
