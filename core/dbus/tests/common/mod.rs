//! Test support: a private `dbus-daemon` per test (a unix socket in a temporary directory), the
//! real `karapace-dbus` on it with a private store and home, and a zbus client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const SERVICE: &str = env!("CARGO_BIN_EXE_karapace-dbus");
pub const NAME: &str = "org.karapace.Manager1";
pub const PATH: &str = "/org/karapace/Manager1";
pub const IFACE: &str = "org.karapace.Manager1";

/// How long a test waits for something that should happen at once.
pub const SOON: Duration = Duration::from_secs(15);

/// The `karapace` CLI of this build: beside `karapace-dbus` in the target directory, where
/// `cargo test --workspace` (or `cargo build -p karapace --bins`) puts it.
pub fn karapace_cli() -> PathBuf {
    let cli = Path::new(SERVICE).with_file_name("karapace");
    let full = cli.with_file_name("karapace-cli");
    assert!(
        cli.is_file() && full.is_file(),
        "{} and karapace-cli beside it are needed (CLI changes must be signalled): build them \
         with `cargo build -p karapace --bins` (`cargo test --workspace` does)",
        cli.display()
    );
    cli
}

/// What the private bus allows.
#[derive(Debug, Default, Clone)]
pub struct BusOptions {
    /// Let every uid connect (a session bus admits only its owner): the attacker's bus.
    pub any_user: bool,
    /// A directory of D-Bus activation files.
    pub service_dir: Option<PathBuf>,
    /// The environment of the daemon, which activated services inherit.
    pub env: Vec<(String, String)>,
}

/// A private `dbus-daemon --session`, killed on drop.
pub struct Bus {
    pub dir: tempfile::TempDir,
    pub address: String,
    daemon: Child,
}

impl Bus {
    pub fn start(options: &BusOptions) -> Bus {
        let dir = tempfile::tempdir().expect("bus dir");
        let socket = dir.path().join("socket");
        let users = if options.any_user {
            r#"<allow user="*"/>"#
        } else {
            ""
        };
        let services = options
            .service_dir
            .as_ref()
            .map(|d| format!("<servicedir>{}</servicedir>", d.display()))
            .unwrap_or_default();
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  {services}
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    {users}
  </policy>
</busconfig>
"#,
            socket.display()
        );
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config).expect("bus config");
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--print-address"])
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon (Debian package `dbus`) is needed: scripts/install-deps");
        let stdout = daemon.stdout.take().expect("daemon stdout");
        let mut address = String::new();
        BufReader::new(stdout)
            .read_line(&mut address)
            .expect("read the bus address");
        let address = address.trim().to_owned();
        assert!(!address.is_empty(), "dbus-daemon printed no address");
        Bus {
            dir,
            address,
            daemon,
        }
    }

    pub fn client(&self) -> Client {
        let conn = zbus::blocking::connection::Builder::address(self.address.as_str())
            .expect("bus address")
            .build()
            .expect("connect to the private bus");
        Client { conn }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// A D-Bus error reply: its name and message.
#[derive(Debug, Clone)]
pub struct Failure {
    pub name: String,
    pub message: String,
}

pub struct Client {
    pub conn: zbus::blocking::Connection,
}

impl Client {
    pub fn call<B>(&self, method: &str, body: &B) -> Result<String, Failure>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        match self
            .conn
            .call_method(Some(NAME), PATH, Some(IFACE), method, body)
        {
            Ok(reply) => Ok(reply
                .body()
                .deserialize::<String>()
                .expect("a string reply")),
            Err(zbus::Error::MethodError(name, message, _)) => Err(Failure {
                name: name.to_string(),
                message: message.unwrap_or_default(),
            }),
            Err(zbus::Error::FDO(e)) => {
                use zbus::DBusError as _;
                Err(Failure {
                    name: e.name().to_string(),
                    message: e.description().unwrap_or_default().to_owned(),
                })
            }
            Err(e) => panic!("{method}: {e}"),
        }
    }

    pub fn ok<B>(&self, method: &str, body: &B) -> String
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.call(method, body)
            .unwrap_or_else(|f| panic!("{method} failed: {}: {}", f.name, f.message))
    }

    pub fn json<B>(&self, method: &str, body: &B) -> serde_json::Value
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let text = self.ok(method, body);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method}: bad JSON {e}: {text}"))
    }

    pub fn err<B>(&self, method: &str, body: &B) -> Failure
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        match self.call(method, body) {
            Ok(text) => panic!("{method} succeeded but should fail: {text}"),
            Err(f) => f,
        }
    }

    pub fn property(&self, name: &str) -> Result<zbus::zvariant::OwnedValue, zbus::Error> {
        let reply = self.conn.call_method(
            Some(NAME),
            PATH,
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(IFACE, name),
        )?;
        let value: zbus::zvariant::OwnedValue = reply.body().deserialize()?;
        Ok(value)
    }

    pub fn name_has_owner(&self) -> bool {
        self.conn
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                "NameHasOwner",
                &(NAME,),
            )
            .and_then(|r| r.body().deserialize::<bool>())
            .unwrap_or(false)
    }

    /// Starts collecting this interface's signals; the match is in place when this returns.
    pub fn signals(&self) -> Signals {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface(IFACE)
            .expect("interface")
            .build();
        let iter = zbus::blocking::MessageIterator::for_match_rule(rule, &self.conn, Some(1024))
            .expect("subscribe to signals");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for msg in iter {
                let Ok(msg) = msg else { continue };
                let header = msg.header();
                let member = header.member().map(ToString::to_string).unwrap_or_default();
                let args: Vec<String> = match member.as_str() {
                    "EnvironmentStateChanged" | "BuildProgress" => msg
                        .body()
                        .deserialize::<(String, String)>()
                        .map(|(a, b)| vec![a, b])
                        .unwrap_or_default(),
                    _ => msg
                        .body()
                        .deserialize::<(String,)>()
                        .map(|(a,)| vec![a])
                        .unwrap_or_default(),
                };
                if tx.send(Signal { member, args }).is_err() {
                    break;
                }
            }
        });
        Signals {
            rx,
            seen: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub member: String,
    pub args: Vec<String>,
}

