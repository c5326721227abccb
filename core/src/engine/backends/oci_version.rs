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

use karapace_helper_client::{OciFlavour, OciRuntime, oci_runtime_fault};

use crate::error::{CoreError, Result};

/// How long a runtime may take to print its version.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// What is read of its answer (a version line and a few more).
const MAX_ANSWER_BYTES: u64 = 4096;
/// Entries the cache keeps (one per runtime file; older ones are dropped).
const MAX_CACHED: usize = 16;

/// A release number: major, minor, patch, and whether it is a release (a pre-release such as
/// `1.1.0-rc.1` or Debian's `1.0.0~rc93` comes before the release of the same number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(u32, u32, u32, bool);

impl Version {
    /// `x.y.z`, then a pre-release tag after `-` or `~` (`rc`, `alpha`, `beta`, `pre`, `dev`:
    /// `1.1.0-rc.1`, Debian's `1.0.0~rc93`), or anything else after `-`, `~` or `+` that
    /// does not make it one (Debian's `+ds1`, Ubuntu's `-0ubuntu1~22.04.1`, `git describe`'s
    /// `-3-gabc`); a missing minor or patch number counts as 0.
    fn parse(number: &str) -> Option<Version> {
        const PRE_RELEASE_TAGS: [&str; 5] = ["rc", "alpha", "beta", "pre", "dev"];
        let number = number.strip_prefix('v').unwrap_or(number);
        let end = number.find(['-', '~', '+']).unwrap_or(number.len());
        let suffix = number[end..].to_ascii_lowercase();
        let release = !(suffix.starts_with(['-', '~'])
            && PRE_RELEASE_TAGS.iter().any(|t| suffix[1..].starts_with(t)));
        let mut parts = number[..end].split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next().flatten()?;
        let minor = parts.next().unwrap_or(Some(0))?;
        let patch = parts.next().unwrap_or(Some(0))?;
        Some(Version(major, minor, patch, release))
    }

    /// As the cache keeps it: `x.y.z`, with `-pre` for a pre-release.
    fn token(self) -> String {
        format!(
            "{}.{}.{}{}",
            self.0,
            self.1,
            self.2,
            if self.3 { "" } else { "-pre" }
        )
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)?;
        if !self.3 {
            f.write_str(" (a pre-release)")?;
        }
        Ok(())
    }
}

/// The oldest release of each runtime that applies the recursive mount attributes.
pub fn minimum(flavour: OciFlavour) -> Version {
    match flavour {
        OciFlavour::Crun => Version(1, 4, 0, true),
        OciFlavour::Runc => Version(1, 1, 0, true),
        OciFlavour::Youki => Version(0, 1, 0, true),
    }
}

fn name(flavour: OciFlavour) -> &'static str {
    match flavour {
        OciFlavour::Crun => "crun",
        OciFlavour::Runc => "runc",
        OciFlavour::Youki => "youki",
    }
}

/// The runtime and release a `--version` output names: its first line's first word and the
/// word after `version` (`crun version 1.8.1`, `runc version 1.1.5+ds1`, `youki version:
/// 0.7.0`).
pub fn parse(output: &str) -> Option<(&str, Version)> {
    let first = output.lines().next()?;
    let mut words = first.split_whitespace();
    let name = words.next()?;
    words.find(|w| w.trim_end_matches(':') == "version")?;
    Some((name, Version::parse(words.next()?)?))
}

/// Refuses a runtime older than [`minimum`], or one whose release cannot be told — after the
/// checks the helper makes of the runtime's file ([`trusted`]), since asking runs it.
pub fn check(runtime: &OciRuntime) -> Result<()> {
    let path = &runtime.path;
    let meta = trusted(path)?;
    let key = Key::of(&meta);
    let cache = karapace_dirs::karapace_cache().map(|root| root.join("oci-runtimes"));
    let cached = cache.as_deref().and_then(|c| lookup(c, path, &key));
    let version = if let Some(v) = cached {
        v
    } else {
        let v = ask(path, name(runtime.flavour))?;
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

/// The runtime's file, if no one but root and the caller can have written it or can rename
/// another file into its place (`karapace_protocol::oci_runtime_fault`, the helper's rule; the
/// core runs the runtime's `--version` before the helper sees the request). Not a regular
/// executable file: the helper says so.
fn trusted(path: &Path) -> Result<std::fs::Metadata> {
    let caller = nix::unistd::geteuid().as_raw();
    let inspect = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map_err(|e| CoreError::io(format!("cannot inspect {}", p.display()), e))
    };
    let meta = inspect(path)?;
    let refuse = |what: String, fault: &str| {
        CoreError::OciRuntime(format!("OCI runtime {}: {what}{fault}", path.display()))
    };
    if let Some(fault) = oci_runtime_fault(meta.mode(), meta.uid(), caller, false) {
        return Err(refuse(String::new(), fault));
    }
    for dir in path.ancestors().skip(1) {
        let d = inspect(dir)?;
        if let Some(fault) = oci_runtime_fault(d.mode(), d.uid(), caller, true) {
            return Err(refuse(format!("its directory {} ", dir.display()), fault));
        }
    }
    Ok(meta)
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
            "{} {} {} {} {} {} {path}\n",
            version.token(),
            self.dev,
            self.ino,
            self.size,
            self.mtime_ns,
            self.ctime_ns
        ))
    }
}

