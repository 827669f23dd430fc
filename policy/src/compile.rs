//! [`compile`]: the pure function from a [`Model`] to a [`Ruleset`].
//!
//! # Shape of the ruleset
//!
//! ```text
//! forward (hook)  ct established,related accept
//!                 iifname "cali*" jump from-wl ── iifname vmap @wl-from ─ goto wl-out-<if>   (workload egress)
//!                 oifname "cali*" jump to-wl   ── oifname vmap @wl-to   ─ goto wl-in-<if>    (workload ingress)
//! input (hook)    ct established,related accept; ICMPv6 ND accept
//!                 iifname "cali*" goto wl-to-host: DHCP accept, jump from-wl, then endpoint-to-host action
//!                 iifname vmap @hep-from ─ goto hep-in-<if>                                   (host endpoint ingress)
//! output (hook)   ct established,related accept; ICMPv6 ND accept
//!                 oifname "cali*" accept (the host reaches its own workloads, as in Calico)
//!                 oifname vmap @hep-to ─ goto hep-out-<if>                                    (host endpoint egress)
//! ```
//!
//! Directions are Calico's: a workload's *ingress* is traffic to it (leaving
//! the host by its `cali` interface, `oifname`), its *egress* traffic from it
//! (`iifname`); a host endpoint's ingress is traffic arriving on its interface
//! for the host (hook input), its egress traffic the host sends out of it
//! (hook output). A `cali` interface no endpoint claims drops everything.
//!
//! An endpoint chain is entered by `goto`, so its final `return` (allowed)
//! goes back to the base chain, which goes on (to the other endpoint of a
//! workload-to-workload packet) and finally accepts by policy. It runs:
//!
//! ```text
//! ct state invalid drop
//! clear the ALLOW and PASS mark bits
//! per tier with a policy that selects the endpoint in this direction, in order:
//!     per policy, in order: (PASS clear) jump <policy chain>; (ALLOW set) return
//!     (PASS clear) drop            -- the tier's default action Deny; nothing for Pass
//!     clear PASS
//! per profile of the endpoint: jump <profile chain>; (ALLOW set) return
//! drop                             -- fail closed
//! ```
//!
//! A policy chain holds the policy's rules for one direction, shared by every
//! endpoint it selects: Allow sets ALLOW and returns, Pass sets PASS and
//! returns, Deny drops, Log logs and goes on. A rule becomes one nft rule per
//! address family it needs (selector and `nets` sets are per family) and per
//! alternative of its ports (numeric ports together, each named port apart).

use std::collections::{BTreeMap, HashMap};

use api::{
    Port, Protocol,
    resources::policy::{Action, IcmpFields, PolicyType, TierDefaultAction},
    selector::Expr,
};

use crate::ir::{
    BaseChain, Chain, CtState, Family, Hook, Iface, MARK_ALLOW, MARK_PASS, Match, Rule, Ruleset,
    Side, Statement, Verdict, VerdictMap,
};
use crate::model::{Endpoint, EndpointKind, EndpointToHost, Entity, Model, Policy, PolicyScope};
use crate::sets::{SetRegistry, name};

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

/// Compiles the model into the ruleset for table [`TABLE`](crate::ir::TABLE).
/// Deterministic: the same model gives an identical ruleset.
pub fn compile(model: &Model) -> Ruleset {
    let mut c = Compiler {
        model,
        sets: SetRegistry::new(model),
        chains: BTreeMap::new(),
        maps: [MAP_WL_FROM, MAP_WL_TO, MAP_HEP_FROM, MAP_HEP_TO]
            .into_iter()
            .map(|m| (m.to_string(), VerdictMap::default()))
            .collect(),
    };
    c.base_chains();
    let local: Vec<(&Endpoint, &str)> = model
        .endpoints
        .iter()
        .filter(|e| model.is_local(e))
        .filter_map(|e| Some((e, e.interface.as_deref()?)))
        .collect();
    let selecting = selecting_policies(model, &local);
    for ((ep, interface), policies) in local.iter().zip(&selecting) {
        c.endpoint(ep, interface, policies);
    }
    for (map, comment) in [
        (MAP_WL_FROM, "workload interface -> egress chain"),
        (MAP_WL_TO, "workload interface -> ingress chain"),
        (
            MAP_HEP_FROM,
            "host interface -> host endpoint ingress chain",
        ),
        (MAP_HEP_TO, "host interface -> host endpoint egress chain"),
    ] {
        if let Some(m) = c.maps.get_mut(map) {
            m.comment = comment.to_string();
        }
    }
    Ruleset {
        sets: c.sets.into_sets(),
        maps: c.maps,
        chains: c.chains,
    }
}

