//! A writer that hands full buffers to a thread of its own, which writes them on: an object's
//! hashing and writing then overlap with what produces the bytes (packing a tree reads tens of
//! thousands of files), as `tar -c | b3sum` overlaps its two programs.

use crate::objects::{Failure, IO_BUF};
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Full buffers in flight to the writing thread.
const BEHIND: usize = 2;

/// Writes into `IO_BUF`-sized buffers; the thread writes each full one to the sink, in order.
/// The sink comes back from [`WriteBehind::finish`] with everything written to it, or with the
/// first error the thread met (every write after that error fails the same way).
///
/// Not for use inside a rayon task: the thread hashes with rayon (`hash_chunk`), which would
/// wait for a pool worker blocked on this writer.
pub(crate) struct WriteBehind<W: Write + Send + 'static> {
    buf: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    /// Written buffers come back (no allocation per buffer).
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<W>>>,
    failed: Option<Failure>,
}

impl<W: Write + Send + 'static> WriteBehind<W> {
    pub(crate) fn spawn(sink: W) -> io::Result<Self> {
        let (full_tx, full_rx) = sync_channel(BEHIND);
        let (spare_tx, spare_rx) = sync_channel(BEHIND);
        let thread = std::thread::Builder::new()
            .name("write-behind".into())
            .spawn(move || drain(sink, &full_rx, &spare_tx))?;
        Ok(WriteBehind {
            buf: Vec::with_capacity(IO_BUF),
            full: Some(full_tx),
            spare: spare_rx,
            thread: Some(thread),
            failed: None,
        })
    }

    /// Hands the buffer to the thread. A thread that stopped did so on an error, which this
    /// returns.
    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(IO_BUF));
        let full = std::mem::replace(&mut self.buf, next);
        let sent = match &self.full {
            Some(tx) => tx.send(full).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self
                .stop()
                .err()
                .unwrap_or_else(|| io::Error::other("the writing thread is gone")))
        }
    }

    /// Ends the stream and waits for the thread: the sink, with every byte written to it.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.hand_over()?;
        self.stop()
    }

    /// Waits for the thread; its error is kept for every later call.
    fn stop(&mut self) -> io::Result<W> {
        self.full = None;
        if let Some(f) = &self.failed {
            return Err(f.again());
        }
        let Some(t) = self.thread.take() else {
            return Err(io::Error::other("the writing thread is gone"));
        };
        let ended = t
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writing thread failed")));
        if let Err(e) = &ended {
            self.failed = Some(Failure::of(e));
        }
        ended
    }
}

impl<W: Write + Send + 'static> Write for WriteBehind<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(f) = &self.failed {
            return Err(f.again());
        }
        let n = data.len().min(IO_BUF - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == IO_BUF {
            self.hand_over()?;
        }
        Ok(n)
    }

    /// Hands what is buffered to the thread; [`WriteBehind::finish`] is what waits for it to
    /// be written.
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl<W: Write + Send + 'static> Drop for WriteBehind<W> {
    fn drop(&mut self) {
        // Unfinished: what is buffered is dropped, and the thread is waited for, so that
        // nothing writes to the sink afterwards.
        let _ = self.stop();
    }
}

/// The writing thread: each buffer into the sink, until the stream ends or a write fails.
fn drain<W: Write>(
    mut sink: W,
    full: &Receiver<Vec<u8>>,
    spare: &SyncSender<Vec<u8>>,
) -> io::Result<W> {
    while let Ok(mut buf) = full.recv() {
        sink.write_all(&buf)?;
        buf.clear();
        // Full or gone: the producer allocates instead.
        let _ = spare.try_send(buf);
    }
    sink.flush()?;
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that fails once it holds `limit` bytes.
    struct Limited {
        got: Vec<u8>,
        limit: usize,
    }

    impl Write for Limited {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.got.len() >= self.limit {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "full"));
            }
            let n = data.len().min(self.limit - self.got.len());
            self.got.extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..=250u8).cycle().take(len).collect()
    }

    #[test]
    fn writes_everything_in_order() {
        let bytes = data(3 * IO_BUF + 12_345);
        let mut w = WriteBehind::spawn(Limited {
            got: Vec::new(),
            limit: usize::MAX,
        })
        .unwrap();
        // Pieces of every size, across buffer boundaries.
        for piece in bytes.chunks(7919) {
            w.write_all(piece).unwrap();
        }
        assert_eq!(w.finish().unwrap().got, bytes);
    }

    #[test]
    fn a_failed_write_is_reported_not_dropped() {
        let mut w = WriteBehind::spawn(Limited {
            got: Vec::new(),
            limit: IO_BUF / 2,
        })
        .unwrap();
        let bytes = data(8 * IO_BUF);
        let e = w
            .write_all(&bytes)
            .and_then(|()| w.flush())
            .err()
            .or_else(|| w.finish().err())
            .expect("the sink's error surfaces");
        assert_eq!(e.kind(), io::ErrorKind::StorageFull, "{e}");
    }

    #[test]
    fn a_small_stream_fails_at_finish() {
        let mut w = WriteBehind::spawn(Limited {
            got: Vec::new(),
            limit: 10,
        })
        .unwrap();
        w.write_all(&data(100)).unwrap();
        let e = w.finish().err().expect("the sink's error surfaces");
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn every_call_after_a_failure_fails_with_its_os_error() {
        /// Fails every write with ENOSPC.
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(nix::libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = WriteBehind::spawn(Full).unwrap();
        let first = w
            .write_all(&data(4 * IO_BUF))
            .expect_err("a later buffer meets the thread's error");
        assert_eq!(first.raw_os_error(), Some(nix::libc::ENOSPC));
        let again = w.write(b"x").unwrap_err();
        assert_eq!(again.raw_os_error(), Some(nix::libc::ENOSPC), "{again}");
        let at_finish = w.finish().map(|_| ()).expect_err("finish fails too");
        assert_eq!(
            at_finish.raw_os_error(),
            Some(nix::libc::ENOSPC),
            "{at_finish}"
        );
    }

    #[test]
    fn dropped_unfinished_waits_for_the_thread() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        /// A slow sink that counts what it was given.
        struct Slow(Arc<AtomicUsize>);
        impl Write for Slow {
            fn write(&mut self, data: &[u8]) -> io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_millis(20));
                self.0.fetch_add(data.len(), Ordering::SeqCst);
                Ok(data.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let written = Arc::new(AtomicUsize::new(0));
        let mut w = WriteBehind::spawn(Slow(Arc::clone(&written))).unwrap();
        // Four full buffers go to the thread; the partial fifth stays behind and is dropped.
        w.write_all(&data(4 * IO_BUF + 10)).unwrap();
        drop(w);
        let at_drop = written.load(Ordering::SeqCst);
        assert_eq!(
            at_drop,
            4 * IO_BUF,
            "every handed-over buffer written before drop returns"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            written.load(Ordering::SeqCst),
            at_drop,
            "nothing written after drop"
        );
    }
}
