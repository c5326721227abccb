//! `build` and `rebuild`: manifest, normalize, image, resolve, lock, `env_id`, layers, metadata.

use std::path::{Path, PathBuf};

use karapace_schema::{LockFile, ManifestError, ManifestErrorKind, NormalizedManifest};
use karapace_store::{EnvMetadata, EnvState, LayerHash, Store};

use super::{Engine, backends, pipeline, policy_layer, runtime};
use crate::error::{CoreError, Result};

/// What `build`/`rebuild` were asked to do.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub manifest: PathBuf,
    pub name: Option<String>,
    pub locked: bool,
    pub offline: bool,
    pub require_pinned_image: bool,
}

/// The environment a build produced, and whether it already existed unchanged.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    pub env: EnvMetadata,
    pub unchanged: bool,
    /// The installer log of this build (`<store>/logs/`), when it installed packages.
    pub install_log: Option<PathBuf>,
    /// A note on who owns the environment's files (see `trees::collapsed_hint`).
    pub ownership_note: Option<String>,
    /// Set when the build replaced the layers of an environment pulled from a remote.
    pub replaced_note: Option<String>,
    /// The desktop entries of the manifest's `[gui] apps` (see `desktop`).
    pub desktop: super::desktop::Exported,
    /// What the user must be told about the environment's backend (`RuntimeBackend::caveat`).
    pub caveat: Option<&'static str>,
    /// Set when a rebuild kept the previous environment because destroying it would have lost
    /// what the user made in it (changes in its writable layer, snapshots).
    pub kept_note: Option<String>,
}

/// The lock file that belongs to a manifest: `karapace.lock` beside it.
pub fn lock_path(manifest: &Path) -> PathBuf {
    manifest.with_file_name("karapace.lock")
}

/// The manifest's directory, absolute (recorded for `./` mounts).
fn source_dir(manifest: &Path) -> Result<PathBuf> {
    let dir = manifest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.canonicalize()
        .map_err(|e| CoreError::io(format!("cannot resolve {}", dir.display()), e))
}

fn is_url(image: &str) -> bool {
    image.starts_with("http://") || image.starts_with("https://")
}

impl Engine {
    pub fn build(&self, req: &BuildRequest) -> Result<BuildOutcome> {
        let manifest = karapace_schema::load_manifest(&req.manifest)?.normalize()?;
        runtime::check_manifest_mounts(&manifest, &source_dir(&req.manifest)?)?;
        self.build_replacing(req, &manifest, None)
    }

    /// A build that, for `rebuild`, takes over from the environment `replacing` (see
    /// `karapace_store::Handover`).
    fn build_replacing(
        &self,
        req: &BuildRequest,
        manifest: &NormalizedManifest,
        replacing: Option<&str>,
    ) -> Result<BuildOutcome> {
        let mut outcome = self.build_env(req, manifest, replacing)?;
        outcome.caveat = backends::of(manifest.runtime_backend).caveat();
        outcome.desktop = self.export_desktop(&outcome.env, &manifest.gui_apps);
        Ok(outcome)
    }

