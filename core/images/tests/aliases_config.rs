//! Alias table, URL handling, architecture mapping and server configuration precedence.

use karapace_images::{
    ALIASES, DEFAULT_SERVER, ImageConfig, ImageError, ImageRef, alias_target, is_pinned_url,
    map_machine_arch, parse_image_ref, require_pinned_image, server_from,
};

/// The table of formats.md, written out independently of the crate's constant.
const SPEC: &[(&str, &str)] = &[
    ("rolling", "opensuse/tumbleweed"),
    ("opensuse", "opensuse/tumbleweed"),
    ("opensuse/tumbleweed", "opensuse/tumbleweed"),
    ("tumbleweed", "opensuse/tumbleweed"),
    ("opensuse/leap", "opensuse/15.6"),
    ("leap", "opensuse/15.6"),
    ("ubuntu", "ubuntu/noble"),
    ("ubuntu/24.04", "ubuntu/noble"),
    ("ubuntu/noble", "ubuntu/noble"),
    ("ubuntu/22.04", "ubuntu/jammy"),
    ("ubuntu/jammy", "ubuntu/jammy"),
    ("ubuntu/24.10", "ubuntu/oracular"),
    ("ubuntu/oracular", "ubuntu/oracular"),
    ("ubuntu/20.04", "ubuntu/focal"),
    ("ubuntu/focal", "ubuntu/focal"),
    ("debian", "debian/bookworm"),
    ("debian/bookworm", "debian/bookworm"),
    ("debian/trixie", "debian/trixie"),
    ("debian/sid", "debian/sid"),
    ("fedora", "fedora/41"),
    ("fedora/41", "fedora/41"),
    ("fedora/40", "fedora/40"),
    ("fedora/42", "fedora/42"),
    ("arch", "archlinux/current"),
    ("archlinux", "archlinux/current"),
];

#[test]
fn every_spec_alias_maps_exactly_and_case_insensitively() {
    assert_eq!(
        ALIASES.len(),
        SPEC.len(),
        "alias table has extra or missing entries"
    );
    for (alias, target) in SPEC {
        assert_eq!(alias_target(alias), Some(*target), "{alias}");
        assert_eq!(
            alias_target(&alias.to_uppercase()),
            Some(*target),
            "{alias} uppercase"
        );
        assert_eq!(
            alias_target(&format!("  {alias}\t")),
            Some(*target),
            "{alias} padded"
        );
        let mixed: String = alias
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        match parse_image_ref(&mixed).unwrap() {
            ImageRef::Alias(d) => assert_eq!(d.path(), *target),
            other @ ImageRef::Url(_) => panic!("{mixed} parsed as {other:?}"),
        }
    }
}

#[test]
fn unknown_images_are_rejected_with_the_alias_list() {
    for bad in [
        "",
        "debian/buster",
        "ubuntu/18.04",
        "centos",
        "debian bookworm",
        "docker.io/debian",
        "ftp://x/y",
    ] {
        let err = parse_image_ref(bad).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::UnknownImage { .. } | ImageError::InvalidUrl { .. }
            ),
            "{bad}: {err}"
        );
    }
    let msg = parse_image_ref("centos").unwrap_err().to_string();
    assert!(
        msg.contains("debian/bookworm") && msg.contains("centos"),
        "{msg}"
    );
}

#[test]
fn urls_are_kept_byte_for_byte() {
    for url in [
        "https://Example.COM/Images/Debian/rootfs.TAR.XZ",
        "http://127.0.0.1:8080/x/20260220_04%3A20/rootfs.tar.xz",
        "HTTPS://mirror.example/A/B.tar.gz",
        "file:///var/cache/Karapace/rootfs.tar",
    ] {
        assert_eq!(
            parse_image_ref(&format!("  {url} ")).unwrap(),
            ImageRef::Url(url.to_string())
        );
    }
    for bad in [
        "https://",
        "http:///path",
        "file://relative/path",
        "https://host/with space",
    ] {
        assert!(
            matches!(parse_image_ref(bad), Err(ImageError::InvalidUrl { .. })),
            "{bad}"
        );
    }
}

#[test]
fn pinned_means_http_or_https_url_only() {
    assert!(is_pinned_url("https://images.example/rootfs.tar.xz"));
    assert!(is_pinned_url(" HTTP://images.example/rootfs.tar.xz"));
    assert!(require_pinned_image("http://127.0.0.1:1/r.tar.xz"));
    for not in [
        "debian",
        "debian/bookworm",
        "file:///x/rootfs.tar.xz",
        "ftp://x/y",
        "httpx://y",
        "",
    ] {
        assert!(!is_pinned_url(not), "{not}");
    }
}

#[test]
fn machine_architectures_map_to_server_names() {
    let cases = [
        ("x86_64", "amd64"),
        ("aarch64", "arm64"),
        ("armv7l", "armhf"),
        ("arm", "armhf"),
        ("armv6l", "armel"),
        ("i686", "i386"),
        ("x86", "i386"),
        ("ppc64le", "ppc64el"),
        ("s390x", "s390x"),
        ("riscv64", "riscv64"),
        ("loongarch64", "loongarch64"),
    ];
    for (machine, arch) in cases {
        assert_eq!(map_machine_arch(machine), Some(arch), "{machine}");
    }
    assert_eq!(map_machine_arch("mips"), None);
    let host = karapace_images::host_arch().unwrap();
    let expected = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => host,
    };
    assert_eq!(host, expected);
}

