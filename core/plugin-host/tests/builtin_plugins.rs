//! The five built-in plugins, run for real in wasmtime, against captured and
//! documented package-manager output.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use karapace_plugin_host::{
    ImageContext, PackageRequest, Plugin, PluginError, PluginHost, PluginSource, ResolvedPackage,
    ResolverError, Step, StepOptions,
};

fn host() -> PluginHost {
    let host = PluginHost::load_builtin_only().unwrap();
    assert!(host.failures().is_empty(), "{:?}", host.failures());
    host
}

fn plugin<'a>(host: &'a PluginHost, name: &str) -> &'a Plugin {
    host.get(name).unwrap_or_else(|| panic!("no plugin {name}"))
}

fn fixture(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn pkg(name: &str, version: &str) -> ResolvedPackage {
    ResolvedPackage {
        name: name.into(),
        version: version.into(),
    }
}

fn argv(steps: &[Step]) -> Vec<Vec<&str>> {
    steps
        .iter()
        .map(|s| s.argv.iter().map(String::as_str).collect())
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

const SINGLE: StepOptions = StepOptions {
    single_uid_map: true,
};
const MAPPED: StepOptions = StepOptions {
    single_uid_map: false,
};

#[test]
fn lists_five_builtins_with_metadata() {
    let host = host();
    let list = host.list();
    let got: Vec<(&str, &str)> = list
        .iter()
        .map(|i| (i.name.as_str(), i.version.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("apt", "1.1.0"),
            ("dnf", "1.1.0"),
            ("zypper", "1.1.0"),
            ("pacman", "1.1.0"),
            ("apk", "1.1.0")
        ]
    );
    assert!(
        list.iter().all(|i| i.source == PluginSource::Builtin
            && i.path.is_none()
            && i.interface == "1.1.0")
    );
}

#[test]
fn apt_steps() {
    let host = host();
    let apt = plugin(&host, "apt");
    let refresh = apt.refresh_steps(&ImageContext::EMPTY, SINGLE).unwrap();
    assert_eq!(
        argv(&refresh),
        [vec!["apt-get", "-o", "APT::Sandbox::User=root", "update"]]
    );
    assert_eq!(
        refresh[0].env,
        [("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string())]
    );
    assert_eq!(
        argv(&apt.refresh_steps(&ImageContext::EMPTY, MAPPED).unwrap()),
        [vec!["apt-get", "update"]]
    );

    let install = apt
        .install_steps(
            &ImageContext::EMPTY,
            &[
                PackageRequest::latest("curl"),
                PackageRequest::pinned("bsdutils", "1:2.38.1-5+deb12u3"),
                PackageRequest::pinned("libc6:amd64", "2.36-9+deb12u14"),
            ],
            MAPPED,
        )
        .unwrap();
    assert_eq!(
        argv(&install),
        [vec![
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "curl",
            "bsdutils=1:2.38.1-5+deb12u3",
            "libc6:amd64=2.36-9+deb12u14"
        ]]
    );
    assert_eq!(install[0].env[0].0, "DEBIAN_FRONTEND");

    assert_eq!(
        apt.query_argv(&ImageContext::EMPTY, &names(&["bash", "curl"]))
            .unwrap(),
        [
            "dpkg-query",
            "-W",
            "-f",
            "${Package}\\t${Version}\\n",
            "bash",
            "curl"
        ]
    );
}

#[test]
fn apt_names_and_versions() {
    let host = host();
    let apt = plugin(&host, "apt");
    for good in [
        "curl",
        "libstdc++6",
        "g++",
        "python3.11",
        "libc6:i386",
        "0ad",
    ] {
        apt.validate_name(&ImageContext::EMPTY, good).unwrap();
    }
    for bad in [
        "-oAPT::x", "Curl", "a", "foo bar", "foo;rm", "foo/bar", "", "x:",
    ] {
        let e = apt.validate_name(&ImageContext::EMPTY, bad).unwrap_err();
        assert!(e.is_invalid_input(), "{bad}: {e}");
    }
    let e = apt
        .install_steps(
            &ImageContext::EMPTY,
            &[PackageRequest::pinned("curl", "latest")],
            MAPPED,
        )
        .unwrap_err();
    assert!(
        matches!(&e, PluginError::Resolver { error: ResolverError::InvalidVersion(_), plugin, .. } if plugin == "apt"),
        "{e}"
    );
}

#[test]
fn apt_parses_real_bookworm_output() {
    let host = host();
    let apt = plugin(&host, "apt");
    let all = apt
        .parse_query(
            &ImageContext::EMPTY,
            &[],
            &fixture("apt/dpkg-query-bookworm-all.txt"),
        )
        .unwrap();
    assert_eq!(all.len(), 89);
    assert!(all.contains(&pkg("bsdutils", "1:2.38.1-5+deb12u3")));
    assert!(all.contains(&pkg("debianutils", "5.7-0.5~deb12u1")));
    assert!(all.contains(&pkg("bash", "5.2.15-2+b13")));
    assert!(all.contains(&pkg("apt", "2.6.2")));

    // The query the engine runs after an install, with one missing package
    // (dpkg-query reports it on stderr, so stdout simply lacks it).
    let sel = apt
        .parse_query(
            &ImageContext::EMPTY,
            &[],
            &fixture("apt/dpkg-query-bookworm-selected.txt"),
        )
        .unwrap();
    assert_eq!(
        sel,
        [
            pkg("bash", "5.2.15-2+b13"),
            pkg("coreutils", "9.1-1"),
            pkg("libc6", "2.36-9+deb12u14")
        ]
    );
    assert!(fixture("apt/dpkg-query-bookworm-selected.stderr").contains("nosuchpkg"));

    // CRLF, blank lines and dpkg's "known but not installed" (empty version).
    let crlf = apt
        .parse_query(
            &ImageContext::EMPTY,
            &[],
            "bash\t5.2.15-2+b13\r\n\r\nrc-only\t\r\n\ncurl\t7.88.1-10+deb12u5\r\n",
        )
        .unwrap();
    assert_eq!(
        crlf,
        [
            pkg("bash", "5.2.15-2+b13"),
            pkg("curl", "7.88.1-10+deb12u5")
        ]
    );

    let e = apt
        .parse_query(&ImageContext::EMPTY, &[], "garbage without tab\n")
        .unwrap_err();
    assert!(
        matches!(
            e,
            PluginError::Resolver {
                error: ResolverError::Parse(_),
                ..
            }
        ),
        "{e}"
    );
}

fn rpm_expected() -> Vec<ResolvedPackage> {
    vec![
        pkg("bash", "5.2.26-3.fc40"),
        pkg("curl", "8.6.0-7.fc40"),
        pkg("vim-enhanced", "9.1.083-1.fc40"),
        pkg("rpm-sequoia", "1.6.0~beta1-1.fc40"),
        pkg("mesa-dri-drivers", "24.0.5^20240401git-1.fc40"),
        pkg("libstdc++", "14.0.1-0.13.fc40"),
        pkg("perl-Errno", "1.37-506.fc40"),
    ]
}

#[test]
fn dnf_and_zypper() {
    let host = host();
    let dnf = plugin(&host, "dnf");
    let zypper = plugin(&host, "zypper");

    assert!(
        dnf.refresh_steps(&ImageContext::EMPTY, SINGLE)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        argv(
            &dnf.install_steps(
                &ImageContext::EMPTY,
                &[
                    PackageRequest::latest("git"),
                    PackageRequest::pinned("curl", "8.6.0-7.fc40")
                ],
                SINGLE
            )
            .unwrap()
        ),
        [vec![
            "dnf",
            "install",
            "-y",
            "--setopt=install_weak_deps=False",
            "git",
            "curl-8.6.0-7.fc40"
        ]]
    );
    assert_eq!(
        argv(&zypper.refresh_steps(&ImageContext::EMPTY, SINGLE).unwrap()),
        [vec!["zypper", "--non-interactive", "refresh"]]
    );
    assert_eq!(
        argv(
            &zypper
                .install_steps(
                    &ImageContext::EMPTY,
                    &[
                        PackageRequest::latest("git"),
                        PackageRequest::pinned("curl", "8.6.0-7.1")
                    ],
                    SINGLE
                )
                .unwrap()
        ),
        [vec![
            "zypper",
            "--non-interactive",
            "install",
            "--no-recommends",
            "git",
            "curl=8.6.0-7.1"
        ]]
    );
    for p in [dnf, zypper] {
        assert_eq!(
            p.query_argv(&ImageContext::EMPTY, &names(&["bash"]))
                .unwrap(),
            [
                "rpm",
                "-q",
                "--qf",
                "%{NAME}\\t%{VERSION}-%{RELEASE}\\n",
                "bash"
            ]
        );
        assert_eq!(
            p.parse_query(&ImageContext::EMPTY, &[], &fixture("rpm/rpm-qf.txt"))
                .unwrap(),
            rpm_expected()
        );
        assert_eq!(
            p.parse_query(&ImageContext::EMPTY, &[], &fixture("rpm/rpm-qf-crlf.txt"))
                .unwrap(),
            [pkg("bash", "5.2.26-3.fc40"), pkg("curl", "8.6.0-7.fc40")]
        );
        p.validate_name(&ImageContext::EMPTY, "libstdc++").unwrap();
        p.validate_name(&ImageContext::EMPTY, "perl-Errno").unwrap();
        assert!(
            p.validate_name(&ImageContext::EMPTY, "--nogpgcheck")
                .unwrap_err()
                .is_invalid_input()
        );
        assert!(
            p.validate_name(&ImageContext::EMPTY, "foo*")
                .unwrap_err()
                .is_invalid_input()
        );
        assert!(
            p.validate_name(&ImageContext::EMPTY, ".hidden")
                .unwrap_err()
                .is_invalid_input()
        );
    }
}

#[test]
fn pacman() {
    let host = host();
    let pacman = plugin(&host, "pacman");
    assert_eq!(
        argv(&pacman.refresh_steps(&ImageContext::EMPTY, SINGLE).unwrap()),
        [vec!["pacman", "-Sy", "--noconfirm"]]
    );
    assert_eq!(
        argv(
            &pacman
                .install_steps(
                    &ImageContext::EMPTY,
                    &[PackageRequest::latest("git")],
                    SINGLE
                )
                .unwrap()
        ),
        [vec!["pacman", "-S", "--noconfirm", "--needed", "git"]]
    );
    // Pinning is impossible from the sync repos: a clear typed error.
    let e = pacman
        .install_steps(
            &ImageContext::EMPTY,
            &[PackageRequest::pinned("git", "2.45.0-1")],
            SINGLE,
        )
        .unwrap_err();
    assert!(
        matches!(&e, PluginError::Resolver { error: ResolverError::Unsupported(m), .. } if m.contains("git")),
        "{e}"
    );
    assert_eq!(
        pacman
            .query_argv(&ImageContext::EMPTY, &names(&["bash", "vim"]))
            .unwrap(),
        ["pacman", "-Q", "bash", "vim"]
    );
    assert_eq!(
        pacman
            .parse_query(&ImageContext::EMPTY, &[], &fixture("pacman/pacman-Q.txt"))
            .unwrap(),
        [
            pkg("bash", "5.2.026-2"),
            pkg("linux", "6.8.9.arch1-1"),
            pkg("lib32-glibc", "2.39+r52+gf8e4623421-1"),
            pkg("zstd", "1.5.6-1"),
            pkg("vim", "9.1.0394-1"),
            pkg("xorg-server", "21.1.13-1"),
            pkg("python-setuptools", "1:69.5.1-1"),
            pkg("openssl", "3.3.0-1"),
            pkg("gtk2", "2.24.33~rc1-5"),
        ]
    );
    assert_eq!(
        pacman
            .parse_query(
                &ImageContext::EMPTY,
                &[],
                &fixture("pacman/pacman-Q-crlf.txt")
            )
            .unwrap(),
        [
            pkg("bash", "5.2.026-2"),
            pkg("python-setuptools", "1:69.5.1-1")
        ]
    );
    pacman
        .validate_name(&ImageContext::EMPTY, "lib32-glibc")
        .unwrap();
    pacman.validate_name(&ImageContext::EMPTY, "gtk+3").unwrap();
    assert!(
        pacman
            .validate_name(&ImageContext::EMPTY, "Bash")
            .unwrap_err()
            .is_invalid_input()
    );
    assert!(
        pacman
            .validate_name(&ImageContext::EMPTY, ".x")
            .unwrap_err()
            .is_invalid_input()
    );
}

#[test]
fn apk() {
    let host = host();
    let apk = plugin(&host, "apk");
    assert!(
        apk.refresh_steps(&ImageContext::EMPTY, SINGLE)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        argv(
            &apk.install_steps(
                &ImageContext::EMPTY,
                &[
                    PackageRequest::latest("curl"),
                    PackageRequest::pinned("musl", "1.2.5-r0")
                ],
                SINGLE
            )
            .unwrap()
        ),
        [vec!["apk", "add", "--no-cache", "curl", "musl=1.2.5-r0"]]
    );
    assert_eq!(
        apk.query_argv(&ImageContext::EMPTY, &names(&["musl"]))
            .unwrap(),
        ["apk", "list", "--installed", "musl"]
    );
    assert_eq!(
        apk.parse_query(
            &ImageContext::EMPTY,
            &[],
            &fixture("apk/apk-list-installed.txt")
        )
        .unwrap(),
        [
            pkg("musl", "1.2.5-r0"),
            pkg("busybox", "1.36.1-r29"),
            pkg("ca-certificates-bundle", "20240705-r0"),
            pkg("py3-3to2", "1.1.1-r3"),
            pkg("gtk+3.0", "3.24.41-r0"),
            pkg("libcrypto3", "3.3.1-r0"),
            pkg("sqlite-libs", "3.45.3_rc1-r0"),
        ]
    );
    assert_eq!(
        apk.parse_query(
            &ImageContext::EMPTY,
            &[],
            &fixture("apk/apk-info-v-crlf.txt")
        )
        .unwrap(),
        [
            pkg("musl", "1.2.5-r0"),
            pkg("busybox", "1.36.1-r29"),
            pkg("alpine-baselayout-data", "3.6.5-r0")
        ]
    );
    let e = apk
        .parse_query(&ImageContext::EMPTY, &[], "musl\n")
        .unwrap_err();
    assert!(
        matches!(
            e,
            PluginError::Resolver {
                error: ResolverError::Parse(_),
                ..
            }
        ),
        "{e}"
    );
    assert!(
        apk.validate_name(&ImageContext::EMPTY, "-U")
            .unwrap_err()
            .is_invalid_input()
    );
}

#[test]
fn host_refuses_bad_requests_before_calling() {
    let host = host();
    let apt = plugin(&host, "apt");
    let e = apt
        .install_steps(&ImageContext::EMPTY, &[], SINGLE)
        .unwrap_err();
    assert!(matches!(e, PluginError::InvalidRequest { .. }), "{e}");
    let e = apt
        .install_steps(
            &ImageContext::EMPTY,
            &[PackageRequest::latest("curl\0x")],
            SINGLE,
        )
        .unwrap_err();
    assert!(matches!(e, PluginError::InvalidRequest { .. }), "{e}");
    let huge = "a\tb\n".repeat(5 * 1024 * 1024);
    let e = apt
        .parse_query(&ImageContext::EMPTY, &[], &huge)
        .unwrap_err();
    assert!(matches!(e, PluginError::InvalidRequest { .. }), "{e}");
}

fn fake_rootfs(files: &[&str], links: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"#!/bin/true\n").unwrap();
    }
    for (link, target) in links {
        let p = dir.path().join(link);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }
    dir
}

/// (files, symlinks as (link, target), expected plugin)
type DetectCase = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

#[test]
fn detection() {
    let host = host();
    let cases: [DetectCase; 7] = [
        (&["usr/bin/apt-get", "usr/bin/dpkg"], &[], Some("apt")),
        (&["usr/bin/dnf-3"], &[("usr/bin/dnf", "dnf-3")], Some("dnf")),
        (&["usr/bin/dnf5"], &[], Some("dnf")),
        (&["usr/bin/zypper"], &[], Some("zypper")),
        (&["usr/bin/pacman"], &[], Some("pacman")),
        (&["sbin/apk"], &[], Some("apk")),
        // A link to the host's apt-get must not count.
        (
            &["etc/os-release"],
            &[("usr/bin/apt-get", "/usr/bin/apt-get-host-only")],
            None,
        ),
    ];
    for (files, links, want) in cases {
        let root = fake_rootfs(files, links);
        assert_eq!(
            host.detect(root.path()).map(Plugin::name),
            want,
            "{files:?} {links:?}"
        );
        assert_eq!(
            host.try_detect(root.path()).unwrap().map(Plugin::name),
            want
        );
    }
}

/// The real Debian rootfs of the images fixture, when this machine has it.
#[test]
fn detects_apt_in_real_debian_rootfs_when_available() {
    let Some(tar) = real_debian_tarball() else {
        eprintln!("no /var/cache/karapace-test Debian rootfs; covered by fake_rootfs cases");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xJf")
        .arg(&tar)
        .arg("-C")
        .arg(dir.path())
        .arg("./usr/bin/apt-get")
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(host().detect(dir.path()).map(Plugin::name), Some("apt"));
}

fn real_debian_tarball() -> Option<PathBuf> {
    let dir = std::fs::read_dir("/var/cache/karapace-test/rootfs").ok()?;
    dir.filter_map(Result::ok)
        .map(|e| e.path().join("rootfs.tar.xz"))
        .find(|p| p.to_string_lossy().contains("debian-bookworm") && p.is_file())
}

#[test]
fn apt_reports_the_distribution_it_found() {
    let host = host();
    let apt = plugin(&host, "apt");
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("usr/bin/apt-get"), b"").unwrap();
    // Without os-release: claimed, no variant.
    let image = apt.detect_image(root.path()).unwrap().unwrap();
    assert_eq!(image.present, ["usr/bin/apt-get"]);
    assert_eq!(image.variant, "");
    std::fs::write(
        root.path().join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
         VERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
    )
    .unwrap();
    let (found, image) = host.try_detect_image(root.path()).unwrap().unwrap();
    assert_eq!(found.name(), "apt");
    assert_eq!(image.variant, "debian 12 (bookworm)");
    // The context reaches every call; apt's steps do not depend on it.
    assert_eq!(
        argv(&apt.refresh_steps(&image, MAPPED).unwrap()),
        [vec!["apt-get", "update"]]
    );
}

#[test]
fn apt_checks_names_against_the_package_index() {
    let host = host();
    let apt = plugin(&host, "apt");
    let img = ImageContext::EMPTY;
    let asked = names(&["curl", "libc6:i386", "awk"]);
    assert_eq!(
        apt.available_argv(&img, &asked).unwrap(),
        Some(names(&[
            "apt-cache",
            "-o",
            "APT::Cache::AllNames=true",
            "pkgnames"
        ]))
    );
    // `apt-cache pkgnames` with AllNames prints real and virtual names (awk), unsorted.
    let index = "libc6\ncurl\nawk\ncurlftpfs\r\nlibcurl4\n\n";
    let all_known = apt.parse_available(&img, &asked, index).unwrap();
    assert!(all_known.unknown.is_empty(), "{all_known:?}");
    assert!(
        all_known.candidates.is_empty(),
        "no index copy when all are known"
    );
    let typo = names(&["curll", "libc6"]);
    let a = apt.parse_available(&img, &typo, index).unwrap();
    assert_eq!(a.unknown, ["curll"]);
    assert!(a.candidates.contains(&"curl".to_string()), "{a:?}");
    assert_eq!(
        karapace_schema::similar(
            "curll",
            &a.candidates.iter().map(String::as_str).collect::<Vec<_>>(),
            1
        ),
        ["curl"]
    );
}

/// `apt-cache pkgnames` with virtual names prints well over 100 000 names for Debian 12; parsing
/// them must fit one call's fuel, both when every name is known and when the whole index comes
/// back as candidates.
#[test]
fn apt_parses_a_whole_distribution_index_within_its_budget() {
    let host = host();
    let apt = plugin(&host, "apt");
    let mut index = String::new();
    for i in 0..150_000 {
        let _ = writeln!(index, "package-name-{i}");
    }
    index.push_str("curl\n");
    let asked = names(&["curl", "package-name-7"]);
    let a = apt
        .parse_available(&ImageContext::EMPTY, &asked, &index)
        .unwrap();
    assert!(a.unknown.is_empty(), "{:?}", a.unknown);
    let typo = names(&["curll"]);
    let a = apt
        .parse_available(&ImageContext::EMPTY, &typo, &index)
        .unwrap();
    assert_eq!(a.unknown, ["curll"]);
    assert_eq!(a.candidates, ["curl"], "only names that could be close");
}

#[test]
fn apt_versions_are_checked_on_their_own() {
    let host = host();
    let apt = plugin(&host, "apt");
    apt.validate_version(&ImageContext::EMPTY, "1:2.38.1-5+deb12u3")
        .unwrap();
    let e = apt
        .validate_version(&ImageContext::EMPTY, "latest")
        .unwrap_err();
    assert!(e.is_invalid_input(), "{e}");
}
