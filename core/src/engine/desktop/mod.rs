//! Desktop entries for an environment's `[gui] apps`: each app the environment contains gets
//! `$XDG_DATA_HOME/applications/karapace-<short_id>-<app>.desktop` (default
//! `~/.local/share/applications`), which runs it through `karapace exec`, with the app's own name
//! and icon when the environment ships them (the icon copied to `$XDG_DATA_HOME/icons/`). Written
//! at every build, replaced at rebuild, removed at destroy. An app the environment lacks gets a
//! warning and no entry; the build still succeeds.
//!
//! Entries are the user's files, outside the store: failing to write one is a warning, never a
//! failed build. Only files that name the environment (`X-Karapace-EnvId`) are ever removed.

mod format;
mod lookup;

use std::path::{Path, PathBuf};

use karapace_store::EnvMetadata;

pub use format::Unrepresentable;
pub use lookup::Layers;

/// What exporting an environment's apps did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    pub written: Vec<PathBuf>,
    /// Apps the environment does not contain (no entry).
    pub missing: Vec<String>,
    /// Entries that could not be written, with why.
    pub failed: Vec<(String, String)>,
}

fn applications_dir() -> Option<PathBuf> {
    karapace_dirs::data_home().map(|d| d.join("applications"))
}

fn entry_file_prefix(short_id: &str) -> String {
    format!("karapace-{short_id}-")
}

/// How a desktop launches `karapace exec`: the `karapace` next to this program when there is one
/// (entries keep working whatever the desktop's `PATH`), else `karapace` from `PATH`.
fn karapace_program() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("karapace")))
        .filter(|p| p.is_file())
        .and_then(|p| p.to_str().map(str::to_owned))
        .unwrap_or_else(|| "karapace".to_owned())
}

/// Writes the entries of `apps` for `env`, replacing any earlier ones of it (an app no longer
/// listed loses its entry). `store` is the store root; `default_store` decides whether the
/// command line needs `--store`.
pub fn export(
    env: &EnvMetadata,
    layers: &Layers,
    apps: &[String],
    store: &Path,
    default_store: Option<&Path>,
) -> Exported {
    let mut report = Exported::default();
    let Some(dir) = applications_dir() else {
        if !apps.is_empty() {
            report.failed.push((
                apps.join(", "),
                "neither XDG_DATA_HOME nor HOME is set".to_owned(),
            ));
        }
        return report;
    };
    let stale = remove(env, store);
    for app in apps {
        if !layers.has_executable(app) {
            report.missing.push(app.clone());
            continue;
        }
        match write_entry(env, layers, app, store, default_store, &dir) {
            Ok(path) => report.written.push(path),
            Err(e) => report.failed.push((app.clone(), e)),
        }
    }
    if !report.written.is_empty() || !stale.is_empty() {
        refresh_database(&dir);
    }
    report
}

fn write_entry(
    env: &EnvMetadata,
    layers: &Layers,
    app: &str,
    store: &Path,
    default_store: Option<&Path>,
    dir: &Path,
) -> Result<PathBuf, String> {
    let store_text = store
        .to_str()
        .ok_or_else(|| format!("the store path {} is not UTF-8", store.display()))?;
    let own = layers.desktop_file(app);
    let own_name = own
        .as_deref()
        .and_then(|t| format::read_key(t, "Name"))
        .map(|n| clean(&n))
        .filter(|n| !n.is_empty());
    let name = format!(
        "{} (Karapace {})",
        own_name.as_deref().unwrap_or(app),
        env.short_id
    );
    let icon_name = own
        .as_deref()
        .and_then(|t| format::read_key(t, "Icon"))
        .unwrap_or_else(|| app.to_owned());
    let icon = match layers.icon(&icon_name) {
        Some((bytes, ext)) => Some(copy_icon(env, app, &bytes, ext)?),
        None => None,
    };
    let mut exec = vec![karapace_program()];
    if default_store != Some(store) {
        exec.extend(["--store".to_owned(), store_text.to_owned()]);
    }
    exec.extend([
        "exec".to_owned(),
        env.env_id.to_string(),
        "--".to_owned(),
        app.to_owned(),
    ]);
    let entry = format::Entry {
        name,
        comment: format!("{app} in Karapace environment {}", env.short_id),
        exec,
        icon: icon.map(|p| p.to_string_lossy().into_owned()),
        env_id: env.env_id.to_string(),
        store: store_text.to_owned(),
    };
    let text = format::render(&entry).map_err(|e| e.to_string())?;
    let path = dir.join(format!("{}{app}.desktop", entry_file_prefix(&env.short_id)));
    write_user_file(&path, text.as_bytes())?;
    Ok(path)
}

