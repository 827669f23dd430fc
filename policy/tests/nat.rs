//! natOutgoing: what the nat chain does to a connection's first packet in
//! the simulator, and in the kernel (root, `nft`, `ip`, `python3`): a
//! workload behind a "host" namespace connects to an "outside" namespace,
//! whose server tells the source address it saw: the host's address (or the
//! `natOutgoingAddress`) with natOutgoing, the workload's own to another
//! pool's address, to a host's with `natOutgoingExclusions:
//! IPPoolsAndHostIPs`, and without natOutgoing, in both families.

mod common;

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use common::lab::Lab;
use common::{compile_yaml_with, ready};
use ipnet::IpNet;
use policy::ir::{CtState, Hook, Statement};
use policy::simulate::{Outcome, Packet, simulate};
use policy::{Config, NatOutgoing, Netlink, Ruleset, converge};
use testkit::{Background, Netns, poll_until, veth_pair};

const TCP: u8 = 6;

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().expect("a CIDR")).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

/// Workload `w` (`caliw`, 10.201.1.1 and fd00:201:1::1, the lab's first
/// workload), allowed everything by its profile.
const WORKLOAD: &str = "
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: open}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: w, namespace: shop}
spec:
  node: host
  interfaceName: caliw
  ipNetworks: [10.201.1.1/32, 'fd00:201:1::1/128']
  profiles: [open]
";

/// The workload's pools masquerade; 10.202.0.0/16 and fd00:202::/32 are
/// another host's pools, without natOutgoing.
fn config(nat: bool, address: Option<&str>) -> Config {
    let mut config = Config::default();
    if nat {
        config.nat_outgoing = NatOutgoing {
            masquerade: nets(&["10.201.0.0/16", "fd00:201::/32"]),
            pools: nets(&[
                "10.201.0.0/16",
                "fd00:201::/32",
                "10.202.0.0/16",
                "fd00:202::/32",
            ]),
            hosts: Vec::new(),
        };
    }
    config.nat_outgoing_address = address.map(ip);
    config
}

fn ruleset(nat: bool, address: Option<&str>) -> Ruleset {
    compile_yaml_with(WORKLOAD, config(nat, address))
}

/// The source NAT the ruleset gives a packet leaving the host.
fn source_nat(rs: &Ruleset, src: &str, dst: &str, ct: CtState) -> Option<Statement> {
    let mut p = Packet::new(Hook::Postrouting, ip(src), ip(dst), TCP, 80).to_iface("eth0");
    p.ct = ct;
    let trace = simulate(rs, &p).expect("the ruleset is whole");
    assert_eq!(trace.outcome, Outcome::Accept, "NAT never drops");
    trace.source_nat
}

#[test]
fn a_new_connection_from_a_natoutgoing_pool_to_outside_every_pool_is_masqueraded() {
    let rs = ruleset(true, None);
    let masq = Some(Statement::Masquerade);
    assert_eq!(
        source_nat(&rs, "10.201.1.1", "192.0.2.1", CtState::New),
        masq
    );
    assert_eq!(
        source_nat(&rs, "fd00:201:1::1", "2001:db8::1", CtState::New),
        masq
    );
    // Later packets follow the connection's NAT; the chain never sees them.
    assert_eq!(
        source_nat(&rs, "10.201.1.1", "192.0.2.1", CtState::Established),
        None
    );
}

#[test]
fn traffic_to_a_pool_or_from_outside_the_natoutgoing_pools_keeps_its_source() {
    let rs = ruleset(true, None);
    for (src, dst) in [
        ("10.201.1.1", "10.202.0.1"),
        ("10.201.1.1", "10.201.7.1"),
        ("fd00:201:1::1", "fd00:202::1"),
        ("10.202.0.1", "192.0.2.1"),
        ("192.168.1.1", "192.0.2.1"),
    ] {
        assert_eq!(
            source_nat(&rs, src, dst, CtState::New),
            None,
            "{src} -> {dst}"
        );
    }
    let plain = ruleset(false, None);
    assert_eq!(
        source_nat(&plain, "10.201.1.1", "192.0.2.1", CtState::New),
        None
    );
}

#[test]
fn the_nat_outgoing_address_is_the_source_of_its_family_only() {
    let rs = ruleset(true, Some("10.99.0.253"));
    assert_eq!(
        source_nat(&rs, "10.201.1.1", "192.0.2.1", CtState::New),
        Some(Statement::Snat(ip("10.99.0.253")))
    );
    assert_eq!(
        source_nat(&rs, "fd00:201:1::1", "2001:db8::1", CtState::New),
        Some(Statement::Masquerade)
    );
}

/// Answers each TCP connection on port [`PORT`] with the peer address it saw.
const PEER_SERVER: &str = r#"
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 7000)); s.listen(64)
while True:
    c, a = s.accept()
    c.sendall(a[0].removeprefix("::ffff:").encode()); c.close()
"#;
const PORT: u16 = 7000;

/// Connects to `addr` and prints what the server says.
const CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
print(c.recv(64).decode())
"#;

/// The source address the outside server saw for a connection from `from`
/// to `addr`; `None` when no connection was made.
fn seen_from(from: &Netns, addr: &str) -> Option<String> {
    let out = from
        .cmd("python3")
        .args(["-c", CLIENT, addr, &PORT.to_string()])
        .output()
        .ok()?;
    let seen = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !seen.is_empty()).then_some(seen)
}

