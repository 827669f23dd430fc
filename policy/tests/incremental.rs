//! The incremental [`Compiler`] against the full [`compile`]: after random
//! edits of the golden models (policies, tiers, endpoints, network sets,
//! profiles, config, natOutgoing pools), both give the same ruleset and the same diff from the
//! previous one; and what an edit does not touch stays shared.

mod common;

use std::sync::Arc;

use common::{cases, load};
use policy::{Compiler, Model, compile, diff};
use proptest::prelude::*;

fn models() -> Vec<Model> {
    cases()
        .iter()
        .map(|case| {
            let (resources, config) = load(case);
            Model::from_resources(&resources, config).expect("golden model builds")
        })
        .collect()
}

/// One edit of a model; `a` and `b` pick what it applies to.
#[derive(Debug, Clone, Copy)]
enum Edit {
    SwapLabels,
    SwapAddrs,
    RemoveEndpoint,
    CopyEndpoint,
    MoveEndpointLast,
    RemovePolicy,
    SwapPolicyRules,
    CopySelector,
    ReverseTier,
    FlipTierDefault,
    DropNetworkSet,
    RelabelNetworkSet,
    SwapProfileRules,
    ChangeLogPrefix,
    CopyRule,
    DropRules,
    FlipAction,
    /// Toggles a policy's `applyOnForward`.
    FlipApplyOnForward,
    /// Moves a policy to the next stage: normal, pre-DNAT, untracked.
    NextStage,
    /// Swaps the failsafe inbound and outbound ports (a config change).
    SwapFailsafe,
    /// Picks other pools, natOutgoing ones and SNAT address (the NAT settings).
    NatOutgoing,
}

const EDITS: [Edit; 21] = [
    Edit::SwapLabels,
    Edit::SwapAddrs,
    Edit::RemoveEndpoint,
    Edit::CopyEndpoint,
    Edit::MoveEndpointLast,
    Edit::RemovePolicy,
    Edit::SwapPolicyRules,
    Edit::CopySelector,
    Edit::ReverseTier,
    Edit::FlipTierDefault,
    Edit::DropNetworkSet,
    Edit::RelabelNetworkSet,
    Edit::SwapProfileRules,
    Edit::ChangeLogPrefix,
    Edit::CopyRule,
    Edit::DropRules,
    Edit::FlipAction,
    Edit::FlipApplyOnForward,
    Edit::NextStage,
    Edit::SwapFailsafe,
    Edit::NatOutgoing,
];

/// Pools an [`Edit::NatOutgoing`] picks from: the golden workloads' and others.
const POOLS: [&str; 5] = [
    "10.65.0.0/16",
    "10.66.0.0/16",
    "fd00:65::/48",
    "192.168.0.0/16",
    "10.65.1.0/24",
];

/// The pools of [`POOLS`] whose bit is set in `bits`.
fn pools(bits: usize) -> Vec<ipnet::IpNet> {
    (POOLS.iter().enumerate())
        .filter(|(i, _)| bits >> i & 1 == 1)
        .map(|(_, p)| p.parse().expect("a CIDR"))
        .collect()
}

/// `(tier, policy)` of the `k`-th policy of the model, counting round.
fn policy_at(m: &Model, k: usize) -> Option<(usize, usize)> {
    let all: Vec<(usize, usize)> = (m.tiers.iter().enumerate())
        .flat_map(|(t, tier)| (0..tier.policies.len()).map(move |j| (t, j)))
        .collect();
    (!all.is_empty()).then(|| all[k % all.len()])
}

