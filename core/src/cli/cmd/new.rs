//! `new <NAME>`: write `./karapace.toml` from a template.

use std::io::{BufRead, IsTerminal, Write};

use crate::files::write_atomic;
use std::path::Path;

use crate::cli::Ctx;
use crate::error::{CoreError, Result};
use crate::output;

const MANIFEST: &str = "karapace.toml";
/// How the standard tool names the file it wrote, in text and JSON.
const SHOWN: &str = "./karapace.toml";

pub fn run(ctx: &Ctx, name: &str, template: Option<String>, force: bool) -> Result<i32> {
    // The name only goes into the manifest's leading comment; the standard tool accepts any, so
    // a name `--name` would refuse is a warning here, not an error.
    if let Err(e) = karapace_schema::validate_env_name(name) {
        output::note(&format!(
            "warning: '{name}' cannot be an environment name ({e}); `build --name` will refuse it"
        ));
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let template = match template {
        Some(t) => t,
        None if interactive => prompt_template()?,
        None => {
            return Err(CoreError::Refused(format!(
                "no --template given and stdin is not a terminal to ask; pass --template <{}>",
                karapace_schema::templates::NAMES.join("|")
            )));
        }
    };
    let text = karapace_schema::templates::render(&template, name).ok_or_else(|| {
        CoreError::Refused(format!(
            "unknown template '{template}' (expected: {})",
            karapace_schema::templates::NAMES.join(", ")
        ))
    })?;
    let path = Path::new(MANIFEST);
    if path.exists() && !force {
        let overwrite = interactive
            && ask(&format!("{MANIFEST} exists. Overwrite it? [y/N] "))?.eq_ignore_ascii_case("y");
        if !overwrite {
            return Err(CoreError::Refused(format!(
                "refusing to overwrite existing {SHOWN} (pass --force)"
            )));
        }
    }
    write_atomic(path, &text)?;
    if ctx.json() {
        output::json(
            &serde_json::json!({"name": name, "path": SHOWN, "status": "written", "template": template}),
        )?;
    } else {
        output::line(&format!("wrote {SHOWN} for '{name}'"))?;
        output::line(&format!("template: {template}"))?;
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
        return Err(CoreError::Refused("no answer (end of input)".into()));
    }
    Ok(line.trim().to_owned())
}
