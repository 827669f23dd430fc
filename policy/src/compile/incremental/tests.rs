//! The Compiler's outcomes: each change of a model either patches the
//! previous ruleset or falls back for the reason that change gives, and
//! either way the ruleset is what `compile()` makes of the new model.

use std::sync::Arc;

use api::resources::policy::{PolicyType, TierDefaultAction};

use super::{Compiler, Fallback, Outcome};
use crate::compile::compile;
use crate::compile::testing::{SHOP, endpoint, model};
use crate::model::{Model, Tier};

/// Compiles `before` then `before` changed by `change`; checks the second
/// ruleset against [`compile()`] and returns how it was made.
fn outcome_of(before: &Model, change: impl FnOnce(&mut Model)) -> Outcome {
    let mut compiler = Compiler::new();
    compiler.compile(before);
    let mut after = before.clone();
    change(&mut after);
    let ruleset = compiler.compile(&after);
    assert_eq!(
        ruleset,
        compile(&after),
        "the compiler differs from compile()"
    );
    compiler.outcome().expect("compiled")
}

fn shop_after(change: impl FnOnce(&mut Model)) -> Outcome {
    outcome_of(&model(SHOP), change)
}

/// The policy `name` in tier `default`, to edit.
fn policy<'m>(m: &'m mut Model, name: &str) -> &'m mut crate::model::Policy {
    let policies = &mut m.tiers[0].policies;
    let p = (policies.iter_mut().find(|p| p.name == name)).unwrap_or_else(|| panic!("{name}"));
    Arc::make_mut(p)
}

fn full(fallback: Fallback) -> Outcome {
    Outcome::Full(fallback)
}

#[test]
fn the_first_compile_is_full_and_the_same_model_again_a_patch() {
    let m = model(SHOP);
    let mut compiler = Compiler::new();
    assert_eq!(compiler.outcome(), None);
    compiler.compile(&m);
    assert_eq!(compiler.outcome(), Some(full(Fallback::FirstCompile)));
    assert_eq!(shop_after(|_| {}), Outcome::Patched);
}

