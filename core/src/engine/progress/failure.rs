//! Which package made an installation fail, from the installer's last output, so that the
//! error's first line can name it (`package installation failed: man-db: …`).

use std::path::Path;

/// How much of the end of a build log is searched (the failing step's output is at the end).
const WINDOW: u64 = 64 * 1024;

/// What the end of a failed step's log says about the failure.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// The packages apt/dpkg said failed, the root cause first; empty when it names none
    /// (another package manager, or no log).
    pub packages: Vec<String>,
    /// dpkg's first error with the lines that led to it (the real reason, e.g. a `chown` that
    /// failed in a maintainer script), when it comes before the last `tail` lines — which the
    /// error shows anyway; empty otherwise.
    pub first_error: Vec<String>,
}

/// Reads the last 64 KiB of the log at `path` and diagnoses it (see [`Diagnosis`]).
pub fn diagnose(path: &Path, tail: usize) -> Diagnosis {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Diagnosis::default();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(len.saturating_sub(WINDOW))).is_err()
        || f.take(WINDOW).read_to_end(&mut bytes).is_err()
    {
        return Diagnosis::default();
    }
    let text = String::from_utf8_lossy(&bytes);
    Diagnosis {
        packages: failing_packages(&text),
        first_error: first_error(&text, tail),
    }
}

/// Lines shown before dpkg's first error: what the failing script printed last.
const LEAD_LINES: usize = 3;

