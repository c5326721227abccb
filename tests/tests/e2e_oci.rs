//! Issue 14: a real Debian environment in an OCI registry — Debian's `docker-registry` on
//! 127.0.0.1: push with a snapshot under a tag, the second push uploads no blob, `skopeo
//! inspect` and `skopeo copy` handle it like any image, a pull into an empty store (as the
//! unprivileged user in the root pass) runs, restores its snapshot and verifies clean, and a blob
//! corrupted in the registry's storage fails the pull with the store left as it was.

use std::process::Command;

use karapace_oci_client::Sha256Digest;
use karapace_oci_client::testing::{RegistryConfig, TestRegistry};
use karapace_tests::remote::{PullSide, assert_store_clean, env_ids};
use karapace_tests::{Karapace, Mirror, TestDir};

const MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["curl"]
"#;

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run skopeo (scripts/install-deps installs it): {e}"))
}

#[test]
fn a_debian_environment_travels_through_an_oci_registry() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let registry = TestRegistry::start(&RegistryConfig::default());
    let remote = format!("oci://{}/team", registry.address());
    let dir = TestDir::new("oci");
    dir.write_project_file("karapace.toml", MANIFEST);
    let k = Karapace::new(&dir).image_server(mirror.file_url());
    let env = k.json(&["build", "karapace.toml", "--name", "web"])["env_id"]
        .as_str()
        .expect("env_id")
        .to_owned();
    k.exec(
        "web",
        &["sh", "-c", "echo shipped > /etc/karapace-oci-note"],
    )
    .assert_success();
    let snapshot = k.json(&["commit", "web"])["snapshot_hash"]
        .as_str()
        .expect("snapshot_hash")
        .to_owned();
    k.exec("web", &["rm", "/etc/karapace-oci-note"])
        .assert_success();

    let no_tag = k.run(&["push", "web", "--remote", &remote]);
    no_tag.assert_code(1);
    assert!(
        no_tag.stderr_str().contains("--tag"),
        "{}",
        no_tag.stderr_str()
    );
    let pushed = k.json(&["push", "web", "--tag", "web@v1", "--remote", &remote]);
    assert_eq!(pushed["env_id"], env.as_str(), "{pushed}");
    assert!(
        pushed["objects_pushed"].as_u64().unwrap_or(0) >= 5,
        "{pushed}"
    );
    assert!(
        pushed["layers_pushed"].as_u64().unwrap_or(0) >= 3,
        "{pushed}"
    );
    let again = k.json(&["push", "web", "--tag", "web@v1", "--remote", &remote]);
    assert_eq!(
        again["objects_pushed"], 0,
        "a second push uploads no blob: {again}"
    );
    assert_eq!(again["layers_pushed"], 0, "{again}");

    let info = container_tools_see_an_image(&registry, &dir, &env);

    // Pull into an empty store and use it.
    let side = PullSide::new("oci-pull", MANIFEST);
    let p = side.karapace(&mirror);
    let pulled = p.json(&["pull", "web@v1", "--remote", &remote]);
    assert_eq!(pulled["env_id"], env.as_str(), "{pulled}");
    let out = p.exec(&env, &["curl", "--version"]);
    out.assert_success();
    assert!(
        out.stdout_str().starts_with("curl "),
        "{}",
        out.stdout_str()
    );
    p.ok(&["restore", &env, &snapshot]);
    let note = p.exec(&env, &["cat", "/etc/karapace-oci-note"]);
    note.assert_success();
    assert_eq!(note.stdout_str(), "shipped\n");
    assert_store_clean(&p);
    let by_id = p.run(&["pull", &env, "--remote", &remote]);
    by_id.assert_code(1);
    assert!(
        by_id.stderr_str().contains("<name>@<tag>"),
        "{}",
        by_id.stderr_str()
    );

    // A blob corrupted in the registry's storage: the pull fails, nothing is recorded.
    let layer = info["Layers"][0].as_str().expect("a layer digest");
    let digest = Sha256Digest::parse(layer).expect("digest");
    let data = registry.blob_data_path(&digest);
    let original = std::fs::read(&data).expect("registry blob");
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&data, &bytes).expect("corrupt blob");
    let side = PullSide::new("oci-corrupt", MANIFEST);
    let c = side.karapace(&mirror);
    let failed = c.run(&["pull", "web@v1", "--remote", &remote]);
    std::fs::write(&data, &original).expect("repair blob");
    failed.assert_code(1);
    assert!(env_ids(&c).is_empty(), "nothing listed after a failed pull");
    assert_store_clean(&c);
}

/// `skopeo inspect` and `skopeo copy` handle the pushed tag like any image; returns the
/// inspection.
fn container_tools_see_an_image(
    registry: &TestRegistry,
    dir: &TestDir,
    env: &str,
) -> serde_json::Value {
    let image = format!("docker://{}/team/web:v1", registry.address());
    let inspect = skopeo(&["inspect", "--tls-verify=false", &image]);
    assert!(
        inspect.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("inspect JSON");
    assert_eq!(info["Labels"]["org.karapace.env_id"], env, "{info}");
    assert!(
        info["Layers"].as_array().is_some_and(|l| l.len() >= 2),
        "{info}"
    );
    let layout = dir.path().join("layout");
    let copy = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &image,
        &format!("oci:{}:v1", layout.display()),
    ]);
    assert!(
        copy.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&copy.stderr)
    );

    info
}
