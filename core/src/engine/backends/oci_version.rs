//! The OCI runtime's release, checked before every session against the oldest one that applies
//! the recursive mount attributes the bundle relies on (`rro`, `rnosuid`, `rnodev`: crun 1.4,
//! runc 1.1, youki 0.1, all from 2021–23). An older runtime ignores those options without a
//! word, which would leave every mount beneath a read-only bind writable (and `suid` and device
//! files honoured beneath a `nosuid`/`nodev` one).
//!
//! Asking a runtime (`--version`) costs 3–6 ms, half of an `oci` session's start, so the answer
//! is kept in the user's cache (`oci-runtimes`), keyed by what changes whenever the file does:
//! its device, inode, size and modification and change times. A runtime replaced or rewritten
//! in place is asked again.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use karapace_helper_client::{OciFlavour, OciRuntime};

use crate::error::{CoreError, Result};

/// How long a runtime may take to print its version.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// What is read of its answer (a version line and a few more).
const MAX_ANSWER_BYTES: u64 = 4096;
/// Entries the cache keeps (one per runtime file; older ones are dropped).
const MAX_CACHED: usize = 16;

/// A release number: major, minor, patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(u32, u32, u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The oldest release of each runtime that applies the recursive mount attributes.
pub fn minimum(flavour: OciFlavour) -> Version {
    match flavour {
        OciFlavour::Crun => Version(1, 4, 0),
        OciFlavour::Runc => Version(1, 1, 0),
        OciFlavour::Youki => Version(0, 1, 0),
    }
}

fn name(flavour: OciFlavour) -> &'static str {
    match flavour {
        OciFlavour::Crun => "crun",
        OciFlavour::Runc => "runc",
        OciFlavour::Youki => "youki",
    }
}

/// The release a runtime's `--version` output names: the word after `version` on its first
/// line (`crun version 1.8.1`, `runc version 1.1.5+ds1`, `youki version: 0.7.0`); a missing
/// minor or patch number counts as 0, anything after the digits (`+ds1`, `-rc2`) is ignored.
pub fn parse(output: &str) -> Option<Version> {
    let first = output.lines().next()?;
    let mut words = first.split_whitespace();
    words.find(|w| w.trim_end_matches(':') == "version")?;
    let number = words.next()?.trim_start_matches('v');
    let mut parts = number.split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next().flatten()?;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some(Version(major, minor, patch))
}

/// Refuses a runtime older than [`minimum`], or one whose release cannot be told.
pub fn check(runtime: &OciRuntime) -> Result<()> {
    let path = &runtime.path;
    let meta = std::fs::metadata(path)
        .map_err(|e| CoreError::io(format!("cannot inspect {}", path.display()), e))?;
    let key = Key::of(&meta);
    let cache = karapace_images::config::cache_root().map(|root| root.join("oci-runtimes"));
    let cached = cache.as_deref().and_then(|c| lookup(c, path, &key));
    let version = if let Some(v) = cached {
        v
    } else {
        let v = ask(path)?;
        if let Some(c) = &cache
            && let Err(e) = remember(c, path, &key, v)
        {
            tracing::debug!("cannot cache the version of {}: {e}", path.display());
        }
        v
    };
    let needed = minimum(runtime.flavour);
    if version < needed {
        return Err(CoreError::OciRuntime(format!(
            "OCI runtime {path} is {name} {version}; karapace needs {name} {needed} or later: \
             older releases ignore the recursive mount options (rro, rnosuid, rnodev) without a \
             word, which would leave mounts beneath read-only binds writable",
            path = path.display(),
            name = name(runtime.flavour),
        )));
    }
    Ok(())
}

