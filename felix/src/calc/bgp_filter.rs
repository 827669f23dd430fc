//! A BGPPeer's `filters` (BGPFilter resources, in order) as the speaker's
//! import and export filters for one session, pure.
//!
//! ```text
//! BGPFilter a: exportV4 [r1, r2], importV4 [r3]      export: a.r1 a.r2 b.r4 (v4 rules
//! BGPFilter b: exportV6 [r4]                 ──▶              match IPv4 only, v6 rules IPv6)
//!                                                    import: a.r3        default: Accept
//! ```
//!
//! Each rule becomes a speaker rule whose matches must all hold: the
//! family of its list, `cidr` with `matchOperator` and `prefixLength`,
//! `source: RemotePeers` (learned from a peer), `communities` (carries the
//! community), `asPathPrefix` (the AS path starts with these ASes). A
//! `peerType` is decided here, per session: a rule for the other type is
//! left out. `operations` (on `Accept`) become modifications:
//! `addCommunity`, and `prependASPath` (the path sent starts with those
//! ASes, behind our own AS toward eBGP, as BIRD's export filters do). The
//! first rule that matches decides; none matching accepts, as in Calico.
//!
//! A rule's `interface` (routes out of a local interface) has no
//! counterpart, since this speaker originates only the prefixes felix
//! hands it: such a rule never matches, and a problem says so. A BGPFilter
//! the peer names that does not exist keeps the peer from being configured
//! (a filter meant to reject must not be dropped silently).

use std::collections::BTreeMap;

use api::resources::bgp::{
    BGPFilterRule, FilterAction, MatchOperator, PeerType, RouteSource as ApiSource, parse_community,
};
use api::{BGPFilter, Kind};
use bgpd::LargeCommunity;
use bgpd::filter::{
    Action, AsPathPattern, CidrOperator, Match, Modification, PeerPolicy, RouteSource, Rule,
};
use bgpd::prefix::AfiSafi;

use super::problems::{ProblemKind, Problems, subject};

/// The policy of one session from the BGPFilters `names` lists, or `Err`
/// (a problem says why) when one of them does not exist.
pub(super) fn policy(
    names: &[String],
    filters: &BTreeMap<&str, &BGPFilter>,
    ebgp: bool,
    who: &str,
    problems: &mut Problems,
) -> Result<PeerPolicy, ()> {
    let mut policy = PeerPolicy::default();
    for name in names {
        let Some(f) = filters.get(name.as_str()) else {
            problems.add(
                ProblemKind::Skipped,
                who,
                "spec.filters",
                format!("BGPFilter {name:?} does not exist; peer not configured until it does"),
            );
            return Err(());
        };
        let whose = subject(Kind::BGPFilter, &f.metadata);
        let s = &f.spec;
        for (field, rules, family, import) in [
            ("exportV4", &s.export_v4, AfiSafi::IPV4_UNICAST, false),
            ("importV4", &s.import_v4, AfiSafi::IPV4_UNICAST, true),
            ("exportV6", &s.export_v6, AfiSafi::IPV6_UNICAST, false),
            ("importV6", &s.import_v6, AfiSafi::IPV6_UNICAST, true),
        ] {
            let into = if import {
                &mut policy.import
            } else {
                &mut policy.export
            };
            for (i, r) in rules.iter().enumerate() {
                let at = format!("spec.{field}[{i}]");
                if let Some(rule) = rule(r, family, ebgp, &whose, &at, problems) {
                    into.rules.push(rule);
                }
            }
        }
    }
    Ok(policy)
}

