//! Issue 21, item 5: a package name the image's package index does not know fails the build
//! right after the index refresh, before the package manager installs anything: a manifest error
//! (exit 2) at that name's line and column, with close names taken from the index itself.
//!
//! Real Debian bookworm builds from the local image mirror (`KARAPACE_TEST_MIRROR`) with the
//! built-in apt plugin (resolver interface 1.1, `apt-cache pkgnames`). Without the mirror the
//! tests print why and pass, except under `CI`.

use karapace_tests::{Karapace, Mirror, TestDir};

/// `curll` sits on line 9, column 5.
const TYPO_MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = [
    "ca-certificates",
    "curll",
]
"#;

#[test]
fn a_typo_in_a_package_name_fails_before_installing_with_its_line_and_a_suggestion() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let dir = TestDir::new("e2e-unknown-package");
    let server = mirror.serve_http();
    let k = Karapace::new(&dir).image_server(server.url());
    let manifest = dir.write_project_file("karapace.toml", TYPO_MANIFEST);
    let manifest = manifest.to_string_lossy().into_owned();
    let out = k.run(&["-v", "build", &manifest]);
    out.assert_code(2);
    let err = out.stderr_str();
    let expected = format!(
        "{manifest}:9:5: package \"curll\" is not in the image's package index \
         (apt, debian 12 (bookworm)); did you mean \"curl\""
    );
    assert!(err.contains(&expected), "expected {expected:?} in: {out}");
    // The index was refreshed and queried once; apt never got to install (with -v every step's
    // argv is logged before it runs, and apt's own output is streamed).
    assert!(err.contains("availability check finished"), "{out}");
    assert!(err.contains("APT::Cache::AllNames=true pkgnames"), "{out}");
    assert!(
        !err.contains("--no-install-recommends") && !err.contains("Unable to locate package"),
        "the install step ran: {out}"
    );
    // Nothing was built, and nothing but the error on stdout.
    assert!(out.stdout_str().is_empty(), "{out}");
    let list = k.json(&["list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
}
