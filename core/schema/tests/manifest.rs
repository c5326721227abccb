//! Manifest parsing, validation, normalization and canonical JSON.

use std::io::Write as _;

use karapace_schema::{
    Backend, MAX_MANIFEST_BYTES, Manifest, ManifestError, ManifestErrorKind, MountSpec, NameError,
    load_manifest, parse_manifest,
};

const FULL: &str = r#"manifest_version = 1

[base]
image = "  debian/bookworm  "

[system]
packages = ["git", " curl ", "", "git", "build-essential"]

[gui]
apps = ["vlc", "firefox", "  "]

[hardware]
gpu = true
audio = true

[mounts]
workspace = " ./ : /workspace "
cache = "~/.cache:/root/.cache"

[runtime]
backend = " Namespace "
network_isolation = true

[runtime.resource_limits]
cpu_shares = 1024
memory_limit_mb = 4096
"#;

fn base_with(extra: &str) -> String {
    format!("manifest_version = 1\n[base]\nimage = \"debian\"\n{extra}")
}

/// Parses `text`, expects failure, returns (line, col, kind).
fn fail(text: &str) -> (usize, usize, ManifestErrorKind) {
    match parse_manifest(text) {
        Ok(m) => panic!("expected an error, got {m:?}"),
        Err(e) => {
            let (line, col) = e.line_col().unwrap_or_else(|| panic!("no position in {e}"));
            let kind = e.kind().cloned().unwrap_or_else(|| panic!("no kind: {e}"));
            (line, col, kind)
        }
    }
}

