//! This host's `CalicoNodeStatus` in the datastore: its BGP sessions, so
//! that `calicoctl node status --all` and the console see every node's
//! from anywhere (Calico's status is read on the node itself only).
//!
//! ```text
//! speaker (status::Source) ─every period─▶ status_of (pure) ─▶ Cadence::due (pure) ─▶ write (CAS)
//! ```
//!
//! The resource is named after the node. felix creates it (`classes`
//! Agent and BGP, `updatePeriodSeconds` 10) unless someone made it first;
//! a `spec` written by hand is kept, and its period followed (0 stops the
//! updates, as in Calico). Writes are bounded: at most one per period,
//! and only when the status changed, or after [`HEARTBEAT_PERIODS`]
//! periods (so a silent node shows as stale: its `lastUpdated` ages). With
//! 500 hosts at the default period that is at most 50 writes a second
//! while sessions change, about 8 when nothing does.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::resources::status::{
    AgentStatus, BgpPeerStatus, BgpStatus, CalicoNodeStatus, CalicoNodeStatusSpec,
    CalicoNodeStatusStatus, DaemonStatus, HEARTBEAT_PERIODS, StatusClass, rfc3339,
};
use api::{Kind, ObjectMeta, Resource};
use bgpd::speaker::PeerStatus;
use bgpd::status;
use datastore::{KvStore, ResourceStore};

use crate::neigh_table;

/// How often a node whose status says stop (period 0) is looked at again.
const PAUSED_RECHECK: Duration = Duration::from_secs(60);

/// Calico's peer type for our peer descriptions.
fn peer_type(description: Option<&str>) -> &'static str {
    match description {
        Some("node-to-node mesh") => "NodeMesh",
        Some("global") => "GlobalPeer",
        _ => "NodePeer",
    }
}

/// The BGP status of `peers` at `now` (seconds since the epoch); a
/// `host_problem` (a full neighbour table) is added to the reason of every
/// session that is down.
pub fn bgp_status(peers: &[PeerStatus], now: u64, host_problem: Option<&str>) -> BgpStatus {
    let mut bgp = BgpStatus::default();
    for p in peers {
        let state = p.state.to_string();
        let established = state == "Established";
        let peer = BgpPeerStatus {
            peer_ip: p.addr.to_string(),
            peer_type: peer_type(p.description.as_deref()).into(),
            reason: match host_problem {
                Some(problem) if !established => format!(
                    "{}; {problem}",
                    status::explain(&state, p.last_error.as_deref())
                ),
                _ => status::explain(&state, p.last_error.as_deref()),
            },
            last_error: if established {
                String::new()
            } else {
                p.last_error.clone().unwrap_or_default()
            },
            since: rfc3339(now.saturating_sub(p.since.as_secs())),
            state,
            prefixes_received: p.accepted as u64,
            prefixes_advertised: p.advertised as u64,
        };
        let (count, list) = match (p.addr.is_ipv6(), established) {
            (false, true) => (&mut bgp.number_established_v4, &mut bgp.peers_v4),
            (false, false) => (&mut bgp.number_not_established_v4, &mut bgp.peers_v4),
            (true, true) => (&mut bgp.number_established_v6, &mut bgp.peers_v6),
            (true, false) => (&mut bgp.number_not_established_v6, &mut bgp.peers_v6),
        };
        *count += 1;
        list.push(peer);
    }
    bgp
}

/// The status to write: the classes the spec asks for (Agent and BGP;
/// BIRD and Routes are not reported), `running` saying whether a speaker
/// runs, `booted` when felix started.
pub fn node_status(
    spec: &CalicoNodeStatusSpec,
    bgp: BgpStatus,
    running: bool,
    booted: u64,
    now: u64,
) -> CalicoNodeStatusStatus {
    let wants = |c| spec.classes.is_empty() || spec.classes.contains(&c);
    let daemon = DaemonStatus {
        state: if running { "Ready" } else { "NotReady" }.into(),
        version: format!("calico-rs bgpd {}", env!("CARGO_PKG_VERSION")),
        router_id: String::new(),
        last_boot_time: rfc3339(booted),
    };
    CalicoNodeStatusStatus {
        last_updated: rfc3339(now),
        agent: wants(StatusClass::Agent).then(|| AgentStatus {
            bird_v4: Some(daemon.clone()),
            bird_v6: Some(daemon),
        }),
        bgp: wants(StatusClass::Bgp).then_some(bgp),
    }
}