/// The lab's host and workload, and an "outside" namespace behind the host's
/// `out0` (host 10.99.0.254 and .253, fd00:99::fe; outside 10.99.0.1,
/// fd00:99::1) that also holds 10.202.0.1 and fd00:202::1, addresses of
/// another host's pools; the outside routes the workload's pools back through
/// the host, so traffic that keeps its source is answered too.
struct World {
    lab: Lab,
    _outside: Netns,
    _server: Background,
}

fn world() -> World {
    let lab = Lab::new(&["w"]);
    let outside = Netns::new("polo").unwrap();
    veth_pair(&lab.host, "out0", &outside, "eth0").unwrap();
    for (ns, cidr, dev) in [
        (&lab.host, "10.99.0.254/24", "out0"),
        (&lab.host, "10.99.0.253/24", "out0"),
        (&lab.host, "fd00:99::fe/64", "out0"),
        (&outside, "10.99.0.1/24", "eth0"),
        (&outside, "fd00:99::1/64", "eth0"),
        (&outside, "10.202.0.1/32", "lo"),
        (&outside, "fd00:202::1/128", "lo"),
    ] {
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        ns.ip(args).unwrap();
    }
    outside.ip(["link", "set", "lo", "up"]).unwrap();
    for (ns, args) in [
        (
            &lab.host,
            ["route", "add", "10.202.0.0/16", "via", "10.99.0.1"],
        ),
        (
            &lab.host,
            ["route", "add", "fd00:202::/32", "via", "fd00:99::1"],
        ),
        (
            &outside,
            ["route", "add", "10.201.0.0/16", "via", "10.99.0.254"],
        ),
        (
            &outside,
            ["route", "add", "fd00:201::/32", "via", "fd00:99::fe"],
        ),
    ] {
        ns.ip(args).unwrap();
    }
    let server = Background::spawn(
        outside
            .cmd("python3")
            .args(["-c", PEER_SERVER])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
            seen_from(&outside, "127.0.0.1").is_some()
        }),
        "the outside server did not start"
    );
    World {
        lab,
        _outside: outside,
        _server: server,
    }
}

impl World {
    /// What the outside saw for a connection from the workload to `addr`,
    /// waiting for the path (neighbours, routes) to come up.
    fn seen(&self, addr: &str) -> String {
        let workload = &self.lab.workloads[0].ns;
        let mut seen = None;
        poll_until(Duration::from_secs(15), Duration::from_millis(200), || {
            seen = seen_from(workload, addr);
            seen.is_some()
        });
        seen.unwrap_or_else(|| panic!("the workload cannot reach {addr}"))
    }

    /// `(destination, source the outside saw)` for a connection to the
    /// outside and to another pool's address, in both families.
    fn sources(&self) -> Vec<(&'static str, String)> {
        ["10.99.0.1", "10.202.0.1", "fd00:99::1", "fd00:202::1"]
            .into_iter()
            .map(|addr| (addr, self.seen(addr)))
            .collect()
    }
}

#[test]
fn the_outside_sees_the_hosts_address_only_from_natoutgoing_pools_to_outside_every_pool() {
    if !ready() {
        return;
    }
    let world = world();
    let dp = Netlink::in_netns(world.lab.host.path()).unwrap();
    let expect = |pairs: [(&'static str, &str); 4]| -> Vec<(&'static str, String)> {
        pairs.into_iter().map(|(d, s)| (d, s.to_string())).collect()
    };
    let kept = expect([
        ("10.99.0.1", "10.201.1.1"),
        ("10.202.0.1", "10.201.1.1"),
        ("fd00:99::1", "fd00:201:1::1"),
        ("fd00:202::1", "fd00:201:1::1"),
    ]);

    converge(&dp, &ruleset(false, None)).unwrap();
    assert_eq!(world.sources(), kept, "without natOutgoing");

    converge(&dp, &ruleset(true, None)).unwrap();
    let masqueraded = expect([
        ("10.99.0.1", "10.99.0.254"),
        ("10.202.0.1", "10.201.1.1"),
        ("fd00:99::1", "fd00:99::fe"),
        ("fd00:202::1", "fd00:201:1::1"),
    ]);
    assert_eq!(world.sources(), masqueraded, "with natOutgoing");

    converge(&dp, &ruleset(true, Some("10.99.0.253"))).unwrap();
    let snat = expect([
        ("10.99.0.1", "10.99.0.253"),
        ("10.202.0.1", "10.201.1.1"),
        ("fd00:99::1", "fd00:99::fe"),
        ("fd00:202::1", "fd00:201:1::1"),
    ]);
    assert_eq!(world.sources(), snat, "with natOutgoingAddress");

    // natOutgoingExclusions: IPPoolsAndHostIPs, the outside being a host.
    let mut to_hosts = config(true, None);
    to_hosts.nat_outgoing = to_hosts
        .nat_outgoing
        .excluding_hosts([ip("10.99.0.1"), ip("fd00:99::1")]);
    converge(&dp, &compile_yaml_with(WORKLOAD, to_hosts)).unwrap();
    assert_eq!(world.sources(), kept, "with host addresses excluded");

    converge(&dp, &ruleset(false, None)).unwrap();
    assert_eq!(world.sources(), kept, "natOutgoing off again");
}
