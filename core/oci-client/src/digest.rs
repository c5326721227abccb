//! `sha256:<64 lowercase hex>` digests — the only content address this client accepts.
//!
//! Other algorithms exist in the OCI spec (sha512, …) but every registry and every image tool
//! uses sha256; accepting only it keeps verification a single, always-enforced path.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::names::{NameError, NameKind};

/// A validated sha256 content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest {
    /// 64 lowercase hexadecimal characters.
    hex: String,
}

impl Sha256Digest {
    const PREFIX: &'static str = "sha256:";

    /// Parses `sha256:<64 lowercase hex>`; refuses other algorithms, upper-case hex, wrong
    /// lengths and anything else.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let refuse = |reason| NameError::new(NameKind::Digest, s, reason);
        let Some(hex) = s.strip_prefix(Self::PREFIX) else {
            return Err(refuse(
                "only sha256:<64 lowercase hex> digests are accepted",
            ));
        };
        if hex.len() != 64 {
            return Err(refuse("a sha256 digest has 64 hexadecimal characters"));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(refuse("a sha256 digest is lowercase hexadecimal"));
        }
        Ok(Sha256Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest of everything fed to `hasher`.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Sha256Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// The 64 hexadecimal characters, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The same digest as the `oci-spec` type used in descriptors.
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        // A validated sha256 digest is always a valid OCI digest; the parse cannot fail.
        oci_spec::image::Digest::from_str(&self.to_string())
            .expect("a validated sha256 digest is a valid OCI digest")
    }
}

impl FromStr for Sha256Digest {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Sha256Digest::parse(s)
    }
}

impl TryFrom<&oci_spec::image::Digest> for Sha256Digest {
    type Error = NameError;
    /// Refuses descriptors that use another algorithm.
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, NameError> {
        Sha256Digest::parse(d.as_ref())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.hex)
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_of_known_bytes_is_the_sha256_everyone_computes() {
        assert_eq!(
            Sha256Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn only_well_formed_sha256_digests_parse() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(Sha256Digest::parse(&format!("sha256:{hex}")).is_ok());
        for bad in [
            hex.clone(),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha512:{hex}"),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            format!("sha256:{}/..", &hex[4..]),
            format!("SHA256:{hex}"),
            String::new(),
        ] {
            assert!(
                Sha256Digest::parse(&bad).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn converts_to_and_from_oci_spec_digests() {
        let d = Sha256Digest::of(b"x");
        let oci = d.to_oci();
        assert_eq!(Sha256Digest::try_from(&oci).unwrap(), d);
        let other =
            oci_spec::image::Digest::from_str(&format!("sha512:{}", "a".repeat(128))).unwrap();
        assert!(Sha256Digest::try_from(&other).is_err());
    }
}