/// For each of `endpoints`, the (tier index, policy index) of every policy
/// whose selector selects it, in tier and policy order. Each distinct
/// selector is evaluated once per endpoint, however many policies share it.
fn selecting_policies(model: &Model, endpoints: &[(&Endpoint, &str)]) -> Vec<Vec<(usize, usize)>> {
    let mut selected: HashMap<&Expr, Vec<usize>> = HashMap::new();
    let mut selecting = vec![Vec::new(); endpoints.len()];
    for (t, tier) in model.tiers.iter().enumerate() {
        for (j, policy) in tier.policies.iter().enumerate() {
            let eps = selected.entry(&policy.selector).or_insert_with(|| {
                (0..endpoints.len())
                    .filter(|&e| policy.selector.matches(&endpoints[e].0.labels))
                    .collect()
            });
            for &e in eps.iter() {
                selecting[e].push((t, j));
            }
        }
    }
    selecting
}

struct Compiler<'m> {
    model: &'m Model,
    sets: SetRegistry<'m>,
    chains: BTreeMap<String, Chain>,
    maps: BTreeMap<String, VerdictMap>,
}

fn direction_word(direction: PolicyType) -> &'static str {
    match direction {
        PolicyType::Ingress => "in",
        PolicyType::Egress => "out",
    }
}

fn mark_is(mask: u32, set: bool) -> Match {
    Match::Mark {
        mask,
        value: if set { mask } else { 0 },
    }
}

fn statement_rule(statement: Statement) -> Rule {
    Rule {
        statements: vec![statement],
        ..Rule::default()
    }
}

fn regular(rules: Vec<Rule>) -> Chain {
    Chain { base: None, rules }
}

