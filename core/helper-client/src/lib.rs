//! Core-side client that spawns karapace-helper and speaks its protocol.
