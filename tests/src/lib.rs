//! End-to-end and cross-crate tests for Karapace.
