//! A routed lab for enforcement tests and benchmarks: workload namespaces
//! joined by `cali<x>` veths to one host namespace that routes between them
//! (v4 `10.201.<i>.1`, v6 `fd00:201:<i>::1`), python3 servers in every
//! workload, and probes (TCP connect, UDP echo, ICMP echo, both families) run
//! concurrently, so one reachability matrix costs about one probe timeout.
//!
//! Standalone (no other test helper), so the benchmarks include it by path.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use policy::{Netlink, Nft};
use testkit::{Background, Netns, poll_until, veth_pair};

/// How long a probe waits for an answer, in seconds.
pub const PROBE_TIMEOUT: &str = "1";

/// A TCP listener on every given port and a UDP echo server on every given
/// port, dual-stack (`::` with `IPV6_V6ONLY` off). Args: `t80 u5300 ...`.
const SERVER: &str = r#"
import socket, sys, threading
def tcp(p):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", p)); s.listen(256)
    while True:
        c, _ = s.accept(); c.close()
def udp(p):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", p))
    while True:
        d, a = s.recvfrom(2048); s.sendto(d, a)
for arg in sys.argv[1:]:
    threading.Thread(target=tcp if arg[0] == "t" else udp, args=(int(arg[1:]),)).start()
"#;

/// Runs every probe `t,<addr>,<port>` / `u,<addr>,<port>` at once; prints one
/// `1` (answered) or `0` per probe, in order.
const PROBER: &str = r#"
import socket, sys, concurrent.futures as f
T = float(sys.argv[1])
def probe(spec):
    kind, addr, port = spec.split(",")
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    try:
        if kind == "t":
            s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(T)
            s.connect((addr, int(port))); s.close(); return "1"
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(T)
        s.sendto(b"probe", (addr, int(port)))
        d, _ = s.recvfrom(64); return "1" if d == b"probe" else "0"
    except OSError:
        return "0"
specs = sys.argv[2:]
with f.ThreadPoolExecutor(max(len(specs), 1)) as ex:
    print("".join(ex.map(probe, specs)))
"#;

/// One workload: its namespace, host-side interface and addresses.
pub struct Workload {
    pub name: String,
    pub ns: Netns,
    pub iface: String,
    pub v4: String,
    pub v6: String,
}

impl Workload {
    pub fn addr(&self, family: Family) -> &str {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

pub const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

/// What a probe tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Tcp(u16),
    Udp(u16),
    Icmp,
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Service::Tcp(p) => write!(f, "tcp/{p}"),
            Service::Udp(p) => write!(f, "udp/{p}"),
            Service::Icmp => f.write_str("icmp"),
        }
    }
}

/// One cell of a reachability matrix: workload indices, service, family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub from: usize,
    pub to: usize,
    pub service: Service,
    pub family: Family,
}

/// The host namespace and its workloads.
pub struct Lab {
    pub host: Netns,
    pub workloads: Vec<Workload>,
    servers: Vec<Background>,
}

