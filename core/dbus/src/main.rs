//! `karapace-dbus`: see the crate docs (`lib.rs`) and docs/dbus.md.

use std::process::ExitCode;

use karapace_dbus::config::{Config, Invocation, USAGE};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    init_logging();
    let invocation = Config::invocation(std::env::args_os().skip(1), |k| std::env::var_os(k));
    let result = match invocation {
        Ok(Invocation::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            println!("karapace-dbus {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Serve(config)) => karapace_dbus::serve(&config).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("karapace-dbus: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (the journal under systemd), filtered by `KARAPACE_LOG` (default `warn`); the
/// info-level events of build threads also feed `BuildProgress`, whatever the log filter says.
fn init_logging() {
    let filter = std::env::var("KARAPACE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_filter(filter);
    let progress = karapace_dbus::progress::ProgressLayer.with_filter(LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(progress)
        .try_init();
}
