//! What the compiler keeps ([`Memo`]) so as not to make anything twice from
//! the same inputs: within one lowering ([`compile()`](crate::compile())
//! starts from an empty memo) and from one compilation of a
//! [`Compiler`](crate::compile::Compiler) to the next; and how a new model
//! invalidates it.
//!
//! Everything kept is keyed by its full input and compared on reuse, so a
//! cache can only make a compilation faster, never different:
//!
//! - a policy or profile chain by the policy's (profile's) name and rules
//!   ([`Compiled`]), with the sets its rules asked for;
//! - an endpoint chain by what it is made of ([`Step`]s: the policy chains it
//!   jumps to, the tiers' ends, the profiles), so endpoints selected by the same
//!   policies share one chain;
//! - the base and dispatch chains by the stages the model uses ([`Features`]);
//! - which local endpoints each policy selector selects ([`Selections`]),
//!   brought up to date by re-evaluating the selector on changed endpoints
//!   only (a patch asks only the selectors that a
//!   [`SelectorIndex`](crate::selector_index::SelectorIndex) names for the
//!   labels that changed);
//! - sets ([`SetCache`]), forgotten when a changed endpoint or network set may
//!   be a member.
//!
//! Which endpoints changed comes from [`pair`]ing the previous model's
//! endpoints with the new ones by name. Entries a compilation did not use are
//! dropped at its end, so the caches hold what the last ruleset holds.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use api::selector::Expr;

use crate::compile::{
    CompiledChain, Lowering, Step, endpoint_chain, policy_chain_names, profile_chain_names,
};
use crate::flowlog::ChainLog;
use crate::ir::Chain;
use crate::model::{Endpoint, Model, Policy, PolicyScope, Profile};
use crate::sets::{SetCache, SetSource};
use crate::stages::{Features, Hop};

/// A hash map with [`FxHasher`]: the caches hash selectors and chain names on
/// every compilation, where SipHash's resistance to chosen keys buys nothing
/// (the keys come from the operator's own resources).
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The multiply-rotate hash of rustc (`FxHasher`): a few cycles per word.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A policy or profile (`S`) with its chains, one per direction, compiled
/// when first needed.
#[derive(Debug)]
pub struct Compiled<S> {
    /// What the chains were compiled from.
    pub source: S,
    /// `ns/name`, `name` or the profile's name, for endpoint chain comments.
    pub display: Arc<str>,
    /// Chain names, ingress then egress.
    pub names: [Arc<str>; 2],
    pub chains: [Option<CompiledChain>; 2],
    /// The compilation that last used it.
    pub used: u64,
}

impl<S> Compiled<S> {
    /// The chain name for direction `d` and the name for comments.
    pub fn names_display(&self, d: usize) -> (Arc<str>, Arc<str>) {
        (self.names[d].clone(), self.display.clone())
    }

    pub fn new(source: S, display: String, names: [String; 2], used: u64) -> Self {
        Compiled {
            source,
            display: display.into(),
            names: names.map(Into::into),
            chains: [None, None],
            used,
        }
    }
}

impl Compiled<Arc<Policy>> {
    /// A policy's chain names, no chain compiled yet.
    pub fn of_policy(policy: &Arc<Policy>, used: u64) -> Self {
        let names = policy_chain_names(policy);
        Compiled::new(policy.clone(), policy.display_name(), names, used)
    }
}

impl Compiled<Profile> {
    /// A profile's chain names, no chain compiled yet.
    pub fn of_profile(name: &str, profile: &Profile, used: u64) -> Self {
        let names = profile_chain_names(name);
        Compiled::new(profile.clone(), name.to_string(), names, used)
    }
}

/// Whether two versions of a policy compile to the same chains: the same
/// policy, or the same name, scope, types and rules (its selector and order
/// only place the chains).
fn same_chains(a: &Arc<Policy>, b: &Arc<Policy>) -> bool {
    Arc::ptr_eq(a, b)
        || a.name == b.name
            && a.scope == b.scope
            && a.types == b.types
            && a.ingress == b.ingress
            && a.egress == b.egress
}

