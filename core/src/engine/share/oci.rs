//! OCI registries (`oci://host[:port]/<prefix>`): an environment as an ordinary image.
//!
//! `<name>@<tag>` is the tag `<tag>` of the repository `<prefix>/<name>`. It names an image index
//! of two manifests:
//! - the **image** (platform linux/<this machine's architecture>): the base and dependency
//!   layers as uncompressed OCI layer tars (their whiteouts are already OCI's `.wh.` form), an
//!   image config whose `rootfs.diff_ids` are the same digests and whose labels carry the `env_id`
//!   — so `skopeo inspect`/`skopeo copy` and container tools handle it like any image;
//! - the **environment record** (artifact type [`RECORD_ARTIFACT`], platform unknown/unknown, as
//!   build attestations are published): its config blob is the sealed record, its layers are the
//!   lock and manifest records, every layer manifest (base, dependencies, snapshots) and the
//!   snapshots' tars.
//!
//! Every blob descriptor that stands for a store object carries `org.karapace.blake3` (its
//! object key) and every layer manifest `org.karapace.layer` (its hash), so a pull maps the
//! registry's sha256 digests back to the store's keys; pulled bytes are checked against both
//! (the client verifies sha256 as they stream, the store blake3 before publishing). The sha256
//! of a local object is computed once and cached by the store.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use karapace_oci_client::{
    BlobPush, Client, ClientOptions, Credentials, OciError, Reference as OciReference,
    RegistryHost, RepositoryName, Sha256Digest, Tag,
};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, ImageConfigurationBuilder, ImageIndex,
    ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType, Os, PlatformBuilder,
    RootFsBuilder,
};

use super::config::RemoteConfig;
use super::progress::Progress;
use super::reference::{Reference, Tagged};
use super::transport::{BlobKind, BlobSource, Remote};
use super::{Outgoing, PushReport, layer_manifest_bytes};
use crate::error::{CoreError, Result};

/// Artifact type of the environment record manifest.
pub const RECORD_ARTIFACT: &str = "application/vnd.karapace.environment.v1";
const RECORD_MEDIA: &str = "application/vnd.karapace.environment.record.v1+json";
const LOCK_MEDIA: &str = "application/vnd.karapace.lock.v1+toml";
const MANIFEST_MEDIA: &str = "application/vnd.karapace.manifest.v1+json";
const LAYER_MANIFEST_MEDIA: &str = "application/vnd.karapace.layer.v1+json";
/// Descriptor annotations.
const BLAKE3: &str = "org.karapace.blake3";
const LAYER: &str = "org.karapace.layer";
const ENV_ID: &str = "org.karapace.env_id";
/// Index annotation telling the two manifests apart.
const ROLE: &str = "org.karapace.role";
const ROLE_IMAGE: &str = "image";
const ROLE_RECORD: &str = "environment-record";
/// Username sent with a bare token (registries that take personal access tokens accept any).
const TOKEN_USER: &str = "karapace";

