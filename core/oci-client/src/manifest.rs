//! Manifests: `PUT` and `GET` by tag or digest, size-capped and digest-checked both ways.

use oci_spec::image::{ImageManifest, MediaType};
use ureq::http::{HeaderValue, Method, header};

use crate::auth::Scopes;
use crate::client::Client;
use crate::digest::Sha256Digest;
use crate::error::{OciError, Result, Subject};
use crate::exchange::{Body, Request};
use crate::names::{NameError, NameKind, Reference, RepositoryName};
use crate::transport::header_str;

/// Docker's manifest types, which registries still serve for most images.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The registry's `Content-Type`, one of those asked for.
    pub media_type: MediaType,
    /// Exactly the bytes whose digest is `digest`.
    pub bytes: Vec<u8>,
    pub digest: Sha256Digest,
}

impl Client {
    /// Stores `bytes` as a manifest of type `media_type` under `reference` and returns its
    /// digest. Refuses (without a request) a manifest over the size limit, and a digest
    /// reference the bytes do not hash to; refuses a registry answer that reports another
    /// digest.
    pub fn put_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        media_type: &MediaType,
        bytes: &[u8],
    ) -> Result<Sha256Digest> {
        let subject = Subject::Manifest {
            repository: repository.clone(),
            reference: reference.clone(),
        };
        let content_type = header_media_type(media_type)?;
        let limit = self.options.max_manifest_size;
        if bytes.len() as u64 > limit {
            return Err(OciError::TooLarge {
                registry: self.transport.registry(),
                subject: subject.into(),
                limit,
            });
        }
        let digest = Sha256Digest::of(bytes);
        if let Some(wanted) = reference.digest()
            && *wanted != digest
        {
            return Err(OciError::SourceMismatch {
                subject: subject.into(),
                problem: format!("hashes to {digest}"),
            });
        }
        let scopes = Scopes::push(repository);
        let response = self.exchange(Request {
            method: Method::PUT,
            url: self.repository_url(repository, &format!("manifests/{reference}"))?,
            headers: vec![(header::CONTENT_TYPE, content_type)],
            body: Body::Bytes(bytes),
            scopes: Some(&scopes),
            subject: &subject,
            // Storing the same bytes under the same reference twice changes nothing.
            idempotent: true,
            follow_redirects: false,
        })?;
        match response.status().as_u16() {
            200..=299 => {
                self.check_digest_header(&response, &digest, &subject)?;
                Ok(digest)
            }
            _ => Err(self
                .transport
                .status_error(&Method::PUT, response, &subject)),
        }
    }

    /// Fetches the manifest `reference`, asking for `accept` (empty: OCI and Docker image
    /// manifests and indexes). Refuses a manifest over the size limit, an answer of another
    /// media type than those asked for, bytes that do not hash to a digest reference, and a
    /// `Docker-Content-Digest` that contradicts the bytes. A missing manifest is
    /// [`OciError::NotFound`].
    pub fn get_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        accept: &[MediaType],
    ) -> Result<FetchedManifest> {
        let subject = Subject::Manifest {
            repository: repository.clone(),
            reference: reference.clone(),
        };
        let accepted: Vec<MediaType> = if accept.is_empty() {
            vec![
                MediaType::ImageManifest,
                MediaType::ImageIndex,
                MediaType::from(DOCKER_MANIFEST),
                MediaType::from(DOCKER_MANIFEST_LIST),
            ]
        } else {
            accept.to_vec()
        };
        let accept_header = accepted
            .iter()
            .map(|m| header_media_type(m).map(|_| m.to_string()))
            .collect::<Result<Vec<_>>>()?
            .join(", ");
        let accept_header = HeaderValue::from_str(&accept_header).map_err(|_| {
            NameError::new(
                NameKind::MediaType,
                &accept_header,
                "not usable in a header",
            )
        })?;
        let scopes = Scopes::pull(repository);
        let response = self.exchange(Request {
            method: Method::GET,
            url: self.repository_url(repository, &format!("manifests/{reference}"))?,
            headers: vec![(header::ACCEPT, accept_header)],
            body: Body::Empty,
            scopes: Some(&scopes),
            subject: &subject,
            idempotent: true,
            follow_redirects: true,
        })?;
        if response.status().as_u16() != 200 {
            return Err(self
                .transport
                .status_error(&Method::GET, response, &subject));
        }
        let served = header_str(&response, "content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        let announced = header_str(&response, "docker-content-digest")
            .and_then(|v| Sha256Digest::parse(v.trim()).ok());
        let bytes =
            self.transport
                .read_limited(response, self.options.max_manifest_size, &subject)?;
        let digest = Sha256Digest::of(&bytes);
        let expected = reference.digest().or(announced.as_ref());
        if expected.is_some_and(|e| *e != digest) {
            return Err(OciError::DigestMismatch {
                registry: self.transport.registry(),
                subject: subject.into(),
                actual: digest,
            });
        }
        let served = match served {
            Some(served) if !served.is_empty() => served,
            _ => embedded_media_type(&bytes)
                .ok_or_else(|| self.protocol(&subject, "a manifest without a media type"))?,
        };
        let Some(media_type) = accepted
            .iter()
            .find(|m| m.to_string().eq_ignore_ascii_case(&served))
        else {
            return Err(self.protocol(
                &subject,
                format!(
                    "a manifest of type {:?}, which was not asked for",
                    crate::error::sanitize(&served)
                ),
            ));
        };
        Ok(FetchedManifest {
            media_type: media_type.clone(),
            bytes,
            digest,
        })
    }

    /// [`Client::put_manifest`] of an OCI image manifest (serialised by `oci-spec`).
    pub fn put_image_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        manifest: &ImageManifest,
    ) -> Result<Sha256Digest> {
        let bytes = serde_json::to_vec(manifest).map_err(|e| OciError::SourceMismatch {
            subject: Box::new(Subject::Manifest {
                repository: repository.clone(),
                reference: reference.clone(),
            }),
            problem: format!("cannot be serialised: {e}"),
        })?;
        let media_type = manifest
            .media_type()
            .clone()
            .unwrap_or(MediaType::ImageManifest);
        self.put_manifest(repository, reference, &media_type, &bytes)
    }

    /// [`Client::get_manifest`] of an OCI image manifest, parsed by `oci-spec`, with its digest.
    pub fn get_image_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<(ImageManifest, Sha256Digest)> {
        let fetched = self.get_manifest(repository, reference, &[MediaType::ImageManifest])?;
        let manifest = ImageManifest::from_reader(fetched.bytes.as_slice()).map_err(|e| {
            self.protocol(
                &Subject::Manifest {
                    repository: repository.clone(),
                    reference: reference.clone(),
                },
                format!(
                    "not a valid OCI image manifest: {}",
                    crate::error::sanitize(&e.to_string())
                ),
            )
        })?;
        Ok((manifest, fetched.digest))
    }
}

/// A media type as a header value: `type/subtype` of RFC 6838 characters, no parameters.
fn header_media_type(media_type: &MediaType) -> Result<HeaderValue> {
    let text = media_type.to_string();
    let refuse = |reason| NameError::new(NameKind::MediaType, &text, reason);
    let restricted = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match text.split_once('/') {
        Some((kind, sub)) if restricted(kind) && restricted(sub) => {
            HeaderValue::from_str(&text).map_err(|_| refuse("not usable in a header").into())
        }
        _ => Err(refuse("expected type/subtype (RFC 6838), without parameters").into()),
    }
}

/// The `mediaType` field of a manifest's JSON, for registries that send no `Content-Type`.
fn embedded_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Embedded {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Embedded>(bytes)
        .ok()?
        .media_type
        .map(|m| m.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_must_be_plain_type_slash_subtype() {
        assert!(header_media_type(&MediaType::ImageManifest).is_ok());
        assert!(header_media_type(&MediaType::from(DOCKER_MANIFEST)).is_ok());
        for bad in [
            "",
            "json",
            "a/b/c",
            "text/plain; charset=utf-8",
            "a/b\r\nX-Injected: 1",
            "a /b",
        ] {
            assert!(
                header_media_type(&MediaType::from(bad)).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
