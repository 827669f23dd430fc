//! A whole store moved SQLite → etcd → SQLite through the export file,
//! on real stores (a real etcd on loopback), compared key by key; and what
//! an import refuses, leaving the target as it was.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use api::{
    Cidr, IPPool, IPPoolSpec, Kind, ObjectMeta, Resource, WorkloadEndpoint, WorkloadEndpointSpec,
};
use async_trait::async_trait;
use datastore::ipam::{AutoAssignArgs, Ipam};
use datastore::migrate::{self, Export, MigrateError};
use datastore::testing::EtcdServer;
use datastore::{
    Error, KeyValue, KvStore, ResourceStore, Revision, SqliteStore, Txn, TxnResponse, Watch,
};

fn sqlite(dir: &tempfile::TempDir, name: &str) -> Arc<dyn KvStore> {
    Arc::new(SqliteStore::open(dir.path().join(name)).unwrap())
}

fn from_yaml(yaml: &str) -> Resource {
    api::parse_documents("test", yaml).unwrap().remove(0)
}

/// A store with a bit of everything: pools, policies, workload endpoints,
/// and IPAM state over more keys than one etcd transaction takes.
async fn populate(kv: &Arc<dyn KvStore>) {
    let store = ResourceStore::new(kv.clone());
    let pool = IPPoolSpec::new("10.20.0.0/16".parse::<Cidr>().unwrap());
    store
        .apply(IPPool::new(ObjectMeta::named("pool-a"), pool).into())
        .await
        .unwrap();
    store
        .apply(from_yaml(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-db}\n\
             spec: {selector: app == 'db', ingress: [{action: Deny}]}\n",
        ))
        .await
        .unwrap();
    store
        .apply(from_yaml(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: shop}\n\
             spec: {podSelector: {}, policyTypes: [Ingress]}\n",
        ))
        .await
        .unwrap();
    let ipam = Ipam::new(kv.clone());
    for i in 0..70 {
        let host = format!("host-{}", i % 3);
        let handle = format!("k8s-pod-network.c{i:04}");
        ipam.auto_assign(&AutoAssignArgs {
            handle: handle.clone(),
            host: host.clone(),
            num_v4: 1,
            ..AutoAssignArgs::default()
        })
        .await
        .unwrap();
        let spec = WorkloadEndpointSpec {
            node: host,
            pod: format!("pod-{i}"),
            endpoint: "eth0".into(),
            orchestrator: "k8s".into(),
            interface_name: format!("cali{i:011}"),
            ..WorkloadEndpointSpec::default()
        };
        let meta = ObjectMeta {
            name: format!("{}-k8s-pod--{i}-eth0", spec.node),
            namespace: Some("shop".into()),
            ..ObjectMeta::default()
        };
        store
            .create(WorkloadEndpoint::new(meta, spec).into())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moves_to_etcd_and_back_losing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite(&dir, "source.db");
    populate(&source).await;
    let store = ResourceStore::new(source.clone());

    // Export needs the lock.
    let err = migrate::export(&source).await.unwrap_err();
    assert!(matches!(err, MigrateError::NotLocked), "{err}");
    migrate::set_ready(&store, false).await.unwrap();
    let original = migrate::dump(&source).await.unwrap();
    // More than etcd takes in one transaction (128 operations).
    assert!(original.len() > 128, "only {} keys", original.len());
    let text = migrate::export(&source).await.unwrap().render();

    let etcd = EtcdServer::start().unwrap_or_else(|e| panic!("starting etcd: {e}"));
    let middle = datastore::connect(&etcd.datastore_config()).await.unwrap();
    let export = Export::parse("export.yaml", &text).unwrap();
    let imported = migrate::import(&middle, &export).await.unwrap();
    assert_eq!(imported.resources, 73, "{imported:?}");
    assert_eq!(migrate::dump(&middle).await.unwrap(), original);

    // The target is left locked; back again to a fresh SQLite store.
    let again = migrate::export(&middle).await.unwrap().render();
    assert_eq!(again, text, "an export of the copy differs");
    let last = sqlite(&dir, "last.db");
    migrate::import(&last, &Export::parse("again", &again).unwrap())
        .await
        .unwrap();
    assert_eq!(migrate::dump(&last).await.unwrap(), original);

    // The copy works as a store: IPAM carries on where the source left.
    migrate::set_ready(&ResourceStore::new(last.clone()), true)
        .await
        .unwrap();
    let ipam = Ipam::new(last.clone());
    let before = ipam.usage().await.unwrap();
    ipam.auto_assign(&AutoAssignArgs {
        handle: "k8s-pod-network.new".into(),
        host: "host-0".into(),
        num_v4: 1,
        ..AutoAssignArgs::default()
    })
    .await
    .unwrap();
    let after = ipam.usage().await.unwrap();
    assert_eq!(after.pools[0].in_use, before.pools[0].in_use + 1);
}