/// The spec felix gives a status it creates.
pub fn default_spec(node: &str) -> CalicoNodeStatusSpec {
    CalicoNodeStatusSpec {
        node: node.to_string(),
        classes: vec![StatusClass::Agent, StatusClass::Bgp],
        update_period_seconds: Some(api::resources::status::DEFAULT_UPDATE_PERIOD_SECONDS),
    }
}

/// When to write (pure): on a change, at most once a period, and after
/// [`HEARTBEAT_PERIODS`] periods whatever happened.
#[derive(Debug, Default)]
pub struct Cadence {
    /// What was last written (without its times) and when.
    last: Option<(CalicoNodeStatusStatus, u64)>,
}

/// A status without the times that move by themselves (`lastUpdated`,
/// and `since` a second either way between two reads).
fn timeless(s: &CalicoNodeStatusStatus) -> CalicoNodeStatusStatus {
    let mut s = s.clone();
    s.last_updated.clear();
    if let Some(bgp) = s.bgp.as_mut() {
        for p in bgp.peers_v4.iter_mut().chain(bgp.peers_v6.iter_mut()) {
            p.since.clear();
        }
    }
    s
}

impl Cadence {
    /// Whether `status`, read at `now`, is to be written, with a period of
    /// `period` seconds (ticks come once a period).
    pub fn due(&self, now: u64, status: &CalicoNodeStatusStatus, period: u64) -> bool {
        match &self.last {
            None => true,
            Some((last, at)) => {
                *last != timeless(status)
                    || now.saturating_sub(*at) >= HEARTBEAT_PERIODS * period.max(1)
            }
        }
    }

    pub fn written(&mut self, now: u64, status: &CalicoNodeStatusStatus) {
        self.last = Some((timeless(status), now));
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Publishes this node's status from `source` until dropped.
pub async fn run(kv: Arc<dyn KvStore>, node: String, source: status::Source) {
    let store = ResourceStore::new(kv);
    let booted = unix_now();
    let mut cadence = Cadence::default();
    // The spec as last read: its classes shape the status, its period the
    // ticks.
    let mut spec = default_spec(&node);
    // Whether the last tick found the store locked (logged once).
    let mut locked = false;
    // The neighbour tables, read each tick; the last reading and what
    // was wrong (logged when it changes).
    let mut netlink = match rtnetlink::new_connection() {
        Ok((conn, handle, _)) => {
            tokio::spawn(conn);
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no netlink socket: the neighbour tables are not watched");
            None
        }
    };
    let mut tables = Vec::new();
    let mut host_problem: Option<String> = None;
    // The first report once the speaker has had a moment to start.
    tokio::time::sleep(Duration::from_secs(1)).await;
    loop {
        if let Some(handle) = &mut netlink {
            match neigh_table::read(handle).await {
                Ok(now) => {
                    let problem = neigh_table::problem(&tables, &now);
                    if problem != host_problem {
                        match &problem {
                            Some(p) => tracing::warn!(node, "{p}"),
                            None => tracing::info!(
                                node,
                                "the kernel's neighbour tables have room again"
                            ),
                        }
                    }
                    host_problem = problem;
                    tables = now;
                }
                Err(e) => tracing::debug!(error = %e, "reading the neighbour tables failed"),
            }
        }
        let handle = source.borrow().clone();
        let (peers, running) = match handle {
            Some(h) => match h.peers().await {
                Ok(peers) => (peers, true),
                Err(_) => (Vec::new(), false),
            },
            None => (Vec::new(), false),
        };
        let now = unix_now();
        let tick = Tick {
            peers: &peers,
            running,
            booted,
            now,
            host_problem: host_problem.as_deref(),
        };
        match publish(&store, &node, &mut cadence, &mut spec, tick).await {
            Ok(()) => locked = false,
            Err(datastore::Error::Locked) => {
                if !locked {
                    tracing::info!(
                        node,
                        "the datastore is locked for a migration; this node's status waits"
                    );
                }
                locked = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, node, "writing this node's CalicoNodeStatus failed; retrying");
            }
        }
        let wait = match spec.update_period_seconds() {
            0 => PAUSED_RECHECK,
            period => Duration::from_secs(u64::from(period)),
        };
        tokio::time::sleep(wait).await;
    }
}

/// What one tick read.
struct Tick<'a> {
    peers: &'a [PeerStatus],
    /// Whether a speaker runs.
    running: bool,
    booted: u64,
    now: u64,
    /// What is wrong with the host (see [`crate::neigh_table`]).
    host_problem: Option<&'a str>,
}

