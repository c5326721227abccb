//! User and group id maps of the environment's user namespace.

use std::path::Path;
use std::process::{Command, Stdio};

use karapace_protocol::Refusal;
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

/// Writes identity maps of `count` ids for `pid` (the caller is root on the host, which may
/// write any map; `setgroups` stays allowed, so package managers can drop privileges).
pub fn write_identity(pid: Pid, count: u32) -> Result<(), crate::Step> {
    let line = format!("0 0 {count}");
    for file in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{}/{file}", pid.as_raw()), &line).map_err(|e| {
            crate::Step(
                "write id map",
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
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
            step: format!("spawn {tool_path}"),
            errno: e.raw_os_error().unwrap_or(0),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Refusal::Setup {
            step: format!("{tool_path} exited with {status}"),
            errno: 0,
        })
    }
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
            step: "newuidmap not installed".into(),
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
        std::fs::write(file, data).map_err(|e| {
            crate::Step(
                "write id map",
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })
    };
    w("/proc/self/setgroups", "deny".to_string())?;
    w("/proc/self/uid_map", format!("{uid_inside} {uid_host} 1"))?;
    w("/proc/self/gid_map", format!("{gid_inside} {gid_host} 1"))
}
