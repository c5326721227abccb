//! `pull`: remote protocol v1 client.

use crate::cli::Ctx;
use crate::error::{CoreError, Result};

pub fn run(_ctx: &Ctx, _reference: &str, _remote: Option<&str>) -> Result<i32> {
    Err(CoreError::Unavailable {
        what: "pull (remote stores)".into(),
    })
}
