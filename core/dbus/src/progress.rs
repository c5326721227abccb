//! A build's progress for `BuildProgress`: the engine reports its steps as `tracing` events
//! ("extracting <image>", each installer step), so a layer of the service's subscriber forwards
//! the info-level events of a thread that runs a build to that build's sink. Other threads' events
//! only go to the log.
//!
//! The text is the engine's, which may quote a manifest or a package: control characters are
//! replaced and it is cut to [`MAX_MESSAGE_CHARS`] before it leaves the service.

use std::cell::RefCell;
use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// The longest `BuildProgress` message.
pub const MAX_MESSAGE_CHARS: usize = 512;

type Sink = Box<dyn Fn(&str)>;

thread_local! {
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

/// Runs `work` with `sink` receiving the progress messages this thread logs meanwhile.
pub fn with_sink<T>(sink: impl Fn(&str) + 'static, work: impl FnOnce() -> T) -> T {
    /// Clears the sink also when `work` panics: pool threads are reused.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SINK.with(|s| s.borrow_mut().take());
        }
    }
    SINK.with(|s| *s.borrow_mut() = Some(Box::new(sink)));
    let _reset = Reset;
    work()
}

/// The subscriber layer that feeds the sinks (install it with an info-level filter).
#[derive(Debug, Default)]
pub struct ProgressLayer;

impl<S: tracing::Subscriber> Layer<S> for ProgressLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        // Taken out while it runs: a sink that logs (sending a signal does) must not re-enter.
        let Some(sink) = SINK.with(|s| s.borrow_mut().take()) else {
            return;
        };
        let mut text = Message::default();
        event.record(&mut text);
        let message = clean(&text.0);
        if !message.is_empty() {
            sink(&message);
        }
        SINK.with(|s| *s.borrow_mut() = Some(sink));
    }
}

/// The event's `message` field, then its other fields as `name=value`.
#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }
}

/// One line, printable, at most [`MAX_MESSAGE_CHARS`].
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_threads_events_reach_its_sink_only_while_it_builds() {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let subscriber = tracing_subscriber::registry().with(ProgressLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before");
            let sink_seen = Arc::clone(&seen);
            with_sink(
                move |m| sink_seen.lock().unwrap().push(m.to_owned()),
                || {
                    tracing::info!("extracting {}", "http://x/\u{1b}[31mimage");
                    tracing::info!(step = 2, "apt");
                },
            );
            tracing::info!("after");
        });
        assert_eq!(
            *seen.lock().unwrap(),
            ["extracting http://x/ [31mimage", "apt step=2"]
        );
    }

    #[test]
    fn messages_are_one_bounded_line() {
        assert_eq!(clean("a\nb\r"), "a b");
        assert_eq!(clean(&"x".repeat(5000)).chars().count(), MAX_MESSAGE_CHARS);
    }
}
