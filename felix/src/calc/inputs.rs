//! [`Inputs`]: the snapshot's resources sorted by kind, borrowed, in
//! datastore-key order (so everything derived from them is deterministic).

use std::collections::BTreeMap;

use api::{
    BGPConfiguration, BGPFilter, BGPPeer, FelixConfiguration, IPPool, Node, Resource,
    WorkloadEndpoint,
};

use crate::state::Snapshot;

/// The resources the calculation reads besides the policy model's.
#[derive(Debug, Default)]
pub(super) struct Inputs<'a> {
    /// Nodes by name (the first by key wins should two share a name).
    pub nodes: BTreeMap<&'a str, &'a Node>,
    pub pools: Vec<&'a IPPool>,
    /// Workload endpoints with their datastore keys.
    pub workloads: Vec<(&'a str, &'a WorkloadEndpoint)>,
    pub felix_configs: BTreeMap<&'a str, &'a FelixConfiguration>,
    pub bgp_configs: BTreeMap<&'a str, &'a BGPConfiguration>,
    pub bgp_peers: Vec<&'a BGPPeer>,
    pub bgp_filters: BTreeMap<&'a str, &'a BGPFilter>,
}

impl<'a> Inputs<'a> {
    pub(super) fn read(snapshot: &'a Snapshot) -> Self {
        let mut inputs = Inputs::default();
        for (key, resource) in &snapshot.resources {
            match resource {
                Resource::Node(n) => {
                    inputs.nodes.entry(n.metadata.name.as_str()).or_insert(n);
                }
                Resource::IPPool(p) => inputs.pools.push(p),
                Resource::WorkloadEndpoint(w) => inputs.workloads.push((key.as_str(), w)),
                Resource::FelixConfiguration(f) => {
                    inputs
                        .felix_configs
                        .entry(f.metadata.name.as_str())
                        .or_insert(f);
                }
                Resource::BGPConfiguration(c) => {
                    inputs
                        .bgp_configs
                        .entry(c.metadata.name.as_str())
                        .or_insert(c);
                }
                Resource::BGPPeer(p) => inputs.bgp_peers.push(p),
                Resource::BGPFilter(f) => {
                    inputs
                        .bgp_filters
                        .entry(f.metadata.name.as_str())
                        .or_insert(f);
                }
                _ => {}
            }
        }
        inputs
    }
}
