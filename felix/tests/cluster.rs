//! Three hosts and a top-of-rack router in namespaces (root): the whole
//! system at once. Each host is a namespace running its own `felix` on one
//! shared SQLite datastore, its workloads made by our CNI plugin (chained
//! after `loopback` and before `portmap`, as Calico's conflist chains them);
//! the ToR runs BIRD 2 and peers with every host (mesh off).
//!
//! ```text
//!             tor (BIRD, AS 65000) 10.0.0.1/24 on br0
//!        ┌──────────────┼──────────────┐
//!   h1 10.0.0.11    h2 10.0.0.12    h3 10.0.0.13        AS 6460N, felix each
//!   client, anchor  web, borrower   other               workloads via CNI
//! ```
//!
//! Pool `main` (10.244.0.0/16, /26 blocks) gives each host a block; pool
//! `tiny` (10.245.0.0/30, one block) is claimed by h1's `anchor`, so h2's
//! `borrower` borrows an address from it and h2 announces that /32.
//!
//! - BGP: the ToR learns every host's block and the borrowed /32, each host
//!   gets the others' routes; workloads on different hosts reach each other.
//! - Policy: `web` admits TCP 8080 from `app == 'client'` only; `other` is
//!   refused, also through h2's host port 8081 (portmap → our rules).
//! - `natOutgoing` (pool `tiny` only): anchor's traffic to the ToR leaves
//!   with h1's address, client's keeps its own.
//! - `calicoctl node status` shows the ToR as an established global peer.
//! - Deleting `borrower` withdraws its /32 everywhere.
//! - Restarting h1's felix keeps a TCP connection client → web alive, BIRD
//!   keeps h1's routes (graceful restart), and no route of h1 changes.
//!
//! And the same cluster over VXLAN with BGP off (no ToR router).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use flows::proto::{self, flows_client::FlowsClient};
use serde_json::{Value, json};
use tempfile::TempDir;
use testkit::cni::{Container, REFERENCE_PLUGINS, Runtime, interface_address};
use testkit::traffic::{EchoServer, connect, echo, pings, tcp_connects};
use testkit::{Background, Netns, poll_until, require_programs, require_root, veth_pair};

const HOSTS: usize = 3;
const TOR: &str = "10.0.0.1";

fn host_ip(n: usize) -> String {
    format!("10.0.0.{}", 10 + n)
}

/// Each host is its own AS (Calico's AS-per-node design with a ToR): in
/// one shared AS the hosts would drop each other's routes as AS loops.
fn host_as(n: usize) -> u32 {
    64600 + n as u32
}

fn node(n: usize) -> String {
    format!("h{n}")
}

/// Polls `check` for up to 60 s; panics naming `what` with the cluster's logs.
fn wait(cluster: &Cluster, what: &str, check: impl FnMut() -> bool) {
    if !poll_until(Duration::from_secs(60), Duration::from_millis(200), check) {
        if std::env::var_os("CLUSTER_HOLD").is_some() {
            eprintln!("{what}: holding the cluster for 600 s");
            std::thread::sleep(Duration::from_secs(600));
        }
        panic!("{what}: not within 60 s\n{}", cluster.logs());
    }
}

