//! `push` and `pull`: moving an environment to and from a remote (`docs/remote.md`).
//!
//! What moves: the environment record ([`document::SharedEnv`]), the objects holding its lock
//! and normalized manifest, its base and dependency layers and its snapshots, with their tar
//! objects. Not its policy layer: that holds facts of the pushing machine (the user's passwd
//! entry and home, the manifest's directory), so the pulling side writes its own from the
//! lock and manifest, for its own user.
//!
//! Push uploads in dependency order — objects, then layer manifests, then the record, then the
//! tag — so a reader never sees a record whose blobs are missing. Pull trusts nothing: the
//! record's seal and `env_id`, the lock's `env_id` (recomputed), the manifest's hash, every layer's
//! hash (recomputed from its fields) and chain, every object's blake3 are checked before anything
//! is recorded, and the environment appears only when its metadata is written last; an
//! interrupted pull leaves verified objects that the next one reuses (docs/remote.md).

pub mod config;
mod document;
mod guard;
mod oci;
mod progress;
pub mod reference;
pub mod transport;
mod v1;

use std::io::{Cursor, Read};

use karapace_schema::LockFile;
use karapace_store::{
    EnvContent, EnvMetadata, EnvState, LayerHash, LayerKind, LayerManifest, Store, StoreError,
    validate_name,
};
use serde::Serialize;

use super::{Engine, policy_layer};
use crate::error::{CoreError, Result};
use document::{MAX_RECORD_BYTES, SharedEnv};
use progress::Progress;
use reference::{Reference, Tagged};
use transport::{BlobKind, BlobRemote, BlobSource, RegistryEntry, Remote};

/// Opens the transport a resolved remote speaks.
pub fn connect(config: &config::RemoteConfig) -> Result<Box<dyn Remote>> {
    match config.transport {
        config::Transport::V1 => Ok(Box::new(v1::V1Remote::connect(config)?)),
        config::Transport::Oci => Ok(Box::new(oci::OciRemote::connect(config)?)),
    }
}

/// Largest layer manifest accepted from a remote (real ones are about 400 bytes).
const MAX_LAYER_MANIFEST_BYTES: u64 = 1 << 20;
/// Largest lock or manifest record accepted from a remote.
const MAX_SPEC_RECORD_BYTES: u64 = 16 << 20;

/// What `push` did (`push --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushReport {
    pub env_id: String,
    pub layers_pushed: usize,
    pub layers_skipped: usize,
    pub objects_pushed: usize,
    pub objects_skipped: usize,
    pub tag: Option<String>,
}

/// What `pull` did (`pull --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullReport {
    pub env_id: String,
    pub layers_pulled: usize,
    pub layers_skipped: usize,
    pub objects_pulled: usize,
    pub objects_skipped: usize,
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn kind_name(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Object => "object",
        BlobKind::Layer => "layer",
        BlobKind::Metadata => "environment record",
    }
}

/// A blob the remote sent that is not what its key promises.
fn corrupt(remote: &dyn BlobSource, kind: BlobKind, key: &str, reason: &str) -> CoreError {
    CoreError::Remote(format!(
        "{}: {} {key} is not valid ({reason}); nothing was recorded",
        remote.location(),
        kind_name(kind)
    ))
}

fn missing(remote: &dyn BlobSource, kind: BlobKind, key: &str) -> CoreError {
    CoreError::Remote(format!(
        "{}: the remote has no {} {key} (an incomplete push?)",
        remote.location(),
        kind_name(kind)
    ))
}

