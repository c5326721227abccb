//! `inspect`: one environment's metadata.

use crate::cli::Ctx;
use crate::error::{CoreError, Result};
use crate::output;

pub fn run(ctx: &Ctx, query: &str) -> Result<i32> {
    let env = ctx.engine.inspect(query)?;
    if ctx.json() {
        return output::json(&env).map(|()| 0);
    }
    let value = serde_json::to_value(&env).map_err(|e| CoreError::Other(e.to_string()))?;
    if let serde_json::Value::Object(map) = value {
        for (key, v) in map {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => "-".to_owned(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            output::line(&format!("{key}: {text}"))?;
        }
    }
    Ok(0)
}
