//! What the plugin tests share: a "host" network namespace (so that veths,
//! routes and portmap's iptables rules stay in namespaces the test made), a
//! temporary SQLite datastore with an IPPool, container namespaces, and a
//! small runtime that calls the plugins of a conflist exactly as libcni does
//! (each plugin binary from `CNI_PATH`, its config with `name`, `cniVersion`,
//! `prevResult` and the `runtimeConfig` its capabilities ask for on stdin,
//! the `CNI_*` environment).

#![allow(dead_code, reason = "each test binary uses part of this")]

use std::future::Future;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use api::meta::ObjectMeta;
use api::types::Cidr;
use api::{IPPool, IPPoolSpec, Kind, Resource, WorkloadEndpoint};
use datastore::{DatastoreConfig, KvStore, ResourceStore};
use serde_json::{Value, json};
use testkit::Netns;

/// The node name every test host uses.
pub const NODE: &str = "cni-test-node";
/// The reference plugins (Debian's containernetworking-plugins).
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

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

/// One plugin invocation's outcome.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub exit_code: Option<i32>,
    pub stdout: Value,
    pub stderr: String,
}

impl Outcome {
    /// The error JSON's code; panics on success.
    pub fn code(&self) -> u64 {
        assert!(!self.success, "expected a failure, got {}", self.stdout);
        self.stdout["code"].as_u64().expect("error JSON has a code")
    }
    pub fn msg(&self) -> &str {
        self.stdout["msg"].as_str().unwrap_or_default()
    }
    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(
            self.success,
            "plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }
}

/// A container: its namespace (until removed), ID and (optional) pod.
pub struct Container {
    ns: Option<Netns>,
    path: String,
    pub id: String,
    pub pod: Option<(String, String)>,
}

impl Container {
    pub fn new(id: &str, pod: Option<(&str, &str)>) -> Container {
        let ns = Netns::new("cnic").expect("container namespace");
        Container {
            path: ns.path().display().to_string(),
            ns: Some(ns),
            id: id.into(),
            pod: pod.map(|(n, p)| (n.into(), p.into())),
        }
    }

    /// The namespace; panics once removed.
    pub fn ns(&self) -> &Netns {
        self.ns
            .as_ref()
            .expect("the container namespace was removed")
    }

    /// Removes the namespace (as a runtime does before a late DEL);
    /// `CNI_NETNS` keeps naming its old path.
    pub fn remove_netns(&mut self) {
        self.ns
            .take()
            .expect("a namespace")
            .remove()
            .expect("remove the namespace");
    }

    /// `CNI_NETNS`.
    pub fn netns(&self) -> String {
        self.path.clone()
    }

    /// The host veth Calico names for this container.
    pub fn host_veth(&self) -> String {
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

    /// Runs one plugin binary with `stdin` for `command` on `c`, inside
    /// the host namespace, as a runtime does.
    pub fn invoke(&self, plugin: &str, command: &str, c: &Container, stdin: &Value) -> Outcome {
        let binary = self
            .cni_path
            .split(':')
            .map(|d| Path::new(d).join(plugin))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("plugin {plugin} not in {}", self.cni_path));
        let mut cmd = self.ns.cmd(&binary);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &c.id)
            .env("CNI_NETNS", c.netns())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path);
        if let Some((ns, pod)) = &c.pod {
            cmd.env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={}", c.id),
            );
        }
        run(cmd, stdin)
    }

    /// A plugin's stdin in a chain, as libcni builds it.
    fn plugin_stdin(list: &Value, plugin: &Value, prev: Option<&Value>, runtime: &Value) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = list["name"].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        let mut rc = serde_json::Map::new();
        if let Some(caps) = plugin["capabilities"].as_object() {
            for (cap, on) in caps {
                if on.as_bool() == Some(true) && runtime.get(cap).is_some() {
                    rc.insert(cap.clone(), runtime[cap].clone());
                }
            }
        }
        if !rc.is_empty() {
            conf["runtimeConfig"] = Value::Object(rc);
        }
        conf
    }

    /// ADD through the chain; the final result, or the first failure.
    pub fn add_chain(
        &self,
        list: &Value,
        c: &Container,
        runtime: &Value,
    ) -> Result<Value, Outcome> {
        let mut prev: Option<Value> = None;
        for plugin in list["plugins"].as_array().unwrap() {
            let stdin = Self::plugin_stdin(list, plugin, prev.as_ref(), runtime);
            let out = self.invoke(plugin["type"].as_str().unwrap(), "ADD", c, &stdin);
            if !out.success {
                return Err(out);
            }
            prev = Some(out.stdout);
        }
        Ok(prev.expect("a non-empty chain"))
    }

    /// DEL (reverse order) or CHECK (in order) through the chain with the
    /// cached result; the first failure, if any.
    pub fn chain(
        &self,
        command: &str,
        list: &Value,
        c: &Container,
        result: &Value,
        runtime: &Value,
    ) -> Result<(), Outcome> {
        let mut plugins: Vec<&Value> = list["plugins"].as_array().unwrap().iter().collect();
        if command == "DEL" {
            plugins.reverse();
        }
        for plugin in plugins {
            let stdin = Self::plugin_stdin(list, plugin, Some(result), runtime);
            let out = self.invoke(plugin["type"].as_str().unwrap(), command, c, &stdin);
            if !out.success {
                return Err(out);
            }
        }
        Ok(())
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

/// Runs a prepared plugin command with `stdin` to completion.
pub fn run(mut cmd: Command, stdin: &Value) -> Outcome {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("the plugin ran");
    let text = String::from_utf8_lossy(&out.stdout);
    Outcome {
        success: out.status.success(),
        exit_code: out.status.code(),
        stdout: if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("the plugin printed non-JSON {text:?}: {e}"))
        },
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `ip -j ... ` inside a namespace, parsed.
pub fn ip_json(ns: &Netns, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&ns.ip(full).unwrap()).unwrap()
}