/// Downloads a small blob whole, refusing more than `max` bytes.
fn fetch_small(remote: &dyn BlobSource, kind: BlobKind, key: &str, max: u64) -> Result<Vec<u8>> {
    let reader = remote
        .get(kind, key)?
        .ok_or_else(|| missing(remote, kind, key))?;
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes).map_err(|e| {
        CoreError::Remote(format!(
            "{}: reading {} {key}: {e}",
            remote.location(),
            kind_name(kind)
        ))
    })?;
    if bytes.len() as u64 > max {
        return Err(corrupt(
            remote,
            kind,
            key,
            &format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// Uploads `bytes` unless the remote has them; true when uploaded.
fn put_bytes(remote: &dyn BlobRemote, kind: BlobKind, key: &str, bytes: &[u8]) -> Result<bool> {
    if remote.has(kind, key)? {
        return Ok(false);
    }
    let owned = bytes.to_vec();
    remote.put(kind, key, bytes.len() as u64, &|| {
        Ok(Box::new(Cursor::new(owned.clone())) as Box<dyn Read + Send>)
    })?;
    Ok(true)
}

/// Everything a push sends, gathered from the store once, whatever the transport.
pub struct Outgoing<'s> {
    pub store: &'s Store,
    pub env: EnvMetadata,
    /// Base and dependency layers (bottom to top), snapshots (oldest first).
    pub content: EnvContent,
    pub lock: Vec<u8>,
    pub lock_key: String,
    pub manifest: Vec<u8>,
    pub manifest_key: String,
    /// The sealed environment record.
    pub record: String,
}

impl Outgoing<'_> {
    /// A reader of a local object that verifies it as it is read: a damaged local copy fails
    /// the upload instead of being shared.
    pub fn open_object(&self, key: &str) -> std::io::Result<Box<dyn Read + Send>> {
        let reader = self.store.open_object(key).map_err(std::io::Error::other)?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, reader)))
    }

    /// The layers and snapshots, in push order.
    pub fn layer_manifests(&self) -> impl Iterator<Item = &LayerManifest> {
        self.content.layers.iter().chain(&self.content.snapshots)
    }
}

/// The bytes a layer manifest travels as.
pub fn layer_manifest_bytes(m: &LayerManifest) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(m).map_err(|e| CoreError::Encode {
        what: format!("layer {}", m.hash),
        message: e.to_string(),
    })
}

/// Push over a blob store by key (protocol v1): objects, layer manifests, the record, then the
/// tag, skipping what the remote has.
pub fn push_blobs(
    remote: &dyn BlobRemote,
    out: &Outgoing<'_>,
    tag: Option<&Tagged>,
) -> Result<PushReport> {
    let env = &out.env;
    let mut report = PushReport {
        env_id: env.env_id.to_string(),
        tag: tag.map(ToString::to_string),
        ..PushReport::default()
    };
    let objects = out.content.objects();
    let layers: Vec<&LayerManifest> = out.layer_manifests().collect();
    let progress = Progress::new("pushing", &env.short_id, objects.len() + layers.len() + 3);
    for key in &objects {
        progress.step(key);
        if remote.has(BlobKind::Object, key)? {
            report.objects_skipped += 1;
            continue;
        }
        let len = out.store.object_len(key)?;
        remote.put(BlobKind::Object, key, len, &|| out.open_object(key))?;
        report.objects_pushed += 1;
    }
    for (key, bytes) in [
        (&out.lock_key, &out.lock),
        (&out.manifest_key, &out.manifest),
    ] {
        progress.step(key);
        if put_bytes(remote, BlobKind::Object, key, bytes)? {
            report.objects_pushed += 1;
        } else {
            report.objects_skipped += 1;
        }
    }
    for m in layers {
        progress.step(&m.hash);
        if put_bytes(remote, BlobKind::Layer, &m.hash, &layer_manifest_bytes(m)?)? {
            report.layers_pushed += 1;
        } else {
            report.layers_skipped += 1;
        }
    }
    progress.step(&env.env_id);
    // Always sent: the record changes when snapshots are added.
    remote.put(
        BlobKind::Metadata,
        &env.env_id,
        out.record.len() as u64,
        &|| Ok(Box::new(Cursor::new(out.record.clone().into_bytes())) as Box<dyn Read + Send>),
    )?;
    if let Some(tag) = tag {
        remote.publish(
            tag,
            &RegistryEntry {
                env_id: env.env_id.to_string(),
                short_id: env.short_id.clone(),
                name: env.name.clone(),
                pushed_at: karapace_store::now_rfc3339(),
            },
        )?;
    }
    progress.finish();
    Ok(report)
}

