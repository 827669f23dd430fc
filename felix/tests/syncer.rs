//! The syncer against real stores (SQLite, and a real etcd started by the
//! test): creates, updates and deletes of resources and IPAM blocks are
//! reflected in the snapshot; a failed watch triggers a resync whose
//! snapshot equals a fresh list, including changes the broken watch never
//! delivered.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::{apply, pool, until};
use datastore::ipam::client::{AutoAssignArgs, Ipam};
use datastore::{
    Error, KeyValue, KvStore, ResourceStore, Result, Revision, Txn, TxnResponse, Watch,
};
use felix::metrics::Metrics;
use felix::syncer::{SyncState, Syncer, snapshot_of};
use tokio::sync::{mpsc, oneshot};

const POOLS: &str = "/calico/resources/v3/projectcalico.org/ippools/";

/// A real store whose watches can be stalled (events dropped, as a watch
/// that lost its connection) and then failed with `Compacted`, as a watch
/// the store compacted past. Everything else goes to the store as is.
#[derive(Debug)]
struct Breakable {
    inner: Arc<dyn KvStore>,
    stalled: Arc<AtomicBool>,
    /// Fails the current watch.
    kill: Mutex<Option<oneshot::Sender<()>>>,
}

impl Breakable {
    fn new(inner: Arc<dyn KvStore>) -> Arc<Self> {
        Arc::new(Breakable {
            inner,
            stalled: Arc::default(),
            kill: Mutex::default(),
        })
    }

    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Ends the current watch with `Compacted`; later watches work again.
    fn fail(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        let kill = self
            .kill
            .lock()
            .unwrap()
            .take()
            .expect("a watch is running");
        kill.send(()).unwrap();
    }
}

#[async_trait]
impl KvStore for Breakable {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        self.inner.list(prefix).await
    }
    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.inner.txn(txn).await
    }
    async fn watch(&self, prefix: &str, start: Revision) -> Result<Watch> {
        let mut watch = self.inner.watch(prefix, start).await?;
        let (tx, rx) = mpsc::channel(256);
        let (kill, mut killed) = oneshot::channel();
        *self.kill.lock().unwrap() = Some(kill);
        let stalled = self.stalled.clone();
        let compacted = self.inner.revision().await?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = &mut killed => {
                        let _ = tx.send(Err(Error::Compacted {
                            requested: start,
                            compact_revision: compacted,
                        })).await;
                        return;
                    }
                    event = watch.next() => match event {
                        Some(event) if !stalled.load(Ordering::SeqCst) => {
                            if tx.send(event).await.is_err() {
                                return;
                            }
                        }
                        Some(_) => {}
                        None => return,
                    },
                }
            }
        });
        Ok(Watch::new(rx))
    }
    async fn revision(&self) -> Result<Revision> {
        self.inner.revision().await
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }
    fn active_watches(&self) -> usize {
        self.inner.active_watches()
    }
}

/// The snapshot's resources and blocks equal those of a fresh list.
async fn matches_fresh_list(kv: &Arc<dyn KvStore>, state: &SyncState) -> bool {
    let (kvs, revision) = kv.list("/calico/").await.unwrap();
    let (fresh, _) = snapshot_of(&kvs, revision);
    let snap = state.snapshot();
    snap.resources == fresh.resources && snap.blocks == fresh.blocks
}

