//! [`diff`]: what to change in a programmed ruleset to make it another, as
//! [`Changes`] that one kernel transaction carries out.
//!
//! - A set or map whose definition (key, comment) is unchanged keeps its
//!   identity: only its elements are added and removed. An endpoint joining or
//!   leaving a selector therefore changes set elements only.
//! - A chain whose rules changed is *replaced*: flushed and refilled, keeping
//!   its identity, so nothing that jumps to it or maps to it changes. Editing one
//!   policy replaces only its policy chains.
//! - A set, map or chain whose definition changed (a set key or comment, a base
//!   chain hook) is *recreated*: removed and added again in the same
//!   transaction. Every chain whose rules use it is replaced, and every map that
//!   points at a recreated chain is recreated too, so nothing refers to an
//!   object while it is gone.
//!
//! [`Changes::apply_to`] is the same change applied to an IR, so that a driver
//! can track what it has programmed; `apply_to(current, diff(current, desired))`
//! gives `desired`. The order in which a transaction must carry the changes out
//! (new chains declared before the maps and rules that jump to them, sets
//! before the rules that use them, removals in reverse) is
//! [`render_changes`](crate::render::render_changes)'s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::ir::{Chain, Match, Ruleset, Set, SetElement, Verdict, VerdictMap};

/// Elements to remove from and add to one kept set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChanges<T> {
    pub remove: Vec<T>,
    pub add: Vec<T>,
}

// Hand-written so that `T` needs no `Default`.
impl<T> Default for ElementChanges<T> {
    fn default() -> Self {
        ElementChanges {
            remove: Vec::new(),
            add: Vec::new(),
        }
    }
}

/// Everything one update changes, by object name. A name both in a `remove_*`
/// and in the matching `add_*` is a recreated object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Sets to create, with all their elements.
    pub add_sets: BTreeMap<String, Set>,
    /// Maps to create, with all their elements.
    pub add_maps: BTreeMap<String, VerdictMap>,
    /// Chains to create, with their rules.
    pub add_chains: BTreeMap<String, Arc<Chain>>,
    /// Element changes of kept sets.
    pub set_elements: BTreeMap<String, ElementChanges<SetElement>>,
    /// Element changes of kept maps: (interface, verdict) pairs.
    pub map_elements: BTreeMap<String, ElementChanges<(String, Verdict)>>,
    /// Kept chains whose rules change: flushed, then given these rules.
    pub replace_chains: BTreeMap<String, Arc<Chain>>,
    pub remove_sets: BTreeSet<String>,
    pub remove_maps: BTreeSet<String>,
    pub remove_chains: BTreeSet<String>,
}

impl Changes {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }

    /// Whether the update changes set or map elements and nothing else.
    pub fn elements_only(&self) -> bool {
        self.add_sets.is_empty()
            && self.add_maps.is_empty()
            && self.add_chains.is_empty()
            && self.replace_chains.is_empty()
            && self.remove_sets.is_empty()
            && self.remove_maps.is_empty()
            && self.remove_chains.is_empty()
    }

    /// Carries the changes out on an IR.
    pub fn apply_to(&self, ruleset: &mut Ruleset) {
        for name in &self.remove_sets {
            ruleset.sets.remove(name);
        }
        for name in &self.remove_maps {
            ruleset.maps.remove(name);
        }
        for name in &self.remove_chains {
            ruleset.chains.remove(name.as_str());
        }
        ruleset.sets.extend(self.add_sets.clone());
        ruleset.maps.extend(self.add_maps.clone());
        for (name, chain) in self.add_chains.iter().chain(&self.replace_chains) {
            ruleset.chains.insert(name.as_str().into(), chain.clone());
        }
        for (name, change) in &self.set_elements {
            if let Some(set) = ruleset.sets.get_mut(name) {
                for e in &change.remove {
                    set.elements.remove(e);
                }
                set.elements.extend(change.add.iter().copied());
            }
        }
        for (name, change) in &self.map_elements {
            if let Some(map) = ruleset.maps.get_mut(name) {
                for (iface, _) in &change.remove {
                    map.elements.remove(iface);
                }
                map.elements.extend(change.add.iter().cloned());
            }
        }
    }
}

/// The sets, maps and chains a chain's rules name.
fn references(chain: &Chain) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    for rule in &chain.rules {
        for m in &rule.matches {
            if let Match::Addr { set, .. } | Match::AddrPort { set, .. } = m {
                out.insert(set.as_str());
            }
        }
        match &rule.verdict {
            Some(Verdict::Jump(c) | Verdict::Goto(c)) => {
                out.insert(c.as_str());
            }
            Some(Verdict::Vmap { map, .. }) => {
                out.insert(map.as_str());
            }
            _ => {}
        }
    }
    out
}

fn map_points_at(map: &VerdictMap, chains: &BTreeSet<String>) -> bool {
    map.elements.values().any(|v| match v {
        Verdict::Jump(c) | Verdict::Goto(c) => chains.contains(c),
        _ => false,
    })
}