pub struct OciRemote {
    client: Client,
    /// The repository prefix (`oci://host/<prefix>`), possibly empty.
    prefix: Option<RepositoryName>,
    location: String,
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(oci_error)`
fn oci_error(e: OciError) -> CoreError {
    CoreError::Remote(e.to_string())
}

fn bad_name(e: impl std::fmt::Display) -> CoreError {
    CoreError::Usage(e.to_string())
}

fn other(what: &str, e: impl std::fmt::Display) -> CoreError {
    CoreError::Remote(format!("{what}: {e}"))
}

/// The credentials of a remote: `user:password`, or a bare token (sent as the password).
fn credentials(token: Option<&str>) -> Option<Credentials> {
    let token = token?;
    Some(match token.split_once(':') {
        Some((user, password)) if !user.is_empty() => Credentials::new(user, password),
        _ => Credentials::new(TOKEN_USER, token),
    })
}

impl OciRemote {
    pub fn connect(config: &RemoteConfig) -> Result<OciRemote> {
        let rest = config
            .url
            .strip_prefix("oci://")
            .ok_or_else(|| CoreError::Usage(format!("'{}' is not an oci:// URL", config.url)))?;
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let host = RegistryHost::parse(host).map_err(bad_name)?;
        let prefix = match prefix.trim_end_matches('/') {
            "" => None,
            p => Some(RepositoryName::new(p).map_err(bad_name)?),
        };
        let client = Client::new(
            host,
            ClientOptions {
                insecure: config.insecure,
                ca_file: config.ca_cert.clone(),
                credentials: credentials(config.token.as_deref()),
                ..ClientOptions::default()
            },
        )
        .map_err(oci_error)?;
        Ok(OciRemote {
            client,
            prefix,
            location: config.url.clone(),
        })
    }

    fn repository(&self, tag: &Tagged) -> Result<RepositoryName> {
        match &self.prefix {
            Some(p) => p.join(tag.name()).map_err(bad_name),
            None => RepositoryName::new(tag.name()).map_err(bad_name),
        }
    }
}

/// A descriptor with annotations.
fn descriptor(
    media: &str,
    digest: &Sha256Digest,
    size: u64,
    annotations: &[(&str, &str)],
) -> Result<Descriptor> {
    let mut b = DescriptorBuilder::default()
        .media_type(MediaType::from(media))
        .digest(digest.to_oci())
        .size(size);
    if !annotations.is_empty() {
        b = b.annotations(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<HashMap<_, _>>(),
        );
    }
    b.build().map_err(|e| other("cannot describe a blob", e))
}

/// What an upload counts as in the report.
#[derive(Clone, Copy)]
enum Count {
    Object,
    Layer,
    /// The record: sent on every push, as on protocol v1, and not counted.
    Not,
}

/// Counts of one push.
struct Uploads<'a> {
    client: &'a Client,
    repo: &'a RepositoryName,
    report: PushReport,
}

impl Uploads<'_> {
    /// Uploads unless present; counts it as an object or a layer.
    fn push(
        &mut self,
        digest: &Sha256Digest,
        len: u64,
        open: &dyn Fn() -> std::io::Result<Box<dyn Read + Send>>,
        count: Count,
    ) -> Result<()> {
        let outcome = self
            .client
            .push_blob(self.repo, digest, len, open)
            .map_err(oci_error)?;
        let uploaded = outcome == BlobPush::Uploaded;
        match (count, uploaded) {
            (Count::Layer, true) => self.report.layers_pushed += 1,
            (Count::Layer, false) => self.report.layers_skipped += 1,
            (Count::Object, true) => self.report.objects_pushed += 1,
            (Count::Object, false) => self.report.objects_skipped += 1,
            (Count::Not, _) => {}
        }
        Ok(())
    }

    /// Uploads bytes from memory; returns their descriptor.
    fn push_bytes(
        &mut self,
        media: &str,
        bytes: &[u8],
        annotations: &[(&str, &str)],
        count: Count,
    ) -> Result<Descriptor> {
        let digest = Sha256Digest::of(bytes);
        let owned = bytes.to_vec();
        self.push(
            &digest,
            bytes.len() as u64,
            &|| Ok(Box::new(Cursor::new(owned.clone())) as Box<dyn Read + Send>),
            count,
        )?;
        descriptor(media, &digest, bytes.len() as u64, annotations)
    }

    /// Uploads a store object (a layer tar); returns its descriptor.
    fn push_object(&mut self, out: &Outgoing<'_>, key: &str, layer: &str) -> Result<Descriptor> {
        let sha = out.store.object_sha256(key)?;
        let digest = Sha256Digest::parse(&format!("sha256:{sha}")).map_err(bad_name)?;
        let len = out.store.object_len(key)?;
        self.push(&digest, len, &|| out.open_object(key), Count::Object)?;
        descriptor(
            MediaType::ImageLayer.as_ref(),
            &digest,
            len,
            &[(BLAKE3, key), (LAYER, layer)],
        )
    }
}

fn put_manifest(
    client: &Client,
    repo: &RepositoryName,
    manifest: &ImageManifest,
    platform_annotations: (&str, Option<oci_spec::image::Platform>),
) -> Result<Descriptor> {
    let bytes = serde_json::to_vec(manifest).map_err(|e| other("cannot encode a manifest", e))?;
    let digest = Sha256Digest::of(&bytes);
    client
        .put_manifest(
            repo,
            &OciReference::Digest(digest.clone()),
            &MediaType::ImageManifest,
            &bytes,
        )
        .map_err(oci_error)?;
    let mut d = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(digest.to_oci())
        .size(bytes.len() as u64)
        .annotations(HashMap::from([(
            ROLE.to_string(),
            platform_annotations.0.to_string(),
        )]));
    if let Some(p) = platform_annotations.1 {
        d = d.platform(p);
    }
    d.build()
        .map_err(|e| other("cannot describe a manifest", e))
}

/// The runnable image: base and dependency layers, bottom to top, and its config.
fn push_image(
    up: &mut Uploads<'_>,
    out: &Outgoing<'_>,
    progress: &Progress,
) -> Result<ImageManifest> {
    let env = &out.env;
    // The runnable image: base and dependency layers, bottom to top.
    let mut image_layers = Vec::new();
    for m in &out.content.layers {
        progress.step(&m.tar_hash);
        image_layers.push(up.push_object(out, &m.tar_hash, &m.hash)?);
    }
    let diff_ids: Vec<String> = image_layers
        .iter()
        .map(|d| d.digest().to_string())
        .collect();
    let config = ImageConfigurationBuilder::default()
        .architecture(this_arch())
        .os(Os::Linux)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(|e| other("cannot build the image config", e))?,
        )
        .config(
            ConfigBuilder::default()
                .labels(HashMap::from([(
                    ENV_ID.to_string(),
                    env.env_id.to_string(),
                )]))
                .build()
                .map_err(|e| other("cannot build the image config", e))?,
        )
        .build()
        .map_err(|e| other("cannot build the image config", e))?;
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| other("cannot encode the image config", e))?;
    progress.step("config");
    let config_desc = up.push_bytes(
        MediaType::ImageConfig.as_ref(),
        &config_bytes,
        &[],
        Count::Object,
    )?;
    let image = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(image_layers)
        .annotations(HashMap::from([(
            ENV_ID.to_string(),
            env.env_id.to_string(),
        )]))
        .build()
        .map_err(|e| other("cannot build the image manifest", e))?;
    Ok(image)
}

/// The environment record: lock, manifest, every layer manifest, the snapshots' tars.
fn push_record(
    up: &mut Uploads<'_>,
    out: &Outgoing<'_>,
    progress: &Progress,
) -> Result<ImageManifest> {
    let env = &out.env;
    // The environment record: lock, manifest, every layer manifest, the snapshots' tars.
    let mut record_layers = Vec::new();
    progress.step(&out.lock_key);
    record_layers.push(up.push_bytes(
        LOCK_MEDIA,
        &out.lock,
        &[(BLAKE3, &out.lock_key)],
        Count::Object,
    )?);
    progress.step(&out.manifest_key);
    record_layers.push(up.push_bytes(
        MANIFEST_MEDIA,
        &out.manifest,
        &[(BLAKE3, &out.manifest_key)],
        Count::Object,
    )?);
    for m in out.layer_manifests() {
        progress.step(&m.hash);
        let bytes = layer_manifest_bytes(m)?;
        record_layers.push(up.push_bytes(
            LAYER_MANIFEST_MEDIA,
            &bytes,
            &[(LAYER, &m.hash)],
            Count::Layer,
        )?);
    }
    for m in &out.content.snapshots {
        progress.step(&m.tar_hash);
        record_layers.push(up.push_object(out, &m.tar_hash, &m.hash)?);
    }
    progress.step(&env.env_id);
    let record_desc = up.push_bytes(
        RECORD_MEDIA,
        out.record.as_bytes(),
        &[(ENV_ID, &env.env_id)],
        Count::Not,
    )?;
    let record = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::from(RECORD_ARTIFACT))
        .config(record_desc)
        .layers(record_layers)
        .annotations(HashMap::from([(
            ENV_ID.to_string(),
            env.env_id.to_string(),
        )]))
        .build()
        .map_err(|e| other("cannot build the record manifest", e))?;
    Ok(record)
}

fn this_arch() -> Arch {
    match std::env::consts::ARCH {
        "x86_64" => Arch::Amd64,
        "aarch64" => Arch::ARM64,
        "x86" => Arch::i386,
        "arm" => Arch::ARM,
        other => Arch::from(other),
    }
}

impl Remote for OciRemote {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn push(&self, out: &Outgoing<'_>, tag: Option<&Tagged>) -> Result<PushReport> {
        let tag = tag.ok_or_else(|| {
            CoreError::Remote(format!(
                "{}: an OCI registry keeps environments under tags: pass --tag <name>@<tag>",
                self.location
            ))
        })?;
        let repo = self.repository(tag)?;
        let oci_tag = Tag::new(tag.tag()).map_err(bad_name)?;
        let env = &out.env;
        let progress = Progress::new(
            "pushing",
            &env.short_id,
            out.content.objects().len()
                + out.content.layers.len()
                + out.content.snapshots.len()
                + 5,
        );
        let mut up = Uploads {
            client: &self.client,
            repo: &repo,
            report: PushReport {
                env_id: env.env_id.to_string(),
                tag: Some(tag.to_string()),
                ..PushReport::default()
            },
        };

        let image = push_image(&mut up, out, &progress)?;
        let record = push_record(&mut up, out, &progress)?;
        let platform = PlatformBuilder::default()
            .architecture(this_arch())
            .os(Os::Linux)
            .build()
            .map_err(|e| other("cannot describe the platform", e))?;
        let unknown = PlatformBuilder::default()
            .architecture(Arch::Other("unknown".into()))
            .os(Os::Other("unknown".into()))
            .build()
            .map_err(|e| other("cannot describe the platform", e))?;
        let image_desc = put_manifest(&self.client, &repo, &image, (ROLE_IMAGE, Some(platform)))?;
        let record_manifest_desc =
            put_manifest(&self.client, &repo, &record, (ROLE_RECORD, Some(unknown)))?;
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![image_desc, record_manifest_desc])
            .annotations(HashMap::from([(
                ENV_ID.to_string(),
                env.env_id.to_string(),
            )]))
            .build()
            .map_err(|e| other("cannot build the image index", e))?;
        let index_bytes =
            serde_json::to_vec(&index).map_err(|e| other("cannot encode the index", e))?;
        self.client
            .put_manifest(
                &repo,
                &OciReference::Tag(oci_tag),
                &MediaType::ImageIndex,
                &index_bytes,
            )
            .map_err(oci_error)?;
        progress.finish();
        Ok(up.report)
    }

    fn open(&self, reference: &Reference) -> Result<(String, Box<dyn BlobSource + '_>)> {
        let tag = match reference {
            Reference::Tagged(tag) => tag,
            Reference::EnvId(_) => {
                return Err(CoreError::Remote(format!(
                    "{}: an OCI registry finds environments by <name>@<tag>, not by env_id",
                    self.location
                )));
            }
        };
        let repo = self.repository(tag)?;
        let oci_tag = Tag::new(tag.tag()).map_err(bad_name)?;
        let index = match self.client.get_manifest(
            &repo,
            &OciReference::Tag(oci_tag),
            &[MediaType::ImageIndex],
        ) {
            Ok(m) => m,
            Err(e) if e.is_not_found() => {
                return Err(CoreError::Remote(format!(
                    "{}: no environment is tagged '{tag}'",
                    self.location
                )));
            }
            Err(e) => return Err(oci_error(e)),
        };
        let not_ours = |why: &str| {
            CoreError::Remote(format!(
                "{}: '{tag}' is not a Karapace environment ({why})",
                self.location
            ))
        };
        let index = ImageIndex::from_reader(index.bytes.as_slice())
            .map_err(|e| not_ours(&format!("not an image index: {e}")))?;
        let manifest_of = |role: &str| -> Result<ImageManifest> {
            let d = index
                .manifests()
                .iter()
                .find(|d| {
                    d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(ROLE))
                        .is_some_and(|r| r == role)
                })
                .ok_or_else(|| not_ours(&format!("no {role} manifest")))?;
            let digest =
                Sha256Digest::parse(d.digest().as_ref()).map_err(|e| not_ours(&e.to_string()))?;
            let (m, _) = self
                .client
                .get_image_manifest(&repo, &OciReference::Digest(digest))
                .map_err(oci_error)?;
            Ok(m)
        };
        let record = manifest_of(ROLE_RECORD)?;
        let image = manifest_of(ROLE_IMAGE)?;
        if record
            .artifact_type()
            .as_ref()
            .map(ToString::to_string)
            .as_deref()
            != Some(RECORD_ARTIFACT)
        {
            return Err(not_ours("the record manifest has another artifact type"));
        }
        let env_id = record
            .config()
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ENV_ID))
            .filter(|id| karapace_store::is_valid_key(id))
            .cloned()
            .ok_or_else(|| not_ours("the record names no env_id"))?;
        let mut blobs = HashMap::new();
        let mut add = |kind: BlobKind, key: &str, d: &Descriptor| -> Result<()> {
            let digest =
                Sha256Digest::parse(d.digest().as_ref()).map_err(|e| not_ours(&e.to_string()))?;
            blobs.insert((kind, key.to_string()), (digest, d.size()));
            Ok(())
        };
        add(BlobKind::Metadata, &env_id, record.config())?;
        for d in record.layers().iter().chain(image.layers()) {
            let Some(a) = d.annotations() else { continue };
            if d.media_type().as_ref() == LAYER_MANIFEST_MEDIA {
                if let Some(hash) = a.get(LAYER) {
                    add(BlobKind::Layer, hash, d)?;
                }
            } else if let Some(key) = a.get(BLAKE3) {
                add(BlobKind::Object, key, d)?;
            }
        }
        Ok((
            env_id,
            Box::new(OciSource {
                client: &self.client,
                repo,
                blobs,
                location: self.location.clone(),
            }),
        ))
    }
}

/// The blobs of one environment in a registry, by the store's keys.
struct OciSource<'a> {
    client: &'a Client,
    repo: RepositoryName,
    blobs: HashMap<(BlobKind, String), (Sha256Digest, u64)>,
    location: String,
}

impl BlobSource for OciSource<'_> {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn get(&self, kind: BlobKind, key: &str) -> Result<Option<Box<dyn Read + Send>>> {
        let Some((digest, size)) = self.blobs.get(&(kind, key.to_string())) else {
            return Ok(None);
        };
        match self.client.get_blob(&self.repo, digest, Some(*size)) {
            Ok(reader) => Ok(Some(Box::new(reader))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(oci_error(e)),
        }
    }

    fn verified_sha256(&self, kind: BlobKind, key: &str) -> Option<String> {
        // Only called after the whole blob was read: the reader checked this digest at its end.
        self.blobs
            .get(&(kind, key.to_string()))
            .map(|(digest, _)| digest.hex().to_string())
    }
}
