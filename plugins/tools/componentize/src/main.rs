//! `karapace-componentize [--allow-imports] <core.wasm> <component.wasm>`
//!
//! Turns a core module built by wit-bindgen into a component with the
//! library `karapace plugin build` uses (core/componentize), and fails if the
//! component imports anything: resolver plugins must be pure.
//! `--allow-imports` exists only for the hostile test fixture that must
//! import WASI to prove the host refuses it.

use std::error::Error;
use std::process::ExitCode;

fn run() -> Result<(), Box<dyn Error>> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let allow_imports = if argv.first().is_some_and(|a| a == "--allow-imports") {
        argv.remove(0);
        true
    } else {
        false
    };
    let [input, output] = argv.as_slice() else {
        return Err(
            "usage: karapace-componentize [--allow-imports] <core.wasm> <component.wasm>".into(),
        );
    };
    let module = std::fs::read(input).map_err(|e| format!("{input}: {e}"))?;
    let (component, imports) = if allow_imports {
        karapace_componentize::componentize_allowing_imports(&module)
    } else {
        karapace_componentize::componentize(&module).map(|c| (c, Vec::new()))
    }
    .map_err(|e| format!("{input}: {e}"))?;
    std::fs::write(output, &component).map_err(|e| format!("{output}: {e}"))?;
    println!("{output}: {} bytes, imports: {imports:?}", component.len());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("karapace-componentize: {e}");
            ExitCode::FAILURE
        }
    }
}
