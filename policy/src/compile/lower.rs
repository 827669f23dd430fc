//! The pure pass: a [`Model`] lowered to the policy part of its [`Ruleset`]
//! (everything but the NAT objects), in one [`Lowering`].
//!
//! ```text
//! Model ─▶ base and dispatch chains (base) ─▶ verdict maps: interface → endpoint chain
//!          per local endpoint, hop and direction: endpoint chain (endpoint)
//!              └─ jump ─▶ policy and profile chains (rules) ─▶ named sets (crate::sets)
//! ```
//!
//! The pass keeps nothing from one model to the next. What it makes from
//! given inputs (base chains, a policy's or profile's chains, endpoint
//! chains, which endpoints a selector selects) it makes through a [`Memo`],
//! which hands back what it made from the same inputs before:
//! [`compile()`](super::compile()) passes an empty one, which shares within
//! the one lowering (endpoints selected alike share a chain, a selector
//! shared by many policies is evaluated once); the incremental compiler
//! passes the one it keeps. The ruleset is the same either way.
//!
//! - `base`: the base and dispatch chains, that is the shape of the ruleset;
//! - `endpoint`: an endpoint's chains: directions, layout, names;
//! - `rules`: a policy's or profile's rules as nft rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use api::resources::policy::PolicyType;

use crate::flowlog;
use crate::ir::{Chain, Rule, Ruleset, VerdictMap};
use crate::memo::{Compiled, FastMap, Memo};
use crate::model::{Model, Policy, PolicyScope};
use crate::sets::{SetCache, SetRegistry, SetSource, name};
use crate::stages::{Features, all_interfaces, outranked};

mod base;
mod endpoint;
mod rules;
#[cfg(test)]
mod tests;

pub use base::{MAP_HEP_FROM, MAP_HEP_TO, MAP_WL_FROM, MAP_WL_TO};
pub(crate) use endpoint::{
    Step, endpoint_chain, endpoint_chain_name, endpoint_chain_of, endpoint_map,
};
pub(super) use endpoint::{Target, endpoint_steps, tier_names};
pub(crate) use rules::CompiledChain;

/// One lowering of a model: the sets made so far, the chains and maps.
pub(crate) struct Lowering<'m> {
    model: &'m Model,
    sets: SetRegistry<'m>,
    /// Hashed while lowering, sorted at the end.
    chains: FastMap<String, Arc<Chain>>,
    maps: BTreeMap<String, VerdictMap>,
    /// How many uses (rules) of each set the chains put in hold.
    set_uses: FastMap<String, usize>,
}

/// What a whole lowering made.
pub(crate) struct Lowered {
    /// The policy part of the ruleset.
    pub ruleset: Ruleset,
    /// The sets of `ruleset`, to be reused by the next compilation.
    pub sets: SetCache,
    /// How many rules of `ruleset` use each set.
    pub set_uses: FastMap<String, usize>,
    /// For each endpoint, the policies selecting it: (tier, index), in
    /// order (none for an endpoint without chains here).
    pub selecting: Vec<Vec<(usize, usize)>>,
}

/// A policy of this lowering, once looked up (and its chains put in the
/// ruleset): its name for comments and its chain names.
struct PolicyNames {
    display: Arc<str>,
    chains: [Arc<str>; 2],
}

/// The policies of a lowering: which select each endpoint, and their names
/// once looked up.
struct Policies {
    tiers: Vec<Arc<str>>,
    /// For each endpoint, the policies selecting it: (tier, index), in order.
    selecting: Vec<Vec<(usize, usize)>>,
    /// Where each tier's policies start in `names`.
    offsets: Vec<usize>,
    names: Vec<Option<PolicyNames>>,
}

impl<'m> Lowering<'m> {
    /// A lowering with no chain, map or set yet, taking sets from `sets`.
    pub(crate) fn new(model: &'m Model, sets: SetRegistry<'m>) -> Self {
        Lowering {
            model,
            sets,
            chains: FastMap::default(),
            maps: BTreeMap::new(),
            set_uses: FastMap::default(),
        }
    }

