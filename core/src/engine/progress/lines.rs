//! Splitting the installer's output, which arrives in pipe-sized chunks, into lines.

/// The longest line kept, in bytes; the rest of a longer line is dropped. A package's output
/// must not make the core hold an unbounded line, and a progress line shows far less.
pub const MAX_LINE: usize = 1024;

/// Bytes of a line not yet ended. A line ends at `\n` or `\r` (tools that redraw a line
/// end each state with `\r`); empty lines are not reported.
#[derive(Debug, Default)]
pub struct LineBuffer {
    partial: Vec<u8>,
}

impl LineBuffer {
    /// Feeds one chunk; `each` gets every line it completes, as text (invalid UTF-8 replaced).
    /// A line split across chunks is reported once, whole.
    pub fn feed(&mut self, chunk: &[u8], mut each: impl FnMut(&str)) {
        for &b in chunk {
            if b == b'\n' || b == b'\r' {
                if !self.partial.is_empty() {
                    each(&String::from_utf8_lossy(&self.partial));
                    self.partial.clear();
                }
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LineBuffer, MAX_LINE};

    fn lines_of(chunks: &[&[u8]]) -> Vec<String> {
        let mut buf = LineBuffer::default();
        let mut out = Vec::new();
        for c in chunks {
            buf.feed(c, |l| out.push(l.to_owned()));
        }
        out
    }

    #[test]
    fn a_line_split_across_chunks_is_reported_whole() {
        assert_eq!(
            lines_of(&[b"Unpacking cu", b"rl (7.88) ...\nSett", b"ing up curl\r\n"]),
            ["Unpacking curl (7.88) ...", "Setting up curl"]
        );
        // Not ended yet: not reported.
        assert!(lines_of(&[b"no newline yet"]).is_empty());
    }

    #[test]
    fn invalid_utf8_and_split_characters_do_not_break_it() {
        // "ü" is C3 BC, split between two chunks; FF is never valid.
        let out = lines_of(&[b"gr\xc3", b"\xbcn \xff\n"]);
        assert_eq!(out, ["grün \u{fffd}"]);
    }

    #[test]
    fn an_endless_line_is_cut_not_kept() {
        let long = vec![b'x'; MAX_LINE * 10];
        let out = lines_of(&[&long, &long, b"\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(out[1], "next");
    }
}