/// Every name of two sorted maps once, in order, with its value on each
/// side: one merged walk, no lookups. A name both sides share (the same
/// `Arc`, as a ruleset and its incremental successor do) is matched without
/// comparing its bytes.
fn pairs<'a, K: Ord + AsRef<str>, V>(
    a: &'a BTreeMap<K, V>,
    b: &'a BTreeMap<K, V>,
) -> impl Iterator<Item = (&'a K, Option<&'a V>, Option<&'a V>)> {
    let mut a = a.iter().peekable();
    let mut b = b.iter().peekable();
    let order = |ka: &K, kb: &K| {
        if std::ptr::eq(ka.as_ref(), kb.as_ref()) {
            std::cmp::Ordering::Equal
        } else {
            ka.cmp(kb)
        }
    };
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((ka, _)), Some((kb, _))) => match order(ka, kb) {
            std::cmp::Ordering::Less => a.next().map(|(k, v)| (k, Some(v), None)),
            std::cmp::Ordering::Greater => b.next().map(|(k, v)| (k, None, Some(v))),
            std::cmp::Ordering::Equal => {
                let (k, va) = a.next()?;
                let (_, vb) = b.next()?;
                Some((k, Some(va), Some(vb)))
            }
        },
        (Some(_), None) => a.next().map(|(k, v)| (k, Some(v), None)),
        (None, Some(_)) => b.next().map(|(k, v)| (k, None, Some(v))),
        (None, None) => None,
    })
}

/// The changes that turn `current` into `desired`.
pub fn diff(current: &Ruleset, desired: &Ruleset) -> Changes {
    let mut changes = Changes::default();

    // Objects to recreate: same name, different definition. Sets and maps
    // share the namespace of named sets in nftables; chains have their own.
    let mut recreated_sets: BTreeSet<String> = current
        .sets
        .iter()
        .filter(|(name, old)| {
            desired
                .sets
                .get(*name)
                .is_some_and(|new| new.key != old.key || new.comment != old.comment)
        })
        .map(|(name, _)| name.clone())
        .collect();
    recreated_sets.extend(
        current
            .maps
            .iter()
            .filter(|(name, old)| {
                desired
                    .maps
                    .get(*name)
                    .is_some_and(|new| new.comment != old.comment)
            })
            .map(|(name, _)| name.clone()),
    );
    let recreated_chains: BTreeSet<String> = pairs(&current.chains, &desired.chains)
        .filter_map(|(name, old, new)| match (old, new) {
            (Some(old), Some(new)) if !Arc::ptr_eq(old, new) && new.base != old.base => {
                Some(name.to_string())
            }
            _ => None,
        })
        .collect();
    // A map pointing at a recreated chain is recreated with it.
    for (name, map) in &desired.maps {
        if current.maps.contains_key(name)
            && (map_points_at(map, &recreated_chains)
                || current
                    .maps
                    .get(name)
                    .is_some_and(|m| map_points_at(m, &recreated_chains)))
        {
            recreated_sets.insert(name.clone());
        }
    }

    for (name, set) in &desired.sets {
        match current.sets.get(name) {
            Some(old) if !recreated_sets.contains(name) => {
                let change = ElementChanges {
                    remove: old.elements.difference(&set.elements).copied().collect(),
                    add: set.elements.difference(&old.elements).copied().collect(),
                };
                if change != ElementChanges::default() {
                    changes.set_elements.insert(name.clone(), change);
                }
            }
            _ => {
                changes.add_sets.insert(name.clone(), set.clone());
            }
        }
    }
    for (name, map) in &desired.maps {
        match current.maps.get(name) {
            Some(old) if !recreated_sets.contains(name) => {
                let mut change = ElementChanges::default();
                for (iface, was, now) in pairs(&old.elements, &map.elements) {
                    if was == now {
                        continue;
                    }
                    if let Some(was) = was {
                        change.remove.push((iface.clone(), was.clone()));
                    }
                    if let Some(now) = now {
                        change.add.push((iface.clone(), now.clone()));
                    }
                }
                if change != ElementChanges::default() {
                    changes.map_elements.insert(name.clone(), change);
                }
            }
            _ => {
                changes.add_maps.insert(name.clone(), map.clone());
            }
        }
    }
    // Rules are compared only where both sides have the chain; the names of
    // what a chain refers to only when something is recreated. Both maps are
    // sorted by name, so one merged walk finds every pair without lookups.
    let recreating = !recreated_sets.is_empty() || !recreated_chains.is_empty();
    for (name, old, new) in pairs(&current.chains, &desired.chains) {
        match (old, new) {
            (Some(_), None) => {
                changes.remove_chains.insert(name.to_string());
            }
            (Some(old), Some(new)) if !recreated_chains.contains(&**name) => {
                let uses_recreated = recreating
                    && references(old)
                        .iter()
                        .any(|r| recreated_sets.contains(*r) || recreated_chains.contains(*r));
                if uses_recreated || (!Arc::ptr_eq(old, new) && old.rules != new.rules) {
                    changes.replace_chains.insert(name.to_string(), new.clone());
                }
            }
            (old, Some(new)) => {
                if old.is_some() {
                    changes.remove_chains.insert(name.to_string());
                }
                changes.add_chains.insert(name.to_string(), new.clone());
            }
            (None, None) => {}
        }
    }

    changes.remove_sets = current
        .sets
        .keys()
        .filter(|n| !desired.sets.contains_key(*n) || recreated_sets.contains(*n))
        .cloned()
        .collect();
    changes.remove_maps = current
        .maps
        .keys()
        .filter(|n| !desired.maps.contains_key(*n) || recreated_sets.contains(*n))
        .cloned()
        .collect();
    changes
}