/// A name from the environment: control characters dropped, at most 200 characters.
fn clean(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
        .trim()
        .to_owned()
}

fn copy_icon(env: &EnvMetadata, app: &str, bytes: &[u8], ext: &str) -> Result<PathBuf, String> {
    let dir = karapace_dirs::data_home()
        .map(|d| d.join("icons"))
        .ok_or("neither XDG_DATA_HOME nor HOME is set")?;
    let path = dir.join(format!("{}{app}.{ext}", entry_file_prefix(&env.short_id)));
    write_user_file(&path, bytes)?;
    Ok(path)
}

/// Writes one of the user's files atomically, mode 0644, never through a link planted at its
/// name (the rename replaces a link, it does not follow it).
fn write_user_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    karapace_atomic_file::write(path, bytes, karapace_atomic_file::Mode::Exactly(0o644))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The entries of `env` in `store` (files that name both: one environment may be built in two
/// stores, whose entries have the same file name), sorted.
pub fn entries(env: &EnvMetadata, store: &Path) -> Vec<PathBuf> {
    entries_of(&env.env_id, &env.short_id, store)
}

fn entries_of(env_id: &str, short_id: &str, store: &Path) -> Vec<PathBuf> {
    let Some(dir) = applications_dir() else {
        return Vec::new();
    };
    let prefix = entry_file_prefix(short_id);
    let env_line = format!("X-Karapace-EnvId={env_id}");
    let store_line = store
        .to_str()
        .and_then(|s| format::string_value("the store path", s).ok())
        .map(|s| format!("X-Karapace-Store={s}"));
    let Some(store_line) = store_line else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".desktop"))
                && e.file_type().is_ok_and(|t| t.is_file())
        })
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read_to_string(p).is_ok_and(|t| {
                t.lines().any(|l| l == env_line) && t.lines().any(|l| l == store_line)
            })
        })
        .collect();
    found.sort();
    found
}

/// Removes the entries of `env` in `store` and the icons they name; returns the entries removed.
pub fn remove(env: &EnvMetadata, store: &Path) -> Vec<PathBuf> {
    remove_of(&env.env_id, &env.short_id, store)
}

/// [`remove`] for an environment known only by its `env_id` (its metadata unreadable): the short
/// id is the `env_id`'s first 12 characters, as the store makes it.
pub fn remove_by_env_id(env_id: &str, store: &Path) -> Vec<PathBuf> {
    remove_of(env_id, env_id.get(..12).unwrap_or(env_id), store)
}

fn remove_of(env_id: &str, short_id: &str, store: &Path) -> Vec<PathBuf> {
    let gone = entries_of(env_id, short_id, store);
    let icons = karapace_dirs::data_home().map(|d| d.join("icons"));
    let prefix = entry_file_prefix(short_id);
    for path in &gone {
        let icon = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| format::read_key(&t, "Icon"))
            .map(PathBuf::from);
        // Only an icon this module copied: in the icons directory, under the entry's prefix.
        if let (Some(icon), Some(icons)) = (icon, &icons)
            && icon.parent() == Some(icons.as_path())
            && icon
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        {
            let _ = std::fs::remove_file(&icon);
        }
        let _ = std::fs::remove_file(path);
    }
    if !gone.is_empty()
        && let Some(dir) = applications_dir()
    {
        refresh_database(&dir);
    }
    gone
}

/// Lets the desktop see the change now (`update-desktop-database`, when installed).
fn refresh_database(dir: &Path) {
    let _ = std::process::Command::new("update-desktop-database")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
