//! `Karapace`: the binary under test, bound to one test's private store, image cache and
//! image server.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{self, Outcome, shell_quote};
use crate::testdir::TestDir;

/// What youki prints when it cannot start at all: it copies itself into a memfd and seals it
/// at every start, and under load the kernel sometimes refuses the seal (`EBUSY`: pages of the
/// fresh copy still referenced). youki then exits before doing anything, so the command is
/// tried again, once — the only failure the runner retries, and one karapace has no part in.
pub const YOUKI_SEAL_FAILURE: &str = "failed to seal /proc/self/exe";

/// Default limit for one command; a first build with apt may take minutes on a busy machine.
/// `KARAPACE_TEST_TIMEOUT_SECS` overrides it.
const DEFAULT_TIMEOUT: Duration = Duration::from_mins(15);

/// Runs `karapace --store <store> …` with `XDG_CACHE_HOME=<cache>` and, when set,
/// `KARAPACE_IMAGE_SERVER`. `HOME` is the real one: rootless runs need the user's identity, and
/// everything karapace writes is redirected by `--store` and the cache variable.
#[derive(Debug, Clone)]
pub struct Karapace {
    bin: PathBuf,
    store: PathBuf,
    cache: PathBuf,
    cwd: PathBuf,
    image_server: Option<String>,
    envs: Vec<(OsString, OsString)>,
    timeout: Duration,
    /// Run every command as this user (through `runuser`; the tests run as root then).
    user: Option<String>,
}

impl Karapace {
    pub fn new(dir: &TestDir) -> Self {
        Self::with_paths(&dir.store(), &dir.cache(), &dir.project())
    }

    pub fn with_paths(store: &Path, cache: &Path, cwd: &Path) -> Self {
        let timeout = std::env::var("KARAPACE_TEST_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        Karapace {
            bin: crate::bins::karapace_bin(),
            store: store.to_path_buf(),
            cache: cache.to_path_buf(),
            cwd: cwd.to_path_buf(),
            image_server: None,
            envs: Vec::new(),
            timeout,
            user: None,
        }
    }

    /// Runs every later command as `user` (`runuser -u <user> --`; needs root). The store,
    /// cache and working directory must be that user's.
    #[must_use]
    pub fn as_user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// Sets `KARAPACE_IMAGE_SERVER` for every later command.
    #[must_use]
    pub fn image_server(mut self, url: impl Into<String>) -> Self {
        self.image_server = Some(url.into());
        self
    }

    pub fn set_image_server(&mut self, url: impl Into<String>) {
        self.image_server = Some(url.into());
    }

    /// An extra environment variable for every later command.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn store(&self) -> &Path {
        &self.store
    }

    /// The limit for one command.
    pub fn timeout_limit(&self) -> Duration {
        self.timeout
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The `Command` (not started) for `karapace --store <store> <args>`.
    pub fn command(&self, args: &[&str]) -> (Command, String) {
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("--store").arg(&self.store).args(args);
        cmd.current_dir(&self.cwd);
        cmd.env("XDG_CACHE_HOME", &self.cache);
        let mut shown = vec![
            format!("cd {} &&", shell_quote(&self.cwd.to_string_lossy())),
            format!(
                "XDG_CACHE_HOME={}",
                shell_quote(&self.cache.to_string_lossy())
            ),
        ];
        match &self.image_server {
            Some(url) => {
                cmd.env("KARAPACE_IMAGE_SERVER", url);
                shown.push(format!("KARAPACE_IMAGE_SERVER={}", shell_quote(url)));
            }
            None => {
                cmd.env_remove("KARAPACE_IMAGE_SERVER");
            }
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
            shown.push(format!(
                "{}={}",
                k.to_string_lossy(),
                shell_quote(&v.to_string_lossy())
            ));
        }
        if let Some(user) = &self.user {
            shown.push(format!("runuser -u {} --", shell_quote(user)));
        }
        shown.push(shell_quote(&self.bin.to_string_lossy()));
        shown.push("--store".to_owned());
        shown.push(shell_quote(&self.store.to_string_lossy()));
        shown.extend(args.iter().map(|a| shell_quote(a)));
        (cmd, shown.join(" "))
    }

    /// Runs `karapace <args>` and returns what happened, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_retrying_youki(args, None)
    }

    /// Runs `karapace <args>` with `stdin` as its standard input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Outcome {
        self.run_retrying_youki(args, Some(stdin))
    }

    /// Runs the command, and once more if youki could not start: only with youki as the OCI
    /// runtime, and only when karapace reported the runtime's failure and youki's own first
    /// line ([`YOUKI_SEAL_FAILURE`]) is there.
    fn run_retrying_youki(&self, args: &[&str], stdin: Option<&[u8]>) -> Outcome {
        let (cmd, shown) = self.command(args);
        let out = process::run(cmd, shown.clone(), stdin, self.timeout);
        let youki = self
            .envs
            .iter()
            .any(|(k, v)| k == "KARAPACE_OCI_RUNTIME" && v.to_string_lossy().contains("youki"));
        let err = out.stderr_str();
        let could_not_start = err
            .lines()
            .any(|l| l.starts_with("Error: ") && l.ends_with(YOUKI_SEAL_FAILURE))
            && (err.contains("the OCI runtime failed")
                || err.contains("which release the OCI runtime"));
        if out.success() || !youki || !could_not_start {
            return out;
        }
        eprintln!(
            "youki could not start (its self-sealing failed); once more: {shown}\nfirst \
             attempt's stderr:\n{err}"
        );
        let (cmd, shown) = self.command(args);
        process::run(cmd, shown, stdin, self.timeout)
    }

    /// Runs `karapace <args>` and asserts exit code 0.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Outcome {
        let out = self.run(args);
        out.assert_success();
        out
    }

    /// Runs `karapace --json <args>`, asserts exit code 0 and parses stdout.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.ok(&all).json()
    }

    /// `karapace exec <env> -- <argv>`, whatever the exit code.
    pub fn exec(&self, env: &str, argv: &[&str]) -> Outcome {
        self.run(&exec_args(env, argv))
    }

    /// `karapace exec <env> -- <argv>` with `stdin`.
    pub fn exec_with_stdin(&self, env: &str, argv: &[&str], stdin: &[u8]) -> Outcome {
        self.run_with_stdin(&exec_args(env, argv), stdin)
    }

    /// `karapace exec <env> -- sh -c <script>`, asserting success; returns stdout.
    #[track_caller]
    pub fn sh(&self, env: &str, script: &str) -> String {
        let out = self.exec(env, &["sh", "-c", script]);
        out.assert_success();
        out.stdout_str()
    }
}

fn exec_args<'a>(env: &'a str, command: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["exec", env, "--"];
    all.extend_from_slice(command);
    all
}
