//! Karapace: deterministic, security-first environment engine (core library and CLI).
