//! A blocking, streaming client of the OCI distribution API: what Karapace uses to keep
//! environments in any registry (CNCF distribution, Harbor, Quay, GHCR, Zot) as ordinary images.
//!
//! It moves blobs and manifests and lists tags; what an environment looks like as an image is
//! decided by the crate above it. Everything it receives is checked: blob bytes against their
//! sha256 while they stream (memory stays bounded whatever their size), manifests against their
//! digest and a size cap, names against the OCI grammar before any request is made.
//!
//! # Pushing an image
//!
//! A config blob, one layer and the manifest that ties them together:
//!
//! ```no_run
//! use karapace_oci_client::{
//!     Client, ClientOptions, Credentials, Reference, RegistryHost, RepositoryName, Sha256Digest,
//! };
//! use oci_spec::image::{DescriptorBuilder, ImageManifestBuilder, MediaType};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(
//!     RegistryHost::parse("registry.example.com")?,
//!     ClientOptions {
//!         credentials: Some(Credentials::new("alice", "app-password")),
//!         ..ClientOptions::default()
//!     },
//! )?;
//! let repo = RepositoryName::new("team/dev-env")?;
//!
//! // A layer streamed from a file: the opener is called again if the upload is retried.
//! let layer_path = std::path::Path::new("layer.tar");
//! let layer_len = std::fs::metadata(layer_path)?.len();
//! let layer_digest = Sha256Digest::parse("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")?;
//! client.push_blob(&repo, &layer_digest, layer_len, || std::fs::File::open(layer_path))?;
//!
//! // A small config from memory.
//! let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
//! let config_digest = Sha256Digest::of(config);
//! client.push_blob(&repo, &config_digest, config.len() as u64, || Ok(&config[..]))?;
//!
//! let manifest = ImageManifestBuilder::default()
//!     .schema_version(2u32)
//!     .media_type(MediaType::ImageManifest)
//!     .config(DescriptorBuilder::default()
//!         .media_type(MediaType::ImageConfig)
//!         .digest(config_digest.to_oci())
//!         .size(config.len() as u64)
//!         .build()?)
//!     .layers(vec![DescriptorBuilder::default()
//!         .media_type(MediaType::ImageLayer)
//!         .digest(layer_digest.to_oci())
//!         .size(layer_len)
//!         .build()?])
//!     .build()?;
//! let digest = client.put_image_manifest(&repo, &Reference::parse("v1")?, &manifest)?;
//! println!("pushed {repo}@{digest}");
//! # Ok(()) }
//! ```
//!
//! # What it never does
//! - paste a repository, tag, digest or media type into a URL or header unvalidated;
//! - follow a registry from HTTPS down to plain HTTP, or use plain HTTP to a host that is
//!   neither loopback nor marked `insecure`;
//! - send credentials or tokens anywhere but the registry's own origin and its token realm, or
//!   put them in logs and errors;
//! - hand over blob or manifest bytes without checking them against their digest, or complete
//!   an upload whose source does not match its digest;
//! - panic on what a registry sends.

mod auth;
mod blob_read;
mod blob_upload;
mod challenge;
mod client;
mod digest;
mod error;
mod exchange;
mod manifest;
mod names;
mod options;
mod registry;
mod retry;
mod tags;
mod tls;
mod transport;
mod url_policy;

#[cfg(feature = "test-registry")]
pub mod testing;

pub use blob_read::BlobReader;
pub use blob_upload::{BlobPush, MountOutcome};
pub use client::Client;
pub use digest::Sha256Digest;
pub use error::{OciError, RegistryError, RegistryErrors, Result, Subject};
pub use manifest::FetchedManifest;
pub use names::{NameError, NameKind, Reference, RepositoryName, Tag};
pub use options::{ClientOptions, Credentials, DEFAULT_MAX_MANIFEST_SIZE, RetryPolicy};
pub use registry::RegistryHost;

/// The `oci-spec` version this crate's types come from, for callers building manifests.
pub use oci_spec;
