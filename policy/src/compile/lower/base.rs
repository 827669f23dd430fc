//! The base chains (one per hook) and the dispatch chains and verdict maps
//! behind them: the shape of the ruleset.
//!
//! ```text
//! forward (hook)  ct established,related accept
//!                 iifname "cali*" jump from-wl ── iifname vmap @wl-from ─ goto wl-out-<h>    (workload egress)
//!                 oifname "cali*" jump to-wl   ── oifname vmap @wl-to   ─ goto wl-in-<h>     (workload ingress)
//! input (hook)    ct established,related accept; ICMPv6 ND accept
//!                 iifname "cali*" goto wl-to-host: DHCP accept, jump from-wl, then endpoint-to-host action
//!                 failsafe inbound ports accept                                               (with host endpoints)
//!                 iifname vmap @hep-from ─ goto hep-in-<h>                                    (host endpoint ingress)
//! output (hook)   ct established,related accept; ICMPv6 ND accept
//!                 oifname "cali*" accept (the host reaches its own workloads, as in Calico)
//!                 failsafe outbound ports accept                                              (with host endpoints)
//!                 oifname vmap @hep-to ─ goto hep-out-<h>                                     (host endpoint egress)
//! (with packet rate limits, first in forward, input and output:
//!  oifname vmap @wl-limit-to, iifname vmap @wl-limit-from ─ jump wl-limit-in|out-<if>:
//!  limit rate over N/second burst B packets drop)
//! nat-outgoing    type nat, hook postrouting: natOutgoing pool to outside every pool masquerade
//!                 (only with natOutgoing pools; the `nat` module)
//! ```
//!
//! `<h>`: an endpoint chain is named by the hash of its rules, so endpoints
//! with the same chain share it (see `endpoint_chain_name`).
//!
//! Untracked, pre-DNAT and forwarded host endpoint policy add base chains,
//! maps and endpoint chains of their own, described in the `stages` module;
//! their endpoint chains jump to the same policy chains. Failsafe ports
//! (the `failsafe` module) are accepted ahead of every host endpoint
//! dispatch but the forwarded one. The chains of a host endpoint for all
//! interfaces (`*`) are reached by a rule after the per-interface lookups of
//! input, output and pre-dnat (`stages::all_interfaces_dispatch`).

use std::sync::Arc;

use api::resources::policy::PolicyType;

use super::{Lowering, count_uses, regular};
use crate::failsafe::{self, Place};
use crate::ir::{
    BaseChain, Chain, CtState, Family, Hook, Iface, Match, Priority, Rule, Side, Verdict,
};
use crate::memo::FastMap;
use crate::model::EndpointToHost;
use crate::sets::SetSource;
use crate::stages::{Features, Hop, MAP_LIMIT_FROM, MAP_LIMIT_TO, all_interfaces_dispatch};

/// Verdict map: workload interface → its egress chain.
pub const MAP_WL_FROM: &str = "wl-from";
/// Verdict map: workload interface → its ingress chain.
pub const MAP_WL_TO: &str = "wl-to";
/// Verdict map: host endpoint interface → its ingress chain.
pub const MAP_HEP_FROM: &str = "hep-from";
/// Verdict map: host endpoint interface → its egress chain.
pub const MAP_HEP_TO: &str = "hep-to";

/// ICMPv6 neighbour discovery: router solicit/advert, neighbour solicit/advert.
const ND_TYPES: [u8; 4] = [133, 134, 135, 136];
const UDP: u8 = 17;

/// The verdict maps of a ruleset with these features, with their comments.
pub(super) fn maps(features: Features) -> Vec<(&'static str, &'static str)> {
    let mut maps = features.maps();
    maps.extend([
        (MAP_WL_FROM, "workload interface -> egress chain"),
        (MAP_WL_TO, "workload interface -> ingress chain"),
        (
            MAP_HEP_FROM,
            "host interface -> host endpoint ingress chain",
        ),
        (MAP_HEP_TO, "host interface -> host endpoint egress chain"),
    ]);
    maps
}

