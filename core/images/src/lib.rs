//! Base images: aliases, image servers, download, verification, cache and extraction.
//!
//! The flow the CLI drives:
//! ```no_run
//! # fn main() -> Result<(), karapace_images::ImageError> {
//! use karapace_images::{ImageCache, ImageConfig, extract, fetch, resolve};
//! let cfg = ImageConfig::load()?;                       // server, arch, cache dir
//! let resolved = resolve("debian/bookworm", &cfg)?;    // newest build, expected sha256
//! let cache = ImageCache::new(&cfg.cache_dir);
//! let image = fetch(&resolved, &cache, cfg.offline)?;  // verified, content-addressed
//! println!("base_image_digest = {}", image.digest);    // sha256:<hex of the archive>
//! extract(&image, std::path::Path::new("/tmp/rootfs"))?;
//! # Ok(()) }
//! ```
//! See `docs/images.md` for the user-facing rules.

#![forbid(unsafe_code)]

pub mod alias;
pub mod arch;
pub mod cache;
pub mod config;
pub mod download;
pub mod error;
pub mod extract;
pub mod listing;
pub mod resolve;
pub mod simplestreams;
mod transport;
mod url;

#[cfg(feature = "test-server")]
pub mod testing;

pub use alias::{
    ALIASES, Distro, ImageRef, UserAlias, alias_target, is_pinned_url, parse_image_ref,
    parse_image_ref_with,
};
pub use arch::{host_arch, map_machine_arch};
pub use cache::{CachedImage, ImageCache, sha256_file};
pub use config::{
    ALIASES_CONFIG_KEY, DEFAULT_SERVER, ImageConfig, SERVER_ENV, TransferOptions,
    archive_limits_from, default_cache_dir, server_from, user_aliases_from,
};
pub use download::fetch;
pub use error::ImageError;
pub use extract::{
    Compression, ExtractOptions, ExtractReport, detect_compression, extract, extract_archive,
    extract_archive_with, extract_with, extract_with_worker,
};
pub use karapace_tar::ArchiveLimits;
pub use resolve::{Resolution, ResolvedImage, pin_url, resolve};

/// `--require-pinned-image` / `pin --check`: the manifest's image must be an explicit http(s) URL.
pub fn require_pinned_image(image: &str) -> bool {
    is_pinned_url(image)
}
