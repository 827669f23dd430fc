//! Pools and IPAM blocks: which blocks are this host's (a blackhole route
//! each, announced over BGP), which local addresses are borrowed from other
//! hosts' blocks (announced as `/32`, `/128`), and where other hosts'
//! workloads are (for VXLAN routes).
//!
//! Only blocks inside an existing pool count (a block left behind by a
//! deleted pool is a problem, not a route). Blocks of pools with
//! `disableBGPExport`, and of VXLAN pools (their routes are felix's, as in
//! Calico's BIRD export filter), are not announced.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use api::resources::felix::NatOutgoingExclusions;
use api::resources::ippool::EncapMode;
use api::{Kind, Node};
use datastore::ipam::model::{ATTR_NODE, AllocationBlock};
use ipnet::IpNet;

use super::inputs::Inputs;
use super::problems::{ProblemKind, Problems, subject};
use crate::state::{NatOutgoing, Route, RouteTarget, WorkloadIface};

/// An IPPool as the calculation uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pool {
    pub name: String,
    pub cidr: IpNet,
    pub enabled: bool,
    pub nat_outgoing: bool,
    /// Announced over BGP: not `disableBGPExport` and not IPv4 VXLAN.
    pub announce: bool,
    /// `vxlanMode` `Always` or `CrossSubnet` (treated as `Always`).
    pub vxlan: bool,
}

impl Pool {
    pub(super) fn read_all(inputs: &Inputs<'_>, problems: &mut Problems) -> Vec<Pool> {
        let mut pools = Vec::new();
        for p in &inputs.pools {
            let who = subject(Kind::IPPool, &p.metadata);
            if let Err(e) = p.spec.cidr.check_network() {
                problems.add(
                    ProblemKind::Approximated,
                    &who,
                    "spec.cidr",
                    format!("{e}; using the network"),
                );
            }
            if p.spec.vxlan_mode == EncapMode::CrossSubnet {
                problems.add(
                    ProblemKind::Approximated,
                    &who,
                    "spec.vxlanMode",
                    "CrossSubnet is treated as Always (every other host is reached over VXLAN)",
                );
            }
            if p.spec.ipip_mode != EncapMode::Never {
                problems.add(
                    ProblemKind::Unsupported,
                    &who,
                    "spec.ipipMode",
                    "IPIP is not supported; routed without encapsulation",
                );
            }
            let cidr = p.spec.cidr.network();
            let vxlan = p.spec.vxlan_mode != EncapMode::Never;
            // IPv6 VXLAN is not supported (see `vxlan`): such a pool is
            // routed by BGP like one without encapsulation.
            let over_vxlan = vxlan && cidr.addr().is_ipv4();
            pools.push(Pool {
                name: p.metadata.name.clone(),
                cidr,
                enabled: !p.spec.disabled,
                nat_outgoing: p.spec.nat_outgoing,
                announce: !p.spec.disable_bgp_export && !over_vxlan,
                vxlan,
            });
        }
        pools
    }
}

/// The pool holding `net`, the most specific if pools overlap.
pub(super) fn pool_of(pools: &[Pool], net: IpNet) -> Option<&Pool> {
    pools
        .iter()
        .filter(|p| p.cidr.contains(&net))
        .max_by_key(|p| p.cidr.prefix_len())
}

/// An IPAM block inside a pool.
#[derive(Debug, Clone)]
pub(super) struct Block<'a> {
    pub cidr: IpNet,
    /// The host the block is affine to (`host:<node>` affinity).
    pub host: Option<&'a str>,
    pub pool: &'a Pool,
    pub block: &'a AllocationBlock,
}

impl<'a> Block<'a> {
    /// The blocks inside a pool; others (and deleted ones) are skipped,
    /// problems for those outside every pool.
    pub(super) fn read_all(
        blocks: &'a BTreeMap<String, AllocationBlock>,
        pools: &'a [Pool],
        problems: &mut Problems,
    ) -> Vec<Block<'a>> {
        let mut out = Vec::new();
        for (key, b) in blocks.iter().filter(|(_, b)| !b.deleted) {
            let cidr = b.cidr.trunc();
            match pool_of(pools, cidr) {
                Some(pool) => out.push(Block {
                    cidr,
                    host: b.host(),
                    pool,
                    block: b,
                }),
                None => problems.add(
                    ProblemKind::Skipped,
                    format!("IPAM block {key}"),
                    "cidr",
                    format!("{cidr} is not inside any IPPool; ignored"),
                ),
            }
        }
        out
    }

    /// The block's allocated addresses with the node their workload is on.
    pub(super) fn allocations(&self) -> impl Iterator<Item = (IpAddr, &'a str)> + use<'a> {
        let block = self.block;
        block
            .allocations()
            .filter_map(|a| a.attrs.get(ATTR_NODE).map(|node| (a.ip, node.as_str())))
    }
}

