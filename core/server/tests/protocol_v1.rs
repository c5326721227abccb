//! `karapace-server` end to end: the real binary on 127.0.0.1, spoken to by the protocol v1
//! client (and by raw HTTP where the input is malformed on purpose).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use karapace_remote::v1::{PutOutcome, TlsRoots, V1Error, V1Options};
use karapace_remote::{BlobKind, Reference, Registry, RegistryEntry};
use karapace_store::{
    EnvMetadata, EnvState, LayerKind, LayerManifest, encode_metadata, layer_hash,
};
use nix::sys::signal::Signal;

fn layer_manifest() -> (String, Vec<u8>) {
    let tar = blake3_hex(b"a layer tar");
    let hash = layer_hash(LayerKind::Base, None, &tar);
    let m = LayerManifest {
        hash: hash.clone(),
        kind: LayerKind::Base,
        parent: None,
        object_refs: vec![tar.clone()],
        read_only: true,
        tar_hash: tar,
        env_id: None,
        base_layer: None,
        created_at: None,
        label: None,
    };
    (hash.to_string(), serde_json::to_vec_pretty(&m).unwrap())
}

fn metadata() -> (String, Vec<u8>) {
    let env_id = blake3_hex(b"an environment");
    let meta = EnvMetadata {
        env_id: env_id.clone().parse().unwrap(),
        short_id: env_id[..12].to_string(),
        name: Some("dev".into()),
        state: EnvState::Built,
        manifest_hash: blake3_hex(b"manifest"),
        base_layer: layer_manifest().0.parse().unwrap(),
        dependency_layers: vec![],
        policy_layer: None,
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
        checksum: String::new(),
    };
    (env_id, encode_metadata(&meta).unwrap().into_bytes())
}

fn entry(env: u32, at: &str) -> RegistryEntry {
    let env_id = blake3_hex(&env.to_le_bytes());
    RegistryEntry {
        short_id: env_id[..12].to_string(),
        env_id,
        name: None,
        pushed_at: at.to_string(),
    }
}

fn put_bytes(
    c: &karapace_remote::v1::V1Client,
    kind: BlobKind,
    key: &str,
    bytes: &[u8],
) -> Result<PutOutcome, V1Error> {
    c.put(kind, key, bytes.len() as u64, || Ok(bytes))
}

fn get_bytes(c: &karapace_remote::v1::V1Client, kind: BlobKind, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    c.get(kind, key).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn every_blob_kind_round_trips_and_both_route_forms_serve_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let c = s.client(None);
    c.health().unwrap();

    let object: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let okey = blake3_hex(&object);
    let (lkey, layer) = layer_manifest();
    // A layer by the standard tool's rule: keyed by the hash of its bytes.
    let std_layer = br#"{"hash":"whatever","kind":"Base"}"#.to_vec();
    let std_lkey = blake3_hex(&std_layer);
    let (mkey, meta) = metadata();

    for (kind, key, bytes) in [
        (BlobKind::Object, &okey, &object),
        (BlobKind::Layer, &lkey, &layer),
        (BlobKind::Layer, &std_lkey, &std_layer),
        (BlobKind::Metadata, &mkey, &meta),
    ] {
        assert!(!c.has(kind, key).unwrap());
        assert!(matches!(c.get(kind, key), Err(V1Error::NotFound { .. })));
        assert_eq!(put_bytes(&c, kind, key, bytes).unwrap(), PutOutcome::Stored);
        assert_eq!(
            put_bytes(&c, kind, key, bytes).unwrap(),
            PutOutcome::AlreadyPresent
        );
        assert!(c.has(kind, key).unwrap());
        assert_eq!(&get_bytes(&c, kind, key), bytes);
        assert!(c.list(kind).unwrap().contains(key));
        // The canonical route form serves the same bytes.
        let (st, _, body) = raw(
            s.addr,
            format!(
                "GET /blobs/{}/{key} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                kind.canonical_name()
            )
            .as_bytes(),
        );
        assert_eq!((st, &body), (200, bytes));
    }
    let (st, head, body) = raw(
        s.addr,
        b"GET /blobs/Layer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(st, 200);
    assert!(header(&head, "x-karapace-protocol").as_deref() == Some("1"));
    let mut keys: Vec<String> = serde_json::from_slice(&body).unwrap();
    keys.sort();
    let mut want = vec![lkey, std_lkey];
    want.sort();
    assert_eq!(keys, want);
    // Files live exactly where the layout says, nothing is left in tmp/.
    assert!(s.data_dir.join("objects").join(&okey).is_file());
    assert!(s.data_dir.join("metadata").join(&mkey).is_file());
    assert_eq!(
        std::fs::read_dir(s.data_dir.join("tmp")).unwrap().count(),
        0
    );
    assert!(s.stop().success());
}

#[test]
fn traversal_and_malformed_keys_are_refused_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let c = s.client(None);
    let k = blake3_hex(b"x");
    put_bytes(&c, BlobKind::Object, &k, b"x").unwrap();
    let before = snapshot(dir.path());
    let targets = [
        "/objects/../../escaped".to_string(),
        "/objects/..%2f..%2fescaped".to_string(),
        "/objects/%2e%2e/%2e%2e/escaped".to_string(),
        "/metadata/../registry.json".to_string(),
        "/blobs/Object/../../../escaped".to_string(),
        format!("/objects/{k}/../../escaped"),
        format!("/objects/{}", k.to_uppercase()),
        format!("/objects/{}", &k[..63]),
        format!("/objects/{k}?overwrite=1"),
        format!("/objects/{}", "a".repeat(5000)),
        format!("http://127.0.0.1/objects/{k}"),
        "/layers/.".to_string(),
    ];
    for t in &targets {
        for method in ["PUT", "GET", "HEAD"] {
            let req = format!(
                "{method} {t} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
            );
            let (st, _, _) = raw(s.addr, req.as_bytes());
            assert_eq!(st, 400, "{method} {t}");
        }
    }
    // A NUL in the target never gets past the parser.
    let mut req = b"PUT /objects/".to_vec();
    req.extend_from_slice(&[b'a'; 63]);
    req.extend_from_slice(b"\0 HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(raw(s.addr, &req).0, 400);
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused request changed the disk"
    );
    assert!(!dir.path().join("escaped").exists());
    // The client refuses such keys itself.
    assert!(matches!(
        c.has(BlobKind::Object, "../x"),
        Err(V1Error::InvalidKey(_))
    ));
}

