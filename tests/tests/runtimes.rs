//! Real container runtimes on the `calico` network (root): podman 4.3 with
//! its CNI backend, and containerd 1.6's `ctr run --cni`, both with runc as
//! Debian packages them, call our plugins as they call any CNI plugin, from
//! a host namespace running felix on the embedded store. Nothing is adapted
//! for the test: podman sends its own `CNI_ARGS` (`K8S_POD_NAME` without a
//! namespace) and 64-character container IDs, `ctr` none at all.
//!
//! ```text
//!                 lan (bridge br0)
//!          ┌──────────┴──────────┐
//!    h1 10.0.0.1/24        h2 10.0.0.2/24     AS 64512, the node-to-node mesh
//!    felix, podman         felix, podman      one SQLite store
//!    (containerd)          (containerd)       started where a test uses it
//! ```
//!
//! - Two containers on one host reach each other; a NetworkPolicy admits
//!   TCP 8080 and denies 9090 and ping.
//! - `-p 18080:8080` reaches the container from the other host through
//!   `portmap`, and our rules police what arrives that way.
//! - `podman stop` frees the container's address, endpoint, veth and route.
//! - A container on h2 reaches one on h1 over the BGP mesh.
//! - containerd: two `ctr` containers reach each other, the policy denies
//!   the rest, deleting the task frees the address and endpoint; a podman
//!   container on h2 reaches a containerd one on h1. (`ctr` has no port
//!   mappings, so `portmap` is tested through podman only.)

use std::cell::OnceCell;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use testkit::cni::REFERENCE_PLUGINS;
use testkit::traffic::tcp_connects;
use testkit::{
    Background, Containerd, Containers, Netns, Podman, poll_until, require_programs, require_root,
    veth_pair,
};

const POOL: &str = "10.88.0.0/16";

/// The pool; the mesh and AS 64512 are the defaults.
const RESOURCES: &str = "
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: default-ipv4-ippool}
spec: {cidr: 10.88.0.0/16, blockSize: 26}
";

/// Each container serves HTTP on 8080 and 9090 (busybox httpd).
const SERVE: &[&str] = &[
    "sh",
    "-c",
    "httpd -p 8080 -h /www && exec httpd -f -p 9090 -h /www",
];

/// Admits TCP 8080 to every endpoint of namespace `default`, nothing else.
const HTTP_ONLY: &str = "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: http-only, namespace: default}
spec:
  selector: all()
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
";

fn host_ip(n: usize) -> String {
    format!("10.0.0.{n}")
}

fn ready() -> bool {
    require_root()
        && require_programs(&[
            "podman",
            "runc",
            "containerd",
            "ctr",
            "busybox",
            "nsenter",
            "iptables",
            &format!("{REFERENCE_PLUGINS}/portmap"),
        ])
}

/// The workspace's binaries the hosts run.
struct Bins {
    felix: PathBuf,
    calicoctl: PathBuf,
    /// Holds `calico` and `calico-ipam`.
    cni: PathBuf,
}

impl Bins {
    fn build() -> Bins {
        let bin = |package: &str, bin: &str| {
            testkit::workspace_binary(package, bin)
                .unwrap_or_else(|e| panic!("building {bin}: {e}"))
        };
        bin("cni", "calico-ipam");
        let calico = bin("cni", "calico");
        Bins {
            felix: bin("felix", "felix"),
            calicoctl: bin("calicoctl", "calicoctl"),
            cni: calico.parent().expect("a binary has a directory").into(),
        }
    }
}

struct Host {
    /// Dropped first: their containers go while felix still runs.
    containerd: OnceCell<Containerd>,
    podman: Podman,
    _felix: Background,
    ns: Netns,
}

struct Cluster {
    hosts: Vec<Host>,
    _lan: Netns,
    bins: Bins,
    db: PathBuf,
    dir: TempDir,
}

impl Cluster {
    /// `n` hosts on one LAN, each running felix and podman, the store
    /// holding [`RESOURCES`].
    fn start(n: usize) -> Cluster {
        let bins = Bins::build();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("calico.db");
        let lan = Netns::new("pmlan").unwrap();
        lan.ip(["link", "add", "br0", "type", "bridge"]).unwrap();
        lan.link_up("br0").unwrap();
        let mut cluster = Cluster {
            hosts: Vec::new(),
            _lan: lan,
            bins,
            db,
            dir,
        };
        cluster.calicoctl_apply(RESOURCES);
        for i in 1..=n {
            let host = cluster.start_host(i);
            cluster.hosts.push(host);
        }
        cluster
    }

