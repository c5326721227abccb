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
        let name = env
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let note = if outcome.unchanged { ", unchanged" } else { "" };
        output::line(&format!(
            "{status} environment {}{name}{note}",
            env.short_id
        ))?;
        output::line(&format!("env_id: {}", env.env_id))?;
    }
    Ok(0)
}
