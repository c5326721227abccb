//! `plugin test <wasm>`: runs a plugin's functions on inputs the user gives — a rootfs to
//! detect, packages to install, a file of query output to parse — through the host with its
//! limits and checks, and prints what the host would run and what it parsed. Nothing is run:
//! the argv lists are only shown. Errors come from the host and name the plugin once.

use std::path::Path;

use karapace_plugin_host::{
    ImageContext, Limits, PackageRequest, Plugin, PluginHost, Step, StepOptions,
};
use serde_json::json;

use crate::cli::Ctx;
use crate::error::{CoreError, Result};
use crate::output;

/// The command line's inputs.
pub struct Inputs<'a> {
    pub wasm: &'a Path,
    pub detect: Option<&'a Path>,
    pub install: &'a [String],
    pub parse: Option<&'a Path>,
    pub single_uid_map: bool,
}

/// Query output larger than this is refused before the host sees it (the host has its own cap).
const MAX_PARSE_FILE_BYTES: u64 = 64 * 1024 * 1024;

pub fn run(ctx: &Ctx, inputs: &Inputs<'_>) -> Result<i32> {
    let plugin =
        PluginHost::load_file(inputs.wasm, Limits::default()).map_err(CoreError::plugin)?;
    let requests: Vec<PackageRequest> = inputs.install.iter().map(|s| request(s)).collect();
    let names: Vec<String> = requests.iter().map(|r| r.name.clone()).collect();
    let mut report = Report::new(ctx.json());
    report.header(&plugin)?;

    let image = match inputs.detect {
        None => ImageContext::EMPTY,
        Some(rootfs) => {
            if !rootfs.is_dir() {
                return Err(CoreError::Usage(format!(
                    "--detect {}: not a directory",
                    rootfs.display()
                )));
            }
            let Some(image) = plugin.detect_image(rootfs).map_err(CoreError::plugin)? else {
                report.detected(None)?;
                return report.finish(1);
            };
            report.detected(Some(&image))?;
            image
        }
    };

    if !requests.is_empty() {
        for r in &requests {
            plugin
                .validate_name(&image, &r.name)
                .map_err(CoreError::plugin)?;
            if let Some(v) = &r.version {
                plugin
                    .validate_version(&image, v)
                    .map_err(CoreError::plugin)?;
            }
        }
        let options = StepOptions {
            single_uid_map: inputs.single_uid_map,
        };
        let refresh = plugin
            .refresh_steps(&image, options)
            .map_err(CoreError::plugin)?;
        let available = plugin
            .available_argv(&image, &names)
            .map_err(CoreError::plugin)?;
        let install = plugin
            .install_steps(&image, &requests, options)
            .map_err(CoreError::plugin)?;
        let query = plugin
            .query_argv(&image, &names)
            .map_err(CoreError::plugin)?;
        report.steps(&refresh, available.as_deref(), &install, &query)?;
    }

    if let Some(file) = inputs.parse {
        let text = read_query_output(file)?;
        let parsed = plugin
            .parse_query(&image, &names, &text)
            .map_err(CoreError::plugin)?;
        report.parsed(&parsed)?;
    }
    report.finish(0)
}

/// `NAME[=VERSION]`, split at the first `=` after any leading `<>=~!` (so version atoms such
/// as `=app-editors/vim-9.0` or `>=dev-lang/perl-5.38` stay names).
fn request(spec: &str) -> PackageRequest {
    let operators = spec.len() - spec.trim_start_matches(['<', '>', '=', '~', '!']).len();
    match spec[operators..].find('=') {
        Some(i) => {
            let at = operators + i;
            PackageRequest::pinned(&spec[..at], &spec[at + 1..])
        }
        None => PackageRequest::latest(spec),
    }
}

