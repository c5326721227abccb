//! `new <NAME>`: write `./karapace.toml` from a template.

use std::io::{BufRead, IsTerminal, Write};

use crate::files::write_atomic;
use std::path::Path;

use crate::cli::Ctx;
use crate::cli::args::Template;
use crate::error::{CoreError, Result};
use crate::output;

const MANIFEST: &str = "karapace.toml";

pub fn run(ctx: &Ctx, name: &str, template: Option<Template>, force: bool) -> Result<i32> {
    karapace_schema::validate_env_name(name).map_err(|e| CoreError::InvalidName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let template = match template {
        Some(t) => t.as_str().to_owned(),
        None if interactive => prompt_template()?,
        None => {
            return Err(CoreError::Other(
                "no --template given and stdin is not a terminal to ask; pass --template <minimal|dev|gui-dev|rust-dev|ubuntu-dev>".into(),
            ));
        }
    };
    let path = Path::new(MANIFEST);
    if path.exists() && !force {
        let overwrite = interactive
            && ask(&format!("{MANIFEST} exists. Overwrite it? [y/N] "))?.eq_ignore_ascii_case("y");
        if !overwrite {
            return Err(CoreError::Other(format!(
                "{MANIFEST} already exists; use --force to overwrite it"
            )));
        }
    }
    let text = karapace_schema::templates::render(&template, name)
        .ok_or_else(|| CoreError::Usage(format!("unknown template '{template}'")))?;
    write_atomic(path, &text)?;
    if ctx.json() {
        output::json(
            &serde_json::json!({"name": name, "path": MANIFEST, "status": "written", "template": template}),
        )?;
    } else {
        output::line(&format!(
            "wrote {MANIFEST} for '{name}' from template '{template}'"
        ))?;
    }
    Ok(0)
}

fn prompt_template() -> Result<String> {
    let names = karapace_schema::templates::NAMES;
    loop {
        let answer = ask(&format!("Template [{}] (minimal): ", names.join("/")))?;
        if answer.is_empty() {
            return Ok("minimal".into());
        }
        if names.contains(&answer.as_str()) {
            return Ok(answer);
        }
        output::note(&format!("unknown template '{answer}'"));
    }
}

/// Asks on stderr, reads one line from stdin. End of input is an error, not an endless loop.
fn ask(question: &str) -> Result<String> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CoreError::io("cannot read the answer", e))?;
    if n == 0 {
        return Err(CoreError::Other("no answer (end of input)".into()));
    }
    Ok(line.trim().to_owned())
}
