//! Whose ids a tree's files carry.

use karapace_protocol::{MAX_INSIDE_ID, OVERFLOW_ID};
use std::fs;
use std::os::unix::fs::MetadataExt;

/// Whose ids a tree's files carry, and so what a layer records about owners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Owners {
    /// Every file belongs to the store's owner, who is root inside the environment: layers
    /// record 0:0 and unpacking sets no owner (a store owner without a subordinate id range).
    #[default]
    Collapse,
    /// Files carry the owners they have inside the environment, because this process runs
    /// where exactly those ids are mapped (root on the host, whose environments map every
    /// id to itself, or the helper's tree worker in the environment's user namespace):
    /// layers record them and unpacking restores them. Owners above [`MAX_INSIDE_ID`]
    /// become [`OVERFLOW_ID`] (`nobody`), on every machine alike.
    Keep,
}

pub(crate) fn inside_id(id: u64) -> u32 {
    u32::try_from(id)
        .ok()
        .filter(|id| *id <= MAX_INSIDE_ID)
        .unwrap_or(OVERFLOW_ID)
}

impl Owners {
    /// What a tar records for a file with these host-visible ids.
    pub(crate) fn recorded(self, meta: &fs::Metadata) -> (u32, u32) {
        match self {
            Owners::Collapse => (0, 0),
            Owners::Keep => (
                inside_id(u64::from(meta.uid())),
                inside_id(u64::from(meta.gid())),
            ),
        }
    }
}
