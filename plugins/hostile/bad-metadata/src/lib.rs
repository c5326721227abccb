//! Test fixture: a plugin whose name is outside the allowed grammar (it could
//! be used to spoof output or paths). The host must refuse to load it.

use karapace_plugin_sdk::prelude::*;

struct BadMetadata;

impl Resolver for BadMetadata {
    const NAME: &'static str = "../Evil Name\n";
    const VERSION: &'static str = "0.0.1";
    const DETECT_PATHS: &'static [&'static str] = &["usr/bin/apt-get"];

    fn install_steps(_: &ImageContext, _: &[PackageRequest], _: &StepOptions) -> Result<Vec<Step>, ResolverError> {
        Ok(vec![step(args(&["true"]))])
    }
    fn query_argv(_: &ImageContext, _: &[String]) -> Result<Vec<String>, ResolverError> {
        Ok(args(&["true"]))
    }
    fn parse_query(_: &ImageContext, _: &[String], _: &str) -> Result<Vec<InstalledPackage>, ResolverError> {
        Ok(Vec::new())
    }
    fn validate_name(_: &ImageContext, _: &str) -> Result<(), ResolverError> {
        Ok(())
    }
}

karapace_plugin_sdk::export_resolver!(BadMetadata);
