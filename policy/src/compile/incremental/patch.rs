//! The previous ruleset patched, when the only changes since are
//!
//! - to the rules of policies (same name, scope, selector, types and stage,
//!   same place): the chains of the directions whose rules changed are
//!   compiled again and replaced, sets no rule uses any more dropped and new
//!   ones added;
//! - to endpoints' labels, addresses or ports (same kind, name, node,
//!   interface and profiles, same place), as long as every policy selects
//!   some endpoint exactly when it did: their endpoint chains are made again,
//!   and the sets they may be members of;
//! - to network sets: the sets they may be members of are made again.
//!
//! First [`Compiler::plan`] checks all that, naming the first [`Fallback`]
//! it meets; only then is the ruleset changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use api::resources::policy::TierDefaultAction;
use api::selector::Expr;

use super::{Compiler, Fallback};
use crate::compile::lower::{
    DIRECTIONS, Lowering, Target, count_uses, endpoint_chain_name, endpoint_chain_of, endpoint_map,
    endpoint_steps, origin, tier_names,
};
use crate::flowlog::{self, ChainLog};
use crate::ir::{Ruleset, Set, Verdict};
use crate::memo::{FastMap, Pairing, enforced};
use crate::model::{ALL_INTERFACES, Endpoint, EndpointKind, Model, Policy, Profile};
use crate::selector_index::SelectorIndex;
use crate::sets::SetRegistry;
use crate::stages::{Features, Hop, all_interfaces};

/// The last ruleset and what it was made from, as far as a patch needs.
#[derive(Debug)]
pub(super) struct Previous {
    pub ruleset: Ruleset,
    /// Every policy, tier after tier.
    policies: Vec<Arc<Policy>>,
    tiers: Vec<(String, TierDefaultAction, usize)>,
    profiles: BTreeMap<String, Profile>,
    set_uses: FastMap<String, usize>,
    /// Each policy's place (tier, index), in the order of `policies`.
    places: Vec<(usize, usize)>,
    /// The policies' selectors, by their position in `policies`.
    selectors: SelectorIndex,
    /// For each endpoint, the policies selecting it: places, in order.
    selecting: Vec<Vec<(usize, usize)>>,
}

impl Previous {
    /// What a patch of `ruleset`, lowered from `model` (where `selecting`
    /// are the policies selecting each endpoint), needs.
    pub fn of(
        ruleset: Ruleset,
        model: &Model,
        set_uses: FastMap<String, usize>,
        selecting: Vec<Vec<(usize, usize)>>,
    ) -> Previous {
        let policies: Vec<Arc<Policy>> = (model.tiers.iter())
            .flat_map(|t| t.policies.iter().cloned())
            .collect();
        Previous {
            ruleset,
            selectors: SelectorIndex::new(policies.iter().map(|p| &p.selector)),
            policies,
            tiers: tier_layout(model),
            profiles: model.profiles.clone(),
            set_uses,
            places: (model.tiers.iter().enumerate())
                .flat_map(|(t, tier)| (0..tier.policies.len()).map(move |j| (t, j)))
                .collect(),
            selecting,
        }
    }

    /// The sets after a patch: those `refreshed` as the patch `made` them,
    /// those no rule uses any more dropped, new ones added.
    fn settle_sets(&mut self, mut made: BTreeMap<String, Set>, refreshed: Vec<String>) {
        for name in refreshed {
            if let Some(set) = made.remove(&name) {
                self.ruleset.sets.insert(name, set);
            }
        }
        let uses = &mut self.set_uses;
        uses.retain(|_, uses| *uses > 0);
        (self.ruleset.sets).retain(|name, _| uses.contains_key(name));
        for (name, set) in made {
            if uses.contains_key(&name) {
                self.ruleset.sets.entry(name).or_insert(set);
            }
        }
    }
}

/// What places the policies: each tier's name, default action and size.
fn tier_layout(model: &Model) -> Vec<(String, TierDefaultAction, usize)> {
    (model.tiers.iter())
        .map(|t| (t.name.clone(), t.default_action, t.policies.len()))
        .collect()
}

/// The rematched answers by selector (a selector many policies share once).
fn by_selector<'m>(previous: &Previous, model: &'m Model, rematched: &[Rematch]) -> Answers<'m> {
    let mut answers: Answers<'m> = FastMap::default();
    for rematch in rematched {
        for &(p, now) in &rematch.answers {
            let (t, j) = previous.places[p];
            let of = answers
                .entry(&model.tiers[t].policies[j].selector)
                .or_default();
            if of.last().is_none_or(|&(e, _)| e != rematch.endpoint) {
                of.push((rematch.endpoint, now));
            }
        }
    }
    answers
}

