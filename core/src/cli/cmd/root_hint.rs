//! The hint after a package manager failed in a session that is not root inside: sessions run
//! as the caller, without capabilities, so `apt-get install` fails with permission errors that do
//! not say that `--root` exists.

use crate::engine::{RunMode, SessionOptions};

/// What needs root among the commands of a package manager (of Karapace's built-in plugins,
/// and their low-level tools): a failure of such a command in a session that is not root inside
/// gets the hint, a failed query (`dpkg -s absent`, `rpm -q absent`) does not.
enum Changes {
    /// A subcommand among the arguments (`apt-get install …`).
    Verb(&'static [&'static str]),
    /// An option among the arguments (`dpkg -i …`).
    Option(&'static [&'static str]),
    /// A short-option cluster whose first letter is one of these (`rpm -Uvh …`, `pacman -Syu`);
    /// for `pacman`, clusters holding a query letter (`-Ss`, `-Si`) are left out.
    Cluster(&'static [char]),
}

const APT_VERBS: &[&str] = &[
    "install",
    "remove",
    "purge",
    "upgrade",
    "dist-upgrade",
    "full-upgrade",
    "update",
    "autoremove",
    "autopurge",
    "reinstall",
    "build-dep",
    "satisfy",
    "clean",
    "autoclean",
];

const PACKAGE_MANAGERS: &[(&str, Changes)] = &[
    ("apt", Changes::Verb(APT_VERBS)),
    ("apt-get", Changes::Verb(APT_VERBS)),
    ("aptitude", Changes::Verb(APT_VERBS)),
    (
        "dpkg",
        Changes::Option(&[
            "-i",
            "--install",
            "-r",
            "--remove",
            "-P",
            "--purge",
            "--configure",
            "--unpack",
            "--set-selections",
            "--triggers-only",
            "--clear-avail",
            "--update-avail",
        ]),
    ),
    ("dnf", Changes::Verb(DNF_VERBS)),
    ("yum", Changes::Verb(DNF_VERBS)),
    ("rpm", Changes::Cluster(&['i', 'U', 'F', 'e'])),
    (
        "zypper",
        Changes::Verb(&[
            "in",
            "install",
            "rm",
            "remove",
            "up",
            "update",
            "dup",
            "dist-upgrade",
            "ref",
            "refresh",
            "patch",
            "ar",
            "addrepo",
            "rr",
            "removerepo",
        ]),
    ),
    ("pacman", Changes::Cluster(&['S', 'R', 'U'])),
    (
        "apk",
        Changes::Verb(&["add", "del", "upgrade", "update", "fix"]),
    ),
];

const DNF_VERBS: &[&str] = &[
    "install",
    "in",
    "remove",
    "rm",
    "erase",
    "upgrade",
    "up",
    "update",
    "reinstall",
    "downgrade",
    "autoremove",
    "makecache",
    "distro-sync",
    "swap",
];

/// Letters of `pacman -S` clusters that only query (`-Ss` search, `-Si` info, `-Sl`, `-Sg`,
/// `-Sp` print).
const PACMAN_QUERIES: &[char] = &['s', 'i', 'l', 'g', 'p'];

/// Whether `program args…` changes what is installed (so fails without root).
fn changes_packages(program: &str, args: &[String]) -> bool {
    let Some((_, changes)) = PACKAGE_MANAGERS.iter().find(|(name, _)| *name == program) else {
        return false;
    };
    args.iter().any(|a| match changes {
        Changes::Verb(verbs) => !a.starts_with('-') && verbs.contains(&a.as_str()),
        Changes::Option(options) => options.contains(&a.as_str()),
        Changes::Cluster(first) => {
            let Some(cluster) = a.strip_prefix('-').filter(|c| !c.starts_with('-')) else {
                return a.starts_with("--") && long_change(program, a);
            };
            let mut letters = cluster.chars();
            letters.next().is_some_and(|c| first.contains(&c))
                && !(program == "pacman" && cluster.chars().any(|c| PACMAN_QUERIES.contains(&c)))
        }
    })
}

