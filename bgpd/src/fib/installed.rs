//! What the FIB has installed, compactly (pure): per family a B-tree from
//! the prefix to the number of its next-hop set, the sets interned with a
//! use count. An IPv4 route costs its 5-byte key and a 4-byte set number
//! in B-tree nodes, about 20 bytes, where a [`FibTable`] entry with its
//! own vector costs about 100.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::FibTable;
use crate::prefix::Prefix;

#[derive(Debug, Default)]
pub(super) struct Installed {
    v4: BTreeMap<Ipv4Net, u32>,
    v6: BTreeMap<Ipv6Net, u32>,
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
        let v4 = self.v4.iter().map(|(n, id)| (IpNet::V4(*n), *id));
        let v6 = self.v6.iter().map(|(n, id)| (IpNet::V6(*n), *id));
        v4.chain(v6)
            .map(|(p, id)| (p, self.sets[id as usize].0.clone()))
            .collect()
    }

    pub(super) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// The next hops installed for `prefix`.
    pub(super) fn get(&self, prefix: &Prefix) -> Option<&[IpAddr]> {
        let id = match prefix {
            IpNet::V4(n) => self.v4.get(n),
            IpNet::V6(n) => self.v6.get(n),
        }?;
        Some(&self.sets[*id as usize].0)
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
                u32::try_from(self.sets.len() - 1).expect("under 2^32 next-hop sets")
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
