//! The command-line grammar. It mirrors the standard `karapace` tool exactly (same subcommands,
//! positionals, flags and defaults, see `shared/spec/cli.md`); only help wording is ours.
//!
//! Global flags are declared `global = true` so they are accepted before or after the subcommand
//! (the standard tool accepts `--store` only before it — a deliberate fix).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::ArgValueCandidates;

use super::complete;

/// Deterministic, isolated development environments from a declarative manifest.
#[derive(Debug, Parser)]
#[command(name = "karapace", bin_name = "karapace", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Default)]
#[allow(clippy::struct_excessive_bools)] // independent command-line switches, not a state machine
pub struct GlobalArgs {
    /// Store root (default: ~/.local/share/karapace).
    #[arg(long, global = true, value_name = "PATH")]
    pub store: Option<String>,

    /// Print structured JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// Debug logging on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Trace logging on stderr (wins over --verbose).
    #[arg(long, global = true)]
    pub trace: bool,

    /// Run environments even on a kernel without Landlock (confined by namespaces, capabilities
    /// and seccomp only). Same as `allow_without_landlock = true` in ~/.config/karapace/config.toml.
    #[arg(long, global = true)]
    pub allow_without_landlock: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Elvish,
    Fish,
    Powershell,
    Zsh,
}

/// Flags shared by `build` and `rebuild`.
#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    /// Manifest to build.
    #[arg(default_value = "karapace.toml")]
    pub manifest: PathBuf,

    /// Name for the environment.
    #[arg(long)]
    pub name: Option<String>,

    /// Install exactly the versions in karapace.lock; fail if that is impossible.
    #[arg(long)]
    pub locked: bool,

    /// Use only cached images and no network.
    #[arg(long)]
    pub offline: bool,

    /// Refuse a base image that is not an explicit http(s) URL.
    #[arg(long)]
    pub require_pinned_image: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a new karapace.toml in the current directory.
    New {
        name: String,
        /// minimal, dev, gui-dev, rust-dev or ubuntu-dev (an unknown name fails with exit 1,
        /// as in the standard tool).
        #[arg(long, value_name = "TEMPLATE")]
        template: Option<String>,
        /// Overwrite an existing karapace.toml.
        #[arg(long)]
        force: bool,
    },
    /// Resolve, lock and build an environment from a manifest.
    Build(BuildArgs),
    /// Build the environment anew, then destroy the old one (keeps its name).
    Rebuild(BuildArgs),
    /// Rewrite base.image to the explicit image URL.
    Pin {
        #[arg(default_value = "karapace.toml")]
        manifest: PathBuf,
        /// Only check that base.image is pinned (exit 1 if not).
        #[arg(long)]
        check: bool,
        /// Build afterwards to refresh karapace.lock.
        #[arg(long)]
        write_lock: bool,
    },
    /// Open an interactive login shell, or run a command with the terminal.
    Enter {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
        /// Start in this directory of the environment (absolute; default: your home directory
        /// when the environment shares it, else /).
        #[arg(short = 'w', long, value_name = "DIR")]
        workdir: Option<PathBuf>,
        /// Run as root inside the environment, with the capabilities package managers need
        /// (`apt-get install …`); what it installs lands in the writable layer.
        #[arg(long)]
        root: bool,
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Run a command non-interactively, streaming stdin, stdout and stderr.
    Exec {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
        /// Run the command in this directory of the environment (absolute; default: your home
        /// directory when the environment shares it, else /).
        #[arg(short = 'w', long, value_name = "DIR")]
        workdir: Option<PathBuf>,
        /// Run as root inside the environment, with the capabilities package managers need
        /// (`apt-get install …`); what it installs lands in the writable layer.
        #[arg(long)]
        root: bool,
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Destroy an environment (refused while it is running).
    Destroy {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
    },
    /// Stop every session of a running environment.
    Stop {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
    },
    /// Freeze an environment: no further writes.
    Freeze {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
    },
    /// Archive an environment: data kept, entry refused, protected from gc.
    Archive {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
    },
    /// List environments.
    List,
    /// Show an environment's metadata.
    Inspect {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
    },
    /// Show changes in the environment's writable layer.
    Diff {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
    },
    /// List an environment's snapshots.
    Snapshots {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
    },
    /// Snapshot the environment's writable layer.
    Commit {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
        /// A label for the snapshot (shown by `snapshots --json`).
        #[arg(short = 'm', long, value_name = "TEXT")]
        message: Option<String>,
    },
    /// Restore the writable layer from a snapshot.
    /// (SNAPSHOT: the hash `snapshots` shows, or a unique prefix of it.)
    Restore {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
        #[arg(add = ArgValueCandidates::new(complete::snapshot_hashes))]
        snapshot: String,
    },
    /// Remove orphaned environments, layers and objects.
    Gc {
        /// Report what would be removed without removing anything.
        #[arg(long)]
        dry_run: bool,
        /// Also remove cached images no environment of this store was built from.
        #[arg(long)]
        images: bool,
    },
    /// Show the disk space environments, shared layers and caches use, and what gc would free.
    Du,
    /// Re-hash every object, layer and metadata file in the store.
    VerifyStore,
    /// Push an environment to a remote store.
    Push {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
        #[arg(long, value_name = "NAME@TAG")]
        tag: Option<String>,
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
    },
    /// Pull an environment from a remote store.
    Pull {
        reference: String,
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
    },
    /// Rename an environment.
    Rename {
        #[arg(add = ArgValueCandidates::new(complete::env_ids))]
        env_id: String,
        new_name: String,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write man pages.
    ManPages {
        #[arg(default_value = "man")]
        dir: PathBuf,
    },
    /// Terminal user interface.
    Tui,
    /// Check the host, the store and the runtime.
    Doctor,
    /// Resolver plugins: list, build, try and install them.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Check the store format and upgrade it (with a backup).
    Migrate,
}

/// `karapace plugin …` (ours; docs/plugins.md is the guide).
#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// The loaded resolver plugins: name, version, WIT version, source and file.
    List,
    /// Build a plugin crate (one using karapace-plugin-sdk) into a component, with the wasm
    /// toolchain installed here (rustup's wasm32-unknown-unknown target, or Debian's
    /// rustc-web route).
    Build {
        /// The plugin crate (the directory holding its Cargo.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component (default: <DIR>/dist/<plugin name>.wasm).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Run a plugin's functions on given inputs through the host, with its limits, and print
    /// what the host would run and what it parsed (nothing is run).
    Test {
        /// The component (.wasm).
        wasm: PathBuf,
        /// Detect against this unpacked image root (default: no detection, empty context).
        #[arg(long, value_name = "ROOTFS")]
        detect: Option<PathBuf>,
        /// A package to install, optionally pinned: `vim=2:9.0-1`. Split at the first `=` after
        /// any leading `<>=~!`, so `=app-editors/vim-9.0` is a name. Repeatable.
        #[arg(long, value_name = "NAME[=VERSION]")]
        install: Vec<String>,
        /// Parse this file as the output of the query command (for the --install names).
        #[arg(long, value_name = "FILE")]
        parse: Option<PathBuf>,
        /// Ask for the steps of an environment whose user namespace maps a single id.
        #[arg(long)]
        single_uid_map: bool,
    },
    /// Check a component by loading it in the host, then copy it into your plugin directory
    /// (`$XDG_DATA_HOME/karapace/plugins`, else `~/.local/share/karapace/plugins`).
    Install {
        /// The component (.wasm).
        wasm: PathBuf,
        /// Replace an installed plugin file of the same name with other content.
        #[arg(long)]
        force: bool,
    },
}

impl Command {
    /// The subcommand's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::New { .. } => "new",
            Command::Build(_) => "build",
            Command::Rebuild(_) => "rebuild",
            Command::Pin { .. } => "pin",
            Command::Enter { .. } => "enter",
            Command::Exec { .. } => "exec",
            Command::Destroy { .. } => "destroy",
            Command::Stop { .. } => "stop",
            Command::Freeze { .. } => "freeze",
            Command::Archive { .. } => "archive",
            Command::List => "list",
            Command::Inspect { .. } => "inspect",
            Command::Diff { .. } => "diff",
            Command::Snapshots { .. } => "snapshots",
            Command::Commit { .. } => "commit",
            Command::Restore { .. } => "restore",
            Command::Gc { .. } => "gc",
            Command::Du => "du",
            Command::VerifyStore => "verify-store",
            Command::Push { .. } => "push",
            Command::Pull { .. } => "pull",
            Command::Rename { .. } => "rename",
            Command::Completions { .. } => "completions",
            Command::ManPages { .. } => "man-pages",
            Command::Tui => "tui",
            Command::Doctor => "doctor",
            Command::Plugin { .. } => "plugin",
            Command::Migrate => "migrate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("karapace").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_before_and_after_subcommand() {
        let before = parse(&["--store", "/s", "--json", "list"]).unwrap();
        let after = parse(&["list", "--store", "/s", "--json"]).unwrap();
        for cli in [before, after] {
            assert_eq!(cli.global.store.as_deref(), Some("/s"));
            assert!(cli.global.json);
            assert!(matches!(cli.command, Command::List));
        }
    }

    #[test]
    fn allow_without_landlock_is_a_global_switch() {
        assert!(!parse(&["list"]).unwrap().global.allow_without_landlock);
        for args in [
            &["--allow-without-landlock", "exec", "e", "--", "true"][..],
            &["exec", "e", "--allow-without-landlock", "--", "true"],
            &["build", "--allow-without-landlock"],
        ] {
            assert!(
                parse(args).unwrap().global.allow_without_landlock,
                "{args:?}"
            );
        }
        // After `--` it belongs to the command.
        let cli = parse(&["exec", "e", "--", "x", "--allow-without-landlock"]).unwrap();
        assert!(!cli.global.allow_without_landlock);
    }

    #[test]
    fn exec_requires_double_dash() {
        let err = parse(&["exec", "abc", "true"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let ok = parse(&["exec", "abc", "--", "sh", "-c", "echo --json"]).unwrap();
        match ok.command {
            Command::Exec {
                env_id, command, ..
            } => {
                assert_eq!(env_id, "abc");
                assert_eq!(command, ["sh", "-c", "echo --json"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!ok.global.json, "--json after -- belongs to the command");
    }

    #[test]
    fn enter_takes_optional_command() {
        let cli = parse(&["enter", "dev"]).unwrap();
        assert!(matches!(cli.command, Command::Enter { ref command, .. } if command.is_empty()));
        let cli = parse(&["enter", "dev", "--", "ls", "-la"]).unwrap();
        assert!(
            matches!(cli.command, Command::Enter { ref command, .. } if command == &["ls", "-la"])
        );
    }

    #[test]
    fn build_defaults_and_flags() {
        let cli = parse(&["build"]).unwrap();
        let Command::Build(b) = cli.command else {
            panic!("not build")
        };
        assert_eq!(b.manifest, PathBuf::from("karapace.toml"));
        assert!(!b.locked && !b.offline && !b.require_pinned_image && b.name.is_none());
        let cli = parse(&[
            "build",
            "x.toml",
            "--name",
            "n",
            "--locked",
            "--offline",
            "--require-pinned-image",
        ])
        .unwrap();
        let Command::Build(b) = cli.command else {
            panic!("not build")
        };
        assert_eq!(b.manifest, PathBuf::from("x.toml"));
        assert!(b.locked && b.offline && b.require_pinned_image);
        assert_eq!(b.name.as_deref(), Some("n"));
    }

    #[test]
    fn every_subcommand_parses() {
        let lines: &[&[&str]] = &[
            &["new", "x", "--template", "gui-dev", "--force"],
            &["build"],
            &["rebuild", "m.toml", "--locked"],
            &["pin", "--check"],
            &["pin", "m.toml", "--write-lock"],
            &["enter", "e"],
            &["exec", "e", "--", "true"],
            &["destroy", "e"],
            &["stop", "e"],
            &["freeze", "e"],
            &["archive", "e"],
            &["list"],
            &["inspect", "e"],
            &["diff", "e"],
            &["snapshots", "e"],
            &["commit", "e"],
            &["restore", "e", "abc"],
            &["gc", "--dry-run"],
            &["verify-store"],
            &["push", "e", "--tag", "n@t", "--remote", "http://x"],
            &["pull", "n@t", "--remote", "http://x"],
            &["rename", "e", "new"],
            &["completions", "zsh"],
            &["man-pages"],
            &["man-pages", "out"],
            &["tui"],
            &["doctor"],
            &["migrate"],
        ];
        let mut seen = std::collections::BTreeSet::new();
        for line in lines {
            let cli = parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            seen.insert(cli.command.name());
        }
        assert_eq!(seen.len(), 26, "all 26 subcommands: {seen:?}");
        // Ours beside them (not part of the standard tool's 26).
        for line in [
            &["plugin", "list"][..],
            &["plugin", "build"],
            &["plugin", "build", "dir", "-o", "x.wasm"],
            &[
                "plugin",
                "test",
                "p.wasm",
                "--detect",
                "/r",
                "--install",
                "a=1",
                "--install",
                "b",
            ],
            &[
                "plugin",
                "test",
                "p.wasm",
                "--parse",
                "out.txt",
                "--single-uid-map",
            ],
            &["plugin", "install", "p.wasm", "--force"],
        ] {
            let cli = parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(cli.command.name(), "plugin");
        }
    }

    #[test]
    fn an_unknown_shell_is_a_usage_error_and_an_unknown_template_is_not() {
        // The standard tool checks the template after parsing (exit 1, see `new`).
        assert!(parse(&["new", "x", "--template", "nope"]).is_ok());
        assert_eq!(parse(&["completions", "tcsh"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn the_command_after_dashes_is_called_command() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        for sub in ["exec", "enter"] {
            let sub = cmd.find_subcommand(sub).expect("subcommand");
            let arg = sub
                .get_arguments()
                .find(|a| a.get_id() == "command")
                .expect("command arg");
            let names: Vec<String> = arg
                .get_value_names()
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(names, ["COMMAND"]);
        }
    }
}