    fn build_env(
        &self,
        req: &BuildRequest,
        manifest: &NormalizedManifest,
        replacing: Option<&str>,
    ) -> Result<BuildOutcome> {
        if let Some(name) = &req.name {
            karapace_schema::validate_env_name(name).map_err(|e| CoreError::InvalidName {
                name: name.clone(),
                reason: e.to_string(),
            })?;
        }
        if req.require_pinned_image && !is_url(&manifest.base_image) {
            return Err(CoreError::Manifest(ManifestError::Invalid {
                path: Some(req.manifest.clone()),
                location: None,
                kind: ManifestErrorKind::NotPinned {
                    image: manifest.base_image.clone(),
                },
            })
            .with_hint("`karapace pin` rewrites base.image to the image's URL"));
        }
        let lock_file = lock_path(&req.manifest);
        let existing = read_lock(&lock_file, manifest, req.locked)?;
        let store = self.open_write()?;
        if let Some(env) = unchanged_env(&store, existing.as_ref()) {
            return self.unchanged_outcome(&store, env, req, replacing);
        }
        // Builds hold a lease so a concurrent gc cannot collect layers imported for an
        // environment whose metadata is not written yet.
        let _lease = store.build_lease()?;
        let locked = existing.as_ref().filter(|_| req.locked);
        let built = backends::of(manifest.runtime_backend).build(&backends::BuildJob {
            store: &store,
            manifest,
            request: req,
            locked,
            allow_without_landlock: self.allow_without_landlock,
        })?;
        let pipeline::Built {
            lock,
            base_layer,
            dependency_layers,
            install_log,
            ownership_note,
        } = built;
        if let Some(expected) = locked.filter(|l| l.env_id != lock.env_id) {
            return Err(CoreError::Build(format!(
                "--locked: the build resolved to environment {} but karapace.lock records {}",
                lock.short_id, expected.short_id
            )));
        }
        let parent = dependency_layers.last().unwrap_or(&base_layer).clone();
        let source_dir = source_dir(&req.manifest)?;
        let lowers = dependency_layers
            .iter()
            .rev()
            .chain(std::iter::once(&base_layer))
            .map(|h| store.layer_tree(h))
            .collect::<Result<Vec<_>, _>>()?;
        let policy =
            policy_layer::write(&store, manifest, &lock, &source_dir, &lowers, Some(&parent))?;

        let (plan, skipped) = plan_handover(
            &store,
            replacing,
            &lock.env_id,
            req.name.as_deref(),
            &source_dir,
        )?;
        let (env, replaced_note) = record_env(
            &store,
            &lock,
            manifest.manifest_hash(),
            (base_layer, dependency_layers, policy),
            plan.as_ref(),
        )?;
        if let Some(plan) = &plan {
            plan.finish(self.root());
        }
        let env = apply_name(&store, env, req.name.as_deref())?;
        if !req.locked {
            lock.write_atomic(&lock_file)?;
        }
        Ok(BuildOutcome {
            env,
            unchanged: false,
            install_log,
            ownership_note,
            replaced_note,
            desktop: super::desktop::Exported::default(),
            caveat: None,
            kept_note: plan.and_then(|p| p.note).or(skipped),
        })
    }

    /// A build whose lock still describes an existing environment: nothing to build; a
    /// rebuild's hand-over and the name still apply.
    fn unchanged_outcome(
        &self,
        store: &Store,
        env: EnvMetadata,
        req: &BuildRequest,
        replacing: Option<&str>,
    ) -> Result<BuildOutcome> {
        let env = made_built(store, env)?;
        let (plan, skipped) = plan_handover(
            store,
            replacing,
            &env.env_id,
            req.name.as_deref(),
            &source_dir(&req.manifest)?,
        )?;
        if let Some(plan) = &plan {
            store.hand_over(&env.env_id, &plan.handover)?;
            plan.finish(self.root());
        }
        let env = apply_name(store, store.env(&env.env_id)?, req.name.as_deref())?;
        Ok(BuildOutcome {
            env,
            unchanged: true,
            install_log: None,
            ownership_note: None,
            replaced_note: None,
            desktop: super::desktop::Exported::default(),
            caveat: None,
            kept_note: plan.and_then(|p| p.note).or(skipped),
        })
    }

