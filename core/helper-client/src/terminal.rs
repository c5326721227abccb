//! The caller's terminal size, for `RunSpec::tty`.

pub use crate::pty::caller_size;
