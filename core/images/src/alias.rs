//! The alias table of formats.md, the user's own aliases from the config file, and the split
//! between aliases and URLs.

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

/// An alias from the user's config file (`[image_aliases]`), checked by [`UserAlias::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAlias {
    /// Lowercase alias.
    pub alias: String,
    /// `<distro>/<release>` on the image server.
    pub target: String,
}

/// Longest alias or target accepted from the config file.
const MAX_USER_ALIAS_BYTES: usize = 64;

impl UserAlias {
    /// Checks one `[image_aliases]` entry. Refuses: an alias that is empty, longer than 64
    /// bytes, or has characters outside `[a-z0-9._/-]` (after lowercasing) or a `:` (it would
    /// read as a URL); a target that is not `<distro>/<release>` of `[A-Za-z0-9._-]` parts
    /// (never `.` or `..`); and an alias that is built in with another target — built-ins
    /// always win, since redefining one would silently give every manifest naming it another
    /// base image (and `env_id`).
    pub fn new(alias: &str, target: &str) -> std::result::Result<UserAlias, String> {
        let key = alias.trim().to_ascii_lowercase();
        let alias_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._/-".contains(c);
        if key.is_empty() || key.len() > MAX_USER_ALIAS_BYTES || !key.chars().all(alias_ok) {
            return Err(format!(
                "image alias {alias:?}: use 1 to {MAX_USER_ALIAS_BYTES} of a-z 0-9 . _ / -"
            ));
        }
        let part_ok = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        let target = target.trim();
        let well_formed = target.len() <= MAX_USER_ALIAS_BYTES
            && target
                .split_once('/')
                .is_some_and(|(d, r)| part_ok(d) && part_ok(r));
        if !well_formed {
            return Err(format!(
                "image alias {key:?}: target {target:?} must be <distro>/<release> as on the image server (e.g. \"gentoo/openrc\")"
            ));
        }
        if let Some(builtin) = alias_target(&key)
            && builtin != target
        {
            return Err(format!(
                "image alias {key:?} is built in (-> {builtin}) and cannot be redefined: \
                 manifests naming it would silently get another image; pick another name"
            ));
        }
        Ok(UserAlias {
            alias: key,
            target: target.to_string(),
        })
    }
}

/// Classifies an image string. URLs are kept byte for byte (never lowercased).
pub fn parse_image_ref(image: &str) -> Result<ImageRef> {
    parse_image_ref_with(image, &[])
}

/// [`parse_image_ref`] with the user's own aliases after the built-in ones.
pub fn parse_image_ref_with(image: &str, user: &[UserAlias]) -> Result<ImageRef> {
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
    let key = trimmed.to_ascii_lowercase();
    let target = alias_target(trimmed).or_else(|| {
        user.iter()
            .find(|u| u.alias == key)
            .map(|u| u.target.as_str())
    });
    if let Some(target) = target {
        let (distro, release) = target.split_once('/').unwrap_or((target, ""));
        return Ok(ImageRef::Alias(Distro {
            distro: distro.to_string(),
            release: release.to_string(),
        }));
    }
    let names: Vec<&str> = ALIASES
        .iter()
        .map(|(a, _)| *a)
        .chain(user.iter().map(|u| u.alias.as_str()))
        .collect();
    let suggestion = karapace_schema::similar(&trimmed.to_lowercase(), &names, 1)
        .into_iter()
        .next()
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default();
    Err(ImageError::UnknownImage {
        image: trimmed.to_string(),
        known: known_aliases(user),
        suggestion,
    })
}

/// `--require-pinned-image` / `pin --check`: true iff the image is an explicit http(s) URL.
pub fn is_pinned_url(image: &str) -> bool {
    matches!(url::scheme(image.trim()).as_deref(), Some("http" | "https"))
}

fn known_aliases(user: &[UserAlias]) -> String {
    let mut names: Vec<&str> = ALIASES
        .iter()
        .map(|(a, _)| *a)
        .chain(user.iter().map(|u| u.alias.as_str()))
        .collect();
    names.sort_unstable();
    names.join(", ")
}
