//! Soft assertions: record a failed check and carry on, so one run of a long end-to-end scenario
//! reports every deviation (e.g. unexpected drift) instead of only the first. Hard failures
//! (a command that must succeed for the next step to mean anything) stay plain asserts.

use std::cell::RefCell;
use std::panic::Location;

/// Collects failed checks; panics with all of them when finished or dropped.
#[derive(Debug, Default)]
pub struct SoftChecks {
    failures: RefCell<Vec<String>>,
}

impl SoftChecks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `msg()` (with the caller's location) unless `ok`.
    #[track_caller]
    pub fn check(&self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            let at = Location::caller();
            let text = format!("{}:{}: {}", at.file(), at.line(), msg());
            eprintln!("check failed (continuing): {text}");
            self.failures.borrow_mut().push(text);
        }
    }

    /// Records a failure unless `left == right`.
    #[track_caller]
    pub fn check_eq<T: PartialEq + std::fmt::Debug>(&self, left: &T, right: &T, what: &str) {
        self.check(left == right, || {
            format!("{what}\n    got:      {left:?}\n    expected: {right:?}")
        });
    }

    /// Panics listing every recorded failure, if any.
    pub fn finish(self) {
        let failures = self.failures.take();
        assert!(
            failures.is_empty(),
            "{} check(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

impl Drop for SoftChecks {
    fn drop(&mut self) {
        let failures = self.failures.take();
        // A test that is already panicking has printed each failure as it was recorded.
        assert!(
            failures.is_empty() || std::thread::panicking(),
            "{} check(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
