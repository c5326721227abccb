//! Connections per client address: one client must not hold every worker and queue slot
//! (idle connections opened faster than they time out would otherwise lock everyone else out,
//! token or not). A connection counts from accept until its worker is done with it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::ratelimit::client_key;

/// Live connections per client address, capped.
pub struct PeerCounts {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; frees its place when dropped.
pub struct PeerSlot {
    key: IpAddr,
    counts: Arc<PeerCounts>,
}

impl PeerCounts {
    /// At most `max` connections per address (at least 1).
    pub fn new(max: usize) -> Arc<PeerCounts> {
        Arc::new(PeerCounts {
            max: max.max(1),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `ip`, or `None` when that address already holds `max`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let key = client_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            key,
            counts: Arc::clone(self),
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_max_slots_and_gets_them_back() {
        let p = PeerCounts::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = p.admit(a).unwrap();
        let _s2 = p.admit(a).unwrap();
        assert!(p.admit(a).is_none());
        assert!(p.admit(b).is_some(), "other addresses are not affected");
        drop(s1);
        assert!(p.admit(a).is_some());
        // IPv6 clients count per /64.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2".parse().unwrap();
        let _x = p.admit(v6a).unwrap();
        let _y = p.admit(v6b).unwrap();
        assert!(p.admit(v6a).is_none());
    }
}
