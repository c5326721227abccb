//! Property tests: normalization is invariant under reordering, duplicating
//! and whitespace-padding packages, apps and mounts, and idempotent; parsing
//! never panics; locks round-trip any strings.

use std::fmt::Write as _;

use karapace_schema::{Backend, LockFile, MountSpec, ResolvedPackage, parse_manifest};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9.+_@-]{0,12}"
}

fn padding() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", " ", "  ", "\t", " \t "]).prop_map(str::to_owned)
}

/// A TOML basic string literal.
fn lit(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[derive(Debug, Clone)]
struct Spec {
    packages: Vec<String>,
    apps: Vec<String>,
    mounts: Vec<(String, String, String)>,
    backend: Backend,
    gpu: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(name(), 0..12),
        prop::collection::vec(name(), 0..6),
        prop::collection::btree_map(name(), ("/[a-z]{1,8}", "/[a-z:]{1,8}"), 0..5),
        prop::sample::select(Backend::ALL.to_vec()),
        any::<bool>(),
    )
        .prop_map(|(packages, apps, mounts, backend, gpu)| Spec {
            packages,
            apps,
            mounts: mounts.into_iter().map(|(l, (h, c))| (l, h, c)).collect(),
            backend,
            gpu,
        })
}

/// Renders a spec as a manifest, with list and table order chosen by
/// `perm_seed`, `dups` duplicated entries, and padding around every string.
fn render(s: &Spec, perm_seed: u64, dups: usize, pads: &[String], empties: usize) -> String {
    let mut pad_i = 0usize;
    let mut pad = |v: &str| {
        let p = &pads[pad_i % pads.len()];
        let q = &pads[(pad_i + 1) % pads.len()];
        pad_i += 1;
        format!("{p}{v}{q}")
    };
    let shuffle = |v: &mut Vec<String>| {
        // Deterministic permutation from the seed (a simple LCG walk).
        let mut x = perm_seed | 1;
        for i in (1..v.len()).rev() {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let j = usize::try_from(x >> 33).unwrap_or(0) % (i + 1);
            v.swap(i, j);
        }
    };
    let list = |items: &[String], pad: &mut dyn FnMut(&str) -> String| {
        let mut v: Vec<String> = items.to_vec();
        v.extend(items.iter().take(dups).cloned());
        for _ in 0..empties {
            v.push(String::new());
        }
        shuffle(&mut v);
        let parts: Vec<String> = v.iter().map(|x| lit(&pad(x))).collect();
        format!("[{}]", parts.join(", "))
    };
    let mut out = String::from("manifest_version = 1\n[base]\n");
    let _ = writeln!(out, "image = {}", lit(&pad("debian/bookworm")));
    let _ = writeln!(out, "[system]\npackages = {}", list(&s.packages, &mut pad));
    let _ = writeln!(out, "[gui]\napps = {}", list(&s.apps, &mut pad));
    let _ = writeln!(out, "[hardware]\ngpu = {}", s.gpu);
    let mut mounts: Vec<String> = s
        .mounts
        .iter()
        .map(|(l, h, c)| {
            let spec = format!("{}:{}", pad(h), pad(c));
            format!("{} = {}", lit(&pad(l)), lit(&spec))
        })
        .collect();
    shuffle(&mut mounts);
    let _ = writeln!(out, "[mounts]\n{}", mounts.join("\n"));
    let backend = s.backend.as_str().to_uppercase();
    let _ = writeln!(out, "[runtime]\nbackend = {}", lit(&pad(&backend)));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn normalization_is_invariant(
        s in spec(),
        seed in any::<u64>(),
        dups in 0usize..4,
        empties in 0usize..3,
        pads in prop::collection::vec(padding(), 1..5),
    ) {
        let plain = render(&s, 0, 0, &[String::new()], 0);
        let noisy = render(&s, seed, dups, &pads, empties);
        let a = parse_manifest(&plain).unwrap().normalize().unwrap();
        let b = parse_manifest(&noisy).unwrap().normalize().unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.canonical_json(), b.canonical_json());
        prop_assert_eq!(a.manifest_hash(), b.manifest_hash());

        // And the normal form is what the rules say it is.
        let mut pk = s.packages.clone();
        pk.sort();
        pk.dedup();
        prop_assert_eq!(&a.system_packages, &pk);
        let labels: Vec<&str> = a.mounts.iter().map(|m| m.label.as_str()).collect();
        let mut sorted = labels.clone();
        sorted.sort_unstable();
        prop_assert_eq!(labels, sorted);
        prop_assert_eq!(a.runtime_backend, s.backend);
    }

    #[test]
    fn normalization_is_idempotent(
        s in spec(),
        seed in any::<u64>(),
        dups in 0usize..4,
        pads in prop::collection::vec(padding(), 1..5),
    ) {
        let once = parse_manifest(&render(&s, seed, dups, &pads, 1)).unwrap().normalize().unwrap();
        let text = once.to_manifest().to_toml_string();
        let twice = parse_manifest(&text).unwrap().normalize().unwrap();
        prop_assert_eq!(&once, &twice);
        prop_assert_eq!(once.canonical_json(), twice.canonical_json());
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse_manifest(&text);
        let _ = LockFile::parse(&text);
    }

    #[test]
    fn parsing_mutated_manifests_never_panics(s in spec(), cut in 0usize..400, junk in "\\PC{0,5}") {
        let mut text = render(&s, 1, 1, &[" ".to_owned()], 1);
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &junk);
        if let Err(e) = parse_manifest(&text) {
            prop_assert!(e.line_col().is_some(), "{}", e);
        }
    }

    #[test]
    fn locks_round_trip_any_strings(
        digest in "\\PC{0,40}",
        image in "\\PC{0,40}",
        pkgs in prop::collection::vec(("\\PC{1,20}", "\\PC{0,20}"), 0..8),
        apps in prop::collection::vec("\\PC{1,20}", 0..4),
        mounts in prop::collection::vec(("\\PC{1,10}", "\\PC{1,10}", "\\PC{1,10}"), 0..4),
        cpu in prop::option::of(0u64..=i64::MAX as u64),
        mem in prop::option::of(0u64..=i64::MAX as u64),
        flags in any::<[bool; 3]>(),
    ) {
        let mut lock = LockFile {
            lock_version: 2,
            env_id: karapace_schema::EnvId::from_digest(&[0; 32]),
            short_id: String::new(),
            base_image: image,
            base_image_digest: digest,
            resolved_packages: pkgs.into_iter().map(|(name, version)| ResolvedPackage { name, version }).collect(),
            resolved_apps: apps,
            runtime_backend: Backend::Oci,
            hardware_gpu: flags[0],
            hardware_audio: flags[1],
            network_isolation: flags[2],
            mounts: mounts.into_iter().map(|(label, host_path, container_path)| MountSpec { label, host_path, container_path }).collect(),
            cpu_shares: cpu,
            memory_limit_mb: mem,
        };
        let id = lock.compute_env_id();
        lock.short_id = id.short_id().to_owned();
        lock.env_id = id;
        let back = LockFile::parse(&lock.to_toml_string());
        prop_assert!(back.is_ok(), "{:?}\n{}", back, lock.to_toml_string());
        let back = back.unwrap();
        prop_assert_eq!(&back, &lock);
        prop_assert!(back.verify_integrity().is_ok());
    }
}