/// A populated SQLite store's export (the store locked first), and the
/// directory it lives in.
async fn locked_export() -> (tempfile::TempDir, Export) {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite(&dir, "source.db");
    populate(&source).await;
    migrate::set_ready(&ResourceStore::new(source.clone()), false)
        .await
        .unwrap();
    let export = migrate::export(&source).await.unwrap();
    (dir, export)
}

#[tokio::test]
async fn import_refuses_a_store_that_holds_anything_and_leaves_it_as_it_was() {
    let (dir, export) = locked_export().await;

    let target = sqlite(&dir, "target.db");
    let store = ResourceStore::new(target.clone());
    let pool = IPPoolSpec::new("10.99.0.0/16".parse::<Cidr>().unwrap());
    store
        .apply(IPPool::new(ObjectMeta::named("mine"), pool).into())
        .await
        .unwrap();
    let before = migrate::dump(&target).await.unwrap();
    let err = migrate::import(&target, &export).await.unwrap_err();
    assert!(
        matches!(&err, MigrateError::NotEmpty { count: 1, first } if first.ends_with("ippools/mine")),
        "{err}"
    );
    assert_eq!(migrate::dump(&target).await.unwrap(), before);
    assert_eq!(
        store.list(Kind::ClusterInformation, None).await.unwrap(),
        vec![]
    );
}

/// A real SQLite store whose `fail_at`th transaction fails, as a store
/// that goes away in the middle of an import.
#[derive(Debug)]
struct Failing {
    inner: Arc<dyn KvStore>,
    txns: AtomicUsize,
    fail_at: usize,
}

#[async_trait]
impl KvStore for Failing {
    async fn get(&self, key: &str) -> datastore::Result<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> datastore::Result<(Vec<KeyValue>, Revision)> {
        self.inner.list(prefix).await
    }
    async fn txn(&self, txn: Txn) -> datastore::Result<TxnResponse> {
        if self.txns.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(Error::Backend("connection lost".into()));
        }
        self.inner.txn(txn).await
    }
    async fn watch(&self, prefix: &str, start: Revision) -> datastore::Result<Watch> {
        self.inner.watch(prefix, start).await
    }
    async fn revision(&self) -> datastore::Result<Revision> {
        self.inner.revision().await
    }
    async fn compact(&self, revision: Revision) -> datastore::Result<()> {
        self.inner.compact(revision).await
    }
    fn active_watches(&self) -> usize {
        self.inner.active_watches()
    }
}

#[tokio::test]
async fn an_import_cut_off_halfway_removes_what_it_wrote() {
    let (dir, export) = locked_export().await;

    let inner = sqlite(&dir, "target.db");
    // The lock is the 1st transaction, the keys' 2nd and 3rd: the 3rd fails.
    let target: Arc<dyn KvStore> = Arc::new(Failing {
        inner: inner.clone(),
        txns: AtomicUsize::new(0),
        fail_at: 3,
    });
    let err = migrate::import(&target, &export).await.unwrap_err();
    assert!(matches!(err, MigrateError::RolledBack(_)), "{err}");
    assert!(err.to_string().contains("connection lost"), "{err}");
    assert_eq!(migrate::dump(&inner).await.unwrap().len(), 0);
}