/// How the endpoints (or network sets) of two models correspond.
#[derive(Debug, Default)]
pub struct Pairing {
    /// For each old item, the index of an equal new item.
    pub remap: Vec<Option<usize>>,
    /// New items with no equal old one (changed or added).
    pub changed_new: Vec<usize>,
    /// Old items with no equal new one (changed or removed).
    pub changed_old: Vec<usize>,
}

impl Pairing {
    /// The changed items: old versions from `old`, then new ones from `new`.
    pub fn changed<'a, T>(&self, old: &'a [T], new: &'a [T]) -> Vec<&'a T> {
        (self.changed_old.iter().map(|&i| &old[i]))
            .chain(self.changed_new.iter().map(|&j| &new[j]))
            .collect()
    }

    /// Whether nothing changed.
    pub fn is_unchanged(&self) -> bool {
        self.changed_old.is_empty() && self.changed_new.is_empty()
    }
}

/// Pairs `old` items with `new` ones of the same name; pairs that are equal
/// are unchanged, every other item changed. Any pairing is correct (what is
/// unchanged is the same on both sides); pairing by name keeps the changed
/// ones few.
pub fn pair<T: PartialEq>(old: &[T], new: &[T], name: impl Fn(&T) -> &str) -> Pairing {
    let mut remap = vec![None; old.len()];
    let mut changed_new = Vec::new();
    let same_names = old.len() == new.len() && old.iter().zip(new).all(|(a, b)| name(a) == name(b));
    if same_names {
        for (i, (a, b)) in old.iter().zip(new).enumerate() {
            if a == b {
                remap[i] = Some(i);
            } else {
                changed_new.push(i);
            }
        }
    } else {
        let mut by_name: HashMap<&str, VecDeque<usize>> = HashMap::new();
        for (i, a) in old.iter().enumerate() {
            by_name.entry(name(a)).or_default().push_back(i);
        }
        for (j, b) in new.iter().enumerate() {
            match by_name.get_mut(name(b)).and_then(VecDeque::pop_front) {
                Some(i) if old[i] == *b => remap[i] = Some(j),
                _ => changed_new.push(j),
            }
        }
    }
    let changed_old = (0..old.len()).filter(|&i| remap[i].is_none()).collect();
    Pairing {
        remap,
        changed_new,
        changed_old,
    }
}

/// Whether an endpoint gets chains on this host.
pub fn enforced(model: &Model, endpoint: &Endpoint) -> bool {
    model.is_local(endpoint) && endpoint.interface.is_some()
}

/// Whether `selector` selects `ep` among the endpoints with chains here.
fn selects(model: &Model, selector: &Expr, ep: &Endpoint) -> bool {
    enforced(model, ep) && selector.matches(&ep.labels)
}

/// Which enforced endpoints (indices into the model's endpoints, ascending)
/// each policy selector selects.
#[derive(Debug, Default)]
pub struct Selections {
    entries: FastMap<Expr, (Vec<usize>, u64)>,
}

impl Selections {
    /// Brings every entry to the new model's endpoints: unchanged endpoints
    /// keep their answer under their new index, changed ones are evaluated.
    pub fn update(&mut self, model: &Model, endpoints: &Pairing) {
        for (selector, (selected, _)) in &mut self.entries {
            let mut next: Vec<usize> = selected
                .iter()
                .filter_map(|&i| endpoints.remap[i])
                .collect();
            next.extend(
                (endpoints.changed_new.iter().copied())
                    .filter(|&j| selects(model, selector, &model.endpoints[j])),
            );
            next.sort_unstable();
            *selected = next;
        }
    }

    /// The enforced endpoints `selector` selects.
    pub fn get(&mut self, model: &Model, selector: &Expr, generation: u64) -> &[usize] {
        // One lookup when the entry is there (the common case).
        if let Some((_, used)) = self.entries.get_mut(selector) {
            *used = generation;
        } else {
            let selected = model
                .endpoints
                .iter()
                .enumerate()
                .filter(|(_, e)| selects(model, selector, e))
                .map(|(i, _)| i)
                .collect();
            self.entries
                .insert(selector.clone(), (selected, generation));
        }
        &self.entries[selector].0
    }

