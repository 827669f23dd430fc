//! bgpd ↔ bgpd (root): four `bgpd` daemons in AS 65000, each in its own
//! namespace, joined by veths to a bridge in a fifth. Host N has
//! 10.95.0.N on the LAN, announces 10.94.0.(64·(N-1))/26 and holds the
//! first address of it on its loopback; learned routes go into its main
//! table (protocol 201), so hosts reach each other's /26 through BGP alone.
//!
//! - Full mesh: every host peers with the three others.
//! - Route reflector: host 1 reflects, hosts 2 to 4 are its clients and
//!   peer with it only (RFC 4456).
//!
//! In both, every kernel gets the three other /26s via their owner's LAN
//! address, pings between the /26 addresses go through, and stopping a
//! daemon removes its /26 from every other kernel.

use std::collections::BTreeMap;
use std::time::Duration;

use tempfile::TempDir;
use testkit::{Netns, require_programs, require_root};

mod common;
use common::{Daemon, add_addrs, holds_for};

const HOSTS: usize = 4;

fn lan_addr(host: usize) -> String {
    format!("10.95.0.{host}")
}

fn prefix(host: usize) -> String {
    format!("10.94.0.{}/26", 64 * (host - 1))
}

/// The first address of a host's /26, on its loopback.
fn prefix_addr(host: usize) -> String {
    format!("10.94.0.{}", 64 * (host - 1) + 1)
}

struct Host {
    n: usize,
    ns: Netns,
    dir: TempDir,
    daemon: Option<Daemon>,
}

impl Host {
    /// Its routes from bgpd in the main table: prefix → the route line.
    fn bgp_routes(&self) -> BTreeMap<String, String> {
        testkit::without_nhid(&self.ns.ip(["route", "show", "proto", "201"]).unwrap())
            .lines()
            .filter_map(|l| Some((l.split_whitespace().next()?.to_owned(), l.to_owned())))
            .collect()
    }

    /// Whether the main table holds exactly the /26s of `owners`, each via
    /// its owner's LAN address.
    fn has_exactly(&self, owners: &[usize]) -> bool {
        let routes = self.bgp_routes();
        routes.len() == owners.len()
            && owners.iter().all(|&o| {
                routes
                    .get(&prefix(o))
                    .is_some_and(|l| l.contains(&format!("via {} ", lan_addr(o))))
            })
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }
}

/// The bridge namespace (kept for its lifetime) and four hosts on it,
/// each with its LAN address and its /26's first address on loopback.
fn lan() -> (Netns, Vec<Host>) {
    let bridge = Netns::new("bgp").unwrap();
    bridge.ip(["link", "add", "br0", "type", "bridge"]).unwrap();
    bridge.link_up("br0").unwrap();
    let hosts = (1..=HOSTS)
        .map(|n| {
            let ns = Netns::new("bgp").unwrap();
            let port = format!("p{n}");
            testkit::veth_pair(&ns, "eth0", &bridge, &port).unwrap();
            bridge.ip(["link", "set", &port, "master", "br0"]).unwrap();
            add_addrs(&ns, "eth0", &[&format!("{}/24", lan_addr(n))]);
            add_addrs(&ns, "lo", &[&format!("{}/32", prefix_addr(n))]);
            Host {
                n,
                ns,
                dir: tempfile::tempdir().unwrap(),
                daemon: None,
            }
        })
        .collect();
    (bridge, hosts)
}

/// Starts host `h`'s daemon with iBGP sessions to `peers` (host number,
/// whether it is our route-reflector client).
fn start(h: &mut Host, peers: &[(usize, bool)]) {
    let n = h.n;
    let mut yaml = format!(
        "router_id: {addr}
asn: 65000
listen: {addr}
{status}peers:
",
        addr = lan_addr(n),
        status = Daemon::status_line(h.dir.path()),
    );
    for &(p, client) in peers {
        yaml.push_str(&format!(
            "  - address: {}
    asn: 65000
    local_address: {}
    route_reflector_client: {client}
",
            lan_addr(p),
            lan_addr(n)
        ));
    }
    yaml.push_str(&format!(
        "announce: [{}]\nkernel: {{ table: 254, protocol: 201 }}\n",
        prefix(n)
    ));
    h.daemon = Some(Daemon::start(&h.ns, h.dir.path(), &yaml));
}

fn logs(hosts: &[Host]) -> Vec<&std::path::Path> {
    hosts
        .iter()
        .filter_map(|h| h.daemon.as_ref().map(|d| d.log.as_path()))
        .collect()
}

/// Every host's kernel holds the other hosts' /26s (of `alive`) via
/// their LAN addresses. On timeout, panics with each host's status, routes
/// and log.
fn wait_converged(hosts: &[Host], alive: &[usize], what: &str) {
    let start = std::time::Instant::now();
    let converged = || {
        hosts.iter().filter(|h| alive.contains(&h.n)).all(|h| {
            let others: Vec<usize> = alive.iter().copied().filter(|&o| o != h.n).collect();
            h.has_exactly(&others)
        })
    };
    if testkit::poll_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        converged,
    ) {
        eprintln!("{:>7.2?}  {what}", start.elapsed());
        return;
    }
    let state: String = hosts
        .iter()
        .filter_map(|h| {
            let d = h.daemon.as_ref()?;
            Some(format!(
                "\n--- host {}: kernel {:?}\n{}\n{}",
                h.n,
                h.bgp_routes().keys().collect::<Vec<_>>(),
                d.status(),
                std::fs::read_to_string(&d.log).unwrap_or_default()
            ))
        })
        .collect();
    panic!("timed out after 30 s waiting for {what}{state}");
}