fn syntax(text: &str) -> (usize, usize, String) {
    match fail(text) {
        (l, c, ManifestErrorKind::Syntax { message }) => (l, c, message),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn full_manifest_normalizes() {
    let m = parse_manifest(FULL).unwrap();
    let n = m.normalize().unwrap();
    assert_eq!(n.manifest_version, 1);
    assert_eq!(n.base_image, "debian/bookworm");
    assert_eq!(n.system_packages, ["build-essential", "curl", "git"]);
    assert_eq!(n.gui_apps, ["firefox", "vlc"]);
    assert!(n.hardware_gpu && n.hardware_audio && n.network_isolation);
    assert_eq!(
        n.mounts,
        [
            MountSpec {
                label: "cache".into(),
                host_path: "~/.cache".into(),
                container_path: "/root/.cache".into()
            },
            MountSpec {
                label: "workspace".into(),
                host_path: "./".into(),
                container_path: "/workspace".into()
            },
        ]
    );
    assert_eq!(n.runtime_backend, Backend::Namespace);
    assert_eq!(n.cpu_shares, Some(1024));
    assert_eq!(n.memory_limit_mb, Some(4096));
    // The raw manifest keeps what was written.
    assert_eq!(m.base.image, "  debian/bookworm  ");
    assert_eq!(m.runtime.backend.as_deref(), Some(" Namespace "));
}

#[test]
fn minimal_manifest_gets_defaults() {
    let n = parse_manifest("manifest_version = 1\n[base]\nimage = \"arch\"\n")
        .unwrap()
        .normalize()
        .unwrap();
    assert_eq!(n.base_image, "arch");
    assert!(n.system_packages.is_empty() && n.gui_apps.is_empty() && n.mounts.is_empty());
    assert!(!n.hardware_gpu && !n.hardware_audio && !n.network_isolation);
    assert_eq!(n.runtime_backend, Backend::Namespace);
    assert_eq!((n.cpu_shares, n.memory_limit_mb), (None, None));
}

#[test]
fn urls_keep_their_case() {
    let url = "https://Images.Example.org/Debian/RootFS.tar.xz";
    let n = parse_manifest(&format!(
        "manifest_version = 1\n[base]\nimage = \" {url} \"\n"
    ))
    .unwrap()
    .normalize()
    .unwrap();
    assert_eq!(n.base_image, url);
}

#[test]
fn unknown_keys_are_rejected_at_every_level_with_position() {
    let cases: [(&str, usize, usize, &str); 7] = [
        ("colour = 1\n", 4, 1, "colour"),
        ("tag = \"x\"\n", 4, 1, "tag"), // still in [base]
        ("[system]\npackages = []\npkgs = []\n", 6, 1, "pkgs"),
        ("[gui]\napp = []\n", 5, 1, "app"),
        ("[hardware]\ngpu = true\nusb = true\n", 6, 1, "usb"),
        (
            "[runtime]\nbackend = \"mock\"\nprivileged = true\n",
            6,
            1,
            "privileged",
        ),
        ("[runtime.resource_limits]\n  cpu = 2\n", 5, 3, "cpu"),
    ];
    for (extra, line, col, key) in cases {
        let (l, c, msg) = syntax(&base_with(extra));
        assert_eq!((l, c), (line, col), "{extra:?}: {msg}");
        assert!(msg.contains(&format!("unknown field `{key}`")), "{msg}");
    }
    let (l, c, msg) = syntax("manifest_version = 1\nextra = true\n[base]\nimage = \"d\"\n");
    assert_eq!((l, c), (2, 1));
    assert!(msg.contains("unknown field `extra`"), "{msg}");
    let (l, c, msg) = syntax(&base_with("[network]\nmode = \"host\"\n"));
    assert_eq!((l, c), (4, 2), "{msg}"); // points at the table name inside `[...]`
    assert!(msg.contains("unknown field `network`"), "{msg}");
}

#[test]
fn any_key_is_a_mount_label() {
    let n = parse_manifest(&base_with(
        "[mounts]\n\"my data\" = \"/srv:/data\"\nbackend = \"/b:/b\"\n\"ü\" = \"/u:/u\"\n",
    ))
    .unwrap()
    .normalize()
    .unwrap();
    let labels: Vec<&str> = n.mounts.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(labels, ["backend", "my data", "ü"]);
}

#[test]
fn wrong_types_report_line_and_column() {
    let cases: [(String, usize, usize, &str); 11] = [
        (
            "manifest_version = \"1\"\n[base]\nimage = \"d\"\n".into(),
            1,
            20,
            "expected an integer",
        ),
        (
            "manifest_version = 1\n[base]\nimage = 5\n".into(),
            3,
            9,
            "expected a string",
        ),
        ("manifest_version = 1\nbase = \"debian\"\n".into(), 2, 8, ""),
        (base_with("[system]\npackages = \"git\"\n"), 5, 12, ""),
        (
            base_with("[system]\npackages = [\"git\", 3]\n"),
            5,
            20,
            "expected a string",
        ),
        (
            base_with("[hardware]\ngpu = \"yes\"\n"),
            5,
            7,
            "expected a boolean",
        ),
        (
            base_with("[runtime]\nnetwork_isolation = 1\n"),
            5,
            21,
            "expected a boolean",
        ),
        (
            base_with("[runtime.resource_limits]\ncpu_shares = -1\n"),
            5,
            14,
            "expected a non-negative integer",
        ),
        (
            base_with("[runtime.resource_limits]\nmemory_limit_mb = 1.5\n"),
            5,
            19,
            "",
        ),
        (base_with("[mounts]\ndata = 5\n"), 5, 8, "expected a string"),
        (
            base_with("[runtime]\nbackend = true\n"),
            5,
            11,
            "expected a string",
        ),
    ];
    for (text, line, col, needle) in cases {
        let (l, c, msg) = syntax(&text);
        assert_eq!((l, c), (line, col), "{text:?}: {msg}");
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert!(!msg.contains("i64") && !msg.contains("u64"), "{msg}");
    }
}

#[test]
fn toml_syntax_errors_have_positions() {
    let (l, c, _) = syntax("manifest_version = 1\n[base\n");
    assert_eq!((l, c), (2, 6));
    let (l, c, msg) = syntax("manifest_version = 1\n[base]\nimage = \"a\"\nimage = \"b\"\n");
    assert_eq!((l, c), (4, 1));
    assert!(msg.contains("duplicate key"), "{msg}");
    let (l, _, _) = syntax("manifest_version = 1\n[base]\nimage = \"unterminated\n");
    assert_eq!(l, 3);
}

#[test]
fn missing_required_keys() {
    let (_, _, msg) = syntax("[base]\nimage = \"d\"\n");
    assert!(msg.contains("missing field `manifest_version`"), "{msg}");
    let (_, _, msg) = syntax("manifest_version = 1\n");
    assert!(msg.contains("missing field `base`"), "{msg}");
    let (_, _, msg) = syntax("manifest_version = 1\n[base]\n");
    assert!(msg.contains("missing field `image`"), "{msg}");
    let (_, _, msg) = syntax("");
    assert!(msg.contains("missing field"), "{msg}");
}

#[test]
fn manifest_version_must_be_one() {
    for (v, col) in [("0", 20), ("2", 20), ("-1", 20), ("  99", 22)] {
        let (l, c, kind) = fail(&format!("manifest_version = {v}\n[base]\nimage = \"d\"\n"));
        assert_eq!((l, c), (1, col));
        assert_eq!(
            kind,
            ManifestErrorKind::UnsupportedVersion {
                found: v.trim().parse().unwrap()
            }
        );
    }
}

#[test]
fn empty_base_image_is_rejected_where_written() {
    for image in ["\"\"", "\"   \"", "\"\\t\\n\""] {
        let (l, c, kind) = fail(&format!(
            "manifest_version = 1\n\n[base]\nimage = {image}\n"
        ));
        assert_eq!((l, c), (4, 9));
        assert_eq!(kind, ManifestErrorKind::EmptyBaseImage);
    }
}

#[test]
fn bad_mounts() {
    let cases: [(&str, &str); 8] = [
        ("data = \"/srv/data\"", "no ':' separator"),
        ("data = \":/data\"", "host path is empty"),
        ("data = \"  :/data\"", "host path is empty"),
        ("data = \"/srv:\"", "container path is empty"),
        ("data = \"/srv:   \"", "container path is empty"),
        ("data = \"\"", "no ':' separator"),
        ("data = \"/srv\\u0000x:/data\"", "control characters"),
        ("data = \"/srv:/da\\nta\"", "control characters"),
    ];
    for (line, reason) in cases {
        let (l, c, kind) = fail(&base_with(&format!("[mounts]\n{line}\n")));
        assert_eq!((l, c), (5, 8), "{line}");
        match kind {
            ManifestErrorKind::InvalidMount {
                label, reason: r, ..
            } => {
                assert_eq!(label, "data");
                assert!(r.contains(reason), "{line}: {r}");
            }
            other => panic!("{line}: {other:?}"),
        }
    }
    let (l, c, kind) = fail(&base_with("[mounts]\n\"  \" = \"/a:/b\"\n"));
    assert_eq!((l, c, kind), (5, 8, ManifestErrorKind::EmptyMountLabel));
    let (_, _, kind) = fail(&base_with("[mounts]\n\"a:b\" = \"/a:/b\"\n"));
    assert!(
        matches!(kind, ManifestErrorKind::InvalidMountLabel { .. }),
        "{kind:?}"
    );
    let (_, _, kind) = fail(&base_with("[mounts]\n\"a\\u0000\" = \"/a:/b\"\n"));
    assert!(
        matches!(kind, ManifestErrorKind::InvalidMountLabel { .. }),
        "{kind:?}"
    );
    let (_, _, kind) = fail(&base_with(
        "[mounts]\ndata = \"/a:/b\"\n\" data \" = \"/c:/d\"\n",
    ));
    assert_eq!(
        kind,
        ManifestErrorKind::DuplicateMountLabel {
            label: "data".into()
        }
    );
}

#[test]
fn mount_splits_at_first_colon_only() {
    let n = parse_manifest(&base_with("[mounts]\nx = \" /h : /c:with:colons \"\n"))
        .unwrap()
        .normalize()
        .unwrap();
    assert_eq!(n.mounts[0].host_path, "/h");
    assert_eq!(n.mounts[0].container_path, "/c:with:colons");
}

#[test]
fn backends() {
    for (raw, b) in [
        ("namespace", Backend::Namespace),
        (" OCI ", Backend::Oci),
        ("Mock", Backend::Mock),
        ("\tMOCK\n", Backend::Mock),
    ] {
        let text = base_with(&format!("[runtime]\nbackend = {raw:?}\n"));
        let n = parse_manifest(&text).unwrap().normalize().unwrap();
        assert_eq!(n.runtime_backend, b, "{raw:?}");
    }
    for raw in ["docker", "", "  ", "name space", "podman"] {
        let (l, c, kind) = fail(&base_with(&format!("[runtime]\nbackend = {raw:?}\n")));
        assert_eq!((l, c), (5, 11));
        assert_eq!(
            kind,
            ManifestErrorKind::InvalidBackend { value: raw.into() }
        );
    }
}

#[test]
fn hostile_package_names_are_manifest_errors() {
    const ARGV: &str =
        "any character except whitespace, control characters and invisible formatting characters";
    let cases: [(&str, &str, NameError); 6] = [
        ("\"-rf\"", "-rf", NameError::LeadingDash),
        ("\"  --force-yes \"", "--force-yes", NameError::LeadingDash),
        (
            "\"\\u0000\"",
            "\0",
            NameError::InvalidChar {
                ch: '\0',
                index: 0,
                allowed: ARGV,
            },
        ),
        (
            "\"curl 7.1\"",
            "curl 7.1",
            NameError::InvalidChar {
                ch: ' ',
                index: 4,
                allowed: ARGV,
            },
        ),
        (
            "\"a\\u001b[2J\"",
            "a\u{1b}[2J",
            NameError::InvalidChar {
                ch: '\u{1b}',
                index: 1,
                allowed: ARGV,
            },
        ),
        (
            "\"vim\\u202emit\"",
            "vim\u{202e}mit",
            NameError::InvalidChar {
                ch: '\u{202e}',
                index: 3,
                allowed: ARGV,
            },
        ),
    ];
    for (lit, name, reason) in cases {
        let (l, c, kind) = fail(&base_with(&format!(
            "[system]\npackages = [\"ok\",\n  {lit}]\n"
        )));
        assert_eq!((l, c), (6, 3), "{lit}");
        assert_eq!(
            kind,
            ManifestErrorKind::InvalidPackage {
                name: name.into(),
                reason
            }
        );
    }
    for bad in ["a b", "x\\ny", "a\\tb"] {
        let (_, _, kind) = fail(&base_with(&format!("[system]\npackages = [\"{bad}\"]\n")));
        assert!(
            matches!(kind, ManifestErrorKind::InvalidPackage { .. }),
            "{bad}: {kind:?}"
        );
    }
    // Everything else is the resolver plugin's grammar (a Gentoo atom, a
    // Debian arch qualifier): the manifest accepts it, the plugin decides.
    let text =
        base_with("[system]\npackages = [\"=app-editors/vim-9.1\", \"libc6:i386\", \"a;b\"]\n");
    let m = parse_manifest(&text).unwrap();
    assert_eq!(
        m.normalize().unwrap().system_packages,
        ["=app-editors/vim-9.1", "a;b", "libc6:i386"]
    );
    assert_eq!(
        m.package_location("libc6:i386").map(|l| (l.line, l.col)),
        Some((5, 37))
    );
    assert_eq!(m.package_location("nope"), None);
    // GUI app names also name exported desktop entries: the portable grammar.
    for bad in ["a/b", "a;b", "ñandú"] {
        let (_, _, kind) = fail(&base_with(&format!("[gui]\napps = [\"{bad}\"]\n")));
        assert!(
            matches!(kind, ManifestErrorKind::InvalidApp { .. }),
            "{bad}: {kind:?}"
        );
    }
    let (l, c, kind) = fail(&base_with("[gui]\napps = [\"-x\"]\n"));
    assert_eq!((l, c), (5, 9));
    assert!(
        matches!(kind, ManifestErrorKind::InvalidApp { .. }),
        "{kind:?}"
    );
    // The message names the offending package.
    let e = parse_manifest(&base_with("[system]\npackages = [\"-rf\"]\n")).unwrap_err();
    assert!(e.to_string().contains("\"-rf\""), "{e}");
    assert!(e.to_string().starts_with("line 5, column 13: "), "{e}");
}

#[test]
fn columns_count_characters_not_bytes() {
    // "ééé" is 6 bytes but 3 columns.
    let (l, c, _) =
        fail("manifest_version = 1\n[base]\nimage = \"d\" # ééé\n[runtime]\n\"é\" = 1\n");
    assert_eq!((l, c), (5, 1));
    let (l, c, kind) = fail(&base_with("[mounts]\n\"ü\" = \"nocolon\"\n"));
    assert_eq!((l, c), (5, 7));
    assert!(matches!(kind, ManifestErrorKind::InvalidMount { .. }));
}

#[test]
fn unicode_values_where_allowed() {
    let n = parse_manifest(
        "manifest_version = 1\n[base]\nimage = \"https://例え.jp/rootfs.tar.xz\"\n[mounts]\nmusik = \"~/Müsik:/home/user/Müsik\"\n",
    )
    .unwrap()
    .normalize()
    .unwrap();
    assert_eq!(n.base_image, "https://例え.jp/rootfs.tar.xz");
    assert_eq!(n.mounts[0].host_path, "~/Müsik");
}

#[test]
fn huge_lists() {
    let names: Vec<String> = (0..20_000)
        .map(|i| format!("\"pkg{}\"", i % 10_000))
        .collect();
    let text = base_with(&format!("[system]\npackages = [{}]\n", names.join(",")));
    let n = parse_manifest(&text).unwrap().normalize().unwrap();
    assert_eq!(n.system_packages.len(), 10_000);
    assert!(n.system_packages.windows(2).all(|w| w[0] < w[1]));
    // The last of many is still located precisely.
    let mut names: Vec<String> = (0..5_000).map(|i| format!("\"p{i}\"")).collect();
    names.push("\"-bad\"".into());
    let text = base_with(&format!(
        "[system]\npackages = [\n{}\n]\n",
        names.join(",\n")
    ));
    let (l, c, _) = fail(&text);
    assert_eq!((l, c), (5_006, 1));
}

#[test]
fn canonical_json_exact_bytes() {
    let n = parse_manifest(FULL).unwrap().normalize().unwrap();
    assert_eq!(
        n.canonical_json(),
        concat!(
            r#"{"manifest_version":1,"base_image":"debian/bookworm","#,
            r#""system_packages":["build-essential","curl","git"],"gui_apps":["firefox","vlc"],"#,
            r#""hardware_gpu":true,"hardware_audio":true,"#,
            r#""mounts":[{"label":"cache","host_path":"~/.cache","container_path":"/root/.cache"},"#,
            r#"{"label":"workspace","host_path":"./","container_path":"/workspace"}],"#,
            r#""runtime_backend":"namespace","network_isolation":true,"cpu_shares":1024,"memory_limit_mb":4096}"#
        )
    );
    let minimal = parse_manifest("manifest_version = 1\n[base]\nimage = \"d\"\n")
        .unwrap()
        .normalize()
        .unwrap();
    assert_eq!(
        minimal.canonical_json(),
        r#"{"manifest_version":1,"base_image":"d","system_packages":[],"gui_apps":[],"hardware_gpu":false,"hardware_audio":false,"mounts":[],"runtime_backend":"namespace","network_isolation":false,"cpu_shares":null,"memory_limit_mb":null}"#
    );
}

#[test]
fn canonical_json_matches_serde_rendering_and_hash() {
    let tricky = "manifest_version = 1\n[base]\nimage = \"a\\\"b\\\\c\\u0001 é 😀\"\n[mounts]\n\"q\\\"\" = \"/x\\\\y:/z\"\n";
    for text in [FULL, tricky] {
        let n = parse_manifest(text).unwrap().normalize().unwrap();
        let json = n.canonical_json();
        // What the standard tool hashes: serde_json of the struct.
        assert_eq!(json, serde_json::to_string(&n).unwrap());
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["base_image"], n.base_image.as_str());
        let hash = n.manifest_hash();
        assert_eq!(hash, blake3::hash(json.as_bytes()).to_hex().to_string());
        assert_eq!(hash.len(), 64);
    }
}

#[test]
fn equivalent_manifests_share_a_hash_and_different_ones_do_not() {
    let a = parse_manifest(&base_with("[system]\npackages = [\"b\", \"a\"]\n"))
        .unwrap()
        .normalize()
        .unwrap();
    let b = parse_manifest(&base_with("[system]\npackages = [\" a\", \"b \", \"a\"]\n"))
        .unwrap()
        .normalize()
        .unwrap();
    let c = parse_manifest(&base_with("[system]\npackages = [\"a\"]\n"))
        .unwrap()
        .normalize()
        .unwrap();
    assert_eq!(a.manifest_hash(), b.manifest_hash());
    assert_ne!(a.manifest_hash(), c.manifest_hash());
}

#[test]
fn manifest_round_trips_through_toml() {
    let m = parse_manifest(FULL).unwrap();
    let again = parse_manifest(&m.to_toml_string()).unwrap();
    assert_eq!(again, m);
    let n = m.normalize().unwrap();
    assert_eq!(
        parse_manifest(&n.to_manifest().to_toml_string())
            .unwrap()
            .normalize()
            .unwrap(),
        n
    );
}

#[test]
fn manifests_built_in_code_are_validated_without_positions() {
    let mut m = Manifest::default();
    assert_eq!(
        m.normalize().unwrap_err().kind(),
        Some(&ManifestErrorKind::UnsupportedVersion { found: 0 })
    );
    m = Manifest::new("  ");
    let e = m.normalize().unwrap_err();
    assert_eq!(e.kind(), Some(&ManifestErrorKind::EmptyBaseImage));
    assert_eq!(e.line_col(), None);
    m.base.image = "debian".into();
    m.system.packages = vec!["-x".into()];
    assert!(matches!(
        m.normalize().unwrap_err().kind(),
        Some(ManifestErrorKind::InvalidPackage { .. })
    ));
}

#[test]
fn load_manifest_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("karapace.toml");
    std::fs::write(&path, FULL).unwrap();
    assert_eq!(load_manifest(&path).unwrap(), parse_manifest(FULL).unwrap());

    std::fs::write(&path, base_with("[system]\npackages = [\"-rf\"]\n")).unwrap();
    let e = load_manifest(&path).unwrap_err();
    assert_eq!(e.line_col(), Some((5, 13)));
    assert!(
        e.to_string()
            .starts_with(&format!("{}:5:13: invalid package name", path.display())),
        "{e}"
    );

    let missing = dir.path().join("nope.toml");
    let e = load_manifest(&missing).unwrap_err();
    assert!(matches!(e, ManifestError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("nope.toml"), "{e}");

    let e = load_manifest(dir.path()).unwrap_err();
    assert!(matches!(e, ManifestError::Read { .. }), "{e:?}");
}

#[test]
fn load_manifest_rejects_non_utf8_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("karapace.toml");
    std::fs::write(&path, b"manifest_version = 1\n[base]\nimage = \"d\xffx\"\n").unwrap();
    let e = load_manifest(&path).unwrap_err();
    assert_eq!(e.kind(), Some(&ManifestErrorKind::NotUtf8));
    assert_eq!(e.line_col(), Some((3, 11)));
}

