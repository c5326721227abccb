//! The content-addressed, crash-safe Karapace store.
//!
//! See `docs/storage-format.md` for the on-disk format, the WAL protocol and the rules of
//! gc and verify.
#![deny(unsafe_code)]

pub mod beneath;
pub mod crash;
mod diff;
mod digests;
mod envs;
pub mod error;
pub mod fsutil;
mod gc;
mod handover;
mod layers;
mod lease;
mod logs;
mod meta;
pub mod migrate;
mod objects;
pub mod owners;
mod read_ahead;
mod sessions;
mod snapshots;
mod store;
pub mod tar;
mod transfer;
mod trash;
pub mod usage;
mod verify;
mod wal;
mod write_behind;

pub use diff::{
    Diff, DiffBudget, MAX_DIFF_ENTRIES, MAX_DIFF_NAME_BYTES, diff_trees, too_large_diff,
};
pub use error::{CorruptEntry, StoreError};
pub use gc::GcReport;
pub use handover::Handover;
pub use karapace_ids::{EnvId, LayerHash};
pub use layers::{ImportOptions, LayerKind, LayerManifest, layer_hash, snapshot_hash};
pub use lease::BuildLease;
pub use meta::{
    EnvMetadata, EnvState, decode_metadata, encode_metadata, now_rfc3339, open_document,
    seal_document, validate_name,
};
pub use objects::{ObjectHash, ObjectReader, ObjectWriter, is_valid_key, verify_object};
pub use owners::{InProcess, TreeWorker};
pub use sessions::{
    ENDING_PROCESS_NAME, SessionGuard, SessionInfo, SetupGuard, process_start_time,
};
pub use snapshots::{MAX_LABEL_LEN, SnapshotInfo, check_label};
pub use store::{STORE_FORMAT_VERSION, SharedTreeWorker, StagingDir, Store, StoreLock};
pub use tar::Owners;
pub use transfer::EnvContent;
pub use verify::{VerifyFailure, VerifyReport};
