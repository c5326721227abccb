//! A blob-count progress bar for push and pull, on stderr and only when stderr is a terminal
//! (stdout carries results and must stay clean for scripts).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress(Option<ProgressBar>);

impl Progress {
    pub fn new(verb: &str, short_id: &str, blobs: usize) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(blobs as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("{verb} {short_id}"));
        Progress(Some(bar))
    }

    /// Moves on to the blob `key`.
    pub fn step(&self, key: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(key.get(..12).unwrap_or(key).to_string());
            bar.inc(1);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error leaves no half-drawn bar above its message.
        self.finish();
    }
}