#[test]
fn load_manifest_caps_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("karapace.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(b"manifest_version = 1\n").unwrap();
    // Sparse: cheap to create, but larger than the cap.
    f.set_len(MAX_MANIFEST_BYTES + 1).unwrap();
    let e = load_manifest(&path).unwrap_err();
    assert_eq!(
        e.kind(),
        Some(&ManifestErrorKind::TooLarge {
            max: MAX_MANIFEST_BYTES
        })
    );
}

#[test]
fn every_manifest_error_is_exit_code_two() {
    assert_eq!(ManifestError::EXIT_CODE, 2);
    assert_eq!(karapace_schema::LockError::EXIT_CODE, 1);
}

#[test]
fn rewrite_base_image_keeps_everything_else() {
    let text = "# my env\nmanifest_version = 1\n\n[base]\nimage = 'debian/bookworm'   # alias\n\n[system]\npackages = [\"curl\"] # keep\n";
    let url = "https://images.example.org/images/debian/bookworm/amd64/default/20260220_04%3A20/rootfs.tar.xz";
    let out = karapace_schema::rewrite_base_image(text, url).unwrap();
    assert_eq!(
        out,
        text.replace("'debian/bookworm'", &format!("\"{url}\""))
    );
    assert_eq!(parse_manifest(&out).unwrap().base.image, url);
    // Quotes in the new value are escaped, not injected.
    let out = karapace_schema::rewrite_base_image(text, "a\"\n[x]").unwrap();
    assert_eq!(parse_manifest(&out).unwrap().base.image, "a\"\n[x]");
    // Invalid input or output is refused.
    assert!(karapace_schema::rewrite_base_image("manifest_version = 1\n", url).is_err());
    assert!(karapace_schema::rewrite_base_image(text, "  ").is_err());
}

#[test]
fn normalized_manifest_serde_round_trip() {
    let n = parse_manifest(FULL).unwrap().normalize().unwrap();
    let back: karapace_schema::NormalizedManifest =
        serde_json::from_str(&n.canonical_json()).unwrap();
    assert_eq!(back, n);
}

#[test]
fn a_misspelt_key_gets_a_suggestion() {
    let err = karapace_schema::parse_manifest(
        "manifest_version = 1\n[base]\nimage = \"debian\"\n[sytem]\npackages = []\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `sytem`"), "{err}");
    assert!(err.contains("did you mean `system`?"), "{err}");
    let err = karapace_schema::parse_manifest(
        "manifest_version = 1\n[base]\nimage = \"debian\"\n[system]\npackage = []\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("did you mean `packages`?"), "{err}");
    // Nothing close: no guess.
    let err = karapace_schema::parse_manifest(
        "manifest_version = 1\n[base]\nimage = \"debian\"\n[zzzzqqq]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(!err.contains("did you mean"), "{err}");
}