async fn wait_until_matches(kv: &Arc<dyn KvStore>, state: &SyncState, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !matches_fresh_list(kv, state).await {
        assert!(
            std::time::Instant::now() < deadline,
            "not within 20 s: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn changes_are_reflected(kv: Arc<dyn KvStore>) {
    let (state, task) = Syncer::new(kv.clone(), Arc::new(Metrics::new())).spawn();
    until("the first list", || state.in_sync()).await;

    let written = apply(&kv, pool("a", "10.10.0.0/16", false)).await;
    let key = format!("{POOLS}a");
    until("the pool created", || {
        state.snapshot().resources.get(&key) == Some(&written)
    })
    .await;

    let api::Resource::IPPool(mut edited) = written.clone() else {
        unreachable!()
    };
    edited.spec.nat_outgoing = true;
    edited.metadata.resource_version = None;
    let written = apply(&kv, api::Resource::IPPool(edited)).await;
    until("the pool updated", || {
        state.snapshot().resources.get(&key) == Some(&written)
    })
    .await;

    let ipam = Ipam::new(kv.clone());
    let assigned = ipam
        .auto_assign(&AutoAssignArgs {
            handle: "h1".into(),
            host: "n1".into(),
            num_v4: 1,
            ..AutoAssignArgs::default()
        })
        .await
        .unwrap();
    let ip = assigned.v4[0];
    let block_key = datastore::ipam::model::block_key(ip.block);
    until("the block with the allocation", || {
        state
            .snapshot()
            .blocks
            .get(&block_key)
            .is_some_and(|b| b.allocation(ip.ip).is_some())
    })
    .await;

    ipam.release_ips(&[ip.ip]).await.unwrap();
    until("the address released", || {
        state
            .snapshot()
            .blocks
            .get(&block_key)
            .is_some_and(|b| b.allocation(ip.ip).is_none())
    })
    .await;

    ResourceStore::new(kv.clone())
        .delete(api::Kind::IPPool, None, "a", None)
        .await
        .unwrap();
    until("the pool deleted", || {
        !state.snapshot().resources.contains_key(&key)
    })
    .await;
    assert!(matches_fresh_list(&kv, &state).await);
    let revision = kv.revision().await.unwrap();
    assert_eq!(state.snapshot().revision, revision);
    task.abort();
}

async fn a_failed_watch_resyncs_to_a_fresh_list(store: Arc<dyn KvStore>) {
    let breakable = Breakable::new(store.clone());
    let kv: Arc<dyn KvStore> = breakable.clone();
    apply(&kv, pool("a", "10.10.0.0/16", false)).await;
    let metrics = Arc::new(Metrics::new());
    let (state, task) = Syncer::new(kv.clone(), metrics.clone()).spawn();
    wait_until_matches(&kv, &state, "the first list").await;

    // The watch loses these changes...
    breakable.stall();
    apply(&kv, pool("b", "10.20.0.0/16", false)).await;
    ResourceStore::new(kv.clone())
        .delete(api::Kind::IPPool, None, "a", None)
        .await
        .unwrap();
    Ipam::new(kv.clone())
        .auto_assign(&AutoAssignArgs {
            handle: "h1".into(),
            host: "n1".into(),
            num_v4: 2,
            ..AutoAssignArgs::default()
        })
        .await
        .unwrap();
    kv.compact(kv.revision().await.unwrap()).await.unwrap();
    assert!(
        !matches_fresh_list(&kv, &state).await,
        "the stalled watch delivered nothing"
    );
    assert!(
        state
            .snapshot()
            .resources
            .contains_key(&format!("{POOLS}a"))
    );

    // ... and then fails: the resync catches up.
    breakable.fail();
    wait_until_matches(&kv, &state, "the resync").await;
    until("in sync again", || state.in_sync()).await;
    assert_eq!(metrics.resyncs.get(&[]), 1);
    assert!(
        state
            .snapshot()
            .resources
            .contains_key(&format!("{POOLS}b"))
    );
    assert_eq!(state.snapshot().blocks.len(), 1);

    // The new watch follows on.
    apply(&kv, pool("c", "10.30.0.0/16", false)).await;
    until("a change after the resync", || {
        state
            .snapshot()
            .resources
            .contains_key(&format!("{POOLS}c"))
    })
    .await;
    wait_until_matches(&kv, &state, "after the resync").await;
    task.abort();
}

#[tokio::test]
async fn sqlite_changes_are_reflected_in_the_snapshot() {
    let (kv, _keep) = common::sqlite();
    changes_are_reflected(kv).await;
}

#[tokio::test]
async fn sqlite_a_failed_watch_resyncs_to_what_a_fresh_list_sees() {
    let (kv, _keep) = common::sqlite();
    a_failed_watch_resyncs_to_a_fresh_list(kv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_changes_are_reflected_in_the_snapshot() {
    let Some((kv, _keep)) = common::etcd().await else {
        return;
    };
    changes_are_reflected(kv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_failed_watch_resyncs_to_what_a_fresh_list_sees() {
    let Some((kv, _keep)) = common::etcd().await else {
        return;
    };
    a_failed_watch_resyncs_to_a_fresh_list(kv).await;
}
