//! Test fixture: a resolver that misbehaves on request. The trigger is the
//! input, so one component covers every runtime attack the host must contain.
//! Never install this.

use std::hint::black_box;

use karapace_plugin_sdk::prelude::*;

struct Misbehave;

fn recurse(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        black_box(recurse(black_box(n - 1))) + 1
    }
}

impl Resolver for Misbehave {
    const NAME: &'static str = "misbehave";
    const VERSION: &'static str = "0.0.1";
    const DETECT_PATHS: &'static [&'static str] = &["hostile/never-present"];
    const DETECT_FILES: &'static [&'static str] = &["hostile/variant"];

    /// `loop`: spins forever; `membomb`: allocates until it dies; `recurse`:
    /// unbounded recursion; `panic`: aborts. Anything else is fine.
    fn validate_name(_: &ImageContext, name: &str) -> Result<(), ResolverError> {
        match name {
            "loop" => {
                let mut i = 0u64;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "membomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0xA5; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "recurse" => {
                black_box(recurse(black_box(u64::MAX)));
                Ok(())
            }
            "panic" => panic!("asked to panic"),
            _ => Ok(()),
        }
    }

    /// `nul`: argv with a NUL byte; `empty`: empty argv; `huge`: 200 000
    /// arguments; `long`: a 1 MiB argument; `env`: an env key with `=`.
    fn install_steps(_: &ImageContext, packages: &[PackageRequest],
        _: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        let argv = match packages.first().map(|p| p.name.as_str()) {
            Some("nul") => args(&["sh", "-c", "echo\0pwned"]),
            Some("empty") => Vec::new(),
            Some("huge") => (0..200_000).map(|i| format!("arg{i}")).collect(),
            Some("long") => vec!["x".repeat(1 << 20)],
            Some("env") => return Ok(vec![step_env(args(&["true"]), &[("A=B", "c")])]),
            _ => args(&["true"]),
        };
        Ok(vec![step(argv)])
    }

    fn query_argv(_: &ImageContext, _: &[String]) -> Result<Vec<String>, ResolverError> {
        Ok(args(&["true"]))
    }

    /// `gigantic`: 150 000 records (over the host's 100 000 cap); `badname`: a name the host must refuse;
    /// `invalid-utf8`: a string that is not UTF-8 (the component model must
    /// reject it when the host lifts it).
    fn parse_query(_: &ImageContext, _: &[String], output: &str) -> Result<Vec<InstalledPackage>, ResolverError> {
        match output {
            "gigantic" => Ok(vec![package("p", "1"); 150_000]),
            "badname" => Ok(vec![package("-rf", "1")]),
            "invalid-utf8" => {
                // SAFETY: deliberately violates String's invariant; this is the
                // attack under test and the bytes never reach Rust code here again.
                let bad = unsafe { String::from_utf8_unchecked(vec![0xff, 0xfe, 0x41]) };
                Ok(vec![InstalledPackage {
                    name: bad,
                    version: "1".to_string(),
                    satisfies: Vec::new(),
                }])
            }
            // 1.1: claims to satisfy a name nobody asked for.
            "satisfies-unrequested" => Ok(vec![package("p", "1").satisfying("sudo")]),
            _ => Ok(Vec::new()),
        }
    }

    /// 1.1: a variant with a terminal escape when `hostile/variant` says so.
    fn detect(present: &[String], files: &[DetectFile]) -> Option<Detection> {
        if files.iter().any(|f| f.contents.trim() == "escape") {
            return Some(Detection::variant("\u{1b}[2Jpwned"));
        }
        (!present.is_empty()).then(Detection::default)
    }

    /// 1.1: `unasked` reports a name it was not asked about; `flood` returns
    /// 600 000 candidates (over the host's cap).
    fn available_argv(_: &ImageContext, _: &[String]) -> Result<Option<Vec<String>>, ResolverError> {
        Ok(Some(args(&["true"])))
    }

    fn parse_available(
        _: &ImageContext,
        _: &[String],
        output: &str,
    ) -> Result<Availability, ResolverError> {
        match output {
            "unasked" => Ok(Availability {
                unknown: vec!["sudo".to_string()],
                candidates: Vec::new(),
            }),
            "flood" => Ok(Availability {
                unknown: Vec::new(),
                candidates: vec!["p".to_string(); 600_000],
            }),
            _ => Ok(Availability::default()),
        }
    }
}

karapace_plugin_sdk::export_resolver!(Misbehave);