#[test]
fn server_precedence_env_then_config_file_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    assert_eq!(
        server_from(None, Some(&file)).unwrap(),
        DEFAULT_SERVER,
        "missing file"
    );
    assert_eq!(server_from(None, None).unwrap(), DEFAULT_SERVER);

    std::fs::write(&file, "other_key = 1\n[remote]\nurl = \"x\"\n").unwrap();
    assert_eq!(
        server_from(None, Some(&file)).unwrap(),
        DEFAULT_SERVER,
        "file without the key"
    );

    std::fs::write(&file, "image_server = \"https://Mirror.Example/lxc/\"\n").unwrap();
    assert_eq!(
        server_from(None, Some(&file)).unwrap(),
        "https://Mirror.Example/lxc"
    );
    assert_eq!(
        server_from(Some(""), Some(&file)).unwrap(),
        "https://Mirror.Example/lxc",
        "empty env ignored"
    );
    assert_eq!(
        server_from(Some("file:///srv/mirror/"), Some(&file)).unwrap(),
        "file:///srv/mirror"
    );

    std::fs::write(&file, "image_server = 3\n").unwrap();
    assert!(matches!(
        server_from(None, Some(&file)),
        Err(ImageError::Config { .. })
    ));
    std::fs::write(&file, "image_server = \"ftp://nope\"\n").unwrap();
    assert!(matches!(
        server_from(None, Some(&file)),
        Err(ImageError::Config { .. })
    ));
    std::fs::write(&file, "image_server = [unclosed\n").unwrap();
    assert!(matches!(
        server_from(None, Some(&file)),
        Err(ImageError::Config { .. })
    ));
    assert!(server_from(Some("not a url"), None).is_err());
}

#[test]
fn explicit_config_normalizes_the_server() {
    let cfg = ImageConfig::new("http://127.0.0.1:9/", "/tmp/c").unwrap();
    assert_eq!(cfg.server, "http://127.0.0.1:9");
    assert!(!cfg.offline);
    assert!(ImageConfig::new("images.example", "/tmp/c").is_err());
}

#[test]
fn a_misspelt_alias_gets_a_suggestion() {
    let err = parse_image_ref("debian/bookwrom").unwrap_err().to_string();
    assert!(err.contains("did you mean 'debian/bookworm'?"), "{err}");
    let err = parse_image_ref("ubunto").unwrap_err().to_string();
    assert!(err.contains("did you mean 'ubuntu'?"), "{err}");
}

/// `[image_aliases]` in the config file: a new distribution is one line, resolved after the
/// built-in table; built-ins cannot be redefined (that would change existing manifests'
/// images and `env_id`s without the user seeing it), and bad entries are config errors.
#[test]
fn config_file_image_aliases_extend_the_table_but_never_redefine_it() {
    use karapace_images::{UserAlias, parse_image_ref_with, user_aliases_from};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    assert!(
        user_aliases_from(Some(&file)).unwrap().is_empty(),
        "no file"
    );
    std::fs::write(
        &file,
        "image_server = \"https://x\"\n[image_aliases]\ngentoo = \"gentoo/openrc\"\nVoid = \"voidlinux/current\"\ndebian = \"debian/bookworm\"\n",
    )
    .unwrap();
    let user = user_aliases_from(Some(&file)).unwrap();
    let names: Vec<&str> = user.iter().map(|u| u.alias.as_str()).collect();
    assert_eq!(
        names,
        ["debian", "gentoo", "void"],
        "lowercased, sorted; same target allowed"
    );
    assert_eq!(
        parse_image_ref_with(" GENTOO ", &user).unwrap(),
        ImageRef::Alias(karapace_images::Distro {
            distro: "gentoo".into(),
            release: "openrc".into()
        })
    );
    // Without the config, the same name is unknown; with it, the error lists it.
    assert!(parse_image_ref("gentoo").is_err());
    let err = parse_image_ref_with("gentooo", &user)
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean 'gentoo'"), "{err}");

    for (line, expected) in [
        (
            "debian = \"debian/trixie\"",
            "is built in (-> debian/bookworm) and cannot be redefined",
        ),
        ("x = \"nodistro\"", "must be <distro>/<release>"),
        ("x = \"../etc\"", "must be <distro>/<release>"),
        ("x = \"a/b/c\"", "must be <distro>/<release>"),
        ("\"a:b\" = \"a/b\"", "use 1 to 64 of"),
        ("x = 3", "must be a string"),
        ("x = \"a/b\"\nX = \"a/c\"", "given twice"),
    ] {
        std::fs::write(&file, format!("[image_aliases]\n{line}\n")).unwrap();
        let err = user_aliases_from(Some(&file)).unwrap_err();
        assert!(matches!(err, ImageError::Config { .. }), "{line}: {err}");
        assert!(err.to_string().contains(expected), "{line}: {err}");
    }
    std::fs::write(&file, "image_aliases = \"gentoo\"\n").unwrap();
    assert!(user_aliases_from(Some(&file)).is_err());
    assert!(UserAlias::new("rolling", "opensuse/tumbleweed").is_ok());
}

/// A config alias resolves on a real image server layout (the test mirror over file://).
#[test]
fn a_config_alias_resolves_on_the_image_server() {
    let Some(mirror) = karapace_images::testing::fixture_mirror() else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let server = format!("file://{}", mirror.display());
    let mut cfg = ImageConfig::new(&server, cache.path()).unwrap();
    cfg.transfer.progress = false;
    cfg.user_aliases = vec![karapace_images::UserAlias::new("mydeb", "debian/bookworm").unwrap()];
    let by_alias = karapace_images::resolve("mydeb", &cfg).unwrap();
    let by_builtin = karapace_images::resolve("debian/bookworm", &cfg).unwrap();
    assert_eq!(by_alias.url, by_builtin.url);
    assert_eq!(by_alias.image, "mydeb");
}
