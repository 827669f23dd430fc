//! `natOutgoing`: traffic from the pools that have it to destinations outside
//! every pool leaves with the host's address, as Calico's `cali-nat-outgoing`
//! chain does, in our one table:
//!
//! ```text
//! set masq-pools4, masq-pools6   natOutgoing pools (enabled, natOutgoing: true)
//! set all-pools4, all-pools6     every pool (and the natOutgoing ones), and with
//!                                natOutgoingExclusions IPPoolsAndHostIPs every host
//! chain nat-outgoing             type nat hook postrouting priority srcnat
//!     ip saddr @masq-pools4 ip daddr != @all-pools4 counter masquerade
//!     ip6 saddr @masq-pools6 ip6 daddr != @all-pools6 counter masquerade
//! ```
//!
//! Only a family with a natOutgoing pool gets its sets and its rule; with none
//! at all the ruleset holds no NAT object. With Felix's `natOutgoingAddress`
//! the rule of that address's family is `snat ip|ip6 to ADDR` instead of
//! `masquerade`. A nat chain sees the first packet of each connection only;
//! the NAT it picks applies to the whole connection, replies included.
//!
//! The objects depend on [`Config::nat_outgoing`](crate::Config::nat_outgoing)
//! and [`Config::nat_outgoing_address`](crate::Config::nat_outgoing_address)
//! only, so a [`Compiler`](crate::Compiler) makes them again only when those
//! change, and a pool change touches nothing else; the sets keep their names,
//! so the [`diff`](crate::diff()) of a pool change is set elements only.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use api::resources::ippool::IPPoolSpec;
use ipnet::IpNet;

use crate::ir::{
    BaseChain, Chain, ChainType, Family, Hook, Match, Priority, Rule, Ruleset, Set, SetElement,
    SetKey, Side, Statement,
};
use crate::sets::aggregate;

/// The nat base chain.
pub const CHAIN: &str = "nat-outgoing";

/// The set of the natOutgoing pools of a family (`masq-pools4`, `masq-pools6`).
pub fn masquerade_set(family: Family) -> String {
    format!("masq-pools{}", family.number())
}

/// The set of every pool of a family (`all-pools4`, `all-pools6`).
pub fn pools_set(family: Family) -> String {
    format!("all-pools{}", family.number())
}

/// The pools NAT is about: the same shape as felix's `Desired::nat_outgoing`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NatOutgoing {
    /// CIDRs of enabled pools with `natOutgoing: true`. Empty: no NAT.
    pub masquerade: Vec<IpNet>,
    /// CIDRs of every pool: traffic to them is never masqueraded.
    pub pools: Vec<IpNet>,
    /// Host addresses traffic to which is not masqueraded either (Felix's
    /// `natOutgoingExclusions: IPPoolsAndHostIPs`); empty otherwise.
    pub hosts: Vec<IpNet>,
}

impl NatOutgoing {
    /// From IPPools as Felix reads them: every pool in `pools` (its
    /// network), the enabled ones with `natOutgoing` in `masquerade`.
    pub fn of_pools<'a>(pools: impl IntoIterator<Item = &'a IPPoolSpec>) -> NatOutgoing {
        NatOutgoing::of_nets(
            pools
                .into_iter()
                .map(|p| (p.cidr.network(), p.nat_outgoing && !p.disabled)),
        )
    }

    /// From each pool's network and whether it is masqueraded; both lists
    /// sorted, without duplicates.
    pub fn of_nets(pools: impl IntoIterator<Item = (IpNet, bool)>) -> NatOutgoing {
        let (mut masquerade, mut all) = (BTreeSet::new(), BTreeSet::new());
        for (net, masq) in pools {
            if masq {
                masquerade.insert(net);
            }
            all.insert(net);
        }
        NatOutgoing {
            masquerade: masquerade.into_iter().collect(),
            pools: all.into_iter().collect(),
            hosts: Vec::new(),
        }
    }

    /// Excludes these host addresses from NAT too, sorted, without duplicates.
    pub fn excluding_hosts(mut self, hosts: impl IntoIterator<Item = IpAddr>) -> NatOutgoing {
        let hosts: BTreeSet<IpNet> = hosts.into_iter().map(IpNet::from).collect();
        self.hosts = hosts.into_iter().collect();
        self
    }
}

