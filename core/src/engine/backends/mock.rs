//! The `mock` backend (tests only): a synthetic base and package layer, no network, and sessions
//! that print the command they stand for instead of running it (`karapace_backend_mock`).

use std::io::Write;

use karapace_backend_mock as mock;
use karapace_schema::{LockFile, ResolvedPackage};
use karapace_store::LayerKind;

use super::{BuildJob, RuntimeBackend, Session};
use crate::engine::RunMode;
use crate::engine::pipeline::Built;
use crate::error::{CoreError, Result};

pub struct Mock;

impl RuntimeBackend for Mock {
    fn build(&self, job: &BuildJob<'_>) -> Result<Built> {
        let (store, manifest) = (job.store, job.manifest);
        let base_dir = store.staging_dir()?;
        mock::write_base_tree(base_dir.path(), &manifest.base_image)
            .map_err(|e| CoreError::io("cannot write the mock base", e))?;
        let base = store.import_layer_dir(base_dir.path(), LayerKind::Base, None)?;

        let locked: Vec<(String, String)> = job
            .locked
            .map(|l| l.resolved_packages.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        // The mock has no plugin to own the names' grammar: it keeps the portable one (its
        // package database names files after the packages).
        for name in &manifest.system_packages {
            karapace_schema::validate_portable_package_name(name).map_err(|e| {
                CoreError::Usage(format!(
                    "package name {name:?} is not valid for the mock backend: {e}"
                ))
            })?;
        }
        let resolved = mock::resolve(&manifest.system_packages, &locked);
        let mut dependency_layers = Vec::new();
        if !resolved.is_empty() {
            let dep_dir = store.staging_dir()?;
            mock::write_dependency_tree(dep_dir.path(), &resolved)
                .map_err(|e| CoreError::io("cannot write the mock packages", e))?;
            let dep =
                store.import_layer_dir(dep_dir.path(), LayerKind::Dependency, Some(&base.hash))?;
            dependency_layers.push(dep.hash);
        }
        let packages = resolved
            .into_iter()
            .map(|(name, version)| ResolvedPackage { name, version })
            .collect();
        Ok(Built {
            lock: LockFile::from_resolved(
                manifest,
                &mock::base_digest(&manifest.base_image),
                packages,
            ),
            base_layer: base.hash,
            dependency_layers,
            install_log: None,
            ownership_note: None,
        })
    }

    /// Runs nothing: the line a session prints stands in for the command's output, as the
    /// workload's own output would reach the caller's stdout. No session is recorded, so the
    /// environment never reads as Running.
    fn run(&self, session: Session<'_>) -> Result<i32> {
        let line = match session.mode {
            RunMode::Exec => mock::exec_line(&session.argv),
            RunMode::Enter => mock::enter_line(&session.argv),
        };
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| CoreError::io("cannot write to stdout", e))?;
        Ok(0)
    }

    fn caveat(&self) -> Option<&'static str> {
        Some(mock::CAVEAT)
    }
}
