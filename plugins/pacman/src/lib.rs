//! Resolver for Arch Linux (pacman).

use karapace_plugin_sdk::prelude::*;

struct Pacman;

impl Resolver for Pacman {
    const NAME: &'static str = "pacman";
    const VERSION: &'static str = "1.1.0";
    const DETECT_PATHS: &'static [&'static str] = &["usr/bin/pacman"];

    /// Container rootfs images may ship without sync databases; `-S` needs them.
    fn refresh_steps(_: &ImageContext, _: &StepOptions) -> Result<Vec<Step>, ResolverError> {
        Ok(vec![step(args(&["pacman", "-Sy", "--noconfirm"]))])
    }

    fn install_steps(_: &ImageContext, packages: &[PackageRequest],
        _: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        // The sync repositories carry one version per package: an exact
        // version cannot be installed from them, so say so instead of
        // silently installing the current one.
        if let Some(p) = packages.iter().find(|p| p.version.is_some()) {
            return Err(ResolverError::Unsupported(format!(
                "pacman cannot install {} at a pinned version from the sync repositories",
                p.name
            )));
        }
        let mut argv = args(&["pacman", "-S", "--noconfirm", "--needed"]);
        argv.extend(packages.iter().map(|p| p.name.clone()));
        Ok(vec![step(argv)])
    }

    fn query_argv(_: &ImageContext, names: &[String]) -> Result<Vec<String>, ResolverError> {
        let mut argv = args(&["pacman", "-Q"]);
        argv.extend(names.iter().cloned());
        Ok(argv)
    }

    /// `name version` per line; `error: package 'x' was not found` (stderr,
    /// but tolerated if merged) is skipped.
    fn parse_query(_: &ImageContext, _: &[String], output: &str) -> Result<Vec<InstalledPackage>, ResolverError> {
        let mut out = Vec::new();
        for line in lines(output) {
            if line.starts_with("error: package '") && line.ends_with("' was not found") {
                continue;
            }
            let mut fields = line.split_whitespace();
            match (fields.next(), fields.next(), fields.next()) {
                (Some(name), Some(version), None) => out.push(package(name, version)),
                _ => {
                    return Err(ResolverError::Parse(format!(
                        "expected 'name version', got {line:?}"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// makepkg: `[a-z0-9@._+-]`, not starting with `-` or `.`.
    fn validate_name(_: &ImageContext, name: &str) -> Result<(), ResolverError> {
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "@._+-".contains(c);
        check_name(Self::NAME, name, 128, |c| ok(c) && c != '.', ok)
    }
}

karapace_plugin_sdk::export_resolver!(Pacman);