/// Blocks affine to `node`: a blackhole route each.
pub(super) fn blackholes(blocks: &[Block<'_>], node: &str) -> BTreeSet<Route> {
    blocks
        .iter()
        .filter(|b| b.host == Some(node))
        .map(|b| Route {
            dst: b.cidr,
            target: RouteTarget::Blackhole,
        })
        .collect()
}

/// What this host announces over BGP: its blocks, and the local workload
/// addresses outside them (borrowed from another host's block, or from no
/// block), when their pool is announced.
pub(super) fn announcements<'w>(
    pools: &[Pool],
    blocks: &[Block<'_>],
    node: &str,
    local: impl IntoIterator<Item = &'w WorkloadIface>,
) -> BTreeSet<IpNet> {
    let ours: Vec<&Block<'_>> = blocks.iter().filter(|b| b.host == Some(node)).collect();
    let mut announce: BTreeSet<IpNet> = ours
        .iter()
        .filter(|b| b.pool.announce)
        .map(|b| b.cidr)
        .collect();
    for addr in local.into_iter().flat_map(|w| &w.addrs) {
        let in_ours = ours.iter().any(|b| b.cidr.contains(addr));
        if !in_ours && pool_of(pools, *addr).is_some_and(|p| p.announce) {
            announce.insert(*addr);
        }
    }
    announce
}

/// `natOutgoing`: enabled pools with `natOutgoing` are masqueraded; traffic
/// to any pool is not, nor, with `natOutgoingExclusions: IPPoolsAndHostIPs`,
/// to any host's address (`nodes`).
pub(super) fn nat_outgoing<'a>(
    pools: &[Pool],
    exclusions: NatOutgoingExclusions,
    nodes: impl IntoIterator<Item = &'a Node>,
) -> NatOutgoing {
    let nat = NatOutgoing::of_nets(pools.iter().map(|p| (p.cidr, p.enabled && p.nat_outgoing)));
    match exclusions {
        NatOutgoingExclusions::IPPoolsOnly => nat,
        NatOutgoingExclusions::IPPoolsAndHostIPs => {
            nat.excluding_hosts(nodes.into_iter().flat_map(host_addresses))
        }
    }
}

