//! `plugin build [DIR]`: builds a plugin crate for wasm32 with the toolchain installed here,
//! turns the core module into a component in this process (core/componentize, the library
//! scripts/build-plugins uses too), loads it in the host to check it, and writes it atomically.
//! Needs no Karapace checkout (the SDK and WIT are embedded, see [`super::sdk`]) and no network
//! beyond what cargo fetches from the crates registry.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{sdk, toolchain};
use crate::cli::Ctx;
use crate::error::{CoreError, Result};
use crate::output;

pub fn run(ctx: &Ctx, dir: &Path, output_file: Option<&Path>) -> Result<i32> {
    let started = Instant::now();
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| CoreError::io(format!("cannot open {}", dir.display()), e))?;
    let manifest = dir.join("Cargo.toml");
    check_manifest(&manifest)?;
    check_inherited_files(&dir)?;
    let tools = toolchain::find()?;

    let mut cargo = Command::new(&tools.cargo);
    cargo
        .current_dir(&dir)
        .args(["build", "--release", "--target", toolchain::TARGET])
        .args(&tools.args)
        .args([
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .envs(tools.env.iter().map(|(k, v)| (*k, v)))
        // cargo's diagnostics and progress go straight to the user.
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Always: however the crate names the SDK (renamed, per target, in a workspace member),
    // `karapace-plugin-sdk` must never be resolved from crates.io, where the name is not ours.
    // An unused patch is only a warning of cargo's.
    {
        let sdk = sdk::extract(&sdk::default_cache()?)?;
        let sdk_dir = sdk.to_str().ok_or_else(|| {
            CoreError::Usage(format!("{}: the cache path is not UTF-8", sdk.display()))
        })?;
        let patch_config = format!(
            "patch.crates-io.karapace-plugin-sdk.path={}",
            toml_string(sdk_dir)
        );
        // The same patch lets the user run the SDK harness natively.
        output::note(&format!(
            "using the plugin SDK embedded in karapace, at {sdk_dir}; native tests: cargo test --config {}",
            shlex::try_quote(&patch_config).unwrap_or_default()
        ));
        cargo.arg("--config").arg(patch_config);
    }
    output::note(&format!(
        "building {} with the {} wasm toolchain ({})",
        dir.display(),
        tools.route,
        tools.cargo.display()
    ));
    let module_path = run_cargo(&mut cargo, &manifest)?;
    let module = std::fs::read(&module_path)
        .map_err(|e| CoreError::io(format!("cannot read {}", module_path.display()), e))?;
    let component = karapace_componentize::componentize(&module)
        .map_err(|e| CoreError::PluginBuild(format!("{}: {e}", module_path.display())))?;

    // Load it as the host will; the plugin's own name names the output.
    // The output's own directory, so the final rename never crosses file systems.
    let staging_dir = match output_file.map(Path::parent) {
        None => dir.join("dist"),
        Some(Some(parent)) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        Some(_) => PathBuf::from("."),
    };
    std::fs::create_dir_all(&staging_dir)
        .map_err(|e| CoreError::io(format!("cannot create {}", staging_dir.display()), e))?;
    let (staged, plugin) =
        super::stage_and_load(&staging_dir, ".build-", &component, &module_path)?;
    let dest = output_file.map_or_else(
        || staging_dir.join(format!("{}.wasm", plugin.name())),
        Path::to_path_buf,
    );
    staged
        .persist(&dest)
        .map_err(|e| CoreError::io(format!("cannot write {}", dest.display()), e.error))?;

    let seconds = started.elapsed().as_secs_f64();
    if ctx.json() {
        output::json(&serde_json::json!({
            "name": plugin.name(),
            "version": plugin.version(),
            "interface": plugin.interface(),
            "path": dest,
            "bytes": component.len(),
            "route": tools.route,
            "seconds": (seconds * 10.0).round() / 10.0,
        }))?;
    } else {
        output::line(&format!(
            "built plugin {} {} (WIT {}): {} ({}) in {seconds:.1} s",
            plugin.name(),
            plugin.version(),
            plugin.interface(),
            dest.display(),
            output::bytes(component.len() as u64),
        ))?;
        output::note(&format!(
            "next: karapace plugin test {0} --detect <ROOTFS> --install <NAME>, then karapace plugin install {0}",
            dest.display()
        ));
    }
    Ok(0)
}

/// The crate's manifest is readable TOML (a directory that is not a crate is the user's error).
fn check_manifest(manifest: &Path) -> Result<()> {
    let text = std::fs::read_to_string(manifest).map_err(|e| {
        CoreError::Usage(format!(
            "{}: {e} (plugin build takes the directory of a plugin crate)",
            manifest.display()
        ))
    })?;
    toml::from_str::<toml::Table>(&text)
        .map_err(|e| CoreError::Usage(format!("{}: {e}", manifest.display())))?;
    Ok(())
}

/// Files cargo and rustup read from every directory above the crate: a workspace's manifest
/// (cargo looks for one from the crate's directory upwards), cargo's configuration and rustup's
/// toolchain file (both looked for from the working directory, the crate's, upwards).
const INHERITED: [&str; 5] = [
    "Cargo.toml",
    ".cargo/config.toml",
    ".cargo/config",
    "rust-toolchain.toml",
    "rust-toolchain",
];

/// Each of [`INHERITED`] can make the build run a program of its writer's (a configuration's
/// `build.rustc-wrapper` or linker, a workspace's `[patch]`, a toolchain file's `path`), so one
/// another user could have written is refused (`karapace_plugin_host::untrusted_file`, the
/// plugin directories' rule): a crate under `/tmp` must not pick up a `/tmp/.cargo/config.toml`
/// someone else planted. Above the crate only: the crate itself is what the user asked to
/// build. A directory above it that others may write (a sticky `/tmp`) could still receive such
/// a file between this check and cargo's start: that is said, not refused.
fn check_inherited_files(crate_dir: &Path) -> Result<()> {
    for ancestor in crate_dir.ancestors().skip(1) {
        for name in INHERITED {
            let file = ancestor.join(name);
            // `.cargo` itself too: whoever may replace it replaces what is in it.
            let holder = file.parent().filter(|p| *p != ancestor);
            for path in holder.into_iter().chain([file.as_path()]) {
                if let Some(reason) = karapace_plugin_host::untrusted_file(path) {
                    return Err(CoreError::Refused(format!(
                        "{} is {reason}: cargo or rustup would read it while building {}, and \
                         it can make the build run programs of whoever wrote it; build the \
                         crate in a directory whose parents only you and root can write",
                        path.display(),
                        crate_dir.display()
                    )));
                }
            }
        }
        if let Some(reason) = karapace_plugin_host::untrusted_file(ancestor) {
            output::note(&format!(
                "note: {} is {reason}: another user could put a Cargo.toml, .cargo/config.toml \
                 or rust-toolchain.toml there while cargo starts; building in a directory \
                 whose parents only you and root can write avoids that",
                ancestor.display()
            ));
        }
    }
    Ok(())
}

/// Runs cargo, reading its JSON messages; returns the crate's cdylib `.wasm`.
fn run_cargo(cargo: &mut Command, manifest: &Path) -> Result<PathBuf> {
    let mut child = cargo
        .spawn()
        .map_err(|e| CoreError::io(format!("cannot run {}", cargo.get_program().display()), e))?;
    let mut module = None;
    if let Some(stdout) = child.stdout.take() {
        // Drained to the end whatever it holds: a line that is not UTF-8 (a build script's
        // bytes) is skipped, not a reason to stop reading while cargo still writes.
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            if let Some(found) = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| cdylib_wasm(l, manifest))
            {
                module = Some(found);
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| CoreError::io("cannot wait for cargo", e))?;
    if !status.success() {
        return Err(CoreError::PluginBuild(format!(
            "cargo build failed ({status}); its errors are above"
        )));
    }
    module.ok_or_else(|| {
        CoreError::PluginBuild(format!(
            "{}: no wasm library was built; a plugin crate needs `[lib] crate-type = [\"cdylib\"]`",
            manifest.display()
        ))
    })
}

/// The `.wasm` of a `compiler-artifact` message for a cdylib of the crate at `manifest`.
fn cdylib_wasm(line: &str, manifest: &Path) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg.get("reason")?.as_str()? != "compiler-artifact"
        || Path::new(msg.get("manifest_path")?.as_str()?) != manifest
    {
        return None;
    }
    let kinds = msg.get("target")?.get("kind")?.as_array()?;
    if !kinds.iter().any(|k| k.as_str() == Some("cdylib")) {
        return None;
    }
    msg.get("filenames")?
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| Path::new(f).extension().is_some_and(|x| x == "wasm"))
        .map(PathBuf::from)
}

/// A TOML basic string (for cargo's `--config KEY=VALUE`).
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_is_the_crates_own_cdylib() {
        let m = Path::new("/p/Cargo.toml");
        let line = r#"{"reason":"compiler-artifact","manifest_path":"/p/Cargo.toml","target":{"kind":["cdylib"]},"filenames":["/t/x.wasm"]}"#;
        assert_eq!(cdylib_wasm(line, m), Some(PathBuf::from("/t/x.wasm")));
        let dep = line.replace("/p/Cargo.toml", "/reg/wit-bindgen/Cargo.toml");
        assert_eq!(cdylib_wasm(&dep, m), None);
        let rlib = line.replace("cdylib", "lib");
        assert_eq!(cdylib_wasm(&rlib, m), None);
        assert_eq!(cdylib_wasm("not json", m), None);
    }

    #[test]
    fn a_directory_without_a_crate_manifest_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_manifest(&dir.path().join("nope.toml")).is_err());
        let m = dir.path().join("Cargo.toml");
        std::fs::write(&m, "[package\n").unwrap();
        assert!(check_manifest(&m).is_err());
        std::fs::write(&m, "[package]\nname = \"x\"\n").unwrap();
        assert!(check_manifest(&m).is_ok());
    }
}
