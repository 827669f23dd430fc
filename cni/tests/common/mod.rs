//! What the plugin tests share: a "host" network namespace (so that veths,
//! routes and portmap's iptables rules stay in namespaces the test made), a
//! temporary SQLite datastore with an IPPool, and container namespaces
//! plugged by testkit's CNI runtime (`testkit::cni`), which calls the plugins
//! of a conflist exactly as libcni does.

#![allow(dead_code, reason = "each test binary uses part of this")]

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use api::meta::ObjectMeta;
use api::types::Cidr;
use api::{IPPool, IPPoolSpec, Kind, Resource, WorkloadEndpoint};
use datastore::{DatastoreConfig, KvStore, ResourceStore};
use serde_json::{Value, json};
use testkit::Netns;
pub use testkit::cni::{Container, Outcome, REFERENCE_PLUGINS, Runtime};

/// The node name every test host uses.
pub const NODE: &str = "cni-test-node";

/// Runs a future on a fresh current-thread runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// A host: its namespace, datastore and CNI_PATH.
pub struct Host {
    pub ns: Netns,
    pub db: PathBuf,
    _dir: tempfile::TempDir,
    pub cni_path: String,
}

/// The host veth Calico names for a container.
pub trait HostVeth {
    fn host_veth(&self) -> String;
}

impl HostVeth for Container {
    fn host_veth(&self) -> String {
        match &self.pod {
            Some((ns, pod)) => cni::workload::veth_name_for_pod(ns, pod),
            None => format!("cali{}", &self.id[..11.min(self.id.len())]),
        }
    }
}

impl Host {
    /// A host namespace (lo up) and a datastore holding `pools` (CIDR, block size).
    pub fn new(pools: &[(&str, u8)]) -> Host {
        let ns = Netns::new("cnih").expect("host namespace");
        ns.link_up("lo").expect("lo up");
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("calico.db");
        let host = Host {
            ns,
            db,
            _dir: dir,
            cni_path: format!(
                "{}:{REFERENCE_PLUGINS}",
                Path::new(env!("CARGO_BIN_EXE_calico"))
                    .parent()
                    .unwrap()
                    .display()
            ),
        };
        let resources: Vec<Resource> = pools
            .iter()
            .enumerate()
            .map(|(i, (cidr, block))| {
                let mut spec = IPPoolSpec::new(Cidr(cidr.parse().unwrap()));
                spec.block_size = Some(*block);
                IPPool::new(ObjectMeta::named(format!("pool-{i}")), spec).into()
            })
            .collect();
        block_on(async { host.resources().await.create_all(resources).await }).expect("pools");
        host
    }

    pub async fn kv(&self) -> Arc<dyn KvStore> {
        datastore::connect(&DatastoreConfig::Sqlite {
            path: self.db.clone(),
        })
        .await
        .expect("open the store")
    }

    pub async fn resources(&self) -> ResourceStore {
        ResourceStore::new(self.kv().await)
    }

    /// Calico's plugin config for this host's store.
    pub fn calico_conf(&self) -> Value {
        calico_conf(&self.db)
    }

