//! The environment variables a workload receives: an allowlist of the
//! caller's, the variables of the host integrations the policy granted (see
//! [`super::policy::HostSetup::env`]: `DISPLAY` only with the X11 socket, and so on), plus the
//! variables every Karapace environment defines.

use std::ffi::OsString;

/// Passed through when set.
pub const ALLOWED: &[&str] = &[
    "TERM",
    "COLORTERM",
    "LANG",
    "LANGUAGE",
    "TZ",
    "XDG_SESSION_TYPE",
    "XDG_CURRENT_DESKTOP",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "NO_COLOR",
    "CLICOLOR",
    "COLUMNS",
    "LINES",
];
/// Passed through when set (prefix match).
pub const ALLOWED_PREFIXES: &[&str] = &["LC_"];
/// Never passed, even if a later allowlist change would admit them:
/// credentials and handles to host daemons.
pub const DENIED: &[&str] = &["SSH_AUTH_SOCK", "GPG_AGENT_INFO", "DOCKER_HOST"];
pub const DENIED_PREFIXES: &[&str] = &["AWS_"];

/// Default `PATH` inside an environment.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The caller's environment as text, from `vars` (usually `std::env::vars_os()`, whose
/// `vars()` twin panics on the first variable that is not UTF-8), and the names of the variables
/// left out because their values are not UTF-8 (they cannot be passed on unaltered). Names that
/// are not UTF-8 are no variable any policy reads: left out without a word.
pub fn text_vars(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut text = Vec::new();
    let mut dropped = Vec::new();
    for (name, value) in vars {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => text.push((name, value)),
            (Ok(name), Err(_)) => dropped.push(name),
            _ => {}
        }
    }
    (text, dropped)
}

/// Whether a session would have used the caller's variable `name`: passed through, or read by
/// a host integration.
pub fn read_by_sessions(name: &str) -> bool {
    allowed(name) || super::policy::HOST_VARS.contains(&name)
}

pub fn allowed(name: &str) -> bool {
    let denied = DENIED.contains(&name) || DENIED_PREFIXES.iter().any(|p| name.starts_with(p));
    let allowed = ALLOWED.contains(&name) || ALLOWED_PREFIXES.iter().any(|p| name.starts_with(p));
    allowed && !denied
}

/// Filters `vars` (usually [`text_vars`] of `std::env::vars_os()`), adds the `granted` integration variables and
/// `KARAPACE_ENV=1`, `HOME`, `USER`, `HOSTNAME` and `PATH`.
pub fn workload_env(
    vars: impl IntoIterator<Item = (String, String)>,
    granted: &[(String, String)],
    home: &str,
    user: &str,
    hostname: &str,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars.into_iter().filter(|(k, _)| allowed(k)).collect();
    for (k, v) in granted {
        out.retain(|(name, _)| name != k);
        out.push((k.clone(), v.clone()));
    }
    for (k, v) in [
        ("KARAPACE_ENV", "1"),
        ("HOME", home),
        ("USER", user),
        ("HOSTNAME", hostname),
        ("PATH", DEFAULT_PATH),
    ] {
        out.retain(|(name, _)| name != k);
        out.push((k.to_string(), v.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_that_are_not_utf8_are_left_out_not_fatal() {
        use std::os::unix::ffi::OsStringExt;
        let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
        let (vars, dropped) = text_vars([
            (bytes(b"LANG"), bytes(b"C.\xff")),
            (bytes(b"NAME\xff"), bytes(b"1")),
            (bytes(b"TERM"), bytes(b"xterm")),
        ]);
        assert_eq!(vars, vec![("TERM".to_owned(), "xterm".to_owned())]);
        assert_eq!(dropped, vec!["LANG".to_owned()]);
    }

    #[test]
    fn secrets_never_pass() {
        let vars = [
            ("SSH_AUTH_SOCK", "/x"),
            ("AWS_SECRET_ACCESS_KEY", "k"),
            ("GPG_AGENT_INFO", "g"),
            ("DOCKER_HOST", "d"),
            ("TERM", "xterm"),
            ("LC_ALL", "C"),
            ("SECRET", "s"),
            ("DISPLAY", ":0"),
            ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1/bus"),
            ("WAYLAND_DISPLAY", "wayland-0"),
            ("XAUTHORITY", "/home/u/.Xauthority"),
            ("PULSE_SERVER", "unix:/x"),
            ("XDG_RUNTIME_DIR", "/run/user/1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let env = workload_env(vars, &[], "/home/u", "u", "karapace-abc");
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"TERM") && names.contains(&"LC_ALL"));
        for bad in [
            "SSH_AUTH_SOCK",
            "AWS_SECRET_ACCESS_KEY",
            "GPG_AGENT_INFO",
            "DOCKER_HOST",
            "SECRET",
            // Integration variables pass only with their grant (`HostSetup::env`).
            "DISPLAY",
            "DBUS_SESSION_BUS_ADDRESS",
            "WAYLAND_DISPLAY",
            "XAUTHORITY",
            "PULSE_SERVER",
            "XDG_RUNTIME_DIR",
        ] {
            assert!(!names.contains(&bad), "{bad} leaked");
        }
        assert!(env.contains(&("KARAPACE_ENV".into(), "1".into())));
        assert!(env.contains(&("HOSTNAME".into(), "karapace-abc".into())));
    }
}
