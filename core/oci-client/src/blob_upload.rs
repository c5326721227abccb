//! Uploading blobs: a monolithic upload (`POST` a session, `PUT ?digest=` the bytes), and
//! cross-repository mounts (`POST ?mount=&from=`) with their fallback.
//!
//! The bytes are streamed from the caller's source and checked on the way: the source must
//! hold exactly the announced length and hash to the digest, and the last bytes are only
//! handed to the connection once that is known. A wrong source therefore never completes an
//! upload; the registry sees a request cut short and stores nothing.

use std::cell::RefCell;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};
use ureq::http::{HeaderValue, Method, header};
use url::Url;

use crate::auth::Scopes;
use crate::client::Client;
use crate::digest::Sha256Digest;
use crate::error::{OciError, Result, Subject};
use crate::exchange::{Body, Request};
use crate::names::RepositoryName;
use crate::retry::{self, Attempt};
use crate::transport::header_str;
use crate::url_policy::UrlPolicy;

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository already had the blob; nothing was sent.
    AlreadyPresent,
    /// The registry linked the blob from another repository; nothing was sent.
    Mounted,
    /// The bytes were uploaded.
    Uploaded,
}

/// What a mount attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOutcome {
    /// `201`: the blob is now in the repository.
    Mounted,
    /// `202`: the registry could not mount it (unknown in the source repository, no read
    /// access there, or mounts unsupported); the upload session it opened was cancelled.
    NotMounted,
}

/// How `POST /blobs/uploads/` was answered.
enum UploadStart {
    Mounted,
    Session(Url),
}

impl Client {
    /// Uploads blob `digest` of `len` bytes to `repository`, unless it is already there.
    ///
    /// `open` gives a fresh reader of the source each time it is called: a failed upload is
    /// retried from the start (a new session), as the retry policy allows. The source is
    /// checked while it is sent; a source that holds more or fewer than `len` bytes, or bytes
    /// that do not hash to `digest`, aborts the upload before its end
    /// ([`OciError::SourceMismatch`]), and a registry that reports a different digest
    /// (`DIGEST_INVALID`, or another `Docker-Content-Digest`) is an error.
    pub fn push_blob<R: Read>(
        &self,
        repository: &RepositoryName,
        digest: &Sha256Digest,
        len: u64,
        mut open: impl FnMut() -> io::Result<R>,
    ) -> Result<BlobPush> {
        if self.existing_blob(repository, digest, len)? {
            return Ok(BlobPush::AlreadyPresent);
        }
        self.upload(repository, digest, len, &mut open, None)
    }

    /// Asks the registry to link blob `digest` from repository `from` into `repository`
    /// without sending it. When the registry answers with an upload session instead, the
    /// session is cancelled and [`MountOutcome::NotMounted`] returned.
    pub fn mount_blob(
        &self,
        repository: &RepositoryName,
        digest: &Sha256Digest,
        from: &RepositoryName,
    ) -> Result<MountOutcome> {
        match self.start_upload(repository, digest, Some(from))? {
            UploadStart::Mounted => Ok(MountOutcome::Mounted),
            UploadStart::Session(session) => {
                self.cancel_upload(repository, digest, &session);
                Ok(MountOutcome::NotMounted)
            }
        }
    }

    /// Like [`Client::push_blob`], but first tries to mount the blob from `from`; when the
    /// registry answers the mount with an upload session, the bytes go into that session.
    pub fn mount_or_push_blob<R: Read>(
        &self,
        repository: &RepositoryName,
        digest: &Sha256Digest,
        from: &RepositoryName,
        len: u64,
        mut open: impl FnMut() -> io::Result<R>,
    ) -> Result<BlobPush> {
        if self.existing_blob(repository, digest, len)? {
            return Ok(BlobPush::AlreadyPresent);
        }
        match self.start_upload(repository, digest, Some(from))? {
            UploadStart::Mounted => Ok(BlobPush::Mounted),
            UploadStart::Session(session) => {
                self.upload(repository, digest, len, &mut open, Some(session))
            }
        }
    }

    /// Whether the repository has the blob; a registry that reports another size for it is
    /// contradicting the digest, which is an error.
    fn existing_blob(
        &self,
        repository: &RepositoryName,
        digest: &Sha256Digest,
        len: u64,
    ) -> Result<bool> {
        match self.blob_exists(repository, digest)? {
            None => Ok(false),
            Some(size) if size == len => Ok(true),
            Some(size) => Err(self.protocol(
                &Subject::Blob {
                    repository: repository.clone(),
                    digest: digest.clone(),
                },
                format!("it reports {size} bytes for a blob of {len}"),
            )),
        }
    }