pub struct Signals {
    rx: Receiver<Signal>,
    /// Everything received so far, in order.
    pub seen: Vec<Signal>,
}

impl Signals {
    /// Waits for a signal `member` whose arguments are `args`; panics after [`SOON`].
    pub fn expect(&mut self, member: &str, args: &[&str]) {
        let want = Signal {
            member: member.to_owned(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        };
        if self.seen.contains(&want) {
            return;
        }
        let deadline = Instant::now() + SOON;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(s) => {
                    let found = s == want;
                    self.seen.push(s);
                    if found {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no {want:?} within {SOON:?}; saw {:?}", self.seen)
                }
            }
        }
    }

    /// Collects what arrives within `wait`.
    pub fn drain(&mut self, wait: Duration) -> &[Signal] {
        let deadline = Instant::now() + wait;
        while let Ok(s) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(s);
        }
        &self.seen
    }

    pub fn count(&self, member: &str, args: &[&str]) -> usize {
        self.seen
            .iter()
            .filter(|s| {
                s.member == member && s.args.iter().map(String::as_str).eq(args.iter().copied())
            })
            .count()
    }
}

/// What a test's service is started with.
#[derive(Debug, Clone)]
pub struct Options {
    pub idle_timeout: String,
    pub terminal: Option<String>,
    pub bus: BusOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // Tests that do not test the idle exit keep the service up.
            idle_timeout: "0".into(),
            terminal: None,
            bus: BusOptions::default(),
        }
    }
}

/// A private home, store and work directory, a private bus and the service on it.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub bus: Bus,
    pub service: Option<Child>,
    pub client: Client,
}

impl Harness {
    pub fn start() -> Harness {
        Harness::with(&Options::default())
    }

