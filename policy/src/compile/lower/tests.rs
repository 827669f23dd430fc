//! The pure pass on small models: which chains, maps and rules it makes.

use std::sync::Arc;

use super::{Lowering, Step, endpoint_chain};
use crate::compile::testing::{SHOP, model};
use crate::ir::{Hook, Iface, MARK_ALLOW, Match, Ruleset, Side, Statement, Verdict};
use crate::memo::Memo;
use crate::sets::SetRegistry;
use crate::stages::Hop;

fn lower(yaml: &str) -> Ruleset {
    let model = model(yaml);
    let lowering = Lowering::new(&model, SetRegistry::new(&model));
    lowering.lower(&mut Memo::default()).ruleset
}

/// Each rule of a chain as (verdict, comment).
fn outline(rs: &Ruleset, chain: &str) -> Vec<(Option<Verdict>, Option<String>)> {
    let chain = (rs.chains.get(chain)).unwrap_or_else(|| panic!("no chain {chain}"));
    (chain.rules.iter())
        .map(|r| (r.verdict.clone(), r.comment.clone()))
        .collect()
}

/// The chain the workload map leads `iface` to: its ingress chain (`wl-to`)
/// or its egress chain (`wl-from`).
fn wl_chain(rs: &Ruleset, map: &str, iface: &str) -> String {
    match rs.maps[map].elements.get(iface) {
        Some(Verdict::Goto(chain)) => chain.clone(),
        other => panic!("{map} leads {iface} to {other:?}"),
    }
}

fn wl_in(rs: &Ruleset, iface: &str) -> String {
    wl_chain(rs, "wl-to", iface)
}

fn wl_out(rs: &Ruleset, iface: &str) -> String {
    wl_chain(rs, "wl-from", iface)
}

fn jump(chain: &str, comment: &str) -> (Option<Verdict>, Option<String>) {
    (Some(Verdict::Jump(chain.into())), Some(comment.into()))
}

