//! The image servers' simplestreams index (`streams/v1/index.json` → `images.json`).
//!
//! Only the fields needed to find the newest `root.tar.xz` of one product are read; everything
//! else in these (large) documents is ignored so format additions do not break us.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Where the index lives relative to the server root.
pub const INDEX_PATH: &str = "streams/v1/index.json";
/// The item key (and `ftype`) of a rootfs tarball.
pub const ROOTFS_ITEM: &str = "root.tar.xz";

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    index: BTreeMap<String, IndexStream>,
}

#[derive(Debug, Deserialize)]
struct IndexStream {
    #[serde(default)]
    datatype: Option<String>,
    path: String,
    #[serde(default)]
    products: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Products {
    #[serde(default)]
    products: BTreeMap<String, Product>,
}

#[derive(Debug, Deserialize)]
struct Product {
    #[serde(default)]
    versions: BTreeMap<String, Version>,
}

#[derive(Debug, Deserialize)]
struct Version {
    #[serde(default)]
    items: BTreeMap<String, Item>,
}

#[derive(Debug, Deserialize)]
struct Item {
    #[serde(default)]
    ftype: Option<String>,
    path: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// The newest rootfs build of a product, as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamImage {
    /// Version key, e.g. `20260220_04:20`.
    pub build: String,
    /// Path relative to the server root, unencoded (`images/…/20260220_04:20/rootfs.tar.xz`).
    pub path: String,
    /// Lowercase hex sha256 of the archive.
    pub sha256: String,
    /// Size in bytes, when published.
    pub size: Option<u64>,
}

/// Product key: `debian:bookworm:amd64:default`.
pub fn product_key(distro: &str, release: &str, arch: &str, variant: &str) -> String {
    format!("{distro}:{release}:{arch}:{variant}")
}

/// From `index.json`, the relative path of the products file that lists `product`: the image
/// stream naming it, else any `image-downloads` stream, else `None` (the product is not indexed).
pub fn products_path(index_json: &[u8], product: &str) -> Result<Option<String>, String> {
    let index: Index = serde_json::from_slice(index_json).map_err(|e| e.to_string())?;
    let is_images = |s: &IndexStream| s.datatype.as_deref().is_none_or(|d| d == "image-downloads");
    if let Some(s) = index
        .index
        .values()
        .find(|s| is_images(s) && s.products.iter().any(|p| p == product))
    {
        return Ok(Some(s.path.clone()));
    }
    // Some mirrors omit the products list; then the one image stream is worth a look.
    Ok(index
        .index
        .values()
        .find(|s| is_images(s) && s.products.is_empty())
        .map(|s| s.path.clone()))
}

/// From a products file, the newest version of `product` that has a rootfs item with a valid
/// sha256. `Ok(None)` when the product or such a version is absent.
pub fn newest_rootfs(products_json: &[u8], product: &str) -> Result<Option<StreamImage>, String> {
    let products: Products = serde_json::from_slice(products_json).map_err(|e| e.to_string())?;
    let Some(p) = products.products.get(product) else {
        return Ok(None);
    };
    // Version keys are `YYYYMMDD_HH:MM`, so the byte-wise greatest key is the newest build.
    for (build, version) in p.versions.iter().rev() {
        let item = version.items.get(ROOTFS_ITEM).or_else(|| {
            version
                .items
                .values()
                .find(|i| i.ftype.as_deref() == Some(ROOTFS_ITEM))
        });
        let Some(item) = item else { continue };
        let Some(sha) = item.sha256.as_deref().map(str::to_ascii_lowercase) else {
            continue;
        };
        if !is_sha256_hex(&sha) {
            return Err(format!("{product} {build}: invalid sha256 '{sha}'"));
        }
        if !is_safe_relative(&item.path) {
            return Err(format!(
                "{product} {build}: unsafe item path '{}'",
                item.path
            ));
        }
        return Ok(Some(StreamImage {
            build: build.clone(),
            path: item.path.clone(),
            sha256: sha,
            size: item.size,
        }));
    }
    Ok(None)
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A server-relative path that cannot climb out of the server root.
pub(crate) fn is_safe_relative(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && !p.contains("://") && p.split('/').all(|c| c != "..")
}
