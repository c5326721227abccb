//! The registry (`<data-dir>/registry.json`) and its lost-update-free updates.
//!
//! All updates go through one mutex, so they are serialised. A PUT is *merged* into the
//! stored map: entries in the body are set, entries absent from it are kept — two clients of
//! the standard tool, each doing GET + add-its-tag + PUT of the whole map, both keep their
//! tag. A body entry that equals a value this server has since replaced for that reference is
//! a stale echo of an older GET (the standard client re-sends every entry it read) and does not
//! roll the newer value back; the last [`HISTORY`] replaced values per reference are
//! remembered for that (in memory). GET returns an `ETag`; a PUT with `If-Match` that no longer
//! matches is refused with 412 and changes nothing, so our client can compare-and-swap.
//!
//! Refused with 400, registry unchanged: a body that is not the registry shape, a reference
//! outside the OCI grammar, an `env_id` that is not 64 lowercase hex (see
//! `karapace_remote::Registry::validate`). The file is replaced atomically
//! (temp → fsync → rename → fsync dir).

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use karapace_remote::{Registry, RegistryEntry};

use crate::fsio::{self, TempFile};

/// Replaced values remembered per reference (to recognise stale echoes).
const HISTORY: usize = 16;

/// Why a registry PUT was refused.
#[derive(Debug)]
pub enum UpdateError {
    /// Invalid body (400).
    Invalid(String),
    /// `If-Match` did not match the current `ETag` (412).
    PreconditionFailed { current: String },
    /// The merged registry would exceed what clients read (413): one writer must not make
    /// every tag unreadable for everyone.
    TooLarge { limit: u64 },
    /// Writing the file failed (500).
    Storage(io::Error),
}

struct State {
    registry: Registry,
    json: Vec<u8>,
    etag: String,
    replaced: HashMap<String, VecDeque<RegistryEntry>>,
}

/// The registry of one data directory.
pub struct RegistryStore {
    path: PathBuf,
    tmp: PathBuf,
    state: Mutex<State>,
}

