//! Prints where the client-side time of one `/bin/true` run goes (debug aid
//! for the benchmark): `kp-phases <store_root> <layer_dir>`.

#![allow(clippy::cast_precision_loss)]

use std::time::Instant;

use karapace_helper_client::{
    Capabilities, IdMapMode, Identity, Limits, Network, RunSpec, StdioMode, Upper,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, layer] = args.as_slice() else {
        eprintln!("usage: kp-phases <store_root> <layer_dir>");
        std::process::exit(2);
    };
    let spec = RunSpec {
        store_root: store.into(),
        lowers: vec![layer.into()],
        upper: Upper::Tmpfs { size_mb: 64 },
        argv: vec!["/bin/true".into()],
        env: vec![],
        cwd: "/".into(),
        hostname: "karapace-phases".into(),
        binds: vec![],
        devices: vec![],
        network: Network::Isolated,
        limits: Limits::default(),
        identity: Identity::Root,
        id_map: IdMapMode::Single,
        capabilities: Capabilities::None,
        tty: None,
        allowed_mount_prefixes: vec![],
        join: vec![],
        allow_without_landlock: false,
        oci: None,
    };
    for _ in 0..5 {
        let t0 = Instant::now();
        let s = karapace_helper_client::spawn(&spec, StdioMode::Null).expect("spawn");
        let t1 = t0.elapsed();
        let o = s.wait().expect("wait");
        let t2 = t0.elapsed();
        let base = o.client.spawn;
        let rel = |t: u64| t.saturating_sub(base) as f64 / 1e6;
        println!(
            "spawn() {:.2}  total {:.2} | connected {:.2} handshake {:.2} request {:.2} validated {:.2} ns {:.2} mounts {:.2} exec {:.2} exited {:.2} c.exited {:.2} reaped {:.2}",
            t1.as_secs_f64() * 1e3,
            t2.as_secs_f64() * 1e3,
            rel(o.client.connected),
            rel(o.client.handshake),
            rel(o.timings.request),
            rel(o.timings.validated),
            rel(o.timings.namespaces),
            rel(o.timings.mounts),
            rel(o.timings.exec),
            rel(o.timings.exited),
            rel(o.client.exited),
            rel(o.client.reaped),
        );
    }
}
