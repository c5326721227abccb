//! Simplestreams and directory-listing parsing on fixture documents.

use karapace_images::listing::{builds_in_listing, is_build_name, newest_build, sha256_from_sums};
use karapace_images::simplestreams::{newest_rootfs, product_key, products_path};
use karapace_images::{Compression, detect_compression};

const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

const INDEX: &str = r#"{
  "format": "index:1.0",
  "index": {
    "images": {
      "datatype": "image-downloads",
      "path": "streams/v1/images.json",
      "format": "products:1.0",
      "products": ["debian:bookworm:amd64:default", "debian:bookworm:arm64:default"]
    },
    "other": { "datatype": "something-else", "path": "streams/v1/other.json", "products": [] }
  }
}"#;

fn products() -> String {
    format!(
        r#"{{
  "content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
  "products": {{
    "debian:bookworm:amd64:default": {{
      "arch": "amd64", "os": "Debian", "release": "bookworm", "variant": "default",
      "versions": {{
        "20260219_05:24": {{ "items": {{
          "root.tar.xz": {{ "ftype": "root.tar.xz", "sha256": "{SHA_A}", "size": 10,
                             "path": "images/debian/bookworm/amd64/default/20260219_05:24/rootfs.tar.xz" }}
        }} }},
        "20260220_04:20": {{ "items": {{
          "lxd.tar.xz": {{ "ftype": "lxd.tar.xz", "sha256": "{SHA_A}", "size": 1,
                           "path": "images/debian/bookworm/amd64/default/20260220_04:20/lxd.tar.xz",
                           "combined_rootxz_sha256": "{SHA_A}" }},
          "root.tar.xz": {{ "ftype": "root.tar.xz", "sha256": "{}", "size": 20,
                             "path": "images/debian/bookworm/amd64/default/20260220_04:20/rootfs.tar.xz" }}
        }} }},
        "20260221_04:20": {{ "items": {{
          "root.squashfs": {{ "ftype": "squashfs", "sha256": "{SHA_A}", "size": 1,
                              "path": "images/debian/bookworm/amd64/default/20260221_04:20/rootfs.squashfs" }}
        }} }}
      }}
    }},
    "debian:bookworm:arm64:default": {{
      "versions": {{ "20260101_00:00": {{ "items": {{
        "rootfs": {{ "ftype": "root.tar.xz", "sha256": "{SHA_B}",
                     "path": "images/debian/bookworm/arm64/default/20260101_00:00/rootfs.tar.xz" }}
      }} }} }}
    }},
    "evil:x:amd64:default": {{
      "versions": {{ "20260101_00:00": {{ "items": {{
        "root.tar.xz": {{ "ftype": "root.tar.xz", "sha256": "{SHA_B}", "path": "../../etc/passwd" }}
      }} }} }}
    }},
    "badsum:x:amd64:default": {{
      "versions": {{ "20260101_00:00": {{ "items": {{
        "root.tar.xz": {{ "ftype": "root.tar.xz", "sha256": "xyz", "path": "images/x" }}
      }} }} }}
    }}
  }}
}}"#,
        SHA_B.to_uppercase()
    )
}

#[test]
fn index_points_at_the_products_file() {
    let p = product_key("debian", "bookworm", "amd64", "default");
    assert_eq!(p, "debian:bookworm:amd64:default");
    assert_eq!(
        products_path(INDEX.as_bytes(), &p).unwrap().as_deref(),
        Some("streams/v1/images.json")
    );
    assert_eq!(
        products_path(INDEX.as_bytes(), "fedora:41:amd64:default").unwrap(),
        None
    );
    assert!(products_path(b"{not json", &p).is_err());
    // A mirror that omits the products list still gets its image stream used.
    let bare =
        r#"{"index":{"images":{"datatype":"image-downloads","path":"streams/v1/images.json"}}}"#;
    assert_eq!(
        products_path(bare.as_bytes(), &p).unwrap().as_deref(),
        Some("streams/v1/images.json")
    );
}

