//! Store format detection and migration.
//!
//! Detection reads `<root>/store/version` (`{"format_version": N}`). That marker, at that
//! path, is what the standard `karapace` tool writes (its format 2 layout is
//! `store/{objects,layers,metadata,staging}` + `env/<id>/{upper,overlay}`); format 3 keeps the
//! same marker so the standard tool refuses a format 3 store as "newer" instead of
//! misreading it. A format 2 store's environments use different hash rules and metadata, so
//! migrating means: move the whole old store into a backup directory, initialise an empty
//! format 3 store, and tell the user to rebuild from their manifests (`karapace build`).

use crate::error::{Result, StoreError, io_at};
use crate::fsutil::fsync_dir;
use crate::store::{Layout, STORE_FORMAT_VERSION, Store, read_format_version};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum MigrateStatus {
    /// Already format 3.
    Current { format_version: u32 },
    /// An older format that `migrate` can handle (with a backup); `message` says what it does.
    NeedsMigration {
        format_version: u32,
        message: String,
    },
    /// Written by a newer Karapace.
    Newer {
        format_version: u32,
        message: String,
    },
    /// Nothing at this root.
    NoStore,
    /// Unreadable or unknown.
    Error { message: String },
}

impl MigrateStatus {
    /// The `status` word for the CLI's JSON (`current|newer|no_store|error`, and
    /// `needs_migration` for a check without migrating).
    pub fn as_str(&self) -> &'static str {
        match self {
            MigrateStatus::Current { .. } => "current",
            MigrateStatus::NeedsMigration { .. } => "needs_migration",
            MigrateStatus::Newer { .. } => "newer",
            MigrateStatus::NoStore => "no_store",
            MigrateStatus::Error { .. } => "error",
        }
    }
}

/// Result of [`migrate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateReport {
    /// `migrated`, `current`, `newer`, `no_store` or `error`.
    pub status: String,
    pub from_version: Option<u32>,
    pub to_version: u32,
    pub backup_path: Option<PathBuf>,
    pub message: String,
}

const FORMAT2_ADVICE: &str = "this store was written by the standard karapace tool (format 2); \
    its environments cannot be converted (different hash and metadata rules). `karapace migrate` \
    moves it into a backup directory and creates an empty format 3 store; then rebuild each \
    environment from its karapace.toml with `karapace build`";

/// Inspect a store root without modifying anything.
pub fn check(root: &Path) -> MigrateStatus {
    let layout = Layout::new(root);
    match read_format_version(&layout) {
        Ok(Some(STORE_FORMAT_VERSION)) => MigrateStatus::Current {
            format_version: STORE_FORMAT_VERSION,
        },
        Ok(Some(2)) => MigrateStatus::NeedsMigration {
            format_version: 2,
            message: FORMAT2_ADVICE.to_string(),
        },
        Ok(Some(v)) if v > STORE_FORMAT_VERSION => MigrateStatus::Newer {
            format_version: v,
            message: format!(
                "store format {v} is newer than this karapace ({STORE_FORMAT_VERSION}); upgrade karapace"
            ),
        },
        Ok(Some(v)) => MigrateStatus::Error {
            message: format!("unknown store format {v}"),
        },
        Ok(None) if layout.store.exists() => MigrateStatus::Error {
            message: format!("{} exists but has no version file", layout.store.display()),
        },
        Ok(None) => MigrateStatus::NoStore,
        Err(e) => MigrateStatus::Error {
            message: e.to_string(),
        },
    }
}

/// Migrate the store at `root` (backup under `<root>/backup-format<N>-<unix time>`).
pub fn migrate(root: &Path) -> Result<MigrateReport> {
    let report =
        |status: &str, from: Option<u32>, backup: Option<PathBuf>, message: String| MigrateReport {
            status: status.to_string(),
            from_version: from,
            to_version: STORE_FORMAT_VERSION,
            backup_path: backup,
            message,
        };
    match check(root) {
        MigrateStatus::Current { .. } => Ok(report(
            "current",
            Some(STORE_FORMAT_VERSION),
            None,
            "store is current".into(),
        )),
        MigrateStatus::NoStore => Ok(report(
            "no_store",
            None,
            None,
            format!("no store at {}", root.display()),
        )),
        MigrateStatus::Newer {
            format_version,
            message,
        } => Ok(report("newer", Some(format_version), None, message)),
        MigrateStatus::Error { message } => Ok(report("error", None, None, message)),
        MigrateStatus::NeedsMigration { format_version, .. } => {
            let layout = Layout::new(root);
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let backup = root.join(format!("backup-format{format_version}-{secs}"));
            if backup.exists() {
                return Err(StoreError::Invalid(format!(
                    "backup directory {} already exists",
                    backup.display()
                )));
            }
            crate::fsutil::create_dir_private(&backup).map_err(io_at("create", &backup))?;
            // Move the version marker last-in/first-out: once `store/` is gone the root reads
            // as "no store", never as a half-migrated one.
            for name in ["store", "env"] {
                let src = root.join(name);
                if src.exists() {
                    fs::rename(&src, backup.join(name)).map_err(io_at("move to backup", &src))?;
                }
            }
            fsync_dir(&backup)?;
            fsync_dir(&layout.root)?;
            drop(Store::open_or_init(root)?);
            Ok(report(
                "migrated",
                Some(format_version),
                Some(backup.clone()),
                format!(
                    "moved the format {format_version} store to {}; created an empty format {STORE_FORMAT_VERSION} store. \
                     Rebuild your environments with `karapace build`.",
                    backup.display()
                ),
            ))
        }
    }
}