/// The long forms of [`Changes::Cluster`] programs' changing options.
fn long_change(program: &str, arg: &str) -> bool {
    let long: &[&str] = match program {
        "rpm" => &[
            "--install",
            "--upgrade",
            "--freshen",
            "--erase",
            "--reinstall",
        ],
        "pacman" => &["--sync", "--remove", "--upgrade"],
        _ => &[],
    };
    long.contains(&arg)
}

/// Prints [`root_hint`]'s line, if any, on stderr (escaped: the command line is the user's, and
/// may come from untrusted input).
pub fn print_root_hint(
    ctx: &crate::cli::Ctx,
    mode: RunMode,
    query: &str,
    command: &[String],
    options: &SessionOptions,
    code: i32,
) {
    let store = ctx.global.store.as_deref();
    if let Some(hint) = root_hint(mode, query, command, options, store, code) {
        crate::output::note(&hint);
    }
}

/// The hint line for `command` that ended with `code` in a session of `query` (of the store
/// named by `--store`, if given), when the command is a package manager's changing command that
/// failed in a session without `--root`: the same command line with `--root`.
pub fn root_hint(
    mode: RunMode,
    query: &str,
    command: &[String],
    options: &SessionOptions,
    store: Option<&str>,
    code: i32,
) -> Option<String> {
    if options.root || code == 0 {
        return None;
    }
    let (program, args) = command.split_first()?;
    let base = program.rsplit('/').next().unwrap_or(program);
    if !changes_packages(base, args) {
        return None;
    }
    let verb = match mode {
        RunMode::Exec => "exec",
        RunMode::Enter => "enter",
    };
    let mut words: Vec<String> = vec!["karapace".into()];
    if let Some(store) = store {
        words.extend(["--store".into(), store.to_owned()]);
    }
    words.extend([verb.to_owned(), "--root".to_owned()]);
    if let Some(dir) = &options.workdir {
        words.extend(["--workdir".into(), dir.to_string_lossy().into_owned()]);
    }
    words.extend([query.to_owned(), "--".to_owned()]);
    words.extend(command.iter().cloned());
    let line = shlex::try_join(words.iter().map(String::as_str)).ok()?;
    Some(format!(
        "hint: package managers need root inside the environment: {line}"
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
            None,
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
            None,
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
        let hint = |argv: &[String], options, code| {
            root_hint(RunMode::Exec, "dev", argv, options, None, code)
        };
        assert_eq!(hint(&apt, &none, 0), None);
        assert_eq!(hint(&apt, &root, 100), None);
        assert_eq!(hint(&argv(&["make"]), &none, 2), None);
        assert_eq!(hint(&argv(&["aptly", "install"]), &none, 2), None);
        // Queries that fail (nothing installed by that name) are not a matter of root.
        for query in [
            &["dpkg", "-s", "absent"][..],
            &["dpkg", "-l", "install"],
            &["rpm", "-qi", "absent"],
            &["pacman", "-Ss", "absent"],
            &["pacman", "-Qi", "absent"],
            &["apt", "list", "--installed"],
            &["apk", "info", "absent"],
            &["zypper", "search", "absent"],
        ] {
            assert_eq!(hint(&argv(query), &none, 1), None, "{query:?}");
        }
        for change in [
            &["dpkg", "--purge", "x"][..],
            &["rpm", "-Uvh", "x.rpm"],
            &["rpm", "--erase", "x"],
            &["pacman", "-Syu"],
            &["pacman", "--sync", "x"],
            &["dnf", "-y", "install", "x"],
            &["apk", "add", "x"],
            &["zypper", "--non-interactive", "in", "x"],
        ] {
            assert!(hint(&argv(change), &none, 1).is_some(), "{change:?}");
        }
    }

    #[test]
    fn the_hint_keeps_the_store_and_the_working_directory() {
        let options = SessionOptions {
            workdir: Some("/src/my app".into()),
            ..SessionOptions::default()
        };
        let hint = root_hint(
            RunMode::Exec,
            "dev",
            &argv(&["apt-get", "install", "jq"]),
            &options,
            Some("/tmp/s"),
            100,
        );
        assert_eq!(
            hint.as_deref(),
            Some(
                "hint: package managers need root inside the environment: karapace --store \
                 /tmp/s exec --root --workdir '/src/my app' dev -- apt-get install jq"
            )
        );
    }
}