/// dpkg's first `error processing` line, the [`LEAD_LINES`] lines before it and its indented
/// explanation after it, unless they are within the last `tail` lines of `text`.
fn first_error(text: &str, tail: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(at) = lines
        .iter()
        .position(|l| l.starts_with("dpkg: error processing "))
    else {
        return Vec::new();
    };
    let mut end = at + 1;
    while end < lines.len() && end < at + 4 && lines[end].starts_with(' ') {
        end += 1;
    }
    if end > lines.len().saturating_sub(tail) {
        return Vec::new();
    }
    lines[at.saturating_sub(LEAD_LINES)..end]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// The packages named as failed in apt/dpkg output, without repeats, in this order: those dpkg
/// could not unpack or configure (the first is the cause: packages depending on it fail after
/// it), those apt could not find, then the rest of dpkg's closing list.
pub fn failing_packages(text: &str) -> Vec<String> {
    let (mut dpkg, mut apt, mut listed) = (Vec::new(), Vec::new(), Vec::new());
    let mut in_list = false;
    for line in text.lines() {
        if in_list {
            // dpkg's closing list: one indented package (or archive path) per line.
            match line.strip_prefix(' ') {
                Some(item) => {
                    listed.extend(package_name(item.trim()));
                    continue;
                }
                None => in_list = false,
            }
        }
        if line.starts_with("Errors were encountered while processing:") {
            in_list = true;
        } else if let Some(rest) = line.strip_prefix("dpkg: error processing ") {
            // `package <pkg> (--configure):` or `archive <path.deb> (--unpack):`
            let rest = rest
                .strip_prefix("package ")
                .or_else(|| rest.strip_prefix("archive "));
            dpkg.extend(
                rest.and_then(|r| r.split(" (").next())
                    .and_then(package_name),
            );
        } else if let Some(rest) = line.strip_prefix("E: ") {
            apt.extend(apt_error(rest));
        }
    }
    let mut out: Vec<String> = Vec::new();
    for name in dpkg.into_iter().chain(apt).chain(listed) {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// The package an apt error line (after `E: `) is about, for the errors that name one.
fn apt_error(rest: &str) -> Option<String> {
    if let Some(name) = rest.strip_prefix("Unable to locate package ") {
        return package_name(name.trim());
    }
    // `Version '1.0-1' for 'curl' was not found`
    if rest.starts_with("Version '") && rest.ends_with("' was not found") {
        let name = rest
            .split("' for '")
            .nth(1)?
            .strip_suffix("' was not found")?;
        return package_name(name);
    }
    // `Package 'foo' has no installation candidate`
    let name = rest
        .strip_prefix("Package '")?
        .strip_suffix("' has no installation candidate")?;
    package_name(name)
}

/// A package name from what dpkg or apt printed: `name`, `name:arch` or an archive path
/// (`/var/cache/apt/archives/man-db_2.11.2-2_amd64.deb`). `None` unless it looks like a
/// Debian package name: the text comes from the installer's output, which a package can forge,
/// and only a plain name is put into the error's first line.
fn package_name(word: &str) -> Option<String> {
    let name = match word.strip_suffix(".deb") {
        Some(path) => {
            let file = path.rsplit('/').next().unwrap_or(path);
            file.split('_').next().unwrap_or(file)
        }
        None => word.split_once(':').map_or(word, |(name, _arch)| name),
    };
    let ok = (2..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    ok.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{diagnose, failing_packages, first_error};

    fn names(text: &str) -> Vec<String> {
        failing_packages(text)
    }

    #[test]
    fn a_recorded_unpack_failure_names_the_package_not_the_archive() {
        let text = include_str!("testdata/apt-install-man-db-unpack-error.txt");
        assert_eq!(names(text), ["man-db"]);
    }

    #[test]
    fn a_recorded_configure_failure_names_the_package() {
        let text = include_str!("testdata/apt-install-postinst-error.txt");
        assert_eq!(names(text), ["kp-failing-postinst"]);
    }

    #[test]
    fn recorded_apt_errors_name_the_requested_package() {
        let text = include_str!("testdata/apt-unable-to-locate.txt");
        assert_eq!(names(text), ["karapace-no-such-package"]);
        let text = include_str!("testdata/apt-version-not-found.txt");
        assert_eq!(names(text), ["curl"]);
        assert_eq!(
            names("E: Package 'python' has no installation candidate\n"),
            ["python"]
        );
    }

    #[test]
    fn the_cause_comes_before_the_packages_that_failed_because_of_it() {
        // dpkg configures the cause first; packages depending on it fail after it.
        let text = "\
Setting up nginx-common (1.22.1-9) ...
dpkg: error processing package nginx-common (--configure):
 installed nginx-common package post-installation script subprocess returned error exit status 1
dpkg: dependency problems prevent configuration of nginx:
 nginx depends on nginx-common (= 1.22.1-9); however:
  Package nginx-common is not configured yet.

dpkg: error processing package nginx (--configure):
 dependency problems - leaving unconfigured
Errors were encountered while processing:
 nginx-common
 nginx
E: Sub-process /usr/bin/dpkg returned an error code (1)
";
        assert_eq!(names(text), ["nginx-common", "nginx"]);
    }

    #[test]
    fn successful_or_unknown_output_names_nothing() {
        assert!(names(include_str!("testdata/apt-install-curl.txt")).is_empty());
        assert!(names("error: failed to commit transaction (conflicting files)\n").is_empty());
        assert!(names("").is_empty());
        assert_eq!(
            diagnose(std::path::Path::new("/nonexistent/log"), 25),
            super::Diagnosis::default()
        );
    }

    #[test]
    fn forged_names_are_not_repeated() {
        // A package can print anything; only a plain package name reaches the error.
        let text = "E: Unable to locate package \x1b]0;owned\x07\n\
                    dpkg: error processing package Evil Name (--configure):\n\
                    Errors were encountered while processing:\n /tmp/\x1b[2J_1_all.deb\n";
        assert!(names(text).is_empty(), "{:?}", names(text));
    }

    #[test]
    fn dpkg_first_error_is_shown_when_the_tail_does_not_reach_it() {
        let text = include_str!("testdata/apt-install-postinst-error.txt");
        // Within the last 25 lines: the tail shows it already.
        assert!(first_error(text, 25).is_empty());
        // Above the last 3 lines (dpkg's closing list and apt's summary): the script's own
        // message, dpkg's error and its reason.
        assert_eq!(
            first_error(text, 3),
            [
                "Unpacking kp-failing-postinst (1.0-1) ...",
                "Setting up kp-failing-postinst (1.0-1) ...",
                "kp-failing-postinst: cannot configure: no database",
                "dpkg: error processing package kp-failing-postinst (--configure):",
                " installed kp-failing-postinst package post-installation script subprocess returned error exit status 1",
            ]
        );
        assert!(first_error(include_str!("testdata/apt-install-curl.txt"), 0).is_empty());
    }

    #[test]
    fn a_log_on_disk_is_diagnosed_from_its_end() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("build.log");
        // A line naming a package, then more than the 64 KiB window of other output: only the
        // end is read.
        let mut text = "E: Unable to locate package early-noise\n".to_owned();
        text.push_str(&"Reading package lists...\n".repeat(4000));
        text.push_str(include_str!("testdata/apt-install-man-db-unpack-error.txt"));
        std::fs::write(&log, text).unwrap_or_else(|e| panic!("{e}"));
        let found = diagnose(&log, 25);
        assert_eq!(found.packages, ["man-db"]);
        assert!(found.first_error.is_empty(), "{found:?}");
    }
}