#[test]
fn edits_of_rules_labels_addresses_network_sets_and_nat_are_patched() {
    /// What is edited, and the edit.
    type Edit = (&'static str, fn(&mut Model));
    let edits: [Edit; 5] = [
        ("a policy's rules", |m| {
            let p = policy(m, "backend");
            let rule = p.ingress[0].clone();
            p.ingress.push(rule);
        }),
        ("an endpoint's labels, still selected", |m| {
            let e = endpoint(m, "frontend");
            (m.endpoints[e].labels).insert("zone".into(), "a".into());
        }),
        ("an endpoint's addresses", |m| {
            let e = endpoint(m, "backend");
            m.endpoints[e].addrs = vec!["10.65.0.9/32".parse().expect("a CIDR")];
        }),
        ("a network set", |m| {
            m.network_sets[0].nets = vec!["203.0.113.0/24".parse().expect("a CIDR")];
        }),
        ("the natOutgoing pools", |m| {
            let pool = "10.65.0.0/16".parse().expect("a CIDR");
            m.config.nat_outgoing.pools = vec![pool];
            m.config.nat_outgoing.masquerade = vec![pool];
        }),
    ];
    for (what, edit) in edits {
        assert_eq!(shop_after(edit), Outcome::Patched, "{what}");
    }
}

#[test]
fn a_config_change_starts_afresh() {
    let outcome = shop_after(|m| m.config.log_prefix = "other".into());
    assert_eq!(outcome, full(Fallback::ConfigChanged));
}

#[test]
fn tier_and_profile_changes_fall_back() {
    assert_eq!(
        shop_after(|m| m.tiers[0].default_action = TierDefaultAction::Pass),
        full(Fallback::TiersChanged)
    );
    assert_eq!(
        shop_after(|m| {
            let tier = Tier {
                name: "security".into(),
                order: Some(100.0),
                default_action: TierDefaultAction::Deny,
                policies: Vec::new(),
            };
            m.tiers.insert(0, tier);
        }),
        full(Fallback::TiersChanged)
    );
    assert_eq!(
        shop_after(|m| {
            m.tiers[0].policies.pop();
        }),
        full(Fallback::PolicyAddedOrRemoved)
    );
    assert_eq!(
        shop_after(|m| {
            let open = m.profiles.get_mut("open").expect("profile open");
            open.ingress.clear();
        }),
        full(Fallback::ProfilesChanged)
    );
}

/// A copy of the endpoint `of` named `name` on `interface`, 10.65.0.9.
fn copy_of(m: &Model, of: &str, name: &str, interface: &str) -> crate::model::Endpoint {
    let mut copy = m.endpoints[endpoint(m, of)].clone();
    copy.name = format!("shop/{name}");
    copy.interface = Some(interface.into());
    copy.addrs = vec!["10.65.0.9/32".parse().unwrap()];
    copy
}

#[test]
fn workloads_added_and_removed_are_patched() {
    // The remote workload goes (a member of no set here), a second
    // frontend comes (a member of the frontends' source set), the first
    // goes (the set is left empty), a backend replica comes.
    let changes: [fn(&mut Model); 4] = [
        |m| {
            m.endpoints.pop();
        },
        |m| {
            let copy = copy_of(m, "frontend", "frontend2", "califront2");
            m.endpoints.insert(endpoint(m, "frontend") + 1, copy);
        },
        |m| {
            m.endpoints.remove(endpoint(m, "frontend"));
        },
        |m| {
            let copy = copy_of(m, "backend", "backend2", "caliback2");
            m.endpoints.insert(endpoint(m, "backend") + 1, copy);
        },
    ];
    for (i, change) in changes.into_iter().enumerate() {
        assert_eq!(shop_after(change), Outcome::Patched, "change {i}");
    }
    // A workload recreated on its interface under another name.
    assert_eq!(
        shop_after(|m| {
            let e = endpoint(m, "frontend");
            m.endpoints[e] = copy_of(m, "frontend", "frontend-new", "califront");
        }),
        Outcome::Patched
    );
}

#[test]
fn endpoint_changes_but_labels_addresses_and_ports_fall_back() {
    assert_eq!(
        shop_after(|m| {
            let mut host = copy_of(m, "frontend", "eth0", "eth0");
            host.kind = crate::model::EndpointKind::Host;
            m.endpoints.push(host);
        }),
        full(Fallback::EndpointAddedOrRemoved)
    );
    assert_eq!(
        shop_after(|m| {
            let mut limited = copy_of(m, "frontend", "limited", "calilimited");
            limited.limits.egress.packet_rate = Some((100, 5));
            m.endpoints.push(limited);
        }),
        full(Fallback::EndpointAddedOrRemoved)
    );
    assert_eq!(
        shop_after(|m| {
            let twin = copy_of(m, "frontend", "twin", "califront");
            m.endpoints.push(twin);
        }),
        full(Fallback::InterfaceShared)
    );
    assert_eq!(
        shop_after(|m| {
            m.endpoints.remove(endpoint(m, "backend"));
        }),
        full(Fallback::SelectionEmptiedOrFilled)
    );
    assert_eq!(
        shop_after(|m| m.endpoints.swap(0, 1)),
        full(Fallback::EndpointsReordered)
    );
    assert_eq!(
        shop_after(|m| {
            let e = endpoint(m, "frontend");
            m.endpoints[e].interface = Some("califront2".into());
        }),
        full(Fallback::EndpointReplaced)
    );
    assert_eq!(
        shop_after(|m| {
            let e = endpoint(m, "backend");
            m.endpoints[e].profiles.clear();
        }),
        full(Fallback::EndpointReplaced)
    );
}

#[test]
fn a_relabel_that_empties_a_selection_falls_back() {
    let outcome = shop_after(|m| {
        let e = endpoint(m, "backend");
        (m.endpoints[e].labels).insert("app".into(), "gone".into());
    });
    assert_eq!(outcome, full(Fallback::SelectionEmptiedOrFilled));
}

#[test]
fn a_relabelled_host_endpoint_falls_back_when_the_model_has_stage_policy() {
    let yaml = format!(
        "{SHOP}---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: forwarded}}
spec:
  selector: has(uplink)
  applyOnForward: true
  ingress: [{{action: Allow}}]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {{name: node1-eth0, labels: {{uplink: \"yes\"}}}}
spec: {{node: node1, interfaceName: eth0, expectedIPs: [192.168.1.1]}}
"
    );
    let outcome = outcome_of(&model(&yaml), |m| {
        let e = endpoint(m, "node1-eth0");
        (m.endpoints[e].labels).insert("zone".into(), "a".into());
    });
    assert_eq!(outcome, full(Fallback::HostEndpointRelabelled));
}

#[test]
fn editing_a_policy_whose_chains_were_never_made_falls_back() {
    // `remote-only` selects no local endpoint.
    let outcome = shop_after(|m| policy(m, "remote-only").egress.clear());
    assert_eq!(outcome, full(Fallback::PolicyNotKept));
}

#[test]
fn edited_policies_that_move_or_change_their_selector_types_or_stage_fall_back() {
    assert_eq!(
        shop_after(|m| m.tiers[0].policies.reverse()),
        full(Fallback::PolicyReplaced)
    );
    assert_eq!(
        shop_after(|m| {
            let selector = policy(m, "partners").selector.clone();
            policy(m, "backend").selector = selector;
        }),
        full(Fallback::PolicySelectorChanged)
    );
    assert_eq!(
        shop_after(|m| policy(m, "partners").types.push(PolicyType::Egress)),
        full(Fallback::PolicyTypesChanged)
    );
    assert_eq!(
        shop_after(|m| policy(m, "partners").apply_on_forward = true),
        full(Fallback::PolicyStageChanged)
    );
}

#[test]
fn editing_one_of_two_policies_of_one_name_falls_back() {
    // A second tier with a `partners` of other rules: its chains share the
    // name, so what is kept for the name is not the first one's.
    let mut m = model(SHOP);
    let mut other = m.tiers[0].clone();
    other.name = "other".into();
    for p in &mut other.policies {
        Arc::make_mut(p).ingress.clear();
    }
    m.tiers.push(other);
    let outcome = outcome_of(&m, |m| {
        let p = policy(m, "partners");
        let rule = p.ingress[0].clone();
        p.ingress.push(rule);
    });
    assert_eq!(outcome, full(Fallback::KeptChainsDiffer));
}

#[test]
fn every_fallback_has_its_own_label() {
    let mut labels: Vec<&str> = Fallback::ALL.iter().map(|f| f.as_str()).collect();
    assert!(
        (labels.iter()).all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')),
        "{labels:?}"
    );
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), Fallback::ALL.len());
    assert_eq!(Outcome::Patched.path(), "patched");
    assert_eq!(full(Fallback::FirstCompile).path(), "full");
}

#[test]
fn turning_flow_logs_on_recompiles_and_edits_under_them_are_patched_alike() {
    let logs = Some(crate::flowlog::FlowLogs { group: 20 });
    assert_eq!(
        shop_after(|m| m.config.flow_logs = logs),
        full(Fallback::ConfigChanged)
    );
    let mut logging = model(SHOP);
    logging.config.flow_logs = logs;
    let relabelled = outcome_of(&logging, |m| {
        let e = endpoint(m, "frontend");
        m.endpoints[e].labels.insert("app".into(), "other".into());
    });
    let edited = outcome_of(&logging, |m| {
        let rule = policy(m, "backend").ingress[0].clone();
        policy(m, "backend").ingress.push(rule);
    });
    assert_eq!((relabelled, edited), (Outcome::Patched, Outcome::Patched));
}

#[test]
fn a_relabel_moves_an_endpoint_to_the_chain_it_now_shares_and_drops_the_one_left_unused() {
    let before = model(SHOP);
    let mut compiler = Compiler::new();
    let first = compiler.compile(&before);
    let ingress = |rs: &crate::ir::Ruleset, iface: &str| match rs.maps["wl-to"].elements.get(iface)
    {
        Some(crate::ir::Verdict::Goto(chain)) => chain.clone(),
        other => panic!("wl-to leads {iface} to {other:?}"),
    };
    let (front, back) = (ingress(&first, "califront"), ingress(&first, "caliback"));
    assert_ne!(front, back);
    // The frontend becomes a second backend: the same policies select it.
    let mut after = before.clone();
    let e = endpoint(&after, "frontend");
    (after.endpoints[e].labels).insert("app".into(), "backend".into());
    let patched = compiler.compile(&after);
    assert_eq!(compiler.outcome(), Some(Outcome::Patched));
    assert_eq!(
        patched,
        compile(&after),
        "the compiler differs from compile()"
    );
    assert_eq!(ingress(&patched, "califront"), back);
    assert!(
        !patched.chains.contains_key(front.as_str()),
        "{front} is left behind"
    );
}
