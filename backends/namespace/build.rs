//! Compiles the seccomp filters for the target architecture (`CARGO_CFG_TARGET_ARCH`, not the
//! build host's) into `$OUT_DIR/seccomp_filters.rs`, which `src/confine.rs` embeds: the helper
//! only installs finished programs.

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // x32 also reports x86_64: its system calls are numbered apart, so the x86-64 programs would
    // refuse the helper's own calls. Only 64-bit x86-64 is supported.
    let width = std::env::var("CARGO_CFG_TARGET_POINTER_WIDTH").unwrap_or_default();
    assert!(
        arch != "x86_64" || width == "64",
        "seccomp filters: the x32 ABI (x86_64 with {width}-bit pointers) is not supported"
    );
    let programs = karapace_seccomp::Programs::for_arch(&arch)
        .unwrap_or_else(|e| panic!("seccomp filters: {e}"));
    let out = std::path::Path::new(&std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("seccomp_filters.rs");
    std::fs::write(&out, programs.rust_source())
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    println!("cargo::rerun-if-changed=build.rs");
}
