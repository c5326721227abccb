//! From a resolver plugin's core wasm module to the component Karapace loads.
//!
//! `wit-bindgen` (which the plugin SDK uses) embeds the plugin's world in a
//! `component-type` custom section of the core module; [`componentize`] reads
//! it, encodes and validates the component, and refuses it when its world
//! imports anything: a resolver plugin must be a pure function library (the
//! host instantiates it with an empty linker, so an import could never be
//! satisfied anyway — refusing it here says so at build time).
//!
//! ```no_run
//! let module = std::fs::read("target/wasm32-unknown-unknown/release/my_plugin.wasm")?;
//! let component = karapace_componentize::componentize(&module)?;
//! std::fs::write("my-plugin.wasm", component)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Never writes files or touches the network; output depends only on the
//! input bytes and the pinned `wit-component` version.

use std::fmt;

use wit_component::{ComponentEncoder, DecodedWasm};

/// Why a module could not become a plugin component.
#[derive(Debug)]
pub enum ComponentizeError {
    /// Not a core module wit-bindgen produced, or the result did not validate.
    Encode(String),
    /// The component's world imports these names; plugins must import nothing.
    Imports(Vec<String>),
}

impl fmt::Display for ComponentizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComponentizeError::Encode(reason) => {
                write!(f, "cannot make a component of it: {reason}")
            }
            ComponentizeError::Imports(names) => write!(
                f,
                "the component imports {names:?}; resolver plugins must import nothing \
                 (no WASI, no std::fs/net/time/process in the plugin or its dependencies)"
            ),
        }
    }
}

impl std::error::Error for ComponentizeError {}

/// A validated component of `module` that imports nothing.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, ComponentizeError> {
    let component = encode(module)?;
    let imports = world_imports(&component)?;
    if imports.is_empty() {
        Ok(component)
    } else {
        Err(ComponentizeError::Imports(imports))
    }
}

/// A validated component of `module`, whatever it imports (only for test
/// fixtures that exist to be refused by the host), with its imports.
pub fn componentize_allowing_imports(
    module: &[u8],
) -> Result<(Vec<u8>, Vec<String>), ComponentizeError> {
    let component = encode(module)?;
    let imports = world_imports(&component)?;
    Ok((component, imports))
}

fn encode(module: &[u8]) -> Result<Vec<u8>, ComponentizeError> {
    let mut encoder = ComponentEncoder::default();
    encoder
        .validate(true)
        .module(module)
        .and_then(ComponentEncoder::encode)
        .map_err(|e| ComponentizeError::Encode(format!("{e:#}")))
}

/// Names of everything the component's world imports.
pub fn world_imports(component: &[u8]) -> Result<Vec<String>, ComponentizeError> {
    match wit_component::decode(component)
        .map_err(|e| ComponentizeError::Encode(format!("{e:#}")))?
    {
        DecodedWasm::Component(resolve, world) => Ok(resolve.worlds[world]
            .imports
            .keys()
            .map(|k| resolve.name_world_key(k))
            .collect()),
        DecodedWasm::WitPackage(..) => Err(ComponentizeError::Encode(
            "expected a component, got a WIT package".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_a_module_are_an_encode_error() {
        let err = componentize(b"not wasm").unwrap_err();
        assert!(matches!(err, ComponentizeError::Encode(_)), "{err}");
    }
}
