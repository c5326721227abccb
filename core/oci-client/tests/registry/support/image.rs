//! Small but real OCI images for the tests: tar layers, an image config with matching
//! `diff_ids`, a manifest, and the OCI layout directory `skopeo` reads.

use std::path::Path;

use karapace_oci_client::oci_spec::image::{
    Arch, DescriptorBuilder, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifest,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use karapace_oci_client::{Client, Reference, RepositoryName, Sha256Digest};

/// An image whose blobs are held in memory.
pub struct TestImage {
    pub layers: Vec<Vec<u8>>,
    pub config: Vec<u8>,
    pub manifest: ImageManifest,
    pub manifest_bytes: Vec<u8>,
}

impl TestImage {
    /// An image of gzip-compressed tar layers (what registries and `skopeo` keep as they
    /// are), one per entry of `layers` (`(path, contents)` files each).
    pub fn new(layers: &[&[(&str, &[u8])]]) -> TestImage {
        let tars: Vec<Vec<u8>> = layers.iter().map(|files| tar_layer(files)).collect();
        let diff_ids = tars
            .iter()
            .map(|l| Sha256Digest::of(l).to_string())
            .collect::<Vec<_>>();
        let layers: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t)).collect();
        let config = ImageConfigurationBuilder::default()
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(diff_ids)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(
                DescriptorBuilder::default()
                    .media_type(MediaType::ImageConfig)
                    .digest(Sha256Digest::of(&config).to_oci())
                    .size(config.len() as u64)
                    .build()
                    .unwrap(),
            )
            .layers(
                layers
                    .iter()
                    .map(|l| {
                        DescriptorBuilder::default()
                            .media_type(MediaType::ImageLayerGzip)
                            .digest(Sha256Digest::of(l).to_oci())
                            .size(l.len() as u64)
                            .build()
                            .unwrap()
                    })
                    .collect::<Vec<_>>(),
            )
            .build()
            .unwrap();
        let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
        TestImage {
            layers,
            config,
            manifest,
            manifest_bytes,
        }
    }

    /// A two-layer image whose contents are unique to `seed`.
    pub fn sample(seed: &str) -> TestImage {
        let base = format!("base of {seed}\n");
        let app = format!("app of {seed}\n");
        TestImage::new(&[
            &[("etc/base.txt", base.as_bytes())],
            &[("usr/bin/app", app.as_bytes()), ("etc/app.conf", b"x=1\n")],
        ])
    }

    pub fn layer_digests(&self) -> Vec<Sha256Digest> {
        self.layers.iter().map(|l| Sha256Digest::of(l)).collect()
    }

    pub fn config_digest(&self) -> Sha256Digest {
        Sha256Digest::of(&self.config)
    }

    pub fn manifest_digest(&self) -> Sha256Digest {
        Sha256Digest::of(&self.manifest_bytes)
    }

    /// Pushes every blob, then the manifest under `tag`; returns the manifest digest.
    pub fn push(&self, client: &Client, repo: &RepositoryName, tag: &str) -> Sha256Digest {
        for blob in self.layers.iter().chain(std::iter::once(&self.config)) {
            client
                .push_blob(repo, &Sha256Digest::of(blob), blob.len() as u64, || {
                    Ok(blob.as_slice())
                })
                .unwrap();
        }
        client
            .put_manifest(
                repo,
                &Reference::parse(tag).unwrap(),
                &MediaType::ImageManifest,
                &self.manifest_bytes,
            )
            .unwrap()
    }

    /// Writes the image as an OCI layout directory (`oci-layout`, `index.json`, `blobs/`),
    /// its manifest named `tag`.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for blob in self
            .layers
            .iter()
            .chain([&self.config, &self.manifest_bytes])
        {
            std::fs::write(blobs.join(Sha256Digest::of(blob).hex()), blob).unwrap();
        }
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![
                DescriptorBuilder::default()
                    .media_type(MediaType::ImageManifest)
                    .digest(self.manifest_digest().to_oci())
                    .size(self.manifest_bytes.len() as u64)
                    .annotations(
                        [(
                            "org.opencontainers.image.ref.name".to_string(),
                            tag.to_string(),
                        )]
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                    )
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }
}

/// A deterministic tar archive of regular files.
pub fn tar_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *contents).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Deterministic gzip (no name, no timestamp).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, data).unwrap();
    encoder.finish().unwrap()
}

/// Reads a blob whole through the client's verifying reader.
pub fn fetch_blob(client: &Client, repo: &RepositoryName, digest: &Sha256Digest) -> Vec<u8> {
    let mut reader = client.get_blob(repo, digest, None).unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
    out
}

pub fn repo(name: &str) -> RepositoryName {
    RepositoryName::new(name).unwrap()
}

pub fn tag(name: &str) -> Reference {
    Reference::parse(name).unwrap()
}
