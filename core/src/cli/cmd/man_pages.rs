//! `man-pages [DIR]`: one page for karapace and one per subcommand.

use std::fs;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Ctx;
use crate::cli::args::Cli;
use crate::error::{CoreError, Result};
use crate::output;

pub fn run(ctx: &Ctx, dir: &Path) -> Result<i32> {
    fs::create_dir_all(dir)
        .map_err(|e| CoreError::io(format!("cannot create {}", dir.display()), e))?;
    let root = Cli::command();
    let mut written = Vec::new();
    let mut render = |cmd: clap::Command, file: String| -> Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut buf)
            .map_err(|e| CoreError::io("cannot render man page", e))?;
        let path = dir.join(&file);
        fs::write(&path, buf)
            .map_err(|e| CoreError::io(format!("cannot write {}", path.display()), e))?;
        written.push(path.display().to_string());
        Ok(())
    };
    for sub in root.get_subcommands() {
        let name = format!("karapace-{}", sub.get_name());
        render(sub.clone().name(name.clone()), format!("{name}.1"))?;
    }
    render(root.clone(), "karapace.1".into())?;
    if ctx.json() {
        output::json(&serde_json::json!({"dir": dir.display().to_string(), "pages": written}))?;
    } else {
        output::line(&format!("man pages written to {}", dir.display()))?;
        output::note(&format!("{} pages", written.len()));
    }
    Ok(0)
}
