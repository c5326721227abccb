//! A download guard: what a hostile or broken remote must not be able to do to a pull — fill
//! the disk (a blob larger than any layer the store would unpack, or a disk about to be full)
//! or keep it waiting forever by trickling bytes (a pull holds the build lease, so gc waits).

use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Slowest average transfer accepted once [`GRACE`] has passed.
pub const MIN_BYTES_PER_SEC: u64 = 4 * 1024;
/// How long a transfer may run before the rate counts (a slow start is not an attack).
pub const GRACE: Duration = Duration::from_mins(1);
/// Space that must stay free on the store's file system while a pull writes.
pub const MIN_FREE_BYTES: u64 = 512 << 20;
/// How often (in bytes received) free space is checked.
const FREE_CHECK_EVERY: u64 = 64 << 20;

pub struct Guarded<R> {
    inner: R,
    what: String,
    max_bytes: u64,
    store_dir: PathBuf,
    started: Instant,
    read: u64,
    next_free_check: u64,
    /// Why the guard stopped the transfer, if it did.
    pub tripped: Option<String>,
}

impl<R: Read> Guarded<R> {
    /// `what` names the blob and remote in errors; `max_bytes` caps its size; `store_dir` is
    /// where it is written (its file system's free space is watched).
    pub fn new(inner: R, what: String, max_bytes: u64, store_dir: PathBuf) -> Guarded<R> {
        Guarded {
            inner,
            what,
            max_bytes,
            store_dir,
            started: Instant::now(),
            read: 0,
            next_free_check: 0,
            tripped: None,
        }
    }

    fn fail(&mut self, why: &str) -> io::Error {
        let message = format!("{}: {why}", self.what);
        self.tripped = Some(message.clone());
        io::Error::other(message)
    }
}

fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available().saturating_mul(st.fragment_size()))
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read >= self.next_free_check {
            if free_bytes(&self.store_dir).is_some_and(|free| free < MIN_FREE_BYTES) {
                let why = format!(
                    "stopped: less than {} MiB left free on the store's file system",
                    MIN_FREE_BYTES >> 20
                );
                return Err(self.fail(&why));
            }
            self.next_free_check = self.read + FREE_CHECK_EVERY;
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.max_bytes {
            let why = format!(
                "larger than {} bytes, the most a layer may hold here (archive_max_bytes)",
                self.max_bytes
            );
            return Err(self.fail(&why));
        }
        let elapsed = self.started.elapsed();
        if n > 0 && elapsed > GRACE && self.read / elapsed.as_secs().max(1) < MIN_BYTES_PER_SEC {
            let why = format!(
                "too slow (under {} KiB/s after {} s); try again",
                MIN_BYTES_PER_SEC >> 10,
                GRACE.as_secs()
            );
            return Err(self.fail(&why));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_over_its_cap_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 10_000];
        let mut g = Guarded::new(
            &data[..],
            "object x on mem://".into(),
            4096,
            dir.path().into(),
        );
        let err = io::copy(&mut g, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("larger than 4096 bytes"), "{err}");
        let mut ok = Guarded::new(&data[..], "object y".into(), 10_000, dir.path().into());
        assert_eq!(io::copy(&mut ok, &mut io::sink()).unwrap(), 10_000);
    }
}
