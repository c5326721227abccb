//! Archive builders shared by the integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::time::Duration;

use karapace_images::{ImageConfig, TransferOptions};

/// A tar header with the name written raw, so hostile names (`..`, absolute) survive — the tar
/// crate's own path setters refuse them.
pub fn raw_header(
    name: &str,
    kind: tar::EntryType,
    mode: u32,
    size: u64,
    link: Option<&str>,
) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    {
        let bytes = h.as_mut_bytes();
        bytes[..100].fill(0);
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            bytes[157..257].fill(0);
            bytes[157..157 + link.len()].copy_from_slice(link.as_bytes());
        }
    }
    h.set_cksum();
    h
}

/// One archive entry: `(name, kind, mode, data, link target)`.
pub type Entry<'a> = (&'a str, tar::EntryType, u32, &'a [u8], Option<&'a str>);

/// Builds a plain tar from entries.
pub fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, mode, data, link) in entries {
        let h = raw_header(name, *kind, *mode, data.len() as u64, *link);
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A tiny but realistic rootfs: dirs, an executable, a set-id file, a symlink, a hard link and a
/// device node (which extraction skips).
pub fn small_rootfs() -> Vec<u8> {
    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};
    tar_of(&[
        ("./", Directory, 0o755, b"", None),
        ("./etc/", Directory, 0o755, b"", None),
        ("./etc/debian_version", Regular, 0o644, b"12.99\n", None),
        ("./etc/shadow", Regular, 0o640, b"root:*:1::::::\n", None),
        ("./usr/", Directory, 0o755, b"", None),
        ("./usr/bin/", Directory, 0o755, b"", None),
        (
            "./usr/bin/tool",
            Regular,
            0o755,
            b"#!/bin/sh\necho tool\n",
            None,
        ),
        ("./usr/bin/su", Regular, 0o4755, b"setuid binary\n", None),
        (
            "./usr/bin/tool-link",
            Link,
            0o755,
            b"",
            Some("./usr/bin/tool"),
        ),
        ("./bin", Symlink, 0o777, b"", Some("usr/bin")),
        (
            "./etc/localtime",
            Symlink,
            0o777,
            b"",
            Some("/usr/share/zoneinfo/UTC"),
        ),
        ("./dev/", Directory, 0o755, b"", None),
        ("./dev/null", Char, 0o666, b"", None),
        ("./dev/sda", Block, 0o660, b"", None),
        ("./dev/initctl", Fifo, 0o600, b"", None),
        ("./root/", Directory, 0o700, b"", None),
    ])
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 1).unwrap()
}

/// A configuration for a loopback or file:// server with short timeouts and no progress bar.
pub fn config(server: &str, cache: &std::path::Path) -> ImageConfig {
    let mut cfg = ImageConfig::new(server, cache).unwrap();
    cfg.arch = "amd64".to_string();
    cfg.transfer = TransferOptions {
        connect_timeout: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(2),
        progress: false,
    };
    cfg
}
