//! Compiles the seccomp filters for the target architecture (`CARGO_CFG_TARGET_ARCH`, not the
//! build host's) into `$OUT_DIR/seccomp_filters.rs`, which `src/confine.rs` embeds: the helper
//! only installs finished programs.

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let programs = karapace_seccomp::Programs::for_arch(&arch)
        .unwrap_or_else(|e| panic!("seccomp filters: {e}"));
    let out = std::path::Path::new(&std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("seccomp_filters.rs");
    std::fs::write(&out, programs.rust_source())
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    println!("cargo::rerun-if-changed=build.rs");
}