/// Every address a Node names: its BGP addresses and `spec.addresses`.
fn host_addresses(node: &Node) -> impl Iterator<Item = IpAddr> + '_ {
    let bgp = node.spec.bgp.as_ref();
    bgp.and_then(|b| b.ipv4_address)
        .into_iter()
        .chain(bgp.and_then(|b| b.ipv6_address))
        .chain(node.spec.addresses.iter().map(|a| a.address))
        .map(|c| c.0.addr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calc::fixtures::{block, pool, snapshot_with};
    use crate::state::Snapshot;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn pools_of(snap: &Snapshot) -> (Vec<Pool>, Vec<String>) {
        let mut problems = Problems::default();
        let pools = Pool::read_all(&Inputs::read(snap), &mut problems);
        (pools, problems.into_lines())
    }

    fn iface(addrs: &[&str]) -> WorkloadIface {
        WorkloadIface {
            name: "cali1".into(),
            endpoint: "default/w".into(),
            addrs: addrs.iter().map(|a| net(a)).collect(),
            shaping: Default::default(),
        }
    }

    #[test]
    fn blocks_affine_to_this_host_are_blackholed_and_announced() {
        let yaml = [
            pool("main", "10.0.0.0/16", ""),
            pool("quiet", "10.1.0.0/16", "  disableBGPExport: true\n"),
            pool("tunnel", "10.2.0.0/16", "  vxlanMode: Always\n"),
        ]
        .concat();
        let snap = snapshot_with(
            &yaml,
            vec![
                block("10.0.0.0/26", Some("host-a"), &[("10.0.0.1", "host-a")]),
                block("10.0.0.64/26", Some("host-b"), &[("10.0.0.65", "host-b")]),
                block("10.1.0.0/26", Some("host-a"), &[]),
                block("10.2.0.0/26", Some("host-a"), &[]),
                block("10.9.0.0/26", Some("host-a"), &[]),
                block("10.0.1.0/26", None, &[]),
            ],
        );
        let (pools, _) = pools_of(&snap);
        let mut problems = Problems::default();
        let blocks = Block::read_all(&snap.blocks, &pools, &mut problems);
        let problems = problems.into_lines();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("10.9.0.0/26 is not inside any IPPool"),
            "{problems:?}"
        );
        let holes: Vec<IpNet> = blackholes(&blocks, "host-a")
            .iter()
            .map(|r| r.dst)
            .collect();
        assert_eq!(
            holes,
            [net("10.0.0.0/26"), net("10.1.0.0/26"), net("10.2.0.0/26")]
        );
        let w = iface(&[
            "10.0.0.1/32",
            "10.0.0.66/32",
            "10.1.0.70/32",
            "10.0.5.5/32",
            "10.7.0.1/32",
        ]);
        // (address, announced): in our block → the block covers it; borrowed
        // from host-b → /32; borrowed in an unannounced pool → nothing;
        // outside any block → /32; outside every pool → nothing.
        assert_eq!(
            announcements(&pools, &blocks, "host-a", [&w]),
            BTreeSet::from([net("10.0.0.0/26"), net("10.0.0.66/32"), net("10.0.5.5/32")])
        );
    }

    #[test]
    fn allocations_carry_the_node_of_their_workload() {
        let snap = snapshot_with(
            &pool("main", "10.0.0.0/16", ""),
            vec![block(
                "10.0.0.0/26",
                Some("host-a"),
                &[("10.0.0.1", "host-a"), ("10.0.0.9", "host-c")],
            )],
        );
        let (pools, _) = pools_of(&snap);
        let blocks = Block::read_all(&snap.blocks, &pools, &mut Problems::default());
        let got: Vec<_> = blocks[0].allocations().collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1".parse().unwrap(), "host-a"),
                ("10.0.0.9".parse().unwrap(), "host-c")
            ]
        );
    }

    #[test]
    fn nat_outgoing_masquerades_enabled_nat_pools_and_exempts_every_pool() {
        let yaml = [
            pool("nat", "10.0.0.0/16", "  natOutgoing: true\n"),
            pool(
                "off",
                "10.1.0.0/16",
                "  natOutgoing: true\n  disabled: true\n",
            ),
            pool("plain", "fd00::/48", ""),
        ]
        .concat();
        let (pools, problems) = pools_of(&snapshot_with(&yaml, vec![]));
        assert!(problems.is_empty());
        let nodes: Vec<Node> = ["192.168.1.2/24", "192.168.1.3/24"]
            .iter()
            .map(|addr| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": addr},
                    "spec": {"bgp": {"ipv4Address": addr}, "addresses": [{"address": "fd00:1::9"}]},
                }))
                .unwrap()
            })
            .collect();
        let only_pools = nat_outgoing(&pools, NatOutgoingExclusions::IPPoolsOnly, &nodes);
        assert_eq!(
            only_pools,
            NatOutgoing {
                masquerade: vec![net("10.0.0.0/16")],
                pools: vec![net("10.0.0.0/16"), net("10.1.0.0/16"), net("fd00::/48")],
                hosts: vec![],
            }
        );
        let and_hosts = nat_outgoing(&pools, NatOutgoingExclusions::IPPoolsAndHostIPs, &nodes);
        assert_eq!(
            and_hosts.hosts,
            [
                net("192.168.1.2/32"),
                net("192.168.1.3/32"),
                net("fd00:1::9/128")
            ]
        );
        assert_eq!(and_hosts.pools, only_pools.pools);
    }

    #[test]
    fn cross_subnet_and_ipip_are_noted() {
        let yaml = [
            pool("x", "10.0.0.0/16", "  vxlanMode: CrossSubnet\n"),
            pool("i", "10.1.0.0/16", "  ipipMode: Always\n"),
        ]
        .concat();
        let (pools, problems) = pools_of(&snapshot_with(&yaml, vec![]));
        assert!(pools.iter().find(|p| p.name == "x").unwrap().vxlan);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("IPPool x: spec.vxlanMode: CrossSubnet"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("IPPool i: spec.ipipMode"))
        );
    }
    #[test]
    fn vxlan_pools_are_announced_only_where_vxlan_does_not_route_them() {
        // (pool spec lines, announced)
        let cases = [
            ("  cidr: 10.0.0.0/16\n", true),
            ("  cidr: 10.0.0.0/16\n  vxlanMode: Always\n", false),
            ("  cidr: 10.0.0.0/16\n  vxlanMode: CrossSubnet\n", false),
            ("  cidr: fd00::/48\n  vxlanMode: Always\n", true),
            ("  cidr: fd00::/48\n  disableBGPExport: true\n", false),
        ];
        for (spec, announced) in cases {
            let yaml = format!(
                "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: p}}\nspec:\n{spec}"
            );
            let (pools, _) = pools_of(&snapshot_with(&yaml, vec![]));
            assert_eq!(pools[0].announce, announced, "{spec}");
        }
    }
}
