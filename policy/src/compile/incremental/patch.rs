//! The previous ruleset patched, when the only changes since are
//!
//! - to the rules of policies (same name, scope, selector, types and stage,
//!   same place): the chains of the directions whose rules changed are
//!   compiled again and replaced, sets no rule uses any more dropped and new
//!   ones added;
//! - to endpoints' labels, addresses or ports (same kind, name, node,
//!   interface and profiles), as long as every policy selects some endpoint
//!   exactly when it did: their endpoint chains are made again, and the sets
//!   they may be members of; a [`SelectorIndex`] says which selectors to ask
//!   again;
//! - workloads added or removed (no packet-rate limit, an interface of their
//!   own), under the same condition, the others kept in order: their chains
//!   and map elements are added or taken out, the sets they may be members
//!   of made again, and a profile no endpoint holds any more dropped;
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
use crate::stages::{Features, Hop, all_interfaces, outranked};

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

/// The profiles (of the model) of removed endpoints that no endpoint with
/// chains holds any more: their chains go.
fn profiles_left_unused(model: &Model, old: &[Endpoint], changes: &EndpointChanges) -> Vec<String> {
    let mut left: std::collections::BTreeSet<&str> = (changes.removed.iter())
        .map(|&i| &old[i])
        .filter(|e| enforced(model, e))
        .flat_map(|e| e.profiles.iter().map(String::as_str))
        .filter(|p| model.profiles.contains_key(*p))
        .collect();
    if left.is_empty() {
        return Vec::new();
    }
    let all = all_interfaces(model);
    for ep in model.endpoints.iter().filter(|e| enforced(model, e)) {
        if !outranked(all, ep) {
            for profile in &ep.profiles {
                left.remove(profile.as_str());
            }
        }
    }
    left.into_iter().map(String::from).collect()
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

/// An enforced endpoint relabelled or added, the policies selecting it
/// ((tier, index), in order), and whether it gets chains of its own (a host
/// endpoint `*` another outranks does not).
struct Selecting {
    endpoint: usize,
    policies: Vec<(usize, usize)>,
    chains: bool,
}

/// How the endpoints changed since the previous model; every other
/// endpoint is unchanged, in the same order.
#[derive(Debug, Default)]
struct EndpointChanges {
    /// Endpoints changed in place (same kind, name, node, interface,
    /// profiles and limits): (old index, new index), ascending.
    relabelled: Vec<(usize, usize)>,
    /// New indices of the workloads added, ascending.
    added: Vec<usize>,
    /// Old indices of the workloads removed, ascending.
    removed: Vec<usize>,
}

impl EndpointChanges {
    /// Whether endpoints were added or removed, so that indices moved.
    fn moved(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }
}

/// What a patch changes, checked.
struct Plan<'m> {
    endpoints: EndpointChanges,
    /// The relabelled endpoints' answers, when no endpoint moved; when some
    /// did, every selector is asked about every changed endpoint.
    answers: Option<Answers<'m>>,
    selecting: Vec<Selecting>,
    /// Profiles whose chains no endpoint jumps to once the removed are gone.
    unused_profiles: Vec<String>,
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

        let changes = &plan.endpoints;
        let changed_endpoints: Vec<&Endpoint> = (changes.relabelled.iter())
            .flat_map(|&(i, j)| [&self.endpoints[i], &model.endpoints[j]])
            .chain(changes.removed.iter().map(|&i| &self.endpoints[i]))
            .chain(changes.added.iter().map(|&j| &model.endpoints[j]))
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

        match &plan.answers {
            Some(answers) => self.memo.selections.rematch(answers),
            None => self.memo.selections.update(model, endpoints),
        }
        let removed = self.follow_endpoints(model, &mut previous, &plan.endpoints);
        for selecting in &plan.selecting {
            previous.selecting[selecting.endpoint].clone_from(&selecting.policies);
        }
        self.patch_endpoints(model, &mut previous.ruleset, &removed, plan.selecting);
        for profile in &plan.unused_profiles {
            self.drop_profile(&mut previous, profile);
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
        let changes = self.endpoint_changes(model, endpoints)?;
        let (answers, rematched) = if changes.moved() {
            if !(self.memo.selections).keep_emptiness_after(model, endpoints) {
                return Err(Fallback::SelectionEmptiedOrFilled);
            }
            (None, None)
        } else {
            let in_place: Vec<usize> = changes.relabelled.iter().map(|&(_, j)| j).collect();
            let rematched = self.rematch(previous, model, &in_place);
            let answers = by_selector(previous, model, &rematched);
            if !self.memo.selections.keep_emptiness(&answers) {
                return Err(Fallback::SelectionEmptiedOrFilled);
            }
            (Some(answers), Some(rematched))
        };
        // A relabelled host endpoint may gain or lose stage chains.
        if (changes.relabelled.iter()).any(|&(_, j)| model.endpoints[j].kind == EndpointKind::Host)
            && !Features::of(model).is_empty()
        {
            return Err(Fallback::HostEndpointRelabelled);
        }
        let selecting = match rematched {
            Some(rematched) => self.selecting(previous, model, &rematched)?,
            None => self.selecting_evaluated(previous, model, &changes)?,
        };
        let edited = self.edited(previous, model)?;
        Ok(Plan {
            unused_profiles: profiles_left_unused(model, &self.endpoints, &changes),
            endpoints: changes,
            answers,
            selecting,
            edited,
        })
    }

    /// How the endpoints changed: in place, or workloads added and removed,
    /// every other endpoint unchanged and in the same order.
    fn endpoint_changes(
        &self,
        model: &Model,
        endpoints: &Pairing,
    ) -> Result<EndpointChanges, Fallback> {
        let mut changes = EndpointChanges::default();
        let mut old_by_name: FastMap<&str, usize> = FastMap::default();
        for &i in &endpoints.changed_old {
            if old_by_name.insert(&self.endpoints[i].name, i).is_some() {
                return Err(Fallback::EndpointReplaced);
            }
        }
        for &j in &endpoints.changed_new {
            let ep = &model.endpoints[j];
            match old_by_name.remove(ep.name.as_str()) {
                Some(i) if placed_alike(&self.endpoints[i], ep) => changes.relabelled.push((i, j)),
                Some(_) => return Err(Fallback::EndpointReplaced),
                None => changes.added.push(j),
            }
        }
        changes.removed = old_by_name.into_values().collect();
        changes.removed.sort_unstable();
        changes.relabelled.sort_unstable();
        // The endpoints kept, changed in place or not, keep their order.
        let mut kept = (endpoints.remap.iter().enumerate())
            .filter_map(|(i, j)| Some((i, (*j)?)))
            .peekable();
        let mut in_place = changes.relabelled.iter().copied().peekable();
        let mut last = None;
        while let Some((_, j)) = match (kept.peek(), in_place.peek()) {
            (Some(a), Some(b)) if a.0 < b.0 => kept.next(),
            (_, Some(_)) => in_place.next(),
            (Some(_), None) => kept.next(),
            (None, None) => None,
        } {
            if last.is_some_and(|last| last >= j) {
                return Err(Fallback::EndpointsReordered);
            }
            last = Some(j);
        }
        if changes.moved() {
            self.check_moved(model, &changes)?;
        }
        Ok(changes)
    }

    /// Endpoints added or removed must be workloads without a packet rate
    /// limit (a host endpoint changes what the base chains hold, a rate
    /// limit has chains of its own), each on an interface no other
    /// endpoint claims (which one's chain the interface leads to is then
    /// the lowering's order, not the patch's).
    fn check_moved(&self, model: &Model, changes: &EndpointChanges) -> Result<(), Fallback> {
        let plain = |e: &Endpoint| {
            e.kind == EndpointKind::Workload
                && e.limits.ingress.packet_rate.is_none()
                && e.limits.egress.packet_rate.is_none()
        };
        let added = changes.added.iter().map(|&j| &model.endpoints[j]);
        let removed = changes.removed.iter().map(|&i| &self.endpoints[i]);
        if !added.clone().chain(removed.clone()).all(plain) {
            return Err(Fallback::EndpointAddedOrRemoved);
        }
        fn claims<'e>(model: &Model, endpoints: &'e [Endpoint]) -> FastMap<&'e str, usize> {
            let mut claims: FastMap<&str, usize> = FastMap::default();
            for e in endpoints.iter().filter(|e| enforced(model, e)) {
                *claims
                    .entry(e.interface.as_deref().unwrap_or_default())
                    .or_default() += 1;
            }
            claims
        }
        let once = |claims: &FastMap<&str, usize>, e: &Endpoint| {
            !enforced(model, e)
                || claims.get(e.interface.as_deref().unwrap_or_default()) == Some(&1)
        };
        let (old, new) = (
            claims(model, &self.endpoints),
            claims(model, &model.endpoints),
        );
        if added.clone().all(|e| once(&new, e)) && removed.clone().all(|e| once(&old, e)) {
            Ok(())
        } else {
            Err(Fallback::InterfaceShared)
        }
    }

    /// Takes a profile's chains out of the ruleset, and their uses of sets.
    fn drop_profile(&self, previous: &mut Previous, profile: &str) {
        let Some(kept) = self.memo.profile_kept(profile) else {
            return;
        };
        for (name, compiled) in kept.names.iter().zip(&kept.chains) {
            if previous.ruleset.chains.remove(&**name).is_some()
                && let Some(compiled) = compiled
            {
                count_uses(&mut previous.set_uses, &compiled.sets, -1);
            }
        }
    }

    /// Brings the kept endpoints, and the policies selecting each, to the
    /// new model's order: the removed taken out (and returned), the added
    /// put in (selected by nothing yet), the relabelled replaced.
    fn follow_endpoints(
        &mut self,
        model: &Model,
        previous: &mut Previous,
        changes: &EndpointChanges,
    ) -> Vec<Endpoint> {
        let mut removed = Vec::with_capacity(changes.removed.len());
        for &i in changes.removed.iter().rev() {
            removed.push(self.endpoints.remove(i));
            previous.selecting.remove(i);
        }
        for &j in &changes.added {
            self.endpoints.insert(j, model.endpoints[j].clone());
            previous.selecting.insert(j, Vec::new());
        }
        for &(_, j) in &changes.relabelled {
            self.endpoints[j].clone_from(&model.endpoints[j]);
        }
        removed
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
            selecting.push(self.checked(previous, model, rematch.endpoint, policies)?);
        }
        Ok(selecting)
    }

    /// The policies selecting each enforced endpoint relabelled or added,
    /// every selector asked (endpoints moved: no answers are kept by index).
    fn selecting_evaluated(
        &self,
        previous: &Previous,
        model: &Model,
        changes: &EndpointChanges,
    ) -> Result<Vec<Selecting>, Fallback> {
        let changed =
            (changes.relabelled.iter().map(|&(_, j)| j)).chain(changes.added.iter().copied());
        let mut selecting = Vec::new();
        for e in changed.filter(|&e| enforced(model, &model.endpoints[e])) {
            let labels = &model.endpoints[e].labels;
            let policies = (model.tiers.iter().enumerate())
                .flat_map(|(t, tier)| {
                    (tier.policies.iter().enumerate())
                        .filter(|(_, p)| p.selector.matches(labels))
                        .map(move |(j, _)| (t, j))
                })
                .collect();
            selecting.push(self.checked(previous, model, e, policies)?);
        }
        Ok(selecting)
    }

    /// Endpoint `e` selected by `policies`: whether it gets chains of its
    /// own, and if so, checked that they are compiled already, and the
    /// profiles it falls back on compiled and in the ruleset (an added
    /// endpoint may be the only one with its profile).
    fn checked(
        &self,
        previous: &Previous,
        model: &Model,
        e: usize,
        policies: Vec<(usize, usize)>,
    ) -> Result<Selecting, Fallback> {
        let ep = &model.endpoints[e];
        let chains = !outranked(all_interfaces(model), ep);
        if chains {
            for &(t, j) in &policies {
                let policy = &model.tiers[t].policies[j];
                (self.memo.policy_kept(policy)).ok_or(Fallback::PolicyNotKept)?;
            }
            for profile in (ep.profiles.iter()).filter(|p| model.profiles.contains_key(*p)) {
                let held = (self.memo.profile_kept(profile)).is_some_and(|kept| {
                    (kept.names.iter()).all(|n| previous.ruleset.chains.contains_key(&**n))
                });
                if !held {
                    return Err(Fallback::ProfileNotKept);
                }
            }
        }
        Ok(Selecting {
            endpoint: e,
            policies,
            chains,
        })
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

    /// Takes the map elements of the removed endpoints out, makes the filter
    /// chains of the relabelled and added endpoints (again), from the kept
    /// policy and profile chains, and points their map elements at them; a
    /// chain no element leads to any more (its endpoints all moved to other
    /// chains, or went) is dropped.
    fn patch_endpoints(
        &mut self,
        model: &Model,
        ruleset: &mut Ruleset,
        removed: &[Endpoint],
        selecting: Vec<Selecting>,
    ) {
        let tiers = tier_names(model);
        let mut left = Vec::new();
        for ep in removed.iter().filter(|e| enforced(model, e)) {
            let interface = ep.interface.as_deref().unwrap_or_default();
            for direction in DIRECTIONS {
                left.extend(endpoint_chain_of(
                    ruleset,
                    ep,
                    Hop::Filter,
                    direction,
                    interface,
                ));
                let map = endpoint_map(ep.kind, Hop::Filter, direction);
                if let Some(map) = ruleset.maps.get_mut(map) {
                    map.elements.remove(interface);
                }
            }
        }
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