/// What identifies one state of a runtime's file.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Key {
    fn of(meta: &std::fs::Metadata) -> Key {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Key {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn line(&self, version: Version, path: &Path) -> Option<String> {
        let path = path.to_str().filter(|p| !p.contains('\n'))?;
        Some(format!(
            "{version} {} {} {} {} {} {path}\n",
            self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns
        ))
    }
}

/// One line of the cache: the version, the key, then the path (last: it may hold spaces).
fn parse_line(line: &str) -> Option<(Version, Key, PathBuf)> {
    let mut f = line.splitn(7, ' ');
    let version = parse(&format!("version {}", f.next()?))?;
    let key = Key {
        dev: f.next()?.parse().ok()?,
        ino: f.next()?.parse().ok()?,
        size: f.next()?.parse().ok()?,
        mtime_ns: f.next()?.parse().ok()?,
        ctime_ns: f.next()?.parse().ok()?,
    };
    Some((version, key, PathBuf::from(f.next()?)))
}

/// The cache's lines, if it is a file of the caller's that no one else may write (anything
/// else is ignored: an entry planted by someone else would let an old runtime through).
fn read_cache(cache: &Path) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(cache)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o022 != 0
    {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_ANSWER_BYTES * MAX_CACHED as u64)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

fn lookup(cache: &Path, path: &Path, key: &Key) -> Option<Version> {
    read_cache(cache)?
        .lines()
        .filter_map(parse_line)
        .find(|(_, k, p)| p == path && k == key)
        .map(|(v, _, _)| v)
}

/// Records `version` for the runtime's current state, replacing what the cache held for that
/// path, keeping the newest [`MAX_CACHED`] entries.
fn remember(cache: &Path, path: &Path, key: &Key, version: Version) -> std::io::Result<()> {
    let Some(line) = key.line(version, path) else {
        return Ok(()); // a path no line can hold is asked each time
    };
    let others: Vec<String> = read_cache(cache)
        .unwrap_or_default()
        .lines()
        .filter(|l| parse_line(l).is_some_and(|(_, _, p)| p != path))
        .map(|l| format!("{l}\n"))
        .collect();
    let keep = others.len().min(MAX_CACHED - 1);
    let text: String = std::iter::once(line)
        .chain(others.into_iter().take(keep))
        .collect();
    if let Some(dir) = cache.parent() {
        std::fs::create_dir_all(dir)?;
    }
    karapace_atomic_file::write(
        cache,
        text.as_bytes(),
        karapace_atomic_file::Mode::Exactly(0o600),
    )
}

/// Runs `<runtime> --version` (no variables of the caller's but a plain `PATH`, nothing on
/// stdin, at most [`ANSWER_WITHIN`]) and parses its answer.
fn ask(path: &Path) -> Result<Version> {
    let fail = |why: String| {
        CoreError::OciRuntime(format!(
            "cannot tell which release the OCI runtime {} is: {why}",
            path.display()
        ))
    };
    let mut child = Command::new(path)
        .arg("--version")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let deadline = Instant::now() + ANSWER_WITHIN;
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "'--version' did not answer within {} s",
                    ANSWER_WITHIN.as_secs()
                )));
            }
            Err(e) => return Err(fail(format!("cannot wait for it: {e}"))),
        }
    };
    let mut answer = Vec::new();
    if let Some(out) = child.stdout.take() {
        out.take(MAX_ANSWER_BYTES)
            .read_to_end(&mut answer)
            .map_err(|e| fail(format!("cannot read its answer: {e}")))?;
    }
    let text = String::from_utf8_lossy(&answer);
    if !status.success() {
        return Err(fail(format!("'--version' failed ({status})")));
    }
    parse(&text).ok_or_else(|| {
        let first = text.lines().next().unwrap_or("");
        fail(format!(
            "'--version' said {}",
            crate::output::escape(
                &first.chars().take(120).collect::<String>(),
                crate::output::Newlines::Escape
            )
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_the_runtimes_print_them() {
        assert_eq!(
            parse("crun version 1.8.1\ncommit: f8a0\n"),
            Some(Version(1, 8, 1))
        );
        assert_eq!(parse("runc version 1.1.5+ds1\n"), Some(Version(1, 1, 5)));
        assert_eq!(parse("youki version: 0.7.0\n"), Some(Version(0, 7, 0)));
        assert_eq!(parse("runc version 1.0.0-rc93\n"), Some(Version(1, 0, 0)));
        assert_eq!(parse("crun version 1.4"), Some(Version(1, 4, 0)));
        assert_eq!(parse("crun version v1.20.3"), Some(Version(1, 20, 3)));
        for bad in [
            "",
            "crun",
            "crun version",
            "crun version x.y",
            "\ncrun version 1.8",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn releases_without_recursive_mount_options_are_too_old() {
        assert!(Version(1, 0, 2) < minimum(OciFlavour::Runc));
        assert!(Version(1, 1, 0) >= minimum(OciFlavour::Runc));
        assert!(Version(1, 3, 9) < minimum(OciFlavour::Crun));
        assert!(Version(1, 10, 0) >= minimum(OciFlavour::Crun));
        assert!(Version(0, 0, 5) < minimum(OciFlavour::Youki));
    }

    #[test]
    fn cache_lines_round_trip_and_odd_ones_are_skipped() {
        let key = Key {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: -4,
            ctime_ns: 5,
        };
        let path = Path::new("/opt/my runtimes/crun");
        let line = key.line(Version(1, 8, 1), path).unwrap();
        let (v, k, p) = parse_line(line.trim_end()).unwrap();
        assert_eq!((v, k, p.as_path()), (Version(1, 8, 1), key, path));
        assert!(parse_line("1.8.1 1 2 3").is_none());
        assert!(parse_line("garbage").is_none());
        assert!(
            Key::of(&std::fs::metadata("/").unwrap())
                .line(Version(1, 0, 0), Path::new("/a\nb"))
                .is_none()
        );
    }
}
