//! The progress of one build step, from the lines of its output, as one line of text.

use super::apt::{self, Event};
use crate::output::{Newlines, escape};

/// Which build step runs: its place among the build's installer steps and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based.
    pub n: usize,
    pub of: usize,
    /// `refreshing` or `installing`.
    pub label: &'static str,
}

impl Step {
    /// The `i`-th (0-based) of a build's `of` installer steps, the first `refreshing` of which
    /// refresh the package lists and the rest install.
    pub fn of_build(i: usize, of: usize, refreshing: usize) -> Self {
        Step {
            n: i + 1,
            of,
            label: if i < refreshing {
                "refreshing"
            } else {
                "installing"
            },
        }
    }
}

/// What one step is doing, as far as its output tells.
#[derive(Debug)]
pub struct Tracker {
    step: Step,
    /// Packages this run installs (apt's totals line), once known.
    total: Option<u32>,
    unpacked: u32,
    set_up: u32,
    /// What the installer's last recognised line said, ready to show (unescaped).
    activity: Option<String>,
    /// The last line of output, for an installer this does not know.
    last_line: Option<String>,
}

impl Tracker {
    pub fn new(step: Step) -> Self {
        Tracker {
            step,
            total: None,
            unpacked: 0,
            set_up: 0,
            activity: None,
            last_line: None,
        }
    }

    /// Takes one line of the step's output.
    pub fn line(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.last_line = Some(line.trim().to_owned());
        let Some(event) = apt::parse(line) else {
            return;
        };
        let of = |k: u32, total: Option<u32>| match total {
            Some(t) if k <= t => format!("({k} of {t})"),
            _ => format!("({k})"),
        };
        self.activity = Some(match event {
            Event::FetchPackage { n, package } => {
                format!("fetching {package} {}", of(n, self.total))
            }
            Event::FetchIndex { n, what } => format!("fetching {what} ({n})"),
            Event::Total(t) => {
                self.total = Some(t);
                format!("{t} packages to install")
            }
            Event::Unpack(package) => {
                self.unpacked = self.unpacked.saturating_add(1);
                format!("unpacking {package} {}", of(self.unpacked, self.total))
            }
            Event::SetUp(package) => {
                self.set_up = self.set_up.saturating_add(1);
                format!("setting up {package} {}", of(self.set_up, self.total))
            }
            Event::Triggers(package) => format!("processing triggers for {package}"),
            Event::Phase(what) => what.to_owned(),
        });
    }

    /// The progress line, at most `width` columns, with nothing in it that could steer a
    /// terminal: `[2/2] installing: setting up curl (17 of 17)`. An installer whose lines are
    /// not recognised shows its last line instead.
    pub fn render(&self, width: usize) -> String {
        let Step { n, of, label } = &self.step;
        let what = self.activity.as_deref().or(self.last_line.as_deref());
        let text = match what {
            Some(what) => format!("[{n}/{of}] {label}: {what}"),
            None => format!("[{n}/{of}] {label}"),
        };
        fit(&escape(&text, Newlines::Escape), width)
    }
}

