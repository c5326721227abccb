//! Hostile but well-formed requests must be refused with a typed error and
//! nothing may run; hostile frames must never crash the helper.

mod common;

use std::io::Write;
use std::path::PathBuf;

use common::{sh, store};
use karapace_helper_client::{BindMount, HelperError, Refusal, Upper};

/// Runs a request that must be refused; the workload would create `marker`.
fn refused(mut spec: karapace_helper_client::RunSpec, marker: &std::path::Path) -> Refusal {
    spec.argv = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("touch {}", marker.display()),
    ];
    match karapace_helper_client::capture(&spec) {
        Err(HelperError::Refused(r)) => {
            assert!(!marker.exists(), "workload ran despite refusal");
            r
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn hostile_requests_are_refused() {
    let s = store();
    let m = s.root.join("marker");
    std::os::unix::fs::symlink(s.layer(), s.root.join("layers/link")).unwrap();

    let mut sp = sh(&s, "");
    sp.lowers = vec!["/etc".into()];
    assert!(matches!(refused(sp, &m), Refusal::OutsideStore(_)));

    let mut sp = sh(&s, "");
    sp.lowers = vec![s.root.join("layers/../../etc")];
    assert!(matches!(refused(sp, &m), Refusal::NotNormalized(_)));

    let mut sp = sh(&s, "");
    sp.lowers = vec![s.root.join("layers/link")];
    assert!(matches!(refused(sp, &m), Refusal::Symlink(_)));

    let mut sp = sh(&s, "");
    sp.upper = Upper::Store {
        upper: "/tmp".into(),
        work: s.root.join("envs/e1/work"),
    };
    assert!(matches!(refused(sp, &m), Refusal::OutsideStore(_)));

    let mut sp = sh(&s, "");
    sp.allowed_mount_prefixes = vec![s.root.join("envs")];
    sp.binds = vec![BindMount {
        src: "/etc".into(),
        dst: "/x".into(),
        readonly: true,
    }];
    assert!(matches!(refused(sp, &m), Refusal::MountNotAllowed(_)));

    let mut sp = sh(&s, "");
    sp.allowed_mount_prefixes = vec![s.root.join("layers")];
    sp.binds = vec![BindMount {
        src: s.root.join("layers/link"),
        dst: "/x".into(),
        readonly: true,
    }];
    assert!(matches!(refused(sp, &m), Refusal::Symlink(_)));

    let mut sp = sh(&s, "");
    sp.allowed_mount_prefixes = vec!["/proc".into()];
    assert!(matches!(refused(sp, &m), Refusal::MountNotAllowed(_)));

    let mut sp = sh(&s, "");
    sp.allowed_mount_prefixes = vec![s.root.join("layers")];
    sp.binds = vec![BindMount {
        src: s.layer(),
        dst: "/proc/x".into(),
        readonly: false,
    }];
    assert!(matches!(refused(sp, &m), Refusal::TargetNotAllowed(_)));

    let mut sp = sh(&s, "");
    sp.devices = vec!["/dev/mem".into()];
    assert!(matches!(refused(sp, &m), Refusal::DeviceNotAllowed(_)));

    let mut sp = sh(&s, "");
    sp.upper = Upper::Tmpfs { size_mb: u64::MAX };
    assert!(matches!(refused(sp, &m), Refusal::TooLarge { .. }));

    let mut sp = sh(&s, "");
    sp.lowers = vec![s.layer(); 600];
    assert!(matches!(refused(sp, &m), Refusal::TooLarge { .. }));

    let mut sp = sh(&s, "");
    sp.hostname = "evil;host".into();
    assert!(matches!(refused(sp, &m), Refusal::Invalid(_)));

    let mut sp = sh(&s, "");
    sp.store_root = "/".into();
    sp.lowers = vec!["/etc".into()];
    if nix::unistd::getuid().is_root() {
        sp.store_root = PathBuf::from("/nonexistent-store");
        assert!(matches!(refused(sp, &m), Refusal::Open { .. }));
    } else {
        assert!(matches!(refused(sp, &m), Refusal::NotOwner(_)));
    }
}

#[test]
fn too_many_arguments_are_refused_without_running() {
    let s = store();
    let mut sp = sh(&s, "");
    sp.argv = vec!["x".into(); karapace_protocol::limits::MAX_ARGV + 1];
    assert!(matches!(
        karapace_helper_client::capture(&sp),
        Err(HelperError::Refused(Refusal::TooLarge { .. }))
    ));
}

/// Speaks to a real helper process with raw frames after a valid hello.
fn hostile_session(payload: &[u8]) -> (Option<i32>, Option<karapace_protocol::Reply>) {
    use interprocess::local_socket::traits::Listener as _;
    use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
    use interprocess::os::unix::uds_local_socket::{Listener, Stream};
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s");
    let listener: Listener = ListenerOptions::new()
        .name(sock.as_os_str().to_fs_name::<GenericFilePath>().unwrap())
        .create_sync_as()
        .unwrap();
    let mut child = std::process::Command::new(karapace_helper_client::helper_path().unwrap())
        .arg("--socket")
        .arg(&sock)
        .spawn()
        .unwrap();
    let mut stream: Stream = listener.accept().unwrap();
    let _: karapace_protocol::Reply = karapace_protocol::read_frame(&mut stream).unwrap();
    let hello = karapace_protocol::Request::Hello(karapace_protocol::Hello {
        version: karapace_protocol::PROTOCOL_VERSION,
        pid: 0,
    });
    karapace_protocol::write_frame(&mut stream, &hello).unwrap();
    let _ = stream.write_all(payload);
    let _ = stream.flush();
    let reply = karapace_protocol::read_frame(&mut stream).ok();
    drop(stream);
    let status = child.wait().unwrap();
    (status.code(), reply)
}

#[test]
fn oversized_frame_is_refused() {
    let mut payload = (karapace_protocol::MAX_FRAME + 1).to_le_bytes().to_vec();
    payload.extend_from_slice(&[0; 64]);
    let (code, reply) = hostile_session(&payload);
    assert_eq!(code, Some(1));
    assert!(matches!(
        reply,
        Some(karapace_protocol::Reply::Failed(Refusal::Protocol(_)))
    ));
}

#[test]
fn wrong_version_is_refused() {
    common::init();
    let body = karapace_protocol::encode(&karapace_protocol::Request::Signal(9)).unwrap();
    let mut payload = u32::try_from(body.len()).unwrap().to_le_bytes().to_vec();
    payload.extend_from_slice(&body);
    let (code, reply) = hostile_session(&payload);
    assert_eq!(code, Some(1), "a Signal before Run is a protocol error");
    assert!(matches!(
        reply,
        Some(karapace_protocol::Reply::Failed(Refusal::Protocol(_)))
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]
    /// Random frames: the helper answers with a typed error or hangs up,
    /// never crashes (exit by signal) and never runs anything.
    #[test]
    fn helper_survives_random_frames(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512), lie in proptest::bool::ANY) {
        let len = if lie { u32::MAX / 2 } else { u32::try_from(body.len()).unwrap() };
        let mut payload = len.to_le_bytes().to_vec();
        payload.extend_from_slice(&body);
        let (code, reply) = hostile_session(&payload);
        proptest::prop_assert!(code.is_some(), "helper killed by a signal");
        let started = matches!(reply, Some(karapace_protocol::Reply::Started { .. }));
        proptest::prop_assert!(!started, "something ran");
    }
}

/// Finding 7: a workload that writes without end (a hostile package's query output) is stopped
/// once it passes the cap; the caller never holds more than the cap.
#[test]
fn endless_output_is_cut_off_at_the_cap() {
    let s = store();
    // Ignores SIGPIPE, so only the kill can stop it.
    let spec = sh(&s, "trap '' PIPE; while :; do yes 2>/dev/null; done");
    match karapace_helper_client::capture_bounded(&spec, 1 << 20) {
        Err(HelperError::OutputTooLarge(cap)) => assert_eq!(cap, 1 << 20),
        other => panic!("endless output was not cut off: {other:?}"),
    }
    // Output under the cap is returned whole.
    let (status, out) =
        karapace_helper_client::capture_bounded(&sh(&s, "head -c 1000 /dev/zero"), 1000).unwrap();
    assert_eq!((status.code(), out.len()), (0, 1000));
}

/// A bind target that a layer's symlink moves into `/dev` (`opt/devlink -> /dev`) is refused in
/// the environment's init, though the target as written is fine.
#[test]
fn a_bind_target_redirected_into_dev_by_a_layer_link_is_refused() {
    let s = store();
    std::fs::create_dir_all(s.layer().join("opt")).unwrap();
    std::os::unix::fs::symlink("/dev", s.layer().join("opt/devlink")).unwrap();
    let src = s.root.join("shared");
    std::fs::create_dir(&src).unwrap();
    let mut sp = sh(&s, "echo ran");
    sp.allowed_mount_prefixes = vec![src.clone()];
    sp.binds = vec![BindMount {
        src,
        dst: "/opt/devlink/pts".into(),
        readonly: false,
    }];
    match karapace_helper_client::capture(&sp) {
        Err(HelperError::Refused(r)) => {
            assert!(r.to_string().contains("kernel file system"), "{r}");
        }
        other => panic!("a bind into /dev through a link was not refused: {other:?}"),
    }
}
