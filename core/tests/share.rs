//! push/pull logic against an in-memory remote (a unit-level fake: the real transports are
//! tested against real servers in `tests/tests/e2e_remote.rs`). Environments are built with the
//! mock backend through the real binary; push and pull run through the engine's API.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{Cursor, Read};

use common::Kp;
use karapace::engine::Engine;
use karapace::engine::share::reference::{Reference, Tagged, parse_tag};
use karapace::engine::share::transport::{BlobKind, BlobRemote, BlobSource, Opener, RegistryEntry};
use karapace::error::Result;

/// Blobs by (kind, key); counts uploads; can be told to fail after some downloads.
#[derive(Default)]
struct Mem {
    blobs: RefCell<HashMap<(u8, String), Vec<u8>>>,
    tags: RefCell<HashMap<String, RegistryEntry>>,
    uploads: Cell<usize>,
    downloads_left: Cell<Option<usize>>,
}

fn k(kind: BlobKind) -> u8 {
    match kind {
        BlobKind::Object => 0,
        BlobKind::Layer => 1,
        BlobKind::Metadata => 2,
    }
}

impl BlobSource for Mem {
    fn location(&self) -> String {
        "mem://test".into()
    }
    fn get(&self, kind: BlobKind, key: &str) -> Result<Option<Box<dyn Read + Send>>> {
        if let Some(left) = self.downloads_left.get() {
            if left == 0 {
                return Err(karapace::error::CoreError::Remote(
                    "mem://test: connection reset".into(),
                ));
            }
            self.downloads_left.set(Some(left - 1));
        }
        Ok(self
            .blobs
            .borrow()
            .get(&(k(kind), key.to_string()))
            .map(|b| Box::new(Cursor::new(b.clone())) as Box<dyn Read + Send>))
    }
}

impl BlobRemote for Mem {
    fn has(&self, kind: BlobKind, key: &str) -> Result<bool> {
        Ok(self
            .blobs
            .borrow()
            .contains_key(&(k(kind), key.to_string())))
    }
    fn put(&self, kind: BlobKind, key: &str, len: u64, open: &Opener<'_>) -> Result<()> {
        let mut bytes = Vec::new();
        open().unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, len, "announced length of {key}");
        self.uploads.set(self.uploads.get() + 1);
        self.blobs
            .borrow_mut()
            .insert((k(kind), key.to_string()), bytes);
        Ok(())
    }
    fn resolve(&self, tag: &Tagged) -> Result<Option<RegistryEntry>> {
        Ok(self.tags.borrow().get(&tag.to_string()).cloned())
    }
    fn publish(&self, tag: &Tagged, entry: &RegistryEntry) -> Result<()> {
        self.tags
            .borrow_mut()
            .insert(tag.to_string(), entry.clone());
        Ok(())
    }
}

impl Mem {
    fn objects(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .blobs
            .borrow()
            .keys()
            .filter(|(kind, _)| *kind == 0)
            .map(|(_, key)| key.clone())
            .collect();
        v.sort();
        v
    }
}

/// A built mock environment with one snapshot, pushed to a fresh remote as `web@v1`.
fn pushed() -> (Kp, String, Mem) {
    let a = Kp::new();
    let env = a.build_mock("karapace.toml", &["curl", "git"], Some("web"));
    std::fs::write(a.upper(&env).join("notes.txt"), "snapshot me\n").unwrap();
    a.ok(&["commit", &env]);
    let mem = Mem::default();
    let report = Engine::new(a.store())
        .push(&env, &mem, Some(&parse_tag("web@v1").unwrap()))
        .unwrap();
    assert_eq!(report.env_id, env);
    assert!(report.objects_pushed >= 4, "{report:?}");
    assert_eq!(report.objects_skipped, 0);
    assert!(
        report.layers_pushed >= 3,
        "base, dependency and snapshot: {report:?}"
    );
    (a, env, mem)
}

