//! The content-addressed, crash-safe Karapace store.
