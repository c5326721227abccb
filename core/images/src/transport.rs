//! Getting bytes from `http(s)://` and `file://` URLs with bounded waits.

use std::fs::File;
use std::io::{ErrorKind, Read};

use crate::config::TransferOptions;
use crate::error::{ImageError, Result};
use crate::url;

/// Reads are done in chunks of this size (also the progress granularity).
const CHUNK: usize = 256 * 1024;

/// A configured client for one resolution or download.
pub(crate) struct Transport {
    opts: TransferOptions,
    agent: ureq::Agent,
}

/// An open download: its announced length and a reader over the body.
pub(crate) struct Download {
    pub len: Option<u64>,
    reader: Box<dyn Read + Send>,
    url: String,
    opts: TransferOptions,
}

impl Transport {
    pub(crate) fn new(opts: TransferOptions) -> Self {
        // `timeout_per_read` restarts with every read, so it is a stall timeout: a slow but moving
        // download never trips it, a silent server does. There is deliberately no total body budget.
        let agent = ureq::Agent::config_builder()
            .timeout_resolve(Some(opts.connect_timeout))
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_send_request(Some(opts.stall_timeout))
            .timeout_recv_response(Some(opts.stall_timeout))
            .timeout_per_read(Some(opts.stall_timeout))
            .timeout_per_write(Some(opts.stall_timeout))
            .http_status_as_error(false)
            .user_agent(format!("karapace/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Transport { opts, agent }
    }

    /// Opens `url`; `Ok(None)` when the server (or filesystem) says it does not exist.
    pub(crate) fn open_optional(&self, url: &str) -> Result<Option<Download>> {
        if let Some(path) = url::file_path(url) {
            return match File::open(&path) {
                Ok(f) => {
                    let meta = f.metadata().map_err(|e| ImageError::io(&path, e))?;
                    if meta.is_dir() {
                        return Ok(None);
                    }
                    Ok(Some(Download {
                        len: Some(meta.len()),
                        reader: Box::new(f),
                        url: url.to_string(),
                        opts: self.opts,
                    }))
                }
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ImageError::io(path, e)),
            };
        }
        let resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| map_ureq(url, &self.opts, &e))?;
        let status = resp.status().as_u16();
        if status == 404 || status == 410 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(ImageError::HttpStatus {
                url: url.to_string(),
                status,
            });
        }
        let body = resp.into_body();
        Ok(Some(Download {
            len: body.content_length(),
            reader: Box::new(body.into_reader()),
            url: url.to_string(),
            opts: self.opts,
        }))
    }

    /// Like [`Transport::open_optional`] but a missing resource is an error.
    pub(crate) fn open(&self, url: &str) -> Result<Download> {
        match self.open_optional(url)? {
            Some(d) => Ok(d),
            None => Err(match url::file_path(url) {
                Some(path) => ImageError::io(path, std::io::Error::from(ErrorKind::NotFound)),
                None => ImageError::HttpStatus {
                    url: url.to_string(),
                    status: 404,
                },
            }),
        }
    }

    /// A small document (index, listing) read whole, bounded by `limit` bytes.
    pub(crate) fn get_optional(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some(mut d) = self.open_optional(url)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        d.for_each_chunk(|chunk| {
            if out.len() as u64 + chunk.len() as u64 > limit {
                return Err(ImageError::Network {
                    url: url.to_string(),
                    message: format!("response larger than {limit} bytes"),
                });
            }
            out.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(Some(out))
    }
}

impl Download {
    /// Feeds the body to `sink` chunk by chunk; returns the byte count. A body shorter than its
    /// announced length is an error (a dropped connection must not look like a complete file).
    pub(crate) fn for_each_chunk(
        &mut self,
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(map_io(&self.url, &self.opts, &e)),
            };
            total += n as u64;
            sink(&buf[..n])?;
        }
        if let Some(len) = self.len
            && len != total
        {
            return Err(ImageError::Network {
                url: self.url.clone(),
                message: format!("connection closed after {total} of {len} bytes"),
            });
        }
        Ok(total)
    }
}

fn map_ureq(url: &str, opts: &TransferOptions, e: &ureq::Error) -> ImageError {
    match e {
        ureq::Error::Timeout(t) => {
            let (phase, after) = match t {
                ureq::Timeout::Resolve | ureq::Timeout::Connect => {
                    ("connect", opts.connect_timeout)
                }
                _ => ("waiting for the server", opts.stall_timeout),
            };
            ImageError::Timeout {
                url: url.to_string(),
                phase,
                after,
            }
        }
        ureq::Error::Io(io) => map_io(url, opts, io),
        other => ImageError::Network {
            url: url.to_string(),
            message: other.to_string(),
        },
    }
}

fn map_io(url: &str, opts: &TransferOptions, e: &std::io::Error) -> ImageError {
    // ureq reports its own timeouts through io errors when reading a body.
    let inner_timeout = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
    if inner_timeout || matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
        return ImageError::Timeout {
            url: url.to_string(),
            phase: "download stalled",
            after: opts.stall_timeout,
        };
    }
    ImageError::Network {
        url: url.to_string(),
        message: e.to_string(),
    }
}
