//! The ids Karapace names things by. Each is 64 lowercase hex characters (a blake3 digest), is
//! checked once — when it is computed, parsed from a command line or read from a file or a
//! remote — and from then on can be used as a file name in the store without further checks: no
//! `/`, no `..`, no empty name.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Length of an id, in hex characters.
pub const ID_LEN: usize = 64;

/// Length of a short id, in hex characters.
pub const SHORT_ID_LEN: usize = 12;

/// True for exactly 64 lowercase hex characters.
pub fn is_hex_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id of a 32-byte digest (a blake3 hash), as lowercase hex.
            pub fn from_digest(digest: &[u8; 32]) -> $name {
                use fmt::Write as _;
                let mut hex = String::with_capacity(ID_LEN);
                for b in digest {
                    let _ = write!(hex, "{b:02x}");
                }
                $name(hex)
            }

            /// Accepts exactly 64 lowercase hex characters.
            pub fn parse(s: &str) -> Option<$name> {
                is_hex_id(s).then(|| $name(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The first 12 hex characters.
            pub fn short_id(&self) -> &str {
                // 64 ASCII characters by construction, so the slice is in bounds.
                &self.0[..SHORT_ID_LEN]
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        // An id is read as text everywhere (file names, output, comparisons); what the type adds
        // is that it was checked, which reading does not undo.
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl AsRef<std::ffi::OsStr> for $name {
            fn as_ref(&self) -> &std::ffi::OsStr {
                std::ffi::OsStr::new(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::parse(s).ok_or_else(|| {
                    format!(concat!("not ", $what, " (64 lowercase hex characters): {:?}"), s)
                })
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// An environment's id: blake3 over its locked inputs (the `env_id` contract).
    EnvId,
    "an environment id"
);

hex_id!(
    /// A layer's hash: the name of a base, dependency, policy or snapshot layer in the store.
    LayerHash,
    "a layer hash"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_lowercase_hex_characters_make_an_id() {
        let good = "0123456789abcdef".repeat(4);
        assert_eq!(EnvId::parse(&good).unwrap().short_id(), "0123456789ab");
        for bad in [
            String::new(),
            good[..63].to_owned(),
            format!("{good}0"),
            good.to_uppercase(),
            format!("../{}", &good[3..]),
            format!("{}/", &good[..63]),
        ] {
            assert!(EnvId::parse(&bad).is_none(), "{bad:?}");
            assert!(LayerHash::parse(&bad).is_none(), "{bad:?}");
            let json = serde_json::to_string(&bad).unwrap();
            assert!(serde_json::from_str::<LayerHash>(&json).is_err(), "{bad:?}");
        }
        let id: EnvId = serde_json::from_str(&format!("\"{good}\"")).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{good}\""));
        assert_eq!(id, good.as_str());
        let mut digest = [0u8; 32];
        digest[0] = 0xab;
        digest[31] = 0x01;
        let made = LayerHash::from_digest(&digest);
        assert_eq!(made.as_str(), format!("ab{}01", "0".repeat(60)));
        assert!(is_hex_id(made.as_str()));
    }
}
