//! Pushing a host's flows to a cluster aggregator (Goldmane's
//! `FlowCollector.Connect`), as Calico's felix does with
//! `flowLogsGoldmaneServer`.
//!
//! ```text
//! flush ─batch─▶ Pusher::push ─▶ Outbox (pure, bounded) ─next─▶ Connect stream ─▶ aggregator
//!                                   ▲  in flight, oldest first   │
//!                                   └──────── receipt ◀──────────┘ (one per flow, in order)
//! ```
//!
//! [`batch`] sums one flush's logs per flow key, the unit the aggregator
//! takes. The [`Outbox`] holds what is not yet receipted, at most
//! `capacity` flows: past that the oldest queued go, counted. At most
//! [`WINDOW`] flows are in flight; when the connection drops, they go back
//! to the front of the queue and are sent again after reconnecting. The
//! aggregator ignores a flow it already has from a host (same key, same
//! span), so a flow whose receipt was lost is not counted twice. Pushing
//! never waits: the dataplane's reader hands flows over and goes on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::key::{FlowKey, Labels};
use crate::log::{Counters, FlowLog};
use crate::proto;
use crate::proto::flow_collector_client::FlowCollectorClient;
use crate::wire;

/// Flows sent and not yet receipted, at most.
pub const WINDOW: usize = 256;

/// Flows held for the aggregator by default (a host's flows of several
/// intervals).
pub const DEFAULT_CAPACITY: usize = 50_000;

/// Reconnection delays, doubling from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// One flush's logs, summed per flow key over `[start, end)`: labels are
/// those every log of the key had, as the aggregator keeps them.
pub fn batch(logs: &[FlowLog], start: i64, end: i64) -> Vec<proto::Flow> {
    let mut sums: HashMap<FlowKey, (Labels, Labels, Counters)> = HashMap::new();
    let mut order = Vec::new();
    for log in logs {
        let key = FlowKey::of(log);
        let labels = (Labels::of(&log.source.labels), Labels::of(&log.dest.labels));
        match sums.get_mut(&key) {
            Some((source, dest, counters)) => {
                *source = source.intersect(&labels.0);
                *dest = dest.intersect(&labels.1);
                counters.add(&log.counters);
            }
            None => {
                order.push(key.clone());
                sums.insert(key, (labels.0, labels.1, log.counters));
            }
        }
    }
    order
        .into_iter()
        .filter_map(|key| {
            let (source, dest, counters) = sums.remove(&key)?;
            Some(wire::to_flow(&key, start, end, &source, &dest, &counters))
        })
        .collect()
}

/// What the pusher has done, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Flows the aggregator receipted.
    pub sent: u64,
    /// Flows sent again after a connection dropped before their receipt.
    pub resent: u64,
    /// Flows dropped, oldest first, because `capacity` were held.
    pub dropped: u64,
    /// Flows held now (queued and in flight).
    pub held: usize,
    /// Connections made to the aggregator.
    pub connections: u64,
    /// Whether a connection is up now.
    pub connected: bool,
}

/// The flows not yet receipted: a queue to send and those in flight, in
/// the order they were pushed. Pure.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<proto::Flow>,
    in_flight: VecDeque<proto::Flow>,
    capacity: usize,
    stats: PushStats,
}

impl Outbox {
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            capacity: capacity.max(1),
            stats: PushStats::default(),
        }
    }

    fn held(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Queues flows; past the capacity the oldest queued go (never those
    /// in flight, whose receipts are still to come).
    pub fn enqueue(&mut self, flows: impl IntoIterator<Item = proto::Flow>) {
        for flow in flows {
            self.queue.push_back(flow);
            if self.held() > self.capacity {
                let dropped = self.queue.pop_front();
                self.stats.dropped += u64::from(dropped.is_some());
            }
        }
    }

    /// The next flow to send, now in flight; none while [`WINDOW`] are.
    pub fn take_next(&mut self) -> Option<proto::Flow> {
        if self.in_flight.len() >= WINDOW {
            return None;
        }
        let flow = self.queue.pop_front()?;
        self.in_flight.push_back(flow.clone());
        Some(flow)
    }

    /// The oldest flow in flight was receipted.
    pub fn receipted(&mut self) {
        if self.in_flight.pop_front().is_some() {
            self.stats.sent += 1;
        }
    }

    /// The connection dropped: what was in flight is sent again first.
    pub fn disconnected(&mut self) {
        self.stats.resent += self.in_flight.len() as u64;
        while let Some(flow) = self.in_flight.pop_back() {
            self.queue.push_front(flow);
        }
    }

    pub fn stats(&self) -> PushStats {
        PushStats {
            held: self.held(),
            ..self.stats
        }
    }
}

/// Pushes flows to the aggregator at `endpoint` from a task of its own,
/// reconnecting as needed, until dropped.
#[derive(Debug)]
pub struct Pusher {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    outbox: Mutex<Outbox>,
    wake: Notify,
}

impl Shared {
    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        // Every method leaves the outbox consistent.
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_connected(&self, connected: bool) {
        let mut outbox = self.outbox();
        outbox.stats.connected = connected;
        outbox.stats.connections += u64::from(connected);
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An aggregator address that is not one.
#[derive(Debug, thiserror::Error)]
#[error(
    "{address:?} is not an aggregator address (host:port, http://host:port or unix:PATH): {source}"
)]
pub struct BadAddress {
    address: String,
    source: tonic::transport::Error,
}

/// The gRPC endpoint of `address`: `host:port`, a URL, or `unix:PATH`.
pub fn endpoint(address: &str) -> Result<tonic::transport::Endpoint, BadAddress> {
    let uri = if address.contains("://") || address.starts_with("unix:") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    tonic::transport::Endpoint::from_shared(uri)
        .map(|e| e.connect_timeout(Duration::from_secs(5)))
        .map_err(|source| BadAddress {
            address: address.to_string(),
            source,
        })
}

impl Pusher {
    /// Starts pushing to `address` (see [`endpoint`]), holding at most
    /// `capacity` flows.
    pub fn spawn(address: &str, capacity: usize) -> Result<Pusher, BadAddress> {
        let endpoint = endpoint(address)?;
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::new(capacity)),
            wake: Notify::new(),
        });
        let task = tokio::spawn(run(endpoint, Arc::clone(&shared)));
        Ok(Pusher { shared, task })
    }

    /// Hands flows over; never waits.
    pub fn push(&self, flows: Vec<proto::Flow>) {
        if flows.is_empty() {
            return;
        }
        self.shared.outbox().enqueue(flows);
        self.shared.wake.notify_one();
    }

    pub fn stats(&self) -> PushStats {
        self.shared.outbox().stats()
    }
}

