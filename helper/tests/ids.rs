//! Id maps: single-id maps by default, the caller's subordinate range when
//! /etc/subuid grants one (newuidmap/newgidmap run before `no_new_privs`).

mod common;

use common::{out, sh, store};
use karapace_helper_client::{IdMapMode, Identity};

#[test]
fn root_identity_maps_caller_to_root() {
    let s = store();
    let (code, o) = out(&sh(&s, "id -u; id -g; cat /proc/self/uid_map"));
    assert_eq!(code, 0);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(&lines[..2], &["0", "0"]);
    let map: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(map, vec!["0", &nix::unistd::getuid().to_string(), "1"]);
}

#[test]
fn caller_identity_keeps_own_uid() {
    let s = store();
    let mut sp = sh(&s, "id -u");
    sp.identity = Identity::Caller;
    let (_, o) = out(&sp);
    assert_eq!(o.trim(), nix::unistd::getuid().to_string());
}

#[test]
fn auto_uses_subordinate_range_when_granted() {
    let s = store();
    let mut sp = sh(
        &s,
        "wc -l < /proc/self/uid_map; (touch /tmp/f && chown 1000:1000 /tmp/f && echo chown-ok) 2>&1; true",
    );
    sp.id_map = IdMapMode::Auto;
    sp.capabilities = karapace_helper_client::Capabilities::PackageManager;
    let (code, o) = out(&sp);
    assert_eq!(code, 0, "{o}");
    let uid = nix::unistd::getuid();
    let granted = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .and_then(|u| {
            std::fs::read_to_string("/etc/subuid")
                .ok()
                .map(|t| (u.name, t))
        })
        .is_some_and(|(name, t)| {
            t.lines()
                .any(|l| l.split(':').next() == Some(name.as_str()))
        });
    if granted {
        assert_eq!(o.lines().next(), Some("2"), "subordinate range mapped: {o}");
        assert!(o.contains("chown-ok"), "{o}");
    } else {
        assert_eq!(
            o.lines().next(),
            Some("1"),
            "single map without a grant: {o}"
        );
    }
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
    // NET_BIND_SERVICE 10, AUDIT_WRITE 29, SETFCAP 31.
    let expected: u64 = [0u32, 1, 3, 4, 5, 6, 7, 10, 29, 31]
        .iter()
        .map(|b| 1u64 << b)
        .sum();
    assert_eq!(field("CapEff:"), Some(expected), "{o}");
    assert_eq!(field("CapBnd:"), Some(expected), "{o}");
    assert_eq!(field("CapInh:"), Some(0));
    assert_eq!(field("CapAmb:"), Some(0));
}
