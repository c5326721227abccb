//! The lifecycle engine: everything the CLI (and later the TUI and D-Bus front-ends) can ask of
//! Karapace. It composes the schema, the store and the runtime backends (`backends`, the one
//! place that picks one); it never prints: a session's output is its command's (or, on the mock
//! backend, the line that stands in for it).

mod backends;
mod build;
pub mod desktop;
pub mod host_sharing;
pub mod lifecycle;
mod pipeline;
mod policy_layer;
mod progress;
mod reproducible;
pub mod resolve;
mod run;
pub(crate) mod runtime;
pub mod share;
pub mod trees;
pub mod usage;
pub mod watch;

use std::path::{Path, PathBuf};

use karapace_store::{CorruptEntry, EnvMetadata, EnvState, Store, StoreError};

pub use build::{BuildOutcome, BuildRequest};
pub use run::{RunMode, SessionOptions};

use crate::error::{CoreError, Result};
use lifecycle::Op;
use resolve::Identified;

/// The index in `envs` (the readable environments) of the one `query` designates. While any
/// metadata file is unreadable it may hold the environment meant, whose name is then unknown; so
/// only a query that cannot mean it is answered: a full `env_id`, or an exact `short_id` or name
/// of a readable environment that is no unreadable `env_id`'s prefix. Anything else — a prefix,
/// a name nothing readable has — is refused with the way out.
fn resolve_readable(
    envs: &[EnvMetadata],
    unreadable: Vec<CorruptEntry>,
    query: &str,
) -> Result<usize> {
    let found = resolve::resolve(envs, query);
    if unreadable.is_empty() {
        return found;
    }
    let designated: Vec<CorruptEntry> = unreadable
        .iter()
        .filter(|b| b.env_id().is_some_and(|id| id.starts_with(query)))
        .cloned()
        .collect();
    let full_id = found.as_ref().is_ok_and(|&i| *envs[i].env_id == *query);
    let exact = found
        .as_ref()
        .is_ok_and(|&i| envs[i].short_id == query || envs[i].name.as_deref() == Some(query));
    if full_id || (exact && designated.is_empty()) {
        found
    } else {
        Err(unreadable_error(designated, unreadable))
    }
}

/// The refusal of a query that may mean an environment whose metadata cannot be read: the files
/// it may mean when their names say so, else every unreadable file.
fn unreadable_error(designated: Vec<CorruptEntry>, all: Vec<CorruptEntry>) -> CoreError {
    let hint = match designated.first().and_then(CorruptEntry::env_id) {
        Some(id) if designated.len() == 1 => format!(
            "`karapace destroy {id}` removes that environment; `karapace verify-store` lists every unreadable file"
        ),
        _ => "while an environment's metadata cannot be read, name environments by full env_id, or by exact short id or name; `karapace list` names each unreadable file and the way out".to_owned(),
    };
    let entries = if designated.is_empty() {
        all
    } else {
        designated
    };
    CoreError::from(StoreError::CorruptMetadata(entries)).with_hint(&hint)
}

/// What `destroy` removed.
#[derive(Debug)]
pub enum Destroyed {
    Env(Box<EnvMetadata>),
    /// An environment whose metadata could not be read, by its `env_id`.
    Unreadable(String),
}

impl Destroyed {
    pub fn env_id(&self) -> &str {
        match self {
            Destroyed::Env(env) => &env.env_id,
            Destroyed::Unreadable(id) => id,
        }
    }
}

/// The store with the archive caps of the user's config file (`archive_max_entries`,
/// `archive_max_bytes`) for every layer it unpacks, as images get them.
/// The snapshot of `env` that `given` names: its full hash, or a prefix that only one of the
/// environment's snapshots starts with. Nothing matching is an unknown snapshot (exit 3, as
/// for a full hash); several are an error listing them.
fn resolve_snapshot(store: &Store, env: &EnvMetadata, given: &str) -> Result<String> {
    let snaps = store.snapshots(&env.env_id)?;
    if snaps.iter().any(|s| s.restore_hash == given) {
        return Ok(given.to_owned());
    }
    let lower = given.to_ascii_lowercase();
    let matches: Vec<&str> = if given.is_empty() {
        Vec::new()
    } else {
        snaps
            .iter()
            .map(|s| s.restore_hash.as_str())
            .filter(|h| h.starts_with(&lower))
            .collect()
    };
    match matches.as_slice() {
        [] => Err(StoreError::UnknownSnapshot(given.to_owned()).into()),
        [one] => Ok((*one).to_owned()),
        many => Err(CoreError::State(format!(
            "ambiguous snapshot prefix '{given}': matches {} snapshots: {}",
            many.len(),
            many.join(", ")
        ))),
    }
}

