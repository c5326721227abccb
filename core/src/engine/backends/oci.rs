//! The `oci` backend (crun, runc, youki driven by the helper): not built yet. A manifest may
//! select it — it is part of the manifest format — so both operations refuse it with a clear
//! error rather than falling back to another backend.

use super::{BuildJob, RuntimeBackend, Session};
use crate::engine::pipeline::Built;
use crate::error::{CoreError, Result};

pub struct Oci;

impl RuntimeBackend for Oci {
    fn build(&self, _job: &BuildJob<'_>) -> Result<Built> {
        Err(CoreError::Unavailable {
            what: "building with the 'oci' backend".into(),
        })
    }

    fn run(&self, _session: Session<'_>) -> Result<i32> {
        Err(CoreError::Unavailable {
            what: "running environments with the 'oci' backend".into(),
        })
    }
}
