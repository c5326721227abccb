//! The alias table of formats.md and the split between aliases and URLs.

use crate::error::{ImageError, Result};
use crate::url;

/// Every accepted alias (lowercase) and the `<distro>/<release>` directory it names.
pub const ALIASES: &[(&str, &str)] = &[
    ("rolling", "opensuse/tumbleweed"),
    ("opensuse", "opensuse/tumbleweed"),
    ("opensuse/tumbleweed", "opensuse/tumbleweed"),
    ("tumbleweed", "opensuse/tumbleweed"),
    ("opensuse/leap", "opensuse/15.6"),
    ("leap", "opensuse/15.6"),
    ("ubuntu", "ubuntu/noble"),
    ("ubuntu/24.04", "ubuntu/noble"),
    ("ubuntu/noble", "ubuntu/noble"),
    ("ubuntu/22.04", "ubuntu/jammy"),
    ("ubuntu/jammy", "ubuntu/jammy"),
    ("ubuntu/24.10", "ubuntu/oracular"),
    ("ubuntu/oracular", "ubuntu/oracular"),
    ("ubuntu/20.04", "ubuntu/focal"),
    ("ubuntu/focal", "ubuntu/focal"),
    ("debian", "debian/bookworm"),
    ("debian/bookworm", "debian/bookworm"),
    ("debian/trixie", "debian/trixie"),
    ("debian/sid", "debian/sid"),
    ("fedora", "fedora/41"),
    ("fedora/41", "fedora/41"),
    ("fedora/40", "fedora/40"),
    ("fedora/42", "fedora/42"),
    ("arch", "archlinux/current"),
    ("archlinux", "archlinux/current"),
];

/// A `<distro>/<release>` pair on an image server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Distro {
    pub distro: String,
    pub release: String,
}

impl Distro {
    /// `<distro>/<release>`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.distro, self.release)
    }
}

/// What a manifest's `[base] image` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// An alias, already mapped through [`ALIASES`].
    Alias(Distro),
    /// A rootfs tarball URL (`http`, `https` or `file`), exactly as written (only trimmed).
    Url(String),
}

/// Maps an alias (case-insensitive, surrounding whitespace ignored) to `<distro>/<release>`.
pub fn alias_target(alias: &str) -> Option<&'static str> {
    let key = alias.trim().to_ascii_lowercase();
    ALIASES
        .iter()
        .find(|(a, _)| *a == key)
        .map(|(_, target)| *target)
}

/// Classifies an image string. URLs are kept byte for byte (never lowercased).
pub fn parse_image_ref(image: &str) -> Result<ImageRef> {
    let trimmed = image.trim();
    if let Some(scheme) = url::scheme(trimmed) {
        return match scheme.as_str() {
            "http" | "https" | "file" => {
                url::validate(trimmed)?;
                Ok(ImageRef::Url(trimmed.to_string()))
            }
            _ => Err(ImageError::InvalidUrl {
                url: trimmed.to_string(),
                reason: format!("unsupported scheme '{scheme}' (use http, https or file)"),
            }),
        };
    }
    if let Some(target) = alias_target(trimmed) {
        let (distro, release) = target.split_once('/').unwrap_or((target, ""));
        return Ok(ImageRef::Alias(Distro {
            distro: distro.to_string(),
            release: release.to_string(),
        }));
    }
    let names: Vec<&str> = ALIASES.iter().map(|(a, _)| *a).collect();
    let suggestion = karapace_schema::similar(&trimmed.to_lowercase(), &names, 1)
        .into_iter()
        .next()
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default();
    Err(ImageError::UnknownImage {
        image: trimmed.to_string(),
        known: known_aliases(),
        suggestion,
    })
}

/// `--require-pinned-image` / `pin --check`: true iff the image is an explicit http(s) URL.
pub fn is_pinned_url(image: &str) -> bool {
    matches!(url::scheme(image.trim()).as_deref(), Some("http" | "https"))
}

fn known_aliases() -> String {
    let mut names: Vec<&str> = ALIASES.iter().map(|(a, _)| *a).collect();
    names.sort_unstable();
    names.join(", ")
}
