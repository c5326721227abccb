//! `pin`: rewrite `base.image` to the explicit URL of the image's newest build.

use std::path::Path;

use crate::cli::Ctx;
use crate::engine::BuildRequest;
use crate::error::{CoreError, Result};
use crate::{files, output};

pub fn run(ctx: &Ctx, manifest: &Path, check: bool, write_lock: bool) -> Result<i32> {
    let normalized = karapace_schema::load_manifest(manifest)?.normalize()?;
    let image = normalized.base_image.clone();
    let pinned = karapace_images::is_pinned_url(&image);
    if check && !pinned {
        return Err(CoreError::Refused(format!(
            "base image '{image}' is not pinned to an http(s) URL"
        )));
    }
    let url = if pinned {
        image
    } else {
        let cfg = karapace_images::ImageConfig::load()?;
        let url = karapace_images::pin_url(&image, &cfg)?;
        let text = std::fs::read_to_string(manifest)
            .map_err(|e| CoreError::io(format!("cannot read {}", manifest.display()), e))?;
        let rewritten = karapace_schema::rewrite_base_image(&text, &url)?;
        files::write_atomic(manifest, &rewritten)?;
        url
    };
    if write_lock && !check {
        ctx.engine.build(&BuildRequest {
            manifest: manifest.to_path_buf(),
            name: None,
            locked: false,
            offline: false,
            require_pinned_image: false,
        })?;
    }
    if ctx.json() {
        output::json(
            &serde_json::json!({"base_image": url, "manifest": manifest.display().to_string(), "status": "pinned"}),
        )?;
    } else {
        output::line(&format!("pinned base image in {}", manifest.display()))?;
        output::note(&format!("base image: {url}"));
    }
    Ok(0)
}
