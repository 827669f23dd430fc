//! The datastore watch that keeps felix's [`Snapshot`] current.
//!
//! ```text
//!             list [`watched`] at r ───────▶ Snapshot (replaced whole) ─┐
//! KvStore ──┤                                                          ├─▶ SyncState { snapshot, in_sync } ──changed──▶ daemon
//!             watch [`watched`] from r+1 ─▶ events applied one by one ──┘
//!                  │ error, compaction, end of stream
//!                  └──▶ resync: a new list (the old snapshot stays until it is complete)
//! ```
//!
//! One list reads every resource and every IPAM block at one revision, and
//! the watch follows on; both read only the keys kept ([`watched`]:
//! [`RESOURCES_PREFIX`] less the nodes' statuses, [`K8S_POLICIES_PREFIX`],
//! the blocks). Every host writes its status every few seconds: a watch of
//! all `/calico/` made the datastore send each write to every host (a
//! 200-host lab on etcd: 22 writes and 4,400 events a second, nine in ten of
//! them statuses), and a list of it read every host's (6 MiB at 200).
//! Each key's events are applied in revision order (on etcd each range has
//! a watch of its own, and ranges may interleave, as Calico's per-resource
//! watchers do); the daemon is told "changed" once
//! per burst (a [`Notify`] holds at most one permit, and events already
//! queued are applied before it is given). A value that does not decode is
//! left out of the snapshot and logged once per key and value.
//!
//! The snapshot is an `Arc<Snapshot>` behind a `std::sync::Mutex`, held
//! only to swap or clone the `Arc` and to apply one event: readers take the
//! `Arc` and calculate without holding anything, and an event arriving
//! meanwhile is applied to a copy (`Arc::make_mut`), so the syncer never
//! waits for a calculation.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use api::Resource;
use datastore::ipam::model::{AllocationBlock, BLOCKS_PREFIX, parse_block_key};
use datastore::{KeyRange, KeyValue, KvStore, WatchEvent};
use futures::FutureExt;
use task::Task;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::state::Snapshot;

/// The resources felix reads: Calico's, and Kubernetes NetworkPolicies
/// stored beside them (as `calicoctl` stores `KubernetesNetworkPolicy`).
pub const RESOURCES_PREFIX: &str = "/calico/resources/v3/projectcalico.org/";
pub const K8S_POLICIES_PREFIX: &str = "/calico/resources/v3/networking.k8s.io/networkpolicies/";

/// What the syncer shares with the daemon.
#[derive(Debug, Default)]
pub struct SyncState {
    /// Guards the current snapshot; held briefly, never across an `.await`.
    snapshot: Mutex<Arc<Snapshot>>,
    changed: Notify,
    in_sync: AtomicBool,
}

impl SyncState {
    /// The current snapshot (later changes do not alter it).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.locked().clone()
    }

    fn locked(&self) -> MutexGuard<'_, Arc<Snapshot>> {
        // A panic while holding the lock leaves a whole snapshot behind:
        // events are applied one at a time.
        self.snapshot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the snapshot reflects a complete list and every event since
    /// (false before the first list and while resyncing).
    pub fn in_sync(&self) -> bool {
        self.in_sync.load(Ordering::Acquire)
    }

    /// Completes once the snapshot changed since the last call returned
    /// (several changes in between complete it once).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn set_in_sync(&self, value: bool) {
        self.in_sync.store(value, Ordering::Release);
    }
}

/// One decoded datastore entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Resource(Box<Resource>),
    Block(AllocationBlock),
}

/// Whether felix keeps `key` in its snapshot.
pub fn tracked(key: &str) -> bool {
    is_resource(key) || key.starts_with(BLOCKS_PREFIX)
}

/// Nodes' statuses, which felix writes and never reads: not in the
/// snapshot, so that one host's status write calculates nothing anywhere.
pub const NODE_STATUS_PREFIX: &str = "/calico/resources/v3/projectcalico.org/caliconodestatuses/";

/// The keys listed and watched: those [`tracked`] keeps, as ranges.
pub fn watched() -> Vec<KeyRange> {
    let mut ranges = KeyRange::prefix_except(RESOURCES_PREFIX, &[NODE_STATUS_PREFIX]);
    ranges.push(KeyRange::prefix(K8S_POLICIES_PREFIX));
    ranges.push(KeyRange::prefix(BLOCKS_PREFIX));
    ranges
}

