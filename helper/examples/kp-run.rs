//! Manual driver for the helper (debugging, TTY checks, strace):
//! `kp-run <store_root> <layer_dir> [-- argv...]` runs argv (default `/bin/sh`)
//! in a throwaway environment with the caller's stdio and prints timings to
//! stderr when `KP_TIMINGS` is set.

use karapace_helper_client::{
    Capabilities, IdMapMode, Identity, Limits, Network, RunSpec, StdioMode, Upper,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (paths, command) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], args[i + 1..].to_vec()),
        None => (&args[..], vec!["/bin/sh".to_string()]),
    };
    let [store, layer] = paths else {
        eprintln!("usage: kp-run <store_root> <layer_dir> [-- argv...]");
        std::process::exit(2);
    };
    // Only the terminal's type passes through: this is a debugging tool, not the engine.
    let mut env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k == "TERM").collect();
    env.push(("PATH".into(), "/bin:/usr/bin:/sbin:/usr/sbin".into()));
    let spec = RunSpec {
        store_root: store.into(),
        lowers: vec![layer.into()],
        upper: Upper::Tmpfs { size_mb: 256 },
        argv: command,
        env,
        cwd: "/".into(),
        hostname: "karapace-kprun".into(),
        binds: vec![],
        devices: vec![],
        network: Network::Isolated,
        limits: Limits::default(),
        identity: Identity::Root,
        id_map: IdMapMode::Single,
        capabilities: Capabilities::None,
        tty: karapace_helper_client::terminal::caller_size(),
        allowed_mount_prefixes: vec![],
        join: vec![],
        allow_without_landlock: false,
        oci: None,
    };
    let out = karapace_helper_client::spawn(&spec, StdioMode::Inherit)
        .and_then(karapace_helper_client::Session::wait);
    match out {
        Ok(o) => {
            if std::env::var_os("KP_TIMINGS").is_some() {
                eprintln!("{:?}\n{:?}", o.client, o.timings);
            }
            std::process::exit(o.status.code());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
