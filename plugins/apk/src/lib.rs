//! Resolver for Alpine Linux (apk).

use karapace_plugin_sdk::prelude::*;

struct Apk;

impl Resolver for Apk {
    const NAME: &'static str = "apk";
    const VERSION: &'static str = "1.1.0";
    const DETECT_PATHS: &'static [&'static str] = &["sbin/apk"];

    // No refresh step: `apk add --no-cache` fetches the indexes itself.

    fn install_steps(_: &ImageContext, packages: &[PackageRequest],
        _: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        let mut argv = args(&["apk", "add", "--no-cache"]);
        argv.extend(packages.iter().map(|p| match &p.version {
            Some(v) => format!("{}={v}", p.name),
            None => p.name.clone(),
        }));
        Ok(vec![step(argv)])
    }

    fn query_argv(_: &ImageContext, names: &[String]) -> Result<Vec<String>, ResolverError> {
        let mut argv = args(&["apk", "list", "--installed"]);
        argv.extend(names.iter().cloned());
        Ok(argv)
    }

    /// Accepts `apk list --installed` lines (`musl-1.2.5-r0 x86_64 {musl}
    /// (MIT) [installed]`) and `apk info -v` lines (`musl-1.2.5-r0`); warnings
    /// are skipped.
    fn parse_query(_: &ImageContext, _: &[String], output: &str) -> Result<Vec<InstalledPackage>, ResolverError> {
        let mut out = Vec::new();
        for line in lines(output) {
            if line.starts_with("WARNING:") || line.starts_with("ERROR:") {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or_default();
            let Some((name, version)) = split_name_version(first) else {
                return Err(ResolverError::Parse(format!(
                    "expected 'name-version-rN', got {line:?}"
                )));
            };
            out.push(package(name, version));
        }
        Ok(out)
    }

    fn validate_name(_: &ImageContext, name: &str) -> Result<(), ResolverError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || "._+-".contains(c);
        check_name(Self::NAME, name, 128, |c| c.is_ascii_alphanumeric(), ok)
    }
}

/// `py3-foo-1.2.3-r4` → (`py3-foo`, `1.2.3-r4`): apk versions always end in
/// `-r<N>` and the upstream part holds no `-`, so split at the second `-`
/// from the right.
fn split_name_version(s: &str) -> Option<(&str, &str)> {
    let (rest, release) = s.rsplit_once('-')?;
    let digits = release.strip_prefix('r')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (name, upstream) = rest.rsplit_once('-')?;
    if name.is_empty() || !upstream.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some((name, &s[name.len() + 1..]))
}

karapace_plugin_sdk::export_resolver!(Apk);