/// What NAT adds to a ruleset: its sets and its chain, if any.
#[derive(Debug, Clone, Default)]
pub(crate) struct Objects {
    sets: Vec<(String, Set)>,
    chain: Option<Arc<Chain>>,
}

/// The NAT objects for these pools and this SNAT address.
pub(crate) fn objects(nat: &NatOutgoing, address: Option<IpAddr>) -> Objects {
    let mut objects = Objects::default();
    let mut rules = Vec::new();
    for family in Family::BOTH {
        let of_family = |nets: &[IpNet]| -> Vec<IpNet> {
            nets.iter()
                .copied()
                .filter(|n| Family::of(n) == family)
                .collect()
        };
        let masquerade = of_family(&nat.masquerade);
        if masquerade.is_empty() {
            continue;
        }
        let mut pools = of_family(&nat.pools);
        pools.extend(&masquerade);
        let hosts = of_family(&nat.hosts);
        let excluded = if hosts.is_empty() {
            "all IP pools"
        } else {
            "all IP pools and hosts"
        };
        pools.extend(hosts);
        let set = |comment: &str, nets: Vec<IpNet>| Set {
            key: SetKey::Net(family),
            comment: comment.to_string(),
            elements: aggregate(nets).into_iter().map(SetElement::Net).collect(),
        };
        let (masq_name, pools_name) = (masquerade_set(family), pools_set(family));
        let addr = |side, set: &str, negate| Match::Addr {
            family,
            side,
            set: set.to_string(),
            negate,
        };
        let statement = match address.filter(|a| Family::of_addr(*a) == family) {
            Some(a) => Statement::Snat(a),
            None => Statement::Masquerade,
        };
        rules.push(
            Rule {
                matches: vec![
                    addr(Side::Source, &masq_name, false),
                    addr(Side::Destination, &pools_name, true),
                ],
                statements: vec![statement],
                ..Rule::default()
            }
            .comment("natOutgoing pool to outside every pool"),
        );
        objects
            .sets
            .push((masq_name, set("natOutgoing pools", masquerade)));
        objects.sets.push((pools_name, set(excluded, pools)));
    }
    if !rules.is_empty() {
        objects.chain = Some(Arc::new(Chain {
            base: Some(BaseChain {
                kind: ChainType::Nat,
                hook: Hook::Postrouting,
                priority: Priority::SrcNat,
            }),
            rules,
        }));
    }
    objects
}

impl Objects {
    /// Takes `old`'s chain when this one has the same rules, so that a change
    /// of pools alone leaves the chain shared.
    pub(crate) fn keep_chain_of(&mut self, old: &Objects) {
        if let (Some(new), Some(old)) = (&mut self.chain, &old.chain)
            && new == old
        {
            *new = old.clone();
        }
    }

    /// Puts the objects into a ruleset (which holds none of their names).
    pub(crate) fn add_to(&self, ruleset: &mut Ruleset) {
        ruleset.sets.extend(self.sets.iter().cloned());
        if let Some(chain) = &self.chain {
            ruleset.chains.insert(CHAIN.into(), chain.clone());
        }
    }

