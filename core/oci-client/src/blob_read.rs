//! Reading blobs: whether a repository has one (`HEAD`), and streaming one down while its
//! sha256 is checked (`GET`, following the registry's redirect to its storage).

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};
use ureq::http::Method;

use crate::auth::Scopes;
use crate::client::Client;
use crate::digest::Sha256Digest;
use crate::error::{OciError, Result, Subject};
use crate::exchange::{Body, Request};
use crate::names::RepositoryName;
use crate::transport::{ErrorContext, content_length, header_str};

impl Client {
    /// The size of blob `digest` if `repository` has it, `None` if the registry says it does
    /// not (`404`). Refuses an answer without a size, or one naming another digest.
    pub fn blob_exists(
        &self,
        repository: &RepositoryName,
        digest: &Sha256Digest,
    ) -> Result<Option<u64>> {
        let subject = Subject::Blob {
            repository: repository.clone(),
            digest: digest.clone(),
        };
        let scopes = Scopes::pull(repository);
        let response = self.exchange(Request {
            method: Method::HEAD,
            url: self.repository_url(repository, &format!("blobs/{digest}"))?,
            headers: Vec::new(),
            body: Body::Empty,
            scopes: Some(&scopes),
            subject: &subject,
            idempotent: true,
            follow_redirects: true,
        })?;
        match response.status().as_u16() {
            200 => {
                self.check_digest_header(&response, digest, &subject)?;
                let size = content_length(&response).ok_or_else(|| {
                    self.protocol(&subject, "a blob HEAD answer without Content-Length")
                })?;
                Ok(Some(size))
            }
            404 => Ok(None),
            _ => Err(self
                .transport
                .status_error(&Method::HEAD, response, &subject)),
        }
    }

    /// A reader of blob `digest` that checks, as it goes, that the bytes are at most
    /// `expected_size` (when given, e.g. from a descriptor) or the announced length, and at
    /// the end that they are exactly that many and hash to `digest`.
    ///
    /// Memory stays bounded whatever the blob's size. A mismatch is an error of the final
    /// `read` (an `io::Error` of kind `InvalidData` whose inner error is the
    /// [`OciError`]; see [`OciError::from_io`]); nothing is ever accepted silently, and reads
    /// after a failure fail again. A missing blob is [`OciError::NotFound`].
    pub fn get_blob(
        &self,
        repository: &RepositoryName,
        digest: &Sha256Digest,
        expected_size: Option<u64>,
    ) -> Result<BlobReader> {
        let subject = Subject::Blob {
            repository: repository.clone(),
            digest: digest.clone(),
        };
        let scopes = Scopes::pull(repository);
        let response = self.exchange(Request {
            method: Method::GET,
            url: self.repository_url(repository, &format!("blobs/{digest}"))?,
            headers: Vec::new(),
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
        let announced = content_length(&response);
        if let (Some(announced), Some(expected)) = (announced, expected_size)
            && announced != expected
        {
            return Err(OciError::SizeMismatch {
                registry: self.transport.registry(),
                subject: subject.into(),
                expected,
                received: format!("the registry announces {announced}"),
            });
        }
        Ok(BlobReader {
            body: Box::new(response.into_body().into_reader()),
            hasher: Sha256::new(),
            received: 0,
            size: expected_size.or(announced),
            digest: digest.clone(),
            subject,
            errors: self.transport.errors.clone(),
            state: State::Streaming,
        })
    }

    /// A `Docker-Content-Digest` header, when present, must name `digest`.
    pub(crate) fn check_digest_header(
        &self,
        response: &crate::transport::Response,
        digest: &Sha256Digest,
        subject: &Subject,
    ) -> Result<()> {
        match header_str(response, "docker-content-digest") {
            None => Ok(()),
            Some(value) if value.trim() == digest.to_string() => Ok(()),
            Some(value) => Err(self.protocol(
                subject,
                format!(
                    "it reports digest {:?} for {digest}",
                    crate::error::sanitize(value)
                ),
            )),
        }
    }
}

/// A blob being downloaded; see [`Client::get_blob`].
pub struct BlobReader {
    body: Box<dyn Read + Send>,
    hasher: Sha256,
    received: u64,
    /// What the caller expects or the registry announced; more or fewer bytes are an error.
    size: Option<u64>,
    digest: Sha256Digest,
    subject: Subject,
    errors: ErrorContext,
    state: State,
}

enum State {
    Streaming,
    /// Every byte was read and checked.
    Verified,
    /// Failed; the error was handed to the caller once, later reads fail with its text.
    Failed(String),
}

impl BlobReader {
    /// The blob's size, when known before reading (expected or announced).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    pub fn digest(&self) -> &Sha256Digest {
        &self.digest
    }

    fn fail(&mut self, error: OciError) -> io::Error {
        self.state = State::Failed(error.to_string());
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    /// End of the body: the byte count and the digest decide.
    fn finish(&mut self) -> io::Result<usize> {
        if let Some(size) = self.size
            && self.received != size
        {
            let error = OciError::SizeMismatch {
                registry: self.errors.registry.clone(),
                subject: self.subject.clone().into(),
                expected: size,
                received: format!("the body ended after {}", self.received),
            };
            return Err(self.fail(error));
        }
        let actual = Sha256Digest::from_hasher(std::mem::take(&mut self.hasher));
        if actual != self.digest {
            let error = OciError::DigestMismatch {
                registry: self.errors.registry.clone(),
                subject: self.subject.clone().into(),
                actual,
            };
            return Err(self.fail(error));
        }
        self.state = State::Verified;
        Ok(0)
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            State::Streaming => {}
            State::Verified => return Ok(0),
            State::Failed(message) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, message.clone()));
            }
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = match self.body.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let error = self.errors.map_io(&self.subject, &e);
                return Err(self.fail(error));
            }
        };
        if n == 0 {
            return self.finish();
        }
        self.received += n as u64;
        if let Some(size) = self.size
            && self.received > size
        {
            let error = OciError::SizeMismatch {
                registry: self.errors.registry.clone(),
                subject: self.subject.clone().into(),
                expected: size,
                received: "the registry sends more".to_string(),
            };
            return Err(self.fail(error));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}