#[test]
fn bytes_that_do_not_match_their_key_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let c = s.impatient_client(None);
    let (lkey, layer) = layer_manifest();
    let (mkey, meta) = metadata();
    let tampered = String::from_utf8(meta.clone())
        .unwrap()
        .replace("Built", "Frozen");
    let other = blake3_hex(b"other");
    let mut edited: LayerManifest = serde_json::from_slice(&layer).unwrap();
    edited.tar_hash = blake3_hex(b"evil");
    let edited = serde_json::to_vec(&edited).unwrap();
    for (kind, key, bytes) in [
        (
            BlobKind::Object,
            blake3_hex(b"expected"),
            b"something else".to_vec(),
        ),
        (BlobKind::Layer, lkey.clone(), edited),
        (BlobKind::Layer, other.clone(), layer.clone()),
        (BlobKind::Layer, lkey.clone(), b"not json".to_vec()),
        (BlobKind::Metadata, mkey.clone(), tampered.into_bytes()),
        (BlobKind::Metadata, other.clone(), meta.clone()),
    ] {
        let err = put_bytes(&c, kind, &key, &bytes).unwrap_err();
        assert_eq!(err.status(), Some(422), "{kind} {key}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(&key) && text.contains(&s.url) && text.contains("422"),
            "{text}"
        );
    }
    for kind in BlobKind::ALL {
        assert!(c.list(kind).unwrap().is_empty(), "{kind}");
    }
    assert_eq!(
        std::fs::read_dir(s.data_dir.join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn tokens_gate_reads_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let s = start(
        &dir.path().join("data"),
        &["--token-file", tokens.to_str().unwrap()],
    );
    let k = blake3_hex(b"secret");
    let anon = s.impatient_client(None);
    let ro = s.impatient_client(Some(RO_TOKEN));
    let rw = s.impatient_client(Some(RW_TOKEN));
    let wrong = s.impatient_client(Some("not-a-configured-token-123"));
    anon.health().unwrap();
    for c in [&anon, &wrong] {
        assert_eq!(c.has(BlobKind::Object, &k).unwrap_err().status(), Some(401));
        assert_eq!(
            put_bytes(c, BlobKind::Object, &k, b"secret")
                .unwrap_err()
                .status(),
            Some(401)
        );
        assert_eq!(c.registry().unwrap_err().status(), Some(401));
    }
    assert_eq!(
        put_bytes(&ro, BlobKind::Object, &k, b"secret")
            .unwrap_err()
            .status(),
        Some(403)
    );
    assert!(!ro.has(BlobKind::Object, &k).unwrap());
    put_bytes(&rw, BlobKind::Object, &k, b"secret").unwrap();
    assert_eq!(get_bytes(&ro, BlobKind::Object, &k), b"secret");
    let r = Reference::parse("dev@latest").unwrap();
    assert_eq!(
        ro.publish(&r, &entry(1, "2026-01-01T00:00:00Z"))
            .unwrap_err()
            .status(),
        Some(403)
    );
    rw.publish(&r, &entry(1, "2026-01-01T00:00:00Z")).unwrap();
    // 401 carries the challenge.
    let (st, head, _) = raw(
        s.addr,
        b"GET /objects/ HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(st, 401);
    assert!(
        header(&head, "www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert!(!s.log().contains(RW_TOKEN), "a token reached the log");
}

#[test]
fn a_token_file_open_to_others_and_a_public_bind_without_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, log) = try_start(
        &dir.path().join("data"),
        &["--token-file", tokens.to_str().unwrap()],
    )
    .err()
    .expect("must refuse");
    assert_eq!(code, Some(1));
    assert!(log.contains("chmod 600"), "{log}");
    // Refused before binding: no traffic is ever sent to it.
    let (code, log) = try_start(&dir.path().join("data"), &["--bind", "0.0.0.0"])
        .err()
        .expect("must refuse");
    assert_eq!(code, Some(1));
    assert!(log.contains("--allow-anonymous"), "{log}");
    // A second server on the same data directory.
    let s = start(&dir.path().join("data"), &[]);
    let (code, log) = try_start(&dir.path().join("data"), &[])
        .err()
        .expect("must refuse");
    assert_eq!(code, Some(1));
    assert!(log.contains("another karapace-server"), "{log}");
    drop(s);
}

#[test]
fn bodies_over_the_limit_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &["--max-body-bytes", "1000"]);
    let c = s.impatient_client(None);
    let big = vec![7u8; 5000];
    let err = put_bytes(&c, BlobKind::Object, &blake3_hex(&big), &big).unwrap_err();
    assert_eq!(err.status(), Some(413), "{err}");
    // Chunked, so the size is only discovered while reading.
    let mut req = format!(
        "PUT /objects/{} HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        blake3_hex(&big)
    )
    .into_bytes();
    for part in big.chunks(500) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(s.addr, &req).0, 413);
    // A chunked upload within the limit is stored.
    let small = vec![1u8; 600];
    let mut req = format!(
        "PUT /objects/{} HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        blake3_hex(&small)
    )
    .into_bytes();
    req.extend_from_slice(b"258\r\n");
    req.extend_from_slice(&small);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(raw(s.addr, &req).0, 201);
    assert_eq!(c.list(BlobKind::Object).unwrap(), vec![blake3_hex(&small)]);
    assert_eq!(
        std::fs::read_dir(s.data_dir.join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn clients_over_the_rate_limit_get_429_and_the_client_waits_it_out() {
    // One request a second after a burst of three: the fourth request in a row is refused
    // unless the machine stalls for a whole second between two of them.
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        &dir.path().join("data"),
        &["--rate-limit", "1", "--rate-burst", "3"],
    );
    let statuses: Vec<u16> = (0..5)
        .map(|_| raw(s.addr, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n").0)
        .collect();
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let (st, head, _) = raw(s.addr, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(st, 429);
    assert!(header(&head, "retry-after").is_some());
    // The client honours Retry-After and gets through.
    let c = s.client(None);
    for _ in 0..4 {
        c.health().unwrap();
    }
}

#[test]
fn wrong_methods_get_405_and_unknown_routes_404() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let k = blake3_hex(b"x");
    for (req, status) in [
        (
            format!("DELETE /objects/{k} HTTP/1.1\r\nConnection: close\r\n\r\n"),
            405,
        ),
        (
            "POST /registry HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            405,
        ),
        (
            "PUT /objects/ HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            405,
        ),
        (
            "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
            404,
        ),
        (
            "GET /blobs/Nope/ HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
            404,
        ),
        (
            "GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
            404,
        ),
        (
            "GET /health HTTP/1.1\r\nX-Karapace-Protocol: 2\r\nConnection: close\r\n\r\n"
                .to_string(),
            400,
        ),
        ("GET /health HTTP/2.0\r\n\r\n".to_string(), 505),
    ] {
        let (st, head, _) = raw(s.addr, req.as_bytes());
        assert_eq!(st, status, "{req}");
        if status == 405 {
            assert!(header(&head, "allow").is_some());
        }
    }
}

/// The standard tool's client: GET /registry, add its entry, PUT the whole map, no If-Match.
fn standard_publish(url: &str, reference: &str, e: &RegistryEntry) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut resp = agent
        .get(&format!("{url}/registry"))
        .header("X-Karapace-Protocol", "1")
        .call()
        .unwrap();
    let mut reg: Registry = match resp.status().as_u16() {
        200 => Registry::from_json(&resp.body_mut().read_to_vec().unwrap()).unwrap_or_default(),
        _ => Registry::default(),
    };
    reg.entries.insert(reference.to_string(), e.clone());
    // Widen the race window between read and write.
    std::thread::sleep(Duration::from_millis(5));
    let resp = agent
        .put(&format!("{url}/registry"))
        .header("Content-Type", "application/json")
        .header("X-Karapace-Protocol", "1")
        .send(&reg.to_json()[..])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[test]
fn concurrent_standard_style_pushes_of_different_tags_keep_every_tag() {
    let dir = tempfile::tempdir().unwrap();
    // Many clients, all on 127.0.0.1 here: lift the per-address connection cap.
    let s = Arc::new(start(
        &dir.path().join("data"),
        &["--max-connections-per-client", "256"],
    ));
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..6u32 {
                    let e = entry(t * 100 + i, "2026-01-01T00:00:00.123+00:00");
                    standard_publish(&s.url, &format!("env{t}@v{i}"), &e);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (reg, _) = s.client(None).registry().unwrap();
    assert_eq!(
        reg.entries.len(),
        48,
        "{:?}",
        reg.entries.keys().collect::<Vec<_>>()
    );
    // And our own client, concurrently, with compare-and-swap.
    let threads: Vec<_> = (0..6u32)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let c = s.client(None);
                for i in 0..4u32 {
                    let r = Reference::parse(&format!("ours{t}@v{i}")).unwrap();
                    c.publish(&r, &entry(1000 + t * 10 + i, "2026-01-02T00:00:00Z"))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (reg, _) = s.client(None).registry().unwrap();
    assert_eq!(reg.entries.len(), 48 + 24);
    // The file on disk holds the same.
    let on_disk =
        Registry::from_json(&std::fs::read(s.data_dir.join("registry.json")).unwrap()).unwrap();
    assert_eq!(on_disk, reg);
}

#[test]
fn a_stale_if_match_gets_412_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let c = s.client(None);
    let (_, etag0) = c.registry().unwrap();
    let etag0 = etag0.expect("our server sends an ETag");
    c.publish(
        &Reference::parse("a@1").unwrap(),
        &entry(1, "2026-01-01T00:00:00Z"),
    )
    .unwrap();
    let mut reg = Registry::default();
    reg.entries
        .insert("b@1".into(), entry(2, "2026-01-01T00:00:00Z"));
    let body = reg.to_json();
    let req = format!(
        "PUT /registry HTTP/1.1\r\nIf-Match: {etag0}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(&body);
    let (st, head, _) = raw(s.addr, &bytes);
    assert_eq!(st, 412);
    let (reg_now, etag_now) = c.registry().unwrap();
    assert_eq!(header(&head, "etag"), etag_now);
    assert_eq!(reg_now.entries.keys().collect::<Vec<_>>(), vec!["a@1"]);
    // Invalid documents are 400 and change nothing either.
    for body in [&b"{\"entries\":{\"Not A Ref\":{}}}"[..], b"[]", b"{\"entries\":{\"x@1\":{\"env_id\":\"../..\",\"short_id\":\"..\",\"pushed_at\":\"2026-01-01T00:00:00Z\"}}}"] {
        let mut req = format!("PUT /registry HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
        req.extend_from_slice(body);
        assert_eq!(raw(s.addr, &req).0, 400);
    }
    assert_eq!(c.registry().unwrap().0, reg_now);
}

#[test]
fn an_upload_cut_off_midway_leaves_no_file_under_its_key_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let body = vec![3u8; 4 * 1024 * 1024];
    let key = blake3_hex(&body);
    let partial_upload = |s: &TestServer| {
        let mut t = TcpStream::connect(s.addr).unwrap();
        write!(
            t,
            "PUT /objects/{key} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        t.write_all(&body[..1024 * 1024]).unwrap();
        t.flush().unwrap();
        // Give the server time to stream that part into its temp file.
        assert!(eventually(Duration::from_secs(10), || {
            std::fs::read_dir(s.data_dir.join("tmp")).unwrap().count() > 0
        }));
        t
    };
    // The client dies: the server notices and removes the temp file.
    let s = start(&data, &[]);
    drop(partial_upload(&s));
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_dir(data.join("tmp")).unwrap().count() == 0
    }));
    assert!(!data.join("objects").join(&key).exists());
    // The server dies mid-upload (SIGKILL): the next start removes the leftover.
    let t = partial_upload(&s);
    s.signal(Signal::SIGKILL);
    let _ = s.wait(Duration::from_secs(10));
    drop(t);
    assert!(std::fs::read_dir(data.join("tmp")).unwrap().count() > 0);
    let s = start(&data, &[]);
    assert_eq!(std::fs::read_dir(data.join("tmp")).unwrap().count(), 0);
    assert!(!s.client(None).has(BlobKind::Object, &key).unwrap());
    assert!(!data.join("objects").join(&key).exists());
}

#[test]
fn sigterm_lets_a_slow_upload_in_flight_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    let key = blake3_hex(&body);
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        t,
        "PUT /objects/{key} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let parts: Vec<&[u8]> = body.chunks(25_000).collect();
    t.write_all(parts[0]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.signal(Signal::SIGTERM);
    // The listener closes; the upload in flight goes on.
    assert!(eventually(Duration::from_secs(5), || TcpStream::connect(
        s.addr
    )
    .is_err()));
    for p in &parts[1..] {
        std::thread::sleep(Duration::from_millis(50));
        t.write_all(p).unwrap();
    }
    let (st, head, _) = read_response(&mut t);
    assert_eq!(st, 201);
    assert_eq!(header(&head, "connection").as_deref(), Some("close"));
    let data = s.data_dir.clone();
    let status = s.wait(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert_eq!(
        std::fs::read(data.join("objects").join(&key)).unwrap(),
        body
    );
    assert_eq!(std::fs::read_dir(data.join("tmp")).unwrap().count(), 0);
}

#[test]
fn https_with_a_self_signed_certificate_is_trusted_through_the_ca_option_only() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = start(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let trusted = s.client_with(
        None,
        V1Options {
            tls: TlsRoots::CaFile(cert_path.clone()),
            ..V1Options::default()
        },
    );
    trusted.health().unwrap();
    let blob = vec![9u8; 300_000];
    let k = blake3_hex(&blob);
    put_bytes(&trusted, BlobKind::Object, &k, &blob).unwrap();
    assert_eq!(get_bytes(&trusted, BlobKind::Object, &k), blob);
    // Without the CA the certificate is not trusted.
    let err = s.impatient_client(None).health().unwrap_err();
    assert!(matches!(err, V1Error::Transport { .. }), "{err}");
    // A world-readable key is refused at start.
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, log) = try_start(
        &dir.path().join("data2"),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    )
    .err()
    .expect("must refuse");
    assert_eq!(code, Some(1));
    assert!(log.contains("readable by everyone"), "{log}");
    assert!(s.stop().success());
}

#[test]
fn one_connection_serves_many_requests_and_logs_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let k = blake3_hex(b"keepalive");
    write!(
        t,
        "PUT /objects/{k} HTTP/1.1\r\nContent-Length: 9\r\n\r\nkeepalive"
    )
    .unwrap();
    assert_eq!(read_response(&mut t).0, 201);
    write!(t, "HEAD /objects/{k} HTTP/1.1\r\n\r\n").unwrap();
    // HEAD: a length but no body (the next response follows the head directly).
    let (st, head, _) = read_response_to(&mut t, true);
    assert_eq!(
        (st, header(&head, "content-length").as_deref()),
        (200, Some("9"))
    );
    write!(t, "GET /objects/{k} HTTP/1.1\r\n\r\n").unwrap();
    let (st, _, body) = read_response(&mut t);
    assert_eq!((st, body.as_slice()), (200, &b"keepalive"[..]));
    let find = || {
        s.log()
            .lines()
            .find(|l| l.contains("method=GET") && l.contains(&k))
            .map(str::to_string)
    };
    assert!(
        eventually(Duration::from_secs(5), || find().is_some()),
        "{}",
        s.log()
    );
    let line = find().unwrap();
    for field in [
        "route=blob",
        "kind=objects",
        "status=200",
        "bytes=9",
        "duration_ms=",
        "peer=127.0.0.1:",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}

/// One address cannot hold every worker with idle connections: beyond its cap it gets 503,
/// and it is served again once its connections close.
#[test]
fn one_client_cannot_take_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        &dir.path().join("data"),
        &[
            "--workers",
            "4",
            "--queue",
            "4",
            "--max-connections-per-client",
            "2",
        ],
    );
    let addr: std::net::SocketAddr = s.addr;
    // Two idle connections from 127.0.0.1 (never sending a request) fill its share.
    let idle: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let (st, _, body) = raw(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(st, 503, "{}", String::from_utf8_lossy(&body));
    // Its connections closed, the address is served again.
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    let (st, _, _) = raw(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(st, 200);
}
