//! Signals sent to the core are forwarded to the workload (its own binary:
//! signal handlers are process-wide).

mod common;

use karapace_helper_client::{StdioMode, WaitStatus};

#[test]
fn sigterm_and_sigint_to_the_core_reach_the_workload() {
    let s = common::store();
    for (sig, n) in [
        (nix::sys::signal::Signal::SIGTERM, 15),
        (nix::sys::signal::Signal::SIGINT, 2),
    ] {
        let session =
            karapace_helper_client::spawn(&common::spec(&s, &["sleep", "30"]), StdioMode::Null)
                .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        nix::sys::signal::kill(nix::unistd::Pid::this(), sig).unwrap();
        let started = std::time::Instant::now();
        let outcome = session.wait().unwrap();
        assert_eq!(outcome.status, WaitStatus::Signaled(n));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