    pub fn with(options: &Options) -> Harness {
        let dir = tempfile::tempdir().expect("test dir");
        for sub in ["home", "work"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("dirs");
        }
        let bus = Bus::start(&options.bus);
        let client = bus.client();
        let mut h = Harness {
            dir,
            bus,
            service: None,
            client,
        };
        let terminal = options.terminal.clone().unwrap_or_else(|| {
            let script = h.fake_terminal();
            format!("{} -e", script.display())
        });
        let child = h
            .service_command()
            .env("KARAPACE_DBUS_IDLE_TIMEOUT", &options.idle_timeout)
            .env("KARAPACE_TERMINAL", terminal)
            .spawn()
            .expect("start karapace-dbus");
        h.service = Some(child);
        h.wait_for_name();
        h
    }

    /// `karapace-dbus` with this test's bus, store and home, and nothing of the caller's
    /// environment but `PATH`.
    pub fn service_command(&self) -> Command {
        let mut c = Command::new(SERVICE);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus.address)
            .env("KARAPACE_STORE", self.store())
            .env("KARAPACE_LOG", "info")
            // The hosts' prerequisites are the CLI's tests' business; a build here stops at its
            // download at the latest.
            .env("KARAPACE_SKIP_PREREQS", "1")
            .stdin(Stdio::null());
        c
    }

    pub fn wait_for_name(&mut self) {
        let deadline = Instant::now() + SOON;
        while !self.client.name_has_owner() {
            if let Some(status) = self
                .service
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("karapace-dbus exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "karapace-dbus never took its name"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.service.as_ref().expect("service").id()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Where the fake terminal records its arguments, one per line.
    pub fn terminal_log(&self) -> PathBuf {
        self.dir.path().join("terminal.log")
    }

    /// A terminal emulator that only records its argv.
    fn fake_terminal(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let script = self.dir.path().join("fake-terminal");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > {}.part\nmv {0}.part {0}\n",
                self.terminal_log().display()
            ),
        )
        .expect("fake terminal");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod fake terminal");
        script
    }

    /// Writes a mock-backend manifest (no network, no namespaces) and returns its absolute path.
    pub fn mock_manifest(&self, dir: &str, packages: &[&str]) -> PathBuf {
        let pkgs: Vec<String> = packages.iter().map(|p| format!("\"{p}\"")).collect();
        self.manifest(
            dir,
            &format!(
                "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[system]\npackages = [{}]\n[runtime]\nbackend = \"mock\"\n",
                pkgs.join(", ")
            ),
        )
    }

    pub fn manifest(&self, dir: &str, body: &str) -> PathBuf {
        let d = self.work().join(dir);
        std::fs::create_dir_all(&d).expect("manifest dir");
        let p = d.join("karapace.toml");
        std::fs::write(&p, body).expect("write manifest");
        p
    }

    /// Runs the CLI on this test's store; returns stdout, panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(karapace_cli())
            .arg("--store")
            .arg(self.store())
            .args(args)
            .env("HOME", self.home())
            .env_remove("KARAPACE_LOG")
            .current_dir(self.work())
            .stdin(Stdio::null())
            .output()
            .expect("run karapace");
        assert!(
            out.status.success(),
            "karapace {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits up to `within` for the service to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.service.as_mut().expect("service");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(child) = self.service.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 test path")
}

/// CPU time (user + system, in clock ticks) the process has used: fields 14 and 15 of
/// `/proc/<pid>/stat`, counted after the command name's closing parenthesis.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .expect("stat format");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// Nanoseconds on a CPU and the number of times scheduled, summed over the process's threads
/// (`/proc/<pid>/task/*/schedstat`): finer than clock ticks, and a thread that wakes up
/// periodically shows up in the count even when each wake-up is short.
pub fn cpu_schedstat(pid: u32) -> (u64, u64) {
    let mut total = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue; // the thread just ended
        };
        let fields: Vec<u64> = text
            .split_whitespace()
            .map(|f| f.parse().expect("schedstat number"))
            .collect();
        total.0 += fields[0];
        total.1 += fields[2];
    }
    total
}
