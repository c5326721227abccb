//! Protocol v1 remotes (`http://`, `https://`): the engine's blob seam over
//! [`karapace_remote::v1::V1Client`].

use std::io::Read;

use karapace_remote::v1::{TlsRoots, V1Client, V1Error, V1Options};

use super::config::RemoteConfig;
use super::reference::Tagged;
use super::transport::{BlobKind, BlobRemote, BlobSource, Opener, RegistryEntry};
use crate::error::{CoreError, Result};

pub struct V1Remote {
    client: V1Client,
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(remote_error)`
fn remote_error(e: V1Error) -> CoreError {
    CoreError::Remote(e.to_string())
}

impl V1Remote {
    pub fn connect(config: &RemoteConfig) -> Result<V1Remote> {
        let tls = config
            .ca_cert
            .clone()
            .map_or(TlsRoots::BuiltIn, TlsRoots::CaFile);
        let client = V1Client::new(
            &config.url,
            config.token.clone(),
            V1Options {
                tls,
                ..V1Options::default()
            },
        )
        .map_err(remote_error)?;
        Ok(V1Remote { client })
    }
}

impl BlobSource for V1Remote {
    fn location(&self) -> String {
        self.client.server().to_string()
    }

    fn get(&self, kind: BlobKind, key: &str) -> Result<Option<Box<dyn Read + Send>>> {
        match self.client.get(kind, key) {
            Ok(download) => Ok(Some(Box::new(download))),
            Err(V1Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(remote_error(e)),
        }
    }
}

impl BlobRemote for V1Remote {
    fn has(&self, kind: BlobKind, key: &str) -> Result<bool> {
        self.client.has(kind, key).map_err(remote_error)
    }

    fn put(&self, kind: BlobKind, key: &str, len: u64, open: &Opener<'_>) -> Result<()> {
        self.client
            .put(kind, key, len, open)
            .map(|_| ())
            .map_err(remote_error)
    }

    fn resolve(&self, tag: &Tagged) -> Result<Option<RegistryEntry>> {
        let (registry, _) = self.client.registry().map_err(remote_error)?;
        Ok(registry.entries.get(&tag.to_string()).cloned())
    }

    fn publish(&self, tag: &Tagged, entry: &RegistryEntry) -> Result<()> {
        self.client.publish(tag, entry).map_err(remote_error)
    }
}
