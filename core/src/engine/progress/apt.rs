//! Recognising the lines apt-get and dpkg print when their output is not a terminal (a build
//! step's output is a pipe): what is being fetched, unpacked or set up, and how many packages
//! the run will handle. Anything else is `None`; the text is a package's and may be hostile,
//! so names are returned as they are and escaped only where they are shown.

/// What one line of apt/dpkg output says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `Get:<n> <url> <dist> <arch> <pkg> <arch> <version> [size]`: the n-th download of a run,
    /// a package.
    FetchPackage { n: u32, package: String },
    /// `Get:<n> <url> <dist> [<component> <arch>] <index> [size]` (or `Hit:`/`Ign:`): the n-th
    /// index file of `apt-get update`, e.g. `bookworm/main amd64 Packages`.
    FetchIndex { n: u32, what: String },
    /// `<u> upgraded, <n> newly installed, …`: the number of packages the run installs.
    Total(u32),
    /// `Unpacking <pkg>[:arch] (<version>) ...`
    Unpack(String),
    /// `Setting up <pkg>[:arch] (<version>) ...`
    SetUp(String),
    /// `Processing triggers for <pkg> (<version>) ...`
    Triggers(String),
    /// A phase without a package: reading lists, resolving dependencies, the dpkg database.
    Phase(&'static str),
}

/// What `line` (one line, without its end) says, if it is one apt/dpkg prints.
pub fn parse(line: &str) -> Option<Event> {
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("Get:") {
        return fetch(rest);
    }
    if let Some(rest) = line
        .strip_prefix("Hit:")
        .or_else(|| line.strip_prefix("Ign:"))
    {
        return fetch(rest);
    }
    if let Some(rest) = line.strip_prefix("Unpacking ") {
        return first_word_package(rest).map(Event::Unpack);
    }
    if let Some(rest) = line.strip_prefix("Setting up ") {
        return first_word_package(rest).map(Event::SetUp);
    }
    if let Some(rest) = line.strip_prefix("Processing triggers for ") {
        return first_word_package(rest).map(Event::Triggers);
    }
    if line.contains(" upgraded, ") && line.contains(" newly installed") {
        return total(line).map(Event::Total);
    }
    let phase = match line {
        "Reading package lists..." | "Reading package lists... Done" => "reading package lists",
        "Building dependency tree..." | "Building dependency tree... Done" => {
            "resolving dependencies"
        }
        "Reading state information..." | "Reading state information... Done" => {
            "reading state information"
        }
        _ if line.starts_with("(Reading database ...") => "reading the package database",
        _ => return None,
    };
    Some(Event::Phase(phase))
}

/// The part of a `Get:`/`Hit:`/`Ign:` line after the prefix.
fn fetch(rest: &str) -> Option<Event> {
    let (n, rest) = rest.split_once(' ')?;
    let n: u32 = n.parse().ok()?;
    // Drop the size (`[316 kB]`) at the end; then the first word is the source's URL.
    let rest = match rest.rfind(" [") {
        Some(i) if rest.ends_with(']') => &rest[..i],
        _ => rest,
    };
    let words: Vec<&str> = rest.split_whitespace().skip(1).collect();
    // A package: `<dist/component> <arch> <pkg> <arch> <version>` (a local file or a flat
    // repository has fewer words before the package); index files have at most three words.
    if words.len() >= 4 {
        let package = words[words.len() - 3];
        return Some(Event::FetchPackage {
            n,
            package: package.to_owned(),
        });
    }
    if words.is_empty() {
        return None;
    }
    Some(Event::FetchIndex {
        n,
        what: words.join(" "),
    })
}

/// `<pkg>[:arch] …` → `pkg`.
fn first_word_package(rest: &str) -> Option<String> {
    let word = rest.split_whitespace().next()?;
    let name = word.split_once(':').map_or(word, |(name, _arch)| name);
    (!name.is_empty()).then(|| name.to_owned())
}

