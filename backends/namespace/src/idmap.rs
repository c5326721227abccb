//! User and group id maps of the environment's user namespace.

use std::path::Path;
use std::process::{Command, Stdio};

use karapace_protocol::{Identity, Refusal, SetupStep};
use nix::unistd::Pid;

/// One subordinate id range from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    pub start: u32,
    pub count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMap {
    /// Only the caller's own uid and gid.
    Single,
    /// Inside 0 → caller, 1..=count → the subordinate range.
    Subordinate { uid: SubRange, gid: SubRange },
    /// Inside `0..count` → the same ids on the host (a caller that is root).
    Identity { count: u32 },
}

/// Ids every map that keeps owners covers: `0..=MAX_INSIDE_ID`.
const FULL_COUNT: u32 = karapace_protocol::MAX_INSIDE_ID + 1;

impl IdMap {
    /// The maps of [`karapace_protocol::IdMapMode::Full`] for the caller `uid`/`gid`: the
    /// identity for root, else 0 → the caller plus the caller's subordinate range, which must
    /// cover every other inside id.
    pub fn full(uid: u32, gid: u32) -> Result<IdMap, Refusal> {
        if uid == 0 {
            return Ok(IdMap::Identity { count: FULL_COUNT });
        }
        match subordinate_ranges(uid, gid) {
            Some((u, g)) if u.count >= FULL_COUNT - 1 && g.count >= FULL_COUNT - 1 => {
                Ok(IdMap::Subordinate { uid: u, gid: g })
            }
            _ => Err(Refusal::NoSubordinateRange),
        }
    }
}

/// One line of a `uid_map` or `gid_map`: first id inside, first id outside, count.
pub type MapLine = (u32, u32, u32);

/// The `uid_map` and `gid_map` lines of a user namespace, as its creator's namespace reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapLines {
    pub uid: Vec<MapLine>,
    pub gid: Vec<MapLine>,
}

impl IdMap {
    /// The lines this map gives the namespace of a session of the caller `uid`/`gid` whose
    /// workload runs as `identity` (what [`write_single`], [`write_subordinate`] and
    /// [`write_identity`] write).
    pub fn lines(&self, identity: Identity, uid: u32, gid: u32) -> MapLines {
        match *self {
            IdMap::Single => {
                let (iu, ig) = match identity {
                    Identity::Root => (0, 0),
                    Identity::Caller => (uid, gid),
                };
                MapLines {
                    uid: vec![(iu, uid, 1)],
                    gid: vec![(ig, gid, 1)],
                }
            }
            IdMap::Subordinate { uid: u, gid: g } => MapLines {
                uid: vec![(0, uid, 1), (1, u.start, u.count)],
                gid: vec![(0, gid, 1), (1, g.start, g.count)],
            },
            IdMap::Identity { count } => MapLines {
                uid: vec![(0, 0, count)],
                gid: vec![(0, 0, count)],
            },
        }
    }
}

/// Parses the text of a `/proc/<pid>/uid_map` or `gid_map`; `None` if it is not a list of
/// three-number lines.
pub fn parse_map(text: &str) -> Option<Vec<MapLine>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace().map(|v| v.parse::<u32>().ok());
            match (f.next()??, f.next()??, f.next()??, f.next()) {
                (a, b, c, None) => Some((a, b, c)),
                _ => None,
            }
        })
        .collect()
}

/// Writes identity maps of `count` ids for `pid` (the caller is root on the host, which may
/// write any map; `setgroups` stays allowed, so package managers can drop privileges).
pub fn write_identity(pid: Pid, count: u32) -> Result<(), crate::Step> {
    let line = format!("0 0 {count}");
    for file in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{}/{file}", pid.as_raw()), &line)
            .map_err(crate::io_step(SetupStep::WriteIdMap, libc::EIO))?;
    }
    Ok(())
}

fn lookup(file: &Path, name: &str, id: u32) -> Option<SubRange> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != name && who.parse::<u32>().ok() != Some(id) {
            return None;
        }
        let r = SubRange {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        };
        (r.count > 0).then_some(r)
    })
}

fn tool(name: &str) -> Option<String> {
    ["/usr/bin", "/bin", "/usr/sbin"]
        .into_iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
}