/// One Calico rule as a speaker rule; `None` when it cannot apply to this
/// session (its `peerType` is the other one).
fn rule(
    r: &BGPFilterRule,
    family: AfiSafi,
    ebgp: bool,
    who: &str,
    at: &str,
    problems: &mut Problems,
) -> Option<Rule> {
    match r.peer_type {
        Some(PeerType::Ebgp) if !ebgp => return None,
        Some(PeerType::Ibgp) if ebgp => return None,
        _ => {}
    }
    let mut matches = vec![Match::Family(family)];
    if let (Some(cidr), Some(op)) = (r.cidr, r.match_operator) {
        let op = match op {
            MatchOperator::Equal => CidrOperator::Equal,
            MatchOperator::NotEqual => CidrOperator::NotEqual,
            MatchOperator::In => CidrOperator::In,
            MatchOperator::NotIn => CidrOperator::NotIn,
        };
        let (min, max) = r.prefix_length.map_or((None, None), |l| (l.min, l.max));
        match Match::calico_cidr(op, cidr.0, min, max) {
            Ok(m) => matches.push(m),
            Err(e) => {
                problems.add(
                    ProblemKind::Skipped,
                    who,
                    &format!("{at}.cidr"),
                    format!("{e}; the rule never matches"),
                );
                return Some(never(r));
            }
        }
    }
    if r.source == Some(ApiSource::RemotePeers) {
        matches.push(Match::Source(RouteSource::Peer));
    }
    if let Some(c) = r.communities.as_ref().and_then(|c| c.values.first()) {
        matches.push(match community(c) {
            Some(Value::Standard(v)) => Match::CommunityAny(vec![v]),
            Some(Value::Large(v)) => Match::LargeCommunityAny(vec![v]),
            None => return Some(never(r)),
        });
    }
    if !r.as_path_prefix.is_empty() {
        let pattern: String = r
            .as_path_prefix
            .iter()
            .map(|a| format!("{} ", a.0))
            .chain(["*".to_string()])
            .collect();
        let pattern: AsPathPattern = pattern.parse().expect("AS numbers and `*` parse");
        matches.push(Match::AsPath(pattern));
    }
    if !r.interface.is_empty() {
        problems.add(
            ProblemKind::Unsupported,
            who,
            &format!("{at}.interface"),
            "not supported (the speaker originates only felix's prefixes, from no interface); \
             the rule never matches",
        );
        return Some(never(r));
    }
    let action = match r.action {
        FilterAction::Accept => Action::Accept,
        FilterAction::Reject => Action::Reject,
    };
    let mut out = Rule::new(matches, action);
    for op in &r.operations {
        if let Some(a) = &op.add_community {
            out.modifications.push(match community(&a.value) {
                Some(Value::Standard(v)) => Modification::AddCommunities(vec![v]),
                Some(Value::Large(v)) => Modification::AddLargeCommunities(vec![v]),
                None => continue,
            });
        }
        if let Some(p) = &op.prepend_as_path {
            out.modifications.push(Modification::PrependPath(
                p.prefix.iter().map(|a| a.0).collect(),
            ));
        }
    }
    Some(out)
}

/// A rule that never matches (a contradiction of matches), keeping the
/// filter's length and order.
fn never(r: &BGPFilterRule) -> Rule {
    let action = match r.action {
        FilterAction::Accept => Action::Accept,
        FilterAction::Reject => Action::Reject,
    };
    Rule::new(
        vec![
            Match::Family(AfiSafi::IPV4_UNICAST),
            Match::Family(AfiSafi::IPV6_UNICAST),
        ],
        action,
    )
}

enum Value {
    Standard(u32),
    Large(LargeCommunity),
}