async fn run(endpoint: tonic::transport::Endpoint, shared: Arc<Shared>) {
    let address = endpoint.uri().to_string();
    let mut delay = BACKOFF.0;
    loop {
        match session(&endpoint, &shared).await {
            Ok(()) => delay = BACKOFF.0,
            Err(status) => {
                tracing::warn!(%address, %status, retry_in = ?delay, "flow logs: pushing to the aggregator failed");
            }
        }
        shared.set_connected(false);
        shared.outbox().disconnected();
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(BACKOFF.1);
    }
}

/// One connection: sends what the outbox holds, takes receipts, until the
/// stream ends. A stream that ran is `Ok` (reconnect soon); a refused
/// connection is the error.
async fn session(
    endpoint: &tonic::transport::Endpoint,
    shared: &Shared,
) -> Result<(), tonic::Status> {
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connecting: {e}")))?;
    let mut client = FlowCollectorClient::new(channel);
    let (tx, rx) = mpsc::channel(WINDOW);
    // Whatever is in flight from an earlier connection was put back.
    fill(shared, &tx);
    let mut receipts = client.connect(ReceiverStream::new(rx)).await?.into_inner();
    shared.set_connected(true);
    tracing::info!(uri = %endpoint.uri(), "flow logs: pushing to the aggregator");
    loop {
        tokio::select! {
            () = shared.wake.notified() => {}
            receipt = receipts.message() => match receipt? {
                Some(_) => shared.outbox().receipted(),
                None => return Ok(()),
            },
        }
        fill(shared, &tx);
    }
}

/// Moves flows from the queue to the stream while the window allows. The
/// channel holds at most [`WINDOW`], as many as may be in flight, so a
/// send never finds it full.
fn fill(shared: &Shared, tx: &mpsc::Sender<proto::FlowUpdate>) {
    let mut outbox = shared.outbox();
    while let Some(flow) = outbox.take_next() {
        if tx.try_send(proto::FlowUpdate { flow: Some(flow) }).is_err() {
            // The stream is gone: the session ends and puts it back.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(n: i64) -> proto::Flow {
        proto::Flow {
            start_time: n,
            ..Default::default()
        }
    }

    fn starts(flows: impl IntoIterator<Item = proto::Flow>) -> Vec<i64> {
        flows.into_iter().map(|f| f.start_time).collect()
    }

    #[test]
    fn flows_go_in_order_and_a_dropped_connection_sends_the_unreceipted_again() {
        let mut outbox = Outbox::new(100);
        outbox.enqueue((1..=4).map(flow));
        let sent: Vec<_> = std::iter::from_fn(|| outbox.take_next()).collect();
        assert_eq!(starts(sent), [1, 2, 3, 4]);
        outbox.receipted();
        outbox.disconnected();
        outbox.enqueue([flow(5)]);
        let again: Vec<_> = std::iter::from_fn(|| outbox.take_next()).collect();
        assert_eq!(starts(again), [2, 3, 4, 5]);
        let s = outbox.stats();
        assert_eq!((s.sent, s.resent, s.dropped, s.held), (1, 3, 0, 4));
    }

    #[test]
    fn past_the_capacity_the_oldest_queued_go_never_those_in_flight() {
        let mut outbox = Outbox::new(3);
        outbox.enqueue([flow(1), flow(2)]);
        assert_eq!(outbox.take_next().map(|f| f.start_time), Some(1));
        outbox.enqueue([flow(3), flow(4), flow(5)]);
        // 1 in flight; 2 and 3 went for 4 and 5.
        let s = outbox.stats();
        assert_eq!((s.dropped, s.held), (2, 3));
        let rest: Vec<_> = std::iter::from_fn(|| outbox.take_next()).collect();
        assert_eq!(starts(rest), [4, 5]);
    }

    #[test]
    fn no_more_than_a_window_is_in_flight() {
        let mut outbox = Outbox::new(10 * WINDOW);
        outbox.enqueue((0..2 * WINDOW as i64).map(flow));
        assert_eq!(std::iter::from_fn(|| outbox.take_next()).count(), WINDOW);
        outbox.receipted();
        assert!(outbox.take_next().is_some());
        assert!(outbox.take_next().is_none());
    }

    #[test]
    fn addresses_are_host_port_urls_or_unix_paths_and_junk_is_named() {
        assert_eq!(
            endpoint("10.0.0.2:7443").unwrap().uri(),
            "http://10.0.0.2:7443/"
        );
        assert!(endpoint("unix:/run/goldmane.sock").is_ok());
        let err = endpoint("not a host").unwrap_err().to_string();
        assert!(err.contains("\"not a host\""), "{err}");
    }
}
