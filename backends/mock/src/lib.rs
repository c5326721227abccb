//! Mock runtime backend for tests: deterministic, no isolation.