impl Engine {
    /// `push`: uploads the environment `query` names and, with `tag`, publishes it under it.
    pub fn push(
        &self,
        query: &str,
        remote: &dyn Remote,
        tag: Option<&Tagged>,
    ) -> Result<PushReport> {
        let store = self.open_existing(query)?;
        let env = self.find(&store, query)?;
        if env.state == EnvState::Defined {
            return Err(CoreError::State(format!(
                "environment {} was never built; build it before pushing",
                env.short_id
            )));
        }
        let content = store.env_content(&env.env_id)?;
        let policy_tree = policy_layer::layer_tree(&store, &env)?;
        let (lock, manifest) = policy_layer::read_shared_records(&policy_tree)?;
        let manifest_key = blake3_hex(&manifest);
        if manifest_key != env.manifest_hash {
            return Err(CoreError::Damaged(format!(
                "the policy layer of {} does not hold the manifest it was built from; rebuild it",
                env.short_id
            )));
        }
        let lock_key = blake3_hex(&lock);
        let record = SharedEnv {
            meta: EnvMetadata {
                state: EnvState::Built,
                policy_layer: None,
                ..env.clone()
            },
            lock_object: lock_key.clone(),
            manifest_object: manifest_key.clone(),
            snapshots: content.snapshots.iter().map(|m| m.hash.clone()).collect(),
        }
        .encode()?;
        let out = Outgoing {
            store: &store,
            env,
            content,
            lock,
            lock_key,
            manifest,
            manifest_key,
            record,
        };
        remote.push(&out, tag)
    }

