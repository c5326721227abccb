//! The local Debian image mirror made by `scripts/test-image`, served the two ways karapace
//! reaches image servers: HTTP on 127.0.0.1 (the public server's code path) and `file://`.

use std::path::{Path, PathBuf};

use karapace_images::testing::{TestServer, fixture_mirror};

/// The mirror directory (`KARAPACE_TEST_MIRROR`).
#[derive(Debug, Clone)]
pub struct Mirror {
    root: PathBuf,
}

impl Mirror {
    /// The fixture mirror, or `None` after printing why the test is skipped.
    /// Panics when it is missing and `CI` is set: there a missing fixture is a broken pipeline.
    pub fn fixture() -> Option<Mirror> {
        fixture_mirror().map(|root| Mirror { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `file:///…` URL of the mirror.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    /// Serves the mirror over HTTP on 127.0.0.1 until the returned server is dropped.
    pub fn serve_http(&self) -> TestServer {
        TestServer::serve(&self.root)
            .unwrap_or_else(|e| panic!("cannot serve {} over HTTP: {e}", self.root.display()))
    }
}
