//! A stream read on a thread of its own, a few buffers ahead of its consumer: an
//! [`ObjectReader`](crate::objects::ObjectReader)'s hashing then overlaps with what the consumer
//! does with the bytes (unpacking a layer writes tens of thousands of files), instead of adding
//! to it.

use crate::objects::{Failure, IO_BUF};
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Buffers in flight from the reading thread to the consumer.
const AHEAD: usize = 2;

/// What the reading thread sends: a chunk of the stream, or its end.
enum Chunk {
    /// A buffer of [`IO_BUF`] bytes of which the first `len` were read (kept at full length:
    /// recycled buffers are not cleared again).
    Bytes { buf: Vec<u8>, len: usize },
    /// The source returned end of file (for an object reader: after its hash matched).
    End,
}

/// Reads `source` on a thread of its own. The stream ends only when the source itself said so:
/// a thread that stopped for any other reason (an error, a panic) is an error, never an early
/// end of file.
///
/// Not for use inside a rayon task: the thread hashes with rayon (`hash_chunk`), which would
/// wait for a pool worker blocked on this reader.
pub(crate) struct ReadAhead {
    chunks: Option<Receiver<io::Result<Chunk>>>,
    /// Consumed buffers go back to the reading thread (no allocation per chunk).
    spare: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    /// The bytes of `cur` read from the source; `pos` of them are consumed.
    len: usize,
    pos: usize,
    state: State,
    thread: Option<JoinHandle<()>>,
}

enum State {
    Streaming,
    Ended,
    /// Kept so that every later read fails too.
    Failed(Failure),
}

impl ReadAhead {
    pub(crate) fn spawn<R: Read + Send + 'static>(source: R) -> io::Result<ReadAhead> {
        let (chunk_tx, chunk_rx) = sync_channel(AHEAD);
        let (spare_tx, spare_rx) = sync_channel(AHEAD);
        let thread = std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || pump(source, &chunk_tx, &spare_rx))?;
        Ok(ReadAhead {
            chunks: Some(chunk_rx),
            spare: spare_tx,
            cur: Vec::new(),
            len: 0,
            pos: 0,
            state: State::Streaming,
            thread: Some(thread),
        })
    }

    /// Waits for the next chunk; false at the end of the stream.
    fn refill(&mut self) -> io::Result<bool> {
        match &self.state {
            State::Ended => return Ok(false),
            State::Failed(f) => return Err(f.again()),
            State::Streaming => {}
        }
        let next = match &self.chunks {
            Some(rx) => rx.recv().unwrap_or_else(|_| {
                Err(io::Error::other(
                    "the reading thread stopped before the end",
                ))
            }),
            // Only `Drop` clears it; never an end of file that skipped the source's own.
            None => Err(io::Error::other("the stream was closed")),
        };
        match next {
            Ok(Chunk::Bytes { buf, len }) => {
                let used = std::mem::replace(&mut self.cur, buf);
                self.len = len;
                self.pos = 0;
                // Full or gone: the reading thread allocates instead.
                let _ = self.spare.try_send(used);
                Ok(true)
            }
            Ok(Chunk::End) => {
                self.state = State::Ended;
                Ok(false)
            }
            Err(e) => {
                self.state = State::Failed(Failure::of(&e));
                Err(e)
            }
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.len {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // A thread blocked sending to a consumer that stopped early sees the channel closed.
        self.chunks = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reading thread: chunks until the source's end of file or first error, each sent as
/// soon as it is read.
fn pump(mut source: impl Read, chunks: &SyncSender<io::Result<Chunk>>, spare: &Receiver<Vec<u8>>) {
    loop {
        let mut buf = spare.try_recv().unwrap_or_default();
        buf.resize(IO_BUF, 0);
        let msg = match source.read(&mut buf) {
            Ok(0) => Ok(Chunk::End),
            Ok(len) => Ok(Chunk::Bytes { buf, len }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let more = matches!(msg, Ok(Chunk::Bytes { .. }));
        if chunks.send(msg).is_err() || !more {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that yields `data` in small pieces, then fails or ends.
    struct Source {
        data: Vec<u8>,
        pos: usize,
        fail_at_end: bool,
    }

    impl Read for Source {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return if self.fail_at_end {
                    Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt"))
                } else {
                    Ok(0)
                };
            }
            let n = out.len().min(7).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn data() -> Vec<u8> {
        (0..100_000u32).map(|i| (i % 251) as u8).collect()
    }

    fn source(fail_at_end: bool) -> Source {
        Source {
            data: data(),
            pos: 0,
            fail_at_end,
        }
    }

    #[test]
    fn passes_the_stream_through_unchanged() {
        let mut r = ReadAhead::spawn(source(false)).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, data());
        assert_eq!(r.read(&mut [0u8; 4]).unwrap(), 0, "ended stays ended");
    }

    #[test]
    fn an_error_at_the_end_is_an_error_every_time() {
        let mut r = ReadAhead::spawn(source(true)).unwrap();
        let mut got = Vec::new();
        let e = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(got, data(), "every byte before the error");
        let again = r.read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_thread_that_dies_is_not_an_end_of_file() {
        struct Panics;
        impl Read for Panics {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                panic!("source broke");
            }
        }
        let mut r = ReadAhead::spawn(Panics).unwrap();
        let e = r.read(&mut [0u8; 4]).unwrap_err();
        assert!(e.to_string().contains("stopped before the end"), "{e}");
    }

    #[test]
    fn a_consumer_that_stops_early_does_not_hang() {
        let src = Source {
            data: vec![1; 10 * IO_BUF],
            pos: 0,
            fail_at_end: false,
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = ReadAhead::spawn(src).unwrap();
            let mut first = [0u8; 3];
            r.read_exact(&mut first).unwrap();
            drop(r); // joins the thread, which is blocked on a full channel
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("dropping a reader whose thread waits on a full channel returns");
    }
}