fn is_resource(key: &str) -> bool {
    (key.starts_with(RESOURCES_PREFIX) && !key.starts_with(NODE_STATUS_PREFIX))
        || key.starts_with(K8S_POLICIES_PREFIX)
}

/// Decodes a tracked key's value; `None` for keys felix does not keep.
/// A resource carries its `mod_revision` as `metadata.resourceVersion`.
pub fn decode(kv: &KeyValue) -> Option<Result<Entry, String>> {
    if is_resource(&kv.key) {
        let decoded = serde_json::from_slice::<serde_json::Value>(&kv.value)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| Resource::from_value(v).map_err(|e| e.to_string()))
            .map(|mut r| {
                r.metadata_mut().resource_version = Some(kv.mod_revision.to_string());
                Entry::Resource(Box::new(r))
            });
        return Some(decoded);
    }
    if kv.key.starts_with(BLOCKS_PREFIX) {
        let decoded = serde_json::from_slice::<AllocationBlock>(&kv.value)
            .map_err(|e| format!("not a block: {e}"))
            .and_then(|b| b.check().map(|()| b))
            .and_then(|b| match parse_block_key(&kv.key) {
                Some(cidr) if cidr == b.cidr => Ok(Entry::Block(b)),
                _ => Err(format!("holds the block {}", b.cidr)),
            });
        return Some(decoded);
    }
    None
}

/// Puts a decoded entry into the snapshot (or takes the key out).
fn store(snapshot: &mut Snapshot, key: &str, entry: Option<Entry>) {
    match entry {
        Some(Entry::Resource(r)) => {
            snapshot.resources.insert(key.to_owned(), *r);
        }
        Some(Entry::Block(b)) => {
            snapshot.blocks.insert(key.to_owned(), b);
        }
        None => {
            snapshot.resources.remove(key);
            snapshot.blocks.remove(key);
        }
    }
}

/// Builds a snapshot from a list at `revision`; returns the keys whose
/// values did not decode, with why.
pub fn snapshot_of(kvs: &[KeyValue], revision: i64) -> (Snapshot, Vec<(String, String)>) {
    let mut snapshot = Snapshot {
        revision,
        ..Snapshot::default()
    };
    let mut bad = Vec::new();
    for kv in kvs {
        match decode(kv) {
            Some(Ok(entry)) => store(&mut snapshot, &kv.key, Some(entry)),
            Some(Err(e)) => bad.push((kv.key.clone(), e)),
            None => {}
        }
    }
    (snapshot, bad)
}

/// Applies one watch event; returns whether the snapshot changed, or why
/// the new value was refused (the key is then left out).
pub fn apply_event(snapshot: &mut Snapshot, event: &WatchEvent) -> Result<bool, String> {
    snapshot.revision = snapshot.revision.max(event.revision());
    let key = event.key();
    match event {
        WatchEvent::Put(kv) => match decode(kv) {
            None => Ok(false),
            Some(Ok(entry)) => {
                store(snapshot, key, Some(entry));
                Ok(true)
            }
            Some(Err(e)) => {
                store(snapshot, key, None);
                Err(e)
            }
        },
        WatchEvent::Delete { .. } => {
            let had = snapshot.resources.contains_key(key) || snapshot.blocks.contains_key(key);
            store(snapshot, key, None);
            Ok(had)
        }
    }
}

/// Keeps a [`SyncState`] current from a store.
#[derive(Debug)]
pub struct Syncer {
    kv: Arc<dyn KvStore>,
    state: Arc<SyncState>,
    metrics: Arc<Metrics>,
    /// Pause after a failed list, doubled up to [`MAX_RETRY`].
    retry: Duration,
    /// Bad values already logged (key and message).
    logged: BTreeSet<(String, String)>,
}

/// The longest pause between failed lists.
pub const MAX_RETRY: Duration = Duration::from_secs(5);

impl Syncer {
    pub fn new(kv: Arc<dyn KvStore>, metrics: Arc<Metrics>) -> Self {
        Syncer {
            kv,
            state: Arc::new(SyncState::default()),
            metrics,
            retry: Duration::from_millis(100),
            logged: BTreeSet::new(),
        }
    }

