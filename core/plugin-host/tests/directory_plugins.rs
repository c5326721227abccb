//! Plugins loaded from directories: the SDK example (examples/plugin-xbps),
//! overriding a built-in, priority between directories, and the compile cache.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use karapace_plugin_host::{
    CacheOutcome, ImageContext, Limits, LoadOptions, PackageRequest, Plugin, PluginHost,
    PluginSource, ResolvedPackage, StepOptions,
};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn xbps_wasm() -> PathBuf {
    repo("examples/plugin-xbps/dist/xbps.wasm")
}

fn load(dirs: &[&Path], cache: Option<&Path>) -> PluginHost {
    PluginHost::load_with(&LoadOptions {
        dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
        cache_dir: cache.map(Path::to_path_buf),
        limits: Limits::default(),
    })
    .unwrap()
}

#[test]
fn example_plugin_loads_from_a_directory_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("xbps.wasm");
    std::fs::copy(xbps_wasm(), &installed).unwrap();
    let host = load(&[dir.path()], None);
    assert!(host.failures().is_empty(), "{:?}", host.failures());

    let xbps = host.get("xbps").unwrap();
    assert_eq!(xbps.source(), PluginSource::Directory);
    assert_eq!(xbps.path(), Some(installed.as_path()));
    assert_eq!(xbps.version(), "0.1.0");
    assert_eq!(host.list().len(), 6);

    let steps = xbps
        .install_steps(
            &ImageContext::EMPTY,
            &[
                PackageRequest::latest("bash"),
                PackageRequest::pinned("xbps", "0.59.2_2"),
            ],
            StepOptions::default(),
        )
        .unwrap();
    assert_eq!(
        steps[0].argv,
        ["xbps-install", "-y", "bash", "xbps-0.59.2_2"]
    );
    let output = std::fs::read_to_string(repo(
        "core/plugin-host/tests/fixtures/xbps/xbps-query-l.txt",
    ))
    .unwrap();
    let parsed = xbps
        .parse_query(&ImageContext::EMPTY, &[], &output)
        .unwrap();
    assert_eq!(
        parsed,
        [
            ResolvedPackage {
                name: "bash".into(),
                version: "5.2.021_1".into()
            },
            ResolvedPackage {
                name: "base-files".into(),
                version: "0.144_1".into()
            },
            ResolvedPackage {
                name: "xbps".into(),
                version: "0.59.2_2".into()
            },
            ResolvedPackage {
                name: "libstdc++".into(),
                version: "13.2.0_1".into()
            },
        ]
    );

    // Detected in a Void rootfs; directory plugins are tried before built-ins.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    std::fs::write(root.path().join("usr/bin/xbps-install"), b"").unwrap();
    assert_eq!(host.detect(root.path()).map(Plugin::name), Some("xbps"));
}

#[test]
fn same_name_overrides_builtin_and_later_dir_wins() {
    let system = tempfile::tempdir().unwrap();
    let user = tempfile::tempdir().unwrap();
    // The built-in apt component, installed as a directory plugin twice.
    std::fs::copy(
        repo("plugins/dist/apt.wasm"),
        system.path().join("apt.wasm"),
    )
    .unwrap();
    std::fs::copy(
        repo("plugins/dist/apt.wasm"),
        user.path().join("my-apt.wasm"),
    )
    .unwrap();
    let host = load(&[system.path(), user.path()], None);
    assert!(host.failures().is_empty(), "{:?}", host.failures());

    let apts: Vec<_> = host
        .plugins()
        .iter()
        .filter(|p| p.name() == "apt")
        .collect();
    assert_eq!(apts.len(), 1);
    assert_eq!(apts[0].source(), PluginSource::Directory);
    assert_eq!(
        apts[0].path(),
        Some(user.path().join("my-apt.wasm").as_path())
    );
    assert_eq!(host.list().len(), 5);
    // Directory plugins come first in detection order.
    assert_eq!(host.plugins()[0].name(), "apt");
}