    /// Lowers the whole model: the base chains, then each local endpoint's
    /// chains, which put in the chains of the policies and profiles they
    /// jump to; `memo` hands back what it made from the same inputs.
    pub(crate) fn lower(mut self, memo: &mut Memo) -> Lowered {
        let model = self.model;
        let features = Features::of(model);
        self.maps = (base::maps(features).into_iter())
            .map(|(map, comment)| {
                let comment = comment.to_string();
                (
                    map.to_string(),
                    VerdictMap {
                        comment,
                        ..VerdictMap::default()
                    },
                )
            })
            .collect();
        memo.base_chains(&mut self, features);
        let mut policies = Policies::of(model, memo);
        let all = all_interfaces(model);
        for (e, ep) in model.endpoints.iter().enumerate() {
            let Some(interface) = ep.interface.as_deref().filter(|_| model.is_local(ep)) else {
                continue;
            };
            if outranked(all, ep) {
                continue;
            }
            self.add_endpoint_chains(memo, features, &mut policies, e, interface);
        }
        let mut lowered = self.finish();
        lowered.selecting = policies.selecting;
        lowered
    }

    /// The ruleset made so far, the set cache and the set uses (and no
    /// endpoint's policies).
    pub(crate) fn finish(self) -> Lowered {
        let (sets, cache) = self.sets.into_parts();
        Lowered {
            ruleset: Ruleset {
                sets,
                maps: self.maps,
                chains: (self.chains.into_iter())
                    .map(|(name, chain)| (name.into(), chain))
                    .collect(),
            },
            sets: cache,
            set_uses: self.set_uses,
            selecting: Vec::new(),
        }
    }

    /// The NFLOG group deciding rules log to, when flow logs are on and
    /// the chain `logs`.
    pub(crate) fn flow_log_group(&self, logs: bool) -> Option<u16> {
        self.model
            .config
            .flow_logs
            .filter(|_| logs)
            .map(|f| f.group)
    }

    /// Makes the set `name` from `source` again.
    pub(crate) fn make_set_again(&mut self, name: &str, source: &SetSource) {
        self.sets.make_again(name, source);
    }

    /// The chain name of direction `d` of the policy and its name for
    /// comments, from its `slot` in this lowering. The first time, its chains
    /// go into the ruleset.
    fn policy_chain(
        &mut self,
        memo: &mut Memo,
        slot: &mut Option<PolicyNames>,
        policy: &Arc<Policy>,
        d: usize,
    ) -> (Arc<str>, Arc<str>) {
        let names = slot.get_or_insert_with(|| self.add_policy_chains(memo, policy));
        (names.chains[d].clone(), names.display.clone())
    }

    /// Puts the policy's chains in the ruleset: each direction it has rules for.
    fn add_policy_chains(&mut self, memo: &mut Memo, policy: &Arc<Policy>) -> PolicyNames {
        let entry = memo.policy(policy);
        for (d, direction) in DIRECTIONS.into_iter().enumerate() {
            if let Some(rules) = policy.rules(direction) {
                self.add_rule_chain(entry, d, rules, "", flowlog::logs(policy.stage));
            }
        }
        PolicyNames {
            display: entry.display.clone(),
            chains: entry.names.clone(),
        }
    }

    /// The profile's chain for direction `d`, put in the ruleset, and its
    /// name; `None` when the model has no such profile.
    fn profile_chain(
        &mut self,
        memo: &mut Memo,
        profile: &str,
        d: usize,
    ) -> Option<(Arc<str>, Arc<str>)> {
        let source = self.model.profiles.get(profile)?;
        let entry = memo.profile(profile, source);
        let rules = match DIRECTIONS[d] {
            PolicyType::Ingress => &source.ingress,
            PolicyType::Egress => &source.egress,
        };
        self.add_rule_chain(entry, d, rules, "profile ", true);
        Some(entry.names_display(d))
    }

