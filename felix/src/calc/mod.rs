//! The calculation (pure): datastore [`Snapshot`] → [`Desired`] dataplane
//! state for this host, with every piece of datastore content it could not
//! use listed as a problem naming the resource and field. Deterministic
//! (ordered maps throughout) and total: no datastore content makes it panic.
//!
//! ```text
//! Snapshot ─inputs─▶ Inputs ─┬─ settings ──────▶ Settings (FelixConfiguration default + node.<node>)
//!                            ├─ workloads ─────▶ WorkloadIface, /32 routes
//!                            ├─ policy_model ──▶ policy::Model (skipping what breaks it)
//!                            ├─ ipam ──────────▶ blackholes, announcements, natOutgoing
//!                            ├─ bgp ───────────▶ BgpDesired (mesh, BGPPeers, route reflection)
//!                            └─ vxlan ─────────▶ VxlanDesired, routes via remote VTEPs
//! ```
//!
//! # Layout
//!
//! - `inputs`: the snapshot's resources by kind.
//! - `settings`: the merged FelixConfiguration and the values read from it.
//! - `workloads`: local WorkloadEndpoints → interfaces and routes.
//! - `policy_model`: the policy model, and what is skipped when it fails.
//! - `ipam`: pools and blocks → blackholes, BGP announcements, natOutgoing.
//! - [`bgp`]: the BGP speaker's settings and peers ([`PeerKind`]).
//! - `vxlan`: the VXLAN device, remote VTEPs and their routes.
//! - `problems`: how problems are worded.

pub mod bgp;
mod bgp_filter;
mod inputs;
mod ipam;
mod policy_model;
mod problems;
mod settings;
mod vxlan;
mod workloads;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

pub use bgp::PeerKind;

use std::collections::BTreeSet;

use policy::model::EndpointKind;

use crate::state::{Calculated, Desired, HostSettings, Snapshot};

use inputs::Inputs;
use ipam::{Block, Pool};
use problems::Problems;
use settings::Settings;
use workloads::Workloads;

/// What this host's dataplane should be, given the datastore (see the
/// module docs); matches [`state::Calculate`](crate::state::Calculate).
pub fn calculate(snapshot: &Snapshot, host: &HostSettings) -> Calculated {
    let mut problems = Problems::default();
    let inputs = Inputs::read(snapshot);
    let node = host.node.as_str();
    let settings = Settings::read(&inputs, node, &mut problems);

    let mut workloads = Workloads::read(&inputs, node, &settings.interface_prefix, &mut problems);
    let config = policy::Config {
        node: Some(node.to_string()),
        workload_prefix: settings.interface_prefix.clone(),
        flow_logs: host.flow_logs,
        ..policy::Config::default()
    }
    .with_felix(&settings.felix);
    let mut policy = policy_model::build(snapshot, &workloads, config, &mut problems);
    // Only workloads the model protects are programmed.
    let modelled: BTreeSet<&str> = policy
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::Workload && e.node == node)
        .map(|e| e.name.as_str())
        .collect();
    workloads
        .local
        .retain(|_, w| modelled.contains(w.endpoint.as_str()));
    let mut routes = workloads::routes(&workloads.local, &mut problems);

    let pools = Pool::read_all(&inputs, &mut problems);
    let blocks = Block::read_all(&snapshot.blocks, &pools, &mut problems);
    routes.extend(ipam::blackholes(&blocks, node));
    policy.config.nat_outgoing = ipam::nat_outgoing(
        &pools,
        settings.felix.nat_outgoing_exclusions.unwrap_or_default(),
        inputs.nodes.values().copied(),
    );

    let bgp = if host.bgp_enabled {
        let announce = ipam::announcements(&pools, &blocks, node, workloads.local.values());
        bgp::desired(&inputs, node, announce, &mut problems)
    } else {
        None
    };
    let vxlan = vxlan::desired(&inputs, &pools, &blocks, &settings, node, &mut problems).map(
        |(vxlan, via)| {
            routes.extend(via);
            vxlan
        },
    );

    Calculated {
        desired: Desired {
            workloads: workloads.local,
            routes,
            policy,
            bgp,
            vxlan,
        },
        problems: problems.into_vec(),
    }
}
