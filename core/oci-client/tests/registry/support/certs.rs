//! A throwaway CA, a server certificate for 127.0.0.1 signed by it, and a token-signing
//! certificate, made with the `openssl` command.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    pub fn generate() -> TestCerts {
        let dir = tempfile::Builder::new()
            .prefix("karapace-certs-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        openssl(
            d,
            &format!(
                "req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=karapace-test-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
        issue(
            d,
            "server",
            &format!("{ec} -subj /CN=127.0.0.1"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        );
        issue(
            d,
            "signer",
            "-newkey rsa:2048 -nodes -subj /CN=karapace-token-signer",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n",
        );
        openssl(d, "x509 -in signer.pem -outform DER -out signer.der");
        TestCerts { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The 127.0.0.1 server certificate and its key.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("server.pem"),
            self.dir.path().join("server.key"),
        )
    }

    /// The token signer's certificate, DER.
    pub fn signer_der(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("signer.der")).unwrap()
    }

    /// An RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `input` by the token signer.
    pub fn sign_rs256(&self, input: &[u8]) -> Vec<u8> {
        let work = tempfile::tempdir().unwrap();
        let data = work.path().join("input");
        let signature = work.path().join("signature");
        std::fs::write(&data, input).unwrap();
        let key = self.dir.path().join("signer.key");
        let out = Command::new("openssl")
            .arg("dgst")
            .arg("-sha256")
            .arg("-sign")
            .arg(&key)
            .arg("-out")
            .arg(&signature)
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(signature).unwrap()
    }
}

/// A key and a certificate `<name>.pem` signed by the CA, with `extensions`.
fn issue(dir: &Path, name: &str, key_args: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    openssl(
        dir,
        &format!("req {key_args} -keyout {name}.key -out {name}.csr"),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem \
         -days 2 -extfile {name}.ext"
        ),
    );
}

/// `openssl` with whitespace-separated `args` (none contains a space).
fn openssl(dir: &Path, args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    let out = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("openssl (package openssl) is needed by the TLS tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
