//! The certificates HTTPS connections are verified against: the system's roots (what the
//! distribution ships in `ca-certificates`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`), plus an optional
//! PEM file of the user's own CAs for a private registry.

use std::path::Path;

use ureq::tls::{Certificate, PemItem, RootCerts};

use crate::error::{OciError, Result};

/// PEM files larger than this are refused (a CA bundle is a few hundred KiB).
const MAX_CA_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// The system roots plus those of `extra_ca_file`. Refuses an extra file that cannot be read,
/// is not PEM, or holds no certificate (a user who names a file expects it to count).
pub(crate) fn root_certs(extra_ca_file: Option<&Path>) -> Result<RootCerts> {
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "skipping unreadable system certificate");
    }
    let mut roots: Vec<Certificate<'static>> = native
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    if roots.is_empty() {
        tracing::warn!(
            "no system root certificates found (is ca-certificates installed?); \
             HTTPS registries will only be trusted through a CA file"
        );
    }
    if let Some(path) = extra_ca_file {
        roots.extend(read_ca_file(path)?);
    }
    Ok(RootCerts::new_with_certs(&roots))
}

fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let fail = |message: String| OciError::CaFile {
        path: path.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_CA_FILE_SIZE {
        return Err(fail(format!("larger than {MAX_CA_FILE_SIZE} bytes")));
    }
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {} // keys and other sections are not roots
            Err(e) => return Err(fail(format!("not valid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"nothing here\n").unwrap();
        let err = root_certs(Some(&empty)).unwrap_err().to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no PEM certificate"),
            "{err}"
        );

        let missing = dir.path().join("missing.pem");
        let err = root_certs(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");

        let err = root_certs(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