/// Whether two versions of an endpoint get the same chains in the same place
/// (they may differ in labels, addresses and ports).
fn placed_alike(a: &Endpoint, b: &Endpoint) -> bool {
    (
        a.kind,
        &a.name,
        &a.node,
        &a.interface,
        &a.profiles,
        a.limits,
    ) == (
        b.kind,
        &b.name,
        &b.node,
        &b.interface,
        &b.profiles,
        b.limits,
    )
}

/// An edited policy: its place among all policies, the new version, and
/// which directions' chains the previous ruleset holds.
type Edited<'m> = (usize, &'m Arc<Policy>, [bool; 2]);

/// A relabelled endpoint with chains on this host (enforced): the policies
/// whose selectors may answer differently for it (positions among all
/// policies; [`SelectorIndex::affected`]) and whether each selects it now.
struct Rematch {
    endpoint: usize,
    answers: Vec<(usize, bool)>,
}

/// Those answers by selector: the endpoints it may answer differently for,
/// and whether it selects each now.
type Answers<'m> = FastMap<&'m Expr, Vec<(usize, bool)>>;

/// A relabelled enforced endpoint, the policies selecting it ((tier, index),
/// in order), and whether it gets chains of its own (a host endpoint `*`
/// another outranks does not).
struct Selecting {
    endpoint: usize,
    policies: Vec<(usize, usize)>,
    chains: bool,
}

/// What a patch changes, checked.
struct Plan<'m> {
    /// Endpoints changed in place (indices, ascending).
    relabelled: Vec<usize>,
    answers: Answers<'m>,
    selecting: Vec<Selecting>,
    edited: Vec<Edited<'m>>,
}

impl Compiler {
    /// The previous ruleset patched to `model` (and kept), or why it cannot be.
    pub(super) fn patch(
        &mut self,
        model: &Model,
        endpoints: &Pairing,
        network_sets: &Pairing,
    ) -> Result<(), Fallback> {
        let mut previous = self.previous.take().ok_or(Fallback::FirstCompile)?;
        let plan = self.plan(&previous, model, endpoints)?;

        let changed_endpoints: Vec<&Endpoint> = (plan.relabelled.iter())
            .flat_map(|&i| [&self.endpoints[i], &model.endpoints[i]])
            .collect();
        let changed_sets = network_sets.changed(&self.network_sets, &model.network_sets);
        let stale = (self.memo.sets).invalidate(&changed_endpoints, &changed_sets);
        let cache = std::mem::take(&mut self.memo.sets);
        let mut lowering = Lowering::new(
            model,
            SetRegistry::with_cache(model, cache, self.memo.generation),
        );
        for edited in plan.edited {
            self.patch_policy(&mut lowering, &mut previous, edited);
        }
        let refreshed: Vec<String> = (stale.into_iter())
            .filter(|(name, _)| previous.ruleset.sets.contains_key(name))
            .map(|(name, source)| {
                lowering.make_set_again(&name, &source);
                name
            })
            .collect();

        self.memo.selections.rematch(&plan.answers);
        for selecting in &plan.selecting {
            previous.selecting[selecting.endpoint].clone_from(&selecting.policies);
        }
        self.patch_endpoints(model, &mut previous.ruleset, plan.selecting);
        for &i in &plan.relabelled {
            self.endpoints[i].clone_from(&model.endpoints[i]);
        }
        if !network_sets.is_unchanged() {
            self.network_sets.clone_from(&model.network_sets);
        }

        let made = lowering.finish();
        self.memo.sets = made.sets;
        previous.settle_sets(made.ruleset.sets, refreshed);
        self.previous = Some(previous);
        Ok(())
    }

