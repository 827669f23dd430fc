//! The leak collector's memory, pure: since when each address has been
//! seen leaked, scan after scan. An address is due for release once every
//! scan for at least the grace period has found it leaked; one scan that
//! finds it fine (its workload appeared, it was released) starts it over.
//! Time is an argument: the caller's monotonic clock, from any origin.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::check::LeakedAddress;

/// Since when each leaked address (and its handle) has been seen leaked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeakTracker {
    since: BTreeMap<(IpAddr, Option<String>), Duration>,
}

/// One leaked address found due, and how long it has been leaked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub leak: LeakedAddress,
    pub leaked_for: Duration,
}

impl LeakTracker {
    /// Takes one scan's leaks at `now`; returns those leaked in every scan
    /// for at least `grace`. Addresses the scan did not find leaked are
    /// forgotten.
    pub fn observe(
        &mut self,
        leaked: &[LeakedAddress],
        now: Duration,
        grace: Duration,
    ) -> Vec<Due> {
        let mut since = BTreeMap::new();
        let mut due = Vec::new();
        for leak in leaked {
            let key = (leak.ip, leak.handle.clone());
            let first = self.since.get(&key).copied().unwrap_or(now);
            let leaked_for = now.saturating_sub(first);
            if leaked_for >= grace {
                due.push(Due {
                    leak: leak.clone(),
                    leaked_for,
                });
            }
            since.insert(key, first);
        }
        self.since = since;
        due
    }

    /// Addresses being watched.
    pub fn watched(&self) -> usize {
        self.since.len()
    }

    /// Forgets everything (the collector stopped: not the leader, or off).
    pub fn forget(&mut self) {
        self.since.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::check::LeakReason;

    fn leak(ip: &str, handle: &str) -> LeakedAddress {
        LeakedAddress {
            ip: ip.parse().unwrap(),
            block: "10.0.0.0/26".parse().unwrap(),
            handle: Some(handle.into()),
            reason: LeakReason::WorkloadEndpointMissing,
        }
    }

    const GRACE: Duration = Duration::from_secs(900);

    fn at(minutes: u64) -> Duration {
        Duration::from_secs(minutes * 60)
    }

    #[test]
    fn an_address_is_due_only_after_the_grace_period_leaked_throughout() {
        let mut t = LeakTracker::default();
        let a = leak("10.0.0.1", "h1");
        assert!(t.observe(std::slice::from_ref(&a), at(0), GRACE).is_empty());
        assert!(
            t.observe(std::slice::from_ref(&a), at(14), GRACE)
                .is_empty()
        );
        let due = t.observe(std::slice::from_ref(&a), at(15), GRACE);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].leaked_for, at(15));
        assert_eq!(t.watched(), 1);
    }

    #[test]
    fn a_scan_that_finds_it_fine_starts_the_clock_over() {
        let mut t = LeakTracker::default();
        let a = leak("10.0.0.1", "h1");
        t.observe(std::slice::from_ref(&a), at(0), GRACE);
        // Its workload appeared: the next scan does not list it.
        t.observe(&[], at(10), GRACE);
        assert_eq!(t.watched(), 0);
        t.observe(std::slice::from_ref(&a), at(11), GRACE);
        assert!(
            t.observe(std::slice::from_ref(&a), at(20), GRACE)
                .is_empty()
        );
        assert_eq!(t.observe(&[a], at(26), GRACE).len(), 1);
    }

    #[test]
    fn the_same_address_under_another_handle_is_another_leak() {
        let mut t = LeakTracker::default();
        t.observe(&[leak("10.0.0.1", "h1")], at(0), GRACE);
        let reused = leak("10.0.0.1", "h2");
        assert!(
            t.observe(std::slice::from_ref(&reused), at(20), GRACE)
                .is_empty()
        );
        t.forget();
        assert_eq!(t.watched(), 0);
    }
}
