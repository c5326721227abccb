//! Host architecture → the architecture names image servers use (Debian style).

use crate::error::{ImageError, Result};

/// Maps a machine name (as `uname -m` or Rust's `std::env::consts::ARCH` spell it) to the image
/// server's name for it. `None` for machines no image server publishes.
pub fn map_machine_arch(machine: &str) -> Option<&'static str> {
    Some(match machine {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv7" | "armv8l" | "arm" | "armhf" => "armhf",
        "armv6l" | "armel" => "armel",
        "i386" | "i486" | "i586" | "i686" | "x86" => "i386",
        "ppc64le" | "ppc64el" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loongarch64",
        _ => return None,
    })
}

/// The architecture of this host in image-server terms.
///
/// Uses the architecture this binary was built for: that is what can execute the image's programs
/// without emulation. Little-endian `powerpc64` is Rust's name for ppc64le.
pub fn host_arch() -> Result<&'static str> {
    let machine = match std::env::consts::ARCH {
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        other => other,
    };
    map_machine_arch(machine).ok_or_else(|| ImageError::UnsupportedArch(machine.to_string()))
}