    /// `pull`: fetches the environment `reference` names into this store, verified, atomically.
    pub fn pull(&self, remote: &dyn Remote, reference: &Reference) -> Result<PullReport> {
        let (env_id, source) = remote.open(reference)?;
        let remote = source.as_ref();
        let tag = match reference {
            Reference::Tagged(tag) => Some(tag),
            Reference::EnvId(_) => None,
        };
        let fetched = fetch_description(remote, &env_id)?;
        let store = self.open_write()?;
        // gc waits for this lease: nothing received below is collected before it is recorded.
        let _lease = store.build_lease()?;
        let existing = match store.env(&env_id) {
            Ok(env) if env.state != EnvState::Defined => Some(env),
            Ok(_) | Err(StoreError::UnknownEnv(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(env) = &existing {
            let record = &fetched.record.meta;
            if env.base_layer != record.base_layer
                || env.dependency_layers != record.dependency_layers
            {
                return Err(CoreError::Remote(format!(
                    "{}: environment {} exists here with other layers than the remote's; \
                     destroy it first to take the remote's",
                    remote.location(),
                    env.short_id
                )));
            }
        }
        let mut report = PullReport {
            env_id: env_id.clone(),
            // The lock and manifest records were fetched to verify the environment.
            objects_pulled: 2,
            ..PullReport::default()
        };
        let layers = fetch_layers(remote, &store, &fetched, &mut report)?;
        receive_objects(remote, &store, &layers, &env_id, &mut report)?;
        let _locked = store.lock_exclusive()?;
        for m in layers.iter().filter(|m| m.kind != LayerKind::Snapshot) {
            store.receive_layer(m)?;
        }
        let top = match &existing {
            Some(env) => env.top_layer().clone(),
            None => write_policy_layer(&store, &fetched)?,
        };
        for m in layers.iter().filter(|m| m.kind == LayerKind::Snapshot) {
            // A snapshot's parent is the environment's topmost layer *here*; its hash does not
            // depend on it.
            let m = LayerManifest {
                parent: Some(top.clone()),
                // A label is the remote's word: kept only when it is one we would accept.
                label: m
                    .label
                    .clone()
                    .filter(|l| karapace_store::check_label(l).is_ok()),
                ..m.clone()
            };
            store.receive_layer(&m)?;
        }
        if existing.is_none() {
            let meta = &fetched.record.meta;
            let name = tag
                .map(Tagged::name)
                .filter(|n| validate_name(n).is_ok())
                .filter(|n| !name_taken(&store, n));
            store.create_env(EnvMetadata {
                env_id: meta.env_id.clone(),
                short_id: meta.env_id.short_id().to_string(),
                name: name.map(str::to_string),
                state: EnvState::Built,
                manifest_hash: meta.manifest_hash.clone(),
                base_layer: meta.base_layer.clone(),
                dependency_layers: meta.dependency_layers.clone(),
                policy_layer: Some(top),
                // Set by the store.
                created_at: String::new(),
                updated_at: String::new(),
                checksum: String::new(),
            })?;
            store.mark_pulled(&env_id, &remote.location())?;
        }
        Ok(report)
    }
}

/// The record, lock and manifest of an environment on a remote, verified against each other.
struct Fetched {
    record: SharedEnv,
    lock: LockFile,
    manifest_json: Vec<u8>,
}

fn fetch_description(remote: &dyn BlobSource, env_id: &str) -> Result<Fetched> {
    let bytes = fetch_small(remote, BlobKind::Metadata, env_id, MAX_RECORD_BYTES)?;
    let record = SharedEnv::decode(&bytes, env_id)
        .map_err(|reason| corrupt(remote, BlobKind::Metadata, env_id, &reason))?;
    let lock_bytes = fetch_small(
        remote,
        BlobKind::Object,
        &record.lock_object,
        MAX_SPEC_RECORD_BYTES,
    )?;
    let lock_bad = |reason: &str| corrupt(remote, BlobKind::Object, &record.lock_object, reason);
    if blake3_hex(&lock_bytes) != record.lock_object {
        return Err(lock_bad("its bytes do not hash to its key"));
    }
    let text = std::str::from_utf8(&lock_bytes).map_err(|_| lock_bad("not UTF-8 text"))?;
    let lock = LockFile::parse(text).map_err(|e| lock_bad(&format!("not a lock file: {e}")))?;
    lock.verify_integrity()
        .map_err(|e| lock_bad(&e.to_string()))?;
    if lock.env_id != env_id {
        return Err(lock_bad(&format!(
            "the lock is that of environment {}",
            lock.env_id
        )));
    }
    let manifest_json = fetch_small(
        remote,
        BlobKind::Object,
        &record.manifest_object,
        MAX_SPEC_RECORD_BYTES,
    )?;
    let manifest_key = blake3_hex(&manifest_json);
    if manifest_key != record.manifest_object || manifest_key != record.meta.manifest_hash {
        return Err(corrupt(
            remote,
            BlobKind::Object,
            &record.manifest_object,
            "not the manifest the environment records",
        ));
    }
    Ok(Fetched {
        record,
        lock,
        manifest_json,
    })
}

/// The environment's layer manifests, bottom to top, then its snapshots: taken from this store
/// when it has them, otherwise fetched and checked (hash from the fields, kind and chain).
fn fetch_layers(
    remote: &dyn BlobSource,
    store: &Store,
    fetched: &Fetched,
    report: &mut PullReport,
) -> Result<Vec<LayerManifest>> {
    let meta = &fetched.record.meta;
    let mut out: Vec<LayerManifest> = Vec::new();
    let wanted = std::iter::once(&meta.base_layer)
        .chain(&meta.dependency_layers)
        .chain(&fetched.record.snapshots);
    for hash in wanted {
        let m = if let Ok(local) = store.layer(hash) {
            report.layers_skipped += 1;
            local
        } else {
            let bytes = fetch_small(remote, BlobKind::Layer, hash, MAX_LAYER_MANIFEST_BYTES)?;
            let m: LayerManifest = serde_json::from_slice(&bytes).map_err(|e| {
                corrupt(
                    remote,
                    BlobKind::Layer,
                    hash,
                    &format!("not a layer manifest: {e}"),
                )
            })?;
            report.layers_pulled += 1;
            m
        };
        let expected_kind = if out.is_empty() {
            Some(LayerKind::Base)
        } else if out.len() <= meta.dependency_layers.len() {
            None
        } else {
            Some(LayerKind::Snapshot)
        };
        check_layer(&m, hash, expected_kind, out.last(), meta)
            .map_err(|reason| corrupt(remote, BlobKind::Layer, hash, &reason))?;
        out.push(m);
    }
    Ok(out)
}

/// A layer is what its key says and sits where the record puts it. `kind` `None` = a
/// dependency-like layer (any non-base, non-snapshot kind) whose parent is `below`.
fn check_layer(
    m: &LayerManifest,
    key: &str,
    kind: Option<LayerKind>,
    below: Option<&LayerManifest>,
    meta: &EnvMetadata,
) -> std::result::Result<(), String> {
    if m.hash != key {
        return Err(format!("it names layer {}", m.hash));
    }
    if m.expected_hash().as_deref() != Some(key) {
        return Err("its fields do not hash to its key".into());
    }
    match kind {
        Some(LayerKind::Base) if m.kind != LayerKind::Base || m.parent.is_some() => {
            Err("the bottom layer is not a base layer".into())
        }
        Some(LayerKind::Snapshot)
            if m.kind != LayerKind::Snapshot
                || m.env_id.as_deref() != Some(meta.env_id.as_str())
                || m.base_layer.as_deref() != Some(meta.base_layer.as_str()) =>
        {
            Err("not a snapshot of this environment".into())
        }
        None if matches!(m.kind, LayerKind::Base | LayerKind::Snapshot)
            || m.parent.as_deref() != below.map(|b| b.hash.as_str()) =>
        {
            Err("not the next layer of the environment's chain".into())
        }
        _ => Ok(()),
    }
}

/// Downloads every object the layers need that this store lacks, each verified as it streams.
fn receive_objects(
    remote: &dyn BlobSource,
    store: &Store,
    layers: &[LayerManifest],
    env_id: &str,
    report: &mut PullReport,
) -> Result<()> {
    let mut keys: Vec<&String> = layers.iter().flat_map(|m| &m.object_refs).collect();
    let mut seen = std::collections::BTreeSet::new();
    keys.retain(|k| seen.insert(k.as_str()));
    let progress = Progress::new("pulling", &env_id[..12], keys.len());
    let staging = store.staging_dir()?;
    for key in keys {
        progress.step(key);
        if store.has_object(key) {
            report.objects_skipped += 1;
            continue;
        }
        let reader = remote
            .get(BlobKind::Object, key)?
            .ok_or_else(|| missing(remote, BlobKind::Object, key))?;
        // A layer's tar holds at most archive_max_bytes of content plus its headers.
        let limits = store.archive_limits();
        let max = limits
            .max_bytes
            .saturating_add(limits.max_entries.saturating_mul(1536));
        let mut reader = guard::Guarded::new(
            reader,
            format!("{}: object {key}", remote.location()),
            max,
            store.root().to_path_buf(),
        );
        match store.receive_object(&staging, key, &mut reader) {
            Ok(_) => {
                report.objects_pulled += 1;
                if let Some(sha) = remote.verified_sha256(BlobKind::Object, key) {
                    store.record_sha256(key, &sha)?;
                }
            }
            Err(StoreError::Integrity { reason, .. }) => {
                return Err(corrupt(remote, BlobKind::Object, key, &reason));
            }
            Err(_) if reader.tripped.is_some() => {
                return Err(CoreError::Remote(reader.tripped.take().unwrap_or_default()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    progress.finish();
    Ok(())
}

/// Writes the pulled environment's policy layer for this machine's user; returns its hash.
fn write_policy_layer(store: &Store, fetched: &Fetched) -> Result<LayerHash> {
    let meta = &fetched.record.meta;
    let top = meta
        .dependency_layers
        .last()
        .unwrap_or(&meta.base_layer)
        .clone();
    // The lowers only serve to give a user's uid a passwd entry (root needs none): root's pull
    // does not unpack every layer just to learn that; the first session unpacks them.
    let lowers = if nix::unistd::getuid().is_root() {
        Vec::new()
    } else {
        meta.dependency_layers
            .iter()
            .rev()
            .chain(std::iter::once(&meta.base_layer))
            .map(|h| store.layer_tree(h))
            .collect::<std::result::Result<Vec<_>, _>>()?
    };
    policy_layer::write_records(
        store,
        &fetched.manifest_json,
        &fetched.lock,
        None,
        &lowers,
        Some(&top),
    )
}

fn name_taken(store: &Store, name: &str) -> bool {
    store.list_envs_recorded().map_or(true, |envs| {
        envs.iter().any(|e| e.name.as_deref() == Some(name))
    })
}