impl Lowering<'_> {
    /// Puts the base and dispatch chains in the ruleset; returns the sets
    /// they use (failsafe `net`s).
    pub(crate) fn add_base_chains(&mut self, features: Features) -> Vec<(String, SetSource)> {
        self.sets.start_log();
        self.base_chains(features);
        let sets = self.sets.take_log();
        count_uses(&mut self.set_uses, &sets, 1);
        sets
    }

    /// Puts base and dispatch chains made before ([`Lowering::add_base_chains`]
    /// for the same features) in the ruleset, with their sets.
    pub(crate) fn add_kept_base_chains(
        &mut self,
        chains: &FastMap<String, Arc<Chain>>,
        sets: &[(String, SetSource)],
    ) {
        self.chains.clone_from(chains);
        self.add_sets(sets);
    }

    /// The chains in this lowering so far (after [`Lowering::add_base_chains`]:
    /// the base and dispatch chains).
    pub(crate) fn chains(&self) -> &FastMap<String, Arc<Chain>> {
        &self.chains
    }

    fn base_chains(&mut self, features: Features) {
        let prefix = format!("{}*", self.model.config.workload_prefix);
        let iface = |iface, name: &str| Match::Iface {
            iface,
            name: name.to_string(),
            negate: false,
        };
        let established = || {
            Rule::new(
                vec![Match::CtState(vec![CtState::Established, CtState::Related])],
                Verdict::Accept,
            )
        };
        let nd = || {
            Rule::new(
                vec![Match::Icmp {
                    family: Family::V6,
                    types: ND_TYPES.to_vec(),
                    code: None,
                    negate: false,
                }],
                Verdict::Accept,
            )
            .comment("ICMPv6 neighbour discovery")
        };
        let base = |hook, rules| Chain {
            base: Some(BaseChain::filter(hook, Priority::Filter)),
            rules,
        };
        let vmap = |i, map: &str| Rule {
            verdict: Some(Verdict::Vmap {
                iface: i,
                map: map.to_string(),
            }),
            ..Rule::default()
        };
        let chains = [
            (
                "forward",
                base(
                    Hook::Forward,
                    vec![
                        established(),
                        Rule::new(
                            vec![iface(Iface::In, &prefix)],
                            Verdict::Jump("from-wl".into()),
                        )
                        .comment("workload egress"),
                        Rule::new(
                            vec![iface(Iface::Out, &prefix)],
                            Verdict::Jump("to-wl".into()),
                        )
                        .comment("workload ingress"),
                    ],
                ),
            ),
            (
                "from-wl",
                regular(vec![
                    vmap(Iface::In, MAP_WL_FROM),
                    Rule::new(vec![], Verdict::Drop).comment("unknown workload interface"),
                ]),
            ),
            (
                "to-wl",
                regular(vec![
                    vmap(Iface::Out, MAP_WL_TO),
                    Rule::new(vec![], Verdict::Drop).comment("unknown workload interface"),
                ]),
            ),
            (
                "input",
                base(
                    Hook::Input,
                    vec![
                        established(),
                        nd(),
                        Rule::new(
                            vec![iface(Iface::In, &prefix)],
                            Verdict::Goto("wl-to-host".into()),
                        )
                        .comment("workload to host"),
                        vmap(Iface::In, MAP_HEP_FROM),
                    ],
                ),
            ),
            ("wl-to-host", regular(self.workload_to_host())),
            (
                "output",
                base(
                    Hook::Output,
                    vec![
                        established(),
                        nd(),
                        Rule::new(vec![iface(Iface::Out, &prefix)], Verdict::Accept)
                            .comment("host to its workloads"),
                        vmap(Iface::Out, MAP_HEP_TO),
                    ],
                ),
            ),
        ];
        for (name, mut chain) in chains {
            if chain.base.is_some() {
                // After `ct state established,related accept`.
                let mut at = 1;
                if let Some(rule) = features.untracked_accept() {
                    chain.rules.insert(at, rule);
                    at += 1;
                }
                let all = match name {
                    "input" => Some((Iface::In, PolicyType::Ingress)),
                    "output" => Some((Iface::Out, PolicyType::Egress)),
                    _ => None,
                };
                if let Some((i, direction)) = all.filter(|_| features.all_interfaces) {
                    let dispatch = all_interfaces_dispatch(&prefix, i, Hop::Filter, direction);
                    chain.rules.push(dispatch);
                }
                if name == "forward" && features.forward {
                    let fwd = |to: &str, what: &str| {
                        Rule::new(vec![], Verdict::Jump(to.to_string())).comment(what)
                    };
                    chain
                        .rules
                        .insert(at, fwd("from-hep-fwd", "forwarded host endpoint ingress"));
                    chain
                        .rules
                        .push(fwd("to-hep-fwd", "forwarded host endpoint egress"));
                }
            }
            if features.packet_limits {
                // Every packet, established or not, meets its workload's
                // packet rate limit first.
                let lookups: &[(Iface, &str)] = match name {
                    "forward" => &[(Iface::Out, MAP_LIMIT_TO), (Iface::In, MAP_LIMIT_FROM)],
                    "input" => &[(Iface::In, MAP_LIMIT_FROM)],
                    "output" => &[(Iface::Out, MAP_LIMIT_TO)],
                    _ => &[],
                };
                let rules = lookups
                    .iter()
                    .map(|(i, map)| vmap(*i, map).comment("workload packet rate limit"));
                chain.rules.splice(0..0, rules);
            }
            self.insert_base(features, name, chain);
        }
        for (name, chain) in features.chains(&prefix) {
            self.insert_base(features, name, chain);
        }
    }

    /// Puts a base or dispatch chain in the ruleset, with the failsafe rules
    /// before its host endpoint dispatch (its verdict map) when it has some.
    fn insert_base(&mut self, features: Features, name: &str, mut chain: Chain) {
        if let Some(place) = Place::of_chain(name).filter(|_| features.hosts) {
            let rules = failsafe::rules(&self.model.config, place, &mut self.sets);
            let dispatch =
                (chain.rules.iter()).position(|r| matches!(r.verdict, Some(Verdict::Vmap { .. })));
            let at = dispatch.unwrap_or(chain.rules.len());
            chain.rules.splice(at..at, rules);
        }
        self.chains.insert(name.to_string(), Arc::new(chain));
    }

    /// `wl-to-host`: what a workload may send to the host itself.
    fn workload_to_host(&self) -> Vec<Rule> {
        let dhcp = |sport: u16, dport: u16, what: &str| {
            Rule::new(
                vec![
                    Match::L4proto {
                        proto: UDP,
                        negate: false,
                    },
                    Match::Ports {
                        side: Side::Source,
                        ranges: vec![(sport, sport)],
                        negate: false,
                    },
                    Match::Ports {
                        side: Side::Destination,
                        ranges: vec![(dport, dport)],
                        negate: false,
                    },
                ],
                Verdict::Accept,
            )
            .comment(what)
        };
        let last = match self.model.config.endpoint_to_host {
            EndpointToHost::Drop => Verdict::Drop,
            EndpointToHost::Accept => Verdict::Accept,
        };
        vec![
            dhcp(68, 67, "DHCPv4"),
            dhcp(546, 547, "DHCPv6"),
            Rule::new(vec![], Verdict::Jump("from-wl".into())).comment("workload egress policy"),
            Rule::new(vec![], last).comment("endpoint to host action"),
        ]
    }
}
