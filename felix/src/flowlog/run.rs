//! The thin I/O of flow logs: the driver that hands each calculated model
//! to the reader ([`FlowLogDriver`]), and the reader ([`run`]): NFLOG and
//! conntrack sockets and a conntrack dump each interval feed the
//! [`Correlator`], whose flushes go into the flow store the API serves and,
//! when felix has a cluster aggregator, to its pusher.
//! Nothing here waits on the dataplane: the kernel drops what a full
//! socket cannot take, and that is counted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nfevents::conntrack::GROUP_DESTROY;
use nfevents::{ConntrackSocket, GroupConfig, NflogSocket};
use policy::flowlog::{Hit, Index};
use task::Task;
use tokio::sync::mpsc;

use super::correlate::Correlator;
use super::identity::Identities;
use super::pending::Pending;
use crate::metrics::Metrics;
use crate::state::{Desired, Driver, DriverError, Stage};

/// The most connections tracked at once.
pub const MAX_CONNECTIONS: usize = 100_000;

/// What the reader resolves logged packets against: the current model's
/// prefixes and identities, and the previous model's prefixes (packets
/// logged just before a change).
#[derive(Debug, Default)]
pub struct Lookup {
    index: Index,
    previous: Index,
    ids: Identities,
    /// The would-be ruleset, when the model stages policies.
    pending: Option<Pending>,
}

impl Lookup {
    /// The current model's chains.
    pub fn index(&self) -> &Index {
        &self.index
    }

    fn resolve(&self, prefix: &str) -> Option<Hit> {
        self.index
            .resolve(prefix)
            .or_else(|| self.previous.resolve(prefix))
    }
}

pub type SharedLookup = Arc<Mutex<Lookup>>;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Hands each calculated model to the reader.
#[derive(Debug)]
pub struct FlowLogDriver {
    lookup: SharedLookup,
}

impl FlowLogDriver {
    pub fn new(lookup: SharedLookup) -> Self {
        FlowLogDriver { lookup }
    }
}

#[async_trait::async_trait]
impl Driver for FlowLogDriver {
    fn name(&self) -> &'static str {
        "flowlog"
    }
    fn stage(&self) -> Stage {
        Stage::Observe
    }
    async fn apply(&mut self, desired: &Desired) -> Result<(), DriverError> {
        let model = &desired.policy;
        let index = Index::new(model);
        // Compiled before taking the lock the reader needs.
        let pending = Pending::new(model);
        let mut lookup = self.lookup.lock().unwrap_or_else(|e| e.into_inner());
        let ids = Identities::new(model, Some(&lookup.ids), now() as u64);
        lookup.previous = std::mem::replace(&mut lookup.index, index);
        lookup.ids = ids;
        lookup.pending = pending;
        Ok(())
    }
}

/// Turns conntrack's counters on in this network namespace (they are per
/// namespace), so that allowed connections have packets and bytes.
fn enable_accounting() {
    let path = "/proc/sys/net/netfilter/nf_conntrack_acct";
    if let Err(e) = std::fs::write(path, "1") {
        tracing::warn!(error = %e, path, "flow logs: conntrack counters stay off; allowed flows count no packets");
    }
}

/// Reads NFLOG `group` and conntrack until dropped, flushing every
/// `interval` into `flows`. Without the NFLOG group (another listener has
/// it, or no `nfnetlink_log`), there are no flow logs: it says so and ends.
pub async fn run(
    lookup: SharedLookup,
    flows: flows::Flows,
    pusher: Option<flows::push::Pusher>,
    group: u16,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    let mut nflog = match NflogSocket::bind(GroupConfig::new(group)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, group, "flow logs are off");
            return;
        }
    };
    enable_accounting();
    let mut events = ConntrackSocket::subscribe(&[GROUP_DESTROY])
        .inspect_err(|e| tracing::warn!(error = %e, "flow logs: no conntrack events; dumps only"))
        .ok();
    // Dumps run apart, so that a large table does not hold up NFLOG.
    let (dump_tx, mut dumps) = mpsc::channel(1);
    let _dumper = Task::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            match nfevents::socket::dump().await {
                Ok(conns) => {
                    if dump_tx.send(conns).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "flow logs: conntrack dump failed"),
            }
        }
    });
    let mut correlator = Correlator::new(MAX_CONNECTIONS, interval.as_secs() as i64);
    let mut flush = tokio::time::interval(interval);
    let mut start = now();
    tracing::info!(group, "flow logs on");
    loop {
        tokio::select! {
            batch = nflog.next_batch() => match batch {
                Ok(batch) => {
                    let at = now();
                    let lookup = lookup.lock().unwrap_or_else(|e| e.into_inner());
                    for l in batch {
                        let hit = lookup.resolve(&l.prefix);
                        let tuple = l.headers.tuple;
                        let new = correlator.logged(at, tuple, l.headers.len, hit, &lookup.ids);
                        if let (true, Some(pending)) = (new, &lookup.pending) {
                            correlator.set_pending(&tuple, pending.hits(&tuple));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "flow logs: reading NFLOG failed; flow logs are off");
                    return;
                }
            },
            batch = async { match events.as_mut() {
                Some(s) => s.next_batch().await,
                None => std::future::pending().await,
            } } => match batch {
                Ok(batch) => {
                    let at = now();
                    for c in &batch {
                        correlator.conntrack(at, c);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "flow logs: conntrack events failed; dumps only");
                    events = None;
                }
            },
            Some(conns) = dumps.recv() => correlator.dumped(now(), &conns),
            _ = flush.tick() => {
                let end = now();
                let logs = correlator.flush(start, end);
                flows.add_all(&logs);
                if let Some(pusher) = &pusher {
                    pusher.push(flows::push::batch(&logs, start, end));
                }
                start = end;
                let pushed = pusher.as_ref().map(flows::push::Pusher::stats);
                record(&metrics, &nflog, events.as_ref(), &correlator, &flows, pushed);
            }
        }
    }
}

/// The reader's counts into `/metrics`.
fn record(
    metrics: &Metrics,
    nflog: &NflogSocket,
    events: Option<&ConntrackSocket>,
    correlator: &Correlator,
    flows: &flows::Flows,
    pushed: Option<flows::push::PushStats>,
) {
    let (n, c) = (nflog.stats(), events.map(|e| e.stats()).unwrap_or_default());
    let (k, f, p) = (
        correlator.stats(),
        flows.stats(),
        pushed.unwrap_or_default(),
    );
    metrics.flowlog_events.replace_all(
        [
            ("logged", n.received),
            ("lost", n.lost),
            ("overrun", n.overruns + c.overruns),
            ("malformed", n.malformed + c.malformed),
            ("unresolved", k.unresolved),
            ("evicted", k.evicted),
            ("dropped", f.aggregator.dropped),
            ("stream_dropped", f.stream_dropped),
            ("pushed", p.sent),
            ("push_resent", p.resent),
            ("push_dropped", p.dropped),
        ]
        .map(|(event, n)| (vec![event.to_string()], n)),
    );
}
