//! How long the service lives and what it costs: it exits after an idle period counted from the
//! last call or job (never in the middle of a job), a long build blocks no other call, the same
//! build twice is `Busy`, and an idle service uses no CPU.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Harness, Options, SOON, path_str};

fn with_idle(secs: u32) -> Options {
    Options {
        idle_timeout: secs.to_string(),
        ..Options::default()
    }
}

#[test]
fn the_idle_period_counts_from_the_last_call_not_from_the_start() {
    let mut h = Harness::with(&with_idle(2));
    let start = Instant::now();
    // Calls every second for four seconds: the service must outlive "2 s after start".
    for _ in 0..4 {
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            h.wait_exit(Duration::ZERO).is_none(),
            "exited {:?} after start despite calls",
            start.elapsed()
        );
        h.client.ok("ListEnvironments", &());
    }
    let last_call = Instant::now();
    let status = h
        .wait_exit(SOON)
        .expect("the service never exited when idle");
    let quiet = last_call.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        quiet >= Duration::from_secs(2),
        "exited {quiet:?} after the last call, before the idle period"
    );
    assert!(!h.client.name_has_owner(), "the name is released");
}

#[test]
fn the_service_exits_when_its_session_bus_goes_away() {
    // Never idle: only the end of the bus can end it.
    let mut h = Harness::start();
    h.client.ok("ListEnvironments", &());
    let bus = std::mem::replace(
        &mut h.bus,
        common::Bus::start(&common::BusOptions::default()),
    );
    drop(bus);
    let status = h
        .wait_exit(SOON)
        .expect("the service outlived its session bus");
    assert!(status.success(), "{status}");
}

/// A server on 127.0.0.1 that accepts a download and sends nothing until told to hang up, so a
/// build stays in progress as long as the test needs.
struct StalledServer {
    port: u16,
    hang_up: mpsc::Sender<()>,
    accepted: mpsc::Receiver<()>,
}

impl StalledServer {
    fn start() -> StalledServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("addr").port();
        let (hang_up, hang_up_rx) = mpsc::channel::<()>();
        let (accepted_tx, accepted) = mpsc::channel();
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            listener.set_nonblocking(true).expect("nonblocking");
            loop {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut buf = [0u8; 4096];
                        let _ = stream.read(&mut buf);
                        let _ = accepted_tx.send(());
                        if hang_up_rx.try_recv().is_ok() {
                            let _ =
                                stream.write_all(b"HTTP/1.1 500 Gone\r\ncontent-length: 0\r\n\r\n");
                            return;
                        }
                        held.push(stream);
                    }
                    Err(_) => {
                        if hang_up_rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                            for mut s in held.drain(..) {
                                let _ =
                                    s.write_all(b"HTTP/1.1 500 Gone\r\ncontent-length: 0\r\n\r\n");
                            }
                            return;
                        }
                    }
                }
            }
        });
        StalledServer {
            port,
            hang_up,
            accepted,
        }
    }
}

#[test]
fn a_long_build_blocks_no_other_call_is_busy_twice_and_keeps_the_service_alive() {
    let mut h = Harness::with(&with_idle(2));
    let server = StalledServer::start();
    let manifest = h.manifest(
        "slow",
        &format!(
            "manifest_version = 1\n[base]\nimage = \"http://127.0.0.1:{}/rootfs.tar.xz\"\n",
            server.port
        ),
    );
    let shown = path_str(&manifest).to_owned();
    let mut signals = h.client.signals();

    let builder = {
        let client = h.bus.client();
        let shown = shown.clone();
        std::thread::spawn(move || client.call("BuildEnvironment", &(shown.as_str(),)))
    };
    server
        .accepted
        .recv_timeout(SOON)
        .expect("the build never started its download");
    signals.expect("BuildProgress", &[&shown, "building"]);

    // Other calls answer at once while the build waits for its download.
    let asked = Instant::now();
    assert_eq!(h.client.ok("ListEnvironments", &()), "[]");
    h.client.json("VerifyStore", &());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "calls waited {:?} for the build",
        asked.elapsed()
    );
    // The same build again is Busy, not a second worker.
    let busy = h.client.err("BuildEnvironment", &(shown.as_str(),));
    assert_eq!(busy.name, "org.karapace.Error.Busy", "{busy:?}");

    // Longer than the idle period, but a job runs: the service stays.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        h.wait_exit(Duration::ZERO).is_none(),
        "the service exited in the middle of a build"
    );

    let _ = server.hang_up.send(());
    let result = builder.join().expect("builder thread");
    let failure = result.expect_err("a build whose image server hung up must fail");
    assert_eq!(failure.name, "org.karapace.Error.Failed", "{failure:?}");
    signals.drain(Duration::from_millis(300));
    assert!(
        signals
            .seen
            .iter()
            .any(|s| s.member == "BuildProgress" && s.args[1].starts_with("failed: ")),
        "{:?}",
        signals.seen
    );
    let ended = Instant::now();
    let status = h
        .wait_exit(SOON)
        .expect("the service never exited after the build");
    assert!(status.success());
    assert!(
        ended.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        ended.elapsed()
    );
}

#[test]
fn an_idle_service_uses_no_cpu() {
    let h = Harness::start();
    let m = h.mock_manifest("web", &["git"]);
    h.client.ok("BuildNamedEnvironment", &(path_str(&m), "web"));
    h.client.ok("ListEnvironments", &());
    // Let the start-up and the build settle (worker threads end 0.5 s after their last job),
    // then measure.
    std::thread::sleep(Duration::from_secs(2));
    let ticks = common::cpu_ticks(h.pid());
    let (cpu_ns, scheduled) = common::cpu_schedstat(h.pid());
    std::thread::sleep(Duration::from_secs(5));
    let ticks = common::cpu_ticks(h.pid()) - ticks;
    let (cpu_ns_after, scheduled_after) = common::cpu_schedstat(h.pid());
    let (cpu_ns, wakeups) = (cpu_ns_after - cpu_ns, scheduled_after - scheduled);
    eprintln!(
        "idle karapace-dbus in 5 s: {ticks} clock ticks, {cpu_ns} ns on a CPU, {wakeups} wake-ups"
    );
    // Nothing may poll or wake up on a timer: an idle service sleeps in the kernel.
    assert_eq!(ticks, 0, "clock ticks used while idle");
    assert!(wakeups <= 1, "{wakeups} wake-ups in 5 s of idling");
}
