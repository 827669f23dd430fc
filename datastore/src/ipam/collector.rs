//! The leak collector: what Calico's kube-controllers does for IPAM,
//! here run by felix on whichever host holds the `ipam-gc` lease.
//!
//! ```text
//! every round (a third of the lease):      every period, on the leader:
//!   locked for a migration? ─▶ skip          Ipam::scan (IPAM, then its owners)
//!   Lease::tick ─▶ not leader ─▶ forget      LeakTracker::observe ─▶ due (leaked ≥ grace)
//!   KubeControllersConfiguration ─▶ off?     release_leaked_guarded (handle as scanned)
//! ```
//!
//! An address is released once every scan for the grace period found it
//! leaked ([`check`](super::check)'s reasons: no handle, its handle gone,
//! its Node gone, its pod's WorkloadEndpoint gone or not listing it).
//! Each release compares the handle's revision with the scan's, and the
//! CNI plugin writes a WorkloadEndpoint in one transaction with its
//! handle ([`Ipam::create_holding`]): a workload appearing at the same
//! instant keeps its address, and a CNI ADD slower than the grace period
//! fails and is retried rather than sharing an address.
//!
//! Settings are Calico's, from KubeControllersConfiguration `default`:
//! `controllers.node.leakGracePeriod` (default 15m; `0s` turns the
//! collector off) and `controllers.node.reconcilerPeriod` (the scan
//! period, default 5m). A configuration without `controllers.node` turns
//! it off, as it turns off Calico's node controller; no configuration at
//! all means the defaults.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use api::{Kind, KubeControllersConfiguration, Resource};

use super::check::LeakedAddress;
use super::client::Ipam;
use super::leaks::{Due, LeakTracker};
use crate::error::Error;
use crate::kv::KvStore;
use crate::lease::Lease;
use crate::resources::ResourceStore;

/// The lease the collectors compete for.
pub const LEASE: &str = "ipam-gc";
/// How long the lease lasts unrenewed.
pub const LEASE_DURATION: Duration = Duration::from_secs(30);
/// Calico's default `leakGracePeriod`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15 * 60);
/// Calico's default node `reconcilerPeriod`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5 * 60);
/// The shortest scan period honoured.
const MIN_PERIOD: Duration = Duration::from_secs(1);

/// When the collector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long an address must stay leaked before it is released.
    pub grace: Duration,
    /// How often the leader scans.
    pub period: Duration,
}

/// The settings a KubeControllersConfiguration gives; `None` is off.
pub fn settings(config: Option<&KubeControllersConfiguration>) -> Option<Settings> {
    let Some(config) = config else {
        return Some(Settings {
            grace: DEFAULT_GRACE,
            period: DEFAULT_PERIOD,
        });
    };
    let node = config.spec.controllers.node.as_ref()?;
    let grace = node.leak_grace_period.map_or(DEFAULT_GRACE, |d| d.0);
    let period = node.reconciler_period.map_or(DEFAULT_PERIOD, |d| d.0);
    (!grace.is_zero()).then_some(Settings {
        grace,
        period: period.max(MIN_PERIOD),
    })
}

/// One released address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub leak: LeakedAddress,
    pub leaked_for: Duration,
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Whether this candidate held the lease.
    pub leader: bool,
    /// Whether the store was locked for a migration (nothing done).
    pub locked: bool,
    /// The settings in force (`None`: off, or not the leader).
    pub settings: Option<Settings>,
    /// Whether a scan ran.
    pub scanned: bool,
    /// Leaked addresses the scan found.
    pub seen: usize,
    /// Addresses released.
    pub released: Vec<Released>,
    /// Addresses due but kept: their handle was written since the scan.
    pub spared: Vec<LeakedAddress>,
    /// How long until the next round.
    pub next_in: Duration,
}

/// One host's collector.
#[derive(Debug)]
pub struct Collector {
    kv: Arc<dyn KvStore>,
    lease: Lease,
    tracker: LeakTracker,
    /// When (the caller's clock) the next scan is due.
    next_scan: Duration,
}