/// One tick: writes the status if due, reading the resource first (for
/// its spec and version), which updates `spec`. A spec whose period is 0
/// is read again each tick and nothing is written; nothing is written
/// either while the store is locked for a migration ([`Error::Locked`]).
///
/// [`Error::Locked`]: datastore::Error::Locked
async fn publish(
    store: &ResourceStore,
    node: &str,
    cadence: &mut Cadence,
    spec: &mut CalicoNodeStatusSpec,
    tick: Tick<'_>,
) -> Result<(), datastore::Error> {
    let bgp = bgp_status(tick.peers, tick.now, tick.host_problem);
    let status_for = |spec: &CalicoNodeStatusSpec| {
        node_status(spec, bgp.clone(), tick.running, tick.booted, tick.now)
    };
    // Decide on the spec we know; read only when a write is due.
    let period = u64::from(spec.update_period_seconds());
    if period != 0 && !cadence.due(tick.now, &status_for(spec), period) {
        return Ok(());
    }
    datastore::migrate::check_unlocked(store.kv()).await?;
    let existing = match store.get(Kind::CalicoNodeStatus, None, node).await {
        Ok(Resource::CalicoNodeStatus(s)) => Some(s),
        Ok(_) => None,
        Err(datastore::Error::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let metadata = match &existing {
        Some(s) => {
            spec.clone_from(&s.spec);
            s.metadata.clone()
        }
        None => {
            *spec = default_spec(node);
            ObjectMeta {
                name: node.to_string(),
                ..ObjectMeta::default()
            }
        }
    };
    if spec.update_period_seconds() == 0 {
        return Ok(());
    }
    let status = status_for(spec);
    let resource = Resource::CalicoNodeStatus(CalicoNodeStatus {
        metadata,
        spec: spec.clone(),
        status: status.clone(),
    });
    if existing.is_some() {
        store.replace(resource).await?;
    } else {
        store.create(resource).await?;
    }
    cadence.written(tick.now, &status);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgpd::State;

    fn peer(addr: &str, state: State, error: Option<&str>, since: u64) -> PeerStatus {
        PeerStatus {
            addr: addr.parse().unwrap(),
            asn: 65000,
            description: Some("global".into()),
            state,
            since: Duration::from_secs(since),
            last_error: error.map(str::to_string),
            received: 3,
            accepted: 2,
            advertised: 1,
            flaps: 0,
        }
    }

    const NOW: u64 = 1_796_624_070;

    #[test]
    fn sessions_are_counted_per_family_with_their_reason_when_down() {
        let bgp = bgp_status(
            &[
                peer("10.0.0.1", State::Established, None, 70),
                peer(
                    "10.0.0.13",
                    State::Active,
                    Some("TCP connection failed: Connection refused (os error 111)"),
                    5,
                ),
                peer("fd00::1", State::Established, None, 70),
            ],
            NOW,
            None,
        );
        assert_eq!(
            (
                bgp.number_established_v4,
                bgp.number_not_established_v4,
                bgp.number_established_v6
            ),
            (1, 1, 1)
        );
        let up = &bgp.peers_v4[0];
        assert_eq!(
            (up.peer_type.as_str(), up.since.as_str()),
            ("GlobalPeer", "2026-12-07T06:13:20Z")
        );
        assert_eq!(
            (
                up.prefixes_received,
                up.prefixes_advertised,
                up.reason.as_str()
            ),
            (2, 1, "")
        );
        let down = &bgp.peers_v4[1];
        assert_eq!(down.state, "Active");
        assert!(
            down.reason.starts_with("TCP 179 refused"),
            "{}",
            down.reason
        );
        assert!(down.last_error.contains("os error 111"));
    }

    #[test]
    fn a_full_neighbour_table_is_named_in_the_reason_of_every_session_down() {
        let problem = "the kernel's ARP table is full (…): raise net.ipv4.neigh.default.gc_thresh3";
        let bgp = bgp_status(
            &[
                peer("10.0.0.1", State::Established, None, 70),
                peer("10.0.0.2", State::Active, Some("Hold timer expired"), 5),
            ],
            NOW,
            Some(problem),
        );
        assert_eq!(bgp.peers_v4[0].reason, "");
        let down = &bgp.peers_v4[1].reason;
        assert!(down.starts_with("hold timer expired"), "{down}");
        assert!(down.ends_with(problem), "{down}");
    }

    #[test]
    fn only_the_classes_asked_for_are_reported() {
        let spec = CalicoNodeStatusSpec {
            node: "h1".into(),
            classes: vec![StatusClass::Bgp],
            update_period_seconds: Some(5),
        };
        let s = node_status(&spec, BgpStatus::default(), true, NOW - 100, NOW);
        assert!(s.agent.is_none() && s.bgp.is_some());
        let s = node_status(
            &default_spec("h1"),
            BgpStatus::default(),
            false,
            NOW - 100,
            NOW,
        );
        assert_eq!(s.agent.unwrap().bird_v4.unwrap().state, "NotReady");
        assert_eq!(s.last_updated, "2026-12-07T06:14:30Z");
    }

    #[test]
    fn writes_come_on_a_change_or_a_heartbeat_never_for_the_clock_alone() {
        let spec = default_spec("h1");
        let at = |now: u64, state: State| {
            node_status(
                &spec,
                bgp_status(&[peer("10.0.0.1", state, None, now - NOW + 70)], now, None),
                true,
                NOW,
                now,
            )
        };
        let mut cadence = Cadence::default();
        let first = at(NOW, State::Established);
        assert!(cadence.due(NOW, &first, 10));
        cadence.written(NOW, &first);
        // The same sessions a period later (their `since` a second off).
        let later = at(NOW + 10, State::Established);
        assert!(!cadence.due(NOW + 10, &later, 10));
        assert!(cadence.due(NOW + 10, &at(NOW + 10, State::Active), 10));
        assert!(cadence.due(NOW + 60, &at(NOW + 60, State::Established), 10));
    }

    #[tokio::test]
    async fn nothing_is_written_while_the_store_is_locked_for_a_migration() {
        let dir = tempfile::tempdir().unwrap();
        let kv: Arc<dyn KvStore> =
            Arc::new(datastore::SqliteStore::open(dir.path().join("calico.db")).unwrap());
        let store = ResourceStore::new(kv);
        datastore::migrate::set_ready(&store, false).await.unwrap();
        let peers = [peer("10.0.0.1", State::Established, None, 70)];
        let tick = || Tick {
            peers: &peers,
            running: true,
            booted: NOW,
            now: NOW,
            host_problem: None,
        };
        let (mut cadence, mut spec) = (Cadence::default(), default_spec("h1"));
        let locked = publish(&store, "h1", &mut cadence, &mut spec, tick()).await;
        assert_eq!(locked, Err(datastore::Error::Locked));
        let none = store.list(Kind::CalicoNodeStatus, None).await.unwrap();
        assert!(none.is_empty(), "{none:?}");

        datastore::migrate::set_ready(&store, true).await.unwrap();
        publish(&store, "h1", &mut cadence, &mut spec, tick())
            .await
            .unwrap();
        assert_eq!(
            store
                .list(Kind::CalicoNodeStatus, None)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
