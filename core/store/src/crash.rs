//! Test-only fault injection: `KARAPACE_CRASH_AT=<point>` aborts the process at that point.
//!
//! Always compiled in so the crash tests exercise the real binary code paths; inert (one
//! cached environment lookup) when the variable is unset.

use std::sync::OnceLock;

static CRASH_AT: OnceLock<Option<String>> = OnceLock::new();

/// Abort the process right here if `KARAPACE_CRASH_AT` names this point.
pub fn crash_point(name: &str) {
    let target = CRASH_AT.get_or_init(|| std::env::var("KARAPACE_CRASH_AT").ok());
    if target.as_deref() == Some(name) {
        std::process::abort();
    }
}

/// Every crash point the store defines, for tests and documentation.
pub const CRASH_POINTS: &[&str] = &[
    "object.before_rename",
    "object.after_rename",
    "wal.after_journal",
    "wal.before_clear",
    "create_env.after_env_dir",
    "create_env.after_metadata",
    "destroy.after_metadata",
    "destroy.mid_remove",
    "handover.after_old",
    "set_metadata.after_write",
    "import.after_object",
    "import.after_tree",
    "import.after_manifest",
    "commit.after_object",
    "commit.after_manifest",
    "restore.mid_unpack",
    "restore.after_unpack",
    "restore.after_move_old",
    "restore.after_swap",
    "trash.after_move",
    "trash.mid_empty",
    "gc.mid_delete",
    "gc.after_delete",
    "tree.after_unpack",
    "recovery.mid",
];
