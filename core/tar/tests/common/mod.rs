//! Helpers of the tar tests (the same as the store tests').

use std::fs;
use std::path::Path;

pub fn write(path: &Path, content: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, content).unwrap();
}

/// Sorted listing of a tree: (relative path, kind/mode/content summary).
pub fn snapshot_tree(dir: &Path) -> Vec<(String, String)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let ft = m.file_type();
            let desc = if ft.is_dir() {
                stack.push(p.clone());
                let opq = xattr::get(&p, "user.overlay.opaque")
                    .ok()
                    .flatten()
                    .is_some();
                format!("dir {:o} opaque={opq}", m.mode() & 0o7777)
            } else if ft.is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_char_device() {
                format!("chr {}", m.rdev())
            } else {
                format!(
                    "file {:o} {}",
                    m.mode() & 0o7777,
                    blake3::hash(&fs::read(&p).unwrap()).to_hex()
                )
            };
            out.push((rel, desc));
        }
    }
    out.sort();
    out
}