fn listed(kp: &Kp) -> Vec<String> {
    kp.json(&["list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["env_id"].as_str().unwrap().to_string())
        .collect()
}

fn assert_clean(kp: &Kp) {
    let v = kp.json(&["verify-store"]);
    assert_eq!(v["failed"], 0, "{v}");
}

#[test]
fn a_pulled_environment_is_built_with_its_snapshots_and_a_second_push_sends_nothing() {
    let (a, env, mem) = pushed();
    let uploads = mem.uploads.get();
    let again = Engine::new(a.store()).push(&env, &mem, None).unwrap();
    assert_eq!(
        (again.objects_pushed, again.layers_pushed),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(
        mem.uploads.get(),
        uploads + 1,
        "only the record is sent again"
    );

    let b = Kp::new();
    let report = Engine::new(b.store())
        .pull(&mem, &Reference::parse("web@v1").unwrap())
        .unwrap();
    assert_eq!(report.env_id, env);
    assert_eq!(report.objects_skipped, 0);
    let shown = b.json(&["inspect", &env]);
    assert_eq!(shown["state"], "Built");
    assert_eq!(shown["name"], "web");
    let snaps = b.json(&["snapshots", &env]);
    let snap = snaps["snapshots"][0]["restore_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let original = a.json(&["snapshots", &env]);
    assert_eq!(original["snapshots"][0]["restore_hash"], snap.as_str());
    b.ok(&["restore", &env, &snap]);
    assert_eq!(
        std::fs::read_to_string(b.upper(&env).join("notes.txt")).unwrap(),
        "snapshot me\n"
    );
    assert_clean(&b);

    // Pulling again changes nothing and downloads no object.
    let again = Engine::new(b.store())
        .pull(&mem, &Reference::EnvId(env.clone()))
        .unwrap();
    assert_eq!(
        again.objects_pulled, 2,
        "only the lock and manifest records: {again:?}"
    );
    assert_eq!(listed(&b), vec![env]);
}

#[test]
fn a_corrupt_object_fails_the_pull_and_records_nothing() {
    let (_a, env, mem) = pushed();
    let victim = mem.objects().into_iter().next().unwrap();
    for bytes in mem.blobs.borrow_mut().values_mut() {
        if bytes.len() > 100 {
            bytes[50] ^= 0xff;
        }
    }
    let b = Kp::new();
    let err = Engine::new(b.store())
        .pull(&mem, &Reference::EnvId(env.clone()))
        .unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("mem://test"), "{err}");
    assert!(err.to_string().contains("not valid"), "{err}");
    assert!(listed(&b).is_empty());
    assert_clean(&b);
    let _ = victim;
}

#[test]
fn forged_records_layers_and_locks_are_refused() {
    let (_a, env, mem) = pushed();
    let original = mem.blobs.borrow().clone();
    let record_key = (2u8, env.clone());
    let record = String::from_utf8(original[&record_key].clone()).unwrap();

    // A record whose seal does not match.
    let forged = record.replacen("\"Built\"", "\"Frozen\"", 1);
    mem.blobs
        .borrow_mut()
        .insert(record_key.clone(), forged.into_bytes());
    let b = Kp::new();
    let err = Engine::new(b.store())
        .pull(&mem, &Reference::EnvId(env.clone()))
        .unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");

    // A layer manifest swapped for another layer's.
    *mem.blobs.borrow_mut() = original.clone();
    let layers: Vec<String> = original
        .keys()
        .filter(|(kind, _)| *kind == 1)
        .map(|(_, key)| key.clone())
        .collect();
    let (x, y) = (&layers[0], &layers[1]);
    let bx = original[&(1, x.clone())].clone();
    mem.blobs.borrow_mut().insert((1, y.clone()), bx);
    let err = Engine::new(b.store())
        .pull(&mem, &Reference::EnvId(env.clone()))
        .unwrap_err();
    assert!(err.to_string().contains("layer"), "{err}");

    // The tag names something that is not an env_id.
    *mem.blobs.borrow_mut() = original;
    mem.tags.borrow_mut().insert(
        "web@v1".into(),
        RegistryEntry {
            env_id: "../../etc".into(),
            short_id: String::new(),
            name: Some("web".into()),
            pushed_at: String::new(),
        },
    );
    let err = Engine::new(b.store())
        .pull(&mem, &Reference::parse("web@v1").unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("not an env_id"), "{err}");
    // An unknown tag is an error, never a guess.
    let err = Engine::new(b.store())
        .pull(&mem, &Reference::parse("web@v2").unwrap())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no environment is tagged 'web@v2'"),
        "{err}"
    );
    assert!(listed(&b).is_empty());
    assert_clean(&b);
}

#[test]
fn an_interrupted_pull_leaves_nothing_listed_and_the_retry_reuses_what_arrived() {
    let (_a, env, mem) = pushed();
    let b = Kp::new();
    // Record, lock, manifest, the layer manifests, then one object: cut after that.
    mem.downloads_left.set(Some(3 + 3 + 1));
    let err = Engine::new(b.store())
        .pull(&mem, &Reference::EnvId(env.clone()))
        .unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    assert!(listed(&b).is_empty());
    assert_clean(&b);
    mem.downloads_left.set(None);
    let report = Engine::new(b.store())
        .pull(&mem, &Reference::EnvId(env.clone()))
        .unwrap();
    assert_eq!(
        report.objects_skipped, 1,
        "the object that arrived is reused: {report:?}"
    );
    assert_eq!(listed(&b), vec![env]);
    assert_clean(&b);
}

#[test]
fn a_local_build_replaces_pulled_layers() {
    let (a, env, mem) = pushed();
    let b = Kp::new();
    Engine::new(b.store())
        .pull(&mem, &Reference::EnvId(env.clone()))
        .unwrap();
    // The same manifest and lock, built here: the pulled layers are replaced, and it says so.
    for file in ["karapace.toml", "karapace.lock"] {
        std::fs::copy(a.work().join(file), b.work().join(file)).unwrap();
    }
    let out = b.run(&["build", "karapace.toml", "--locked"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("was pulled from mem://test"),
        "{}",
        common::stderr(&out)
    );
    let again = b.run(&["build", "karapace.toml", "--locked"]);
    assert!(
        !common::stderr(&again).contains("pulled"),
        "{}",
        common::stderr(&again)
    );
    assert_eq!(listed(&b), vec![env]);
    assert_clean(&b);
}

#[test]
fn a_remote_environment_with_other_layers_never_grafts_onto_a_local_one() {
    let (a, env, mem) = pushed();
    let key = (2u8, env.clone());
    let text = String::from_utf8(mem.blobs.borrow()[&key].clone()).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["dependency_layers"] = serde_json::json!(["f".repeat(64)]);
    doc.as_object_mut().unwrap().remove("checksum");
    let forged = karapace_store::seal_document(doc).unwrap();
    mem.blobs.borrow_mut().insert(key, forged.into_bytes());
    let before = a.json(&["snapshots", &env]);
    let err = Engine::new(a.store())
        .pull(&mem, &Reference::EnvId(env.clone()))
        .unwrap_err();
    assert!(err.to_string().contains("other layers"), "{err}");
    assert_eq!(a.json(&["snapshots", &env]), before);
    assert_clean(&a);
}
