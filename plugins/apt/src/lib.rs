//! Resolver for Debian/Ubuntu (apt + dpkg).
//!
//! Interface 1.1: reports the distribution it found (`debian 12 (bookworm)`,
//! from `etc/os-release`) and checks requested names against the package
//! index after `apt-get update` (`apt-cache pkgnames` with virtual names), so
//! a typo fails before apt installs anything.

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
    const VERSION: &'static str = "1.1.0";
    const DETECT_PATHS: &'static [&'static str] = &["usr/bin/apt-get"];
    const DETECT_FILES: &'static [&'static str] = &["etc/os-release", "usr/lib/os-release"];

    /// Claims any image with apt-get; the variant is the distribution
    /// (`ID`, `VERSION_ID`, `VERSION_CODENAME` of os-release), empty when
    /// os-release is missing.
    fn detect(present: &[String], files: &[DetectFile]) -> Option<Detection> {
        if present.is_empty() {
            return None;
        }
        let variant = files
            .first()
            .map(|f| distribution(&f.contents))
            .unwrap_or_default();
        Some(Detection::variant(variant))
    }

    fn refresh_steps(_: &ImageContext, options: &StepOptions) -> Result<Vec<Step>, ResolverError> {
        Ok(vec![step_env(apt_get(options, &["update"]), ENV)])
    }

    fn install_steps(
        _: &ImageContext,
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

    fn query_argv(_: &ImageContext, names: &[String]) -> Result<Vec<String>, ResolverError> {
        // dpkg-query expands the \t and \n escapes itself.
        let mut argv = args(&["dpkg-query", "-W", "-f", "${Package}\\t${Version}\\n"]);
        argv.extend(names.iter().cloned());
        Ok(argv)
    }

    fn parse_query(
        _: &ImageContext,
        _: &[String],
        output: &str,
    ) -> Result<Vec<InstalledPackage>, ResolverError> {
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
    fn validate_name(_: &ImageContext, name: &str) -> Result<(), ResolverError> {
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
    fn validate_version(_: &ImageContext, version: &str) -> Result<(), ResolverError> {
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

    /// Every name apt knows, from the cache built by `apt-get update`: one
    /// read, ≈ 0.15 s for Debian 12. `AllNames` adds virtual names (`awk`,
    /// `mail-transport-agent`), which plain `pkgnames` leaves out although
    /// `apt-get install` resolves them (or explains why it cannot).
    fn available_argv(
        _: &ImageContext,
        _: &[String],
    ) -> Result<Option<Vec<String>>, ResolverError> {
        Ok(Some(args(&[
            "apt-cache",
            "-o",
            "APT::Cache::AllNames=true",
            "pkgnames",
        ])))
    }

    /// One name per line. A requested `name:arch` is known when `name` is.
    /// The index of Debian 12 has over 100 000 names with virtual ones, so
    /// this stays within one call's fuel: one pass comparing lengths first
    /// (no hashing, no sorting, stopping once every name is found), and
    /// candidates only when a name is unknown, and then only names that could
    /// be close to it (see [`maybe_close`]).
    fn parse_available(
        _: &ImageContext,
        names: &[String],
        output: &str,
    ) -> Result<Availability, ResolverError> {
        let bases: Vec<&str> = names
            .iter()
            .map(|n| n.split_once(':').map_or(n.as_str(), |(b, _)| b))
            .collect();
        let mut found = vec![false; bases.len()];
        let mut left = bases.len();
        for line in lines(output) {
            if left == 0 {
                break;
            }
            let line = line.trim();
            for (i, b) in bases.iter().enumerate() {
                if !found[i] && line.len() == b.len() && line == *b {
                    found[i] = true;
                    left -= 1;
                }
            }
        }
        let unknown_bases: Vec<&str> = bases
            .iter()
            .zip(&found)
            .filter(|(_, f)| !**f)
            .map(|(b, _)| *b)
            .collect();
        let unknown: Vec<String> = names
            .iter()
            .zip(&found)
            .filter(|(_, f)| !**f)
            .map(|(n, _)| n.clone())
            .collect();
        let candidates = if unknown.is_empty() {
            Vec::new()
        } else {
            lines(output)
                .map(str::trim)
                .filter(|c| unknown_bases.iter().any(|u| maybe_close(u, c)))
                .map(str::to_string)
                .collect()
        };
        Ok(Availability {
            unknown,
            candidates,
        })
    }
}

/// Could `candidate` be a suggestion for the unknown `name`? A cheap filter
/// before the host ranks by similarity: at most 2 bytes longer or shorter,
/// and the same first or second byte (a typo rarely hits both).
fn maybe_close(name: &str, candidate: &str) -> bool {
    let (a, b) = (name.as_bytes(), candidate.as_bytes());
    a.len().abs_diff(b.len()) <= 2
        && (a.first() == b.first() || (a.len() > 1 && b.len() > 1 && a[1] == b[1]))
}

/// `debian 12 (bookworm)` from os-release text: `ID`, then `VERSION_ID`,
/// then `(VERSION_CODENAME)`, each when present. Values are unquoted and
/// kept to printable ASCII (the host shows them); the result is at most
/// 128 bytes.
fn distribution(os_release: &str) -> String {
    let field = |key: &str| -> String {
        lines(os_release)
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .next()
            .map(|v| {
                v.trim()
                    .trim_matches(|c| c == '"' || c == '\'')
                    .chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .take(40)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = field("ID");
    for (value, open, close) in [(field("VERSION_ID"), " ", ""), (field("VERSION_CODENAME"), " (", ")")] {
        if !value.is_empty() {
            out = format!("{out}{open}{value}{close}");
        }
    }
    out.trim().to_string()
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

karapace_plugin_sdk::export_resolver!(Apt);
