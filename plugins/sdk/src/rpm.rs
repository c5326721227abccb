//! Shared knowledge of rpm-based managers (dnf, zypper): both query with rpm.

use crate::{InstalledPackage, ResolverError, args, check_name, lines, package};

/// `rpm -q --qf '%{NAME}\t%{VERSION}-%{RELEASE}\n' <names>`; rpm expands the
/// escapes itself.
pub fn query_argv(names: &[String]) -> Vec<String> {
    let mut argv = args(&["rpm", "-q", "--qf", "%{NAME}\\t%{VERSION}-%{RELEASE}\\n"]);
    argv.extend(names.iter().cloned());
    argv
}

/// Parses the output of [`query_argv`]. rpm reports a missing package on
/// stdout as `package foo is not installed`; such lines are skipped.
pub fn parse_query(output: &str) -> Result<Vec<InstalledPackage>, ResolverError> {
    let mut out = Vec::new();
    for line in lines(output) {
        if line.starts_with("package ") && line.ends_with(" is not installed") {
            continue;
        }
        match line.split_once('\t') {
            Some((name, version)) if !name.trim().is_empty() && !version.trim().is_empty() => {
                out.push(package(name.trim(), version.trim()));
            }
            _ => {
                return Err(ResolverError::Parse(format!(
                    "expected 'name<TAB>version-release', got {line:?}"
                )));
            }
        }
    }
    Ok(out)
}

/// RPM package names: ASCII letters, digits and `._+-`, not starting with `-` or `.`.
pub fn validate_name(manager: &str, name: &str) -> Result<(), ResolverError> {
    check_name(
        manager,
        name,
        128,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '+',
        |c| c.is_ascii_alphanumeric() || "._+-".contains(c),
    )
}
