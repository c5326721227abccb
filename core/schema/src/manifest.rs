//! Manifest v1 (`karapace.toml`): strict parsing.
//!
//! The TOML is first read into a private mirror of the public structs whose
//! leaf values are wrapped in `toml::Spanned`, so that validation errors found
//! later (an empty image, a bad package name, a bad mount) can still point at
//! the line and column the user has to fix.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Location, ManifestError, ManifestErrorKind};

/// Manifests are a few hundred bytes; the cap only stops `karapace build
/// /dev/zero` (or a huge file by mistake) from eating memory.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// A manifest as written by the user, before normalization.
///
/// Build one with [`parse_manifest`] / [`load_manifest`] (which also validate
/// it), or in code (then call [`Manifest::normalize`] to validate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Kept as a wide integer so a wrong version is reported as such, not as
    /// an integer-range error.
    pub manifest_version: i64,
    pub base: BaseSection,
    pub system: SystemSection,
    pub gui: GuiSection,
    pub hardware: HardwareSection,
    /// `label -> "host:container"`, exactly as written (untrimmed).
    pub mounts: BTreeMap<String, String>,
    pub runtime: RuntimeSection,
    /// Where each value sat in the source text, for error messages.
    pub(crate) positions: Positions,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseSection {
    pub image: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemSection {
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuiSection {
    pub apps: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardwareSection {
    pub gpu: bool,
    pub audio: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeSection {
    /// `None` means the default backend (`namespace`).
    pub backend: Option<String>,
    pub network_isolation: bool,
    pub resource_limits: ResourceLimits,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    pub cpu_shares: Option<u64>,
    pub memory_limit_mb: Option<u64>,
}

/// Byte offsets (into `source`) of the values validation can complain
/// about. Index `i` of `packages` is the offset of `system.packages[i]` as
/// parsed. Offsets are turned into line:column only when an error is
/// reported, so a 20,000-package list costs nothing extra.
#[derive(Debug, Clone, Default)]
pub(crate) struct Positions {
    pub source: Option<Arc<str>>,
    pub version: Option<usize>,
    pub image: Option<usize>,
    pub packages: Vec<usize>,
    pub apps: Vec<usize>,
    pub mounts: BTreeMap<String, usize>,
    pub backend: Option<usize>,
}

impl Positions {
    pub fn locate(&self, offset: Option<usize>) -> Option<Location> {
        Some(Location::from_offset(self.source.as_deref()?, offset?))
    }
}

/// Positions are diagnostics only: two manifests with the same content are
/// equal however they were formatted.
impl PartialEq for Positions {
    fn eq(&self, _: &Positions) -> bool {
        true
    }
}
impl Eq for Positions {}

// ---- the private serde mirror -------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    manifest_version: Spanned<i64>,
    base: RawBase,
    #[serde(default)]
    system: RawSystem,
    #[serde(default)]
    gui: RawGui,
    #[serde(default)]
    hardware: RawHardware,
    // Any key is a label here, so no deny_unknown_fields (a map has none).
    #[serde(default)]
    mounts: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    runtime: RawRuntime,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBase {
    image: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    #[serde(default)]
    packages: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGui {
    #[serde(default)]
    apps: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHardware {
    #[serde(default)]
    gpu: bool,
    #[serde(default)]
    audio: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    #[serde(default)]
    backend: Option<Spanned<String>>,
    #[serde(default)]
    network_isolation: bool,
    #[serde(default)]
    resource_limits: RawLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    cpu_shares: Option<u64>,
    #[serde(default)]
    memory_limit_mb: Option<u64>,
}

/// Parses and validates manifest text. Every error carries a line and column
/// whenever the problem can be pinned to a place in the text.
pub fn parse_manifest(text: &str) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let location = e.span().map(|s| Location::from_offset(text, s.start));
        ManifestError::at(
            location,
            ManifestErrorKind::Syntax {
                message: friendlier(e.message().trim_end()),
            },
        )
    })?;
    let at = |span: std::ops::Range<usize>| span.start;

    let mut positions = Positions {
        source: Some(Arc::from(text)),
        version: Some(at(raw.manifest_version.span())),
        image: Some(at(raw.base.image.span())),
        backend: raw.runtime.backend.as_ref().map(|b| at(b.span())),
        ..Positions::default()
    };
    let unspan = |list: Vec<Spanned<String>>, locs: &mut Vec<usize>| -> Vec<String> {
        list.into_iter()
            .map(|s| {
                locs.push(at(s.span()));
                s.into_inner()
            })
            .collect()
    };
    let packages = unspan(raw.system.packages, &mut positions.packages);
    let apps = unspan(raw.gui.apps, &mut positions.apps);
    let mut mounts = BTreeMap::new();
    for (label, spec) in raw.mounts {
        positions.mounts.insert(label.clone(), at(spec.span()));
        mounts.insert(label, spec.into_inner());
    }

    let manifest = Manifest {
        manifest_version: raw.manifest_version.into_inner(),
        base: BaseSection {
            image: raw.base.image.into_inner(),
        },
        system: SystemSection { packages },
        gui: GuiSection { apps },
        hardware: HardwareSection {
            gpu: raw.hardware.gpu,
            audio: raw.hardware.audio,
        },
        mounts,
        runtime: RuntimeSection {
            backend: raw.runtime.backend.map(Spanned::into_inner),
            network_isolation: raw.runtime.network_isolation,
            resource_limits: ResourceLimits {
                cpu_shares: raw.runtime.resource_limits.cpu_shares,
                memory_limit_mb: raw.runtime.resource_limits.memory_limit_mb,
            },
        },
        positions,
    };
    // Validate now, so a manifest that parses is a manifest that normalizes.
    manifest.normalize()?;
    Ok(manifest)
}

/// Returns `text` with `[base] image` replaced by `image`, everything else
/// (comments, order, formatting) untouched. For `karapace pin`. The input
/// must be a valid manifest, and so is the output.
pub fn rewrite_base_image(text: &str, image: &str) -> Result<String, ManifestError> {
    parse_manifest(text)?;
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        ManifestError::at(
            None,
            ManifestErrorKind::Syntax {
                message: e.message().to_owned(),
            },
        )
    })?;
    let span = raw.base.image.span();
    let mut out = String::with_capacity(text.len() + image.len());
    out.push_str(&text[..span.start]);
    out.push_str(&toml_string(image));
    out.push_str(&text[span.end..]);
    parse_manifest(&out)?;
    Ok(out)
}

/// serde names Rust types in its messages; users wrote TOML, not Rust.
fn friendlier(message: &str) -> String {
    let mut text = message
        .replace("expected i64", "expected an integer")
        .replace("expected u64", "expected a non-negative integer");
    if let Some(hint) = unknown_field_hint(message) {
        text.push_str(&hint);
    }
    text
}

/// `unknown field `sytem`, expected one of `a`, `b`, …` (serde's wording for a key that is not
/// in the format) → `; did you mean `system`?`.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let best = crate::similar(field, &expected, 1).into_iter().next()?;
    Some(format!("; did you mean `{best}`?"))
}

