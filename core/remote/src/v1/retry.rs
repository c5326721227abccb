//! When and how long to wait before repeating an idempotent request.

use std::time::Duration;

/// Longest `Retry-After` honoured; a server asking for more gets its request failed instead of
/// a client that hangs for minutes.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Exponential backoff: `base * 2^attempt`, at most `cap`.
pub(crate) fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(cap)
}

/// Statuses worth another try: the server is overloaded, restarting or rate limiting.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The delay a `Retry-After: <seconds>` header asks for (HTTP dates are not used by our server
/// and are ignored), `None` when absent, malformed or longer than [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: u64 = value?.trim().parse().ok()?;
    let d = Duration::from_secs(secs);
    (d <= MAX_RETRY_AFTER).then_some(d)
}

/// Transport failures worth another try (the request may not have reached the server, or the
/// connection broke); TLS and protocol errors are not retried.
pub(crate) fn is_retryable_error(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        assert_eq!(backoff(base, cap, 0), Duration::from_millis(100));
        assert_eq!(backoff(base, cap, 3), Duration::from_millis(800));
        assert_eq!(backoff(base, cap, 10), cap);
        assert_eq!(backoff(base, cap, u32::MAX), cap);
    }

    #[test]
    fn retry_after_is_bounded() {
        assert_eq!(retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some("3600")), None);
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
        assert!(is_retryable_status(429) && is_retryable_status(503));
        assert!(!is_retryable_status(404) && !is_retryable_status(412));
    }
}
