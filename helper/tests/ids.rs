//! Id maps: single-id maps by default; full maps (root: every id to itself; a user: the
//! subordinate range from /etc/subuid, written by newuidmap/newgidmap before `no_new_privs`);
//! collapsed maps, where `chown` succeeds without effect.

mod common;

use common::{out, sh, store};
use karapace_helper_client::{IdMapMode, Identity};

#[test]
fn root_identity_maps_caller_to_root() {
    let s = store();
    let (code, o) = out(&sh(
        &s,
        "id -u; id -g; cat /proc/self/uid_map; grep Uid: /proc/self/status",
    ));
    assert_eq!(code, 0);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(&lines[..2], &["0", "0"]);
    let map: Vec<&str> = lines[2].split_whitespace().collect();
    let me = nix::unistd::getuid().to_string();
    if common::privileged() {
        // No user namespace: root is only claimed (the id calls answer 0); the kernel still
        // sees the caller, and the map is the host's own.
        let ours = std::fs::read_to_string("/proc/self/uid_map").unwrap();
        assert_eq!(map, ours.split_whitespace().collect::<Vec<_>>());
        let status: Vec<&str> = lines[3].split_whitespace().skip(1).collect();
        assert_eq!(status, [me.as_str(); 4], "{o}");
    } else {
        assert_eq!(map, vec!["0", me.as_str(), "1"]);
    }
}

#[test]
fn caller_identity_keeps_own_uid() {
    let s = store();
    let mut sp = sh(&s, "id -u");
    sp.identity = Identity::Caller;
    let (_, o) = out(&sp);
    assert_eq!(o.trim(), nix::unistd::getuid().to_string());
}

/// Whether this user's /etc/subuid entry grants a full range (the tests run as root and as a
/// user with one; CI creates it).
fn granted_full_range() -> bool {
    let uid = nix::unistd::getuid();
    let Some(name) = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
    else {
        return false;
    };
    std::fs::read_to_string("/etc/subuid").is_ok_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split(':').collect();
            f.len() == 3 && f[0] == name && f[2].parse::<u32>().is_ok_and(|c| c >= 65_535)
        })
    })
}

#[test]
fn full_maps_keep_owners_or_are_refused_without_a_range() {
    let s = store();
    let mut sp = sh(
        &s,
        "cat /proc/self/uid_map; touch /tmp/f && chown 6:12 /tmp/f && stat -c %u:%g /tmp/f",
    );
    sp.id_map = IdMapMode::Full;
    sp.capabilities = karapace_helper_client::Capabilities::PackageManager;
    if common::privileged() {
        // No user namespace, no owners but the caller: refused whatever /etc/subuid says.
        let err = karapace_helper_client::run(&sp, karapace_helper_client::StdioMode::Null)
            .expect_err("full maps of a privileged helper must be refused");
        assert!(
            matches!(
                err,
                karapace_helper_client::HelperError::Refused(
                    karapace_helper_client::Refusal::PrivilegedMode(_)
                )
            ),
            "{err:?}"
        );
    } else if nix::unistd::getuid().is_root() {
        let (code, o) = out(&sp);
        assert_eq!(code, 0, "{o}");
        let map: Vec<&str> = o.lines().next().unwrap_or("").split_whitespace().collect();
        assert_eq!(
            map,
            ["0", "0", "65536"],
            "root maps every id to itself: {o}"
        );
        assert_eq!(o.lines().last(), Some("6:12"), "{o}");
    } else if granted_full_range() {
        let (code, o) = out(&sp);
        assert_eq!(code, 0, "{o}");
        assert_eq!(o.lines().count(), 3, "own id plus the range: {o}");
        assert_eq!(o.lines().last(), Some("6:12"), "{o}");
    } else {
        let err = karapace_helper_client::run(&sp, karapace_helper_client::StdioMode::Null)
            .expect_err("full maps without a range must be refused");
        assert!(
            matches!(
                err,
                karapace_helper_client::HelperError::Refused(
                    karapace_helper_client::Refusal::NoSubordinateRange
                )
            ),
            "{err}"
        );
    }
}

#[test]
fn collapsed_maps_let_chown_succeed_and_change_nothing() {
    let s = store();
    let mut sp = sh(
        &s,
        "touch /tmp/f && chown 6:12 /tmp/f && chown -h 7 /tmp/f && echo chown-ok; stat -c %u:%g /tmp/f; wc -l < /proc/self/uid_map",
    );
    sp.id_map = IdMapMode::Collapsed;
    sp.capabilities = karapace_helper_client::Capabilities::PackageManager;
    let (code, o) = out(&sp);
    assert_eq!(code, 0, "{o}");
    let lines: Vec<&str> = o.lines().collect();
    if common::privileged() {
        // The caller's own ids, unmapped: stat shows them as the host does.
        let me = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
        assert_eq!(lines[..2], ["chown-ok", me.as_str()], "{o}");
    } else {
        assert_eq!(lines, ["chown-ok", "0:0", "1"], "{o}");
    }
}

#[test]
fn a_single_map_still_refuses_foreign_owners() {
    let s = store();
    let sp = sh(
        &s,
        "touch /tmp/f; chown 6:12 /tmp/f 2>/dev/null && echo changed || echo refused",
    );
    let (_, o) = out(&sp);
    assert_eq!(o.trim(), "refused", "{o}");
}

#[test]
fn package_manager_profile_keeps_only_its_capabilities() {
    let s = store();
    let mut sp = sh(&s, "grep -E '^Cap(Eff|Bnd|Inh|Amb)' /proc/self/status");
    sp.capabilities = karapace_helper_client::Capabilities::PackageManager;
    let (_, o) = out(&sp);
    let field = |k: &str| {
        o.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap_or(u64::MAX))
    };
    // CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7,
    // NET_BIND_SERVICE 10, AUDIT_WRITE 29, SETFCAP 31 — over the session's user namespace. A
    // privileged helper's capabilities would be the host's: its workloads get none.
    let expected: u64 = if common::privileged() {
        0
    } else {
        [0u32, 1, 3, 4, 5, 6, 7, 10, 29, 31]
            .iter()
            .map(|b| 1u64 << b)
            .sum()
    };
    assert_eq!(field("CapEff:"), Some(expected), "{o}");
    assert_eq!(field("CapBnd:"), Some(expected), "{o}");
    assert_eq!(field("CapInh:"), Some(0));
    assert_eq!(field("CapAmb:"), Some(0));
}
