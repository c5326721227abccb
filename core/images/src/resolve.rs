//! From an image string to the URL of one concrete rootfs archive (and its expected checksum).

use tracing::debug;

use crate::alias::{Distro, ImageRef, parse_image_ref_with};
use crate::cache::ImageCache;
use crate::config::{ImageConfig, TransferOptions};
use crate::error::{ImageError, Result};
use crate::listing;
use crate::simplestreams::{self, INDEX_PATH};
use crate::transport::Transport;
use crate::url;

/// Image variant directory used on the servers.
pub const VARIANT: &str = "default";
/// File name of the rootfs archive in a build directory.
pub const ROOTFS_FILE: &str = "rootfs.tar.xz";
/// Bound on index/listing documents (the public `images.json` is a few MiB).
const DOC_LIMIT: u64 = 64 * 1024 * 1024;

/// How a [`ResolvedImage`] was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Newest build from the server's simplestreams index (checksum from the index).
    Simplestreams,
    /// Newest build from the `…/default/` directory listing (checksum from `SHA256SUMS` if any).
    DirectoryListing,
    /// The image was already an explicit URL.
    ExplicitUrl,
    /// `--offline`: the alias's last successful resolution, from the image cache.
    Cache,
}

/// One concrete archive to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The image string as given (trimmed).
    pub image: String,
    /// URL of the rootfs archive; what `pin` writes into the manifest.
    pub url: String,
    /// Lowercase hex sha256 the archive must have, when known. Callers holding a lock file may set
    /// it from `base_image_digest` to insist on exactly the locked image.
    pub expected_sha256: Option<String>,
    /// Build directory name (`20260220_04:20`) for server images.
    pub build: Option<String>,
    pub resolution: Resolution,
    /// Network settings for the fetch.
    pub transfer: TransferOptions,
    /// Cache key for the alias (`<server>|<distro>/<release>|<arch>`), so `--offline` can map the
    /// alias back to this URL later.
    pub(crate) alias_key: Option<String>,
}

/// Resolves `image` (alias or URL) against `cfg`. With `cfg.offline`, aliases are answered from
/// the image cache only and nothing touches the network.
pub fn resolve(image: &str, cfg: &ImageConfig) -> Result<ResolvedImage> {
    match parse_image_ref_with(image, &cfg.user_aliases)? {
        ImageRef::Url(u) => Ok(ResolvedImage {
            image: u.clone(),
            url: u,
            expected_sha256: None,
            build: None,
            resolution: Resolution::ExplicitUrl,
            transfer: cfg.transfer,
            alias_key: None,
        }),
        ImageRef::Alias(d) => {
            let key = alias_key(&cfg.server, &d, &cfg.arch);
            if cfg.offline {
                let cache = ImageCache::new(&cfg.cache_dir);
                let entry = cache.alias(&key)?.ok_or_else(|| ImageError::NotCached {
                    what: format!(
                        "image '{}' ({} for {} from {})",
                        image.trim(),
                        d.path(),
                        cfg.arch,
                        cfg.server
                    ),
                })?;
                return Ok(ResolvedImage {
                    image: image.trim().to_string(),
                    url: entry.url,
                    expected_sha256: Some(entry.sha256),
                    build: entry.build,
                    resolution: Resolution::Cache,
                    transfer: cfg.transfer,
                    alias_key: Some(key),
                });
            }
            let mut r = resolve_on_server(&d, cfg)?;
            r.image = image.trim().to_string();
            r.alias_key = Some(key);
            Ok(r)
        }
    }
}

/// `pin`: the explicit URL of the newest build's rootfs for `image` (an URL is returned as is).
pub fn pin_url(image: &str, cfg: &ImageConfig) -> Result<String> {
    Ok(resolve(image, cfg)?.url)
}

fn alias_key(server: &str, d: &Distro, arch: &str) -> String {
    format!("{server}|{}|{arch}", d.path())
}

fn resolve_on_server(d: &Distro, cfg: &ImageConfig) -> Result<ResolvedImage> {
    let transport = Transport::new(cfg.transfer);
    if let Some(found) = from_simplestreams(&transport, d, cfg)? {
        return Ok(found);
    }
    from_listing(&transport, d, cfg)
}

