//! What the FIB has installed, compactly (pure): per family, the prefixes
//! with the number of their next-hop set, the sets interned with a use
//! count. The prefixes are a sorted vector plus a small B-tree of recent
//! changes, folded into the vector in one pass whenever it reaches a
//! sixteenth of its size: an IPv4 route costs 9 bytes (its 5-byte key and a
//! 4-byte set number), where a B-tree filled in order, as a table arrives,
//! costs about 21 and a [`FibTable`] entry with its own vector about 100.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::FibTable;
use crate::prefix::Prefix;

/// Set number marking a route removed while folding.
const GONE: u32 = u32::MAX;

/// Prefixes of one family: `run` sorted and unique, `recent` the changes
/// since the last fold (`None`: removed).
#[derive(Debug)]
struct Routes<K> {
    run: Vec<(K, u32)>,
    recent: BTreeMap<K, Option<u32>>,
    len: usize,
}

impl<K> Default for Routes<K> {
    fn default() -> Self {
        Routes {
            run: Vec::new(),
            recent: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Copy> Routes<K> {
    fn in_run(&self, key: &K) -> Option<usize> {
        // A table arrives in order: most new keys sort after the run, and
        // need no search through it.
        if self.run.last().is_none_or(|(last, _)| last < key) {
            return None;
        }
        self.run.binary_search_by(|(k, _)| k.cmp(key)).ok()
    }

    fn get(&self, key: &K) -> Option<u32> {
        match self.recent.get(key) {
            Some(v) => *v,
            None => self.in_run(key).map(|i| self.run[i].1),
        }
    }

    /// Sets `key` to `id`; the set it had.
    fn insert(&mut self, key: K, id: u32) -> Option<u32> {
        let old = self.get(&key);
        self.recent.insert(key, Some(id));
        if old.is_none() {
            self.len += 1;
        }
        self.fold_if_due();
        old
    }

    /// Removes `key`; the set it had.
    fn remove(&mut self, key: &K) -> Option<u32> {
        let old = self.get(key)?;
        if self.in_run(key).is_some() {
            self.recent.insert(*key, None);
        } else {
            self.recent.remove(key);
        }
        self.len -= 1;
        self.fold_if_due();
        Some(old)
    }

    fn fold_if_due(&mut self) {
        if self.recent.len() >= (self.run.len() / 16).max(1024) {
            self.fold();
        }
    }

    /// Folds `recent` into `run` in place: replacements and removals where
    /// they are, then the new keys merged in from the back.
    fn fold(&mut self) {
        let mut fresh = Vec::new();
        for (key, id) in std::mem::take(&mut self.recent) {
            match (self.in_run(&key), id) {
                (Some(i), id) => self.run[i].1 = id.unwrap_or(GONE),
                (None, Some(id)) => fresh.push((key, id)),
                (None, None) => {}
            }
        }
        self.run.retain(|(_, id)| *id != GONE);
        let mut old = self.run.len();
        let Some(&filler) = fresh.first() else {
            return;
        };
        self.run.resize(old + fresh.len(), filler);
        let mut at = self.run.len();
        while let Some(&(key, id)) = fresh.last() {
            at -= 1;
            if old > 0 && self.run[old - 1].0 > key {
                self.run[at] = self.run[old - 1];
                old -= 1;
            } else {
                self.run[at] = (key, id);
                fresh.pop();
            }
        }
    }

    /// Every entry, in order.
    fn entries(&self) -> Vec<(K, u32)> {
        let mut all: BTreeMap<K, Option<u32>> =
            self.run.iter().map(|&(k, id)| (k, Some(id))).collect();
        all.extend(self.recent.iter().map(|(k, v)| (*k, *v)));
        all.into_iter()
            .filter_map(|(k, v)| v.map(|id| (k, id)))
            .collect()
    }
}

#[derive(Debug, Default)]
pub(super) struct Installed {
    v4: Routes<Ipv4Net>,
    v6: Routes<Ipv6Net>,
    /// Next-hop sets by number, with their use count (0: free).
    sets: Vec<(Vec<IpAddr>, u32)>,
    numbers: HashMap<Vec<IpAddr>, u32>,
    free: Vec<u32>,
}

impl Installed {
    pub(super) fn from_table(table: &FibTable) -> Self {
        let mut out = Installed::default();
        for (prefix, hops) in table {
            out.insert(*prefix, hops);
        }
        out
    }

    pub(super) fn to_table(&self) -> FibTable {
        let v4 = self
            .v4
            .entries()
            .into_iter()
            .map(|(n, id)| (IpNet::V4(n), id));
        let v6 = self
            .v6
            .entries()
            .into_iter()
            .map(|(n, id)| (IpNet::V6(n), id));
        v4.chain(v6)
            .map(|(p, id)| (p, self.sets[id as usize].0.clone()))
            .collect()
    }

    pub(super) fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    /// The next hops installed for `prefix`.
    pub(super) fn get(&self, prefix: &Prefix) -> Option<&[IpAddr]> {
        let id = match prefix {
            IpNet::V4(n) => self.v4.get(n),
            IpNet::V6(n) => self.v6.get(n),
        }?;
        Some(&self.sets[id as usize].0)
    }

    /// Sets `prefix`'s next hops (adding it or replacing them).
    pub(super) fn insert(&mut self, prefix: Prefix, hops: &[IpAddr]) {
        let id = self.intern(hops);
        let old = match prefix {
            IpNet::V4(n) => self.v4.insert(n, id),
            IpNet::V6(n) => self.v6.insert(n, id),
        };
        if let Some(old) = old {
            self.release(old);
        }
    }

    pub(super) fn remove(&mut self, prefix: &Prefix) {
        let old = match prefix {
            IpNet::V4(n) => self.v4.remove(n),
            IpNet::V6(n) => self.v6.remove(n),
        };
        if let Some(old) = old {
            self.release(old);
        }
    }

    /// How many routes have exactly the next hops `hops`.
    pub(super) fn uses(&self, hops: &[IpAddr]) -> u32 {
        self.numbers
            .get(hops)
            .map_or(0, |&id| self.sets[id as usize].1)
    }

    fn intern(&mut self, hops: &[IpAddr]) -> u32 {
        if let Some(&id) = self.numbers.get(hops) {
            self.sets[id as usize].1 += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.sets[id as usize] = (hops.to_vec(), 1);
                id
            }
            None => {
                self.sets.push((hops.to_vec(), 1));
                u32::try_from(self.sets.len() - 1)
                    .ok()
                    .filter(|&id| id != GONE)
                    .expect("fewer than 2^32 - 1 next-hop sets")
            }
        };
        self.numbers.insert(hops.to_vec(), id);
        id
    }

    fn release(&mut self, id: u32) {
        let slot = &mut self.sets[id as usize];
        slot.1 -= 1;
        if slot.1 == 0 {
            let hops = std::mem::take(&mut slot.0);
            self.numbers.remove(&hops);
            self.free.push(id);
        }
    }

    /// Next-hop sets in use (for tests).
    #[cfg(test)]
    fn sets_in_use(&self) -> usize {
        self.numbers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn routes_share_next_hop_sets_which_are_freed_and_reused_when_unused() {
        let mut t = Installed::default();
        let one = [a("10.0.0.1")];
        let two = [a("10.0.0.1"), a("10.0.0.2")];
        t.insert(p("10.1.0.0/24"), &one);
        t.insert(p("10.2.0.0/24"), &one);
        t.insert(p("2001:db8::/32"), &[a("fe80::1")]);
        assert_eq!((t.len(), t.sets_in_use()), (3, 2));
        assert_eq!(t.get(&p("10.2.0.0/24")), Some(&one[..]));
        // Replacing moves the route to another set; the old one stays in use.
        t.insert(p("10.1.0.0/24"), &two);
        assert_eq!(t.get(&p("10.1.0.0/24")), Some(&two[..]));
        assert_eq!((t.len(), t.sets_in_use()), (3, 3));
        // The last user of a set going frees it, and its number is reused.
        t.remove(&p("10.2.0.0/24"));
        assert_eq!(t.get(&p("10.2.0.0/24")), None);
        assert_eq!(t.sets_in_use(), 2);
        let slots = t.sets.len();
        t.insert(p("10.3.0.0/24"), &[a("10.0.0.3")]);
        assert_eq!(t.sets.len(), slots);
        t.remove(&p("10.9.0.0/24"));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn routes_fold_recent_changes_into_the_sorted_run_like_a_map() {
        // Inserts, replacements and removals in a scrambled order, enough
        // for many folds, checked against a BTreeMap at every step.
        let mut routes: Routes<u32> = Routes::default();
        let mut model: BTreeMap<u32, u32> = BTreeMap::new();
        let mut x: u32 = 1;
        for step in 0..60_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let key = (x >> 8) % 20_000;
            if step % 5 == 4 {
                assert_eq!(routes.remove(&key), model.remove(&key), "remove {key}");
            } else {
                assert_eq!(
                    routes.insert(key, step),
                    model.insert(key, step),
                    "insert {key}"
                );
            }
            assert_eq!(routes.len, model.len());
            if step % 997 == 0 {
                assert!(routes.run.is_sorted_by(|a, b| a.0 < b.0));
                assert_eq!(
                    routes.entries(),
                    model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>()
                );
            }
        }
        assert!(routes.run.len() > 10_000, "folds happened");
        for key in 0..20_000 {
            assert_eq!(routes.get(&key), model.get(&key).copied());
        }
    }

    #[test]
    fn a_table_goes_in_and_comes_out_the_same() {
        let table: FibTable = [
            (p("10.1.0.0/24"), vec![a("10.0.0.1")]),
            (p("10.2.0.0/24"), vec![a("10.0.0.1"), a("10.0.0.2")]),
            (p("2001:db8::/32"), vec![a("fe80::1")]),
            (p("0.0.0.0/0"), vec![a("10.0.0.1")]),
        ]
        .into();
        assert_eq!(Installed::from_table(&table).to_table(), table);
    }
}
