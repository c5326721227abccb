//! Example resolver for Gentoo (Portage's `emerge`), written with the Karapace
//! plugin SDK against interface 1.1. It exists to show what 1.1 lets a
//! plugin own: its package-name grammar (category atoms such as
//! `app-editors/vim`, `=app-editors/vim-9.1.0366`, `>=dev-lang/python-3.12`,
//! short names such as `vim`) and the mapping from what the manifest asked
//! for to the installed package that satisfies it (`qlist -Iv` prints
//! `app-editors/vim-9.1.0366`, whatever atom installed it).
//!
//! Not a built-in: there is no Gentoo image alias, and no availability check
//! (Portage has no fast, offline "which names exist" query).

use karapace_plugin_sdk::prelude::*;

struct Emerge;

/// Operators an atom may start with; each needs a version after the name.
const OPERATORS: [&str; 6] = [">=", "<=", "=", ">", "<", "~"];

/// A parsed atom: `[op]name[-version][:slot][::repo]`, `name` = `[cat/]pkg`.
#[derive(Debug, PartialEq, Eq)]
struct Atom<'a> {
    op: Option<&'static str>,
    /// `cat/pkg` or `pkg`.
    name: &'a str,
    version: Option<&'a str>,
}

impl Atom<'_> {
    /// Does the installed `cat/pkg` at `version` satisfy this atom? A short
    /// name matches any category; `=` compares versions (a trailing `*`
    /// matches a prefix); other operators were enforced by emerge itself.
    fn satisfied_by(&self, installed: &str, version: &str) -> bool {
        let same_name = if self.name.contains('/') {
            self.name == installed
        } else {
            installed.rsplit_once('/').is_some_and(|(_, p)| p == self.name)
        };
        if !same_name {
            return false;
        }
        match (self.op, self.version) {
            (Some("="), Some(v)) => match v.strip_suffix('*') {
                Some(prefix) => version.starts_with(prefix),
                None => version == v,
            },
            _ => true,
        }
    }
}

/// Parses an atom; `None` when it is outside the grammar.
fn parse_atom(atom: &str) -> Option<Atom<'_>> {
    let (op, rest) = match OPERATORS.iter().find(|op| atom.starts_with(**op)) {
        Some(op) => (Some(*op), &atom[op.len()..]),
        None => (None, atom),
    };
    // `::repo` then `:slot` suffixes.
    let rest = match rest.split_once("::") {
        Some((r, repo)) if is_repo(repo) => r,
        Some(_) => return None,
        None => rest,
    };
    let rest = match rest.split_once(':') {
        Some((r, slot)) if is_slot(slot) => r,
        Some(_) => return None,
        None => rest,
    };
    let (name, version) = match op {
        Some(_) => {
            let (name, version) = split_version(rest)?;
            (name, Some(version))
        }
        // Without an operator a version suffix is an error in Portage.
        None if split_version(rest).is_some() => return None,
        None => (rest, None),
    };
    let name_ok = match name.split_once('/') {
        Some((cat, pkg)) => is_category(cat) && is_package(pkg),
        None => is_package(name),
    };
    name_ok.then_some(Atom { op, name, version })
}

/// `cat/pkg-1.2.3-r1` → (`cat/pkg`, `1.2.3-r1`): the first `-` after which a
/// valid version follows (Portage forbids package names that end in one).
/// A trailing `*` (only meaningful after `=`) is kept in the version.
fn split_version(s: &str) -> Option<(&str, &str)> {
    s.match_indices('-').find_map(|(i, _)| {
        let (name, version) = (&s[..i], &s[i + 1..]);
        let bare = version.strip_suffix('*').unwrap_or(version);
        (!name.is_empty() && !name.ends_with('/') && is_version(bare)).then_some((name, version))
    })
}