    /// `loopback`, `calico`, `portmap`: Calico's chain, loopback first.
    pub fn conflist(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "plugins": [
                {"type": "loopback"},
                self.calico_conf(),
                {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}
            ]
        })
    }

    /// The CNI runtime of this host.
    pub fn runtime(&self) -> Runtime<'_> {
        Runtime::new(&self.ns, self.cni_path.as_str())
    }

    /// Runs one plugin binary with `stdin` for `command` on `c`, inside
    /// the host namespace, as a runtime does.
    pub fn invoke(&self, plugin: &str, command: &str, c: &Container, stdin: &Value) -> Outcome {
        self.runtime().invoke(plugin, command, c, stdin)
    }

    /// ADD through the chain; the final result, or the first failure.
    pub fn add_chain(
        &self,
        list: &Value,
        c: &Container,
        runtime: &Value,
    ) -> Result<Value, Outcome> {
        self.runtime().add_chain(list, c, runtime)
    }

    /// DEL (reverse order) or CHECK (in order) through the chain.
    pub fn chain(
        &self,
        command: &str,
        list: &Value,
        c: &Container,
        result: &Value,
        runtime: &Value,
    ) -> Result<(), Outcome> {
        self.runtime().chain(command, list, c, result, runtime)
    }

    /// The `cali…` links in the host namespace.
    pub fn cali_links(&self) -> Vec<String> {
        let links: Value =
            serde_json::from_str(&self.ns.ip(["-j", "link", "show"]).unwrap()).unwrap();
        links
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| n.starts_with("cali"))
            .map(str::to_owned)
            .collect()
    }

    /// The workload endpoints in the store.
    pub fn endpoints(&self) -> Vec<WorkloadEndpoint> {
        block_on(async {
            self.resources()
                .await
                .list(Kind::WorkloadEndpoint, None)
                .await
        })
        .unwrap()
        .into_iter()
        .map(|r| match r {
            Resource::WorkloadEndpoint(w) => w,
            other => panic!("not an endpoint: {other:?}"),
        })
        .collect()
    }

    /// The addresses IPAM holds for the container's handle.
    pub fn handle_ips(&self, c: &Container) -> Vec<IpAddr> {
        let handle = format!("k8s-pod-network.{}", c.id);
        block_on(async { cni::ipam::addresses_of(&self.kv().await, &handle).await }).unwrap()
    }

    /// Whether the handle key exists at all.
    pub fn handle_exists(&self, c: &Container) -> bool {
        let key = datastore::ipam::model::handle_key(&format!("k8s-pod-network.{}", c.id));
        block_on(async { self.kv().await.get(&key).await })
            .unwrap()
            .is_some()
    }

    /// Nothing of `c` is left: no veth, no endpoint, no handle.
    #[track_caller]
    pub fn assert_nothing_left(&self, c: &Container) {
        assert!(
            !self.cali_links().contains(&c.host_veth()),
            "veth left: {:?}",
            self.cali_links()
        );
        let left: Vec<_> = self
            .endpoints()
            .into_iter()
            .filter(|w| w.spec.container_id == c.id)
            .map(|w| w.metadata.name)
            .collect();
        assert!(left.is_empty(), "endpoints left: {left:?}");
        assert!(!self.handle_exists(c), "IPAM handle of {} left", c.id);
    }
}

/// Calico's plugin config, as in Calico's conflist, for the store `db`.
pub fn calico_conf(db: &Path) -> Value {
    json!({
        "type": "calico",
        "log_level": "debug",
        "datastore_type": "sqlite",
        "datastore_path": db.display().to_string(),
        "nodename": NODE,
        "mtu": 1450,
        "ipam": {"type": "calico-ipam", "assign_ipv4": "true"}
    })
}

/// `CNI_PATH`: our binaries, then the reference plugins.
pub fn cni_path() -> String {
    format!(
        "{}:{REFERENCE_PLUGINS}",
        Path::new(env!("CARGO_BIN_EXE_calico"))
            .parent()
            .unwrap()
            .display()
    )
}

/// A temporary SQLite datastore holding `pools` (CIDR, block size).
pub fn store_with_pools(pools: &[(&str, u8)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("calico.db");
    let resources: Vec<Resource> = pools
        .iter()
        .enumerate()
        .map(|(i, (cidr, block))| {
            let mut spec = IPPoolSpec::new(Cidr(cidr.parse().unwrap()));
            spec.block_size = Some(*block);
            IPPool::new(ObjectMeta::named(format!("pool-{i}")), spec).into()
        })
        .collect();
    block_on(async {
        ResourceStore::new(open(&db).await)
            .create_all(resources)
            .await
    })
    .expect("pools");
    (dir, db)
}

/// Opens the SQLite store at `db`.
pub async fn open(db: &Path) -> Arc<dyn KvStore> {
    datastore::connect(&DatastoreConfig::Sqlite {
        path: db.to_owned(),
    })
    .await
    .expect("open the store")
}

/// `ip -j ... ` inside a namespace, parsed.
pub fn ip_json(ns: &Netns, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&ns.ip(full).unwrap()).unwrap()
}
