//! Shared by the integration tests: the golden cases under `tests/data`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod kernel;
pub mod lab;
pub mod scenarios;

use policy::ir::Hook;
use policy::simulate::{Outcome, Packet, simulate};
use policy::{Config, Model, Ruleset};
use testkit::{Background, Netns, poll_until, require_programs, require_root, veth_pair};

/// `tests/data`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Every case directory, sorted.
pub fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("tests/data exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Reads one YAML file of a case.
pub fn resources(path: &Path) -> Vec<api::Resource> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    api::parse_documents(&path.display().to_string(), &text).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("{}", lines.join("\n"))
    })
}

/// The case's resources (policy.yaml then endpoints.yaml) and its config (an
/// optional `node` file names the local node, an optional `felix.yaml` holds
/// a FelixConfiguration, an optional `pools.yaml` the IPPools whose
/// `natOutgoing` the config carries).
pub fn load(case: &Path) -> (Vec<api::Resource>, Config) {
    let mut all = resources(&case.join("policy.yaml"));
    all.extend(resources(&case.join("endpoints.yaml")));
    let mut config = Config::default();
    if let Ok(node) = std::fs::read_to_string(case.join("node")) {
        config.node = Some(node.trim().to_string());
    }
    let felix = case.join("felix.yaml");
    if felix.exists() {
        for r in resources(&felix) {
            if let api::Resource::FelixConfiguration(f) = r {
                config = config.with_felix(&f.spec);
            }
        }
    }
    let pools = case.join("pools.yaml");
    if pools.exists() {
        let pools = resources(&pools);
        config.nat_outgoing = policy::NatOutgoing::of_pools(pools.iter().filter_map(|r| match r {
            api::Resource::IPPool(p) => Some(&p.spec),
            _ => None,
        }));
    }
    (all, config)
}

/// Compiles the case.
pub fn compile_case(case: &Path) -> Ruleset {
    let (resources, config) = load(case);
    let model = Model::from_resources(&resources, config)
        .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
    policy::compile(&model)
}

/// Compiles YAML given inline (policies, endpoints, ... in one text).
pub fn compile_yaml(yaml: &str) -> Ruleset {
    compile_yaml_with(yaml, Config::default())
}

/// As [`compile_yaml`], for the host and settings of `config`.
pub fn compile_yaml_with(yaml: &str, config: Config) -> Ruleset {
    policy::compile(&model_yaml(yaml, config))
}

/// The model of YAML given inline, for the host and settings of `config`.
pub fn model_yaml(yaml: &str, config: Config) -> Model {
    Model::from_resources(&parse_yaml(yaml), config).expect("model builds")
}

/// Why YAML given inline (valid documents) makes no model.
pub fn model_yaml_error(yaml: &str) -> policy::ModelError {
    Model::from_resources(&parse_yaml(yaml), Config::default()).expect_err("model fails")
}

fn parse_yaml(yaml: &str) -> Vec<api::Resource> {
    api::parse_documents("inline", yaml).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("{}", lines.join("\n"))
    })
}

/// Whether the kernel tests can run here (root, `nft`, `ip`, `python3`, ...).
pub fn ready() -> bool {
    require_root() && require_programs(&["nft", "ip", "python3", "timeout", "bash"])
}

/// Host namespace with workloads a (10.200.1.1) and b (10.200.2.1) behind
/// `calia` and `calib`, routed by the host.
pub struct Topology {
    pub host: Netns,
    pub a: Netns,
    pub b: Netns,
}

pub fn topology() -> Topology {
    let host = Netns::new("polh").unwrap();
    let a = Netns::new("pola").unwrap();
    let b = Netns::new("polb").unwrap();
    for (wl, iface, net) in [(&a, "calia", "10.200.1"), (&b, "calib", "10.200.2")] {
        veth_pair(&host, iface, wl, "eth0").unwrap();
        host.add_addr(iface, &format!("{net}.254/24")).unwrap();
        wl.add_addr("eth0", &format!("{net}.1/24")).unwrap();
        wl.ip(["route", "add", "default", "via", &format!("{net}.254")])
            .unwrap();
    }
    host.exec("sysctl", ["-qw", "net.ipv4.ip_forward=1"])
        .unwrap();
    Topology { host, a, b }
}

pub fn tcp_connects(from: &Netns, addr: &str, port: u16) -> bool {
    from.cmd("timeout")
        .args(["2", "bash", "-c", &format!("echo > /dev/tcp/{addr}/{port}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn pings(from: &Netns, addr: &str) -> bool {
    from.cmd("ping")
        .args(["-c1", "-W1", addr])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn server(ns: &Netns, port: u16) -> Background {
    let s = Background::spawn(
        ns.cmd("python3")
            .args(["-m", "http.server", "--bind", "0.0.0.0", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .unwrap();
    let addr = "127.0.0.1";
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
            tcp_connects(ns, addr, port)
        }),
        "server on port {port} did not start"
    );
    s
}

/// Workloads a (10.200.1.1, `calia`), b (10.200.2.1, `calib`) and c
/// (10.200.3.1, `calic`) in namespace shop, all with profile `open`;
/// `c_role` is c's `role` label (a's is `client`). Policy `b` lets
/// `role == 'client'` reach b on TCP `b_port`; policy `a` lets `app == 'b'`
/// ping a and reach it on TCP 8080.
pub fn scenario(c_role: &str, b_port: u16) -> String {
    format!(
        "
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {{name: open}}
spec:
  ingress: [{{action: Allow}}]
  egress: [{{action: Allow}}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: a, namespace: shop, labels: {{app: a, role: client}}}}
spec: {{node: host, interfaceName: calia, ipNetworks: [10.200.1.1/32], profiles: [open]}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: b, namespace: shop, labels: {{app: b}}}}
spec: {{node: host, interfaceName: calib, ipNetworks: [10.200.2.1/32], profiles: [open]}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: c, namespace: shop, labels: {{app: c, role: {c_role}}}}}
spec: {{node: host, interfaceName: calic, ipNetworks: [10.200.3.1/32], profiles: [open]}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: b, namespace: shop}}
spec:
  selector: app == 'b'
  ingress:
    - action: Allow
      protocol: TCP
      source: {{selector: role == 'client'}}
      destination: {{ports: [{b_port}]}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: a, namespace: shop}}
spec:
  selector: app == 'a'
  ingress:
    - action: Allow
      protocol: ICMP
      source: {{selector: app == 'b'}}
    - action: Allow
      protocol: TCP
      source: {{selector: app == 'b'}}
      destination: {{ports: [8080]}}
"
    )
}

/// A packet arriving on its `iif` through prerouting, then (if accepted)
/// the next hook (`Input` for the host, `Forward` out of `oif`), in the
/// simulator: prerouting's verdict, and the packet as the next hook sees it.
pub fn arrive(rs: &Ruleset, p: Packet, next: Hook, oif: Option<&str>) -> (Outcome, Option<Packet>) {
    let mut p = p;
    p.hook = Hook::Prerouting;
    let pre = simulate(rs, &p).unwrap();
    if pre.outcome == Outcome::Drop {
        return (Outcome::Drop, None);
    }
    let mut after = pre.after;
    after.hook = next;
    after.oif = oif.map(str::to_string);
    (Outcome::Accept, Some(after))
}

/// The verdict of prerouting and then the next hook on a packet.
pub fn through(rs: &Ruleset, p: Packet, next: Hook, oif: Option<&str>) -> Outcome {
    match arrive(rs, p, next, oif) {
        (_, Some(after)) => simulate(rs, &after).unwrap().outcome,
        (outcome, None) => outcome,
    }
}