/// `aa:nn` or `aa:nn:mm` (validated with the resource).
fn community(text: &str) -> Option<Value> {
    match parse_community(text).ok()?.as_slice() {
        [a, b] => Some(Value::Standard((a << 16) | b)),
        [global, local1, local2] => Some(Value::Large(LargeCommunity {
            global: *global,
            local1: *local1,
            local2: *local2,
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgpd::filter::Route;
    use bgpd::{AsPath, PathAttrs};

    fn filter(yaml: &str) -> BGPFilter {
        match api::parse_documents("t", yaml).unwrap().remove(0) {
            api::Resource::BGPFilter(f) => f,
            other => panic!("{other:?}"),
        }
    }

    fn route<'a>(prefix: &str, attrs: &'a PathAttrs, source: RouteSource) -> Route<'a> {
        Route {
            prefix: prefix.parse().unwrap(),
            attrs,
            source,
        }
    }

    const F: &str = r#"apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: f}
spec:
  exportV4:
  - {action: Reject, peerType: iBGP}
  - {action: Accept, matchOperator: In, cidr: 10.0.0.0/8, operations: [{addCommunity: {value: '65000:7'}}, {prependASPath: {prefix: [65001, 65002]}}]}
  - {action: Reject, communities: {values: ['65000:666']}}
  importV4:
  - {action: Reject, asPathPrefix: [65100, 65101]}
  - {action: Accept, matchOperator: NotIn, cidr: 192.168.0.0/16, prefixLength: {max: 24}}
  - {action: Reject}
  exportV6:
  - {action: Reject, interface: 'eth*'}
"#;

    fn policy_of(ebgp: bool) -> (PeerPolicy, Vec<String>) {
        let f = filter(F);
        let filters = BTreeMap::from([("f", &f)]);
        let mut problems = Problems::default();
        let p = policy(&["f".into()], &filters, ebgp, "BGPPeer p", &mut problems).unwrap();
        (p, problems.into_lines())
    }

    #[test]
    fn rules_keep_their_order_and_a_peer_type_rule_only_its_sessions() {
        let (ebgp, problems) = policy_of(true);
        assert_eq!(ebgp.export.rules.len(), 3, "the iBGP rule is left out");
        assert_eq!(ebgp.import.rules.len(), 3);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("exportV6[0].interface"),
            "{problems:?}"
        );
        let (ibgp, _) = policy_of(false);
        assert_eq!(ibgp.export.rules.len(), 4);
        let plain = PathAttrs::default();
        let v = ibgp
            .export
            .evaluate(&route("10.1.0.0/24", &plain, RouteSource::Local));
        assert!(!v.accept, "iBGP: the first rule rejects everything");
    }

    #[test]
    fn matches_and_operations_do_what_calico_says() {
        let (p, _) = policy_of(true);
        let plain = PathAttrs::default();
        // In 10.0.0.0/8: accepted, a community added, the path prepended.
        let v = p
            .export
            .evaluate(&route("10.1.0.0/24", &plain, RouteSource::Local));
        assert!(v.accept && v.rule == Some(0), "{v:?}");
        let mut out = plain.clone();
        p.export.apply(v, &mut out, 64512, false);
        assert_eq!(out.communities, vec![(65000 << 16) | 7]);
        assert_eq!(out.as_path, Some(AsPath::sequence(vec![65001, 65002])));
        // Outside, with the blackhole community: rejected by the third.
        let tagged = PathAttrs {
            communities: vec![(65000 << 16) | 666],
            ..PathAttrs::default()
        };
        let v = p
            .export
            .evaluate(&route("172.16.0.0/24", &tagged, RouteSource::Peer));
        assert_eq!((v.accept, v.rule), (false, Some(1)));
        // Nothing matching: accepted (Calico's default).
        assert!(
            p.export
                .evaluate(&route("172.16.0.0/24", &plain, RouteSource::Peer))
                .accept
        );
        // Import: a path through 65100 65101 is rejected; so is a /25.
        let via = PathAttrs {
            as_path: Some(AsPath::sequence(vec![65100, 65101, 65200])),
            ..PathAttrs::default()
        };
        let import = |prefix, a| {
            p.import
                .evaluate(&route(prefix, a, RouteSource::Peer))
                .accept
        };
        assert!(!import("10.9.0.0/24", &via));
        assert!(import("10.9.0.0/24", &plain));
        // NotIn 192.168.0.0/16 {16..24}: a /24 inside falls through to
        // the Reject; a /25 inside is not in the set, so it is accepted.
        assert!(!import("192.168.1.0/24", &plain));
        assert!(import("192.168.1.0/25", &plain));
    }

    #[test]
    fn a_missing_filter_keeps_the_peer_out() {
        let mut problems = Problems::default();
        let none = BTreeMap::new();
        assert!(policy(&["gone".into()], &none, true, "BGPPeer p", &mut problems).is_err());
        let lines = problems.into_lines();
        assert!(lines[0].contains("\"gone\" does not exist"), "{lines:?}");
    }
}
