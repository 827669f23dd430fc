//! The difference between a kernel table read as entries (a key may appear
//! more than once, e.g. an FDB MAC with several destinations) and a desired
//! table with one value per key (pure). Neighbour and FDB entries use it.

use std::collections::{BTreeMap, BTreeSet};

/// What to change: keys to set (add or replace) to their value, and
/// current entries (by position) to delete. Deletions come first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedPlan<K, V> {
    pub delete: Vec<usize>,
    pub set: Vec<(K, V)>,
}

impl<K, V> KeyedPlan<K, V> {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.set.is_empty()
    }
}

/// The first entry of each desired key is kept when its value is right and
/// replaced otherwise; further entries of that key and entries of keys not
/// desired are deleted; desired keys without an entry are set.
pub fn diff<K: Ord + Clone, V: PartialEq + Clone>(
    current: &[(K, V)],
    desired: &BTreeMap<K, V>,
) -> KeyedPlan<K, V> {
    let mut seen = BTreeSet::new();
    let mut plan = KeyedPlan {
        delete: Vec::new(),
        set: Vec::new(),
    };
    for (i, (key, value)) in current.iter().enumerate() {
        match desired.get(key) {
            Some(want) if seen.insert(key.clone()) => {
                if want != value {
                    plan.set.push((key.clone(), want.clone()));
                }
            }
            _ => plan.delete.push(i),
        }
    }
    plan.set.extend(
        desired
            .iter()
            .filter(|(k, _)| !seen.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_tables_need_nothing() {
        let desired = BTreeMap::from([(1, 'a'), (2, 'b')]);
        assert!(diff(&[(1, 'a'), (2, 'b')], &desired).is_empty());
    }

    #[test]
    fn wrong_values_are_replaced_missing_keys_set_and_the_rest_deleted() {
        let desired = BTreeMap::from([(1, 'a'), (2, 'b'), (3, 'c')]);
        let plan = diff(&[(9, 'z'), (2, 'x'), (1, 'a'), (2, 'b')], &desired);
        assert_eq!(plan.delete, vec![0, 3]);
        assert_eq!(plan.set, vec![(2, 'b'), (3, 'c')]);
    }
}
