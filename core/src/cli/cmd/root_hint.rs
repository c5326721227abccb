//! The hint after a package manager failed in a session that is not root inside: sessions run
//! as the caller, without capabilities, so `apt-get install` fails with permission errors that do
//! not say that `--root` exists.

use crate::engine::{RunMode, SessionOptions};

/// Programs of the package managers Karapace's built-in plugins drive, and their low-level
/// tools: a failure of one of them in a session that is not root inside gets the hint.
const PACKAGE_MANAGERS: [&str; 10] = [
    "apt", "apt-get", "aptitude", "dpkg", "dnf", "yum", "rpm", "zypper", "pacman", "apk",
];

/// The hint line for `command` that ended with `code` in a session of `query`, when the command
/// is a package manager that failed in a session without `--root`.
pub fn root_hint(
    mode: RunMode,
    query: &str,
    command: &[String],
    options: &SessionOptions,
    code: i32,
) -> Option<String> {
    if options.root || code == 0 {
        return None;
    }
    let program = command.first()?;
    let base = program.rsplit('/').next().unwrap_or(program);
    if !PACKAGE_MANAGERS.contains(&base) {
        return None;
    }
    let verb = match mode {
        RunMode::Exec => "exec",
        RunMode::Enter => "enter",
    };
    let line =
        shlex::try_join(std::iter::once(query).chain(command.iter().map(String::as_str))).ok()?;
    let (env, rest) = line.split_once(' ')?;
    Some(format!(
        "hint: package managers need root inside the environment: karapace {verb} --root {env} -- {rest}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn a_failed_package_manager_gets_the_root_command_line() {
        let hint = root_hint(
            RunMode::Exec,
            "dev",
            &argv(&["apt-get", "install", "-y", "a b"]),
            &SessionOptions::default(),
            100,
        );
        assert_eq!(
            hint.as_deref(),
            Some(
                "hint: package managers need root inside the environment: \
                 karapace exec --root dev -- apt-get install -y 'a b'"
            )
        );
        let hint = root_hint(
            RunMode::Enter,
            "dev",
            &argv(&["/usr/bin/dpkg", "-i", "x.deb"]),
            &SessionOptions::default(),
            2,
        );
        assert!(hint.is_some_and(|h| h.ends_with("karapace enter --root dev -- /usr/bin/dpkg -i x.deb")));
    }

    #[test]
    fn no_hint_for_success_other_programs_or_root_sessions() {
        let none = SessionOptions::default();
        let root = SessionOptions {
            root: true,
            ..SessionOptions::default()
        };
        let apt = argv(&["apt-get", "update"]);
        assert_eq!(root_hint(RunMode::Exec, "dev", &apt, &none, 0), None);
        assert_eq!(root_hint(RunMode::Exec, "dev", &apt, &root, 100), None);
        assert_eq!(
            root_hint(RunMode::Exec, "dev", &argv(&["make"]), &none, 2),
            None
        );
        assert_eq!(
            root_hint(RunMode::Exec, "dev", &argv(&["aptly"]), &none, 2),
            None
        );
    }
}
