use std::os::unix::fs::symlink;

use super::*;

/// Writes `text` at `root/rel`, creating its parents.
fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("a relative path has a parent")).expect("mkdir");
    fs::write(&p, text).expect("write");
}

fn exists(root: &Path, rel: &str) -> bool {
    fs::symlink_metadata(root.join(rel)).is_ok()
}

/// `clean_upper` with the plain remover, checking every path it is handed lies in the upper.
fn clean(upper: &Path) -> Vec<String> {
    let mut remove = |p: &Path| {
        assert!(
            p.starts_with(upper),
            "asked to remove {} outside the upper",
            p.display()
        );
        remove_entry(p)
    };
    clean_upper(upper, &mut remove)
        .expect("clean_upper")
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn build_state_and_secrets_go_and_package_state_stays() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let up = tmp.path();
    let gone = [
        "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
        "var/lib/apt/lists/lock",
        "var/lib/apt/lists/partial/half-downloaded",
        "var/lib/apt/lists/auxfiles/x",
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
        "var/cache/apt/archives/curl_7.88.1_amd64.deb",
        "var/cache/ldconfig/aux-cache",
        "var/log/dpkg.log",
        "var/log/alternatives.log",
        "var/log/apt/history.log",
        "var/log/apt/eipp.log.xz",
        "etc/ssh/ssh_host_ed25519_key",
        "etc/ssh/ssh_host_ed25519_key.pub",
        "etc/ssh/ssh_host_rsa_key",
        "etc/ssl/private/ssl-cert-snakeoil.key",
        "etc/ssl/certs/ssl-cert-snakeoil.pem",
        "etc/machine-id",
        "var/lib/dbus/machine-id",
        "var/lib/postgresql/15/main/PG_VERSION",
        "var/lib/postgresql/15/main/global/pg_control",
        "var/lib/postgresql/15/main/base/1/112",
        "etc/postgresql/15/main/postgresql.conf",
    ];
    let kept = [
        "var/lib/dpkg/status",
        "var/lib/apt/extended_states",
        "var/cache/debconf/config.dat",
        "var/cache/ldconfig/other",
        "etc/ld.so.cache",
        "etc/ssh/sshd_config",
        "etc/ssh/moduli",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/shadow",
        "var/log/nginx/access.log",
        "var/lib/postgresql/.psql_history",
        "etc/postgresql-common/createcluster.conf",
    ];
    for rel in gone.iter().chain(&kept) {
        put(up, rel, "x");
    }
    symlink("ssl-cert-snakeoil.pem", up.join("etc/ssl/certs/62742064.0")).expect("symlink");
    symlink("ca-certificates.crt", up.join("etc/ssl/certs/0a1b2c3d.0")).expect("symlink");

    let removed = clean(up);

    for rel in gone {
        assert!(!exists(up, rel), "{rel} is still in the upper");
        // A tree that goes as a whole is reported once, at its root.
        assert!(
            removed.iter().any(|r| Path::new(rel).starts_with(r)),
            "{rel} not reported: {removed:?}"
        );
    }
    for rel in kept {
        assert!(exists(up, rel), "{rel} was removed");
    }
    assert!(
        !exists(up, "etc/ssl/certs/62742064.0"),
        "the snakeoil hash link stayed"
    );
    assert!(
        exists(up, "etc/ssl/certs/0a1b2c3d.0"),
        "another hash link went"
    );
    // Directories below the caches stay (what apt set up); whole clusters go.
    for dir in [
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives",
        "var/log/apt",
    ] {
        assert!(up.join(dir).is_dir(), "{dir} was removed");
    }
    for dir in ["var/lib/postgresql/15/main", "etc/postgresql/15/main"] {
        assert!(!exists(up, dir), "{dir} is still there");
    }
    assert!(up.join("var/lib/postgresql/15").is_dir());
    let mut sorted = removed.clone();
    sorted.sort();
    assert_eq!(removed, sorted, "the report is not sorted");
}

#[test]
fn an_empty_upper_and_missing_directories_are_fine() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(clean(tmp.path()).is_empty());
    // A file where a rule expects a directory is not entered.
    put(tmp.path(), "var/lib", "not a directory");
    put(tmp.path(), "etc/ssh", "not a directory");
    assert!(clean(tmp.path()).is_empty());
    assert!(exists(tmp.path(), "etc/ssh"));
}