/// `Ok(None)` when the server has no index or the index does not know the product; a malformed
/// index is an error (it is the checksum source we were promised, so do not silently skip it).
fn from_simplestreams(
    t: &Transport,
    d: &Distro,
    cfg: &ImageConfig,
) -> Result<Option<ResolvedImage>> {
    let index_url = url::join(&cfg.server, INDEX_PATH);
    let Some(index) = t.get_optional(&index_url, DOC_LIMIT)? else {
        debug!(%index_url, "no simplestreams index; using the directory listing");
        return Ok(None);
    };
    let product = simplestreams::product_key(&d.distro, &d.release, &cfg.arch, VARIANT);
    let bad = |url: &str, message: String| ImageError::Simplestreams {
        url: url.to_string(),
        message,
    };
    let Some(products_rel) =
        simplestreams::products_path(&index, &product).map_err(|m| bad(&index_url, m))?
    else {
        debug!(%product, "product not in the simplestreams index");
        return Ok(None);
    };
    if !simplestreams::is_safe_relative(&products_rel) {
        return Err(bad(
            &index_url,
            format!("unsafe products path '{products_rel}'"),
        ));
    }
    let products_url = url::join(&cfg.server, &url::encode_path(&products_rel));
    let Some(products) = t.get_optional(&products_url, DOC_LIMIT)? else {
        return Err(bad(
            &products_url,
            "listed in the index but missing".to_string(),
        ));
    };
    let Some(img) =
        simplestreams::newest_rootfs(&products, &product).map_err(|m| bad(&products_url, m))?
    else {
        debug!(%product, "no rootfs build in the products file");
        return Ok(None);
    };
    Ok(Some(ResolvedImage {
        image: String::new(),
        url: url::join(&cfg.server, &url::encode_path(&img.path)),
        expected_sha256: Some(img.sha256),
        build: Some(img.build),
        resolution: Resolution::Simplestreams,
        transfer: cfg.transfer,
        alias_key: None,
    }))
}

fn from_listing(t: &Transport, d: &Distro, cfg: &ImageConfig) -> Result<ResolvedImage> {
    let dir_rel = format!(
        "images/{}/{}/{}/{VARIANT}",
        url::encode_segment(&d.distro),
        url::encode_segment(&d.release),
        url::encode_segment(&cfg.arch)
    );
    let dir_url = url::join(&cfg.server, &dir_rel);
    let build = match url::file_path(&dir_url) {
        Some(dir) => newest_build_in_dir(&dir)?,
        None => t
            .get_optional(&format!("{dir_url}/"), DOC_LIMIT)?
            .and_then(|html| listing::newest_build(&String::from_utf8_lossy(&html))),
    };
    let Some(build) = build else {
        return Err(ImageError::NoBuild {
            image: d.path(),
            arch: cfg.arch.clone(),
            server: cfg.server.clone(),
        });
    };
    let build_url = format!("{dir_url}/{}", url::encode_segment(&build));
    let sums = t.get_optional(&format!("{build_url}/SHA256SUMS"), 1024 * 1024)?;
    let expected =
        sums.and_then(|s| listing::sha256_from_sums(&String::from_utf8_lossy(&s), ROOTFS_FILE));
    Ok(ResolvedImage {
        image: String::new(),
        url: format!("{build_url}/{ROOTFS_FILE}"),
        expected_sha256: expected,
        build: Some(build),
        resolution: Resolution::DirectoryListing,
        transfer: cfg.transfer,
        alias_key: None,
    })
}

fn newest_build_in_dir(dir: &std::path::Path) -> Result<Option<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImageError::io(dir, e)),
    };
    let mut newest: Option<String> = None;
    for entry in entries {
        let entry = entry.map_err(|e| ImageError::io(dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if listing::is_build_name(&name)
            && entry.path().is_dir()
            && newest.as_ref().is_none_or(|n| name > *n)
        {
            newest = Some(name);
        }
    }
    Ok(newest)
}