impl Lab {
    /// Workload `i` (from 1) is named `names[i-1]`, behind host interface
    /// `cali<name>`, at `10.201.<i>.1` and `fd00:201:<i>::1`; the host holds
    /// `.254` and `::fe` of each /24 and /64 and forwards both families.
    pub fn new(names: &[&str]) -> Lab {
        let host = Netns::new("polh").unwrap();
        for sysctl in [
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.default.accept_dad=0",
        ] {
            host.exec("sysctl", ["-qw", sysctl]).unwrap();
        }
        let workloads = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let i = i + 1;
                let ns = Netns::new("polw").unwrap();
                let iface = format!("cali{name}");
                veth_pair(&host, &iface, &ns, "eth0").unwrap();
                let (v4, v6) = (format!("10.201.{i}.1"), format!("fd00:201:{i}::1"));
                for (n, cidr, dev) in [
                    (&host, format!("10.201.{i}.254/24"), iface.as_str()),
                    (&host, format!("fd00:201:{i}::fe/64"), &iface),
                    (&ns, format!("{v4}/24"), "eth0"),
                    (&ns, format!("{v6}/64"), "eth0"),
                ] {
                    let mut args = vec!["addr", "add", &cidr, "dev", dev];
                    if cidr.contains(':') {
                        args.push("nodad");
                    }
                    n.ip(args).unwrap();
                }
                ns.ip(["link", "set", "lo", "up"]).unwrap();
                ns.ip(["route", "add", "default", "via", &format!("10.201.{i}.254")])
                    .unwrap();
                ns.ip([
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("fd00:201:{i}::fe"),
                ])
                .unwrap();
                Workload {
                    name: name.to_string(),
                    ns,
                    iface,
                    v4,
                    v6,
                }
            })
            .collect();
        Lab {
            host,
            workloads,
            servers: Vec::new(),
        }
    }

    /// Starts the python3 servers (TCP `tcp` ports, UDP echo `udp` ports) in
    /// every workload and waits until each answers locally.
    pub fn serve(&mut self, tcp: &[u16], udp: &[u16]) {
        let args: Vec<String> = tcp
            .iter()
            .map(|p| format!("t{p}"))
            .chain(udp.iter().map(|p| format!("u{p}")))
            .collect();
        for w in &self.workloads {
            let server = Background::spawn(
                w.ns.cmd("python3")
                    .arg("-c")
                    .arg(SERVER)
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .unwrap();
            self.servers.push(server);
            let local: Vec<String> = tcp
                .iter()
                .map(|p| format!("t,127.0.0.1,{p}"))
                .chain(udp.iter().map(|p| format!("u,::1,{p}")))
                .collect();
            let want = "1".repeat(local.len());
            assert!(
                poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
                    prober(&w.ns, &local)
                        .wait_with_output()
                        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == want)
                }),
                "servers in {} did not start",
                w.name
            );
        }
    }

    /// The default driver ([`Netlink`]) programming the host namespace's
    /// `inet calico` table.
    pub fn driver(&self) -> Netlink {
        Netlink::in_netns(self.host.path()).expect("a netlink socket in the host namespace")
    }

    /// Runs all probes concurrently; whether each was answered, in order.
    pub fn probe(&self, probes: &[Probe]) -> Vec<bool> {
        let mut results = vec![false; probes.len()];
        // One prober per source for TCP and UDP, one ping per ICMP probe.
        let mut probers: Vec<(Vec<usize>, Child)> = Vec::new();
        for (from, w) in self.workloads.iter().enumerate() {
            let mine: Vec<usize> = (0..probes.len())
                .filter(|&i| probes[i].from == from && probes[i].service != Service::Icmp)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let specs: Vec<String> = mine
                .iter()
                .map(|&i| {
                    let p = probes[i];
                    let addr = self.workloads[p.to].addr(p.family);
                    match p.service {
                        Service::Tcp(port) => format!("t,{addr},{port}"),
                        Service::Udp(port) => format!("u,{addr},{port}"),
                        Service::Icmp => unreachable!(),
                    }
                })
                .collect();
            probers.push((mine, prober(&w.ns, &specs)));
        }
        let pings: Vec<(usize, Child)> = (0..probes.len())
            .filter(|&i| probes[i].service == Service::Icmp)
            .map(|i| {
                let p = probes[i];
                let family = if p.family == Family::V6 { "-6" } else { "-4" };
                let child = self.workloads[p.from]
                    .ns
                    .cmd("ping")
                    .args([family, "-c1", "-W", PROBE_TIMEOUT, "-n", "-q"])
                    .arg(self.workloads[p.to].addr(p.family))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                (i, child)
            })
            .collect();
        for (indices, child) in probers {
            let out = child.wait_with_output().unwrap();
            let line = String::from_utf8_lossy(&out.stdout);
            let line = line.trim();
            assert_eq!(line.len(), indices.len(), "prober output {line:?}");
            for (i, c) in indices.into_iter().zip(line.chars()) {
                results[i] = c == '1';
            }
        }
        for (i, mut child) in pings {
            results[i] = child.wait().unwrap().success();
        }
        results
    }

    /// Every ordered pair of distinct workloads × `services` × both families.
    pub fn matrix(&self, services: &[Service]) -> Vec<Probe> {
        matrix(self.workloads.len(), services)
    }

    /// The matrix as a table: one row per pair, one column per service and
    /// family; `ok`/`--` as measured, `!` where it differs from `want`.
    pub fn format(&self, probes: &[Probe], got: &[bool], want: &[bool]) -> String {
        let mut columns: Vec<(Service, Family)> = Vec::new();
        let mut rows: Vec<(usize, usize)> = Vec::new();
        for p in probes {
            if !columns.contains(&(p.service, p.family)) {
                columns.push((p.service, p.family));
            }
            if !rows.contains(&(p.from, p.to)) {
                rows.push((p.from, p.to));
            }
        }
        let mut out = String::from("expected/actual    ");
        for (s, f) in &columns {
            let _ = write!(
                out,
                "{:>11}",
                format!("{s}{}", if *f == Family::V6 { "/6" } else { "/4" })
            );
        }
        out.push('\n');
        for (from, to) in rows {
            let _ = write!(
                out,
                "{:<19}",
                format!(
                    "{} -> {}",
                    self.workloads[from].name, self.workloads[to].name
                )
            );
            for (s, f) in &columns {
                let i = probes
                    .iter()
                    .position(|p| (p.from, p.to, p.service, p.family) == (from, to, *s, *f))
                    .unwrap();
                let cell = |b: bool| if b { "ok" } else { "--" };
                let mark = if got[i] == want[i] { " " } else { "!" };
                let _ = write!(
                    out,
                    "{:>11}",
                    format!("{mark}{}/{}", cell(want[i]), cell(got[i]))
                );
            }
            out.push('\n');
        }
        out
    }
}

/// Every ordered pair of distinct workloads of `n` × `services` × both families.
pub fn matrix(n: usize, services: &[Service]) -> Vec<Probe> {
    let mut probes = Vec::new();
    for from in 0..n {
        for to in (0..n).filter(|&to| to != from) {
            for &service in services {
                for family in FAMILIES {
                    probes.push(Probe {
                        from,
                        to,
                        service,
                        family,
                    });
                }
            }
        }
    }
    probes
}

/// An [`Nft`] driver for `ns`.
pub fn nft_in(ns: &Netns) -> Nft {
    let name = ns.name().to_string();
    Nft::with_command(move || {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &name, "nft"]);
        cmd
    })
}

fn prober(ns: &Netns, specs: &[String]) -> Child {
    ns.cmd("python3")
        .arg("-c")
        .arg(PROBER)
        .arg(PROBE_TIMEOUT)
        .args(specs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}