impl Compiler<'_> {
    fn base_chains(&mut self) {
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
            base: Some(BaseChain { hook }),
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
        for (name, chain) in chains {
            self.chains.insert(name.to_string(), chain);
        }
    }

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

    fn endpoint(&mut self, ep: &Endpoint, interface: &str, selecting: &[(usize, usize)]) {
        let (kind, from_map, to_map) = match ep.kind {
            EndpointKind::Workload => ("wl", MAP_WL_FROM, MAP_WL_TO),
            EndpointKind::Host => ("hep", MAP_HEP_FROM, MAP_HEP_TO),
        };
        for direction in [PolicyType::Ingress, PolicyType::Egress] {
            let chain = name(&format!("{kind}-{}", direction_word(direction)), interface);
            let rules = self.endpoint_rules(ep, direction, selecting);
            self.chains.insert(chain.clone(), regular(rules));
            // A workload's ingress is traffic leaving by its interface; a host
            // endpoint's ingress is traffic arriving on it.
            let map = match (ep.kind, direction) {
                (EndpointKind::Workload, PolicyType::Ingress)
                | (EndpointKind::Host, PolicyType::Egress) => to_map,
                _ => from_map,
            };
            if let Some(m) = self.maps.get_mut(map) {
                m.elements
                    .insert(interface.to_string(), Verdict::Goto(chain));
            }
        }
    }

    /// `selecting`: the (tier, policy) indices selecting `ep`, in order.
    fn endpoint_rules(
        &mut self,
        ep: &Endpoint,
        direction: PolicyType,
        selecting: &[(usize, usize)],
    ) -> Vec<Rule> {
        let model = self.model;
        let mut rules = vec![
            Rule::new(vec![Match::CtState(vec![CtState::Invalid])], Verdict::Drop),
            statement_rule(Statement::MarkClear(MARK_ALLOW | MARK_PASS)),
        ];
        for (t, tier) in model.tiers.iter().enumerate() {
            let policies: Vec<&Policy> = selecting
                .iter()
                .filter(|&&(pt, _)| pt == t)
                .map(|&(_, j)| &tier.policies[j])
                .filter(|p| p.rules(direction).is_some())
                .collect();
            if policies.is_empty() {
                continue;
            }
            for policy in policies {
                let chain = self.policy_chain(policy, direction);
                rules.push(
                    Rule::new(vec![mark_is(MARK_PASS, false)], Verdict::Jump(chain))
                        .comment(format!("policy {}", policy.display_name())),
                );
                rules.push(Rule::new(vec![mark_is(MARK_ALLOW, true)], Verdict::Return));
            }
            if tier.default_action == TierDefaultAction::Deny {
                rules.push(
                    Rule::new(vec![mark_is(MARK_PASS, false)], Verdict::Drop)
                        .comment(format!("tier {}: default deny", tier.name)),
                );
            }
            rules.push(statement_rule(Statement::MarkClear(MARK_PASS)));
        }
        for profile in ep
            .profiles
            .iter()
            .filter(|p| model.profiles.contains_key(*p))
        {
            let chain = self.profile_chain(profile, direction);
            rules.push(
                Rule::new(vec![], Verdict::Jump(chain)).comment(format!("profile {profile}")),
            );
            rules.push(Rule::new(vec![mark_is(MARK_ALLOW, true)], Verdict::Return));
        }
        rules.push(Rule::new(vec![], Verdict::Drop).comment("no policy or profile allowed"));
        rules
    }

    fn policy_chain(&mut self, policy: &Policy, direction: PolicyType) -> String {
        let d = direction_word(direction);
        let chain = match &policy.scope {
            PolicyScope::Global => name(&format!("gnp-{d}"), &policy.name),
            PolicyScope::Namespace(ns) => {
                name(&format!("np-{d}"), &format!("{ns}/{}", policy.name))
            }
        };
        if !self.chains.contains_key(&chain) {
            let rules = policy.rules(direction).unwrap_or_default();
            let origin = format!("{} {}", policy.display_name(), field(direction));
            let compiled = self.rules(rules, &origin);
            self.chains.insert(chain.clone(), regular(compiled));
        }
        chain
    }

    fn profile_chain(&mut self, profile: &str, direction: PolicyType) -> String {
        let chain = name(&format!("pro-{}", direction_word(direction)), profile);
        if !self.chains.contains_key(&chain) {
            let p = &self.model.profiles[profile];
            let rules = match direction {
                PolicyType::Ingress => &p.ingress,
                PolicyType::Egress => &p.egress,
            };
            let compiled = self.rules(rules, &format!("profile {profile} {}", field(direction)));
            self.chains.insert(chain.clone(), regular(compiled));
        }
        chain
    }

    fn rules(&mut self, rules: &[crate::model::Rule], origin: &str) -> Vec<Rule> {
        let mut out = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let comment = format!("{origin}[{i}]");
            let (statements, verdict) = match rule.action {
                Action::Allow => (vec![Statement::MarkSet(MARK_ALLOW)], Some(Verdict::Return)),
                Action::Pass => (vec![Statement::MarkSet(MARK_PASS)], Some(Verdict::Return)),
                Action::Deny => (vec![], Some(Verdict::Drop)),
                Action::Log => (
                    vec![Statement::Log {
                        prefix: format!("{} ", self.model.config.log_prefix),
                    }],
                    None,
                ),
            };
            for matches in self.rule_matches(rule) {
                out.push(Rule {
                    matches,
                    statements: statements.clone(),
                    verdict: verdict.clone(),
                    comment: Some(comment.clone()),
                });
            }
        }
        out
    }

    /// The match lists one policy rule becomes (none when it can never match).
    fn rule_matches(&mut self, rule: &crate::model::Rule) -> Vec<Vec<Match>> {
        let icmp_family = rule.protocol.and_then(Protocol::icmp_version);
        let allowed = |f: Family| {
            rule.ip_version.is_none_or(|v| v == f.number())
                && icmp_family.is_none_or(|v| v == f.number())
        };
        let variants: Vec<Option<Family>> =
            if needs_family(&rule.source) || needs_family(&rule.destination) {
                Family::BOTH
                    .into_iter()
                    .filter(|f| allowed(*f))
                    .map(Some)
                    .collect()
            } else {
                let fixed = rule
                    .ip_version
                    .map(|v| if v == 6 { Family::V6 } else { Family::V4 });
                vec![fixed]
            };
        let mut out = Vec::new();
        for family in variants {
            out.extend(self.variant(rule, family));
        }
        out
    }

    fn variant(&mut self, rule: &crate::model::Rule, family: Option<Family>) -> Vec<Vec<Match>> {
        let mut common = Vec::new();
        if let (Some(f), Some(_)) = (family, rule.ip_version) {
            common.push(Match::Nfproto(f));
        }
        if let Some(p) = rule.protocol {
            common.push(Match::L4proto {
                proto: p.number(),
                negate: false,
            });
        }
        if let Some(p) = rule.not_protocol {
            common.push(Match::L4proto {
                proto: p.number(),
                negate: true,
            });
        }
        let icmp_family = match rule.protocol.and_then(Protocol::icmp_version) {
            Some(6) => Family::V6,
            _ => Family::V4,
        };
        for (icmp, negate) in [(rule.icmp, false), (rule.not_icmp, true)] {
            if let Some(IcmpFields {
                icmp_type: Some(t),
                code,
            }) = icmp
            {
                common.push(Match::Icmp {
                    family: icmp_family,
                    types: vec![t],
                    code,
                    negate,
                });
            }
        }
        let proto = rule.protocol.map_or(0, Protocol::number);
        let mut alternatives = vec![common];
        for (side, entity) in [
            (Side::Source, &rule.source),
            (Side::Destination, &rule.destination),
        ] {
            let Some(side_alts) = self.entity(entity, side, family, proto) else {
                return Vec::new();
            };
            alternatives = alternatives
                .into_iter()
                .flat_map(|base| {
                    side_alts.iter().map(move |alt| {
                        let mut m = base.clone();
                        m.extend(alt.iter().cloned());
                        m
                    })
                })
                .collect();
        }
        alternatives
    }

    /// The alternatives one side of a rule adds (each a list of matches), or
    /// `None` when the side can never match in this family.
    fn entity(
        &mut self,
        e: &Entity,
        side: Side,
        family: Option<Family>,
        proto: u8,
    ) -> Option<Vec<Vec<Match>>> {
        let mut common = Vec::new();
        if let Some(f) = family {
            let addr = |set: String, negate| Match::Addr {
                family: f,
                side,
                set,
                negate,
            };
            if !e.nets.is_empty() {
                common.push(addr(self.sets.nets(&e.nets, f)?, false));
            }
            if let Some(set) = self.sets.nets(&e.not_nets, f) {
                common.push(addr(set, true));
            }
            if let Some(sel) = &e.selector {
                common.push(addr(self.sets.selector(sel, f), false));
            }
            if let Some(sel) = &e.not_selector {
                common.push(addr(self.sets.selector(sel, f), true));
            }
        }
        let (numeric, named) = split_ports(&e.not_ports);
        if !numeric.is_empty() {
            common.push(Match::Ports {
                side,
                ranges: numeric,
                negate: true,
            });
        }
        let all = Expr::All;
        let port_selector = e.selector.as_ref().unwrap_or(&all);
        if let Some(f) = family {
            for port in named {
                let set = self.sets.named_port(port_selector, proto, port, f);
                common.push(Match::AddrPort {
                    family: f,
                    side,
                    set,
                    negate: true,
                });
            }
        }
        if e.ports.is_empty() {
            return Some(vec![common]);
        }
        let (numeric, named) = split_ports(&e.ports);
        let mut alternatives = Vec::new();
        if !numeric.is_empty() {
            let mut m = common.clone();
            m.push(Match::Ports {
                side,
                ranges: numeric,
                negate: false,
            });
            alternatives.push(m);
        }
        if let Some(f) = family {
            for port in named {
                let mut m = common.clone();
                m.push(Match::AddrPort {
                    family: f,
                    side,
                    set: self.sets.named_port(port_selector, proto, port, f),
                    negate: false,
                });
                alternatives.push(m);
            }
        }
        Some(alternatives)
    }
}

fn field(direction: PolicyType) -> &'static str {
    match direction {
        PolicyType::Ingress => "ingress",
        PolicyType::Egress => "egress",
    }
}

/// Whether a side needs per-family sets.
fn needs_family(e: &Entity) -> bool {
    !e.nets.is_empty()
        || !e.not_nets.is_empty()
        || e.selector.is_some()
        || e.not_selector.is_some()
        || e.ports
            .iter()
            .chain(&e.not_ports)
            .any(|p| matches!(p, Port::Named(_)))
}

/// Numeric ports as sorted, merged ranges, and the names of named ports.
fn split_ports(ports: &[Port]) -> (Vec<(u16, u16)>, Vec<&str>) {
    let mut ranges: Vec<(u16, u16)> = ports.iter().filter_map(Port::bounds).collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some((_, last_hi)) if u32::from(lo) <= u32::from(*last_hi) + 1 => {
                *last_hi = (*last_hi).max(hi);
            }
            _ => merged.push((lo, hi)),
        }
    }
    let mut named: Vec<&str> = ports
        .iter()
        .filter_map(|p| match p {
            Port::Named(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    named.sort_unstable();
    named.dedup();
    (merged, named)
}
