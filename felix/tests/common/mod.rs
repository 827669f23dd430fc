//! Helpers shared by felix's integration tests: stores to run against, a
//! pool written as a resource, and polling.

#![allow(dead_code, reason = "each test binary uses its own part")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{Cidr, IPPool, IPPoolSpec, ObjectMeta, Resource};
use datastore::testing::EtcdServer;
use datastore::{KvStore, ResourceStore, SqliteStore};
use serde_json::Value;
use testkit::Netns;

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

/// Two workloads on `node1` and a policy letting `front` reach `back` on
/// TCP 8080.
pub const POLICY_RESOURCES: &str = r#"
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node1-k8s-front-eth0, namespace: shop, labels: {app: front}}
spec: {orchestrator: k8s, node: node1, interfaceName: califront, ipNetworks: [10.65.0.2/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node1-k8s-back-eth0, namespace: shop, labels: {app: back}}
spec: {orchestrator: k8s, node: node1, interfaceName: caliback, ipNetworks: [10.65.0.3/32]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: back, namespace: shop}
spec:
  selector: app == "back"
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: app == "front"}
      destination: {ports: [8080]}
"#;

/// Kernel handle of every table, set, map and chain (`kind name` → handle),
/// and the number of rules.
pub fn nft_handles(ns: &Netns) -> (BTreeMap<String, u64>, usize) {
    let out = ns
        .exec("nft", ["-j", "-a", "list", "table", "inet", "calico"])
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut handles = BTreeMap::new();
    let mut rules = 0;
    for object in doc["nftables"].as_array().unwrap() {
        for kind in ["table", "set", "map", "chain"] {
            if let Some(o) = object.get(kind) {
                let name = o["name"].as_str().unwrap();
                handles.insert(format!("{kind} {name}"), o["handle"].as_u64().unwrap());
            }
        }
        rules += usize::from(object.get("rule").is_some());
    }
    (handles, rules)
}

/// `nft list table inet calico`, counter values left out (traffic moves them).
pub fn nft_listing(ns: &Netns) -> String {
    let out = ns.exec("nft", ["list", "table", "inet", "calico"]).unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut words = Vec::new();
    let mut tokens = text.split(' ').peekable();
    // `counter packets N bytes M` becomes `counter`.
    while let Some(word) = tokens.next() {
        words.push(word);
        if word.ends_with("counter") && tokens.peek() == Some(&"packets") {
            tokens.nth(3);
        }
    }
    words.join(" ")
}
