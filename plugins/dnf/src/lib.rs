//! Resolver for Fedora/RHEL (dnf, dnf5); installed versions via rpm.

use karapace_plugin_sdk::{prelude::*, rpm};

struct Dnf;

impl Resolver for Dnf {
    const NAME: &'static str = "dnf";
    const VERSION: &'static str = "1.1.0";
    const DETECT_PATHS: &'static [&'static str] = &["usr/bin/dnf", "usr/bin/dnf5"];

    // No refresh step: `dnf install` refreshes expired metadata itself.

    fn install_steps(_: &ImageContext, packages: &[PackageRequest],
        _: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        // Weak dependencies are the rpm world's "recommends": keep images lean.
        let mut argv = args(&["dnf", "install", "-y", "--setopt=install_weak_deps=False"]);
        argv.extend(packages.iter().map(|p| match &p.version {
            Some(v) => format!("{}-{v}", p.name),
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

karapace_plugin_sdk::export_resolver!(Dnf);