    /// `rebuild`: builds the new environment first, then hands the old one's name over to it and
    /// destroys the old one — or keeps it, unnamed, when it holds something of the user's — in
    /// one journaled step with recording the new environment.
    pub fn rebuild(&self, req: &BuildRequest) -> Result<BuildOutcome> {
        let manifest = karapace_schema::load_manifest(&req.manifest)?.normalize()?;
        runtime::check_manifest_mounts(&manifest, &source_dir(&req.manifest)?)?;
        let lock_file = lock_path(&req.manifest);
        let old = LockFile::read(&lock_file).ok().map(|l| l.env_id);
        if !req.locked && lock_file.exists() {
            // Re-resolve: the old lock must not short-circuit the build. It is restored if the build fails.
            let backup = lock_file.with_extension("lock.rebuild-old");
            std::fs::rename(&lock_file, &backup)
                .map_err(|e| CoreError::io("cannot set the old lock aside", e))?;
            let result = self.build_replacing(req, &manifest, old.as_deref());
            if result.is_err() {
                let _ = std::fs::rename(&backup, &lock_file);
            } else {
                let _ = std::fs::remove_file(&backup);
            }
            return result;
        }
        self.build_replacing(req, &manifest, old.as_deref())
    }
}

/// A rebuild's hand-over from the environment it replaces, decided before it is journaled.
struct HandoverPlan {
    handover: karapace_store::Handover,
    old: EnvMetadata,
    /// What the user is told when the old environment is kept.
    note: Option<String>,
}

impl HandoverPlan {
    /// After the hand-over: the destroyed environment's desktop entries go too.
    fn finish(&self, root: &Path) {
        if !self.handover.keep_from {
            super::desktop::remove(&self.old, root);
        }
    }
}

/// The hand-over from `replacing` to `to`: the name (`name`, else the old one's) moves over; the
/// old environment is destroyed unless it holds something of the user's (changes in its writable
/// layer, snapshots — which `restore` accepts only for their own environment), in which case it
/// is kept unnamed and the note says how to reach it. `None` when there is nothing to replace —
/// or when the environment the lock names was built from another directory: a lock is a file of
/// the project (committed, copied, symlinked), so it does not prove which environment this
/// manifest made; that one is left alone, with the second value saying so.
fn plan_handover(
    store: &Store,
    replacing: Option<&str>,
    to: &str,
    name: Option<&str>,
    this_dir: &Path,
) -> Result<(Option<HandoverPlan>, Option<String>)> {
    let Some(old) = replacing
        .filter(|from| *from != to)
        .and_then(|from| store.env(from).ok())
    else {
        return Ok((None, None));
    };
    let built_from = policy_layer::layer_tree(store, &old)
        .and_then(|tree| policy_layer::read_source_dir(&tree))
        .ok();
    if built_from.as_deref() != Some(this_dir) {
        return Ok((
            None,
            Some(format!(
                "karapace.lock named environment {} but it was built from {}, not from this \
                 directory: it was left as it is",
                old.short_id,
                built_from.map_or_else(
                    || "an unknown directory".to_owned(),
                    |d| d.display().to_string()
                )
            )),
        ));
    }
    let work = store.user_work(&old.env_id)?;
    if work.is_none() {
        // Destroying it: the same rule as `destroy` (a running environment is refused).
        super::lifecycle::check(super::lifecycle::Op::Destroy, old.state, &old.short_id)?;
    }
    let note = work.map(|what| {
        format!(
            "the previous environment {short} was kept because it holds {what}; reach it with \
             `karapace exec {short} -- …` or `karapace snapshots {short}`, and remove it with \
             `karapace destroy {short}` when done",
            short = old.short_id
        )
    });
    Ok((
        Some(HandoverPlan {
            handover: karapace_store::Handover {
                from: old.env_id.to_string(),
                name: name.map(str::to_owned).or_else(|| old.name.clone()),
                keep_from: note.is_some(),
            },
            old,
            note,
        }),
        None,
    ))
}

/// Gives `env` the requested name (unique names are enforced by the store).
fn apply_name(store: &Store, env: EnvMetadata, name: Option<&str>) -> Result<EnvMetadata> {
    match name {
        Some(name) if env.name.as_deref() != Some(name) => {
            store.rename_env(&env.env_id, name)?;
            Ok(store.env(&env.env_id)?)
        }
        _ => Ok(env),
    }
}