/// The packages a run handles, from `0 upgraded, 17 newly installed, 0 to remove and 0 not
/// upgraded.` (also `… 1 reinstalled, …`, `… 2 downgraded, …`).
fn total(line: &str) -> Option<u32> {
    let mut sum: u32 = 0;
    let mut seen = false;
    for part in line
        .trim_end_matches('.')
        .split(", ")
        .flat_map(|p| p.split(" and "))
    {
        let Some((count, what)) = part.trim().split_once(' ') else {
            continue;
        };
        if matches!(
            what,
            "upgraded" | "newly installed" | "reinstalled" | "downgraded"
        ) {
            sum = sum.saturating_add(count.parse::<u32>().ok()?);
            seen = true;
        }
    }
    seen.then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::{Event, parse};

    #[test]
    fn package_downloads_name_the_package() {
        assert_eq!(
            parse(
                "Get:17 http://deb.debian.org/debian bookworm/main amd64 curl amd64 7.88.1-10+deb12u15 [316 kB]"
            ),
            Some(Event::FetchPackage {
                n: 17,
                package: "curl".into()
            })
        );
        assert_eq!(
            parse(
                "Get:6 http://deb.debian.org/debian-security bookworm-security/main amd64 libssl3 amd64 3.0.22-1~deb12u2 [2040 kB]"
            ),
            Some(Event::FetchPackage {
                n: 6,
                package: "libssl3".into()
            })
        );
    }

    #[test]
    fn index_downloads_are_not_packages() {
        assert_eq!(
            parse("Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]"),
            Some(Event::FetchIndex {
                n: 1,
                what: "bookworm InRelease".into()
            })
        );
        assert_eq!(
            parse("Get:4 http://deb.debian.org/debian bookworm/main amd64 Packages [8790 kB]"),
            Some(Event::FetchIndex {
                n: 4,
                what: "bookworm/main amd64 Packages".into()
            })
        );
        assert_eq!(
            parse("Hit:2 http://deb.debian.org/debian bookworm-updates InRelease"),
            Some(Event::FetchIndex {
                n: 2,
                what: "bookworm-updates InRelease".into()
            })
        );
    }

    #[test]
    fn dpkg_steps_name_the_package_without_its_architecture() {
        assert_eq!(
            parse("Unpacking libbrotli1:amd64 (1.0.9-2+deb12u1) ..."),
            Some(Event::Unpack("libbrotli1".into()))
        );
        assert_eq!(
            parse("Unpacking curl (7.88.1-10+deb12u15) over (7.88.1-10+deb12u14) ..."),
            Some(Event::Unpack("curl".into()))
        );
        assert_eq!(
            parse("Setting up curl (7.88.1-10+deb12u15) ..."),
            Some(Event::SetUp("curl".into()))
        );
        assert_eq!(
            parse("Processing triggers for libc-bin (2.36-9+deb12u14) ..."),
            Some(Event::Triggers("libc-bin".into()))
        );
    }

    #[test]
    fn the_totals_line_counts_what_is_installed() {
        assert_eq!(
            parse("0 upgraded, 17 newly installed, 0 to remove and 0 not upgraded."),
            Some(Event::Total(17))
        );
        assert_eq!(
            parse("2 upgraded, 3 newly installed, 1 reinstalled, 0 to remove and 5 not upgraded."),
            Some(Event::Total(6))
        );
        assert_eq!(
            parse("x upgraded, 3 newly installed, 0 to remove and 0 not upgraded."),
            None
        );
    }

    #[test]
    fn other_lines_are_not_events() {
        for line in [
            "",
            "Get:",
            "Get:x http://a b c d e",
            "Get:1",
            "Unpacking ",
            "Preparing to unpack .../16-curl_7.88.1-10+deb12u15_amd64.deb ...",
            "Fetched 4263 kB in 0s (89.2 MB/s)",
            "E: Unable to locate package nope",
        ] {
            assert_eq!(parse(line), None, "{line:?}");
        }
    }
}
