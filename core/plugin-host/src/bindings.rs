//! Host bindings, one module per supported WIT version. A released version is
//! frozen (`wit/resolver@X.Y.Z/`); a new one gets a sibling module here and a
//! variant in `plugin::Bindings`, so old plugins keep loading.

/// `karapace:resolver@1.0.0`.
pub(crate) mod v1_0_0 {
    wasmtime::component::bindgen!({
        path: "../../wit/resolver@1.0.0",
        world: "plugin",
    });

    pub(crate) use exports::karapace::resolver::resolver as api;

    /// Export name that identifies this interface version in a component.
    pub(crate) const EXPORT: &str = "karapace:resolver/resolver@1.0.0";
    pub(crate) const VERSION: &str = "1.0.0";
}

/// `karapace:resolver@1.1.0`: image context, plugin-owned name grammar,
/// name mapping, availability check.
pub(crate) mod v1_1_0 {
    wasmtime::component::bindgen!({
        path: "../../wit/resolver@1.1.0",
        world: "plugin",
    });

    pub(crate) use exports::karapace::resolver::resolver as api;

    /// Export name that identifies this interface version in a component.
    pub(crate) const EXPORT: &str = "karapace:resolver/resolver@1.1.0";
    pub(crate) const VERSION: &str = "1.1.0";
}