#[test]
fn duplicate_name_in_one_directory_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(xbps_wasm(), dir.path().join("a.wasm")).unwrap();
    std::fs::copy(xbps_wasm(), dir.path().join("b.wasm")).unwrap();
    let host = load(&[dir.path()], None);
    assert_eq!(
        host.get("xbps").unwrap().path(),
        Some(dir.path().join("a.wasm").as_path())
    );
    assert_eq!(host.failures().len(), 1);
    assert!(
        host.failures()[0]
            .error
            .to_string()
            .contains("already provided")
    );
}

#[test]
fn compile_cache_hits_is_private_and_recovers_from_corruption() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(xbps_wasm(), dir.path().join("xbps.wasm")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache/karapace/plugins");

    let first = load(&[dir.path()], Some(&cache));
    assert_eq!(
        first.get("xbps").unwrap().cache_outcome(),
        Some(CacheOutcome::Compiled)
    );
    let dir_mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(
        std::fs::metadata(entry).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let second = load(&[dir.path()], Some(&cache));
    assert_eq!(
        second.get("xbps").unwrap().cache_outcome(),
        Some(CacheOutcome::Hit)
    );

    // A truncated entry is recompiled and replaced, never trusted.
    let good = std::fs::read(entry).unwrap();
    std::fs::write(entry, &good[..good.len() / 3]).unwrap();
    let third = load(&[dir.path()], Some(&cache));
    assert_eq!(
        third.get("xbps").unwrap().cache_outcome(),
        Some(CacheOutcome::Compiled)
    );
    assert_eq!(std::fs::read(entry).unwrap().len(), good.len());
    third
        .get("xbps")
        .unwrap()
        .validate_name(&ImageContext::EMPTY, "bash")
        .unwrap();

    // A cache directory others can write to is not used at all.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let fourth = load(&[dir.path()], Some(&cache));
    assert_eq!(
        fourth.get("xbps").unwrap().cache_outcome(),
        Some(CacheOutcome::Uncached)
    );
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();

    // An entry that is group/other-readable is not trusted: recompiled.
    std::fs::set_permissions(entry, std::fs::Permissions::from_mode(0o644)).unwrap();
    let fifth = load(&[dir.path()], Some(&cache));
    assert_eq!(
        fifth.get("xbps").unwrap().cache_outcome(),
        Some(CacheOutcome::Compiled)
    );
    assert_eq!(
        std::fs::metadata(entry).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn missing_directories_are_fine() {
    let host = load(&[Path::new("/nonexistent/karapace/plugins")], None);
    assert!(host.failures().is_empty());
    assert_eq!(host.list().len(), 5);
}

/// Used to check docs/plugins.md from scratch: point `KARAPACE_TEST_PLUGIN_DIR`
/// at a directory with freshly built plugins; each must load cleanly and
/// answer every call. Without the variable there is nothing to check.
#[test]
fn plugins_in_env_dir_load_cleanly() {
    let Some(dir) = std::env::var_os("KARAPACE_TEST_PLUGIN_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let host = load(&[dir.as_path()], None);
    assert!(host.failures().is_empty(), "{:?}", host.failures());
    let mine: Vec<&Plugin> = host
        .plugins()
        .iter()
        .filter(|p| p.source() == PluginSource::Directory)
        .collect();
    assert!(!mine.is_empty(), "no plugin in {}", dir.display());
    for p in mine {
        p.refresh_steps(&ImageContext::EMPTY, StepOptions::default())
            .unwrap();
        p.install_steps(
            &ImageContext::EMPTY,
            &[PackageRequest::latest("bash")],
            StepOptions::default(),
        )
        .unwrap();
        p.query_argv(&ImageContext::EMPTY, &["bash".to_string()])
            .unwrap();
        p.validate_name(&ImageContext::EMPTY, "bash").unwrap();
        eprintln!("{} {} from {:?}: ok", p.name(), p.version(), p.path());
    }
}

fn fixture_v1_0(name: &str) -> PathBuf {
    repo("core/plugin-host/tests/fixtures/v1.0").join(format!("{name}.wasm"))
}

/// The components released against interface 1.0 (committed bytes, never
/// rebuilt) load beside 1.1 ones and behave as they did.
#[test]
fn a_1_0_component_and_a_1_1_component_load_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture_v1_0("xbps"), dir.path().join("xbps.wasm")).unwrap();
    std::fs::copy(
        repo("examples/plugin-emerge/dist/emerge.wasm"),
        dir.path().join("emerge.wasm"),
    )
    .unwrap();
    // The released 1.0 apt replaces the built-in 1.1 apt.
    std::fs::copy(fixture_v1_0("apt"), dir.path().join("apt.wasm")).unwrap();
    let host = load(&[dir.path()], None);
    assert!(host.failures().is_empty(), "{:?}", host.failures());
    let interface = |n: &str| host.get(n).unwrap().interface();
    assert_eq!(interface("xbps"), "1.0.0");
    assert_eq!(interface("apt"), "1.0.0");
    assert_eq!(interface("emerge"), "1.1.0");
    assert_eq!(interface("dnf"), "1.1.0");

    // 1.0: same steps as before; no variant, no availability check, and the
    // host keeps the portable name grammar it promised.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("usr/bin/apt-get"), b"").unwrap();
    std::fs::write(root.path().join("etc/os-release"), b"ID=debian\n").unwrap();
    let (apt, image) = host.try_detect_image(root.path()).unwrap().unwrap();
    assert_eq!((apt.name(), apt.interface()), ("apt", "1.0.0"));
    assert_eq!(image.variant, "");
    let steps = apt
        .install_steps(
            &image,
            &[PackageRequest::latest("curl")],
            StepOptions::default(),
        )
        .unwrap();
    assert_eq!(
        steps[0].argv,
        [
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "curl"
        ]
    );
    assert_eq!(apt.available_argv(&image, &["curl".into()]).unwrap(), None);
    let e = apt.validate_name(&image, "libc6:i386").unwrap_err();
    assert!(
        e.is_invalid_input() && e.to_string().contains("interface 1.0"),
        "{e}"
    );
    let xbps = host.get("xbps").unwrap();
    xbps.validate_name(&ImageContext::EMPTY, "bash").unwrap();

    // 1.1: category atoms reach the plugin; the query maps them back.
    let emerge = host.get("emerge").unwrap();
    emerge
        .validate_name(&ImageContext::EMPTY, "=app-editors/vim-9.1.0366")
        .unwrap();
    let steps = emerge
        .install_steps(
            &ImageContext::EMPTY,
            &[
                PackageRequest::latest("app-editors/vim"),
                PackageRequest::pinned("sys-libs/glibc", "2.39-r6"),
            ],
            StepOptions::default(),
        )
        .unwrap();
    assert_eq!(
        steps[0].argv,
        [
            "emerge",
            "--quiet",
            "--noreplace",
            "app-editors/vim",
            "=sys-libs/glibc-2.39-r6"
        ]
    );
    let qlist =
        std::fs::read_to_string(repo("examples/plugin-emerge/fixtures/qlist-Iv.txt")).unwrap();
    let requested = vec!["=app-editors/vim-9.1.0366".to_string(), "curl".to_string()];
    let found = emerge
        .parse_query(&ImageContext::EMPTY, &requested, &qlist)
        .unwrap();
    for (name, version) in [
        ("=app-editors/vim-9.1.0366", "9.1.0366"),
        ("curl", "8.7.1-r1"),
        ("app-editors/vim", "9.1.0366"),
    ] {
        assert!(
            found.contains(&ResolvedPackage {
                name: name.into(),
                version: version.into()
            }),
            "{name}: {found:?}"
        );
    }
}
