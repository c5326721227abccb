//! Retrying idempotent requests with exponential backoff, honouring a registry's `Retry-After`.

use std::time::{Duration, SystemTime};

use crate::error::{OciError, Result};
use crate::options::RetryPolicy;

/// The outcome of one try.
pub(crate) enum Attempt<T> {
    Done(T),
    /// A failure worth another try, with the wait the registry asked for, if any.
    Retry {
        error: OciError,
        retry_after: Option<Duration>,
    },
}

/// Runs `attempt` until it is done, fails for good, or the policy's tries are spent (then the
/// last error is returned). With `retryable == false` there is exactly one try: a request that
/// is not idempotent is never repeated. A `Retry-After` longer than the policy allows ends the
/// retries at once.
pub(crate) fn run<T>(
    policy: &RetryPolicy,
    retryable: bool,
    mut attempt: impl FnMut() -> Result<Attempt<T>>,
) -> Result<T> {
    let allowed = if retryable { policy.attempts.max(1) } else { 1 };
    let mut backoff = policy.initial_backoff;
    let mut tried = 0;
    loop {
        tried += 1;
        let (error, retry_after) = match attempt()? {
            Attempt::Done(value) => return Ok(value),
            Attempt::Retry { error, retry_after } => (error, retry_after),
        };
        if tried >= allowed {
            return Err(error);
        }
        let wait = match retry_after {
            Some(asked) if asked > policy.max_retry_after => return Err(error),
            Some(asked) => asked,
            None => backoff,
        };
        tracing::debug!(%error, ?wait, try_number = tried, "retrying");
        std::thread::sleep(wait);
        backoff = backoff.saturating_mul(2).min(policy.max_backoff);
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date (a date in the past means now).
/// `None` for anything unreadable.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurd values saturate; the policy's cap decides what happens to them.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Subject;

    fn transient() -> OciError {
        OciError::Network {
            registry: "r".into(),
            subject: Box::new(Subject::Registry),
            message: "reset".into(),
        }
    }

    fn fast_policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_retry_after: Duration::from_secs(1),
        }
    }

    #[test]
    fn retries_until_done_within_the_policy() {
        let mut calls = 0;
        let value = run(&fast_policy(3), true, || {
            calls += 1;
            Ok(if calls < 3 {
                Attempt::Retry {
                    error: transient(),
                    retry_after: None,
                }
            } else {
                Attempt::Done(calls)
            })
        })
        .unwrap();
        assert_eq!(value, 3);
    }

    #[test]
    fn gives_up_with_the_last_error_when_tries_are_spent() {
        let mut calls = 0;
        let err = run::<()>(&fast_policy(2), true, || {
            calls += 1;
            Ok(Attempt::Retry {
                error: transient(),
                retry_after: None,
            })
        })
        .unwrap_err();
        assert_eq!(calls, 2);
        assert!(matches!(err, OciError::Network { .. }));
    }

    #[test]
    fn a_request_that_is_not_idempotent_is_tried_once() {
        let mut calls = 0;
        let _ = run::<()>(&fast_policy(5), false, || {
            calls += 1;
            Ok(Attempt::Retry {
                error: transient(),
                retry_after: None,
            })
        });
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_retry_after_beyond_the_cap_ends_retries_at_once() {
        let mut calls = 0;
        let _ = run::<()>(&fast_policy(5), true, || {
            calls += 1;
            Ok(Attempt::Retry {
                error: transient(),
                retry_after: Some(Duration::from_hours(1)),
            })
        });
        assert_eq!(calls, 1);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_mins(1))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert!(
            parse_retry_after("99999999999999999999999", now).unwrap() > Duration::from_secs(1)
        );
    }
}