/// Reads the manifest's lock. Under `--locked` it must exist and match the manifest (exit 1
/// otherwise); without it an outdated or unreadable lock only means resolving again.
fn read_lock(path: &Path, manifest: &NormalizedManifest, locked: bool) -> Result<Option<LockFile>> {
    if !locked && !path.exists() {
        return Ok(None);
    }
    let lock = match LockFile::read(path) {
        Ok(lock) => lock,
        Err(e) if !locked => {
            tracing::warn!("ignoring unreadable {}: {e}", path.display());
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    match lock
        .verify_integrity()
        .and_then(|()| lock.verify_intent(manifest))
    {
        Ok(()) => Ok(Some(lock)),
        Err(e) if locked => Err(e.into()),
        Err(e) => {
            tracing::info!("lock file is out of date, resolving again: {e}");
            Ok(None)
        }
    }
}

/// The environment a still-valid lock describes, when it is already built: a no-op build that
/// needs no network.
/// (`read_lock` has already checked that the lock matches the manifest.)
/// Records the built environment: a new one, an existing one kept as it is, or one pulled from a
/// remote whose layers the ones just built replace (with a note saying so).
fn record_env(
    store: &Store,
    lock: &LockFile,
    manifest_hash: String,
    (base_layer, dependency_layers, policy): (LayerHash, Vec<LayerHash>, LayerHash),
    plan: Option<&HandoverPlan>,
) -> Result<(EnvMetadata, Option<String>)> {
    let mut replaced_note = None;
    let env = match store.env(&lock.env_id) {
        Ok(env) if env.state != EnvState::Defined => {
            let env = if let Some(remote) = store.pulled_from(&env.env_id) {
                // The same lock, built here: these layers replace the pulled ones.
                store.update_env_layers(
                    &env.env_id,
                    &base_layer,
                    dependency_layers,
                    Some(policy),
                    if env.state == EnvState::Running {
                        EnvState::Built
                    } else {
                        env.state
                    },
                )?;
                store.clear_pulled(&env.env_id)?;
                replaced_note = Some(format!(
                    "environment {} was pulled from {remote}; its layers are now the ones built here",
                    env.short_id
                ));
                store.env(&lock.env_id)?
            } else {
                made_built(store, env)?
            };
            if let Some(plan) = plan {
                store.hand_over(&env.env_id, &plan.handover)?;
            }
            store.env(&lock.env_id)?
        }
        _ => {
            let meta = EnvMetadata {
                env_id: lock.env_id.clone(),
                short_id: lock.short_id.clone(),
                name: None,
                state: EnvState::Built,
                manifest_hash,
                base_layer,
                dependency_layers,
                policy_layer: Some(policy),
                // Set by the store.
                created_at: String::new(),
                updated_at: String::new(),
                checksum: String::new(),
            };
            store.create_env_with(meta, plan.map(|p| &p.handover))?;
            store.env(&lock.env_id)?
        }
    };
    Ok((env, replaced_note))
}

/// A build of a frozen or archived environment's manifest makes it Built again (the contract's
/// state machine: "any → Built by (re)build"). A running one stays running.
fn made_built(store: &Store, env: EnvMetadata) -> Result<EnvMetadata> {
    if matches!(env.state, EnvState::Frozen | EnvState::Archived) {
        store.set_state(&env.env_id, EnvState::Built)?;
        return Ok(store.env(&env.env_id)?);
    }
    Ok(env)
}

fn unchanged_env(store: &Store, lock: Option<&LockFile>) -> Option<EnvMetadata> {
    let lock = lock?;
    store
        .env(&lock.env_id)
        .ok()
        .filter(|env| env.state != EnvState::Defined)
        // A pulled environment's layers came from a remote: a build builds them here.
        .filter(|env| store.pulled_from(&env.env_id).is_none())
}
