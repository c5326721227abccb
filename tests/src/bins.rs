//! Where the binaries under test are.
//!
//! This package is not the one that defines `karapace`, so cargo gives it no
//! `CARGO_BIN_EXE_karapace`. Test and bench executables live in `target/<profile>/deps/`, and the
//! workspace binaries of the same profile in `target/<profile>/`, so they are found from the
//! running executable. `KARAPACE_BIN` overrides the lookup (the helper is then found by
//! `karapace` itself: next to it, or through `KARAPACE_HELPER`).

use std::path::{Path, PathBuf};

/// Environment variable naming the `karapace` binary to test.
pub const BIN_ENV: &str = "KARAPACE_BIN";

/// `target/<profile>/` of the running test or bench executable.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot find the running test executable: {e}"));
    let deps = exe.parent().unwrap_or(Path::new("."));
    // `cargo test` puts integration tests in deps/; be tolerant of a copied executable too.
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap_or(deps).to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The `karapace` binary: `KARAPACE_BIN`, else `target/<profile>/karapace`.
///
/// Panics with the command that builds it when it is missing: `cargo test -p karapace-tests`
/// alone does not build other packages' binaries (`cargo test --workspace` does).
pub fn karapace_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(BIN_ENV) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{BIN_ENV}={} is not a file", p.display());
        return p;
    }
    let p = profile_dir().join("karapace");
    assert!(
        p.is_file(),
        "{} does not exist: build the binaries first (cargo build -p karapace -p karapace-helper, \
         with --release for benches) or set {BIN_ENV}",
        p.display()
    );
    p
}

/// `karapace-helper` next to the binary under test, if it is there.
pub fn helper_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KARAPACE_HELPER") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    Some(karapace_bin().with_file_name("karapace-helper")).filter(|p| p.is_file())
}

/// `karapace-server` next to the binary under test (`cargo test --workspace` builds it).
pub fn server_bin() -> PathBuf {
    let p = karapace_bin().with_file_name("karapace-server");
    assert!(
        p.is_file(),
        "{} does not exist: build it first (cargo build -p karapace-server)",
        p.display()
    );
    p
}
