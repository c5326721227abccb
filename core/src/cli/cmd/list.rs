//! `list`.

use crate::cli::Ctx;
use crate::cli::env_view::EnvView;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx) -> Result<i32> {
    // A metadata file that cannot be read hides only its own environment; it is named on stderr
    // with the way out, and the exit code stays 0 (the listing is true for what it shows).
    let (envs, unreadable) = ctx.engine.list_readable()?;
    for bad in &unreadable {
        let fix = match bad.env_id() {
            Some(id) => format!("`karapace destroy {id}` removes its environment"),
            None => "not an environment's file: remove it".to_owned(),
        };
        output::note(&format!(
            "warning: skipped unreadable metadata {}: {} ({fix})",
            bad.path.display(),
            bad.reason
        ));
    }
    if ctx.json() {
        // Sharing counts need every environment: none while one cannot be read.
        let usages = if unreadable.is_empty() {
            ctx.engine.env_usages(&envs)?
        } else {
            Vec::new()
        };
        let views: Vec<EnvView<'_>> = envs
            .iter()
            .zip(
                usages
                    .into_iter()
                    .map(Some)
                    .chain(std::iter::repeat_with(|| None)),
            )
            .map(|(env, usage)| {
                let mut view = EnvView::from(env);
                view.usage = usage.map(Into::into);
                view
            })
            .collect();
        return output::json(&views).map(|()| 0);
    }
    if envs.is_empty() {
        output::line("no environments found")?;
        return Ok(0);
    }
    // The standard tool's columns (14, 16, 10 wide, one space apart), which scripts cut.
    output::line(&format!(
        "{:<14} {:<16} {:<10} ENV_ID",
        "SHORT_ID", "NAME", "STATE"
    ))?;
    for e in &envs {
        output::line(&format!(
            "{:<14} {:<16} {:<10} {}",
            e.short_id,
            e.name.as_deref().unwrap_or(""),
            e.state.to_string(),
            e.env_id
        ))?;
    }
    Ok(0)
}