fn apply(m: &mut Model, edit: Edit, a: usize, b: usize, serial: usize) {
    let eps = m.endpoints.len();
    match edit {
        Edit::SwapLabels if eps > 0 => {
            let (i, j) = (a % eps, b % eps);
            let labels = m.endpoints[i].labels.clone();
            m.endpoints[i].labels = std::mem::replace(&mut m.endpoints[j].labels, labels);
        }
        Edit::SwapAddrs if eps > 0 => {
            let (i, j) = (a % eps, b % eps);
            let addrs = m.endpoints[i].addrs.clone();
            m.endpoints[i].addrs = std::mem::replace(&mut m.endpoints[j].addrs, addrs);
        }
        Edit::RemoveEndpoint if eps > 0 => {
            m.endpoints.remove(a % eps);
        }
        Edit::CopyEndpoint if eps > 0 => {
            let mut copy = m.endpoints[a % eps].clone();
            copy.name = format!("{}-copy{serial}", copy.name);
            if copy.interface.is_some() {
                let prefix = match copy.kind {
                    policy::model::EndpointKind::Workload => m.config.workload_prefix.clone(),
                    policy::model::EndpointKind::Host => "eth".to_string(),
                };
                copy.interface = Some(format!("{prefix}x{serial}"));
            }
            let from = &m.endpoints[b % eps];
            copy.labels = from.labels.clone();
            m.endpoints.insert(b % (eps + 1), copy);
        }
        Edit::MoveEndpointLast if eps > 0 => {
            let ep = m.endpoints.remove(a % eps);
            m.endpoints.push(ep);
        }
        Edit::RemovePolicy => {
            if let Some((t, j)) = policy_at(m, a) {
                m.tiers[t].policies.remove(j);
            }
        }
        Edit::SwapPolicyRules => {
            if let (Some((t, j)), Some((u, k))) = (policy_at(m, a), policy_at(m, b)) {
                let ingress = m.tiers[t].policies[j].ingress.clone();
                let egress = m.tiers[u].policies[k].egress.clone();
                Arc::make_mut(&mut m.tiers[u].policies[k]).ingress = ingress;
                Arc::make_mut(&mut m.tiers[t].policies[j]).egress = egress;
            }
        }
        Edit::CopySelector => {
            if let (Some((t, j)), Some((u, k))) = (policy_at(m, a), policy_at(m, b)) {
                let selector = m.tiers[t].policies[j].selector.clone();
                Arc::make_mut(&mut m.tiers[u].policies[k]).selector = selector;
            }
        }
        Edit::ReverseTier if !m.tiers.is_empty() => {
            let t = a % m.tiers.len();
            m.tiers[t].policies.reverse();
        }
        Edit::FlipTierDefault if !m.tiers.is_empty() => {
            use api::resources::policy::TierDefaultAction::{Deny, Pass};
            let t = a % m.tiers.len();
            let d = &mut m.tiers[t].default_action;
            *d = if *d == Deny { Pass } else { Deny };
        }
        Edit::DropNetworkSet if !m.network_sets.is_empty() => {
            let n = a % m.network_sets.len();
            m.network_sets.remove(n);
        }
        Edit::RelabelNetworkSet if !m.network_sets.is_empty() && eps > 0 => {
            let n = a % m.network_sets.len();
            m.network_sets[n].labels = m.endpoints[b % eps].labels.clone();
        }
        Edit::SwapProfileRules if !m.profiles.is_empty() => {
            let name = m.profiles.keys().nth(a % m.profiles.len()).cloned();
            if let Some(p) = name.and_then(|n| m.profiles.get_mut(&n)) {
                std::mem::swap(&mut p.ingress, &mut p.egress);
            }
        }
        Edit::ChangeLogPrefix => m.config.log_prefix = format!("edit{serial}"),
        Edit::SwapFailsafe => {
            let c = &mut m.config;
            std::mem::swap(&mut c.failsafe_inbound, &mut c.failsafe_outbound);
        }
        Edit::NatOutgoing => {
            let c = &mut m.config;
            c.nat_outgoing.pools = pools(a);
            c.nat_outgoing.masquerade = pools(a & b);
            c.nat_outgoing_address = (b >> POOLS.len() & 1 == 1).then(|| [192, 0, 2, 10].into());
        }
        // Rules only: what an incremental compile patches in place.
        Edit::CopyRule => {
            if let (Some((t, j)), Some((u, k))) = (policy_at(m, a), policy_at(m, b)) {
                let from = &m.tiers[u].policies[k];
                let rule = from.ingress.first().or(from.egress.first()).cloned();
                if let Some(rule) = rule {
                    Arc::make_mut(&mut m.tiers[t].policies[j])
                        .ingress
                        .push(rule);
                }
            }
        }
        Edit::DropRules => {
            if let Some((t, j)) = policy_at(m, a) {
                let p = Arc::make_mut(&mut m.tiers[t].policies[j]);
                if b.is_multiple_of(2) {
                    p.ingress.clear();
                } else {
                    p.egress.clear();
                }
            }
        }
        Edit::FlipAction => {
            use api::resources::policy::Action::{Allow, Deny};
            if let Some((t, j)) = policy_at(m, a) {
                let p = Arc::make_mut(&mut m.tiers[t].policies[j]);
                if let Some(rule) = p.ingress.first_mut().or(p.egress.first_mut()) {
                    rule.action = if rule.action == Allow { Deny } else { Allow };
                }
            }
        }
        Edit::FlipApplyOnForward => {
            if let Some((t, j)) = policy_at(m, a) {
                let p = Arc::make_mut(&mut m.tiers[t].policies[j]);
                p.apply_on_forward = !p.apply_on_forward;
            }
        }
        Edit::NextStage => {
            use policy::model::Stage;
            if let Some((t, j)) = policy_at(m, a) {
                let p = Arc::make_mut(&mut m.tiers[t].policies[j]);
                p.stage = match p.stage {
                    Stage::Normal => Stage::PreDnat,
                    Stage::PreDnat => Stage::Untracked,
                    Stage::Untracked => Stage::Normal,
                };
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn incremental_compiles_equal_full_compiles_edit_after_edit(
        case in 0usize..64,
        edits in prop::collection::vec((0..EDITS.len(), any::<usize>(), any::<usize>()), 1..10),
    ) {
        let models = models();
        let mut model = models[case % models.len()].clone();
        let mut compiler = Compiler::new();
        let mut previous = compiler.compile(&model);
        prop_assert_eq!(&previous, &compile(&model));
        for (serial, &(edit, a, b)) in edits.iter().enumerate() {
            apply(&mut model, EDITS[edit], a, b, serial);
            let incremental = compiler.compile(&model);
            let full = compile(&model);
            prop_assert_eq!(&incremental, &full, "after {:?}", &edits[..=serial]);
            let changes = diff(&previous, &incremental);
            prop_assert_eq!(&changes, &diff(&previous, &full));
            let mut applied = previous.clone();
            changes.apply_to(&mut applied);
            prop_assert_eq!(&applied, &full);
            previous = incremental;
        }
    }
}

#[test]
fn an_edit_leaves_the_chains_it_does_not_touch_shared_with_the_previous_ruleset() {
    let mut model = models()
        .into_iter()
        .max_by_key(|m| m.tiers.iter().map(|t| t.policies.len()).sum::<usize>())
        .expect("golden cases");
    let mut compiler = Compiler::new();
    let first = compiler.compile(&model);
    let again = compiler.compile(&model);
    for (name, chain) in &again.chains {
        assert!(
            Arc::ptr_eq(chain, &first.chains[name]),
            "{name} is recompiled though nothing changed"
        );
    }
    assert!(diff(&first, &again).is_empty());

    // Give the first policy with ingress rules that has chains one more rule.
    let jumped_to = |display: &str| {
        let comment = format!("policy {display}");
        (first.chains.values())
            .flat_map(|c| &c.rules)
            .any(|r| r.comment.as_deref() == Some(comment.as_str()))
    };
    let policy = (model.tiers.iter_mut())
        .flat_map(|t| t.policies.iter_mut())
        .find(|p| !p.ingress.is_empty() && jumped_to(&p.display_name()))
        .map(Arc::make_mut)
        .expect("a policy with ingress rules and chains");
    let rule = policy.ingress[0].clone();
    policy.ingress.push(rule);
    let edited = compiler.compile(&model);
    let changes = diff(&again, &edited);
    assert_eq!(changes.replace_chains.len(), 1, "{changes:?}");
    let replaced = changes.replace_chains.keys().next().expect("one chain");
    let endpoint_chains = (edited.chains.iter())
        .filter(|(name, _)| name.starts_with("wl-") || name.starts_with("hep-"))
        .count();
    assert!(endpoint_chains > 0);
    for (name, chain) in &edited.chains {
        if **name != **replaced {
            assert!(
                Arc::ptr_eq(chain, &again.chains[name]),
                "{name} is not shared after an edit of {replaced}"
            );
        }
    }
    assert_eq!(edited, compile(&model));
}

#[test]
fn a_natoutgoing_pool_change_touches_the_nat_objects_only() {
    let mut model = models().into_iter().next().expect("golden cases");
    let mut compiler = Compiler::new();
    let plain = compiler.compile(&model);
    assert!(!plain.chains.contains_key(policy::nat::CHAIN));

    model.config.nat_outgoing.masquerade = pools(0b1);
    model.config.nat_outgoing.pools = pools(0b11);
    let with_nat = compiler.compile(&model);
    assert_eq!(with_nat, compile(&model));
    let changes = diff(&plain, &with_nat);
    assert_eq!(
        changes.add_chains.keys().collect::<Vec<_>>(),
        [policy::nat::CHAIN]
    );
    assert_eq!(
        changes.add_sets.keys().collect::<Vec<_>>(),
        ["all-pools4", "masq-pools4"]
    );
    assert!(changes.replace_chains.is_empty() && changes.remove_chains.is_empty());
    for (name, chain) in &plain.chains {
        assert!(
            Arc::ptr_eq(chain, &with_nat.chains[name]),
            "{name} is recompiled for a pool change"
        );
    }

    // Another pool: set elements only, the nat chain shared.
    model.config.nat_outgoing.pools = pools(0b1011);
    let more = compiler.compile(&model);
    assert_eq!(more, compile(&model));
    let changes = diff(&with_nat, &more);
    assert!(changes.elements_only(), "{changes:?}");
    assert_eq!(
        changes.set_elements.keys().collect::<Vec<_>>(),
        ["all-pools4"]
    );
    assert!(Arc::ptr_eq(
        &with_nat.chains[policy::nat::CHAIN],
        &more.chains[policy::nat::CHAIN]
    ));

    // No natOutgoing pool left: no NAT object left.
    model.config.nat_outgoing.masquerade.clear();
    let without = compiler.compile(&model);
    assert_eq!(without, plain);
    let changes = diff(&more, &without);
    assert_eq!(changes.remove_chains.len(), 1);
    assert_eq!(changes.remove_sets.len(), 2);
}
