//! Endpoint chains: one per local endpoint, hop and direction, entered from
//! a verdict map by the endpoint's interface.
//!
//! Directions are Calico's: a workload's *ingress* is traffic to it (leaving
//! the host by its `cali` interface, `oifname`), its *egress* traffic from it
//! (`iifname`); a host endpoint's ingress is traffic arriving on its interface
//! for the host (hook input), its egress traffic the host sends out of it
//! (hook output). A `cali` interface no endpoint claims drops everything.
//!
//! An endpoint chain is a function of its [`Step`]s (see [`endpoint_chain`]
//! for its layout), so endpoints selected by the same policies share one:
//! in memory, and in the kernel, where it is named by the hash of its rules
//! ([`endpoint_chain_name`]) and every interface's map element goes to it.
//! The kernel validates every chain a base chain reaches at each commit that
//! adds a verdict (a policy edit), once per chain and hook; a chain shared
//! by a thousand endpoints is validated once, not a thousand times.

use std::sync::Arc;

use api::resources::policy::{PolicyType, TierDefaultAction};

use super::{Lowering, Policies, direction_index, direction_word, regular};
use crate::flowlog::{self, ChainLog, Decider, tier_key};
use crate::ir::{Chain, CtState, MARK_PASS, Match, Rule, Ruleset, Statement, Verdict};
use crate::memo::Memo;
use crate::model::{ALL_INTERFACES, Endpoint, EndpointKind, Model, Policy};
use crate::sets::name;
use crate::stages::{
    Features, Hop, MAP_LIMIT_FROM, MAP_LIMIT_TO, MAP_PRE_FROM, all_interfaces_chain,
};

use super::base::{MAP_HEP_FROM, MAP_HEP_TO, MAP_WL_FROM, MAP_WL_TO};

/// One part of an endpoint chain; the chain is a function of its steps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    /// Jump to a policy chain, return if it allowed.
    Policy { chain: Arc<str>, display: Arc<str> },
    /// The end of a tier that had policies: its default action, clear PASS.
    TierEnd { tier: Arc<str>, deny: bool },
    /// Jump to a profile chain, return if it allowed.
    Profile { chain: Arc<str>, profile: Arc<str> },
    /// A workload's connection limit in this direction (first, before any
    /// policy): new connections beyond the count are dropped. (Its packet
    /// rate limit is met by every packet, in a chain of its own: see
    /// [`packet_rate_chain`].)
    MaxConnections(u32),
}

/// The chain a step jumps to, for [`endpoint_steps`] to resolve to a chain
/// name and a name for the comment.
pub enum Target<'a> {
    /// The policy at (tier, index).
    Policy(usize, usize),
    Profile(&'a str),
}

impl Lowering<'_> {
    /// The chains of the local endpoint `e` on `interface`, in every hop and
    /// direction it gets one, and their entries in the verdict maps (a
    /// workload's ingress chain is found by `oifname`, a host endpoint's by
    /// `iifname`: see the module doc).
    pub(super) fn add_endpoint_chains(
        &mut self,
        memo: &mut Memo,
        features: Features,
        policies: &mut Policies,
        e: usize,
        interface: &str,
    ) {
        let model = self.model;
        let ep = &model.endpoints[e];
        let wildcard = ep.kind == EndpointKind::Host && interface == ALL_INTERFACES;
        if ep.kind == EndpointKind::Workload {
            for (limits, word, map) in [
                (ep.limits.ingress, "in", MAP_LIMIT_TO),
                (ep.limits.egress, "out", MAP_LIMIT_FROM),
            ] {
                let Some((rate, burst)) = limits.packet_rate else {
                    continue;
                };
                let chain = name(&format!("wl-limit-{word}"), interface);
                self.chains
                    .insert(chain.clone(), Arc::new(packet_rate_chain(rate, burst)));
                if let Some(m) = self.maps.get_mut(map) {
                    m.elements
                        .insert(interface.to_string(), Verdict::Jump(chain));
                }
            }
        }
        for hop in features.hops(ep.kind) {
            // Calico enforces normal and pre-DNAT policy only on all interfaces.
            if wildcard && matches!(hop, Hop::Forward | Hop::Untracked) {
                continue;
            }
            for &direction in hop.directions() {
                let d = direction_index(direction);
                let selected = |&(t, j): &(usize, usize)| {
                    let p: &Policy = &model.tiers[t].policies[j];
                    hop.selects(p) && p.rules(direction).is_some()
                };
                if hop.only_when_selected() && !policies.selecting[e].iter().any(selected) {
                    // Its own interface passes pre-DNAT rather than meet
                    // the host endpoint for all interfaces there.
                    if hop == Hop::PreDnat
                        && features.all_interfaces_pre_dnat
                        && !wildcard
                        && let Some(m) = self.maps.get_mut(MAP_PRE_FROM)
                    {
                        m.elements.insert(interface.to_string(), Verdict::Accept);
                    }
                    continue;
                }
                let steps = endpoint_steps(
                    model,
                    &policies.tiers,
                    &policies.selecting[e],
                    ep,
                    hop,
                    direction,
                    |target| match target {
                        Target::Policy(t, j) => {
                            let slot = &mut policies.names[policies.offsets[t] + j];
                            let policy = &model.tiers[t].policies[j];
                            Some(self.policy_chain(memo, slot, policy, d))
                        }
                        Target::Profile(profile) => self.profile_chain(memo, profile, d),
                    },
                );
                let log = self
                    .flow_log_group(hop != Hop::Untracked)
                    .map(|group| ChainLog {
                        group,
                        ingress: flowlog::is_ingress(direction),
                    });
                let (made, hash) = memo.endpoint_chain(hop, log, steps);
                let chain = endpoint_chain_name(ep, hop, direction, interface, &made, hash);
                self.chains.insert(chain.clone(), made);
                let map = endpoint_map(ep.kind, hop, direction);
                // The host endpoint for all interfaces is reached by a
                // rule of the base chain after the lookup.
                if let Some(m) = self.maps.get_mut(map).filter(|_| !wildcard) {
                    m.elements
                        .insert(interface.to_string(), Verdict::Goto(chain));
                }
            }
        }
    }
}

