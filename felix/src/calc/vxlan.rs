//! VXLAN (IPv4): when an enabled pool has `vxlanMode` set and this node has
//! a VTEP (`ipv4VXLANTunnelAddr`, `vxlanTunnelMACAddr`), the `vxlan.calico`
//! device, the other hosts' VTEPs, and a route via the owner's VTEP for each
//! block of a VXLAN pool affine to another host and each address another
//! host borrowed from a VXLAN pool's block.
//!
//! A host's underlay address is its BGP `ipv4Address` (without the prefix
//! length), else its first IPv4 `InternalIP` address. IPv6 VXLAN is not
//! supported: a problem per IPv6 VXLAN pool, which BGP routes instead.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use api::{Kind, Node};
use ipnet::IpNet;

use super::inputs::Inputs;
use super::ipam::{Block, Pool};
use super::problems::{ProblemKind, Problems, subject};
use super::settings::Settings;
use crate::state::{Route, RouteTarget, VXLAN_DEVICE, VxlanDesired, VxlanRemote};

/// A host's VTEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Vtep {
    addr: Ipv4Addr,
    mac: [u8; 6],
    underlay: IpAddr,
}

/// The VXLAN device and its routes, or `None` (with problems saying why
/// when VXLAN was wanted).
pub(super) fn desired(
    inputs: &Inputs<'_>,
    pools: &[Pool],
    blocks: &[Block<'_>],
    settings: &Settings,
    node: &str,
    problems: &mut Problems,
) -> Option<(VxlanDesired, BTreeSet<Route>)> {
    for p in pools.iter().filter(|p| p.vxlan && p.cidr.addr().is_ipv6()) {
        problems.add(
            ProblemKind::Unsupported,
            format!("IPPool {}", p.name),
            "spec.vxlanMode",
            "IPv6 VXLAN is not supported; the pool is routed by BGP, unencapsulated",
        );
    }
    let is_vxlan = |p: &Pool| p.vxlan && p.cidr.addr().is_ipv4();
    if !pools.iter().any(|p| p.enabled && is_vxlan(p)) || settings.vxlan_enabled == Some(false) {
        return None;
    }
    let Some(me) = inputs.nodes.get(node) else {
        problems.add(
            ProblemKind::Disabled,
            format!("Node {node}"),
            "",
            "not found: VXLAN pools need this node's VTEP; no VXLAN",
        );
        return None;
    };
    let vtep = vtep_of(me, problems).or_else(|| {
        problems.add(
            ProblemKind::Disabled,
            subject(Kind::Node, &me.metadata),
            "spec.ipv4VXLANTunnelAddr",
            "this node has no complete VTEP (address, MAC and underlay address); no VXLAN",
        );
        None
    })?;

    // The other hosts with a VTEP; those without one that own VXLAN
    // addresses are problems.
    let mut remotes: BTreeMap<&str, Vtep> = BTreeMap::new();
    for (name, n) in inputs.nodes.iter().filter(|(name, _)| **name != node) {
        if let Some(v) = vtep_of(n, problems) {
            if v.addr == vtep.addr {
                problems.add(
                    ProblemKind::Skipped,
                    subject(Kind::Node, &n.metadata),
                    "spec.ipv4VXLANTunnelAddr",
                    format!("{} is also this node's VTEP; not a VXLAN peer", v.addr),
                );
            } else {
                remotes.insert(name, v);
            }
        }
    }

    let mut routes = BTreeSet::new();
    let mut unreachable: BTreeSet<String> = BTreeSet::new();
    let mut via = |dst: IpNet, host: &str, routes: &mut BTreeSet<Route>| match remotes.get(host) {
        Some(v) => {
            routes.insert(Route {
                dst,
                target: RouteTarget::Via {
                    gateway: IpAddr::V4(v.addr),
                    dev: VXLAN_DEVICE.to_string(),
                },
            });
        }
        None => {
            unreachable.insert(host.to_string());
        }
    };
    for b in blocks.iter().filter(|b| is_vxlan(b.pool)) {
        if let Some(host) = b.host.filter(|h| *h != node) {
            via(b.cidr, host, &mut routes);
        }
        for (ip, host) in b.allocations() {
            if host != node && b.host != Some(host) {
                via(IpNet::from(ip), host, &mut routes);
            }
        }
    }
    for host in unreachable {
        problems.add(
            ProblemKind::Disabled,
            format!("Node {host}"),
            "spec.ipv4VXLANTunnelAddr",
            "the node has VXLAN pool addresses but no complete VTEP; its addresses are not routed",
        );
    }
    let desired = VxlanDesired {
        vni: settings.vxlan_vni,
        port: settings.vxlan_port,
        mtu: settings.vxlan_mtu,
        vtep: vtep.addr,
        mac: vtep.mac,
        underlay: vtep.underlay,
        remotes: remotes
            .into_iter()
            .map(|(name, v)| VxlanRemote {
                node: name.to_string(),
                vtep: v.addr,
                mac: v.mac,
                underlay: v.underlay,
            })
            .collect(),
    };
    Some((desired, routes))
}

/// A node's VTEP, when it has all of it. A MAC that does not parse is a
/// problem; a node with no VTEP fields at all is not (it runs no VXLAN).
fn vtep_of(n: &Node, problems: &mut Problems) -> Option<Vtep> {
    let addr = n.spec.ipv4_vxlan_tunnel_addr?;
    let text = n.spec.vxlan_tunnel_mac_addr.as_deref()?;
    let Some(mac) = parse_mac(text) else {
        problems.add(
            ProblemKind::Skipped,
            subject(Kind::Node, &n.metadata),
            "spec.vxlanTunnelMACAddr",
            format!("{text:?} is not a MAC address"),
        );
        return None;
    };
    Some(Vtep {
        addr,
        mac,
        underlay: underlay_of(n)?,
    })
}

/// The node's BGP IPv4 address, else its first IPv4 `InternalIP`.
pub(super) fn underlay_of(n: &Node) -> Option<IpAddr> {
    let bgp = n
        .spec
        .bgp
        .as_ref()
        .and_then(|b| b.ipv4_address)
        .map(|c| c.0.addr())
        .filter(IpAddr::is_ipv4);
    bgp.or_else(|| {
        n.spec
            .addresses
            .iter()
            .filter(|a| a.address_type == "InternalIP")
            .map(|a| a.address.0.addr())
            .find(IpAddr::is_ipv4)
    })
}

/// `aa:bb:cc:dd:ee:ff` (or with `-`).
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calc::fixtures::{block, node, pool, snapshot_unvalidated, snapshot_with};
    use crate::state::Snapshot;

    fn vtep_lines(vtep: &str, mac: &str) -> String {
        format!("  ipv4VXLANTunnelAddr: {vtep}\n  vxlanTunnelMACAddr: \"{mac}\"\n")
    }

    fn run(snap: &Snapshot) -> (Option<(VxlanDesired, BTreeSet<Route>)>, Vec<String>) {
        let inputs = Inputs::read(snap);
        let mut problems = Problems::default();
        let settings = Settings::read(&inputs, "host-a", &mut problems);
        let pools = Pool::read_all(&inputs, &mut problems);
        let blocks = Block::read_all(&snap.blocks, &pools, &mut problems);
        let out = desired(&inputs, &pools, &blocks, &settings, "host-a", &mut problems);
        (out, problems.into_lines())
    }

    fn via(dst: &str, gw: &str) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            target: RouteTarget::Via {
                gateway: gw.parse().unwrap(),
                dev: VXLAN_DEVICE.into(),
            },
        }
    }

    fn three_hosts(pool_extra: &str) -> String {
        [
            node("host-a", "192.168.0.1/24", &vtep_lines("10.5.0.1", "66:00:00:00:00:01")),
            node("host-b", "192.168.0.2/24", &vtep_lines("10.5.0.2", "66:00:00:00:00:02")),
            // host-c: no BGP address, underlay from its InternalIP.
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: host-c}\nspec:\n\
             \x20 addresses: [{address: \"fd00::3\", type: InternalIP}, {address: 192.168.0.3, type: InternalIP}]\n"
                .to_string()
                + &vtep_lines("10.5.0.3", "66:00:00:00:00:03")
                + "---\n",
            pool("vx", "10.0.0.0/16", pool_extra),
        ]
        .concat()
    }

    #[test]
    fn other_hosts_blocks_and_borrowed_addresses_go_via_their_vtep() {
        let snap = snapshot_with(
            &three_hosts("  vxlanMode: Always\n"),
            vec![
                block(
                    "10.0.0.0/26",
                    Some("host-a"),
                    &[("10.0.0.1", "host-a"), ("10.0.0.2", "host-c")],
                ),
                block(
                    "10.0.0.64/26",
                    Some("host-b"),
                    &[("10.0.0.65", "host-b"), ("10.0.0.66", "host-a")],
                ),
                block("10.0.0.128/26", Some("host-c"), &[]),
            ],
        );
        let (out, problems) = run(&snap);
        assert!(problems.is_empty(), "{problems:?}");
        let (d, routes) = out.expect("VXLAN");
        assert_eq!((d.vni, d.port, d.mtu), (4096, 4789, 1450));
        assert_eq!(d.vtep, Ipv4Addr::new(10, 5, 0, 1));
        assert_eq!(d.mac, [0x66, 0, 0, 0, 0, 1]);
        assert_eq!(d.underlay, "192.168.0.1".parse::<IpAddr>().unwrap());
        let remotes: Vec<(&str, String, IpAddr)> = d
            .remotes
            .iter()
            .map(|r| (r.node.as_str(), r.vtep.to_string(), r.underlay))
            .collect();
        assert_eq!(
            remotes,
            [
                ("host-b", "10.5.0.2".into(), "192.168.0.2".parse().unwrap()),
                ("host-c", "10.5.0.3".into(), "192.168.0.3".parse().unwrap()),
            ]
        );
        assert_eq!(
            routes,
            BTreeSet::from([
                via("10.0.0.64/26", "10.5.0.2"),
                via("10.0.0.128/26", "10.5.0.3"),
                via("10.0.0.2/32", "10.5.0.3"),
            ])
        );
    }

    #[test]
    fn no_vxlan_without_a_vxlan_pool_or_when_felix_configuration_disables_it() {
        let (out, _) = run(&snapshot_with(&three_hosts(""), vec![]));
        assert!(out.is_none());
        let off = three_hosts("  vxlanMode: Always\n")
            + "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {vxlanEnabled: false}\n";
        assert!(run(&snapshot_with(&off, vec![])).0.is_none());
    }

    #[test]
    fn missing_vtep_is_a_problem_not_a_panic() {
        // (case, this host's extra spec lines, problem text)
        let cases = [
            ("no VTEP", String::new(), "no complete VTEP"),
            (
                "bad MAC",
                vtep_lines("10.5.0.1", "zz:00:00:00:00:01"),
                "is not a MAC address",
            ),
        ];
        for (case, extra, text) in cases {
            let yaml = node("host-a", "192.168.0.1/24", &extra)
                + &pool("vx", "10.0.0.0/16", "  vxlanMode: Always\n");
            let (out, problems) = run(&snapshot_unvalidated(&yaml));
            assert!(out.is_none(), "{case}");
            assert!(
                problems.iter().any(|p| p.contains(text)),
                "{case}: {problems:?}"
            );
        }
    }

    #[test]
    fn a_host_owning_vxlan_addresses_without_a_vtep_is_a_problem() {
        let yaml = three_hosts("  vxlanMode: Always\n") + &node("host-d", "192.168.0.4/24", "");
        let snap = snapshot_with(&yaml, vec![block("10.0.0.192/26", Some("host-d"), &[])]);
        let (out, problems) = run(&snap);
        let (_, routes) = out.expect("VXLAN for the others");
        assert!(routes.is_empty());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("Node host-d: spec.ipv4VXLANTunnelAddr"));
    }

    #[test]
    fn macs_parse_with_colons_or_dashes_only() {
        for (text, expected) in [
            ("ee:ee:ee:ee:ee:ee", Some([0xee; 6])),
            ("01-02-03-04-05-06", Some([1, 2, 3, 4, 5, 6])),
            ("ee:ee:ee:ee:ee", None),
            ("ee:ee:ee:ee:ee:ee:ee", None),
            ("e:ee:ee:ee:ee:eee", None),
            ("", None),
        ] {
            assert_eq!(parse_mac(text), expected, "{text:?}");
        }
    }
}
