//! Per-client request rate limit: a token bucket per client address (IPv6 clients per /64,
//! since one host usually owns a whole /64). Requests over the limit get 429 with
//! `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Buckets kept before idle (full) ones are dropped.
const PRUNE_AT: usize = 10_000;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by client.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<RateLimiter> {
        (per_second > 0).then(|| RateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one request from `client`'s bucket; `Err(wait)` when it is empty.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = client_key(client);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= PRUNE_AT {
            let full_after = Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, b| now.saturating_duration_since(b.last) < full_after);
        }
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
        }
    }
}

/// The address a client is counted under (IPv6 per /64, IPv4-mapped as IPv4).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let rl = RateLimiter::new(10, 3).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check(ip, t0).is_ok());
        }
        let wait = rl.check(ip, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        assert!(
            rl.check(other, t0).is_ok(),
            "clients are limited separately"
        );
        assert!(rl.check(ip, t0 + Duration::from_millis(100)).is_ok());
        assert!(rl.check(ip, t0 + Duration::from_millis(100)).is_err());
        assert!(RateLimiter::new(0, 10).is_none());
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let rl = RateLimiter::new(1, 1).unwrap();
        let t0 = Instant::now();
        assert!(rl.check("2001:db8::1".parse().unwrap(), t0).is_ok());
        assert!(rl.check("2001:db8::2".parse().unwrap(), t0).is_err());
        assert!(rl.check("2001:db8:0:1::1".parse().unwrap(), t0).is_ok());
    }
}