#[test]
fn newest_build_with_a_rootfs_wins() {
    let doc = products();
    let img = newest_rootfs(doc.as_bytes(), "debian:bookworm:amd64:default")
        .unwrap()
        .unwrap();
    // 20260221 has no root.tar.xz, so 20260220 is the newest usable build.
    assert_eq!(img.build, "20260220_04:20");
    assert_eq!(
        img.path,
        "images/debian/bookworm/amd64/default/20260220_04:20/rootfs.tar.xz"
    );
    assert_eq!(img.sha256, SHA_B, "sha256 is lowercased");
    assert_eq!(img.size, Some(20));
    // Item found by ftype when its key differs.
    let arm = newest_rootfs(doc.as_bytes(), "debian:bookworm:arm64:default")
        .unwrap()
        .unwrap();
    assert_eq!(arm.sha256, SHA_B);
    assert_eq!(
        newest_rootfs(doc.as_bytes(), "debian:trixie:amd64:default").unwrap(),
        None
    );
    assert!(
        newest_rootfs(doc.as_bytes(), "evil:x:amd64:default").is_err(),
        "path traversal in index"
    );
    assert!(
        newest_rootfs(doc.as_bytes(), "badsum:x:amd64:default").is_err(),
        "malformed sha256"
    );
    assert!(newest_rootfs(br#"{"products": 5}"#, "debian:bookworm:amd64:default").is_err());
}

#[test]
fn listing_parsing_handles_autoindex_styles() {
    let nginx = r#"<html><head><title>Index of /images/debian/bookworm/amd64/default/</title></head>
<body><h1>Index of /images/debian/bookworm/amd64/default/</h1><hr><pre><a href="../">../</a>
<a href="20260218_05%3A24/">20260218_05:24/</a>                                    18-Feb-2026 06:02       -
<a href="20260220_04%3A20/">20260220_04:20/</a>                                    20-Feb-2026 05:01       -
<a href="20260219_05:24/">20260219_05:24/</a>                                    19-Feb-2026 06:01       -
<a href="SHA256SUMS">SHA256SUMS</a>
</pre><hr></body></html>"#;
    assert_eq!(
        builds_in_listing(nginx),
        ["20260218_05:24", "20260219_05:24", "20260220_04:20"]
    );
    assert_eq!(newest_build(nginx).as_deref(), Some("20260220_04:20"));

    let apache = "<tr><td><a HREF='./20251231_23%3a59/'>x</a></td></tr><a href=/images/d/r/a/default/20260101_00%3A01/>y</a>\
                  <a href=\"20260101_00%3A01/\">dup</a><a href=\"2026010_00:01/\">short</a><a href=\"20269999_99:99x/\">junk</a>";
    assert_eq!(
        builds_in_listing(apache),
        ["20251231_23:59", "20260101_00:01"]
    );
    assert_eq!(newest_build("<html>no links</html>"), None);
    assert_eq!(newest_build("<a href=\"unterminated"), None);

    assert!(is_build_name("20260220_04:20"));
    for bad in [
        "20260220_0420",
        "2026022_04:20",
        "20260220-04:20",
        "20260220_04:2a",
        "",
    ] {
        assert!(!is_build_name(bad), "{bad}");
    }
}

#[test]
fn sha256sums_lookup() {
    let sums = format!(
        "{SHA_A}  lxd.tar.xz\n{}  rootfs.tar.xz\n{SHA_B} *rootfs.squashfs\n",
        SHA_B.to_uppercase()
    );
    assert_eq!(
        sha256_from_sums(&sums, "rootfs.tar.xz").as_deref(),
        Some(SHA_B)
    );
    assert_eq!(
        sha256_from_sums(&sums, "rootfs.squashfs").as_deref(),
        Some(SHA_B)
    );
    assert_eq!(sha256_from_sums(&sums, "missing"), None);
    assert_eq!(
        sha256_from_sums("nothex  rootfs.tar.xz", "rootfs.tar.xz"),
        None
    );
}

#[test]
fn compression_is_detected_by_magic_bytes() {
    assert_eq!(detect_compression(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
    assert_eq!(
        detect_compression(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
        Compression::Xz
    );
    assert_eq!(
        detect_compression(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
        Compression::Zstd
    );
    assert_eq!(detect_compression(b"./etc/\0\0\0"), Compression::None);
    assert_eq!(detect_compression(&[]), Compression::None);
}