    /// Checks that `model` differs from the previous one only as a patch
    /// allows, and finds what to patch.
    fn plan<'m>(
        &self,
        previous: &Previous,
        model: &'m Model,
        endpoints: &Pairing,
    ) -> Result<Plan<'m>, Fallback> {
        let tiers = tier_layout(model);
        let heads =
            |tiers: &[(String, TierDefaultAction, usize)]| -> Vec<(String, TierDefaultAction)> {
                (tiers.iter())
                    .map(|(name, action, _)| (name.clone(), *action))
                    .collect()
            };
        if heads(&tiers) != heads(&previous.tiers) {
            return Err(Fallback::TiersChanged);
        }
        if tiers != previous.tiers {
            return Err(Fallback::PolicyAddedOrRemoved);
        }
        if model.profiles != previous.profiles {
            return Err(Fallback::ProfilesChanged);
        }
        let relabelled = self.relabelled(model, endpoints)?;
        let rematched = self.rematch(previous, model, &relabelled);
        let answers = by_selector(previous, model, &rematched);
        if !self.memo.selections.keep_emptiness(&answers) {
            return Err(Fallback::SelectionEmptiedOrFilled);
        }
        // A relabelled host endpoint may gain or lose stage chains.
        if !Features::of(model).is_empty()
            && (relabelled.iter()).any(|&i| model.endpoints[i].kind == EndpointKind::Host)
        {
            return Err(Fallback::HostEndpointRelabelled);
        }
        let selecting = self.selecting(previous, model, &rematched)?;
        let edited = self.edited(previous, model)?;
        Ok(Plan {
            relabelled,
            answers,
            selecting,
            edited,
        })
    }

    /// For each relabelled endpoint with chains here, the selectors that
    /// may answer differently for its new labels, asked again.
    fn rematch(&self, previous: &Previous, model: &Model, relabelled: &[usize]) -> Vec<Rematch> {
        (relabelled.iter())
            .filter(|&&i| enforced(model, &model.endpoints[i]))
            .map(|&i| {
                let labels = &model.endpoints[i].labels;
                let affected = (previous.selectors).affected(&self.endpoints[i].labels, labels);
                let answers = (affected.into_iter())
                    .map(|p| {
                        let (t, j) = previous.places[p];
                        (p, model.tiers[t].policies[j].selector.matches(labels))
                    })
                    .collect();
                Rematch {
                    endpoint: i,
                    answers,
                }
            })
            .collect()
    }

    /// The endpoints changed in place: same place, same chains.
    fn relabelled(&self, model: &Model, endpoints: &Pairing) -> Result<Vec<usize>, Fallback> {
        if self.endpoints.len() != model.endpoints.len() {
            return Err(Fallback::EndpointAddedOrRemoved);
        }
        let mut relabelled = Vec::new();
        for (i, paired) in endpoints.remap.iter().enumerate() {
            match paired {
                Some(j) if *j == i => {}
                Some(_) => return Err(Fallback::EndpointsReordered),
                None if placed_alike(&self.endpoints[i], &model.endpoints[i]) => {
                    relabelled.push(i);
                }
                None => return Err(Fallback::EndpointReplaced),
            }
        }
        Ok(relabelled)
    }

    /// The policies selecting each relabelled enforced endpoint (those that
    /// did, as rematched), and for one that gets chains, checks that they
    /// and the profiles it falls back on are compiled already.
    fn selecting(
        &self,
        previous: &Previous,
        model: &Model,
        rematched: &[Rematch],
    ) -> Result<Vec<Selecting>, Fallback> {
        let mut selecting = Vec::new();
        for rematch in rematched {
            let ep = &model.endpoints[rematch.endpoint];
            let mut policies = previous.selecting[rematch.endpoint].clone();
            for &(p, now) in &rematch.answers {
                let place = previous.places[p];
                match (policies.binary_search(&place), now) {
                    (Ok(at), false) => {
                        policies.remove(at);
                    }
                    (Err(at), true) => policies.insert(at, place),
                    _ => {}
                }
            }
            let wildcard = ep.interface.as_deref() == Some(ALL_INTERFACES);
            let outranked = wildcard && !all_interfaces(model).is_some_and(|a| std::ptr::eq(a, ep));
            let chains = !(ep.kind == EndpointKind::Host && outranked);
            if chains {
                for &(t, j) in &policies {
                    let policy = &model.tiers[t].policies[j];
                    (self.memo.policy_kept(policy)).ok_or(Fallback::PolicyNotKept)?;
                }
                for profile in ep.profiles.iter() {
                    if model.profiles.contains_key(profile)
                        && self.memo.profile_kept(profile).is_none()
                    {
                        return Err(Fallback::ProfileNotKept);
                    }
                }
            }
            selecting.push(Selecting {
                endpoint: rematch.endpoint,
                policies,
                chains,
            });
        }
        Ok(selecting)
    }

    /// The edited policies, and which of their chains the ruleset holds.
    fn edited<'m>(
        &self,
        previous: &Previous,
        model: &'m Model,
    ) -> Result<Vec<Edited<'m>>, Fallback> {
        let mut edited = Vec::new();
        let policies = model.tiers.iter().flat_map(|t| &t.policies);
        for (flat, (old, policy)) in previous.policies.iter().zip(policies).enumerate() {
            if Arc::ptr_eq(old, policy) {
                continue;
            }
            if (&old.name, &old.scope) != (&policy.name, &policy.scope) {
                return Err(Fallback::PolicyReplaced);
            }
            if old.selector != policy.selector {
                return Err(Fallback::PolicySelectorChanged);
            }
            if old.types != policy.types {
                return Err(Fallback::PolicyTypesChanged);
            }
            if (old.stage, old.apply_on_forward) != (policy.stage, policy.apply_on_forward) {
                return Err(Fallback::PolicyStageChanged);
            }
            let kept = self
                .memo
                .policy_kept(policy)
                .ok_or(Fallback::PolicyNotKept)?;
            if !Arc::ptr_eq(&kept.source, old) {
                return Err(Fallback::KeptChainsDiffer);
            }
            let mut held = [false; 2];
            for (d, direction) in DIRECTIONS.into_iter().enumerate() {
                if old.rules(direction).is_none() {
                    continue;
                }
                match (
                    previous.ruleset.chains.get(&*kept.names[d]),
                    &kept.chains[d],
                ) {
                    (Some(chain), Some(compiled)) if Arc::ptr_eq(chain, &compiled.chain) => {
                        held[d] = true;
                    }
                    (None, _) => {}
                    _ => return Err(Fallback::KeptChainsDiffer),
                }
            }
            edited.push((flat, policy, held));
        }
        Ok(edited)
    }

    /// Replaces the chains of an edited policy's directions whose rules
    /// changed (those the ruleset holds), counting the sets they use.
    fn patch_policy(
        &mut self,
        lowering: &mut Lowering<'_>,
        previous: &mut Previous,
        (flat, policy, held): Edited<'_>,
    ) {
        previous.policies[flat] = policy.clone();
        let entry = (self.memo.policy_kept_mut(policy)).expect("checked by Compiler::edited");
        let unchanged = DIRECTIONS.map(|d| entry.source.rules(d) == policy.rules(d));
        entry.source = policy.clone();
        for (d, direction) in DIRECTIONS.into_iter().enumerate() {
            let old = entry.chains[d].take();
            if !held[d] {
                continue;
            }
            // The direction the edit left alone keeps its chain.
            if old.is_some() && unchanged[d] {
                entry.chains[d] = old;
                continue;
            }
            let rules = policy.rules(direction).unwrap_or_default();
            let log = lowering.flow_log_group(flowlog::logs(policy.stage));
            let chain = &*entry.names[d];
            let compiled = lowering.compile_chain(
                rules,
                &origin("", &entry.display, direction),
                log.map(|g| (g, chain)),
            );
            if let Some(old) = old {
                count_uses(&mut previous.set_uses, &old.sets, -1);
            }
            count_uses(&mut previous.set_uses, &compiled.sets, 1);
            (previous.ruleset.chains).insert(entry.names[d].clone(), compiled.chain.clone());
            entry.chains[d] = Some(compiled);
        }
    }

    /// Makes the filter chains of the relabelled endpoints again, from the
    /// kept policy and profile chains, and points their map elements at
    /// them; a chain no element leads to any more (its endpoints all moved
    /// to other chains) is dropped.
    fn patch_endpoints(&mut self, model: &Model, ruleset: &mut Ruleset, selecting: Vec<Selecting>) {
        let tiers = tier_names(model);
        let mut left = Vec::new();
        for Selecting {
            endpoint: i,
            policies,
            chains,
        } in selecting
        {
            if !chains {
                continue;
            }
            let ep = &model.endpoints[i];
            let interface = ep.interface.as_deref().unwrap_or_default();
            for (d, direction) in DIRECTIONS.into_iter().enumerate() {
                let memo = &self.memo;
                let steps =
                    endpoint_steps(model, &tiers, &policies, ep, Hop::Filter, direction, |r| {
                        let names = match r {
                            Target::Policy(t, j) => {
                                let policy = &model.tiers[t].policies[j];
                                memo.policy_kept(policy)?.names_display(d)
                            }
                            Target::Profile(profile) => {
                                model.profiles.get(profile)?;
                                memo.profile_kept(profile)?.names_display(d)
                            }
                        };
                        Some(names)
                    });
                let log = (model.config.flow_logs).map(|f| ChainLog {
                    group: f.group,
                    ingress: flowlog::is_ingress(direction),
                });
                let (chain, hash) = self.memo.endpoint_chain(Hop::Filter, log, steps);
                let name = endpoint_chain_name(ep, Hop::Filter, direction, interface, &chain, hash);
                let old = endpoint_chain_of(ruleset, ep, Hop::Filter, direction, interface);
                ruleset.chains.insert(name.as_str().into(), chain);
                if ep.kind == EndpointKind::Host && interface == ALL_INTERFACES {
                    continue;
                }
                if let Some(map) =
                    ruleset
                        .maps
                        .get_mut(endpoint_map(ep.kind, Hop::Filter, direction))
                {
                    map.elements
                        .insert(interface.to_string(), Verdict::Goto(name.clone()));
                }
                left.extend(old.filter(|old| *old != name));
            }
        }
        if left.is_empty() {
            return;
        }
        let reached: std::collections::BTreeSet<&str> = (ruleset.maps.values())
            .flat_map(|m| m.elements.values())
            .filter_map(|v| match v {
                Verdict::Goto(c) | Verdict::Jump(c) => Some(c.as_str()),
                _ => None,
            })
            .collect();
        let unreached: Vec<String> = left
            .into_iter()
            .filter(|c| !reached.contains(c.as_str()))
            .collect();
        for chain in unreached {
            ruleset.chains.remove(chain.as_str());
        }
    }
}
