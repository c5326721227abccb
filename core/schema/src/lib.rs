//! Manifest v1, lock v2 and the `env_id` identity contract.
//!
//! - [`parse_manifest`] / [`load_manifest`]: strict TOML with line:column errors.
//! - [`Manifest::normalize`] → [`NormalizedManifest`]: the canonical form, its
//!   [`canonical_json`](NormalizedManifest::canonical_json) and
//!   [`manifest_hash`](NormalizedManifest::manifest_hash).
//! - [`LockFile`]: read/write (atomic), integrity and intent checks.
//! - [`compute_env_id`]: the identity contract shared with the standard tool.
//! - [`validate_package_name`], [`validate_env_name`]: name grammars.
//! - [`templates`]: manifests for `karapace new --template`.
//!
//! Errors: every [`ManifestError`] is exit code 2, every [`LockError`] exit 1.

mod canonical;
mod error;
mod identity;
mod lock;
mod manifest;
mod names;
mod normalize;
pub mod templates;

pub use error::{Location, LockError, ManifestError, ManifestErrorKind, NameError, UnknownPackage};
pub use identity::{EnvId, IdentityInputs, SHORT_ID_LEN, compute_env_id};
pub use lock::{LOCK_FILE_NAME, LOCK_VERSION, LockFile, ResolvedPackage};
pub use manifest::{
    BaseSection, GuiSection, HardwareSection, MAX_MANIFEST_BYTES, Manifest, ResourceLimits,
    RuntimeSection, SystemSection, load_manifest, parse_manifest, rewrite_base_image,
};
pub use names::{
    MAX_ENV_NAME_LEN, MAX_PACKAGE_NAME_LEN, is_invisible_format, similar, validate_env_name,
    validate_package_name, validate_portable_package_name,
};
pub use normalize::{Backend, MountSpec, NormalizedManifest};

/// Default manifest file name.
pub const MANIFEST_FILE_NAME: &str = "karapace.toml";