    /// The state this syncer keeps current.
    pub fn state(&self) -> Arc<SyncState> {
        self.state.clone()
    }

    /// Runs until dropped (abort the task): list, watch, and list again
    /// after any watch error.
    pub async fn run(mut self) {
        let mut first = true;
        loop {
            if !first {
                self.metrics.resyncs.inc(&[]);
            }
            first = false;
            let revision = self.resync().await;
            let error = self.follow(revision).await;
            self.state.set_in_sync(false);
            // Wakes the daemon so readiness reflects the resync.
            self.state.changed.notify_one();
            tracing::warn!(%error, "datastore watch ended; resyncing");
        }
    }

    /// Lists until a list succeeds and installs it; returns its revision.
    async fn resync(&mut self) -> i64 {
        let mut pause = self.retry;
        loop {
            match self.kv.list_ranges(&watched()).await {
                Ok((kvs, revision)) => {
                    let (snapshot, bad) = snapshot_of(&kvs, revision);
                    for (key, message) in bad {
                        self.log_bad(key, message);
                    }
                    tracing::info!(
                        revision,
                        resources = snapshot.resources.len(),
                        blocks = snapshot.blocks.len(),
                        "datastore listed"
                    );
                    *self.state.locked() = Arc::new(snapshot);
                    self.state.set_in_sync(true);
                    self.state.changed.notify_one();
                    return revision;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?pause, "listing the datastore failed");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Applies events from `revision + 1` until the watch fails; returns why.
    async fn follow(&mut self, revision: i64) -> String {
        let mut watch = match self.kv.watch_ranges(&watched(), revision + 1).await {
            Ok(w) => w,
            Err(e) => return e.to_string(),
        };
        loop {
            let mut next = watch.next().await;
            let mut changed = false;
            // Apply this event and every one already queued, then tell once.
            loop {
                match next {
                    Some(Ok(event)) => {
                        let result = apply_event(Arc::make_mut(&mut self.state.locked()), &event);
                        match result {
                            Ok(c) => changed |= c,
                            Err(message) => {
                                changed = true;
                                self.log_bad(event.key().to_owned(), message);
                            }
                        }
                    }
                    Some(Err(e)) => {
                        if changed {
                            self.state.changed.notify_one();
                        }
                        return e.to_string();
                    }
                    None => {
                        if changed {
                            self.state.changed.notify_one();
                        }
                        return "the watch stream ended".into();
                    }
                }
                match watch.next().now_or_never() {
                    Some(n) => next = n,
                    None => break,
                }
            }
            if changed {
                self.state.changed.notify_one();
            }
        }
    }

    fn log_bad(&mut self, key: String, message: String) {
        if self.logged.insert((key.clone(), message.clone())) {
            tracing::warn!(
                key,
                error = message,
                "skipping a datastore value felix cannot read"
            );
        }
    }

    /// Starts the syncer on the current runtime; the task stops when the
    /// handle is aborted or dropped by the runtime.
    pub fn spawn(self) -> (Arc<SyncState>, Task<()>) {
        let state = self.state();
        (state, Task::spawn(self.run()))
    }
}

#[cfg(test)]
mod tests {
    use api::{IPPool, IPPoolSpec, ObjectMeta};

    use super::*;

    fn kv(key: &str, value: &[u8], rev: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_vec(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
        }
    }

    fn pool_value(cidr: &str) -> Vec<u8> {
        let pool = Resource::IPPool(IPPool::new(
            ObjectMeta::named("p"),
            IPPoolSpec::new(api::Cidr(cidr.parse().unwrap())),
        ));
        serde_json::to_vec(&pool.to_value()).unwrap()
    }

    const POOL_KEY: &str = "/calico/resources/v3/projectcalico.org/ippools/p";
    const K8S_KEY: &str = "/calico/resources/v3/networking.k8s.io/networkpolicies/ns/np";
    const K8S_POLICY: &str = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "np", "namespace": "ns"}, "spec": {"podSelector": {}}}"#;

    #[test]
    fn a_list_keeps_resources_and_blocks_and_skips_other_keys() {
        let block = AllocationBlock::new("10.0.0.0/26".parse().unwrap(), Some("n1"));
        let block_key = datastore::ipam::model::block_key(block.cidr);
        let kvs = [
            kv(POOL_KEY, &pool_value("10.0.0.0/16"), 5),
            kv(&block_key, &serde_json::to_vec(&block).unwrap(), 6),
            kv("/calico/ipam/v2/handle/h", b"{}", 6),
            kv(K8S_KEY, K8S_POLICY.as_bytes(), 6),
            kv("/calico/resources/v3/other.io/things/x", b"{}", 6),
            // A node's status: felix writes it, never reads it.
            kv(&format!("{NODE_STATUS_PREFIX}h1"), br#"{"apiVersion": "projectcalico.org/v3", "kind": "CalicoNodeStatus", "metadata": {"name": "h1"}, "spec": {"node": "h1"}}"#, 6),
        ];
        assert_eq!(
            NODE_STATUS_PREFIX,
            datastore::ResourceStore::list_prefix(api::Kind::CalicoNodeStatus, None)
        );
        let (snap, bad) = snapshot_of(&kvs, 7);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(snap.revision, 7);
        assert_eq!(snap.blocks[&block_key], block);
        let pool = &snap.resources[POOL_KEY];
        assert_eq!(pool.metadata().resource_version.as_deref(), Some("5"));
        assert_eq!(
            snap.resources[K8S_KEY].kind(),
            api::Kind::KubernetesNetworkPolicy
        );
        assert_eq!(snap.resources.len() + snap.blocks.len(), 3);
    }

    #[test]
    fn the_watch_follows_exactly_the_keys_kept() {
        let block = datastore::ipam::model::block_key("10.0.0.0/26".parse().unwrap());
        let keys = [
            POOL_KEY.to_owned(),
            K8S_KEY.to_owned(),
            block,
            format!("{NODE_STATUS_PREFIX}h1"),
            "/calico/ipam/v2/handle/h".to_owned(),
            "/calico/ipam/v2/host/h1/ipv4/block/10.0.0.0-26".to_owned(),
            "/calico/resources/v3/projectcalico.org/caliconodes".to_owned(),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/ns/w".to_owned(),
            "/calico/resources/v3/other.io/things/x".to_owned(),
            "/calico/leases/ipam-gc".to_owned(),
        ];
        let ranges = watched();
        for key in keys {
            assert_eq!(
                ranges.iter().any(|r| r.contains(key.as_bytes())),
                tracked(&key),
                "{key}"
            );
        }
    }

    #[test]
    fn a_bad_value_is_reported_by_key_and_left_out() {
        let block = AllocationBlock::new("10.0.0.0/26".parse().unwrap(), None);
        let wrong_key = datastore::ipam::model::block_key("10.0.1.0/26".parse().unwrap());
        let kvs = [
            kv(POOL_KEY, b"{not json", 2),
            kv(&wrong_key, &serde_json::to_vec(&block).unwrap(), 2),
        ];
        let (snap, bad) = snapshot_of(&kvs, 3);
        assert!(snap.resources.is_empty() && snap.blocks.is_empty());
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].0, POOL_KEY);
        assert!(bad[1].1.contains("10.0.0.0/26"), "{bad:?}");
    }

    #[test]
    fn events_put_replace_and_delete_entries() {
        let mut snap = Snapshot::default();
        let put = WatchEvent::Put(kv(POOL_KEY, &pool_value("10.0.0.0/16"), 4));
        assert_eq!(apply_event(&mut snap, &put), Ok(true));
        assert_eq!(snap.revision, 4);
        let bad = WatchEvent::Put(kv(POOL_KEY, b"[]", 5));
        assert!(apply_event(&mut snap, &bad).is_err());
        assert!(
            snap.resources.is_empty(),
            "a bad value replaces the old one"
        );
        assert_eq!(apply_event(&mut snap, &put), Ok(true));
        let delete = WatchEvent::Delete {
            key: POOL_KEY.into(),
            mod_revision: 6,
            prev: None,
        };
        assert_eq!(apply_event(&mut snap, &delete), Ok(true));
        assert_eq!(apply_event(&mut snap, &delete), Ok(false));
        let other = WatchEvent::Put(kv("/calico/felix/v2/x", b"1", 7));
        assert_eq!(apply_event(&mut snap, &other), Ok(false));
        assert_eq!(snap.revision, 7);
        assert!(snap.resources.is_empty());
    }
}
