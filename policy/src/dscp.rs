//! DSCP marking (a workload's `qosControls.dscp`, Calico 3.31): traffic from
//! the workload to destinations outside the cluster (every IP pool, and
//! with `natOutgoingExclusions: IPPoolsAndHostIPs` every host) leaves with
//! the DSCP value in its IP header:
//!
//! ```text
//! set dscp-cluster4, dscp-cluster6   every pool (and host) of the family
//! chain qos-dscp                     type filter hook postrouting priority mangle
//!     iifname "caliX" ip daddr != @dscp-cluster4 ip dscp set 46
//!     iifname "caliX" ip6 daddr != @dscp-cluster6 ip6 dscp set 46
//! ```
//!
//! Only a model with a local workload that has a DSCP value gets these
//! objects; they depend on the endpoints and the pools alone.

use std::sync::Arc;

use ipnet::IpNet;

use crate::ir::{
    BaseChain, Chain, ChainType, Family, Hook, Iface, Match, Priority, Rule, Ruleset, Set,
    SetElement, SetKey, Side, Statement,
};
use crate::model::{EndpointKind, Model};
use crate::sets::aggregate;

/// The DSCP base chain.
pub const CHAIN: &str = "qos-dscp";

/// The set of a family's cluster destinations (`dscp-cluster4`, ...).
pub fn cluster_set(family: Family) -> String {
    format!("dscp-cluster{}", family.number())
}

/// Takes the objects [`add_to`] may have put in out of a ruleset again.
pub(crate) fn remove_from(ruleset: &mut Ruleset) {
    ruleset.chains.remove(CHAIN);
    for family in Family::BOTH {
        ruleset.sets.remove(&cluster_set(family));
    }
}

/// The DSCP objects of `model`: sets and chain, or nothing.
pub(crate) fn add_to(model: &Model, ruleset: &mut Ruleset) {
    let marked: Vec<(&str, u8)> = model
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::Workload && model.is_local(e))
        .filter_map(|e| Some((e.interface.as_deref()?, e.limits.dscp?)))
        .collect();
    if marked.is_empty() {
        return;
    }
    let nat = &model.config.nat_outgoing;
    let mut rules = Vec::new();
    for family in Family::BOTH {
        let nets: Vec<IpNet> = nat
            .pools
            .iter()
            .chain(&nat.masquerade)
            .chain(&nat.hosts)
            .copied()
            .filter(|n| Family::of(n) == family)
            .collect();
        let name = cluster_set(family);
        ruleset.sets.insert(
            name.clone(),
            Set {
                key: SetKey::Net(family),
                comment: "cluster destinations: no DSCP".into(),
                elements: aggregate(nets).into_iter().map(SetElement::Net).collect(),
            },
        );
        for (iface, value) in &marked {
            rules.push(
                Rule {
                    matches: vec![
                        Match::Iface {
                            iface: Iface::In,
                            name: (*iface).to_string(),
                            negate: false,
                        },
                        Match::Nfproto(family),
                        Match::Addr {
                            family,
                            side: Side::Destination,
                            set: name.clone(),
                            negate: true,
                        },
                    ],
                    statements: vec![Statement::DscpSet {
                        family,
                        value: *value,
                    }],
                    ..Rule::default()
                }
                .comment("qos: dscp"),
            );
        }
    }
    ruleset.chains.insert(
        CHAIN.into(),
        Arc::new(Chain {
            base: Some(BaseChain {
                kind: ChainType::Filter,
                hook: Hook::Postrouting,
                priority: Priority::Mangle,
            }),
            rules,
        }),
    );
}
