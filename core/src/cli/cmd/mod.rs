//! One module per subcommand. Each is thin: call the engine, print the result.

mod archive;
mod build;
mod commit;
mod completions;
mod destroy;
mod diff;
mod doctor;
mod du;
pub(super) mod enter;
pub(super) mod exec;
mod freeze;
mod gc;
mod inspect;
mod list;
mod man_pages;
mod migrate;
mod new;
mod pin;
mod plugin;
mod pull;
mod push;
mod rename;
mod restore;
mod root_hint;
mod snapshots;
mod stop;
mod tui;
mod verify_store;

use super::{Command, Ctx};
use crate::engine::SessionOptions;
use crate::error::Result;

/// Runs one subcommand; returns the exit code on success paths that are not 0 (e.g. `exec`).
pub fn dispatch(ctx: &Ctx, command: Command) -> Result<i32> {
    match command {
        Command::New {
            name,
            template,
            force,
        } => new::run(ctx, &name, template, force),
        Command::Build(args) => build::run(ctx, &args, false),
        Command::Rebuild(args) => build::run(ctx, &args, true),
        Command::Pin {
            manifest,
            check,
            write_lock,
        } => pin::run(ctx, &manifest, check, write_lock),
        Command::Enter {
            env_id,
            workdir,
            root,
            command,
        } => enter::run_with(ctx, &env_id, &command, &SessionOptions { workdir, root }),
        Command::Exec {
            env_id,
            workdir,
            root,
            command,
        } => exec::run_with(ctx, &env_id, &command, &SessionOptions { workdir, root }),
        Command::Destroy { env_id } => destroy::run(ctx, &env_id),
        Command::Stop { env_id } => stop::run(ctx, &env_id),
        Command::Freeze { env_id } => freeze::run(ctx, &env_id),
        Command::Archive { env_id } => archive::run(ctx, &env_id),
        Command::List => list::run(ctx),
        Command::Inspect { env_id } => inspect::run(ctx, &env_id),
        Command::Diff { env_id } => diff::run(ctx, &env_id),
        Command::Snapshots { env_id } => snapshots::run(ctx, &env_id),
        Command::Commit { env_id, message } => commit::run(ctx, &env_id, message.as_deref()),
        Command::Restore { env_id, snapshot } => restore::run(ctx, &env_id, &snapshot),
        Command::Gc { dry_run, images } => gc::run(ctx, dry_run, images),
        Command::Du => du::run(ctx),
        Command::VerifyStore => verify_store::run(ctx),
        Command::Push {
            env_id,
            tag,
            remote,
        } => push::run(ctx, &env_id, tag.as_deref(), remote.as_deref()),
        Command::Pull { reference, remote } => pull::run(ctx, &reference, remote.as_deref()),
        Command::Rename { env_id, new_name } => rename::run(ctx, &env_id, &new_name),
        Command::Completions { shell } => completions::run(shell),
        Command::ManPages { dir } => man_pages::run(ctx, &dir),
        Command::Tui => tui::run(ctx),
        Command::Doctor => doctor::run(ctx),
        Command::Plugin { action } => plugin::run(ctx, action),
        Command::Migrate => migrate::run(ctx),
    }
}

/// The result of a state change (`freeze`, `archive`): `<verb> environment <x>`, `<x>` as the
/// user typed it (the standard tool's line).
fn print_state(
    ctx: &Ctx,
    verb: &str,
    query: &str,
    env: &karapace_store::EnvMetadata,
) -> Result<i32> {
    if ctx.json() {
        crate::output::json(&serde_json::json!({"env_id": env.env_id, "state": env.state}))?;
    } else {
        crate::output::line(&format!("{verb} environment {query}"))?;
    }
    Ok(0)
}