    /// Takes the objects [`add_to`](Self::add_to) put in out of a ruleset again.
    pub(crate) fn remove_from(&self, ruleset: &mut Ruleset) {
        for (name, _) in &self.sets {
            ruleset.sets.remove(name);
        }
        if self.chain.is_some() {
            ruleset.chains.remove(CHAIN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn no_natoutgoing_pool_makes_no_objects() {
        let nat = NatOutgoing {
            masquerade: Vec::new(),
            pools: nets(&["10.65.0.0/16"]),
            hosts: Vec::new(),
        };
        let mut ruleset = Ruleset::default();
        objects(&nat, None).add_to(&mut ruleset);
        assert_eq!(ruleset, Ruleset::default());
    }

    #[test]
    fn only_the_families_with_a_natoutgoing_pool_get_sets_and_a_rule() {
        let nat = NatOutgoing {
            masquerade: nets(&["10.65.0.0/16"]),
            pools: nets(&["10.64.0.0/16", "fd00:65::/48"]),
            hosts: Vec::new(),
        };
        let mut ruleset = Ruleset::default();
        objects(&nat, None).add_to(&mut ruleset);
        assert_eq!(
            ruleset.sets.keys().collect::<Vec<_>>(),
            ["all-pools4", "masq-pools4"]
        );
        // The natOutgoing pool is one of all pools, listed there or not.
        assert_eq!(
            ruleset.sets["all-pools4"].elements,
            [SetElement::Net("10.64.0.0/15".parse().unwrap())].into()
        );
        let chain = &ruleset.chains[CHAIN];
        assert_eq!(chain.rules.len(), 1);
        assert_eq!(chain.rules[0].statements, [Statement::Masquerade]);
    }

    #[test]
    fn a_nat_outgoing_address_replaces_masquerade_for_its_family_only() {
        let nat = NatOutgoing {
            masquerade: nets(&["10.65.0.0/16", "fd00:65::/48"]),
            pools: Vec::new(),
            hosts: Vec::new(),
        };
        let addr: IpAddr = "192.0.2.7".parse().unwrap();
        let mut ruleset = Ruleset::default();
        objects(&nat, Some(addr)).add_to(&mut ruleset);
        let statements: Vec<&Statement> = ruleset.chains[CHAIN]
            .rules
            .iter()
            .flat_map(|r| &r.statements)
            .collect();
        assert_eq!(statements, [&Statement::Snat(addr), &Statement::Masquerade]);
        // A natOutgoing pool is a pool, listed or not.
        assert!(
            (ruleset.sets["all-pools6"].elements)
                .contains(&SetElement::Net("fd00:65::/48".parse().unwrap()))
        );
    }

    #[test]
    fn disabled_pools_are_pools_but_never_masquerade() {
        let pool = |cidr: &str, nat: bool, disabled: bool| {
            let mut p = IPPoolSpec::new(api::types::Cidr(cidr.parse().unwrap()));
            p.nat_outgoing = nat;
            p.disabled = disabled;
            p
        };
        let pools = [
            pool("10.65.0.0/16", true, false),
            pool("10.66.0.0/16", true, true),
            pool("10.67.0.0/16", false, false),
        ];
        let nat = NatOutgoing::of_pools(&pools);
        assert_eq!(nat.masquerade, nets(&["10.65.0.0/16"]));
        assert_eq!(
            nat.pools,
            nets(&["10.65.0.0/16", "10.66.0.0/16", "10.67.0.0/16"])
        );
    }

    #[test]
    fn host_addresses_join_the_exclusions_of_their_family() {
        let nat = NatOutgoing::of_nets([(net("10.65.0.0/16"), true)]).excluding_hosts([
            "192.168.1.2".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            "192.168.1.2".parse().unwrap(),
        ]);
        assert_eq!(nat.hosts, nets(&["192.168.1.2/32", "fd00::2/128"]));
        let mut ruleset = Ruleset::default();
        objects(&nat, None).add_to(&mut ruleset);
        let excluded = &ruleset.sets["all-pools4"];
        assert_eq!(excluded.comment, "all IP pools and hosts");
        assert_eq!(
            excluded.elements,
            BTreeSet::from([
                SetElement::Net(net("10.65.0.0/16")),
                SetElement::Net(net("192.168.1.2/32"))
            ])
        );
        assert!(
            ruleset.sets.keys().all(|name| !name.ends_with('6')),
            "no IPv6 NAT without an IPv6 natOutgoing pool"
        );
    }
}
