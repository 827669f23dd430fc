//! Policy and profile chains: a policy's rules for one direction, shared by
//! every endpoint it selects. Allow sets ALLOW and returns, Pass sets PASS
//! and returns, Deny drops, Log logs and goes on. A rule becomes one nft rule
//! per address family it needs (selector and `nets` sets are per family) and
//! per alternative of its ports (numeric ports together, each named port
//! apart); a rule that can never match in a family becomes none there.

use std::sync::Arc;

use api::{
    Port, Protocol,
    resources::policy::{Action, IcmpFields},
    selector::Expr,
};

use super::{Lowering, regular};
use crate::flowlog::{Decider, Decision};
use crate::ir::{Chain, Family, MARK_ALLOW, MARK_PASS, Match, Rule, Side, Statement, Verdict};
use crate::model::Entity;
use crate::sets::SetSource;

/// A compiled chain with the sets its rules asked for (name, source), in order.
#[derive(Debug)]
pub struct CompiledChain {
    pub chain: Arc<Chain>,
    pub sets: Vec<(String, SetSource)>,
}

impl Lowering<'_> {
    /// A policy or profile chain of these rules (`origin` names them in
    /// comments), with the sets they asked for. With `log` (an NFLOG group
    /// and the chain's name), each Allow, Deny and Pass rule first logs its
    /// [`Decider`] there.
    pub(crate) fn compile_chain(
        &mut self,
        rules: &[crate::model::Rule],
        origin: &str,
        log: Option<(u16, &str)>,
    ) -> CompiledChain {
        self.sets.start_log();
        let compiled = self.rules(rules, origin, log);
        CompiledChain {
            chain: Arc::new(regular(compiled)),
            sets: self.sets.take_log(),
        }
    }

    fn rules(
        &mut self,
        rules: &[crate::model::Rule],
        origin: &str,
        log: Option<(u16, &str)>,
    ) -> Vec<Rule> {
        let mut out = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let comment = format!("{origin}[{i}]");
            let (mut statements, verdict) = match rule.action {
                Action::Allow => (vec![Statement::MarkSet(MARK_ALLOW)], Some(Verdict::Return)),
                Action::Pass => (vec![Statement::MarkSet(MARK_PASS)], Some(Verdict::Return)),
                Action::Deny => (vec![], Some(Verdict::Drop)),
                Action::Log => (
                    vec![Statement::Log {
                        prefix: format!("{} ", self.model.config.log_prefix),
                        group: None,
                    }],
                    None,
                ),
            };
            let decision = match rule.action {
                Action::Allow => Some(Decision::Allow),
                Action::Deny => Some(Decision::Deny),
                Action::Pass => Some(Decision::Pass),
                Action::Log => None,
            };
            if let (Some((group, chain)), Some(decision)) = (log, decision) {
                let decider = Decider::Rule {
                    chain: chain.to_string(),
                    index: i,
                    decision,
                };
                statements.insert(0, decider.log(group));
            }
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
        let families: Vec<Option<Family>> =
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
        for family in families {
            out.extend(self.family_matches(rule, family));
        }
        out
    }

    /// The match lists of a rule in one family (`None`: a rule that needs
    /// no per-family set).
    fn family_matches(
        &mut self,
        rule: &crate::model::Rule,
        family: Option<Family>,
    ) -> Vec<Vec<Match>> {
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
            let Some(side_alts) = self.side_matches(entity, side, family, proto) else {
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
    fn side_matches(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ports_merge_into_sorted_ranges_and_named_ones_come_apart() {
        let ports = [
            Port::Range { min: 90, max: 100 },
            Port::Named("http".into()),
            Port::Number(80),
            Port::Number(101),
            Port::Named("dns".into()),
            Port::Named("http".into()),
            Port::Number(81),
        ];
        assert_eq!(
            split_ports(&ports),
            (vec![(80, 81), (90, 101)], vec!["dns", "http"])
        );
    }

    #[test]
    fn only_selectors_nets_and_named_ports_need_a_family() {
        let mut e = Entity {
            ports: vec![Port::Number(80)],
            ..Entity::default()
        };
        assert!(!needs_family(&e));
        e.not_ports.push(Port::Named("http".into()));
        assert!(needs_family(&e));
        let nets = Entity {
            not_nets: vec!["10.0.0.0/8".parse().expect("a CIDR")],
            ..Entity::default()
        };
        assert!(needs_family(&nets));
    }
}