/// The store every command uses without `--store`: `~/.local/share/karapace`.
pub fn default_root() -> Option<PathBuf> {
    karapace_dirs::home().map(|h| h.join(".local/share/karapace"))
}

fn with_configured_limits(store: Store) -> Result<Store> {
    let file = karapace_images::config::config_file_path();
    store.set_archive_limits(karapace_images::archive_limits_from(file.as_deref())?);
    Ok(store)
}

/// The engine over one store root.
#[derive(Debug, Clone)]
pub struct Engine {
    root: PathBuf,
    /// `--allow-without-landlock` (the user's config can say the same, see
    /// [`runtime::allow_without_landlock`]).
    allow_without_landlock: bool,
}

impl Identified for EnvMetadata {
    fn env_id(&self) -> &str {
        &self.env_id
    }
    fn short_id(&self) -> &str {
        &self.short_id
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl Engine {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Engine {
            root: root.into(),
            allow_without_landlock: false,
        }
    }

    /// Lets environments run on a kernel without Landlock (`--allow-without-landlock`).
    #[must_use]
    pub fn allow_without_landlock(mut self, allow: bool) -> Self {
        self.allow_without_landlock = allow;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens the store for a read-only command; `None` when there is no store yet. Never creates one.
    pub fn open_read(&self) -> Result<Option<Store>> {
        match Store::open(&self.root) {
            Ok(store) => {
                store.set_tree_worker(self.tree_worker());
                Ok(Some(with_configured_limits(store)?))
            }
            Err(StoreError::NoStore(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens (creating if needed) the store for a mutating command; this also recovers from any
    /// interrupted mutation recorded in the write-ahead log.
    pub fn open_write(&self) -> Result<Store> {
        with_configured_limits(Store::open_or_init_with(&self.root, self.tree_worker())?)
    }

    /// Who works on this store's trees (see [`trees`]).
    fn tree_worker(&self) -> karapace_store::SharedTreeWorker {
        trees::Trees::for_store(&self.root, self.allow_without_landlock)
    }

    /// Opens an existing store for a command that needs an environment.
    fn open_existing(&self, query: &str) -> Result<Store> {
        self.open_read()?.ok_or_else(|| CoreError::NoMatch {
            query: query.to_owned(),
            suggestions: Vec::new(),
        })
    }

    /// Opens an existing store for a command that records something in it (a session), after
    /// recovering any interrupted mutation, as `open_write` does; but it creates nothing, so it
    /// skips `open_write`'s directory checks: running a command needs an environment anyway.
    fn open_existing_recovered(&self, query: &str) -> Result<Store> {
        let store = self.open_existing(query)?;
        drop(store.lock_exclusive()?);
        Ok(store)
    }

    /// All environments with their effective state (Running when a session is live).
    /// Every environment, or an error naming each unreadable metadata file (for what needs them
    /// all, as `du`).
    pub fn list(&self) -> Result<Vec<EnvMetadata>> {
        let (envs, unreadable) = self.list_readable()?;
        if !unreadable.is_empty() {
            return Err(StoreError::CorruptMetadata(unreadable).into());
        }
        Ok(envs)
    }

    /// Finds the environment designated by `query` (`env_id`, `short_id`, prefix or name), with
    /// its effective state. Only that environment's sessions are read: `exec` must not get slower
    /// with every environment in the store.
    ///
    /// A metadata file that cannot be read does not stop commands about other environments
    /// ([`resolve_readable`] says which queries are still answered).
    pub fn find(&self, store: &Store, query: &str) -> Result<EnvMetadata> {
        let (mut envs, unreadable) = store.scan_envs()?;
        let index = resolve_readable(&envs, unreadable, query)?;
        Ok(store.with_live_state(envs.swap_remove(index))?)
    }

    /// Every readable environment with its effective state, and the metadata files that could
    /// not be read (`list` shows the first and warns about the second).
    pub fn list_readable(&self) -> Result<(Vec<EnvMetadata>, Vec<CorruptEntry>)> {
        let Some(store) = self.open_read()? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let (envs, unreadable) = store.scan_envs()?;
        let mut envs = envs
            .into_iter()
            .map(|m| store.with_live_state(m))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        envs.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.env_id.cmp(&b.env_id))
        });
        Ok((envs, unreadable))
    }

    pub fn inspect(&self, query: &str) -> Result<EnvMetadata> {
        let store = self.open_existing(query)?;
        self.find(&store, query)
    }

    pub fn freeze(&self, query: &str) -> Result<EnvMetadata> {
        self.transition(query, Op::Freeze, EnvState::Frozen)
    }

    pub fn archive(&self, query: &str) -> Result<EnvMetadata> {
        self.transition(query, Op::Archive, EnvState::Archived)
    }

    fn transition(&self, query: &str, op: Op, to: EnvState) -> Result<EnvMetadata> {
        let store = self.open_write()?;
        let env = self.find(&store, query)?;
        lifecycle::check(op, env.state, query)?;
        store.set_state(&env.env_id, to)?;
        Ok(store.env(&env.env_id)?)
    }

    pub fn destroy(&self, query: &str) -> Result<Destroyed> {
        let store = self.open_write()?;
        // An environment whose metadata cannot be read, named by its full env_id: removed all the
        // same (its trees are found by the id alone), or one bad file would pin it forever. Its
        // layers stay until `gc`, which refuses to run while any metadata is unreadable.
        let (mut envs, unreadable) = store.scan_envs()?;
        if unreadable.iter().any(|b| b.env_id() == Some(query)) {
            store.destroy_env(query)?;
            desktop::remove_by_env_id(query, &self.root);
            return Ok(Destroyed::Unreadable(query.to_owned()));
        }
        let index = resolve_readable(&envs, unreadable, query)?;
        let env = store.with_live_state(envs.swap_remove(index))?;
        lifecycle::check(Op::Destroy, env.state, query)?;
        store.destroy_env(&env.env_id)?;
        desktop::remove(&env, &self.root);
        Ok(Destroyed::Env(Box::new(env)))
    }

    /// Writes (or replaces) the desktop entries of `apps` for a built environment. Problems are
    /// reported in the result, never as an error: the environment is built either way.
    pub fn export_desktop(&self, env: &EnvMetadata, apps: &[String]) -> desktop::Exported {
        if apps.is_empty() {
            desktop::remove(env, &self.root);
            return desktop::Exported::default();
        }
        let layers = self.open_read().and_then(|store| {
            let store = store.ok_or_else(|| CoreError::NoMatch {
                query: env.short_id.clone(),
                suggestions: Vec::new(),
            })?;
            let policy_tree = policy_layer::layer_tree(&store, env)?;
            runtime::lowers(&store, env, &policy_tree)
        });
        match layers {
            Ok(trees) => desktop::export(
                env,
                &desktop::Layers { trees },
                apps,
                &self.root,
                default_root().as_deref(),
            ),
            Err(e) => desktop::Exported {
                failed: vec![(apps.join(", "), e.to_string())],
                ..desktop::Exported::default()
            },
        }
    }

    /// The desktop entries of an environment of this store.
    pub fn desktop_entries(&self, env: &EnvMetadata) -> Vec<PathBuf> {
        desktop::entries(env, &self.root)
    }

    pub fn rename(&self, query: &str, new_name: &str) -> Result<EnvMetadata> {
        karapace_schema::validate_env_name(new_name).map_err(|e| CoreError::InvalidName {
            name: new_name.to_owned(),
            reason: e.to_string(),
        })?;
        let store = self.open_write()?;
        let env = self.find(&store, query)?;
        store.rename_env(&env.env_id, new_name)?;
        Ok(store.env(&env.env_id)?)
    }

    /// Snapshots the writable layer; returns the environment and the snapshot hash.
    pub fn commit(&self, query: &str) -> Result<(EnvMetadata, String)> {
        self.commit_labelled(query, None)
    }

    /// `commit --message`: the snapshot gets (or, for unchanged content, changes to) `label`.
    pub fn commit_labelled(
        &self,
        query: &str,
        label: Option<&str>,
    ) -> Result<(EnvMetadata, String)> {
        if let Some(label) = label {
            karapace_store::check_label(label).map_err(CoreError::Usage)?;
        }
        let store = self.open_write()?;
        let env = self.find(&store, query)?;
        lifecycle::check(Op::Commit, env.state, query)?;
        let hash = store.commit_labelled(&env.env_id, label)?;
        Ok((env, hash.to_string()))
    }

    /// Restores a snapshot named by its hash or a unique prefix of it; returns the environment
    /// and the snapshot's full hash.
    pub fn restore(&self, query: &str, snapshot: &str) -> Result<EnvMetadata> {
        self.restore_snapshot(query, snapshot).map(|(env, _)| env)
    }

    /// [`Engine::restore`], also returning the full hash of the snapshot restored.
    pub fn restore_snapshot(&self, query: &str, snapshot: &str) -> Result<(EnvMetadata, String)> {
        let store = self.open_write()?;
        let env = self.find(&store, query)?;
        lifecycle::check(Op::Restore, env.state, query)?;
        let hash = resolve_snapshot(&store, &env, snapshot)?;
        store.restore(&env.env_id, &hash)?;
        Ok((env, hash))
    }

    pub fn snapshots(
        &self,
        query: &str,
    ) -> Result<(EnvMetadata, Vec<karapace_store::SnapshotInfo>)> {
        let store = self.open_existing(query)?;
        let env = self.find(&store, query)?;
        let snaps = store.snapshots(&env.env_id)?;
        Ok((env, snaps))
    }

    pub fn diff(&self, query: &str) -> Result<(EnvMetadata, karapace_store::Diff)> {
        let store = self.open_existing(query)?;
        let env = self.find(&store, query)?;
        let diff = store.diff(&env.env_id)?;
        Ok((env, diff))
    }

    pub fn gc(&self, dry_run: bool) -> Result<karapace_store::GcReport> {
        let report = if dry_run {
            // A dry run is read-only: it must not create a store.
            match self.open_read()? {
                Some(store) => store.gc(true),
                None => Ok(karapace_store::GcReport::default()),
            }
        } else {
            self.open_write()?.gc(false)
        };
        // gc cannot know what an unreadable environment uses, so it removes nothing then.
        report.map_err(|e| match e {
            StoreError::CorruptMetadata(_) => CoreError::from(e).with_hint(
                "gc removes nothing while an environment's metadata cannot be read (it cannot know what that environment uses): `karapace list` names each unreadable file and the way out",
            ),
            e => e.into(),
        })
    }

    /// The host paths an `exec` session of `env` would see, as the policy files lower them today
    /// (interactive sessions add the GUI sockets the policy grants). An error says why sessions
    /// would be refused (a mount outside the policy, a missing source).
    pub fn host_shares(&self, env: &EnvMetadata) -> Result<Vec<karapace_helper_client::BindMount>> {
        let store = self.open_existing(&env.env_id)?;
        let tree = policy_layer::layer_tree(&store, env)?;
        let lock = policy_layer::read_lock(&tree)?;
        let source_dir = policy_layer::read_source_dir(&tree)?;
        let (vars, _) = host_sharing::env::text_vars(std::env::vars_os());
        let setup = runtime::host_setup(&lock, &source_dir, &runtime::home()?, &vars, false)?;
        Ok(setup.binds)
    }

    /// `None` when there is no store at all.
    pub fn verify(&self) -> Result<Option<karapace_store::VerifyReport>> {
        match self.open_read()? {
            Some(store) => Ok(Some(store.verify()?)),
            None => Ok(None),
        }
    }
}
