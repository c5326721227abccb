//! Resolver for Debian/Ubuntu (apt + dpkg).

use karapace_plugin_sdk::prelude::*;

struct Apt;

/// apt drops to the `_apt` user to download; with a single mapped uid that
/// user does not exist in the namespace, so the host asks us to stay root.
/// Only then: with a full subordinate-id map the sandbox is worth keeping.
fn apt_get(options: &StepOptions, rest: &[&str]) -> Vec<String> {
    let mut argv = args(&["apt-get"]);
    if options.single_uid_map {
        argv.extend(args(&["-o", "APT::Sandbox::User=root"]));
    }
    argv.extend(args(rest));
    argv
}

/// Never stop at a debconf prompt: a build has no terminal to answer it.
const ENV: &[(&str, &str)] = &[("DEBIAN_FRONTEND", "noninteractive")];

impl Resolver for Apt {
    const NAME: &'static str = "apt";
    const VERSION: &'static str = "1.0.0";
    const DETECT_PATHS: &'static [&'static str] = &["usr/bin/apt-get"];

    fn refresh_steps(options: &StepOptions) -> Result<Vec<Step>, ResolverError> {
        Ok(vec![step_env(apt_get(options, &["update"]), ENV)])
    }

    fn install_steps(
        packages: &[PackageRequest],
        options: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        let mut argv = apt_get(options, &["install", "-y", "--no-install-recommends"]);
        argv.extend(packages.iter().map(|p| match &p.version {
            Some(v) => format!("{}={v}", p.name),
            None => p.name.clone(),
        }));
        Ok(vec![step_env(argv, ENV)])
    }

    fn query_argv(names: &[String]) -> Result<Vec<String>, ResolverError> {
        // dpkg-query expands the \t and \n escapes itself.
        let mut argv = args(&["dpkg-query", "-W", "-f", "${Package}\\t${Version}\\n"]);
        argv.extend(names.iter().cloned());
        Ok(argv)
    }

    fn parse_query(output: &str) -> Result<Vec<InstalledPackage>, ResolverError> {
        let mut out = Vec::new();
        for line in lines(output) {
            let Some((name, version)) = line.split_once('\t') else {
                return Err(ResolverError::Parse(format!(
                    "expected 'name<TAB>version', got {line:?}"
                )));
            };
            // Known to dpkg but not installed (removed, config-files only):
            // dpkg-query prints an empty version.
            if version.trim().is_empty() {
                continue;
            }
            out.push(package(name.trim(), version.trim()));
        }
        Ok(out)
    }

    /// Debian policy §5.6.1: `[a-z0-9][a-z0-9+.-]+`, optionally `:arch`.
    fn validate_name(name: &str) -> Result<(), ResolverError> {
        let (pkg, arch) = match name.split_once(':') {
            Some((p, a)) => (p, Some(a)),
            None => (name, None),
        };
        check_name("apt", pkg, 128, is_lower_alnum, |c| {
            is_lower_alnum(c) || "+.-".contains(c)
        })?;
        if pkg.len() < 2 {
            return Err(ResolverError::InvalidName(format!(
                "{name:?}: Debian package names have at least 2 characters"
            )));
        }
        if let Some(arch) = arch {
            check_name("apt", arch, 32, is_lower_alnum, |c| {
                is_lower_alnum(c) || c == '-'
            })?;
        }
        Ok(())
    }

    /// Debian version: `[epoch:]upstream[-revision]`, upstream starts with a digit.
    fn validate_version(version: &str) -> Result<(), ResolverError> {
        let upstream = version.split_once(':').map_or(version, |(_, u)| u);
        let ok = version.len() <= 128
            && upstream.starts_with(|c: char| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c));
        if ok {
            Ok(())
        } else {
            Err(ResolverError::InvalidVersion(format!(
                "{version:?} is not a Debian version"
            )))
        }
    }
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

karapace_plugin_sdk::export_resolver!(Apt);
