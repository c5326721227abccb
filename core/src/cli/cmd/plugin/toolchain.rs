//! Which wasm toolchain builds a plugin here, found the way scripts/build-plugins finds it:
//! rustup with the `wasm32-unknown-unknown` target installed, else Debian's `rustc-web`
//! packages (std built from source with `-Zbuild-std`, linked by `wasm-ld`).
//! `KARAPACE_PLUGIN_ROUTE=rustup|debian` forces one.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::Command;

use crate::error::{CoreError, Result};

pub const TARGET: &str = "wasm32-unknown-unknown";

/// How to run `cargo build` for the wasm target.
#[derive(Debug)]
pub struct Toolchain {
    /// `rustup` or `debian`, for messages.
    pub route: &'static str,
    pub cargo: PathBuf,
    /// Extra environment for cargo.
    pub env: Vec<(&'static str, OsString)>,
    /// Extra `cargo build` arguments.
    pub args: Vec<&'static str>,
}

const DEBIAN_FILES: [&str; 3] = ["/usr/bin/cargo", "/usr/bin/rustc", "/usr/bin/wasm-ld"];
const DEBIAN_STD_SOURCES: &str = "/usr/lib/rustlib/src/rust/library";

pub fn find() -> Result<Toolchain> {
    let forced = std::env::var("KARAPACE_PLUGIN_ROUTE").ok();
    match forced.as_deref().filter(|r| !r.is_empty()) {
        Some("rustup") => return Ok(rustup()),
        Some("debian") => return debian(),
        Some(other) => {
            return Err(CoreError::Usage(format!(
                "KARAPACE_PLUGIN_ROUTE={other}: expected rustup or debian"
            )));
        }
        None => {}
    }
    if rustup_has_target() {
        Ok(rustup())
    } else {
        debian().map_err(|e| {
            CoreError::PluginBuild(format!(
                "no wasm toolchain found: either `rustup target add {TARGET}`, or (Debian) \
                 `apt-get install rustc-web cargo-web rust-web-src lld` ({e})"
            ))
        })
    }
}

fn rustup_has_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == TARGET)
        })
}

fn rustup() -> Toolchain {
    Toolchain {
        route: "rustup",
        cargo: PathBuf::from("cargo"),
        env: Vec::new(),
        args: Vec::new(),
    }
}

fn debian() -> Result<Toolchain> {
    for need in DEBIAN_FILES {
        if !std::path::Path::new(need).is_file() {
            return Err(CoreError::PluginBuild(format!(
                "missing {need} (apt-get install rustc-web cargo-web rust-web-src lld)"
            )));
        }
    }
    if !std::path::Path::new(DEBIAN_STD_SOURCES).is_dir() {
        return Err(CoreError::PluginBuild(format!(
            "missing {DEBIAN_STD_SOURCES} (apt-get install rust-web-src)"
        )));
    }
    let path = debian_path(std::env::var_os("PATH"));
    Ok(Toolchain {
        route: "debian",
        cargo: PathBuf::from("/usr/bin/cargo"),
        env: vec![
            ("PATH", path),
            ("RUSTC", "/usr/bin/rustc".into()),
            // -Zbuild-std is unstable; Debian's compiler is a stable release.
            ("RUSTC_BOOTSTRAP", "1".into()),
            (
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER",
                "wasm-ld".into(),
            ),
        ],
        args: vec!["-Zbuild-std=std,panic_abort"],
    })
}

/// `PATH` for Debian's cargo: it must find Debian's rustc, not a rustup proxy earlier on the
/// caller's `PATH`. The caller's directories follow as they are (one need not be UTF-8), but
/// not its empty entries, which mean the current directory.
fn debian_path(caller: Option<OsString>) -> OsString {
    let mut path = b"/usr/bin".to_vec();
    let caller = caller.map(OsString::into_vec).unwrap_or_default();
    for dir in caller.split(|&b| b == b':').filter(|d| !d.is_empty()) {
        path.push(b':');
        path.extend_from_slice(dir);
    }
    OsString::from_vec(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_path_puts_usr_bin_first_and_keeps_the_rest_as_it_is() {
        assert_eq!(debian_path(None), "/usr/bin");
        assert_eq!(
            debian_path(Some(OsString::new())),
            "/usr/bin",
            "no empty entry"
        );
        assert_eq!(
            debian_path(Some(":/bin::/sbin:".into())),
            "/usr/bin:/bin:/sbin",
            "no entry that means the current directory"
        );
        let odd = OsString::from_vec(b"/opt/\xff/bin:/bin".to_vec());
        let mut expected = b"/usr/bin:".to_vec();
        expected.extend(odd.as_encoded_bytes());
        assert_eq!(debian_path(Some(odd)).into_vec(), expected);
    }
}
