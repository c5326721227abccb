//! `karapace-componentize [--allow-imports] <core.wasm> <component.wasm>`
//!
//! Turns a core module built by wit-bindgen into a component (the world is
//! taken from the `component-type` custom section wit-bindgen embeds),
//! validates it, and fails if the component imports anything: resolver
//! plugins must be pure. `--allow-imports` exists only for the hostile test
//! fixture that must import WASI to prove the host refuses it.

use std::error::Error;
use std::process::ExitCode;

use wit_component::{ComponentEncoder, DecodedWasm};

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
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .encode()?;

    let imports = world_imports(&component)?;
    if !imports.is_empty() && !allow_imports {
        return Err(
            format!("{input}: component imports {imports:?}; plugins must import nothing").into(),
        );
    }
    std::fs::write(output, &component).map_err(|e| format!("{output}: {e}"))?;
    println!("{output}: {} bytes, imports: {imports:?}", component.len());
    Ok(())
}

/// Names of everything the component's world imports.
fn world_imports(component: &[u8]) -> Result<Vec<String>, Box<dyn Error>> {
    match wit_component::decode(component)? {
        DecodedWasm::Component(resolve, world) => Ok(resolve.worlds[world]
            .imports
            .keys()
            .map(|k| resolve.name_world_key(k))
            .collect()),
        DecodedWasm::WitPackage(..) => Err("expected a component, got a WIT package".into()),
    }
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