/// The caller's subordinate ranges, when /etc/subuid and /etc/subgid grant
/// both and newuidmap/newgidmap are installed.
pub fn subordinate_ranges(uid: u32, gid: u32) -> Option<(SubRange, SubRange)> {
    tool("newuidmap")?;
    tool("newgidmap")?;
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)?;
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| name.clone(), |g| g.name);
    let u = lookup(Path::new("/etc/subuid"), &name, uid)?;
    let g = lookup(Path::new("/etc/subgid"), &name, gid)
        .or_else(|| lookup(Path::new("/etc/subgid"), &group, gid))?;
    Some((u, g))
}

fn run_map_tool(tool_path: &str, pid: Pid, own: u32, r: SubRange) -> Result<(), Refusal> {
    let status = Command::new(tool_path)
        .arg(pid.as_raw().to_string())
        .args(["0", &own.to_string(), "1"])
        .args(["1", &r.start.to_string(), &r.count.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| Refusal::Setup {
            step: SetupStep::IdMapTool,
            detail: format!("spawn {tool_path}"),
            errno: e.raw_os_error().unwrap_or(0),
        })?;
    if status.success() {
        return Ok(());
    }
    // The usual cause when /etc/subuid grants the range: a process above this one set
    // no_new_privs (a sandboxing service manager does), so the tool ran without the privilege
    // it is installed with. Say so rather than leave the user to guess.
    let why = if nix::sys::prctl::get_no_new_privs().unwrap_or(false) {
        "; no_new_privs is set, so it ran without its set-user-ID bit or file capabilities"
    } else {
        ""
    };
    Err(Refusal::Setup {
        step: SetupStep::IdMapTool,
        detail: format!("{tool_path} exited with {status}{why}"),
        errno: 0,
    })
}

/// Writes subordinate maps for `pid` through newuidmap/newgidmap.
pub fn write_subordinate(
    pid: Pid,
    uid: u32,
    gid: u32,
    u: SubRange,
    g: SubRange,
) -> Result<(), Refusal> {
    let (Some(nu), Some(ng)) = (tool("newuidmap"), tool("newgidmap")) else {
        return Err(Refusal::Setup {
            step: SetupStep::IdMapToolMissing,
            detail: String::new(),
            errno: nix::errno::Errno::ENOENT as i32,
        });
    };
    run_map_tool(&nu, pid, uid, u)?;
    run_map_tool(&ng, pid, gid, g)
}

/// Writes a single-id map for the calling process (which just entered a new
/// user namespace and holds all capabilities in it).
pub fn write_single(
    uid_inside: u32,
    uid_host: u32,
    gid_inside: u32,
    gid_host: u32,
) -> Result<(), crate::Step> {
    let w = |file: &str, data: String| {
        std::fs::write(file, data).map_err(crate::io_step(SetupStep::WriteIdMap, libc::EIO))
    };
    w("/proc/self/setgroups", "deny".to_string())?;
    w("/proc/self/uid_map", format!("{uid_inside} {uid_host} 1"))?;
    w("/proc/self/gid_map", format!("{gid_inside} {gid_host} 1"))
}

#[cfg(test)]
mod tests {
    use super::{IdMap, Identity, SubRange, parse_map};

    #[test]
    fn proc_maps_parse_as_written_and_garbage_does_not() {
        let text = "         0       1001          1\n         1     100000      65536\n";
        assert_eq!(
            parse_map(text),
            Some(vec![(0, 1001, 1), (1, 100_000, 65_536)])
        );
        assert_eq!(parse_map(""), Some(vec![]));
        assert_eq!(parse_map("0 1001"), None);
        assert_eq!(parse_map("0 1001 1 4"), None);
        assert_eq!(parse_map("0 -1 1"), None);
    }

    #[test]
    fn plain_and_root_sessions_of_a_user_have_different_maps() {
        let (uid, gid) = (1001, 1002);
        let plain = IdMap::Single.lines(Identity::Caller, uid, gid);
        let collapsed_root = IdMap::Single.lines(Identity::Root, uid, gid);
        let r = SubRange {
            start: 100_000,
            count: 65_536,
        };
        let root = IdMap::Subordinate { uid: r, gid: r }.lines(Identity::Root, uid, gid);
        assert_eq!(plain.uid, vec![(1001, 1001, 1)]);
        assert_eq!(collapsed_root.gid, vec![(0, 1002, 1)]);
        assert_ne!(plain, collapsed_root);
        assert_ne!(plain, root);
        // Root on the host: plain and --root sessions share the identity maps.
        let full = IdMap::Identity { count: 65_536 };
        assert_eq!(
            full.lines(Identity::Caller, 0, 0),
            full.lines(Identity::Root, 0, 0)
        );
    }
}
