//! Host for sandboxed WebAssembly package-manager resolver plugins.
