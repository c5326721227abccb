//! Issue 20, "done when": the Gentoo example plugin (examples/plugin-emerge, WIT 1.1) resolves
//! category atoms end to end. A busybox root file system with a fake `emerge` and `qlist`
//! (shell scripts that keep Portage's package database layout) is served as
//! `gentoo/openrc`; the alias `gentoo` exists only as one line of the user's config file
//! (`[image_aliases]`), and the plugin only as a file `karapace plugin install` put into
//! `$XDG_DATA_HOME/karapace/plugins`. The build must hand `app-editors/vim` and
//! `=dev-lang/perl-5.38.2-r3` to emerge unchanged and lock them with the versions `qlist -Iv`
//! reports. No Debian mirror needed; runs as root and as the unprivileged user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use karapace_images::testing::{MirrorImage, TestServer, write_mirror};
use karapace_tests::{Karapace, LockInfo, TestDir};

/// Records its arguments, and "installs" the two known packages into /var/db/pkg.
const FAKE_EMERGE: &str = r#"#!/bin/sh
echo "emerge $*" >> /var/log/fake-emerge.log
for a in "$@"; do
  case "$a" in
    app-editors/vim) mkdir -p /var/db/pkg/app-editors/vim-9.1.0366 ;;
    =dev-lang/perl-5.38.2-r3) mkdir -p /var/db/pkg/dev-lang/perl-5.38.2-r3 ;;
    -*) ;;
    *) echo "emerge: there are no ebuilds to satisfy \"$a\"" >&2; exit 1 ;;
  esac
done
"#;

/// `qlist -Iv`: `cat/pkg-version` per installed package, as Portage's qlist prints it.
const FAKE_QLIST: &str = r#"#!/bin/sh
cd /var/db/pkg && for d in */*; do echo "$d"; done
"#;

fn gentoo_like_image(dir: &Path) -> Vec<u8> {
    let root = dir.join("rootfs");
    for d in [
        "bin",
        "usr/bin",
        "etc",
        "root",
        "tmp",
        "var/log",
        "var/db/pkg/sys-apps/baselayout-2.15",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    let list = Command::new("/usr/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    for (name, script) in [("emerge", FAKE_EMERGE), ("qlist", FAKE_QLIST)] {
        let path = root.join("usr/bin").join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    assert!(out.status.success(), "tar failed");
    out.stdout
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
fn category_atoms_reach_the_emerge_plugin_and_the_lock() {
    let dir = TestDir::new("e2e-emerge");
    let mirror = dir.path().join("mirror");
    write_mirror(
        &mirror,
        &[MirrorImage {
            distro: "gentoo",
            release: "openrc",
            arch: karapace_images::host_arch().expect("known architecture"),
            build: "20261204_00:00",
            archive: &gentoo_like_image(dir.path()),
            published_sha256: None,
        }],
        true,
    )
    .expect("write mirror");
    let server = TestServer::serve(&mirror).expect("serve mirror");

    // The user's own alias (one config line) and plugin directory.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config/karapace")).unwrap();
    std::fs::write(
        home.join(".config/karapace/config.toml"),
        "[image_aliases]\ngentoo = \"gentoo/openrc\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let k = Karapace::new(&dir)
        .image_server(server.url())
        .env("HOME", &home)
        .env("XDG_DATA_HOME", &data);
    let emerge = repo("examples/plugin-emerge/dist/emerge.wasm");
    k.ok(&["plugin", "install", &emerge.to_string_lossy()]);
    assert!(data.join("karapace/plugins/emerge.wasm").is_file());

    let manifest = dir.write_project_file(
        "karapace.toml",
        "manifest_version = 1\n\n[base]\nimage = \"gentoo\"\n\n[system]\npackages = [\"app-editors/vim\", \"=dev-lang/perl-5.38.2-r3\"]\n",
    );
    let out = k.ok(&["-v", "--json", "build", &manifest.to_string_lossy()]);
    let env = out.json()["env_id"].as_str().expect("env_id").to_owned();
    assert!(
        out.stderr_str().contains("package manager: emerge"),
        "{out}"
    );

    let lock = LockInfo::read(&manifest.with_file_name("karapace.lock"));
    assert_eq!(lock.base_image, "gentoo");
    assert_eq!(
        lock.packages.get("app-editors/vim").map(String::as_str),
        Some("9.1.0366"),
        "{}",
        lock.text
    );
    assert_eq!(
        lock.packages
            .get("=dev-lang/perl-5.38.2-r3")
            .map(String::as_str),
        Some("5.38.2-r3"),
        "{}",
        lock.text
    );

    // A name outside Portage's grammar is the manifest's error, naming the plugin once.
    let bad = dir.write_project_file(
        "bad.toml",
        "manifest_version = 1\n\n[base]\nimage = \"gentoo\"\n\n[system]\npackages = [\"app-editors/vim!\"]\n",
    );
    let out = k.run(&["build", &bad.to_string_lossy()]);
    out.assert_code(2);
    let err = out.stderr_str();
    assert!(
        err.contains("invalid package name 'app-editors/vim!' for emerge: \"app-editors/vim!\" is not a Portage atom"),
        "{out}"
    );
    assert_eq!(err.matches("emerge").count(), 1, "{out}");

    // The atoms reached emerge exactly as written (in the manifest's normalized, sorted order).
    let log = k.exec(&env, &["cat", "/var/log/fake-emerge.log"]);
    log.assert_success();
    assert_eq!(
        log.stdout_str(),
        "emerge --sync --quiet\nemerge --quiet --noreplace =dev-lang/perl-5.38.2-r3 app-editors/vim\n",
        "{log}"
    );
}