fn read_query_output(file: &Path) -> Result<String> {
    let err = |e| CoreError::io(format!("cannot read {}", file.display()), e);
    let meta = std::fs::metadata(file).map_err(err)?;
    if meta.len() > MAX_PARSE_FILE_BYTES {
        return Err(CoreError::Usage(format!(
            "--parse {}: {} bytes (at most {MAX_PARSE_FILE_BYTES})",
            file.display(),
            meta.len()
        )));
    }
    // The size above is only a first answer: a pipe or a device says 0, a file may grow.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(file).map_err(err)?,
            MAX_PARSE_FILE_BYTES + 1,
        ),
        &mut bytes,
    )
    .map_err(err)?;
    if bytes.len() as u64 > MAX_PARSE_FILE_BYTES {
        return Err(CoreError::Usage(format!(
            "--parse {}: more than {MAX_PARSE_FILE_BYTES} bytes",
            file.display()
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| CoreError::Usage(format!("--parse {}: not UTF-8 text", file.display())))
}

/// An argv as a shell would need it typed (for reading only; the host never uses a shell).
fn shown(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| format!("{argv:?}"))
}

fn step_json(s: &Step) -> serde_json::Value {
    let env: serde_json::Map<String, serde_json::Value> =
        s.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({"argv": s.argv, "env": env})
}

/// Text lines as the answers come, or one JSON object at the end.
struct Report {
    json: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Report {
    fn new(json: bool) -> Self {
        Report {
            json: json.then(serde_json::Map::new),
        }
    }

    fn header(&mut self, p: &Plugin) -> Result<()> {
        if let Some(j) = &mut self.json {
            j.insert(
                "plugin".into(),
                json!({"name": p.name(), "version": p.version(), "interface": p.interface(),
                       "detect_paths": p.detect_paths(), "detect_files": p.detect_files()}),
            );
            return Ok(());
        }
        output::line(&format!(
            "plugin {} {} (WIT {}), imports nothing",
            p.name(),
            p.version(),
            p.interface()
        ))?;
        output::line(&format!("detect paths: {}", p.detect_paths().join(" ")))?;
        if !p.detect_files().is_empty() {
            output::line(&format!("detect files: {}", p.detect_files().join(" ")))?;
        }
        Ok(())
    }

    fn detected(&mut self, image: Option<&ImageContext>) -> Result<()> {
        if let Some(j) = &mut self.json {
            j.insert(
                "detect".into(),
                image.map_or(
                    json!({"claimed": false}),
                    |i| json!({"claimed": true, "present": i.present, "variant": i.variant}),
                ),
            );
            return Ok(());
        }
        match image {
            None => output::line("detect: not claimed (the plugin does not recognise this rootfs)"),
            Some(i) if i.variant.is_empty() => {
                output::line(&format!("detect: claimed (found {})", i.present.join(" ")))
            }
            Some(i) => output::line(&format!(
                "detect: claimed, variant {:?} (found {})",
                i.variant,
                i.present.join(" ")
            )),
        }
    }

    fn steps(
        &mut self,
        refresh: &[Step],
        available: Option<&[String]>,
        install: &[Step],
        query: &[String],
    ) -> Result<()> {
        if let Some(j) = &mut self.json {
            j.insert(
                "refresh_steps".into(),
                refresh.iter().map(step_json).collect(),
            );
            j.insert("available_argv".into(), json!(available));
            j.insert(
                "install_steps".into(),
                install.iter().map(step_json).collect(),
            );
            j.insert("query_argv".into(), json!(query));
            return Ok(());
        }
        let step_line = |what: &str, s: &Step| {
            let env: String = s.env.iter().fold(String::new(), |mut out, (k, v)| {
                for part in [k.as_str(), "=", v.as_str(), " "] {
                    out.push_str(part);
                }
                out
            });
            output::line(&format!("{what}: {env}{}", shown(&s.argv)))
        };
        for s in refresh {
            step_line("refresh", s)?;
        }
        match available {
            Some(argv) => output::line(&format!("check available: {}", shown(argv)))?,
            None => output::line("check available: (not offered by the plugin)")?,
        }
        for s in install {
            step_line("install", s)?;
        }
        output::line(&format!("query: {}", shown(query)))
    }

    fn parsed(&mut self, parsed: &[karapace_plugin_host::ResolvedPackage]) -> Result<()> {
        if let Some(j) = &mut self.json {
            j.insert(
                "parsed".into(),
                parsed
                    .iter()
                    .map(|p| json!({"name": p.name, "version": p.version}))
                    .collect(),
            );
            return Ok(());
        }
        if parsed.is_empty() {
            return output::line("parsed: no packages");
        }
        for p in parsed {
            output::line(&format!("parsed: {} {}", p.name, p.version))?;
        }
        Ok(())
    }

    fn finish(self, code: i32) -> Result<i32> {
        if let Some(j) = self.json {
            output::json(&serde_json::Value::Object(j))?;
        }
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::request;

    #[test]
    fn a_request_splits_at_the_first_equals_sign_after_leading_operators() {
        let split = |s: &str| {
            let r = request(s);
            (r.name, r.version)
        };
        assert_eq!(split("vim"), ("vim".into(), None));
        assert_eq!(split("vim=2:9.0-1"), ("vim".into(), Some("2:9.0-1".into())));
        assert_eq!(
            split("=app-editors/vim-9.0"),
            ("=app-editors/vim-9.0".into(), None)
        );
        assert_eq!(
            split(">=dev-lang/perl-5.38"),
            (">=dev-lang/perl-5.38".into(), None)
        );
        assert_eq!(
            split("app-editors/vim=9.0"),
            ("app-editors/vim".into(), Some("9.0".into()))
        );
        assert_eq!(split("curl="), ("curl".into(), Some(String::new())));
    }
}