    /// Whether every selector selects something after the endpoints of
    /// `endpoints` that changed (added, removed, or changed in place)
    /// exactly when it did before.
    pub fn keep_emptiness_after(&self, model: &Model, endpoints: &Pairing) -> bool {
        self.entries.iter().all(|(selector, (selected, _))| {
            let after = selected.iter().any(|&i| endpoints.remap[i].is_some())
                || (endpoints.changed_new.iter())
                    .any(|&j| selects(model, selector, &model.endpoints[j]));
            after != selected.is_empty()
        })
    }

    /// Whether every selector in `answers` (for each, the endpoints whose
    /// answer may have changed in place, and whether it selects each now)
    /// selects something afterwards exactly when it did before. A selector
    /// with no entry is taken to change: nothing kept says otherwise.
    pub fn keep_emptiness(&self, answers: &FastMap<&Expr, Vec<(usize, bool)>>) -> bool {
        answers.iter().all(|(selector, answers)| {
            let Some((selected, _)) = self.entries.get(*selector) else {
                return false;
            };
            let after = answers.iter().any(|&(_, now)| now)
                || (selected.iter()).any(|i| !answers.iter().any(|(e, _)| e == i));
            after != selected.is_empty()
        })
    }

    /// Brings the entries in `answers` up to date (see
    /// [`keep_emptiness`](Self::keep_emptiness)); the endpoints are where
    /// they were, and the selectors not in `answers` answer as before.
    pub fn rematch(&mut self, answers: &FastMap<&Expr, Vec<(usize, bool)>>) {
        for (selector, answers) in answers {
            let Some((selected, _)) = self.entries.get_mut(*selector) else {
                continue;
            };
            for &(e, now) in answers {
                match (selected.binary_search(&e), now) {
                    (Ok(at), false) => {
                        selected.remove(at);
                    }
                    (Err(at), true) => selected.insert(at, e),
                    _ => {}
                }
            }
        }
    }

    /// Drops the entries this compilation did not use.
    pub fn retain_used(&mut self, generation: u64) {
        self.entries.retain(|_, (_, used)| *used == generation);
    }
}

/// What an endpoint chain is made of: its hop, how it logs, its steps.
type EndpointChainKey = (Hop, Option<ChainLog>, Vec<Step>);

/// The chains, selections and sets a lowering makes, for the next lowering
/// (of the same model, or of the next model in a
/// [`Compiler`](crate::compile::Compiler)) to take rather than make.
#[derive(Debug, Default)]
pub struct Memo {
    /// Numbers the lowerings; each entry records the last that used it.
    pub generation: u64,
    policies: FastMap<PolicyScope, FastMap<String, Compiled<Arc<Policy>>>>,
    profiles: FastMap<String, Compiled<Profile>>,
    /// Each chain with its content hash (for its shared name) and the last
    /// generation that used it.
    endpoint_chains: FastMap<EndpointChainKey, (Arc<Chain>, u64, u64)>,
    /// Base and dispatch chains: they depend on the config and the features only.
    base_chains: FastMap<String, Arc<Chain>>,
    base_features: Features,
    /// The sets the base chains use (failsafe `net`s).
    base_sets: Vec<(String, SetSource)>,
    pub selections: Selections,
    pub sets: SetCache,
}

impl Memo {
    /// What is kept for the policy's name, if anything.
    pub fn policy_kept(&self, policy: &Policy) -> Option<&Compiled<Arc<Policy>>> {
        self.policies.get(&policy.scope)?.get(&policy.name)
    }

    /// What is kept for the policy's name, to change.
    pub fn policy_kept_mut(&mut self, policy: &Policy) -> Option<&mut Compiled<Arc<Policy>>> {
        self.policies.get_mut(&policy.scope)?.get_mut(&policy.name)
    }

    /// What is kept for the profile `name`, if anything.
    pub fn profile_kept(&self, name: &str) -> Option<&Compiled<Profile>> {
        self.profiles.get(name)
    }

    /// Drops every entry the last lowering did not use.
    pub fn retain_used(&mut self) {
        let generation = self.generation;
        for by_name in self.policies.values_mut() {
            by_name.retain(|_, p| p.used == generation);
        }
        self.policies.retain(|_, by_name| !by_name.is_empty());
        self.profiles.retain(|_, p| p.used == generation);
        self.endpoint_chains
            .retain(|_, (_, _, used)| *used == generation);
        self.selections.retain_used(generation);
    }

