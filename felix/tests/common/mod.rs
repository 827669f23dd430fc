//! Helpers shared by felix's integration tests: stores to run against, a
//! pool written as a resource, and polling.

#![allow(dead_code, reason = "each test binary uses its own part")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{Cidr, IPPool, IPPoolSpec, ObjectMeta, Resource};
use datastore::testing::EtcdServer;
use datastore::{KvStore, ResourceStore, SqliteStore};

/// A store for one test, and what keeps it alive.
pub enum Backing {
    Sqlite(tempfile::TempDir),
    Etcd(EtcdServer),
}

/// A fresh SQLite store in a temporary directory.
pub fn sqlite() -> (Arc<dyn KvStore>, Backing) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("calico.db")).unwrap();
    (Arc::new(store), Backing::Sqlite(dir))
}

/// A store on a real etcd of its own, or `None` where etcd is missing
/// (outside CI).
pub async fn etcd() -> Option<(Arc<dyn KvStore>, Backing)> {
    if !testkit::require_programs(&["etcd"]) {
        return None;
    }
    let server = EtcdServer::start().unwrap_or_else(|e| panic!("starting etcd: {e}"));
    let store = datastore::connect(&server.datastore_config())
        .await
        .unwrap_or_else(|e| panic!("connecting to etcd: {e}"));
    Some((store, Backing::Etcd(server)))
}

/// An IPPool resource named `name` for `cidr`, with `vxlan` mode `Always`
/// if asked.
pub fn pool(name: &str, cidr: &str, vxlan: bool) -> Resource {
    let mut spec = IPPoolSpec::new(Cidr(cidr.parse().unwrap()));
    if vxlan {
        spec.vxlan_mode = api::resources::ippool::EncapMode::Always;
    }
    Resource::IPPool(IPPool::new(ObjectMeta::named(name), spec))
}

pub async fn apply(kv: &Arc<dyn KvStore>, resource: Resource) -> Resource {
    ResourceStore::new(kv.clone())
        .apply(resource)
        .await
        .unwrap_or_else(|e| panic!("writing a resource: {e}"))
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after 20 s.
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
