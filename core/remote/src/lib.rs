//! Karapace remotes: where environments go when they leave the machine.
//!
//! This crate holds the wire facts of protocol v1 that the client and `karapace-server` share
//! (one definition each): the key rule ([`key`]), the blob kinds and their routes ([`BlobKind`]),
//! the registry document ([`Registry`], [`RegistryEntry`]) and its reference grammar, and the
//! blocking protocol v1 client transport ([`v1::V1Client`]).
//!
//! ```no_run
//! use karapace_remote::{BlobKind, v1::{V1Client, V1Options}};
//! # fn main() -> Result<(), karapace_remote::v1::V1Error> {
//! let client = V1Client::new("http://127.0.0.1:8321", None, V1Options::default())?;
//! client.health()?;
//! let key = blake3::hash(b"hello").to_hex().to_string();
//! client.put(BlobKind::Object, &key, 5, || Ok(&b"hello"[..]))?;
//! assert!(client.has(BlobKind::Object, &key)?);
//! # Ok(()) }
//! ```
//!
//! What it must never do: send a request for a key that is not 64 lowercase hex characters,
//! trust a downloaded blob (callers verify every byte against its key before storing it), or
//! put a token anywhere but the `Authorization` header (never in a URL, an error or a log).

pub mod key;
pub mod kind;
pub mod registry;
pub mod v1;

pub use kind::BlobKind;
pub use registry::{Reference, Registry, RegistryEntry, RegistryError};

/// The protocol version header every request and response carries.
pub const PROTOCOL_HEADER: &str = "X-Karapace-Protocol";
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: &str = "1";
