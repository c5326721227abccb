//! `build` / `rebuild`.

use serde_json::json;

use crate::cli::Ctx;
use crate::cli::args::BuildArgs;
use crate::engine::BuildRequest;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, args: &BuildArgs, rebuild: bool) -> Result<i32> {
    let req = BuildRequest {
        manifest: args.manifest.clone(),
        name: args.name.clone(),
        locked: args.locked,
        offline: args.offline,
        require_pinned_image: args.require_pinned_image,
    };
    let outcome = if rebuild {
        ctx.engine.rebuild(&req)?
    } else {
        ctx.engine.build(&req)?
    };
    let env = &outcome.env;
    let status = if rebuild { "rebuilt" } else { "built" };
    if ctx.json() {
        output::json(
            &json!({"env_id": env.env_id, "name": env.name, "short_id": env.short_id, "status": status}),
        )?;
    } else {
        // The standard tool's two lines, which users' scripts parse.
        let line = match env.name.as_deref() {
            Some(n) => format!("{status} environment '{n}' ({})", env.short_id),
            None => format!("{status} environment {}", env.short_id),
        };
        output::line(&line)?;
        output::line(&format!("env_id: {}", env.env_id))?;
    }
    if outcome.unchanged {
        output::note(
            "note: the lock is unchanged and the environment was already built; nothing to do",
        );
    }
    if let Some(log) = &outcome.install_log {
        output::note(&format!("installer log: {}", log.display()));
    }
    if let Some(note) = &outcome.ownership_note {
        output::note(&format!("note: {note}"));
    }
    if let Some(note) = &outcome.replaced_note {
        output::note(&format!("note: {note}"));
    }
    if let Some(note) = &outcome.kept_note {
        output::note(&format!("note: {note}"));
    }
    if let Some(caveat) = outcome.caveat {
        output::note(&format!("warning: this environment uses {caveat}"));
    }
    report_host_shares(ctx, env);
    report_desktop(&outcome.desktop, env);
    Ok(0)
}

/// Says on stderr (stdout is for scripts) which host paths the environment will see, so a
/// manifest from someone else cannot share more of the host than the user notices.
fn report_host_shares(ctx: &Ctx, env: &karapace_store::EnvMetadata) {
    let home = karapace_dirs::home();
    match ctx.engine.host_shares(env) {
        Ok(binds) if binds.is_empty() => {
            output::note("host paths shared with this environment: none");
        }
        Ok(binds) => {
            output::note("host paths shared with this environment:");
            for b in binds {
                let mode = if b.readonly {
                    "read-only"
                } else {
                    "read-write"
                };
                let what = if home.as_deref() == Some(b.src.as_path()) {
                    ", your home directory"
                } else {
                    ""
                };
                output::note(&format!(
                    "  {} -> {} ({mode}{what})",
                    output::escape(&b.src.to_string_lossy(), output::Newlines::Escape),
                    output::escape(&b.dst.to_string_lossy(), output::Newlines::Escape)
                ));
            }
        }
        Err(e) => output::note(&format!(
            "warning: sessions of this environment will be refused: {e}"
        )),
    }
}

/// The desktop entries written for `[gui] apps`, and the apps that got none.
fn report_desktop(desktop: &crate::engine::desktop::Exported, env: &karapace_store::EnvMetadata) {
    for path in &desktop.written {
        output::note(&format!(
            "desktop entry: {}",
            output::escape(&path.to_string_lossy(), output::Newlines::Escape)
        ));
    }
    for app in &desktop.missing {
        output::note(&format!(
            "warning: [gui] app '{app}' is not in environment {} (no executable of that name); no desktop entry for it",
            env.short_id
        ));
    }
    for (app, why) in &desktop.failed {
        output::note(&format!("warning: no desktop entry for '{app}': {why}"));
    }
}
