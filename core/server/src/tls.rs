//! HTTPS: a rustls server configuration from PEM files (the ring provider, as ureq uses).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Loads the certificate chain and key. Refuses a key file readable by others (mode o+r;
/// group-readable keys, e.g. Debian's `ssl-cert` group, are accepted), an empty chain and a key
/// that does not match the certificate.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let mode = fs::metadata(key)
        .map_err(|e| format!("{}: {e}", key.display()))?
        .permissions()
        .mode();
    if mode & 0o004 != 0 {
        return Err(format!(
            "{}: the private key is readable by everyone (mode {:o}); run `chmod o-r {}`",
            key.display(),
            mode & 0o777,
            key.display()
        ));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            cert.display()
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