/// One line of the cache: the version, the key, then the path (last: it may hold spaces).
fn parse_line(line: &str) -> Option<(Version, Key, PathBuf)> {
    let mut f = line.splitn(7, ' ');
    let version = Version::parse(f.next()?)?;
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
/// stdin, in a process group of its own) and parses its answer, which must name the runtime
/// `expected` (a file named `runc` that is really an old crun is not runc 1.1). Bounded: it must
/// exit within [`ANSWER_WITHIN`]; what it wrote until then is read without waiting for its
/// pipes to close (a process it left behind may hold them); its group, and the runtime itself,
/// are killed before it is reaped, while its pid still names that group.
fn ask(path: &Path, expected: &str) -> Result<Version> {
    use std::os::unix::process::CommandExt;
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
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let (mut answer, mut complaint) = (Vec::new(), Vec::new());
    let exited = match (child.stdout.take(), child.stderr.take()) {
        (Some(out), Some(err)) => wait_reading(
            &child,
            [out.into(), err.into()],
            [&mut answer, &mut complaint],
        ),
        _ => Err(std::io::Error::other("no pipe to its output")),
    };
    // Still unreaped: the pid cannot have been reused, for the group or the process.
    if let Ok(pid) = i32::try_from(child.id()).map(nix::unistd::Pid::from_raw) {
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.kill();
    let status = child.wait();
    let shown = |t: &str| {
        crate::output::escape(
            &t.chars().take(120).collect::<String>(),
            crate::output::Newlines::Escape,
        )
        .into_owned()
    };
    let said = String::from_utf8_lossy(&complaint);
    let said = said.lines().find(|l| !l.trim().is_empty()).map(shown);
    match (exited, status) {
        (Ok(true), Ok(status)) if status.success() => {}
        (Ok(true), Ok(status)) => {
            return Err(fail(format!(
                "'--version' failed ({status}){}",
                said.map(|s| format!(": {s}")).unwrap_or_default()
            )));
        }
        (Ok(false), _) => {
            return Err(fail(format!(
                "'--version' did not answer within {} s",
                ANSWER_WITHIN.as_secs()
            )));
        }
        (Err(e), _) | (Ok(true), Err(e)) => {
            return Err(fail(format!("cannot read its answer: {e}")));
        }
    }
    let text = String::from_utf8_lossy(&answer);
    match parse(&text) {
        Some((name, version)) if name == expected => Ok(version),
        Some((name, _)) => Err(fail(format!(
            "it says it is {}, not {expected}",
            shown(name)
        ))),
        None => Err(fail(format!(
            "'--version' said {}",
            shown(text.lines().next().unwrap_or(""))
        ))),
    }
}

/// Reads `pipes` (non-blocking) into `into` (at most [`MAX_ANSWER_BYTES`] each) until `child`
/// has exited (`true`; left unreaped, `waitid` with `WNOWAIT`) or [`ANSWER_WITHIN`] has passed
/// (`false`).
fn wait_reading(
    child: &std::process::Child,
    pipes: [std::os::fd::OwnedFd; 2],
    into: [&mut Vec<u8>; 2],
) -> std::io::Result<bool> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    let mut pipes = pipes.map(std::fs::File::from);
    for pipe in &pipes {
        fcntl(pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
    }
    let [out, err] = into;
    let mut sinks = [out, err];
    let drain = |pipe: &mut std::fs::File, sink: &mut Vec<u8>| -> std::io::Result<()> {
        let mut buf = [0u8; 1024];
        let cap = usize::try_from(MAX_ANSWER_BYTES).unwrap_or(usize::MAX);
        while sink.len() < cap {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => sink.extend_from_slice(&buf[..n.min(cap - sink.len())]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    let pid = child.id();
    let deadline = Instant::now() + ANSWER_WITHIN;
    let mut pause = Duration::from_micros(200);
    loop {
        for (pipe, sink) in pipes.iter_mut().zip(sinks.iter_mut()) {
            drain(pipe, sink)?;
        }
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(
            Id::Pid(nix::unistd::Pid::from_raw(pid.cast_signed())),
            flags,
        ) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => {
                for (pipe, sink) in pipes.iter_mut().zip(sinks.iter_mut()) {
                    drain(pipe, sink)?;
                }
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_the_runtimes_print_them() {
        let release = |a, b, c| Version(a, b, c, true);
        assert_eq!(
            parse("crun version 1.8.1\ncommit: f8a0\n"),
            Some(("crun", release(1, 8, 1)))
        );
        assert_eq!(
            parse("runc version 1.1.5+ds1\n"),
            Some(("runc", release(1, 1, 5)))
        );
        assert_eq!(
            parse("youki version: 0.7.0\n"),
            Some(("youki", release(0, 7, 0)))
        );
        assert_eq!(
            parse("runc version 1.1.0-rc.1\n"),
            Some(("runc", Version(1, 1, 0, false)))
        );
        assert_eq!(
            parse("runc version 1.0.0~rc93\n"),
            Some(("runc", Version(1, 0, 0, false)))
        );
        assert_eq!(
            parse("runc version 1.1.7-0ubuntu1~22.04.1\n"),
            Some(("runc", release(1, 1, 7)))
        );
        assert_eq!(
            parse("runc version 1.1.0-0ubuntu1\n"),
            Some(("runc", release(1, 1, 0)))
        );
        assert_eq!(
            parse("crun version 1.4.0-3-gabc123"),
            Some(("crun", release(1, 4, 0)))
        );
        assert_eq!(
            parse("crun version 1.14.0-dev"),
            Some(("crun", Version(1, 14, 0, false)))
        );
        assert_eq!(parse("crun version 1.4"), Some(("crun", release(1, 4, 0))));
        assert_eq!(
            parse("crun version v1.20.3"),
            Some(("crun", release(1, 20, 3)))
        );
        for bad in [
            "",
            "crun",
            "crun version",
            "crun version x.y",
            "crun version 1.x",
            "crun version 99999999999.1",
            "\ncrun version 1.8",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn releases_without_recursive_mount_options_are_too_old() {
        let release = |a, b, c| Version(a, b, c, true);
        assert!(release(1, 0, 2) < minimum(OciFlavour::Runc));
        assert!(Version(1, 1, 0, false) < minimum(OciFlavour::Runc));
        assert!(release(1, 1, 0) >= minimum(OciFlavour::Runc));
        assert!(release(1, 3, 9) < minimum(OciFlavour::Crun));
        assert!(release(1, 10, 0) >= minimum(OciFlavour::Crun));
        assert!(release(0, 0, 5) < minimum(OciFlavour::Youki));
    }

    #[test]
    fn the_runtime_and_its_directories_follow_the_helpers_rule_before_it_runs() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        let refused = |p: &Path| trusted(p).unwrap_err().to_string();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bin");
        std::fs::create_dir(&dir).unwrap();
        mode(&dir, 0o755);
        let runtime = dir.join("crun");
        std::fs::write(&runtime, "#!/bin/sh\n").unwrap();
        mode(&runtime, 0o755);
        assert!(trusted(&runtime).is_ok());
        mode(&runtime, 0o775);
        assert!(refused(&runtime).ends_with("crun: is writable by group or others"));
        mode(&runtime, 0o755);
        mode(&dir, 0o777);
        assert!(refused(&runtime).ends_with("bin is writable by group or others"));
        // A sticky directory lets no one rename the caller's entries.
        mode(&dir, 0o1777);
        assert!(trusted(&runtime).is_ok());
        mode(&dir, 0o755);
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&runtime, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
            assert!(refused(&runtime).ends_with("crun: belongs to another user"));
        }
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
        for version in [Version(1, 8, 1, true), Version(1, 1, 0, false)] {
            let line = key.line(version, path).unwrap();
            let (v, k, p) = parse_line(line.trim_end()).unwrap();
            assert_eq!((v, &k, p.as_path()), (version, &key, path));
        }
        assert!(parse_line("1.8.1 1 2 3").is_none());
        assert!(parse_line("garbage").is_none());
        assert!(
            Key::of(&std::fs::metadata("/").unwrap())
                .line(Version(1, 0, 0, true), Path::new("/a\nb"))
                .is_none()
        );
    }
}