#[test]
fn symlinks_are_removed_never_followed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let up = tmp.path().join("upper");
    let host = tmp.path().join("host");
    // What a hostile package would like the build to delete on the host.
    for rel in [
        "secret",
        "dir/dpkg.log",
        "dir/pkgcache.bin",
        "dir/main/PG_VERSION",
        "var/log/dpkg.log",
        "var/log/apt/history.log",
        "key",
    ] {
        put(&host, rel, "host data");
    }
    fs::create_dir_all(up.join("etc/ssh")).expect("mkdir");
    fs::create_dir_all(up.join("var/lib/apt")).expect("mkdir");
    fs::create_dir_all(up.join("var/lib/postgresql/15")).expect("mkdir");
    fs::create_dir_all(up.join("etc/postgresql")).expect("mkdir");
    // A link where a file rule matches: the link goes, its target stays.
    symlink(host.join("key"), up.join("etc/ssh/ssh_host_rsa_key")).expect("symlink");
    // A link where a directory rule expects a directory: not entered (nor removed: it is the
    // package's layout, and deterministic).
    symlink(host.join("dir"), up.join("var/cache")).expect("symlink");
    symlink(host.join("dir"), up.join("var/lib/apt/lists")).expect("symlink");
    // A link as an intermediate component.
    symlink(&host, up.join("etc/postgresql/15")).expect("symlink");
    // A link where a whole tree goes: the link itself goes.
    symlink(host.join("dir/main"), up.join("var/lib/postgresql/15/main")).expect("symlink");
    // `var` itself a link into the host: nothing below it is touched.
    let up2 = tmp.path().join("upper2");
    fs::create_dir_all(&up2).expect("mkdir");
    symlink(host.join("var"), up2.join("var")).expect("symlink");

    let removed = clean(&up);
    assert_eq!(
        removed,
        ["etc/ssh/ssh_host_rsa_key", "var/lib/postgresql/15/main"],
        "unexpected removals"
    );
    assert!(clean(&up2).is_empty());

    for rel in [
        "secret",
        "dir/dpkg.log",
        "dir/pkgcache.bin",
        "dir/main/PG_VERSION",
        "var/log/dpkg.log",
        "var/log/apt/history.log",
        "key",
    ] {
        assert_eq!(
            fs::read_to_string(host.join(rel)).expect("host file"),
            "host data",
            "{rel} outside the upper was touched"
        );
    }
    assert!(fs::symlink_metadata(up.join("var/cache")).is_ok_and(|m| m.file_type().is_symlink()));
}

#[test]
fn deeply_nested_trees_are_removed_without_recursion() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let up = tmp.path();
    let mut deep = String::from("var/lib/postgresql/15/main");
    for _ in 0..200 {
        deep.push_str("/d");
    }
    put(up, &format!("{deep}/file"), "x");
    put(up, "var/lib/apt/lists/a/b/c/d/e/f", "x");
    let removed = clean(up);
    assert!(!exists(up, "var/lib/postgresql/15/main"));
    assert!(!exists(up, "var/lib/apt/lists/a/b/c/d/e/f"));
    assert!(up.join("var/lib/apt/lists/a/b/c/d/e").is_dir());
    // The cluster as one tree, and the list file.
    assert_eq!(removed.len(), 2, "{removed:?}");
}

#[test]
fn whiteouts_stay_outside_removed_trees() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let up = tmp.path();
    put(up, "var/log/dpkg.log", "");
    put(up, "var/lib/postgresql/15/main/gone", "");
    let marked = [
        up.join("var/log/dpkg.log"),
        up.join("var/lib/postgresql/15/main/gone"),
    ];
    for p in &marked {
        if xattr::set(p, "user.overlay.whiteout", b"y").is_err() {
            eprintln!("skipped: this filesystem refuses user xattrs");
            return;
        }
    }
    let removed = clean(up);
    // A whiteout records that the packages deleted the base's file: removing it would bring the
    // base's copy back.
    assert!(exists(up, "var/log/dpkg.log"), "a whiteout was removed");
    assert!(!exists(up, "var/lib/postgresql/15/main"), "{removed:?}");
}

#[test]
fn a_failing_remover_fails_the_clean() {
    let tmp = tempfile::tempdir().expect("tempdir");
    put(tmp.path(), "etc/ssh/ssh_host_rsa_key", "secret");
    let mut refuse = |_: &Path| -> Result<()> { Err(CoreError::Refused("refused".into())) };
    assert!(clean_upper(tmp.path(), &mut refuse).is_err());
    assert!(exists(tmp.path(), "etc/ssh/ssh_host_rsa_key"));
}

#[test]
fn every_step_gets_our_source_date_epoch_once() {
    let plugin = vec![
        ("DEBIAN_FRONTEND".to_owned(), "noninteractive".to_owned()),
        ("SOURCE_DATE_EPOCH".to_owned(), "1".to_owned()),
    ];
    let env = step_env(&plugin);
    let sde: Vec<_> = env
        .iter()
        .filter(|(k, _)| k == "SOURCE_DATE_EPOCH")
        .collect();
    assert_eq!(sde.len(), 1, "{env:?}");
    assert_eq!(sde[0].1, "1704067200");
    assert!(env.contains(&("DEBIAN_FRONTEND".to_owned(), "noninteractive".to_owned())));
    assert_ne!(
        SOURCE_DATE_EPOCH, 0,
        "0 means \"change at next login\" to useradd"
    );
}

#[test]
fn glob_matches_within_one_name() {
    assert!(glob(b"ssh_host_*_key", b"ssh_host_ed25519_key"));
    assert!(glob(b"ssh_host_*_key", b"ssh_host__key"));
    assert!(!glob(b"ssh_host_*_key", b"ssh_host_rsa_key.pub"));
    assert!(glob(b"*", b""));
    assert!(glob(b"a*b*c", b"aXbYc"));
    assert!(!glob(b"abc", b"abcd"));
}