#[test]
fn each_local_workload_gets_an_ingress_and_an_egress_chain_behind_the_workload_maps() {
    let rs = lower(SHOP);
    let entries = |map: &str| -> Vec<(String, Verdict)> {
        (rs.maps[map].elements.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    // Each leads to a chain named by the hash of its rules.
    for map in ["wl-to", "wl-from"] {
        let ifaces: Vec<String> = entries(map).into_iter().map(|(k, _)| k).collect();
        assert_eq!(ifaces, ["caliback", "califront"], "{map}");
        for (iface, verdict) in entries(map) {
            let Verdict::Goto(chain) = verdict else {
                panic!("{map}: {iface} -> {verdict:?}")
            };
            let word = if map == "wl-to" { "in" } else { "out" };
            let hash = chain
                .strip_prefix(&format!("wl-{word}-"))
                .unwrap_or_default();
            assert!(
                hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                "{chain}"
            );
            assert!(rs.chains.contains_key(chain.as_str()), "{chain}");
        }
    }
    assert!(rs.maps["hep-from"].elements.is_empty());
    assert!(!rs.chains.keys().any(|c| c.contains("caliremote")));
}

#[test]
fn an_endpoint_chain_jumps_to_its_policies_in_order_then_to_its_profiles_and_fails_closed() {
    let rs = lower(SHOP);
    let allowed = (Some(Verdict::Return), None);
    assert_eq!(
        outline(&rs, &wl_in(&rs, "caliback")),
        [
            (Some(Verdict::Drop), None),
            (None, None),
            jump("gnp-in-partners", "policy partners"),
            allowed.clone(),
            jump("np-in-shop/backend", "policy shop/backend"),
            allowed.clone(),
            (
                Some(Verdict::Drop),
                Some("tier default: default deny".into())
            ),
            (None, None),
            // The profile the model lacks (`missing`) is left out.
            jump("pro-in-open", "profile open"),
            allowed,
            (
                Some(Verdict::Drop),
                Some("no policy or profile allowed".into())
            ),
        ]
    );
}

#[test]
fn endpoints_with_the_same_steps_share_one_chain() {
    let rs = lower(SHOP);
    // Nothing selects either workload's egress: one chain for both.
    assert_eq!(wl_out(&rs, "califront"), wl_out(&rs, "caliback"));
    assert_ne!(wl_in(&rs, "califront"), wl_in(&rs, "caliback"));
    let endpoint_chains = (rs.chains.keys())
        .filter(|c| c.starts_with("wl-in-") || c.starts_with("wl-out-"))
        .count();
    assert_eq!(endpoint_chains, 3, "{:?}", rs.chains.keys());
}

#[test]
fn a_workload_that_counts_connections_keeps_a_chain_of_its_own() {
    // The kernel counts connections per rule: two workloads with the same
    // limit (and otherwise the same egress) must not share one count.
    let limited = ["califront", "caliback"]
        .iter()
        .fold(SHOP.to_string(), |y, i| {
            y.replace(
                &format!("interfaceName: {i},"),
                &format!("interfaceName: {i}, qosControls: {{egressMaxConnections: 10}},"),
            )
        });
    assert_ne!(limited, SHOP);
    let rs = lower(&limited);
    assert_eq!(wl_out(&rs, "califront"), "wl-out-califront");
    assert_eq!(wl_out(&rs, "caliback"), "wl-out-caliback");
    assert_eq!(rs.chains["wl-out-califront"], rs.chains["wl-out-caliback"]);
}

#[test]
fn a_policy_gets_a_chain_per_direction_it_has_once_it_selects_a_local_endpoint() {
    let rs = lower(SHOP);
    for chain in [
        "np-in-shop/backend",
        "gnp-in-partners",
        "pro-in-open",
        "pro-out-open",
    ] {
        assert!(rs.chains.contains_key(chain), "{chain}");
    }
    for chain in [
        "np-out-shop/backend",
        "gnp-in-remote-only",
        "gnp-out-remote-only",
    ] {
        assert!(!rs.chains.contains_key(chain), "{chain}");
    }
}

#[test]
fn a_rule_becomes_one_nft_rule_per_family_its_selector_needs() {
    let rs = lower(SHOP);
    let rules = &rs.chains["np-in-shop/backend"].rules;
    assert_eq!(rules.len(), 2);
    for rule in rules {
        assert_eq!(rule.comment.as_deref(), Some("shop/backend ingress[0]"));
        assert_eq!(rule.statements, [Statement::MarkSet(MARK_ALLOW)]);
        assert_eq!(rule.verdict, Some(Verdict::Return));
        let port = Match::Ports {
            side: Side::Destination,
            ranges: vec![(8080, 8080)],
            negate: false,
        };
        assert!(rule.matches.contains(&port), "{:?}", rule.matches);
    }
    let families: Vec<u8> = (rules.iter())
        .flat_map(|r| &r.matches)
        .filter_map(|m| match m {
            Match::Addr { family, set, .. } => {
                assert!(rs.sets.contains_key(set), "{set}");
                Some(family.number())
            }
            _ => None,
        })
        .collect();
    assert_eq!(families, [4, 6]);
}

#[test]
fn a_rule_becomes_no_nft_rule_in_a_family_it_cannot_match() {
    let rs = lower(&format!(
        "{SHOP}---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: from-v6-net}}
spec:
  selector: app == \"frontend\"
  ingress: [{{action: Allow, source: {{nets: [\"fd00::/8\"]}}}}]
"
    ));
    let rules = &rs.chains["gnp-in-from-v6-net"].rules;
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(
        matches!(&rules[0].matches[..], [Match::Addr { family, .. }] if family.number() == 6),
        "{rules:?}"
    );
}

#[test]
fn the_base_chains_hand_workload_traffic_to_the_maps() {
    let rs = lower(SHOP);
    let hook = |chain: &str| rs.chains[chain].base.as_ref().map(|b| b.hook);
    assert_eq!(hook("forward"), Some(Hook::Forward));
    assert_eq!(hook("input"), Some(Hook::Input));
    assert_eq!(hook("output"), Some(Hook::Output));
    assert_eq!(hook("from-wl"), None);
    assert_eq!(
        outline(&rs, "forward"),
        [
            (Some(Verdict::Accept), None),
            jump("from-wl", "workload egress"),
            jump("to-wl", "workload ingress"),
        ]
    );
    let vmap = Verdict::Vmap {
        iface: Iface::In,
        map: "wl-from".into(),
    };
    assert_eq!(
        outline(&rs, "from-wl"),
        [
            (Some(vmap), None),
            (
                Some(Verdict::Drop),
                Some("unknown workload interface".into())
            ),
        ]
    );
    // No stage policy, no host endpoint: no stage chains.
    assert_eq!(rs.chains.values().filter(|c| c.base.is_some()).count(), 3);
}

#[test]
fn a_tier_that_passes_by_default_ends_without_a_drop() {
    let policy = |chain: &str| Step::Policy {
        chain: chain.into(),
        display: chain.into(),
    };
    let tier_end = |deny| Step::TierEnd {
        tier: Arc::from("t"),
        deny,
    };
    let passing = endpoint_chain(Hop::Filter, None, &[policy("p"), tier_end(false)]);
    let denying = endpoint_chain(Hop::Filter, None, &[policy("p"), tier_end(true)]);
    assert_eq!(denying.rules.len(), passing.rules.len() + 1);
    let drop_count = |c: &crate::ir::Chain| {
        (c.rules.iter())
            .filter(|r| r.verdict == Some(Verdict::Drop))
            .count()
    };
    // ct state invalid and the fail-closed end; then the tier's default deny.
    assert_eq!((drop_count(&passing), drop_count(&denying)), (2, 3));
}

/// The shop compiled with flow logs to NFLOG group 20.
fn lower_logging(yaml: &str) -> (crate::model::Model, Ruleset) {
    let mut model = model(yaml);
    model.config.flow_logs = Some(crate::flowlog::FlowLogs { group: 20 });
    let lowering = Lowering::new(&model, SetRegistry::new(&model));
    let rs = lowering.lower(&mut Memo::default()).ruleset;
    (model, rs)
}

/// The flow-log prefixes of a chain's rules, in order (`None`: no log).
fn logged(rs: &Ruleset, chain: &str) -> Vec<Option<String>> {
    (rs.chains[chain].rules.iter())
        .map(|r| {
            r.statements.iter().find_map(|s| match s {
                Statement::Log {
                    prefix,
                    group: Some(20),
                } => Some(prefix.clone()),
                _ => None,
            })
        })
        .collect()
}

#[test]
fn with_flow_logs_each_deciding_rule_logs_a_prefix_the_index_resolves() {
    use crate::flowlog::{Decision, Hit, Index, Source};
    let (model, rs) = lower_logging(SHOP);
    let policy_chain = "np-in-shop/backend";
    // One rule per family, each logging the model rule it comes from.
    assert_eq!(
        logged(&rs, policy_chain),
        [
            Some(format!("R A 0 {policy_chain}")),
            Some(format!("R A 0 {policy_chain}"))
        ]
    );
    // The endpoint chain logs its own drops, ingress: the default tier's
    // end (its policies select the backend), and the last rule.
    let wl = logged(&rs, &wl_in(&rs, "caliback"));
    let drops: Vec<&String> = wl.iter().flatten().collect();
    assert_eq!(drops, ["T i default", "N i"], "{wl:?}");
    assert_eq!(
        logged(&rs, &wl_out(&rs, "califront")).last(),
        Some(&Some("N o".to_string()))
    );

    let text = crate::render::render(&rs);
    assert!(
        text.contains(&format!("log prefix \"R A 0 {policy_chain}\" group 20")),
        "{text}"
    );

    let index = Index::new(&model);
    let Some(Hit::Rule {
        origin,
        rule,
        decision,
    }) = index.resolve(&format!("R A 0 {policy_chain}"))
    else {
        panic!("not resolved")
    };
    assert_eq!(
        (
            origin.source,
            origin.namespace.as_str(),
            origin.name.as_str()
        ),
        (Source::NetworkPolicy, "shop", "backend")
    );
    assert_eq!(
        (origin.tier.as_str(), origin.ingress, rule, decision),
        ("default", true, 0, Decision::Allow)
    );
    let Some(Hit::Rule { origin, .. }) = index.resolve("R A 0 pro-out-open") else {
        panic!("the profile's chain is not resolved")
    };
    assert_eq!((origin.source, origin.ingress), (Source::Profile, false));
    assert_eq!(index.resolve("R A 0 np-in-nowhere"), None);
    assert_eq!(index.resolve("N i"), Some(Hit::NoMatch { ingress: true }));
}

#[test]
fn a_tiers_default_deny_logs_its_tier_and_without_flow_logs_nothing_logs() {
    let yaml = format!(
        "{SHOP}---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: security}}\nspec: {{order: 1}}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: security.quarantine}}\nspec:\n  tier: security\n  selector: app == \"backend\"\n  ingress: [{{action: Deny, source: {{nets: [192.0.2.0/24]}}}}]\n"
    );
    let (_, rs) = lower_logging(&yaml);
    let wl = logged(&rs, &wl_in(&rs, "caliback"));
    assert!(wl.contains(&Some("T i security".to_string())), "{wl:?}");
    assert!(
        logged(&rs, "gnp-in-security.quarantine")
            .contains(&Some("R D 0 gnp-in-security.quarantine".into())),
        "{:?}",
        logged(&rs, "gnp-in-security.quarantine")
    );
    let plain = lower(&yaml);
    let logs = (plain.chains.values())
        .flat_map(|c| &c.rules)
        .flat_map(|r| &r.statements)
        .filter(|s| matches!(s, Statement::Log { group: Some(_), .. }))
        .count();
    assert_eq!(logs, 0);
}
