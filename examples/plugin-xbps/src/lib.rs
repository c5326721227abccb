//! Karapace resolver for Void Linux (xbps).

use karapace_plugin_sdk::prelude::*;

struct Xbps;

impl Resolver for Xbps {
    const NAME: &'static str = "xbps";
    const VERSION: &'static str = "0.1.0";
    const DETECT_PATHS: &'static [&'static str] = &["usr/bin/xbps-install"];

    fn refresh_steps(_: &ImageContext, _: &StepOptions) -> Result<Vec<Step>, ResolverError> {
        Ok(vec![step(args(&["xbps-install", "-S"]))])
    }

    fn install_steps(_: &ImageContext, packages: &[PackageRequest],
        _: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        let mut argv = args(&["xbps-install", "-y"]);
        // xbps pins with a package pattern: `name-version_revision`.
        argv.extend(packages.iter().map(|p| match &p.version {
            Some(v) => format!("{}-{v}", p.name),
            None => p.name.clone(),
        }));
        Ok(vec![step(argv)])
    }

    fn query_argv(_: &ImageContext, _: &[String]) -> Result<Vec<String>, ResolverError> {
        Ok(args(&["xbps-query", "-l"]))
    }

    /// `ii bash-5.2.21_1   GNU Bourne Again Shell` → (`bash`, `5.2.21_1`).
    fn parse_query(_: &ImageContext, _: &[String], output: &str) -> Result<Vec<InstalledPackage>, ResolverError> {
        let mut out = Vec::new();
        for line in lines(output) {
            let pkgver = line.split_whitespace().nth(1).unwrap_or_default();
            match pkgver.rsplit_once('-') {
                Some((name, version)) if !name.is_empty() && version.contains('_') => {
                    out.push(package(name, version));
                }
                _ => return Err(ResolverError::Parse(format!("unexpected line {line:?}"))),
            }
        }
        Ok(out)
    }

    fn validate_name(_: &ImageContext, name: &str) -> Result<(), ResolverError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || "._+-".contains(c);
        check_name(Self::NAME, name, 128, |c| c.is_ascii_alphanumeric(), ok)
    }
}

karapace_plugin_sdk::export_resolver!(Xbps);

#[cfg(test)]
mod tests {
    use super::*;
    use karapace_plugin_sdk::testing::Harness;

    #[test]
    fn installs_pinned_and_latest() {
        let xbps = Harness::<Xbps>::new();
        let image = xbps.detect(&["usr/bin/xbps-install"], &[]).unwrap();
        let steps = xbps
            .install_steps(
                &image,
                &[
                    PackageRequest::latest("bash"),
                    PackageRequest::pinned("xbps", "0.59.2_2"),
                ],
                &StepOptions::default(),
            )
            .unwrap();
        assert_eq!(steps[0].argv, ["xbps-install", "-y", "bash", "xbps-0.59.2_2"]);
        // The same checks as the component: a leading '-' never reaches the argv.
        assert!(xbps
            .install_steps(&image, &[PackageRequest::latest("-f")], &StepOptions::default())
            .is_err());
    }

    #[test]
    fn parses_xbps_query_output() {
        let xbps = Harness::<Xbps>::new();
        let out = "ii bash-5.2.021_1   GNU Bourne Again Shell\r\n\nii libstdc++-13.2.0_1  GCC\n";
        let got = xbps
            .parse_query(&ImageContext::default(), &["bash", "libstdc++"], out)
            .unwrap();
        assert_eq!(
            (got[0].name.as_str(), got[0].version.as_str()),
            ("bash", "5.2.021_1")
        );
        assert_eq!(
            (got[1].name.as_str(), got[1].version.as_str()),
            ("libstdc++", "13.2.0_1")
        );
        assert!(xbps.validate_name(&ImageContext::default(), "-f").is_err());
    }
}
