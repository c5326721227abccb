//! `StoreWatcher`: wakes up for every change `list` would show, made by another process (the
//! CLI), including a session killed by SIGKILL, and not otherwise.

mod common;

use std::time::{Duration, Instant};

use common::Kp;
use karapace::engine::watch::StoreWatcher;

const SOON: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(400);

fn state(kp: &Kp, query: &str) -> String {
    kp.json(&["inspect", query])["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn every_change_the_cli_makes_wakes_the_watcher() {
    let kp = Kp::new();
    // The store does not exist yet.
    let mut w = StoreWatcher::new(&kp.store()).expect("watcher");
    assert!(!w.wait(Some(QUIET)).expect("wait"), "nothing happened yet");

    let id = kp.build_mock("karapace.toml", &["git"], Some("one"));
    assert!(w.wait(Some(SOON)).expect("wait"), "created");
    // A burst (one build) is one wake-up: nothing is left over afterwards.
    assert!(
        !w.wait(Some(QUIET)).expect("wait"),
        "the build was one change"
    );

    kp.ok(&["rename", "one", "two"]);
    assert!(w.wait(Some(SOON)).expect("wait"), "renamed");
    kp.ok(&["freeze", "two"]);
    assert!(w.wait(Some(SOON)).expect("wait"), "frozen");
    kp.ok(&["build"]);
    assert!(w.wait(Some(SOON)).expect("wait"), "built again");

    // A read-only command changes nothing.
    kp.ok(&["list"]);
    kp.ok(&["inspect", "two"]);
    assert!(!w.wait(Some(QUIET)).expect("wait"), "reads are not changes");

    // A session starting (recorded as a backend records one), and its process killed without
    // any chance to clean up its record.
    let session = kp.stand_in_session(&id);
    assert!(w.wait(Some(SOON)).expect("wait"), "session started");
    assert_eq!(state(&kp, "two"), "Running");
    // Whatever the session wrote meanwhile has settled.
    while w.wait(Some(QUIET)).expect("wait") {}
    assert_eq!(w.watch_counts().1, 1, "one live session held");
    session.kill_leaving_record();
    assert!(
        w.wait(Some(SOON)).expect("wait"),
        "the killed session ended"
    );
    assert_eq!(state(&kp, "two"), "Built");

    kp.ok(&["destroy", &id]);
    assert!(w.wait(Some(SOON)).expect("wait"), "destroyed");
}

#[test]
fn a_wait_without_changes_sleeps_until_its_timeout() {
    let kp = Kp::new();
    kp.build_mock("karapace.toml", &[], None);
    let mut w = StoreWatcher::new(&kp.store()).expect("watcher");
    let start = Instant::now();
    assert!(!w.wait(Some(Duration::from_millis(300))).expect("wait"));
    assert!(start.elapsed() >= Duration::from_millis(300));
}