/// `wl-limit-in-<if>` / `wl-limit-out-<if>`: packets beyond the workload's
/// rate in this direction are dropped, the others return.
pub fn packet_rate_chain(rate: u64, burst: u32) -> Chain {
    regular(vec![
        Rule::new(vec![Match::RateOver { rate, burst }], Verdict::Drop).comment("qos: packet rate"),
    ])
}

/// The model's tier names, shared by the steps that end each tier.
pub fn tier_names(model: &Model) -> Vec<Arc<str>> {
    model.tiers.iter().map(|t| t.name.as_str().into()).collect()
}

/// The steps of an endpoint's chain in one hop for one direction: per tier,
/// the policies selecting it (`selecting`: (tier, index), in order) that
/// apply in the hop and have rules in this direction, then the tier's end;
/// then (filter hop) its profiles that `resolve` knows.
pub fn endpoint_steps(
    model: &Model,
    tiers: &[Arc<str>],
    selecting: &[(usize, usize)],
    ep: &Endpoint,
    hop: Hop,
    direction: PolicyType,
    mut resolve: impl FnMut(Target<'_>) -> Option<(Arc<str>, Arc<str>)>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let limits = match direction {
        PolicyType::Ingress => ep.limits.ingress,
        PolicyType::Egress => ep.limits.egress,
    };
    if hop == Hop::Filter
        && ep.kind == EndpointKind::Workload
        && let Some(count) = limits.max_connections
    {
        steps.push(Step::MaxConnections(count));
    }
    for (t, tier) in model.tiers.iter().enumerate() {
        let before = steps.len();
        for &(_, j) in selecting.iter().filter(|&&(pt, _)| pt == t) {
            if !hop.selects(&tier.policies[j]) || tier.policies[j].rules(direction).is_none() {
                continue;
            }
            if let Some((chain, display)) = resolve(Target::Policy(t, j)) {
                steps.push(Step::Policy { chain, display });
            }
        }
        if steps.len() > before {
            steps.push(Step::TierEnd {
                tier: tiers[t].clone(),
                deny: hop.tier_deny() && tier.default_action == TierDefaultAction::Deny,
            });
        }
    }
    for profile in ep.profiles.iter().filter(|_| hop.profiles()) {
        if let Some((chain, profile)) = resolve(Target::Profile(profile)) {
            steps.push(Step::Profile { chain, profile });
        }
    }
    steps
}

/// The verdict map that leads to an endpoint's chain in a hop and direction
/// (by its interface): `wl-to`/`wl-from` for a workload, `hep-from`/`hep-to`
/// for a host endpoint (ingress is traffic *to* a workload but *from* a host
/// interface), the hop's own map in the other hops.
pub fn endpoint_map(kind: EndpointKind, hop: Hop, direction: PolicyType) -> &'static str {
    match (kind, direction) {
        _ if hop != Hop::Filter => hop.host_map(direction).unwrap_or_default(),
        (EndpointKind::Workload, PolicyType::Ingress) => MAP_WL_TO,
        (EndpointKind::Workload, PolicyType::Egress) => MAP_WL_FROM,
        (EndpointKind::Host, PolicyType::Ingress) => MAP_HEP_FROM,
        (EndpointKind::Host, PolicyType::Egress) => MAP_HEP_TO,
    }
}

