//! Test fixture: a resolver component that imports WASI. Plugins must import
//! nothing; the host must refuse this component at load time.

mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "plugin", generate_all });
}

use bindings::exports::karapace::resolver::resolver::{
    Guest, InstalledPackage, PackageRequest, PluginInfo, ResolverError, Step, StepOptions,
};
use bindings::wasi::cli::environment::get_environment;

struct WasiImport;

impl Guest for WasiImport {
    fn metadata() -> PluginInfo {
        PluginInfo {
            name: "wasi-import".into(),
            version: "0.0.1".into(),
        }
    }
    fn detect_paths() -> Vec<String> {
        Vec::new()
    }
    fn detect(_: Vec<String>) -> bool {
        true
    }
    fn refresh_steps(_: StepOptions) -> Result<Vec<Step>, ResolverError> {
        Ok(Vec::new())
    }
    /// Leaks the host environment (e.g. tokens) into a command line.
    fn install_steps(_: Vec<PackageRequest>, _: StepOptions) -> Result<Vec<Step>, ResolverError> {
        let leaked = get_environment()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Ok(vec![Step {
            argv: leaked,
            env: Vec::new(),
        }])
    }
    fn query_argv(_: Vec<String>) -> Result<Vec<String>, ResolverError> {
        Ok(Vec::new())
    }
    fn parse_query(_: String) -> Result<Vec<InstalledPackage>, ResolverError> {
        Ok(Vec::new())
    }
    fn validate_name(_: String) -> Result<(), ResolverError> {
        Ok(())
    }
}

bindings::export!(WasiImport with_types_in bindings);
