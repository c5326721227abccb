//! Manifest templates for `karapace new --template <NAME>`.
//!
//! The manifests live in the repository's `examples/` directory so users can
//! read them there; they are embedded at compile time so the binary needs no
//! data files.

/// Template names, in the order the CLI lists them.
pub const NAMES: [&str; 5] = ["minimal", "dev", "gui-dev", "rust-dev", "ubuntu-dev"];

const MINIMAL: &str = include_str!("../../../examples/minimal.toml");
const DEV: &str = include_str!("../../../examples/dev.toml");
const GUI_DEV: &str = include_str!("../../../examples/gui-dev.toml");
const RUST_DEV: &str = include_str!("../../../examples/rust-dev.toml");
const UBUNTU_DEV: &str = include_str!("../../../examples/ubuntu-dev.toml");

/// The template's manifest text as shipped, or `None` for an unknown name.
pub fn source(template: &str) -> Option<&'static str> {
    Some(match template {
        "minimal" => MINIMAL,
        "dev" => DEV,
        "gui-dev" => GUI_DEV,
        "rust-dev" => RUST_DEV,
        "ubuntu-dev" => UBUNTU_DEV,
        _ => return None,
    })
}

/// The manifest for a new environment called `name`, or `None` for an
/// unknown template. The manifest format has no name key, so the name goes
/// into a leading comment; control characters in it are replaced so the
/// comment can never spill into TOML.
pub fn render(template: &str, name: &str) -> Option<String> {
    let body = source(template)?;
    let safe_name: String = name
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    Some(format!(
        "# Karapace environment: {safe_name}\n# Created from the '{template}' template; see docs/manifest-and-lock.md.\n{body}"
    ))
}

/// What the template is for, in one sentence: the first sentence of the leading comment of its
/// manifest (after its "Template `<name>`:" prefix), so the description lives once, beside the
/// template. `None` for an unknown name.
pub fn description(template: &str) -> Option<String> {
    let comment: Vec<&str> = source(template)?
        .lines()
        .map_while(|l| l.strip_prefix('#'))
        .map(str::trim)
        .collect();
    let text = comment.join(" ");
    let text = text
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("Template "))
        .map_or(text.as_str(), |(_, rest)| rest);
    let sentence = text.split_inclusive(". ").next().unwrap_or(text);
    Some(sentence.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, parse_manifest};

    #[test]
    fn every_template_parses_and_normalizes() {
        for t in NAMES {
            let text = render(t, "my-env").expect("known template");
            assert!(text.starts_with("# Karapace environment: my-env\n"), "{t}");
            let m = parse_manifest(&text).unwrap_or_else(|e| panic!("{t}: {e}"));
            let n = m.normalize().unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(n.runtime_backend, Backend::Namespace, "{t}");
        }
    }

    /// The standard tool's five manifests: the same image, packages, apps, hardware and mount,
    /// so `new --template X` followed by `build` means the same in both tools.
    #[test]
    fn templates_are_the_standard_tools_manifests() {
        let norm = |t| {
            parse_manifest(source(t).unwrap_or_default())
                .and_then(|m| m.normalize())
                .map_err(|e| e.to_string())
        };
        let sorted = |list: &[&str]| {
            let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
            v.sort();
            v
        };
        let expect = [
            ("minimal", "rolling", &[][..]),
            (
                "dev",
                "rolling",
                &[
                    "git", "curl", "vim", "neovim", "tmux", "htop", "make", "cmake", "gcc", "clang",
                ][..],
            ),
            (
                "gui-dev",
                "rolling",
                &[
                    "git",
                    "curl",
                    "cmake",
                    "gcc",
                    "clang",
                    "gdb",
                    "mesa-dri-devel",
                ][..],
            ),
            (
                "rust-dev",
                "rolling",
                &[
                    "git",
                    "curl",
                    "gcc",
                    "make",
                    "cmake",
                    "pkg-config",
                    "openssl-devel",
                    "gdb",
                ][..],
            ),
            (
                "ubuntu-dev",
                "ubuntu/24.04",
                &[
                    "git",
                    "curl",
                    "build-essential",
                    "cmake",
                    "python3",
                    "python3-pip",
                    "nodejs",
                    "npm",
                ][..],
            ),
        ];
        for (t, image, packages) in expect {
            let n = norm(t).unwrap();
            assert_eq!(n.base_image, image, "{t}");
            assert_eq!(n.system_packages, sorted(packages), "{t}");
            let mounts: Vec<(String, String)> = n
                .mounts
                .iter()
                .map(|m| (m.host_path.clone(), m.container_path.clone()))
                .collect();
            if t == "minimal" {
                assert!(mounts.is_empty());
            } else {
                assert_eq!(mounts, [("~/projects".into(), "/workspace".into())], "{t}");
            }
        }
        let gui = norm("gui-dev").unwrap();
        assert!(gui.hardware_gpu && gui.hardware_audio);
        // As in the standard tool: an app that no package provides (a build warns about it).
        assert_eq!(gui.gui_apps, ["firefox"]);
    }

    #[test]
    fn debian_examples_parse() {
        for text in [
            include_str!("../../../examples/debian-dev.toml"),
            include_str!("../../../examples/debian-gui-dev.toml"),
            include_str!("../../../examples/debian-rust-dev.toml"),
        ] {
            let n = parse_manifest(text).and_then(|m| m.normalize()).unwrap();
            assert_eq!(n.base_image, "debian/bookworm");
            assert!(!n.system_packages.is_empty());
        }
    }

    #[test]
    fn descriptions_are_the_first_sentence_of_the_templates_comment() {
        assert_eq!(
            description("minimal").as_deref(),
            Some("a base system and nothing else (openSUSE Tumbleweed).")
        );
        assert_eq!(
            description("dev").as_deref(),
            Some(
                "command-line development tools on openSUSE Tumbleweed, with ~/projects mounted at /workspace."
            )
        );
        assert_eq!(
            description("gui-dev").as_deref(),
            Some(
                "desktop application development on openSUSE Tumbleweed, GPU and sound passed through."
            )
        );
        for t in NAMES {
            let d = description(t).unwrap_or_default();
            assert!(
                !d.is_empty() && !d.contains('#') && !d.contains('\n'),
                "{t}: {d}"
            );
        }
        assert_eq!(description("nope"), None);
    }

    #[test]
    fn unknown_template_is_none() {
        assert_eq!(render("nope", "x"), None);
        assert_eq!(source("Minimal"), None);
    }

    #[test]
    fn hostile_names_stay_inside_the_comment() {
        let text = render("minimal", "x\n[base]\nimage = \"evil\"\r\0").unwrap_or_default();
        let m = parse_manifest(&text).unwrap();
        assert_eq!(m.base.image, "rolling");
        assert!(text.starts_with("# Karapace environment: x?[base]?image = \"evil\"??\n"));
    }

    #[test]
    fn demo_manifest_is_debian_with_curl() {
        let text = include_str!("../../../examples/debian-curl.toml");
        let n = parse_manifest(text).and_then(|m| m.normalize()).unwrap();
        assert_eq!(n.base_image, "debian/bookworm");
        assert_eq!(n.system_packages, ["curl"]);
    }
}