    fn start_host(&self, i: usize) -> Host {
        let ns = Netns::new(&format!("pmh{i}")).unwrap();
        let port = format!("port{i}");
        veth_pair(&ns, "eth0", &self._lan, &port).unwrap();
        self._lan
            .ip(["link", "set", &port, "master", "br0"])
            .unwrap();
        ns.add_addr("eth0", &format!("{}/24", host_ip(i))).unwrap();
        ns.link_up("lo").unwrap();
        let name = format!("h{i}");
        let log = std::fs::File::create(self.dir.path().join(format!("felix-{name}.log"))).unwrap();
        let felix = Background::spawn(
            ns.cmd(&self.bins.felix)
                .args(["run", "--node-name", &name, "--backend", "bird"])
                .args(["--ip", &format!("{}/24", host_ip(i))])
                .arg("--bgp-socket")
                .arg(self.dir.path().join(format!("bgp-{name}.sock")))
                .arg("--nodename-file")
                .arg(self.nodename_file(&name))
                .env("DATASTORE_TYPE", "sqlite")
                .env("DATASTORE_PATH", &self.db)
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        )
        .unwrap();
        let podman = Podman::new(
            &ns,
            &self.dir.path().join(format!("podman-{name}")),
            &[self.bins.cni.clone(), REFERENCE_PLUGINS.into()],
        )
        .unwrap();
        podman
            .add_network("10-calico", &self.conflist(&name))
            .unwrap();
        let written = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
            std::fs::read_to_string(self.nodename_file(&name)).is_ok_and(|n| n == name)
        });
        assert!(written, "felix on {name} did not write its node name");
        Host {
            containerd: OnceCell::new(),
            podman,
            _felix: felix,
            ns,
        }
    }

    /// Where felix on `node` writes its node name, for the plugin to read.
    fn nodename_file(&self, node: &str) -> PathBuf {
        self.dir.path().join(node).join("nodename")
    }

    /// The package's conflist (`loopback`, `calico` with `calico-ipam`, then
    /// `portmap`; the runtime's libcni hands loopback's result on), on
    /// the embedded store, for node `node` (whose name the plugin reads from
    /// the file felix writes, as Calico's conflist has it).
    fn conflist(&self, node: &str) -> Value {
        json!({
            "cniVersion": "0.3.1",
            "name": "calico",
            "plugins": [
                {"type": "loopback"},
                {
                    "type": "calico",
                    "log_level": "info",
                    "datastore_type": "sqlite",
                    "datastore_path": self.db.display().to_string(),
                    "nodename_file": self.nodename_file(node).display().to_string(),
                    "mtu": 1500,
                    "ipam": {"type": "calico-ipam", "ipv4_pools": [POOL]}
                },
                {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}
            ]
        })
    }

    fn host(&self, i: usize) -> &Host {
        &self.hosts[i - 1]
    }

    /// containerd on host `i`, started on first use with the same network.
    fn containerd(&self, i: usize) -> &Containerd {
        self.host(i).containerd.get_or_init(|| {
            let name = format!("h{i}");
            let ctd = Containerd::start(
                &self.host(i).ns,
                &self.dir.path().join(format!("containerd-{name}")),
                &[self.bins.cni.clone(), REFERENCE_PLUGINS.into()],
            )
            .unwrap_or_else(|e| panic!("starting containerd on {name}: {e}"));
            ctd.add_network("10-calico", &self.conflist(&name)).unwrap();
            ctd
        })
    }

    fn calicoctl(&self) -> Command {
        let mut cmd = Command::new(&self.bins.calicoctl);
        cmd.env("DATASTORE_TYPE", "sqlite")
            .env("DATASTORE_PATH", &self.db);
        cmd
    }

    fn calicoctl_apply(&self, yaml: &str) {
        let path = self.dir.path().join("apply.yaml");
        std::fs::write(&path, yaml).unwrap();
        testkit::run_checked(self.calicoctl().arg("apply").arg("-f").arg(&path))
            .unwrap_or_else(|e| panic!("calicoctl apply: {e}"));
    }

    /// `calicoctl get workloadendpoints -A -o json`, the endpoints' names.
    fn endpoints(&self) -> Vec<String> {
        let out = testkit::run_checked(self.calicoctl().args([
            "get",
            "workloadendpoints",
            "--all-namespaces",
            "-o",
            "json",
        ]))
        .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let items = v.get("items").cloned().unwrap_or(v);
        items
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// `calicoctl ipam show --ip ADDR`: who owns the address.
    fn owner(&self, addr: IpAddr) -> String {
        let out = testkit::run_checked(self.calicoctl().args([
            "ipam",
            "show",
            "--ip",
            &addr.to_string(),
        ]))
        .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Container `name` on host `i`, serving HTTP on 8080 and 9090, with
    /// `options` (`-p …`); returns its address once podman reports one.
    fn run(&self, i: usize, name: &str, options: &[&str]) -> IpAddr {
        let podman = &self.host(i).podman;
        let mut opts = vec!["--network", "calico"];
        opts.extend_from_slice(options);
        podman
            .run(name, &opts, SERVE)
            .unwrap_or_else(|e| panic!("podman run {name} on h{i}: {e}\n{}", self.logs()));
        podman.address(name).unwrap()
    }

    /// Polls `check` for up to 60 s; panics naming `what` with the logs.
    fn wait(&self, what: &str, check: impl FnMut() -> bool) {
        if !poll_until(Duration::from_secs(60), Duration::from_millis(200), check) {
            panic!("{what}: not within 60 s\n{}", self.logs());
        }
    }

    /// Each host's routes and the last lines of each felix log.
    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, host) in self.hosts.iter().enumerate() {
            let name = format!("h{}", i + 1);
            out += &format!("--- {name} routes\n");
            out += &host.ns.ip(["route"]).unwrap_or_else(|e| e.to_string());
            let log = std::fs::read_to_string(self.dir.path().join(format!("felix-{name}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            out += &format!("--- felix on {name} (last 30 lines)\n");
            out += &lines[lines.len().saturating_sub(30)..].join("\n");
            out += "\n";
        }
        out
    }
}

#[test]
fn containers_reach_each_other_and_a_network_policy_denies_the_rest() {
    if !ready() {
        return;
    }
    let cluster = Cluster::start(1);
    let podman = &cluster.host(1).podman;
    let web = cluster.run(1, "web", &[]);
    let client = cluster.run(1, "client", &[]);
    assert!(
        matches!(web, IpAddr::V4(a) if a.octets()[..2] == [10, 88]),
        "{web}"
    );
    cluster.wait("client to fetch from web on 8080", || {
        podman.fetches("client", web, 8080)
    });
    assert!(podman.fetches("client", web, 9090));
    assert!(podman.pings("client", web));
    assert!(podman.fetches("web", client, 8080), "and the other way");

    cluster.calicoctl_apply(HTTP_ONLY);
    cluster.wait("the policy to deny 9090", || {
        !podman.fetches("client", web, 9090)
    });
    assert!(podman.fetches("client", web, 8080), "8080 stays admitted");
    assert!(!podman.pings("client", web), "ping is denied");
}

#[test]
fn a_host_port_reaches_the_container_through_portmap_and_our_rules() {
    if !ready() {
        return;
    }
    let cluster = Cluster::start(2);
    cluster.run(1, "web", &["-p", "18080:8080"]);
    let host_port: SocketAddr = format!("{}:18080", host_ip(1)).parse().unwrap();
    let other_host = &cluster.host(2).ns;
    cluster.wait("h2 to reach web through h1's port 18080", || {
        tcp_connects(other_host, host_port)
    });

    // Our rules see what portmap forwards: workloads may connect, hosts not.
    cluster.calicoctl_apply(&format!(
        "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: from-workloads, namespace: default}}
spec:
  selector: all()
  types: [Ingress]
  ingress:
  - {{action: Allow, source: {{nets: [{POOL}]}}}}
"
    ));
    cluster.wait("the policy to refuse h2 at the host port", || {
        !tcp_connects(other_host, host_port)
    });
    let client = cluster.run(2, "client", &[]);
    let web = cluster.host(1).podman.address("web").unwrap();
    cluster.wait("a workload on h2 to still reach web", || {
        cluster.host(2).podman.fetches("client", web, 8080)
    });
    assert!(matches!(client, IpAddr::V4(_)));
}

#[test]
fn stopping_a_container_frees_its_address_and_its_endpoint() {
    if !ready() {
        return;
    }
    let cluster = Cluster::start(1);
    let host = cluster.host(1);
    let addr = cluster.run(1, "web", &[]);
    let id = host
        .podman
        .podman(["inspect", "--format", "{{.Id}}", "web"])
        .unwrap();
    assert_eq!(id.len(), 64, "podman's container IDs are 64 hex characters");
    let endpoint = format!("h1-cni-{id}-eth0");
    assert_eq!(cluster.endpoints(), [endpoint]);
    assert!(cluster.owner(addr).contains(&id), "{}", cluster.owner(addr));
    let route = || host.ns.ip(["route", "show", &addr.to_string()]).unwrap();
    cluster.wait("felix to route to the container", || {
        route().contains("cali")
    });
    let veth = format!("cali{}", &id[..11]);
    assert!(route().contains(&veth), "{}", route());

    host.podman.podman(["stop", "--time", "1", "web"]).unwrap();
    assert_eq!(cluster.endpoints(), Vec::<String>::new());
    assert!(
        !cluster.owner(addr).contains(&id),
        "{}",
        cluster.owner(addr)
    );
    assert!(
        host.ns.ip(["link", "show", &veth]).is_err(),
        "the veth is gone"
    );
    cluster.wait("felix to remove the route", || route().is_empty());
    host.podman.podman(["rm", "web"]).unwrap();

    // The host goes on: the next container gets an address and is the one
    // endpoint.
    let again = cluster.run(1, "again", &[]);
    assert_eq!(cluster.endpoints().len(), 1);
    assert!(matches!(again, IpAddr::V4(_)));
}

#[test]
fn a_container_on_another_host_is_reached_over_the_bgp_mesh() {
    if !ready() {
        return;
    }
    let cluster = Cluster::start(2);
    let web = cluster.run(1, "web", &[]);
    cluster.run(2, "client", &[]);
    cluster.wait("client on h2 to fetch from web on h1", || {
        cluster.host(2).podman.fetches("client", web, 8080)
    });
    assert!(cluster.host(2).podman.pings("client", web));
    // h1's block, learned over BGP (the speaker's routes are protocol 200).
    let routes = cluster
        .host(2)
        .ns
        .ip(["route", "show", "proto", "200"])
        .unwrap();
    assert!(
        routes.contains(&format!("via {} dev eth0", host_ip(1))),
        "{routes}"
    );
}

#[test]
fn ctr_containers_reach_each_other_under_policy_and_deleting_a_task_frees_it() {
    if !ready() {
        return;
    }
    let cluster = Cluster::start(1);
    let ctd = cluster.containerd(1);
    ctd.run("web", SERVE).unwrap();
    ctd.run("client", SERVE).unwrap();
    let web = ctd.address("web").unwrap();
    let client = ctd.address("client").unwrap();
    assert_eq!(
        cluster.endpoints(),
        ["h1-cni-testkit--client-eth0", "h1-cni-testkit--web-eth0"],
        "ctr's container IDs are <namespace>-<name>"
    );
    cluster.wait("client to fetch from web on 8080", || {
        ctd.fetches("client", web, 8080)
    });
    assert!(ctd.fetches("web", client, 9090));
    cluster.calicoctl_apply(HTTP_ONLY);
    cluster.wait("the policy to deny 9090", || {
        !ctd.fetches("client", web, 9090)
    });
    assert!(ctd.fetches("client", web, 8080), "8080 stays admitted");

    ctd.remove("web").unwrap();
    assert_eq!(cluster.endpoints(), ["h1-cni-testkit--client-eth0"]);
    assert!(
        !cluster.owner(web).contains("testkit-web"),
        "{}",
        cluster.owner(web)
    );
    cluster.wait("felix to remove web's route", || {
        cluster
            .host(1)
            .ns
            .ip(["route", "show", &web.to_string()])
            .unwrap()
            .is_empty()
    });
}

#[test]
fn a_podman_container_reaches_a_containerd_container_on_another_host() {
    if !ready() {
        return;
    }
    let cluster = Cluster::start(2);
    let ctd = cluster.containerd(1);
    ctd.run("web", SERVE).unwrap();
    let web = ctd.address("web").unwrap();
    cluster.run(2, "client", &[]);
    cluster.wait(
        "podman's client on h2 to fetch from ctr's web on h1",
        || cluster.host(2).podman.fetches("client", web, 8080),
    );
}