impl RegistryStore {
    /// Loads `registry.json` (an absent file is an empty registry). A file that does not parse
    /// or validate is refused: serving (and later overwriting) it would lose its entries.
    pub fn open(data_dir: &Path, tmp: &Path) -> Result<RegistryStore, String> {
        let path = data_dir.join("registry.json");
        let registry = match fsio::open_regular(&path) {
            Ok(Some(_)) => {
                let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let reg =
                    Registry::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
                reg.validate()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                reg
            }
            Ok(None) => Registry::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(RegistryStore {
            path,
            tmp: tmp.to_path_buf(),
            state: Mutex::new(State::new(registry)),
        })
    }

    /// The registry as JSON and its `ETag`.
    pub fn get(&self) -> (Vec<u8>, String) {
        let st = self.lock();
        (st.json.clone(), st.etag.clone())
    }

    /// Merges `body` into the registry (see the module doc). Returns the new JSON and `ETag`.
    pub fn update(
        &self,
        body: &[u8],
        if_match: Option<&str>,
    ) -> Result<(Vec<u8>, String), UpdateError> {
        let incoming =
            Registry::from_json(body).map_err(|e| UpdateError::Invalid(e.to_string()))?;
        incoming
            .validate()
            .map_err(|e| UpdateError::Invalid(e.to_string()))?;
        let mut st = self.lock();
        if let Some(cond) = if_match
            && !etag_matches(cond, &st.etag)
        {
            return Err(UpdateError::PreconditionFailed {
                current: st.etag.clone(),
            });
        }
        let mut next = st.registry.clone();
        let mut replaced = Vec::new();
        for (reference, entry) in incoming.entries {
            match next.entries.get(&reference) {
                Some(cur) if *cur == entry => {}
                _ if st
                    .replaced
                    .get(&reference)
                    .is_some_and(|old| old.contains(&entry)) =>
                {
                    tracing::debug!(%reference, "ignoring a stale copy of a replaced entry");
                }
                _ => {
                    if let Some(old) = next.entries.insert(reference.clone(), entry) {
                        replaced.push((reference, old));
                    }
                }
            }
        }
        if next == st.registry {
            return Ok((st.json.clone(), st.etag.clone()));
        }
        let json = next.to_json();
        // Clients refuse a registry larger than this: never write one.
        if json.len() as u64 > karapace_remote::registry::MAX_REGISTRY_BYTES {
            return Err(UpdateError::TooLarge {
                limit: karapace_remote::registry::MAX_REGISTRY_BYTES,
            });
        }
        self.write(&json).map_err(UpdateError::Storage)?;
        for (reference, old) in replaced {
            let h = st.replaced.entry(reference).or_default();
            h.push_back(old);
            if h.len() > HISTORY {
                h.pop_front();
            }
        }
        st.etag = etag_of(&json);
        st.json = json;
        st.registry = next;
        Ok((st.json.clone(), st.etag.clone()))
    }

    fn write(&self, json: &[u8]) -> io::Result<()> {
        let mut t = TempFile::new(&self.tmp, "registry")?;
        t.file.write_all(json)?;
        t.persist(&self.path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-updated State: every field is
        // assigned after the file write succeeded.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn new(registry: Registry) -> State {
        let json = registry.to_json();
        State {
            etag: etag_of(&json),
            json,
            registry,
            replaced: HashMap::new(),
        }
    }
}

/// A strong `ETag`: the first 128 bits of blake3 of the JSON, quoted.
fn etag_of(json: &[u8]) -> String {
    let hex = blake3::hash(json).to_hex();
    format!("\"{}\"", &hex.as_str()[..32])
}

/// RFC 9110 `If-Match`: `*`, or a list of entity tags compared strongly (weak tags never match).
pub fn etag_matches(header: &str, current: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, at: &str) -> RegistryEntry {
        let id = format!("{n:02x}").repeat(32);
        RegistryEntry {
            short_id: id[..12].to_string(),
            env_id: id,
            name: None,
            pushed_at: at.to_string(),
        }
    }

    fn body(entries: &[(&str, RegistryEntry)]) -> Vec<u8> {
        let mut r = Registry::default();
        for (k, e) in entries {
            r.entries.insert((*k).to_string(), e.clone());
        }
        r.to_json()
    }

    fn store() -> (tempfile::TempDir, RegistryStore) {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let s = RegistryStore::open(dir.path(), &tmp).unwrap();
        (dir, s)
    }

    fn entries(s: &RegistryStore) -> Registry {
        Registry::from_json(&s.get().0).unwrap()
    }

    #[test]
    fn a_registry_never_grows_beyond_what_clients_read() {
        let (dir, s) = store();
        let t = "2026-01-01T00:00:00Z";
        // Long tags: a few thousand entries of ~250 bytes each, sent in batches.
        let tag = "t".repeat(120);
        let mut refused = false;
        for batch in 0..200 {
            let names: Vec<String> = (0..5000).map(|i| format!("n{batch}x{i}@{tag}")).collect();
            let items: Vec<(&str, RegistryEntry)> =
                names.iter().map(|n| (n.as_str(), entry(1, t))).collect();
            match s.update(&body(&items), None) {
                Ok(_) => {}
                Err(UpdateError::TooLarge { .. }) => {
                    refused = true;
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(refused, "the registry kept growing");
        let stored = fs::metadata(dir.path().join("registry.json"))
            .unwrap()
            .len();
        assert!(
            stored <= karapace_remote::registry::MAX_REGISTRY_BYTES,
            "{stored}"
        );
        Registry::from_json(&s.get().0).unwrap();
    }

    #[test]
    fn puts_merge_and_keep_absent_entries() {
        let (dir, s) = store();
        let t = "2026-01-01T00:00:00Z";
        s.update(&body(&[("a@1", entry(1, t))]), None).unwrap();
        s.update(&body(&[("b@1", entry(2, t))]), None).unwrap();
        let r = entries(&s);
        assert_eq!(r.entries.len(), 2);
        // Survives a restart.
        let again = RegistryStore::open(dir.path(), &dir.path().join("tmp")).unwrap();
        assert_eq!(entries(&again), r);
    }

    #[test]
    fn a_stale_echo_does_not_roll_back_a_newer_push() {
        let (_dir, s) = store();
        let old = entry(1, "2026-01-01T00:00:00Z");
        let new = entry(2, "2026-01-02T00:00:00Z");
        s.update(&body(&[("a@latest", old.clone())]), None).unwrap();
        // Client B re-tags a@latest; client A, which read the registry before, then PUTs its
        // whole (stale) map plus its own tag.
        s.update(&body(&[("a@latest", new.clone())]), None).unwrap();
        s.update(
            &body(&[
                ("a@latest", old.clone()),
                ("c@1", entry(3, "2026-01-03T00:00:00Z")),
            ]),
            None,
        )
        .unwrap();
        let r = entries(&s);
        assert_eq!(r.entries["a@latest"], new);
        assert!(r.entries.contains_key("c@1"));
    }

    #[test]
    fn if_match_guards_updates() {
        let (_dir, s) = store();
        let (_, etag0) = s.get();
        let (_, etag1) = s
            .update(
                &body(&[("a@1", entry(1, "2026-01-01T00:00:00Z"))]),
                Some(&etag0),
            )
            .unwrap();
        assert_ne!(etag0, etag1);
        let err = s
            .update(
                &body(&[("b@1", entry(2, "2026-01-01T00:00:00Z"))]),
                Some(&etag0),
            )
            .unwrap_err();
        assert!(matches!(err, UpdateError::PreconditionFailed { current } if current == etag1));
        assert_eq!(entries(&s).entries.len(), 1);
        assert!(etag_matches("*", &etag1));
        assert!(etag_matches(&format!("\"x\", {etag1}"), &etag1));
        assert!(!etag_matches(&format!("W/{etag1}"), &etag1));
    }

    #[test]
    fn invalid_bodies_change_nothing() {
        let (dir, s) = store();
        s.update(&body(&[("a@1", entry(1, "2026-01-01T00:00:00Z"))]), None)
            .unwrap();
        let before = fs::read(dir.path().join("registry.json")).unwrap();
        let mut bad_id = entry(2, "2026-01-01T00:00:00Z");
        bad_id.env_id = "../../etc".into();
        for b in [
            b"not json".to_vec(),
            b"{}".to_vec(),
            br#"{"entries": []}"#.to_vec(),
            body(&[("Bad Ref", entry(2, "2026-01-01T00:00:00Z"))]),
            body(&[("ok@1", bad_id)]),
        ] {
            assert!(matches!(s.update(&b, None), Err(UpdateError::Invalid(_))));
        }
        assert_eq!(fs::read(dir.path().join("registry.json")).unwrap(), before);
    }

    #[test]
    fn a_corrupt_registry_file_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("registry.json"), b"{broken").unwrap();
        let err = RegistryStore::open(dir.path(), dir.path()).err().unwrap();
        assert!(err.contains("registry.json"), "{err}");
    }
}
