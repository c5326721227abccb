//! Native test harness: call a [`Resolver`] the way Karapace calls the
//! component, on your machine, with `cargo test`.
//!
//! Each method goes through the same adapter code the component exports
//! (so the name and version checks run exactly as in the component), after
//! the host's own rules on what it sends (a request the host would refuse
//! returns the `InvalidName`/`InvalidVersion` error here), and checks what
//! comes back against the host's rules on output (an argv or variant the
//! host would refuse fails the test with a panic naming the rule).
//!
//! ```ignore
//! use karapace_plugin_sdk::testing::Harness;
//! let xbps = Harness::<Xbps>::new();
//! let image = xbps.detect(&["usr/bin/xbps-install"], &[]).expect("claims Void");
//! let steps = xbps.install_steps(&image, &[PackageRequest::latest("bash")], &StepOptions::default())?;
//! assert_eq!(steps[0].argv, ["xbps-install", "-y", "bash"]);
//! ```

use std::marker::PhantomData;

use crate::bindings::exports::karapace::resolver::resolver::Guest as _;
use crate::{
    Availability, DetectFile, Export, ImageContext, InstalledPackage, PackageRequest, Resolver,
    ResolverError, Step, StepOptions,
};

/// The host's bound on names and versions it sends (bytes).
const HOST_MAX_TOKEN_BYTES: usize = 256;
/// The host's bound on a detection variant (bytes).
const HOST_MAX_VARIANT_BYTES: usize = 128;
/// How much of each detect file the host passes.
const HOST_MAX_DETECT_FILE_BYTES: usize = 16 * 1024;

/// Calls `R` as the host calls the component built from it.
pub struct Harness<R>(PhantomData<R>);

impl<R: Resolver> Default for Harness<R> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<R: Resolver> Harness<R> {
    /// A harness for `R`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Detection in an image where `present` exist (only those listed in
    /// `DETECT_PATHS` are passed, as the host does) with the given
    /// `(path, contents)` files (only those in `DETECT_FILES`, cut to 16 KiB).
    /// Returns the context every later call gets, or `None` when the plugin
    /// does not claim the image.
    pub fn detect(&self, present: &[&str], files: &[(&str, &str)]) -> Option<ImageContext> {
        let present: Vec<String> = R::DETECT_PATHS
            .iter()
            .filter(|p| present.contains(p))
            .map(|p| (*p).to_string())
            .collect();
        if present.is_empty() {
            return None;
        }
        let files: Vec<DetectFile> = R::DETECT_FILES
            .iter()
            .filter_map(|p| files.iter().find(|(f, _)| f == p))
            .map(|(p, c)| DetectFile::new(*p, cut(c, HOST_MAX_DETECT_FILE_BYTES)))
            .collect();
        let detection = Export::<R>::detect(present.clone(), files)?;
        let v = &detection.variant;
        assert!(
            v.len() <= HOST_MAX_VARIANT_BYTES && !v.chars().any(char::is_control),
            "the host refuses variant {v:?}: at most {HOST_MAX_VARIANT_BYTES} bytes, no control characters"
        );
        Some(ImageContext {
            present,
            variant: detection.variant,
        })
    }

    /// `refresh-steps`.
    pub fn refresh_steps(
        &self,
        image: &ImageContext,
        options: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        let steps = Export::<R>::refresh_steps(image.clone(), *options)?;
        check_steps(&steps);
        Ok(steps)
    }

    /// `install-steps`, after the host's rules on names and versions.
    pub fn install_steps(
        &self,
        image: &ImageContext,
        packages: &[PackageRequest],
        options: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        for p in packages {
            host_token(&p.name).map_err(ResolverError::InvalidName)?;
            if let Some(v) = &p.version {
                host_token(v).map_err(ResolverError::InvalidVersion)?;
            }
        }
        let steps = Export::<R>::install_steps(image.clone(), packages.to_vec(), *options)?;
        check_steps(&steps);
        assert!(!steps.is_empty(), "the host refuses an install without steps");
        Ok(steps)
    }