/// Holds for 3 s; panics naming `what` as soon as it does not.
fn stays(cluster: &Cluster, what: &str, mut check: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < end {
        assert!(check(), "{what}: no longer holds\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Host {
    ns: Netns,
    felix: Option<Background>,
}

/// The flows host `n`'s felix lists on its flow API (127.0.0.1:7443 in
/// the host's namespace), through a client generated from the `.proto`.
fn flows(cluster: &Cluster, n: usize) -> Vec<proto::Flow> {
    cluster
        .host(n)
        .ns
        .block_on(|| async {
            let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:7443");
            let Ok(channel) = endpoint.connect().await else {
                return Vec::new();
            };
            let listed = FlowsClient::new(channel)
                .list(proto::FlowListRequest::default())
                .await;
            listed.map_or_else(
                |_| Vec::new(),
                |r| {
                    r.into_inner()
                        .flows
                        .into_iter()
                        .filter_map(|f| f.flow)
                        .collect()
                },
            )
        })
        .unwrap()
}

/// A flow of `flows` into `web` on TCP 8080 from the workload labelled
/// `app == from`, as the destination's host reports it, with this action.
fn flow_to_web<'f>(
    flows: &'f [proto::Flow],
    from: &str,
    action: proto::Action,
) -> Option<&'f proto::Flow> {
    flows.iter().find(|f| {
        f.key.as_ref().is_some_and(|k| {
            k.dest_port == 8080
                && k.reporter == proto::Reporter::Dst as i32
                && k.action == action as i32
        }) && f.source_labels.iter().any(|l| l == &format!("app={from}"))
            && f.dest_labels.iter().any(|l| l == "app=web")
    })
}

