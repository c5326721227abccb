//! Host-side checks on everything a plugin returns (and on what we send it).
//! The plugin's own validation is advisory: a hostile plugin passes anything.

use std::fmt::Write as _;

use crate::types::Step;

/// Most steps one call may return.
pub const MAX_STEPS: usize = 64;
/// Most arguments in one argv.
pub const MAX_ARGS: usize = 8192;
/// Longest single argument.
pub const MAX_ARG_BYTES: usize = 4096;
/// Largest argv (sum of argument lengths).
pub const MAX_ARGV_BYTES: usize = 1024 * 1024;
/// Most env entries per step, longest key and value.
pub const MAX_ENV: usize = 64;
pub const MAX_ENV_KEY_BYTES: usize = 256;
pub const MAX_ENV_VALUE_BYTES: usize = 4096;
/// Most packages a parse may return (a full distro install is a few thousand).
pub const MAX_PACKAGES: usize = 100_000;
/// Longest package name and version.
pub const MAX_NAME_BYTES: usize = 256;
pub const MAX_VERSION_BYTES: usize = 256;
/// Largest query output the host hands to `parse-query`.
pub const MAX_QUERY_OUTPUT_BYTES: usize = 16 * 1024 * 1024;
/// Most detect paths and their length.
pub const MAX_DETECT_PATHS: usize = 32;
pub const MAX_DETECT_PATH_BYTES: usize = 256;
/// Most files detection may read (1.1 `detect-files`), and how much of each.
pub const MAX_DETECT_FILES: usize = 8;
pub const MAX_DETECT_FILE_BYTES: u64 = 16 * 1024;
/// Longest variant a plugin may report (1.1 `detection.variant`).
pub const MAX_VARIANT_BYTES: usize = 128;
/// Most "did you mean" candidates `parse-available` may return (a large
/// distribution index, virtual names included, is a few hundred thousand).
pub const MAX_CANDIDATES: usize = 500_000;
/// Their total size.
pub const MAX_CANDIDATE_BYTES: usize = 16 * 1024 * 1024;

/// Plugin name: `[a-z0-9][a-z0-9-]{0,31}` (it appears in paths and messages).
pub fn plugin_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "plugin name {} is not 1-32 characters of [a-z0-9-]",
            preview(name)
        ))
    }
}

/// Plugin version: 1..=64 printable ASCII characters.
pub fn plugin_version(version: &str) -> Result<(), String> {
    if !version.is_empty() && version.len() <= 64 && version.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(format!(
            "plugin version {} is not 1-64 printable ASCII characters",
            preview(version)
        ))
    }
}

/// Detect files (1.1): at most [`MAX_DETECT_FILES`], each a detect path.
pub fn detect_files(paths: &[String]) -> Result<(), String> {
    if paths.len() > MAX_DETECT_FILES {
        return Err(format!(
            "{} detect files (max {MAX_DETECT_FILES})",
            paths.len()
        ));
    }
    detect_paths(paths)
}

/// A detect path: relative, normal components only, bounded.
pub fn detect_paths(paths: &[String]) -> Result<(), String> {
    if paths.len() > MAX_DETECT_PATHS {
        return Err(format!(
            "{} detect paths (max {MAX_DETECT_PATHS})",
            paths.len()
        ));
    }
    for p in paths {
        let ok = !p.is_empty()
            && p.len() <= MAX_DETECT_PATH_BYTES
            && !p.starts_with('/')
            && !p.contains('\0')
            && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if !ok {
            return Err(format!("detect path {p:?} is not a plain relative path"));
        }
    }
    Ok(())
}

/// A variant string (1.1 `detection.variant`): at most
/// [`MAX_VARIANT_BYTES`], no control or invisible formatting characters (it is shown to the
/// user).
pub fn variant(value: &str) -> Result<(), String> {
    if value.len() > MAX_VARIANT_BYTES {
        Err(format!(
            "variant {} is {} bytes (max {MAX_VARIANT_BYTES})",
            preview(value),
            value.len()
        ))
    } else if value
        .chars()
        .any(|c| c.is_control() || karapace_schema::is_invisible_format(c))
    {
        Err(format!(
            "variant {} contains control or invisible formatting characters",
            preview(value)
        ))
    } else {
        Ok(())
    }
}

/// A name sent to a plugin built against interface 1.0: that interface
/// promised names of the portable grammar (`[A-Za-z0-9][A-Za-z0-9.+_@-]*`),
/// so anything else is refused before the plugin sees it.
pub fn v1_0_name(value: &str) -> Result<(), String> {
    karapace_schema::validate_portable_package_name(value).map_err(|e| {
        format!(
            "package name {}: {e} (plugins built against resolver interface 1.0 accept only such names)",
            preview(value)
        )
    })
}

