//! Resolver for openSUSE/SLE (zypper); installed versions via rpm.

use karapace_plugin_sdk::{prelude::*, rpm};

struct Zypper;

impl Resolver for Zypper {
    const NAME: &'static str = "zypper";
    const VERSION: &'static str = "1.1.0";
    const DETECT_PATHS: &'static [&'static str] = &["usr/bin/zypper"];

    fn refresh_steps(_: &ImageContext, _: &StepOptions) -> Result<Vec<Step>, ResolverError> {
        Ok(vec![step(args(&[
            "zypper",
            "--non-interactive",
            "refresh",
        ]))])
    }

    fn install_steps(_: &ImageContext, packages: &[PackageRequest],
        _: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        let mut argv = args(&["zypper", "--non-interactive", "install", "--no-recommends"]);
        argv.extend(packages.iter().map(|p| match &p.version {
            Some(v) => format!("{}={v}", p.name),
            None => p.name.clone(),
        }));
        Ok(vec![step(argv)])
    }

    fn query_argv(_: &ImageContext, names: &[String]) -> Result<Vec<String>, ResolverError> {
        Ok(rpm::query_argv(names))
    }

    fn parse_query(_: &ImageContext, _: &[String], output: &str) -> Result<Vec<InstalledPackage>, ResolverError> {
        rpm::parse_query(output)
    }

    fn validate_name(_: &ImageContext, name: &str) -> Result<(), ResolverError> {
        rpm::validate_name(Self::NAME, name)
    }
}

karapace_plugin_sdk::export_resolver!(Zypper);