/// Python grpcio, with code generated from Goldmane's own api.proto (the
/// copy `flows` tests with), listing host `n`'s flows from inside its
/// namespace: a line per flow, `source-label dest-label port reporter
/// action tier/name/rule` of the last enforced hit.
fn goldmane_list(cluster: &Cluster, n: usize) -> String {
    let client = testkit::goldmane::PythonClient::generate()
        .expect("python3-grpcio and python3-grpc-tools are needed");
    let script = r#"
import grpc, api_pb2 as pb, api_pb2_grpc as rpc
stub = rpc.FlowsStub(grpc.insecure_channel("127.0.0.1:7443"))
for r in stub.List(pb.FlowListRequest(), timeout=10).flows:
    k, f = r.flow.Key, r.flow
    app = lambda labels: next((l for l in labels if l.startswith("app=")), "-")
    h = k.policies.enforced_policies[-1]
    print(app(f.source_labels), app(f.dest_labels), k.dest_port,
          pb.Reporter.Name(k.reporter), pb.Action.Name(k.action),
          "%s/%s/%d" % (h.tier, h.name, h.rule_index))
"#;
    let out = cluster
        .host(n)
        .ns
        .cmd(testkit::goldmane::PYTHON)
        .args(["-c", script])
        .env("PYTHONPATH", client.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `/metrics` of host `n`'s felix (127.0.0.1:9091 in its namespace).
fn metrics(cluster: &Cluster, n: usize) -> String {
    use std::io::{Read, Write};
    cluster
        .host(n)
        .ns
        .run(|| {
            let mut s = std::net::TcpStream::connect("127.0.0.1:9091").ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            Some(out)
        })
        .unwrap()
        .unwrap_or_default()
}

/// The policies that decided a flow, as (kind, name, tier, rule index).
fn enforced(flow: &proto::Flow) -> Vec<(i32, String, String, i64)> {
    hits(flow, |t| &t.enforced_policies)
}

/// The policies that would decide it with the staged ones enforced.
fn pending(flow: &proto::Flow) -> Vec<(i32, String, String, i64)> {
    hits(flow, |t| &t.pending_policies)
}

fn hits(
    flow: &proto::Flow,
    which: impl Fn(&proto::PolicyTrace) -> &Vec<proto::PolicyHit>,
) -> Vec<(i32, String, String, i64)> {
    let trace = flow.key.as_ref().and_then(|k| k.policies.as_ref());
    trace
        .map(which)
        .into_iter()
        .flatten()
        .map(|h| (h.kind, h.name.clone(), h.tier.clone(), h.rule_index))
        .collect()
}

struct Workload {
    host: usize,
    container: Container,
    conf: Value,
    runtime: Value,
    result: Value,
    ip: IpAddr,
}

struct Cluster {
    dir: TempDir,
    db: PathBuf,
    cni_path: String,
    backend: &'static str,
    // Dropped in order: workloads' namespaces, then felix and hosts, then the ToR.
    hosts: Vec<Host>,
    bird: Option<Background>,
    tor: Netns,
}

impl Cluster {
    /// The ToR with its bridge, three hosts on it, the datastore with
    /// `resources` (YAML), BIRD when `backend` is `bird`, and felix on every host.
    fn start(backend: &'static str, resources: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("calico.db");
        let tor = Netns::new("ctor").unwrap();
        tor.ip(["link", "add", "br0", "type", "bridge"]).unwrap();
        tor.add_addr("br0", &format!("{TOR}/24")).unwrap();
        tor.link_up("br0").unwrap();
        tor.link_up("lo").unwrap();
        tor.exec("sysctl", ["-qw", "net.ipv4.ip_forward=1"])
            .unwrap();
        let mut hosts = Vec::new();
        for n in 1..=HOSTS {
            let ns = Netns::new(&format!("ch{n}")).unwrap();
            let port = format!("veth{n}");
            veth_pair(&ns, "eth0", &tor, &port).unwrap();
            tor.ip(["link", "set", &port, "master", "br0"]).unwrap();
            ns.add_addr("eth0", &format!("{}/24", host_ip(n))).unwrap();
            ns.link_up("lo").unwrap();
            ns.ip(["route", "add", "default", "via", TOR]).unwrap();
            hosts.push(Host { ns, felix: None });
        }
        let parsed = api::parse_documents("cluster.yaml", resources).expect("valid resources");
        let tokio = tokio::runtime::Runtime::new().unwrap();
        tokio.block_on(async {
            let kv = datastore::connect(&datastore::DatastoreConfig::Sqlite { path: db.clone() })
                .await
                .unwrap();
            datastore::ResourceStore::new(kv)
                .create_all(parsed)
                .await
                .unwrap();
        });
        let cni_dir = |bin: &str| {
            testkit::workspace_binary("cni", bin)
                .unwrap_or_else(|e| panic!("building the CNI plugin {bin}: {e}"))
        };
        let calico = cni_dir("calico");
        cni_dir("calico-ipam");
        let cni_path = format!("{}:{REFERENCE_PLUGINS}", calico.parent().unwrap().display());
        let mut cluster = Cluster {
            dir,
            db,
            cni_path,
            backend,
            hosts,
            bird: None,
            tor,
        };
        if backend == "bird" {
            cluster.start_bird();
        }
        for n in 1..=HOSTS {
            cluster.start_felix(n);
        }
        cluster
    }

    fn host(&self, n: usize) -> &Host {
        &self.hosts[n - 1]
    }

    fn bird_sock(&self) -> PathBuf {
        self.dir.path().join("bird.ctl")
    }

    fn start_bird(&mut self) {
        let mut conf = format!(
            "router id {TOR};\nprotocol device {{ scan time 1; }}\n\
             protocol kernel {{ ipv4 {{ export all; }}; }}\n\
             template bgp host {{\n  local {TOR} as 65000;\n  connect delay time 1;\n  \
             graceful restart on;\n  ipv4 {{ import all; export all; }};\n}}\n"
        );
        for n in 1..=HOSTS {
            conf += &format!(
                "protocol bgp h{n} from host {{ neighbor {} as {}; }}\n",
                host_ip(n),
                host_as(n)
            );
        }
        let path = self.dir.path().join("bird.conf");
        std::fs::write(&path, conf).unwrap();
        let log = std::fs::File::create(self.dir.path().join("bird.log")).unwrap();
        self.bird = Some(
            Background::spawn(
                self.tor
                    .cmd("bird")
                    .arg("-f")
                    .arg("-c")
                    .arg(&path)
                    .arg("-s")
                    .arg(self.bird_sock())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log),
            )
            .unwrap(),
        );
    }

    fn felix_log(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("felix-h{n}.log"))
    }

    fn start_felix(&mut self, n: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.felix_log(n))
            .unwrap();
        let socket = self.dir.path().join(format!("bgp-h{n}.sock"));
        let host = &mut self.hosts[n - 1];
        let mut cmd = host.ns.cmd(env!("CARGO_BIN_EXE_felix"));
        cmd.args(["run", "--node-name", &node(n), "--backend", self.backend])
            .args(["--ip", &format!("{}/24", host_ip(n))])
            .args(["--as", &host_as(n).to_string()])
            .arg("--bgp-socket")
            .arg(&socket)
            .args(["--flow-logs-flush-interval", "1"])
            .env("DATASTORE_TYPE", "sqlite")
            .env("DATASTORE_PATH", &self.db)
            .env(
                "FELIX_LOGSEVERITYSCREEN",
                std::env::var("CLUSTER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        host.felix = Some(Background::spawn(&mut cmd).unwrap());
    }

    fn stop_felix(&mut self, n: usize) {
        let felix = self.hosts[n - 1].felix.take().expect("felix runs");
        felix.stop(Duration::from_secs(10)).unwrap();
    }

    /// The last lines of every log and each host's routes, addresses and
    /// VXLAN entries, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, host) in self.hosts.iter().enumerate() {
            out += &format!("--- h{} kernel\n", i + 1);
            for args in [
                &["-o", "addr"][..],
                &["route"],
                &["neigh", "show", "dev", "vxlan.calico"],
            ] {
                out += &host.ns.ip(args).unwrap_or_else(|e| e.to_string());
            }
            if let Ok(o) = host
                .ns
                .exec("bridge", ["fdb", "show", "dev", "vxlan.calico"])
            {
                out += &String::from_utf8_lossy(&o.stdout);
            }
        }
        let mut files: Vec<PathBuf> = (1..=HOSTS).map(|n| self.felix_log(n)).collect();
        files.push(self.dir.path().join("bird.log"));
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out += &format!("--- {} (last 40 lines)\n", f.display());
            out += &lines[lines.len().saturating_sub(40)..].join("\n");
            out += "\n";
        }
        out
    }

    /// Calico's conflist for host `n`: loopback, calico, portmap.
    fn conflist(&self, n: usize, labels: &[(&str, &str)], pool: Option<&str>) -> Value {
        let mut ipam = json!({"type": "calico-ipam"});
        if let Some(pool) = pool {
            ipam["ipv4_pools"] = json!([pool]);
        }
        let labels: Vec<Value> = labels
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        json!({
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "plugins": [
                {"type": "loopback"},
                {
                    "type": "calico",
                    "datastore_type": "sqlite",
                    "datastore_path": self.db.display().to_string(),
                    "nodename": node(n),
                    "ipam": ipam,
                    "args": {"cni": {"labels": labels}}
                },
                {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}
            ]
        })
    }

    /// Pod `name` (namespace `default`, label `app: name`) on host `n`
    /// through the CNI chain, with `ports` (host, container) mapped.
    fn add(&self, n: usize, name: &str, pool: Option<&str>, ports: &[(u16, u16)]) -> Workload {
        let container = Container::new(&format!("{name}{:0>20}", n), Some(("default", name)));
        let conf = self.conflist(n, &[("app", name)], pool);
        let mappings: Vec<Value> = ports
            .iter()
            .map(|(h, c)| json!({"hostPort": h, "containerPort": c, "protocol": "tcp"}))
            .collect();
        let runtime = json!({"portMappings": mappings});
        let rt = Runtime::new(&self.host(n).ns, self.cni_path.as_str());
        let result = rt
            .add_chain(&conf, &container, &runtime)
            .unwrap_or_else(|e| panic!("CNI ADD of {name} on h{n}: {e:?}"));
        let ip = interface_address(&result, "eth0")
            .unwrap_or_else(|| panic!("no eth0 address in {result}"));
        container.ns().link_up("lo").unwrap();
        Workload {
            host: n,
            container,
            conf,
            runtime,
            result,
            ip,
        }
    }

    fn delete(&self, w: &Workload) {
        Runtime::new(&self.host(w.host).ns, self.cni_path.as_str())
            .chain("DEL", &w.conf, &w.container, &w.result, &w.runtime)
            .unwrap_or_else(|e| panic!("CNI DEL: {e:?}"));
    }

    /// BIRD's routes on the ToR: `prefix via next-hop` lines.
    fn tor_routes(&self) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(self.bird_sock())
            .args(["show", "route", "primary"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Host `n`'s main-table routes of `protocol` (bgpd: 200, felix: 80).
    fn routes(&self, n: usize, protocol: &str) -> String {
        self.host(n)
            .ns
            .ip(["route", "show", "proto", protocol])
            .unwrap_or_default()
    }
}

fn addr(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

fn ready() -> bool {
    require_root()
        && require_programs(&[
            "bird",
            "birdc",
            "iptables",
            "conntrack",
            &format!("{REFERENCE_PLUGINS}/portmap"),
        ])
}

const BGP_RESOURCES: &str = "
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: main}
spec: {cidr: 10.244.0.0/16, blockSize: 26}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: tiny}
spec: {cidr: 10.245.0.0/30, blockSize: 30, natOutgoing: true}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false, asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 10.0.0.1, asNumber: 65000}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: default}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'client'}
    destination: {ports: [8080]}
  egress:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: block-client, namespace: default}
