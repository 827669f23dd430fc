//! The leak collector's task in felix: rounds of
//! [`datastore::ipam::collector`] (lease, scan, guarded releases) for as
//! long as felix runs; every release logged and counted in `/metrics`
//! (`felix_ipam_leaked_addresses_released_total{reason}`), with the
//! leader flag and the leaks its last scan saw. Turned off, as Calico's,
//! by KubeControllersConfiguration `default` (`leakGracePeriod: 0s`, or
//! no `controllers.node`).

use std::sync::Arc;
use std::time::Duration;

use datastore::KvStore;
use datastore::ipam::collector::{Collector, Round};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// How long to wait after a failed round.
const RETRY: Duration = Duration::from_secs(10);

/// Runs the collector of host `node` until dropped.
pub async fn run(kv: Arc<dyn KvStore>, node: String, metrics: Arc<Metrics>) {
    let start = Instant::now();
    let mut collector = Collector::new(kv, &node);
    loop {
        let wait = match collector.round(start.elapsed()).await {
            Ok(round) => {
                record(&round, &metrics);
                round.next_in
            }
            Err(e) => {
                tracing::warn!(error = %e, "the IPAM leak collector's round failed; retrying");
                RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Logs and counts what a round did.
pub fn record(round: &Round, metrics: &Metrics) {
    metrics
        .ipam_gc_leader
        .set(&[], if round.leader { 1.0 } else { 0.0 });
    if round.scanned {
        metrics.ipam_leaks_seen.set(&[], round.seen as f64);
    }
    for r in &round.released {
        let reason = reason_name(r.leak.reason);
        let reason = reason.as_str();
        tracing::info!(
            ip = %r.leak.ip,
            handle = r.leak.handle.as_deref().unwrap_or(""),
            reason,
            leaked_for = ?r.leaked_for,
            "released a leaked IPAM address"
        );
        metrics.ipam_leaks_released.inc(&[reason]);
    }
    for leak in &round.spared {
        tracing::info!(
            ip = %leak.ip,
            handle = leak.handle.as_deref().unwrap_or(""),
            "kept a leaked-looking IPAM address: its handle was written since the scan"
        );
    }
}

/// The reason as `ipam check` writes it (its serde name, camelCase).
fn reason_name(reason: datastore::ipam::LeakReason) -> String {
    match serde_json::to_value(reason) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{reason:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datastore::ipam::collector::Released;
    use datastore::ipam::{LeakReason, LeakedAddress};

    #[test]
    fn releases_are_counted_by_reason_and_the_leader_flag_follows_the_lease() {
        let metrics = Metrics::new();
        let leak = LeakedAddress {
            ip: "10.0.0.9".parse().unwrap(),
            block: "10.0.0.0/26".parse().unwrap(),
            handle: Some("k8s-pod-network.x".into()),
            reason: LeakReason::NodeMissing,
        };
        let round = Round {
            leader: true,
            scanned: true,
            seen: 3,
            released: vec![Released {
                leak,
                leaked_for: Duration::from_secs(900),
            }],
            ..Round::default()
        };
        record(&round, &metrics);
        let text = metrics.render();
        assert!(
            text.contains("felix_ipam_leaked_addresses_released_total{reason=\"nodeMissing\"} 1"),
            "{text}"
        );
        assert!(text.contains("felix_ipam_leaked_addresses 3"), "{text}");
        assert!(text.contains("felix_ipam_gc_leader 1"), "{text}");
        record(&Round::default(), &metrics);
        assert!(metrics.render().contains("felix_ipam_gc_leader 0"));
    }
}
