//! Fetching a resolved image into the cache: download, hash while writing, verify, then publish.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::cache::{CachedImage, ImageCache};
use crate::error::{ImageError, Result};
use crate::resolve::ResolvedImage;
use crate::transport::Transport;

/// Returns the verified archive for `resolved`, downloading it unless the cache already has it.
///
/// * A cached blob is re-hashed before use; a corrupt one is dropped (and re-downloaded online).
/// * When `resolved.expected_sha256` is set, the bytes must match it — from the cache or the
///   network. A mismatching download leaves nothing behind in the cache.
/// * `offline`: never touches the network; a miss is [`ImageError::NotCached`].
pub fn fetch(resolved: &ResolvedImage, cache: &ImageCache, offline: bool) -> Result<CachedImage> {
    if let Some(hit) = cached(resolved, cache, offline)? {
        record(resolved, cache, &hit)?;
        return Ok(hit);
    }
    if offline {
        return Err(ImageError::NotCached {
            what: format!("image {}", resolved.url),
        });
    }
    let image = download(resolved, cache)?;
    record(resolved, cache, &image)?;
    Ok(image)
}

fn cached(
    resolved: &ResolvedImage,
    cache: &ImageCache,
    offline: bool,
) -> Result<Option<CachedImage>> {
    // Content we already know the hash of may be in the cache under another URL or alias.
    let candidate = match &resolved.expected_sha256 {
        Some(sha) => cache.lookup_sha256(sha, &resolved.url),
        None => cache.lookup_url(&resolved.url)?,
    };
    let Some(hit) = candidate else {
        return Ok(None);
    };
    match cache.verify(&hit) {
        Ok(()) => {
            debug!(url = %resolved.url, digest = %hit.digest, "image cache hit");
            Ok(Some(hit))
        }
        Err(e @ ImageError::CacheCorrupt { .. }) if !offline => {
            warn!("{e}; downloading again");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn record(resolved: &ResolvedImage, cache: &ImageCache, image: &CachedImage) -> Result<()> {
    let alias = resolved
        .alias_key
        .as_deref()
        .map(|k| (k, resolved.build.as_deref()));
    cache.record(&resolved.url, image.sha256_hex(), image.size, alias)
}

fn download(resolved: &ResolvedImage, cache: &ImageCache) -> Result<CachedImage> {
    let url = &resolved.url;
    let transport = Transport::new(resolved.transfer);
    let mut body = transport.open(url)?;
    // The partial file is deleted when dropped: on every early return below, and on unwinding.
    let mut partial = cache.new_partial()?;
    let progress = progress_bar(resolved.transfer.progress, body.len, &resolved.image);
    let mut hasher = Sha256::new();
    let partial_path = partial.path().to_path_buf();
    let file = partial.as_file_mut();
    let size = body.for_each_chunk(|chunk| {
        hasher.update(chunk);
        file.write_all(chunk)
            .map_err(|e| ImageError::io(&partial_path, e))?;
        if let Some(p) = &progress {
            p.inc(chunk.len() as u64);
        }
        Ok(())
    });
    if let Some(p) = &progress {
        p.finish_and_clear();
    }
    let size = size?;
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = &resolved.expected_sha256
        && *expected != actual
    {
        return Err(ImageError::ChecksumMismatch {
            url: url.clone(),
            expected: expected.clone(),
            actual,
        });
    }
    let path = cache.commit_partial(partial, &actual)?;
    debug!(%url, digest = %actual, size, "image downloaded");
    Ok(CachedImage {
        path,
        digest: format!("sha256:{actual}"),
        size,
        url: url.clone(),
    })
}

/// A byte progress bar on stderr, only when asked for and stderr is a terminal (stdout is for
/// results and must stay clean).
fn progress_bar(wanted: bool, len: Option<u64>, image: &str) -> Option<ProgressBar> {
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if len.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("downloading {image}"));
    Some(bar)
}