    /// Sessions and PUTs, retried as a whole: a failed PUT leaves its session unusable.
    fn upload<R: Read>(
        &self,
        repository: &RepositoryName,
        digest: &Sha256Digest,
        len: u64,
        open: &mut dyn FnMut() -> io::Result<R>,
        mut session: Option<Url>,
    ) -> Result<BlobPush> {
        let mut tries = 0;
        retry::run(&self.options.retry, true, || {
            tries += 1;
            // After a failure the PUT may still have landed (only its answer was lost).
            if tries > 1 && self.blob_exists(repository, digest)?.is_some() {
                return Ok(Attempt::Done(BlobPush::Uploaded));
            }
            let session = match session.take() {
                Some(url) => url,
                None => match self.start_upload(repository, digest, None)? {
                    UploadStart::Session(url) => url,
                    UploadStart::Mounted => {
                        return Err(self.protocol(
                            &Subject::BlobUpload {
                                repository: repository.clone(),
                                digest: digest.clone(),
                            },
                            "201 to an upload that asked for no mount",
                        ));
                    }
                },
            };
            match self.put_upload(repository, digest, len, open, &session) {
                Ok(()) => Ok(Attempt::Done(BlobPush::Uploaded)),
                Err(error) => {
                    self.cancel_upload(repository, digest, &session);
                    if error.is_transient() {
                        Ok(Attempt::Retry {
                            error,
                            retry_after: None,
                        })
                    } else {
                        Err(error)
                    }
                }
            }
        })
    }

    /// `POST /v2/<repository>/blobs/uploads/[?mount=<digest>&from=<from>]`.
    fn start_upload(
        &self,
        repository: &RepositoryName,
        digest: &Sha256Digest,
        mount_from: Option<&RepositoryName>,
    ) -> Result<UploadStart> {
        let subject = Subject::BlobUpload {
            repository: repository.clone(),
            digest: digest.clone(),
        };
        let mut url = self.repository_url(repository, "blobs/uploads/")?;
        let scopes = match mount_from {
            Some(from) => {
                url.query_pairs_mut()
                    .append_pair("mount", &digest.to_string())
                    .append_pair("from", from.as_str());
                Scopes::mount(repository, from)
            }
            None => Scopes::push(repository),
        };
        // Repeating a POST at worst opens a session nobody uses; registries expire those.
        let response = self.exchange(Request {
            method: Method::POST,
            url: url.clone(),
            headers: Vec::new(),
            body: Body::Empty,
            scopes: Some(&scopes),
            subject: &subject,
            idempotent: true,
            follow_redirects: false,
        })?;
        match response.status().as_u16() {
            201 if mount_from.is_some() => {
                self.check_digest_header(&response, digest, &subject)?;
                Ok(UploadStart::Mounted)
            }
            202 => {
                let Some(location) = header_str(&response, "location") else {
                    return Err(self.protocol(&subject, "an upload session without a Location"));
                };
                let policy = UrlPolicy::new(self.base_url()?, self.options.insecure);
                let session = policy.resolve(&url, location).map_err(|(shown, reason)| {
                    OciError::UnsafeUrl {
                        registry: self.transport.registry(),
                        subject: subject.clone().into(),
                        what: "the upload location",
                        url: shown,
                        reason,
                    }
                })?;
                Ok(UploadStart::Session(session))
            }
            _ => Err(self
                .transport
                .status_error(&Method::POST, response, &subject)),
        }
    }

    /// `PUT <session>&digest=<digest>` with the whole blob as the body.
    fn put_upload<R: Read>(
        &self,
        repository: &RepositoryName,
        digest: &Sha256Digest,
        len: u64,
        open: &mut dyn FnMut() -> io::Result<R>,
        session: &Url,
    ) -> Result<()> {
        let subject = Subject::BlobUpload {
            repository: repository.clone(),
            digest: digest.clone(),
        };
        let mut url = session.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let scopes = Scopes::push(repository);
        // The source's own failures are recorded here: whatever the connection then reports,
        // they are the real cause.
        let problem: RefCell<Option<OciError>> = RefCell::new(None);
        let mut opener = || -> Result<Box<dyn Read + '_>> {
            let reader = open().map_err(|source| OciError::Source {
                subject: subject.clone().into(),
                source,
            })?;
            let mut checked = CheckedSource {
                inner: reader,
                len,
                sent: 0,
                hasher: Sha256::new(),
                digest,
                subject: &subject,
                problem: &problem,
            };
            if len == 0 {
                // Nothing will be read: check the (empty) source now.
                checked
                    .check_complete()
                    .map_err(|_| take_problem(&problem, &subject))?;
            }
            Ok(Box::new(checked))
        };
        let sent = self.exchange(Request {
            method: Method::PUT,
            url,
            headers: vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            body: Body::Stream {
                len,
                open: &mut opener,
            },
            scopes: Some(&scopes),
            subject: &subject,
            idempotent: false,
            follow_redirects: false,
        });
        if problem.borrow().is_some() {
            return Err(take_problem(&problem, &subject));
        }
        let response = sent?;
        match response.status().as_u16() {
            201 | 204 => self.check_digest_header(&response, digest, &subject),
            _ => Err(self
                .transport
                .status_error(&Method::PUT, response, &subject)),
        }
    }

    /// `DELETE <session>`, best effort: an abandoned session only costs the registry until it
    /// expires it.
    fn cancel_upload(&self, repository: &RepositoryName, digest: &Sha256Digest, session: &Url) {
        let subject = Subject::BlobUpload {
            repository: repository.clone(),
            digest: digest.clone(),
        };
        let scopes = Scopes::push(repository);
        let outcome = self.exchange(Request {
            method: Method::DELETE,
            url: session.clone(),
            headers: Vec::new(),
            body: Body::Empty,
            scopes: Some(&scopes),
            subject: &subject,
            idempotent: false,
            follow_redirects: false,
        });
        if let Err(error) = outcome {
            tracing::debug!(%error, "cancelling an upload session failed");
        }
    }
}