/// `text` cut to at most `width` columns (one fewer than the terminal's: writing its last
/// column makes some terminals wrap). Columns are counted conservatively, two for anything
/// outside ASCII, so that wide characters never make the line wrap (a wrapped line cannot be
/// redrawn in place).
fn fit(text: &str, width: usize) -> String {
    let room = width.saturating_sub(1);
    let cols = |c: char| if c.is_ascii() { 1 } else { 2 };
    if text.chars().map(cols).sum::<usize>() <= room {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        // Keep one column for the ellipsis.
        if used + cols(c) > room.saturating_sub(1) {
            break;
        }
        used += cols(c);
        out.push(c);
    }
    if room > 0 {
        out.push('~');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Step, Tracker, fit};
    use crate::engine::progress::lines::LineBuffer;

    const UPDATE: &str = include_str!("testdata/apt-update.txt");
    const INSTALL_CURL: &str = include_str!("testdata/apt-install-curl.txt");

    fn install_step() -> Step {
        Step::of_build(1, 2, 1)
    }

    /// Feeds `bytes` in chunks of `size` and returns every distinct line shown, in order.
    fn shown(step: Step, bytes: &[u8], size: usize) -> Vec<String> {
        let mut tracker = Tracker::new(step);
        let mut lines = LineBuffer::default();
        let mut out: Vec<String> = vec![tracker.render(200)];
        for chunk in bytes.chunks(size) {
            lines.feed(chunk, |l| tracker.line(l));
            let now = tracker.render(200);
            if out.last() != Some(&now) {
                out.push(now);
            }
        }
        out
    }

    #[test]
    fn a_recorded_curl_install_shows_each_package_n_of_total() {
        let seen = shown(install_step(), INSTALL_CURL.as_bytes(), 4096);
        let all = seen.join("\n");
        assert_eq!(seen[0], "[2/2] installing");
        // Chunks of 4 KiB hold many lines: only the state after each chunk is shown.
        assert!(all.contains("[2/2] installing: "), "{all}");
        let every_line = shown(install_step(), INSTALL_CURL.as_bytes(), 1);
        let all = every_line.join("\n");
        for want in [
            "[2/2] installing: resolving dependencies",
            "[2/2] installing: 17 packages to install",
            "[2/2] installing: fetching libbrotli1 (1 of 17)",
            "[2/2] installing: fetching curl (17 of 17)",
            "[2/2] installing: unpacking libbrotli1 (1 of 17)",
            "[2/2] installing: unpacking libssl3 (6 of 17)",
            "[2/2] installing: unpacking curl (17 of 17)",
            "[2/2] installing: setting up libkeyutils1 (1 of 17)",
            "[2/2] installing: setting up curl (17 of 17)",
            "[2/2] installing: processing triggers for libc-bin",
        ] {
            assert!(every_line.iter().any(|l| l == want), "{want} in:\n{all}");
        }
        assert_eq!(
            every_line.last().map(String::as_str),
            Some("[2/2] installing: processing triggers for libc-bin")
        );
    }

    #[test]
    fn any_chunking_gives_the_same_final_line() {
        let whole = shown(install_step(), INSTALL_CURL.as_bytes(), usize::MAX);
        for size in [1, 2, 3, 7, 100, 333, 4096] {
            let split = shown(install_step(), INSTALL_CURL.as_bytes(), size);
            assert_eq!(split.last(), whole.last(), "chunks of {size}");
        }
    }

    #[test]
    fn a_recorded_update_shows_the_index_files() {
        let seen = shown(Step::of_build(0, 2, 1), UPDATE.as_bytes(), 1);
        assert!(
            seen.iter()
                .any(|l| l == "[1/2] refreshing: fetching bookworm/main amd64 Packages (4)"),
            "{seen:?}"
        );
        assert_eq!(
            seen.last().map(String::as_str),
            Some("[1/2] refreshing: reading package lists")
        );
    }

    #[test]
    fn an_unknown_installer_shows_its_last_line() {
        // Not apt: a made-up installer's output (other plugins' managers print other lines).
        let out = b"(1/3) Installing musl (1.2.4-r2)\n(2/3) Installing zlib (1.3-r0)\n";
        let seen = shown(install_step(), out, 5);
        assert_eq!(
            seen.last().map(String::as_str),
            Some("[2/2] installing: (2/3) Installing zlib (1.3-r0)")
        );
    }

    #[test]
    fn hostile_control_bytes_never_reach_the_line() {
        let out =
            b"Setting up \x1b]0;owned\x07evil (1) ...\n\x1b[2J\x1b[1;1Hfake\r\x9b\xc2\x9b31m\n";
        let seen = shown(install_step(), out, 3);
        for line in &seen {
            assert!(
                !line.chars().any(char::is_control),
                "a control character reached the terminal: {line:?}"
            );
        }
        assert!(
            seen.iter().any(|l| l.contains("\\x1b]0;owned\\x07evil")),
            "{seen:?}"
        );
        assert_eq!(
            seen.last().map(String::as_str),
            Some("[2/2] installing: setting up \\x1b]0;owned\\x07evil (1)")
        );
        // An unknown installer's last line is shown escaped too; a bare `\r` ends a line.
        let seen = shown(
            install_step(),
            b"\x1b[2J\x1b[1;1Hfake\r\xc2\x9b31m \xff\n",
            2,
        );
        assert_eq!(
            seen.last().map(String::as_str),
            Some("[2/2] installing: \\x9b31m \u{fffd}")
        );
        assert!(
            seen.iter()
                .any(|l| l == "[2/2] installing: \\x1b[2J\\x1b[1;1Hfake")
        );
    }

    #[test]
    fn lines_fit_the_terminal_and_wide_text_never_wraps() {
        assert_eq!(fit("abcdef", 7), "abcdef");
        assert_eq!(fit("abcdefgh", 7), "abcde~");
        // 10 wide characters take up to 20 columns: cut to fit 9 (width 10 minus one).
        assert_eq!(fit("漢字漢字漢字漢字漢字", 10), "漢字漢字~");
        assert_eq!(fit("abc", 0), "");
        assert_eq!(fit("abc", 1), "");
        let mut t = Tracker::new(install_step());
        t.line(&format!("Setting up {} (1) ...", "x".repeat(500)));
        assert!(t.render(80).chars().count() <= 79);
    }
}