    /// `query-argv`, after the host's rules on names.
    pub fn query_argv(
        &self,
        image: &ImageContext,
        names: &[&str],
    ) -> Result<Vec<String>, ResolverError> {
        let names = host_names(names)?;
        let argv = Export::<R>::query_argv(image.clone(), names)?;
        check_argv(&argv);
        Ok(argv)
    }

    /// `parse-query` of `output`, which `query-argv` printed for `requested`.
    /// Panics if a package claims to satisfy a name that was not requested
    /// (the host refuses that).
    pub fn parse_query(
        &self,
        image: &ImageContext,
        requested: &[&str],
        output: &str,
    ) -> Result<Vec<InstalledPackage>, ResolverError> {
        let requested: Vec<String> = requested.iter().map(|n| (*n).to_string()).collect();
        let found = Export::<R>::parse_query(image.clone(), requested.clone(), output.to_string())?;
        for p in &found {
            for s in &p.satisfies {
                assert!(
                    requested.contains(s),
                    "the host refuses {:?} satisfying {s:?}, which was not requested",
                    p.name
                );
            }
            for t in [&p.name, &p.version] {
                if let Err(why) = host_token(t) {
                    panic!("the host refuses this query result: {why}");
                }
            }
        }
        Ok(found)
    }

    /// `validate-name`, after the host's rules.
    pub fn validate_name(&self, image: &ImageContext, name: &str) -> Result<(), ResolverError> {
        host_token(name).map_err(ResolverError::InvalidName)?;
        Export::<R>::validate_name(image.clone(), name.to_string())
    }

    /// `validate-version`, after the host's rules.
    pub fn validate_version(
        &self,
        image: &ImageContext,
        version: &str,
    ) -> Result<(), ResolverError> {
        host_token(version).map_err(ResolverError::InvalidVersion)?;
        Export::<R>::validate_version(image.clone(), version.to_string())
    }

    /// `available-argv`, after the host's rules on names.
    pub fn available_argv(
        &self,
        image: &ImageContext,
        names: &[&str],
    ) -> Result<Option<Vec<String>>, ResolverError> {
        let names = host_names(names)?;
        let argv = Export::<R>::available_argv(image.clone(), names)?;
        if let Some(argv) = &argv {
            check_argv(argv);
        }
        Ok(argv)
    }

    /// `parse-available` of `output`, printed for `names`. Panics if an
    /// unknown name was not asked about (the host refuses that).
    pub fn parse_available(
        &self,
        image: &ImageContext,
        names: &[&str],
        output: &str,
    ) -> Result<Availability, ResolverError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
        let a = Export::<R>::parse_available(image.clone(), names.clone(), output.to_string())?;
        for u in &a.unknown {
            assert!(
                names.contains(u),
                "the host refuses {u:?} as unknown: it was not asked about"
            );
        }
        for c in &a.candidates {
            if let Err(why) = host_token(c) {
                panic!("the host refuses this candidate: {why}");
            }
        }
        Ok(a)
    }
}

/// The host's rule for a name or version: safe as one argv element.
fn host_token(value: &str) -> Result<(), String> {
    let why = if value.is_empty() {
        "is empty"
    } else if value.len() > HOST_MAX_TOKEN_BYTES {
        "is too long"
    } else if value.starts_with('-') {
        "starts with '-'"
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(format!("{value:?} {why} (refused by the host)"))
}

fn host_names(names: &[&str]) -> Result<Vec<String>, ResolverError> {
    names
        .iter()
        .map(|n| {
            host_token(n)
                .map(|()| (*n).to_string())
                .map_err(ResolverError::InvalidName)
        })
        .collect()
}

/// The host's rules on an argv: non-empty, a program name, no NUL.
fn check_argv(argv: &[String]) {
    assert!(
        argv.first().is_some_and(|a| !a.is_empty()),
        "the host refuses an empty argv or program name: {argv:?}"
    );
    assert!(
        !argv.iter().any(|a| a.contains('\0')),
        "the host refuses an argument with a NUL byte: {argv:?}"
    );
}

fn check_steps(steps: &[Step]) {
    for s in steps {
        check_argv(&s.argv);
        for (k, v) in &s.env {
            assert!(
                !k.is_empty() && !k.contains(['=', '\0']) && !v.contains('\0'),
                "the host refuses env entry {k:?}={v:?}"
            );
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
