//! `/proc/<pid>/stat`, read once and the same way on both sides of the privilege boundary: the
//! store decides whether a recorded session still runs, `stop` recognises the process it
//! signals, and the helper whether a session it is asked to join can be joined. Each needs the
//! same three facts — the process exists and is not a zombie, when it started (to tell it from
//! a later process with the same pid), and whether it has begun to exit.
//!
//! The line is parsed as bytes: the command name (field 2) is whatever the process set, may hold
//! spaces, parentheses and invalid UTF-8, and must never shift the other fields or hide the
//! process. Std only.

use std::io::Read;

/// `PF_EXITING` (include/linux/sched.h), in field 9: the process has begun to exit. An
/// environment's init keeps it for the whole teardown of its namespaces, during which it still
/// looks like a running process.
pub const PF_EXITING: u64 = 0x4;

/// Longest stat line read (real ones are about 300 bytes; the command name is at most 64).
const MAX_LINE: u64 = 4096;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The command name (field 2), as the process set it.
    pub comm: Vec<u8>,
    /// The state letter (field 3): `R`, `S`, `D`, `Z`, …
    pub state: u8,
    /// Parent pid (field 4).
    pub ppid: u32,
    /// Kernel flags (field 9).
    pub flags: u64,
    /// Clock ticks since boot (field 22).
    pub start_time: u64,
}

impl Stat {
    /// Reads `/proc/<pid>/stat`; `None` when there is no such process (or no `/proc`).
    pub fn read(pid: u32) -> Option<Stat> {
        let mut line = Vec::with_capacity(512);
        std::fs::File::open(format!("/proc/{pid}/stat"))
            .ok()?
            .take(MAX_LINE)
            .read_to_end(&mut line)
            .ok()?;
        Stat::parse(&line)
    }

    /// Parses a stat line; `None` for one that is not.
    pub fn parse(line: &[u8]) -> Option<Stat> {
        let open = line.iter().position(|&b| b == b'(')?;
        // The command name may contain ')': the fields resume after the last one.
        let close = line.iter().rposition(|&b| b == b')')?;
        let comm = line.get(open + 1..close)?.to_vec();
        let rest = std::str::from_utf8(line.get(close + 1..)?).ok()?;
        // `rest` starts at field 3 (state).
        let mut fields = rest.split_ascii_whitespace();
        let state = match fields.next()?.as_bytes() {
            [letter] => *letter,
            _ => return None,
        };
        let ppid = fields.next()?.parse().ok()?;
        // Fields 5..=8 precede the flags (9); 10..=21 precede the start time (22).
        let flags = fields.nth(4)?.parse().ok()?;
        let start_time = fields.nth(12)?.parse().ok()?;
        Some(Stat {
            comm,
            state,
            ppid,
            flags,
            start_time,
        })
    }

    /// The process has exited: a zombie waiting to be reaped (or a dead task).
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }

    /// The process has begun to exit ([`PF_EXITING`]).
    pub fn is_exiting(&self) -> bool {
        self.flags & PF_EXITING != 0
    }
}

/// The stat of `pid` when it is a process that has not exited (not a zombie).
pub fn live(pid: u32) -> Option<Stat> {
    Stat::read(pid).filter(|s| !s.is_zombie())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines from this kernel: a helper's init in the middle of its exit (state D,
    // flags 0x40004c) and the helper's control process (flags 0x400100).
    const EXITING: &str = "10248 (karapace-helper) D 10247 10241 9699 0 -1 4194636 42 85 0 2 0 0 \
                           0 0 20 0 1 0 1895676 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 \
                           0 0 17 1 0 0 0 0 0";
    const RUNNING: &str = "10247 (karapace-helper) S 10246 10241 9699 0 -1 4194560 103 0 0 0 0 \
                           0 0 0 20 0 1 0 1895675 3424256 181 18446744073709551615 1 1 0 0 0 0 \
                           0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn fields_of_real_lines() {
        let s = Stat::parse(RUNNING.as_bytes()).expect("parse");
        assert_eq!(
            (s.comm.as_slice(), s.state, s.ppid, s.start_time),
            (&b"karapace-helper"[..], b'S', 10_246, 1_895_675)
        );
        assert!(!s.is_exiting() && !s.is_zombie());
        let e = Stat::parse(EXITING.as_bytes()).expect("parse");
        assert!(e.is_exiting());
        assert_eq!((e.ppid, e.start_time), (10_247, 1_895_676));
    }

    #[test]
    fn a_hostile_command_name_shifts_nothing_and_hides_nothing() {
        for comm in [&b"a) b (c)"[..], b") Z 1 2 3", b"\xff\xfe bad utf-8", b""] {
            let mut line = b"10247 (".to_vec();
            line.extend_from_slice(comm);
            line.push(b')');
            line.extend_from_slice(RUNNING.split_once(')').expect("comm").1.as_bytes());
            let s = Stat::parse(&line).expect("parse");
            assert_eq!(s.comm, comm);
            assert_eq!((s.state, s.start_time), (b'S', 1_895_675), "{comm:?}");
        }
    }

    #[test]
    fn zombies_and_garbage() {
        let z = Stat::parse(RUNNING.replace(") S ", ") Z ").as_bytes()).expect("parse");
        assert!(z.is_zombie());
        assert_eq!(Stat::parse(b"12 (x) S 1 2"), None);
        assert_eq!(Stat::parse(b"no parenthesis"), None);
        assert_eq!(
            Stat::parse(b"1 (x) SS 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19"),
            None
        );
    }

    #[test]
    fn this_process_is_live_and_its_start_time_is_stable() {
        let me = std::process::id();
        let a = live(me).expect("this process");
        assert_eq!(live(me).map(|s| s.start_time), Some(a.start_time));
        assert!(!a.is_zombie());
    }
}