/// The recorded failure of the source (set whenever a `CheckedSource` read fails).
fn take_problem(problem: &RefCell<Option<OciError>>, subject: &Subject) -> OciError {
    problem
        .borrow_mut()
        .take()
        .unwrap_or_else(|| OciError::SourceMismatch {
            subject: subject.clone().into(),
            problem: "could not be read".into(),
        })
}

/// The caller's source, held to its announced length and digest.
struct CheckedSource<'a, R> {
    inner: R,
    len: u64,
    sent: u64,
    hasher: Sha256,
    digest: &'a Sha256Digest,
    subject: &'a Subject,
    problem: &'a RefCell<Option<OciError>>,
}

impl<R: Read> CheckedSource<'_, R> {
    fn fail(&self, error: OciError) -> io::Error {
        let message = error.to_string();
        *self.problem.borrow_mut() = Some(error);
        io::Error::other(message)
    }

    fn mismatch(&self, problem: String) -> io::Error {
        self.fail(OciError::SourceMismatch {
            subject: self.subject.clone().into(),
            problem,
        })
    }

    fn read_source(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(self.fail(OciError::Source {
                        subject: self.subject.clone().into(),
                        source,
                    }));
                }
                Ok(n) => return Ok(n),
            }
        }
    }

    /// All `len` bytes were read: the source must end here and hash to the digest.
    fn check_complete(&mut self) -> io::Result<()> {
        let mut probe = [0u8; 1];
        if self.read_source(&mut probe)? != 0 {
            return Err(self.mismatch(format!("holds more than the announced {} bytes", self.len)));
        }
        let actual = Sha256Digest::from_hasher(self.hasher.clone());
        if actual != *self.digest {
            return Err(self.mismatch(format!("hashes to {actual}, not to {}", self.digest)));
        }
        Ok(())
    }
}

impl<R: Read> Read for CheckedSource<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.len - self.sent;
        if remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let n = self.read_source(&mut buf[..want])?;
        if n == 0 {
            return Err(self.mismatch(format!(
                "ended after {} of the announced {} bytes",
                self.sent, self.len
            )));
        }
        self.hasher.update(&buf[..n]);
        self.sent += n as u64;
        if self.sent == self.len {
            // These are the last bytes: they are only handed over once the whole source
            // proved right, so a wrong one never completes the upload.
            self.check_complete()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked<'a>(
        data: &'a [u8],
        len: u64,
        digest: &'a Sha256Digest,
        subject: &'a Subject,
        problem: &'a RefCell<Option<OciError>>,
    ) -> CheckedSource<'a, &'a [u8]> {
        CheckedSource {
            inner: data,
            len,
            sent: 0,
            hasher: Sha256::new(),
            digest,
            subject,
            problem,
        }
    }

    /// Reads like the HTTP client does and returns how many bytes went out before the error.
    fn drain(source: &mut impl Read) -> (usize, io::Result<()>) {
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        loop {
            match source.read(&mut buf) {
                Ok(0) => return (out.len(), Ok(())),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out.len(), Err(e)),
            }
        }
    }

    #[test]
    fn a_source_that_hashes_to_another_digest_never_hands_over_its_last_bytes() {
        let digest = Sha256Digest::of(b"hello world");
        let problem = RefCell::new(None);
        let subject = Subject::Registry;
        let mut source = checked(b"hello wOrld", 11, &digest, &subject, &problem);
        let (sent, result) = drain(&mut source);
        assert!(result.is_err());
        assert!(sent < 11, "all {sent} bytes went out");
        assert!(matches!(
            problem.borrow().as_ref(),
            Some(OciError::SourceMismatch { .. })
        ));
    }

    #[test]
    fn a_source_longer_or_shorter_than_announced_is_refused() {
        let digest = Sha256Digest::of(b"hello");
        let subject = Subject::Registry;
        for (data, len) in [(&b"hello!"[..], 5), (&b"hell"[..], 5)] {
            let problem = RefCell::new(None);
            let mut source = checked(data, len, &digest, &subject, &problem);
            let (sent, result) = drain(&mut source);
            assert!(result.is_err(), "{data:?}");
            assert!(sent < 5);
            let text = problem.borrow().as_ref().unwrap().to_string();
            assert!(text.contains("announced"), "{text}");
        }
    }

    #[test]
    fn a_right_source_goes_through_whole() {
        let digest = Sha256Digest::of(b"hello");
        let problem = RefCell::new(None);
        let subject = Subject::Registry;
        let mut source = checked(b"hello", 5, &digest, &subject, &problem);
        let (sent, result) = drain(&mut source);
        assert!(result.is_ok());
        assert_eq!(sent, 5);
        assert!(problem.borrow().is_none());
    }
}