/// PMS version: `1.2.3[a][_suffix[N]]...[-rN]`.
fn is_version(v: &str) -> bool {
    let (v, revision) = match v.rsplit_once("-r") {
        Some((v, r)) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => (v, Some(r)),
        _ => (v, None),
    };
    let _ = revision;
    let mut parts = v.split('_');
    let Some(numbers) = parts.next() else {
        return false;
    };
    // Numeric components, the last may end in one letter.
    let numbers = match numbers.strip_suffix(|c: char| c.is_ascii_lowercase()) {
        Some(n) => n,
        None => numbers,
    };
    let numeric_ok = !numbers.is_empty()
        && numbers
            .split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let suffixes_ok = parts.all(|s| {
        ["alpha", "beta", "pre", "rc", "p"].iter().any(|k| {
            s.strip_prefix(k)
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
    });
    numeric_ok && suffixes_ok
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+_-".contains(c)
}

fn is_category(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && s.chars().all(|c| name_char(c) || c == '.')
}

fn is_package(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') && s.chars().all(name_char)
}

fn is_slot(s: &str) -> bool {
    s.split('/').all(|p| {
        p.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && p.chars().all(|c| name_char(c) || c == '.')
    })
}

fn is_repo(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
}

impl Resolver for Emerge {
    const NAME: &'static str = "emerge";
    const VERSION: &'static str = "0.1.0";
    const DETECT_PATHS: &'static [&'static str] = &["usr/bin/emerge"];

    fn refresh_steps(_: &ImageContext, _: &StepOptions) -> Result<Vec<Step>, ResolverError> {
        Ok(vec![step(args(&["emerge", "--sync", "--quiet"]))])
    }

    /// `emerge --quiet --noreplace <atoms>`; a pinned request becomes
    /// `=cat/pkg-<version>` whatever atom the manifest used.
    fn install_steps(
        _: &ImageContext,
        packages: &[PackageRequest],
        _: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        let mut argv = args(&["emerge", "--quiet", "--noreplace"]);
        for p in packages {
            let atom = parse_atom(&p.name).ok_or_else(|| invalid(&p.name))?;
            argv.push(match &p.version {
                Some(v) => format!("={}-{v}", atom.name),
                None => p.name.clone(),
            });
        }
        Ok(vec![step(argv)])
    }

    /// Every installed package with its version; `parse_query` picks.
    fn query_argv(_: &ImageContext, _: &[String]) -> Result<Vec<String>, ResolverError> {
        Ok(args(&["qlist", "-Iv"]))
    }

    /// `cat/pkg-version` per line. Each package also satisfies the requested
    /// atoms that name it (`vim`, `=app-editors/vim-9.1.0366`), so the lock
    /// records what the manifest wrote.
    fn parse_query(
        _: &ImageContext,
        requested: &[String],
        output: &str,
    ) -> Result<Vec<InstalledPackage>, ResolverError> {
        let atoms: Vec<(&String, Atom<'_>)> = requested
            .iter()
            .filter_map(|r| Some((r, parse_atom(r)?)))
            .collect();
        let mut out = Vec::new();
        for line in lines(output) {
            let line = line.trim();
            let parsed = split_version(line).filter(|(name, _)| name.contains('/'));
            let Some((name, version)) = parsed else {
                return Err(ResolverError::Parse(format!(
                    "expected 'category/package-version', got {line:?}"
                )));
            };
            let mut installed = package(name, version);
            for (requested, atom) in &atoms {
                if requested.as_str() != name && atom.satisfied_by(name, version) {
                    installed = installed.satisfying(requested.as_str());
                }
            }
            out.push(installed);
        }
        Ok(out)
    }

    fn validate_name(_: &ImageContext, name: &str) -> Result<(), ResolverError> {
        parse_atom(name).map(|_| ()).ok_or_else(|| invalid(name))
    }

    /// A PMS version (`9.1.0366`, `2.39-r6`, `13.2.1_p20240210`).
    fn validate_version(_: &ImageContext, version: &str) -> Result<(), ResolverError> {
        if version.len() <= 128 && is_version(version) {
            Ok(())
        } else {
            Err(ResolverError::InvalidVersion(format!(
                "{version:?} is not a Portage version"
            )))
        }
    }
}

fn invalid(name: &str) -> ResolverError {
    ResolverError::InvalidName(format!(
        "{name:?} is not a Portage atom ([op]category/package[-version][:slot][::repo])"
    ))
}

karapace_plugin_sdk::export_resolver!(Emerge);

#[cfg(test)]
mod tests {
    use super::*;
    use karapace_plugin_sdk::testing::Harness;

    const QLIST: &str = include_str!("../fixtures/qlist-Iv.txt");
    const QLIST_CRLF: &str = include_str!("../fixtures/qlist-Iv-crlf.txt");

    fn image() -> ImageContext {
        Harness::<Emerge>::new()
            .detect(&["usr/bin/emerge"], &[])
            .expect("claims a Gentoo rootfs")
    }

    #[test]
    fn category_atoms_are_names() {
        let emerge = Harness::<Emerge>::new();
        for good in [
            "app-editors/vim",
            "=app-editors/vim-9.1.0366",
            ">=dev-lang/python-3.12",
            "~sys-libs/glibc-2.39",
            "=dev-lang/python-3.12*",
            "dev-lang/python:3.12",
            "app-editors/vim::gentoo",
            "vim",
            "x11-libs/gtk+",
            "dev-lang/rust-bin",
        ] {
            emerge.validate_name(&image(), good).unwrap();
        }
        for bad in [
            "app-editors/vim-9.1",  // a version needs an operator
            "=app-editors/vim",     // an operator needs a version
            "-app-editors/vim",     // an option (refused by the host too)
            "app editors/vim",      // whitespace (refused by the host)
            "app-editors/vim;true", // not in the grammar
            "/vim",
            "app-editors/",
            "=app-editors/vim-x1",
        ] {
            assert!(emerge.validate_name(&image(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn installs_atoms_as_written_and_pins_by_name() {
        let emerge = Harness::<Emerge>::new();
        let steps = emerge
            .install_steps(
                &image(),
                &[
                    PackageRequest::latest("app-editors/vim"),
                    PackageRequest::latest(">=dev-lang/python-3.12"),
                    PackageRequest::pinned("=sys-libs/glibc-2.39-r6", "2.39-r6"),
                    PackageRequest::pinned("dev-vcs/git", "2.44.0"),
                ],
                &StepOptions::default(),
            )
            .unwrap();
        assert_eq!(
            steps[0].argv,
            [
                "emerge",
                "--quiet",
                "--noreplace",
                "app-editors/vim",
                ">=dev-lang/python-3.12",
                "=sys-libs/glibc-2.39-r6",
                "=dev-vcs/git-2.44.0"
            ]
        );
        let e = emerge
            .install_steps(
                &image(),
                &[PackageRequest::pinned("dev-vcs/git", "latest")],
                &StepOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(e, ResolverError::InvalidVersion(_)), "{e:?}");
    }

    #[test]
    fn parses_qlist_and_maps_requested_atoms() {
        let emerge = Harness::<Emerge>::new();
        let requested = [
            "app-editors/vim",
            "=sys-libs/glibc-2.39-r6",
            "=dev-lang/python-3.12*",
            "curl",
            "=dev-vcs/git-2.43.0",
        ];
        let found = emerge.parse_query(&image(), &requested, QLIST).unwrap();
        assert_eq!(found.len(), 25);
        let get = |name: &str| found.iter().find(|p| p.name == name).unwrap();
        assert_eq!(get("app-editors/vim").version, "9.1.0366");
        assert!(get("app-editors/vim").satisfies.is_empty(), "same name");
        assert!(get("app-editors/vim-core").satisfies.is_empty());
        assert_eq!(get("sys-libs/glibc").version, "2.39-r6");
        assert_eq!(get("sys-libs/glibc").satisfies, ["=sys-libs/glibc-2.39-r6"]);
        assert_eq!(get("dev-lang/python").satisfies, ["=dev-lang/python-3.12*"]);
        assert_eq!(get("net-misc/curl").satisfies, ["curl"]);
        // Installed 2.44.0, asked for exactly 2.43.0: not satisfied.
        assert!(get("dev-vcs/git").satisfies.is_empty());
        assert_eq!(get("dev-lang/rust-bin").version, "1.77.1");
        assert_eq!(get("media-libs/libjpeg-turbo").version, "3.0.1");
        assert_eq!(get("sys-devel/gcc").version, "13.2.1_p20240210");
        assert_eq!(get("sys-libs/ncurses").version, "6.4_p20230401");
        assert_eq!(get("x11-libs/gtk+").version, "3.24.41-r1");
        assert_eq!(get("app-misc/ca-certificates").version, "20240203.3.98");

        let crlf = emerge
            .parse_query(&image(), &["vim"], QLIST_CRLF)
            .unwrap();
        assert_eq!(crlf.len(), 2);
        assert_eq!(crlf[0].satisfies, ["vim"]);
        assert!(emerge.parse_query(&image(), &[], "not an atom\n").is_err());
    }

    #[test]
    fn versions_follow_the_package_manager_specification() {
        for good in ["9.1.0366", "2.39-r6", "13.2.1_p20240210", "1.0_rc2_p1", "1a", "0"] {
            assert!(is_version(good), "{good}");
        }
        for bad in ["", "x1", "1.", ".1", "1_foo", "1-r", "1.2-rx", "1ab"] {
            assert!(!is_version(bad), "{bad}");
        }
    }
}