/// The chain the ruleset's maps lead an endpoint's `interface` to in a hop
/// and direction (the fixed chain of the host endpoint for all interfaces),
/// if it has one.
pub fn endpoint_chain_of(
    ruleset: &Ruleset,
    ep: &Endpoint,
    hop: Hop,
    direction: PolicyType,
    interface: &str,
) -> Option<String> {
    if ep.kind == EndpointKind::Host && interface == ALL_INTERFACES {
        let chain = all_interfaces_chain(hop, direction);
        return ruleset.chains.contains_key(chain.as_str()).then_some(chain);
    }
    let map = ruleset.maps.get(endpoint_map(ep.kind, hop, direction))?;
    match map.elements.get(interface)? {
        Verdict::Goto(chain) | Verdict::Jump(chain) => Some(chain.clone()),
        _ => None,
    }
}

/// The kernel's name for an endpoint's `chain` (whose rules hash to
/// `hash`) in a hop and direction: `wl-in-<hash>`, `hep-out-<hash>`,
/// `hep-raw-in-<hash>`, ... Endpoints with the same chain share it, so the
/// kernel holds it (and validates it at every commit) once, not once per
/// endpoint. Two exceptions:
///
/// - a chain that counts connections (a workload's `MaxConnections`) is
///   the endpoint's own, `wl-in-<if>`: the kernel counts per chain;
/// - the host endpoint for all interfaces has fixed names
///   ([`all_interfaces_chain`]).
pub fn endpoint_chain_name(
    ep: &Endpoint,
    hop: Hop,
    direction: PolicyType,
    interface: &str,
    chain: &Chain,
    hash: u64,
) -> String {
    if ep.kind == EndpointKind::Host && interface == ALL_INTERFACES {
        return all_interfaces_chain(hop, direction);
    }
    let kind = match ep.kind {
        EndpointKind::Workload => "wl",
        EndpointKind::Host => hop.host_kind(),
    };
    let prefix = format!("{kind}-{}", direction_word(direction));
    let counts_connections = (chain.rules.iter())
        .any(|r| (r.matches.iter()).any(|m| matches!(m, Match::ConnectionsOver { .. })));
    if counts_connections {
        name(&prefix, interface)
    } else {
        format!("{prefix}-{hash:016x}")
    }
}

/// An endpoint chain in a hop, from its steps. It is entered by `goto`, so
/// its final `return` (allowed) goes back to the base chain, which goes on
/// (to the other endpoint of a workload-to-workload packet) and finally
/// accepts by policy. In the filter hop it runs:
///
/// ```text
/// ct state invalid drop
/// clear the ALLOW and PASS mark bits
/// per tier with a policy that selects the endpoint in this direction, in order:
///     per policy, in order: (PASS clear) jump <policy chain>; (ALLOW set) return
///     (PASS clear) drop            -- the tier's default action Deny; nothing for Pass
///     clear PASS
/// per profile of the endpoint: jump <profile chain>; (ALLOW set) return
/// drop                             -- fail closed
/// ```
///
/// The other hops differ in their first and last rules and in what follows
/// an Allow (the `stages` module: [`Hop::prelude`], [`Hop::on_allow`],
/// [`Hop::last`]). With `log`, a tier's default deny and the last drop log
/// their [`Decider`] first.
pub fn endpoint_chain(hop: Hop, log: Option<ChainLog>, steps: &[Step]) -> Chain {
    let pass_clear = || {
        vec![Match::Mark {
            mask: MARK_PASS,
            value: 0,
        }]
    };
    let mut rules = hop.prelude();
    for step in steps {
        match step {
            Step::Policy { chain, display } => {
                rules.push(
                    Rule::new(pass_clear(), Verdict::Jump(chain.to_string()))
                        .comment(format!("policy {display}")),
                );
                rules.push(hop.on_allow());
            }
            Step::TierEnd { tier, deny } => {
                if *deny {
                    let mut rule = Rule::new(pass_clear(), Verdict::Drop)
                        .comment(format!("tier {tier}: default deny"));
                    if let Some(log) = log {
                        let decider = Decider::TierEnd {
                            ingress: log.ingress,
                            tier: tier_key(tier),
                        };
                        rule.statements.insert(0, decider.log(log.group));
                    }
                    rules.push(rule);
                }
                rules.push(Rule {
                    statements: vec![Statement::MarkClear(MARK_PASS)],
                    ..Rule::default()
                });
            }
            Step::Profile { chain, profile } => {
                rules.push(
                    Rule::new(vec![], Verdict::Jump(chain.to_string()))
                        .comment(format!("profile {profile}")),
                );
                rules.push(hop.on_allow());
            }
            Step::MaxConnections(count) => {
                rules.push(
                    Rule::new(
                        vec![
                            Match::CtState(vec![CtState::New]),
                            Match::ConnectionsOver { count: *count },
                        ],
                        Verdict::Drop,
                    )
                    .comment("qos: max connections"),
                );
            }
        }
    }
    rules.extend(hop.last().map(|mut last| {
        if let Some(log) = log.filter(|_| last.verdict == Some(Verdict::Drop)) {
            let decider = Decider::NoMatch {
                ingress: log.ingress,
            };
            last.statements.insert(0, decider.log(log.group));
        }
        last
    }));
    regular(rules)
}