spec:
  order: 1
  selector: app == 'web'
  types: [Ingress]
  ingress:
  - action: Deny
    source: {selector: app == 'client'}
";

#[test]
fn three_hosts_and_a_bird_tor_route_police_withdraw_and_survive_a_felix_restart() {
    if !ready() {
        return;
    }
    let mut cluster = Cluster::start("bird", BGP_RESOURCES);
    let client = cluster.add(1, "client", Some("10.244.0.0/16"), &[]);
    let anchor = cluster.add(1, "anchor", Some("10.245.0.0/30"), &[]);
    let web = cluster.add(2, "web", Some("10.244.0.0/16"), &[(8081, 8080)]);
    let borrower = cluster.add(2, "borrower", Some("10.245.0.0/30"), &[]);
    let other = cluster.add(3, "other", Some("10.244.0.0/16"), &[]);
    assert!(
        matches!(borrower.ip, IpAddr::V4(v) if v.octets()[..3] == [10, 245, 0]),
        "{}",
        borrower.ip
    );
    let _server = EchoServer::start(web.container.ns(), 8080, false).unwrap();

    // BGP: the ToR has every host's block and the borrowed /32.
    let borrowed = format!("{}/32", borrower.ip);
    wait(
        &cluster,
        "the ToR learns three /26 blocks and the borrowed /32",
        || {
            let routes = cluster.tor_routes();
            routes.matches("/26").count() == 3 && routes.contains(&borrowed)
        },
    );
    // Each host has the other hosts' blocks from bgpd.
    for n in 1..=HOSTS {
        wait(&cluster, &format!("h{n} learns the other blocks"), || {
            cluster.routes(n, "200").matches("/26").count() == 2
        });
    }

    // Routing and policy.
    let web_port = addr(web.ip, 8080);
    wait(&cluster, "client reaches web:8080 across hosts", || {
        tcp_connects(client.container.ns(), web_port)
    });
    wait(&cluster, "other pings client across hosts", || {
        pings(other.container.ns(), &client.ip.to_string())
    });
    assert!(pings(client.container.ns(), &anchor.ip.to_string()));
    assert!(
        !tcp_connects(other.container.ns(), web_port),
        "policy admits only app == 'client'"
    );
    assert!(
        !pings(client.container.ns(), &web.ip.to_string()),
        "policy admits only TCP 8080"
    );
    // Flow logs: web's host lists client's connection with the policy rule
    // that allowed it, other's with the tier's end that denied it.
    wait(
        &cluster,
        "h2's flow API lists both connections to web",
        || {
            let flows = flows(&cluster, 2);
            // The staged block-client would deny it; it still flows.
            let would_deny = flow_to_web(&flows, "client", proto::Action::Allow).is_some_and(|f| {
                pending(f).contains(&(
                    proto::PolicyKind::StagedNetworkPolicy as i32,
                    "block-client".into(),
                    "default".into(),
                    0,
                ))
            });
            let allowed = flow_to_web(&flows, "client", proto::Action::Allow)
                .map(enforced)
                .filter(|_| would_deny);
            let denied = flow_to_web(&flows, "other", proto::Action::Deny).map(enforced);
            allowed.is_some_and(|e| {
                e.contains(&(
                    proto::PolicyKind::CalicoNetworkPolicy as i32,
                    "web".into(),
                    "default".into(),
                    0,
                ))
            }) && denied.is_some_and(|e| {
                e.contains(&(
                    proto::PolicyKind::EndOfTier as i32,
                    String::new(),
                    "default".into(),
                    -1,
                ))
            })
        },
    );
    // A client that is not ours, generated from Goldmane's own .proto,
    // lists the same flows through h2's API.
    let listed = goldmane_list(&cluster, 2);
    for (from, action, decided) in [
        ("client", "Allow", "default/web/0"),
        ("other", "Deny", "default//-1"),
    ] {
        assert!(
            listed
                .lines()
                .any(|l| l == format!("app={from} app=web 8080 Dst {action} {decided}")),
            "no {from} flow in the Python client's list:\n{listed}"
        );
    }
    // And the rule that let client in counted its packets.
    let web_rule = "felix_policy_rule_packets_total{tier=\"default\",kind=\"NetworkPolicy\",namespace=\"default\",policy=\"web\",rule=\"0\",direction=\"ingress\"} ";
    wait(
        &cluster,
        "h2's /metrics counts the packets of policy web's rule 0",
        || {
            metrics(&cluster, 2)
                .lines()
                .filter_map(|l| l.strip_prefix(web_rule))
                .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
        },
    );
    wait(
        &cluster,
        "anchor reaches the borrowed address on h2",
        || pings(anchor.container.ns(), &borrower.ip.to_string()),
    );
    // h2's host port 8081 (portmap's DNAT) meets the same policy.
    let host_port = addr(host_ip(2).parse().unwrap(), 8081);
    wait(
        &cluster,
        "client reaches web through h2's host port",
        || tcp_connects(client.container.ns(), host_port),
    );
    assert!(
        !tcp_connects(other.container.ns(), host_port),
        "the host port is policed too"
    );

    // natOutgoing (pool tiny): to an address outside every pool (the ToR),
    // anchor's traffic leaves with h1's address; client's (pool main, no
    // natOutgoing) keeps its own, as does traffic between pools (anchor
    // reached the borrowed address above).
    let _tor_server = EchoServer::start(&cluster.tor, 9100, false).unwrap();
    let mut out = connect(
        anchor.container.ns(),
        addr(TOR.parse().unwrap(), 9100),
        Duration::from_secs(2),
    )
    .unwrap_or_else(|e| panic!("anchor reaches the ToR: {e}\n{}", cluster.logs()));
    assert_eq!(echo(&mut out, b"out").unwrap(), b"out");
    let mut kept = connect(
        client.container.ns(),
        addr(TOR.parse().unwrap(), 9100),
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(echo(&mut kept, b"kept").unwrap(), b"kept");
    let seen = cluster
        .tor
        .exec("ss", ["-Htn", "state", "established", "( sport = :9100 )"])
        .unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout);
    assert!(
        seen.contains(&format!("{}:", host_ip(1))) && !seen.contains(&anchor.ip.to_string()),
        "the ToR sees h1's address for anchor: {seen}"
    );
    assert!(
        seen.contains(&format!("{}:", client.ip)),
        "the ToR sees client's own address: {seen}"
    );

    // `calicoctl node status` on h1: the ToR, a global peer, up.
    let calicoctl = testkit::workspace_binary("calicoctl", "calicoctl").unwrap();
    let status = Command::new(calicoctl)
        .args(["node", "status", "--socket"])
        .arg(cluster.dir.path().join("bgp-h1.sock"))
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    let row = status
        .lines()
        .find(|l| l.contains(TOR))
        .unwrap_or_else(|| panic!("no ToR row in:\n{status}"));
    for field in ["global", "up", "Established"] {
        assert!(row.contains(field), "{field} missing: {row}");
    }

    // Deleting borrower withdraws its /32 everywhere.
    cluster.delete(&borrower);
    wait(&cluster, "the ToR forgets the borrowed /32", || {
        !cluster.tor_routes().contains(&borrowed)
    });
    for n in [1, 3] {
        wait(&cluster, &format!("h{n} forgets the borrowed /32"), || {
            !cluster.routes(n, "200").contains(&borrower.ip.to_string())
        });
    }
    assert!(!cluster.routes(2, "80").contains(&borrower.ip.to_string()));

    // Restarting felix on h1 keeps a flow, BIRD's routes and h1's routes.
    let mut flow = connect(client.container.ns(), web_port, Duration::from_secs(2)).unwrap();
    assert_eq!(echo(&mut flow, b"before").unwrap(), b"before");
    let h1_routes = (cluster.routes(1, "80"), cluster.routes(1, "200"));
    let h1_block = cluster
        .routes(1, "80")
        .lines()
        .find(|l| l.starts_with("blackhole 10.244."))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("h1's blackhole block route")
        .to_string();
    cluster.stop_felix(1);
    assert_eq!(echo(&mut flow, b"felix is down").unwrap(), b"felix is down");
    stays(
        &cluster,
        "BIRD keeps h1's block while felix restarts",
        || cluster.tor_routes().contains(&h1_block),
    );
    cluster.start_felix(1);
    wait(&cluster, "h1's session with the ToR is back", || {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(cluster.bird_sock())
            .args(["show", "protocols", "h1"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("Established")
    });
    for i in 0..10 {
        let msg = format!("after restart {i}");
        assert_eq!(
            echo(&mut flow, msg.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs())),
            msg.as_bytes()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(cluster.tor_routes().contains(&h1_block));
    assert_eq!(
        (cluster.routes(1, "80"), cluster.routes(1, "200")),
        h1_routes,
        "h1's routes after the restart"
    );
    assert!(
        !tcp_connects(other.container.ns(), web_port),
        "policy still holds"
    );
    drop((client, anchor, web, other));
}

const VXLAN_RESOURCES: &str = "
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: main}
spec: {cidr: 10.246.0.0/16, blockSize: 26, vxlanMode: Always}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: default}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'client'}
    destination: {ports: [8080]}
