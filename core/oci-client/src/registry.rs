//! The registry a client talks to: `host[:port]`, and whether plain HTTP may ever be used for it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::names::{NameError, NameKind};

/// A registry address: a DNS name, an IPv4 address or a bracketed IPv6 address, with an optional
/// port. Refuses schemes (`https://…`), paths, user info, empty or out-of-range ports and
/// characters a hostname cannot hold, so it can be pasted into a URL authority as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryHost {
    host: Host,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    /// Lower-cased.
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl RegistryHost {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let refuse = |reason| NameError::new(NameKind::Registry, s, reason);
        if s.contains("://") {
            return Err(refuse("give host[:port] without a scheme"));
        }
        let (host_part, port_part) = if let Some(rest) = s.strip_prefix('[') {
            let Some((v6, after)) = rest.split_once(']') else {
                return Err(refuse("unterminated '[' in an IPv6 address"));
            };
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return Err(refuse("unexpected characters after ']'")),
                },
            };
            let addr = Ipv6Addr::from_str(v6).map_err(|_| refuse("invalid IPv6 address"))?;
            (Host::V6(addr), port)
        } else {
            let (host, port) = match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            };
            if host.contains(':') {
                return Err(refuse("an IPv6 address must be written in brackets"));
            }
            (parse_host(host).map_err(refuse)?, port)
        };
        let port = match port_part {
            None => None,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(refuse("the port must be a number"));
                }
                match p.parse::<u16>() {
                    Ok(0) | Err(_) => return Err(refuse("the port must be between 1 and 65535")),
                    Ok(n) => Some(n),
                }
            }
        };
        Ok(RegistryHost {
            host: host_part,
            port,
        })
    }

    /// `localhost`, `127.0.0.0/8` or `::1`: the hosts plain HTTP is allowed to without
    /// `insecure`, because traffic to them never leaves the machine.
    pub fn is_loopback(&self) -> bool {
        match &self.host {
            Host::Name(n) => n == "localhost",
            Host::V4(a) => a.is_loopback(),
            Host::V6(a) => a.is_loopback(),
        }
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

/// A hostname (RFC 1123 labels) or an IPv4 address.
fn parse_host(host: &str) -> Result<Host, &'static str> {
    if host.is_empty() {
        return Err("empty host");
    }
    if let Ok(v4) = Ipv4Addr::from_str(host) {
        return Ok(Host::V4(v4));
    }
    if host.len() > 253 {
        return Err("a hostname is at most 253 characters");
    }
    for label in host.split('.') {
        let ok_len = (1..=63).contains(&label.len());
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok_len || !ok_chars || label.starts_with('-') || label.ends_with('-') {
            return Err("not a valid hostname (letters, digits and '-' in dot-separated labels)");
        }
    }
    // All-numeric dotted names that are not IPv4 addresses ("1.2.3", "999.1.1.1") would be
    // interpreted differently by different URL parsers; refuse them.
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("not a valid IPv4 address");
    }
    Ok(Host::Name(host.to_ascii_lowercase()))
}

impl FromStr for RegistryHost {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        RegistryHost::parse(s)
    }
}

impl fmt::Display for RegistryHost {
    /// `host[:port]`, IPv6 in brackets: the URL authority.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Name(n) => f.write_str(n)?,
            Host::V4(a) => write!(f, "{a}")?,
            Host::V6(a) => write!(f, "[{a}]")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Whether `host` (as a URL gives it) is a loopback name or address.
pub(crate) fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(a) => a.is_loopback(),
        url::Host::Ipv6(a) => a.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_with_and_without_ports_parse_and_print_back() {
        for (input, printed, loopback) in [
            ("registry.example.com", "registry.example.com", false),
            (
                "Registry.Example.com:5000",
                "registry.example.com:5000",
                false,
            ),
            ("localhost:5000", "localhost:5000", true),
            ("127.0.0.1:5000", "127.0.0.1:5000", true),
            ("127.9.9.9", "127.9.9.9", true),
            ("10.0.0.1:443", "10.0.0.1:443", false),
            ("[::1]:5000", "[::1]:5000", true),
            ("[2001:db8::1]", "[2001:db8::1]", false),
        ] {
            let host = RegistryHost::parse(input).unwrap();
            assert_eq!(host.to_string(), printed);
            assert_eq!(host.is_loopback(), loopback, "{input}");
        }
    }

    #[test]
    fn anything_but_host_and_port_is_refused() {
        for bad in [
            "",
            "https://r.example",
            "r.example/path",
            "user@r.example",
            "r.example:",
            "r.example:0",
            "r.example:65536",
            "r.example:5x",
            "::1",
            "[::1",
            "[::1]x",
            "r..example",
            "-r.example",
            "r_example",
            "r example",
            "1.2.3",
            "999.1.1.1",
            "localhost.:1:2",
            "r.example?x",
            "r.example#x",
        ] {
            assert!(
                RegistryHost::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
