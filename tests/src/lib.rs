//! End-to-end and cross-crate tests for Karapace: test support.
//!
//! The tests drive the real `karapace` binary (and, through it, `karapace-helper`) as a user
//! would, each against a private store, image cache and project directory:
//!
//! ```no_run
//! use karapace_tests::{Karapace, TestDir};
//! let dir = TestDir::new("example");
//! let k = Karapace::new(&dir).image_server("file:///var/cache/karapace-test/mirror");
//! let v = k.json(&["list"]);
//! assert!(v.as_array().is_some_and(Vec::is_empty));
//! ```

pub mod bins;
pub mod hardened;
pub mod lock;
pub mod mirror;
pub mod process;
pub mod remote;
pub mod runner;
pub mod soft;
pub mod terminal;
pub mod testdir;
pub mod userdir;

pub use bins::{helper_bin, karapace_bin, server_bin};
pub use lock::LockInfo;
pub use mirror::Mirror;
pub use process::Outcome;
pub use runner::Karapace;
pub use soft::SoftChecks;
pub use testdir::TestDir;
pub use userdir::{UserDir, switching_users, user_exists};