";

#[test]
fn three_hosts_over_vxlan_with_bgp_off_route_and_police() {
    if !ready() {
        return;
    }
    let cluster = Cluster::start("vxlan", VXLAN_RESOURCES);
    let client = cluster.add(1, "client", None, &[]);
    let web = cluster.add(2, "web", None, &[]);
    let other = cluster.add(3, "other", None, &[]);
    let _server = EchoServer::start(web.container.ns(), 8080, false).unwrap();
    let web_port = addr(web.ip, 8080);
    wait(&cluster, "client reaches web:8080 over VXLAN", || {
        tcp_connects(client.container.ns(), web_port)
    });
    wait(&cluster, "other pings client over VXLAN", || {
        pings(other.container.ns(), &client.ip.to_string())
    });
    assert!(
        !tcp_connects(other.container.ns(), web_port),
        "policy admits only app == 'client'"
    );
    for n in 1..=HOSTS {
        let link = cluster
            .host(n)
            .ns
            .ip(["-d", "link", "show", "vxlan.calico"])
            .unwrap();
        assert!(link.contains("vxlan id 4096"), "h{n}: {link}");
        assert!(
            cluster.routes(n, "200").is_empty(),
            "no BGP routes with BGP off"
        );
    }
    assert!(Path::new(&cluster.db).exists());
    drop((client, web, other));
}