    /// Puts chain `d` of a policy or profile in the ruleset, unless a chain
    /// of its name is there already: the one `entry` holds, else one compiled
    /// from `rules` (its comments say `kind`, the name and the direction),
    /// which `entry` then holds. With flow logs on, its deciding rules log
    /// (unless `logs` is false: untracked policy).
    fn add_rule_chain<S>(
        &mut self,
        entry: &mut Compiled<S>,
        d: usize,
        rules: &[crate::model::Rule],
        kind: &str,
        logs: bool,
    ) {
        let name = &*entry.names[d];
        if self.chains.contains_key(name) {
            return;
        }
        let display = &entry.display;
        let log = self.flow_log_group(logs);
        let compiled = entry.chains[d].get_or_insert_with(|| {
            self.compile_chain(
                rules,
                &origin(kind, display, DIRECTIONS[d]),
                log.map(|g| (g, name)),
            )
        });
        self.add_sets(&compiled.sets);
        self.chains.insert(name.to_string(), compiled.chain.clone());
    }

    /// Makes sure the sets of a chain made before are in the ruleset, and
    /// counts their uses.
    fn add_sets(&mut self, sets: &[(String, SetSource)]) {
        self.sets.replay(sets);
        count_uses(&mut self.set_uses, sets, 1);
    }
}

impl Policies {
    /// Which policies select each endpoint, in tier and policy order.
    fn of(model: &Model, memo: &mut Memo) -> Policies {
        let mut selecting: Vec<Vec<(usize, usize)>> = vec![Vec::new(); model.endpoints.len()];
        let mut offsets = Vec::with_capacity(model.tiers.len());
        let mut count = 0;
        for (t, tier) in model.tiers.iter().enumerate() {
            offsets.push(count);
            count += tier.policies.len();
            for (j, policy) in tier.policies.iter().enumerate() {
                for &e in memo.selected(model, &policy.selector) {
                    selecting[e].push((t, j));
                }
            }
        }
        Policies {
            tiers: tier_names(model),
            selecting,
            offsets,
            names: std::iter::repeat_with(|| None).take(count).collect(),
        }
    }
}

/// A chain no hook calls.
fn regular(rules: Vec<Rule>) -> Chain {
    Chain { base: None, rules }
}

/// Adds `delta` uses of each set a chain's log names.
pub(crate) fn count_uses(
    uses: &mut FastMap<String, usize>,
    log: &[(String, SetSource)],
    delta: isize,
) {
    for (name, _) in log {
        let n = uses.entry(name.clone()).or_default();
        *n = n.saturating_add_signed(delta);
    }
}

/// Ingress then egress: the order of a policy's or profile's chains.
pub(crate) const DIRECTIONS: [PolicyType; 2] = [PolicyType::Ingress, PolicyType::Egress];

fn direction_index(direction: PolicyType) -> usize {
    match direction {
        PolicyType::Ingress => 0,
        PolicyType::Egress => 1,
    }
}

/// `in` or `out`, in chain names.
fn direction_word(direction: PolicyType) -> &'static str {
    match direction {
        PolicyType::Ingress => "in",
        PolicyType::Egress => "out",
    }
}

/// `ingress` or `egress`: the policy field the direction's rules come from.
fn direction_field(direction: PolicyType) -> &'static str {
    match direction {
        PolicyType::Ingress => "ingress",
        PolicyType::Egress => "egress",
    }
}

/// What the comments of a policy's (`kind` empty) or profile's (`kind`
/// `profile `) chain call its rules: `shop/backend ingress`, `profile open egress`.
pub(crate) fn origin(kind: &str, display: &str, direction: PolicyType) -> String {
    format!("{kind}{display} {}", direction_field(direction))
}

/// `gnp-in-<name>`, `np-out-<ns>/<name>`: a policy's chains, ingress then egress.
pub(crate) fn policy_chain_names(policy: &Policy) -> [String; 2] {
    DIRECTIONS.map(|direction| {
        let d = direction_word(direction);
        match &policy.scope {
            PolicyScope::Global => name(&format!("gnp-{d}"), &policy.name),
            PolicyScope::Namespace(ns) => {
                name(&format!("np-{d}"), &format!("{ns}/{}", policy.name))
            }
        }
    })
}

/// `pro-in-<name>`, `pro-out-<name>`: a profile's chains.
pub(crate) fn profile_chain_names(profile: &str) -> [String; 2] {
    DIRECTIONS.map(|direction| name(&format!("pro-{}", direction_word(direction)), profile))
}