/// A package name or version going to / coming from a plugin: bounded,
/// non-empty, no leading `-` (could act as an option), no whitespace or
/// control characters (would break lock files and argv), no invisible
/// formatting characters (would make one name look like another).
pub fn token(what: &str, value: &str, max: usize) -> Result<(), String> {
    let why = if value.is_empty() {
        Some("is empty")
    } else if value.len() > max {
        Some("is too long")
    } else if value.starts_with('-') {
        Some("starts with '-'")
    } else if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || karapace_schema::is_invisible_format(c))
    {
        Some("contains whitespace, control or invisible formatting characters")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(format!("{what} {} {why}", preview(value))),
    }
}

/// One argv: non-empty, bounded, no NUL (cannot be passed to exec).
pub fn argv(argv: &[String]) -> Result<(), String> {
    if argv.is_empty() {
        return Err("empty argv".into());
    }
    if argv[0].is_empty() {
        return Err("empty program name".into());
    }
    if argv.len() > MAX_ARGS {
        return Err(format!("{} arguments (max {MAX_ARGS})", argv.len()));
    }
    let mut total = 0usize;
    for (i, a) in argv.iter().enumerate() {
        if a.len() > MAX_ARG_BYTES {
            return Err(format!(
                "argument {i} is {} bytes (max {MAX_ARG_BYTES})",
                a.len()
            ));
        }
        if a.contains('\0') {
            return Err(format!("argument {i} {} contains a NUL byte", preview(a)));
        }
        total += a.len();
    }
    if total > MAX_ARGV_BYTES {
        return Err(format!("argv is {total} bytes (max {MAX_ARGV_BYTES})"));
    }
    Ok(())
}

/// Steps: bounded count, each argv valid, env keys `[^=\0]+`, values no NUL.
pub fn steps(steps: &[Step]) -> Result<(), String> {
    if steps.len() > MAX_STEPS {
        return Err(format!("{} steps (max {MAX_STEPS})", steps.len()));
    }
    for (n, s) in steps.iter().enumerate() {
        argv(&s.argv).map_err(|e| format!("step {n}: {e}"))?;
        if s.env.len() > MAX_ENV {
            return Err(format!(
                "step {n}: {} env entries (max {MAX_ENV})",
                s.env.len()
            ));
        }
        for (k, v) in &s.env {
            let key_ok = !k.is_empty() && k.len() <= MAX_ENV_KEY_BYTES && !k.contains(['=', '\0']);
            if !key_ok {
                return Err(format!("step {n}: invalid env key {}", preview(k)));
            }
            if v.len() > MAX_ENV_VALUE_BYTES || v.contains('\0') {
                return Err(format!("step {n}: invalid value for env {k}"));
            }
        }
    }
    Ok(())
}

/// At most 64 characters of a hostile string, escaped, for messages.
pub fn preview(s: &str) -> String {
    let mut out = String::new();
    let head: String = s.chars().take(64).collect();
    let _ = write!(out, "{head:?}");
    if head.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_rules() {
        assert!(argv(&[]).is_err());
        assert!(argv(&[String::new()]).is_err());
        assert!(argv(&["a\0b".into()]).is_err());
        assert!(argv(&["x".repeat(MAX_ARG_BYTES + 1)]).is_err());
        assert!(argv(&["apt-get".into(), "update".into()]).is_ok());
    }

    #[test]
    fn token_rules() {
        assert!(token("name", "-rf", 10).is_err());
        assert!(token("name", "a b", 10).is_err());
        assert!(token("name", "", 10).is_err());
        assert!(token("name", "abcdefghijk", 10).is_err());
        assert!(token("name", "libc6:amd64", 20).is_ok());
        assert!(token("version", "1.0\u{202e}0.2", 20).is_err());
    }

    #[test]
    fn detect_path_rules() {
        assert!(detect_paths(&["usr/bin/apt-get".into()]).is_ok());
        for bad in ["/usr/bin/x", "../etc/passwd", "usr//bin", "usr/./x", ""] {
            assert!(detect_paths(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn variant_and_v1_0_rules() {
        assert!(variant("").is_ok());
        assert!(variant("debian 12 (bookworm)").is_ok());
        assert!(variant("x\u{1b}[2J").is_err());
        assert!(variant("debian\u{200b}").is_err());
        assert!(variant("Debian GNU/Linux — ünïcode").is_ok());
        assert!(variant(&"x".repeat(MAX_VARIANT_BYTES + 1)).is_err());
        assert!(v1_0_name("libstdc++6").is_ok());
        assert!(v1_0_name("app-editors/vim").is_err());
        assert!(v1_0_name("libc6:i386").is_err());
    }

    #[test]
    fn names() {
        assert!(plugin_name("apt").is_ok());
        assert!(plugin_name("../Evil Name\n").is_err());
        assert!(plugin_name(&"a".repeat(33)).is_err());
        assert!(plugin_version("1.0.0").is_ok());
        assert!(plugin_version("1 0").is_err());
    }
}