/// Reads, parses and validates a manifest file; errors name the file.
pub fn load_manifest(path: &Path) -> Result<Manifest, ManifestError> {
    let read_err = |source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::at(
            None,
            ManifestErrorKind::TooLarge {
                max: MAX_MANIFEST_BYTES,
            },
        )
        .with_path(path));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let location = Location::from_offset(&prefix, valid);
            return Err(
                ManifestError::at(Some(location), ManifestErrorKind::NotUtf8).with_path(path),
            );
        }
    };
    parse_manifest(&text).map_err(|e| e.with_path(path))
}

impl Manifest {
    /// A version-1 manifest for `image` with every other key at its default.
    pub fn new(image: &str) -> Manifest {
        Manifest {
            manifest_version: 1,
            base: BaseSection {
                image: image.to_owned(),
            },
            ..Manifest::default()
        }
    }

    /// Where `[system] packages` lists `name` (compared after trimming, as
    /// normalization does), when the manifest was parsed from text: for
    /// errors found after resolution (e.g. a name the package index does not
    /// know) that must point at the line to fix.
    pub fn package_location(&self, name: &str) -> Option<Location> {
        let i = self.system.packages.iter().position(|p| p.trim() == name)?;
        self.positions
            .locate(self.positions.packages.get(i).copied())
    }

    /// Renders the manifest as TOML that [`parse_manifest`] reads back to an
    /// equal manifest. Formatting and comments of the original are not kept.
    pub fn to_toml_string(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "manifest_version = {}", self.manifest_version);
        let _ = write!(out, "\n[base]\nimage = {}\n", toml_string(&self.base.image));
        if !self.system.packages.is_empty() {
            let _ = write!(
                out,
                "\n[system]\npackages = {}\n",
                toml_string_array(&self.system.packages)
            );
        }
        if !self.gui.apps.is_empty() {
            let _ = write!(
                out,
                "\n[gui]\napps = {}\n",
                toml_string_array(&self.gui.apps)
            );
        }
        if self.hardware.gpu || self.hardware.audio {
            let _ = write!(
                out,
                "\n[hardware]\ngpu = {}\naudio = {}\n",
                self.hardware.gpu, self.hardware.audio
            );
        }
        if !self.mounts.is_empty() {
            out.push_str("\n[mounts]\n");
            for (label, spec) in &self.mounts {
                let _ = writeln!(out, "{} = {}", toml_string(label), toml_string(spec));
            }
        }
        let rt = &self.runtime;
        if rt.backend.is_some() || rt.network_isolation {
            out.push_str("\n[runtime]\n");
            if let Some(b) = &rt.backend {
                let _ = writeln!(out, "backend = {}", toml_string(b));
            }
            if rt.network_isolation {
                out.push_str("network_isolation = true\n");
            }
        }
        let limits = &rt.resource_limits;
        if limits.cpu_shares.is_some() || limits.memory_limit_mb.is_some() {
            out.push_str("\n[runtime.resource_limits]\n");
            if let Some(c) = limits.cpu_shares {
                let _ = writeln!(out, "cpu_shares = {c}");
            }
            if let Some(m) = limits.memory_limit_mb {
                let _ = writeln!(out, "memory_limit_mb = {m}");
            }
        }
        out
    }
}

/// A TOML basic string: `"` and `\` escaped, control characters as escapes,
/// everything else (including non-ASCII) literal.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn toml_string_array(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", parts.join(", "))
}