impl Collector {
    /// The collector of host `me`.
    pub fn new(kv: Arc<dyn KvStore>, me: &str) -> Self {
        Self {
            kv,
            lease: Lease::new(LEASE, me, LEASE_DURATION),
            tracker: LeakTracker::default(),
            next_scan: Duration::ZERO,
        }
    }

    /// One round at `now` (a monotonic clock from any origin).
    pub async fn round(&mut self, now: Duration) -> super::Result<Round> {
        let mut round = Round {
            next_in: self.lease.renew_every(),
            ..Round::default()
        };
        match crate::migrate::check_unlocked(&self.kv).await {
            Err(Error::Locked) => {
                round.locked = true;
                self.tracker.forget();
                return Ok(round);
            }
            other => other?,
        }
        round.leader = match self.lease.tick(&self.kv, now).await {
            Ok(held) => held,
            Err(e) if self.lease.held() => {
                tracing::warn!(error = %e, "renewing the ipam-gc lease failed; still its holder");
                true
            }
            Err(e) => return Err(e.into()),
        };
        if !round.leader {
            self.tracker.forget();
            return Ok(round);
        }
        let store = ResourceStore::new(self.kv.clone());
        let config = match store
            .get(Kind::KubeControllersConfiguration, None, "default")
            .await
        {
            Ok(Resource::KubeControllersConfiguration(c)) => Some(c),
            Ok(_) | Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        round.settings = settings(config.as_ref());
        let Some(settings) = round.settings else {
            self.tracker.forget();
            return Ok(round);
        };
        if now < self.next_scan {
            round.next_in = round.next_in.min(self.next_scan - now);
            return Ok(round);
        }
        self.next_scan = now + settings.period;
        round.next_in = round.next_in.min(settings.period);
        let ipam = Ipam::new(self.kv.clone());
        let mut scan = ipam.scan().await?;
        round.scanned = true;
        round.seen = scan.report.leaked.len();
        let due = self
            .tracker
            .observe(&scan.report.leaked, now, settings.grace);
        if due.is_empty() {
            return Ok(round);
        }
        let leaks: Vec<LeakedAddress> = due.iter().map(|d| d.leak.clone()).collect();
        let freed: Vec<IpAddr> = ipam.release_leaked_guarded(&leaks, &mut scan.guard).await?;
        for Due { leak, leaked_for } in due {
            if freed.contains(&leak.ip) {
                round.released.push(Released { leak, leaked_for });
            } else {
                round.spared.push(leak);
            }
        }
        Ok(round)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::kubecontrollers::{KubeControllersConfigurationSpec, NodeController};
    use api::{GoDuration, ObjectMeta};

    fn config(node: Option<NodeController>) -> KubeControllersConfiguration {
        let mut spec = KubeControllersConfigurationSpec::default();
        spec.controllers.node = node;
        KubeControllersConfiguration::new(ObjectMeta::named("default"), spec)
    }

    #[test]
    fn settings_follow_calico_s_node_controller() {
        assert_eq!(
            settings(None),
            Some(Settings {
                grace: DEFAULT_GRACE,
                period: DEFAULT_PERIOD
            })
        );
        assert_eq!(settings(Some(&config(None))), None, "node controller off");
        let node = NodeController {
            leak_grace_period: Some(GoDuration(Duration::from_secs(60))),
            reconciler_period: Some(GoDuration(Duration::from_millis(10))),
            ..NodeController::default()
        };
        assert_eq!(
            settings(Some(&config(Some(node.clone())))),
            Some(Settings {
                grace: Duration::from_secs(60),
                period: MIN_PERIOD
            })
        );
        let off = NodeController {
            leak_grace_period: Some(GoDuration(Duration::ZERO)),
            ..node
        };
        assert_eq!(settings(Some(&config(Some(off)))), None, "0s turns it off");
    }
}