    /// Puts the base and dispatch chains for `features` into `lowering`
    /// (before any other chain): those kept for the same features, else new.
    pub fn base_chains(&mut self, lowering: &mut Lowering<'_>, features: Features) {
        if self.base_chains.is_empty() || self.base_features != features {
            self.base_sets = lowering.add_base_chains(features);
            self.base_chains.clone_from(lowering.chains());
            self.base_features = features;
        } else {
            lowering.add_kept_base_chains(&self.base_chains, &self.base_sets);
        }
    }

    /// The enforced endpoints `selector` selects (indices into the model's
    /// endpoints, ascending).
    pub fn selected(&mut self, model: &Model, selector: &Expr) -> &[usize] {
        self.selections.get(model, selector, self.generation)
    }

    /// The policy's chain names, and its chains made already: those kept
    /// when the policy compiles to the same chains, else none yet.
    pub fn policy(&mut self, policy: &Arc<Policy>) -> &mut Compiled<Arc<Policy>> {
        let generation = self.generation;
        if !self.policies.contains_key(&policy.scope) {
            self.policies
                .insert(policy.scope.clone(), FastMap::default());
        }
        let by_name = (self.policies.get_mut(&policy.scope)).expect("inserted above when missing");
        let name = policy.name.as_str();
        if !(by_name.get(name)).is_some_and(|kept| same_chains(&kept.source, policy)) {
            by_name.insert(policy.name.clone(), Compiled::of_policy(policy, generation));
        }
        let entry = by_name
            .get_mut(name)
            .expect("inserted above when missing or stale");
        entry.used = generation;
        entry
    }

    /// The chain names of the profile `name`, and its chains made already:
    /// those kept when the profile is unchanged, else none yet.
    pub fn profile(&mut self, name: &str, profile: &Profile) -> &mut Compiled<Profile> {
        let generation = self.generation;
        if !(self.profiles.get(name)).is_some_and(|kept| kept.source == *profile) {
            let fresh = Compiled::of_profile(name, profile, generation);
            self.profiles.insert(name.to_string(), fresh);
        }
        let entry = (self.profiles.get_mut(name)).expect("inserted above when missing or stale");
        entry.used = generation;
        entry
    }

    /// The endpoint chain of these steps in this hop: one chain for every
    /// endpoint with the same steps, kept while some endpoint has them, with
    /// the hash of its rules ([`stamp::hash`](crate::stamp::hash)), which
    /// names it in the kernel ([`endpoint_chain_name`](crate::compile::endpoint_chain_name)).
    pub fn endpoint_chain(
        &mut self,
        hop: Hop,
        log: Option<ChainLog>,
        steps: Vec<Step>,
    ) -> (Arc<Chain>, u64) {
        let generation = self.generation;
        let key = (hop, log, steps);
        match self.endpoint_chains.get_mut(&key) {
            Some((chain, hash, used)) => {
                *used = generation;
                (chain.clone(), *hash)
            }
            None => {
                let chain = Arc::new(endpoint_chain(hop, log, &key.2));
                let hash = crate::stamp::hash(&chain);
                self.endpoint_chains
                    .insert(key, (chain.clone(), hash, generation));
                (chain, hash)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(items: &[(&'static str, u8)]) -> Vec<(&'static str, u8)> {
        items.to_vec()
    }

    #[test]
    fn pairing_in_the_same_order_marks_only_the_changed_items() {
        let old = named(&[("a", 1), ("b", 1), ("c", 1)]);
        let new = named(&[("a", 1), ("b", 2), ("c", 1)]);
        let p = pair(&old, &new, |x| x.0);
        assert_eq!(p.remap, [Some(0), None, Some(2)]);
        assert_eq!((p.changed_old, p.changed_new), (vec![1], vec![1]));
    }

    #[test]
    fn pairing_by_name_follows_items_that_moved_and_marks_added_and_removed() {
        let old = named(&[("a", 1), ("b", 1), ("gone", 1), ("a", 2)]);
        let new = named(&[("new", 1), ("b", 1), ("a", 1), ("a", 2)]);
        let p = pair(&old, &new, |x| x.0);
        assert_eq!(p.remap, [Some(2), Some(1), None, Some(3)]);
        assert_eq!((p.changed_old, p.changed_new), (vec![2], vec![0]));
    }
}
