//! The three kinds of blob a protocol v1 remote holds, and their names on the wire.

use std::fmt;

/// A kind of blob: its key rule and its verification differ (see `docs/remote.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlobKind {
    /// Content-addressed bytes (layer tars, lock and manifest files): key = blake3 of the bytes.
    Object,
    /// A layer manifest (JSON).
    Layer,
    /// Environment metadata (JSON with an embedded checksum), keyed by `env_id`.
    Metadata,
}

impl BlobKind {
    /// Every kind, in push order (objects before the layers and metadata naming them).
    pub const ALL: [BlobKind; 3] = [BlobKind::Object, BlobKind::Layer, BlobKind::Metadata];

    /// The first path segment of the client routes (`/objects/<key>`), also the server's
    /// directory name for the kind.
    pub fn route_name(self) -> &'static str {
        match self {
            BlobKind::Object => "objects",
            BlobKind::Layer => "layers",
            BlobKind::Metadata => "metadata",
        }
    }

    /// The kind's name in the canonical routes (`/blobs/Object/<key>`).
    pub fn canonical_name(self) -> &'static str {
        match self {
            BlobKind::Object => "Object",
            BlobKind::Layer => "Layer",
            BlobKind::Metadata => "Metadata",
        }
    }

    /// The kind whose [`BlobKind::route_name`] is `s`.
    pub fn from_route_name(s: &str) -> Option<BlobKind> {
        BlobKind::ALL.into_iter().find(|k| k.route_name() == s)
    }

    /// The kind whose [`BlobKind::canonical_name`] is `s`.
    pub fn from_canonical_name(s: &str) -> Option<BlobKind> {
        BlobKind::ALL.into_iter().find(|k| k.canonical_name() == s)
    }
}

impl fmt::Display for BlobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlobKind::Object => "object",
            BlobKind::Layer => "layer",
            BlobKind::Metadata => "metadata",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_matches() {
        for k in BlobKind::ALL {
            assert_eq!(BlobKind::from_route_name(k.route_name()), Some(k));
            assert_eq!(BlobKind::from_canonical_name(k.canonical_name()), Some(k));
        }
        assert_eq!(BlobKind::from_route_name("Objects"), None);
        assert_eq!(BlobKind::from_canonical_name("object"), None);
        assert_eq!(BlobKind::from_route_name(""), None);
    }
}