/// Pings from each host's /26 address to every other host's.
fn ping_all(hosts: &[Host]) {
    for from in hosts {
        for to in hosts.iter().filter(|t| t.n != from.n) {
            let out = from
                .ns
                .cmd("ping")
                .args(["-c", "1", "-W", "2", "-I", &prefix_addr(from.n)])
                .arg(prefix_addr(to.n))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "ping {} -> {}: {}",
                prefix_addr(from.n),
                prefix_addr(to.n),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// Stops host `n`'s daemon (SIGTERM: a Cease to every peer) and waits
/// until the others have dropped its /26. (A SIGKILL would leave its routes
/// with the others for its graceful-restart time, RFC 4724.)
fn stop_and_check_withdrawn(hosts: &mut [Host], n: usize) {
    let daemon = hosts[n - 1].daemon.take().unwrap();
    let status = daemon.process.stop(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "host {n}'s bgpd exited with {status}");
    let alive: Vec<usize> = (1..=HOSTS).filter(|&h| h != n).collect();
    wait_converged(
        hosts,
        &alive,
        &format!(
            "every kernel to drop {} after its daemon stopped",
            prefix(n)
        ),
    );
}

#[test]
fn four_speaker_ibgp_full_mesh_installs_every_prefix_and_forgets_a_stopped_speaker() {
    if !require_root() || !require_programs(&["ping"]) {
        return;
    }
    let (_bridge, mut hosts) = lan();
    for h in &mut hosts {
        let peers: Vec<(usize, bool)> = (1..=HOSTS)
            .filter(|&p| p != h.n)
            .map(|p| (p, false))
            .collect();
        start(h, &peers);
    }
    let all: Vec<usize> = (1..=HOSTS).collect();
    wait_converged(&hosts, &all, "every kernel to get the 3 other /26s");
    for h in &hosts {
        let peers: Vec<String> = (1..=HOSTS).filter(|&p| p != h.n).map(lan_addr).collect();
        for p in &peers {
            let fields = h.daemon().peer_fields(p);
            // Received, accepted, advertised: one prefix each way, as
            // iBGP routes are not passed on to other iBGP peers.
            assert_eq!(
                fields.get(2).map(String::as_str),
                Some("Established"),
                "host {} peer {p}: {fields:?}",
                h.n
            );
            assert_eq!(
                fields.get(4..7).map(|f| f.join(" ")).as_deref(),
                Some("1 1 1"),
                "host {} peer {p}: {fields:?}",
                h.n
            );
        }
    }
    ping_all(&hosts);
    stop_and_check_withdrawn(&mut hosts, 4);
}

#[test]
fn four_speakers_behind_a_route_reflector_learn_every_prefix_without_loops() {
    if !require_root() || !require_programs(&["ping"]) {
        return;
    }
    let (_bridge, mut hosts) = lan();
    let clients: Vec<(usize, bool)> = (2..=HOSTS).map(|c| (c, true)).collect();
    start(&mut hosts[0], &clients);
    for h in &mut hosts[1..] {
        start(h, &[(1, false)]);
    }
    let all: Vec<usize> = (1..=HOSTS).collect();
    wait_converged(
        &hosts,
        &all,
        "every kernel to get the 3 other /26s through the reflector",
    );
    let reflector = lan_addr(1);
    for h in &hosts[1..] {
        // A client hears of every other /26 once, from the reflector, and
        // never of its own (RFC 4456 §8: not reflected back to its origin).
        let fields = h.daemon().peer_fields(&reflector);
        assert_eq!(
            fields.get(2).map(String::as_str),
            Some("Established"),
            "{fields:?}"
        );
        assert_eq!(
            fields.get(4..7).map(|f| f.join(" ")).as_deref(),
            Some("3 3 1"),
            "host {}: {fields:?}",
            h.n
        );
        // Reflected routes carry the originator and the reflector's
        // cluster ID; the reflector's own does not.
        let status = h.daemon().status();
        for o in (2..=HOSTS).filter(|&o| o != h.n) {
            let line = status
                .lines()
                .find(|l| l.starts_with(&prefix(o)))
                .unwrap_or_else(|| panic!("{} missing on host {}:\n{status}", prefix(o), h.n));
            assert!(
                line.contains(&format!("via [{}]", lan_addr(o)))
                    && line.contains(&format!("originator {}", lan_addr(o)))
                    && line.contains(&format!("cluster_list [{reflector}]")),
                "host {}: {line}",
                h.n
            );
        }
        let own = status.lines().find(|l| l.starts_with(&prefix(1))).unwrap();
        assert!(!own.contains("originator"), "host {}: {own}", h.n);
    }
    // The reflector has one prefix from each client and sends each the
    // three others.
    for c in 2..=HOSTS {
        let fields = hosts[0].daemon().peer_fields(&lan_addr(c));
        assert_eq!(
            fields.get(4..7).map(|f| f.join(" ")).as_deref(),
            Some("1 1 3"),
            "reflector's client {c}: {fields:?}"
        );
    }
    ping_all(&hosts);
    // Stable: no route flaps back and forth through the reflector.
    holds_for(
        "every kernel to keep exactly the other /26s",
        Duration::from_secs(1),
        &logs(&hosts),
        || {
            hosts.iter().all(|h| {
                let others: Vec<usize> = all.iter().copied().filter(|&o| o != h.n).collect();
                h.has_exactly(&others)
            })
        },
    );
    stop_and_check_withdrawn(&mut hosts, 4);
}
