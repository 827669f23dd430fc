//! [`compile`]: the pure function from a [`Model`] to a [`Ruleset`].
//!
//! # Shape of the ruleset
//!
//! ```text
//! forward (hook)  ct established,related accept
//!                 iifname "cali*" jump from-wl ── iifname vmap @wl-from ─ goto wl-out-<if>   (workload egress)
//!                 oifname "cali*" jump to-wl   ── oifname vmap @wl-to   ─ goto wl-in-<if>    (workload ingress)
//! input (hook)    ct established,related accept; ICMPv6 ND accept
//!                 iifname "cali*" goto wl-to-host: DHCP accept, jump from-wl, then endpoint-to-host action
//!                 failsafe inbound ports accept                                               (with host endpoints)
//!                 iifname vmap @hep-from ─ goto hep-in-<if>                                   (host endpoint ingress)
//! output (hook)   ct established,related accept; ICMPv6 ND accept
//!                 oifname "cali*" accept (the host reaches its own workloads, as in Calico)
//!                 failsafe outbound ports accept                                              (with host endpoints)
//!                 oifname vmap @hep-to ─ goto hep-out-<if>                                    (host endpoint egress)
//! nat-outgoing    type nat, hook postrouting: natOutgoing pool to outside every pool masquerade
//!                 (only with natOutgoing pools; the `nat` module)
//! ```
//!
//! Directions are Calico's: a workload's *ingress* is traffic to it (leaving
//! the host by its `cali` interface, `oifname`), its *egress* traffic from it
//! (`iifname`); a host endpoint's ingress is traffic arriving on its interface
//! for the host (hook input), its egress traffic the host sends out of it
//! (hook output). A `cali` interface no endpoint claims drops everything.
//!
//! An endpoint chain is entered by `goto`, so its final `return` (allowed)
//! goes back to the base chain, which goes on (to the other endpoint of a
//! workload-to-workload packet) and finally accepts by policy. It runs:
//!
//! ```text
//! ct state invalid drop
//! clear the ALLOW and PASS mark bits
//! per tier with a policy that selects the endpoint in this direction, in order:
//!     per policy, in order: (PASS clear) jump <policy chain>; (ALLOW set) return
//!     (PASS clear) drop            -- the tier's default action Deny; nothing for Pass
//!     clear PASS
//! per profile of the endpoint: jump <profile chain>; (ALLOW set) return
//! drop                             -- fail closed
//! ```
//!
//! A policy chain holds the policy's rules for one direction, shared by every
//! endpoint it selects: Allow sets ALLOW and returns, Pass sets PASS and
//! returns, Deny drops, Log logs and goes on. A rule becomes one nft rule per
//! address family it needs (selector and `nets` sets are per family) and per
//! alternative of its ports (numeric ports together, each named port apart).
//!
//! Untracked, pre-DNAT and forwarded host endpoint policy add base chains,
//! maps and endpoint chains of their own, described in the `stages` module;
//! their endpoint chains jump to the same policy chains. Failsafe ports
//! (the `failsafe` module) are accepted ahead of every host endpoint
//! dispatch but the forwarded one. The chains of a host endpoint for all
//! interfaces (`*`) are reached by a rule after the per-interface lookups of
//! input, output and pre-dnat (`stages::all_interfaces_dispatch`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use api::{
    Port, Protocol,
    resources::policy::{Action, IcmpFields, PolicyType, TierDefaultAction},
    selector::Expr,
};

use crate::failsafe::{self, Place};
use crate::ir::{
    BaseChain, Chain, CtState, Family, Hook, Iface, MARK_ALLOW, MARK_PASS, Match, Priority, Rule,
    Ruleset, Side, Statement, Verdict, VerdictMap,
};
use crate::memo::{Compiled, CompiledChain, FastMap, Pairing, Selections, Step, enforced, pair};
use crate::model::{
    ALL_INTERFACES, Config, Endpoint, EndpointKind, EndpointToHost, Entity, Model, NetworkSet,
    Policy, PolicyScope, Profile,
};
use crate::nat::{self, NatOutgoing};
use crate::sets::{SetCache, SetRegistry, SetSource, name};
use crate::stages::{
    Features, Hop, MAP_PRE_FROM, all_interfaces, all_interfaces_chain, all_interfaces_dispatch,
};

/// Verdict map: workload interface → its egress chain.
pub const MAP_WL_FROM: &str = "wl-from";
/// Verdict map: workload interface → its ingress chain.
pub const MAP_WL_TO: &str = "wl-to";
/// Verdict map: host endpoint interface → its ingress chain.
pub const MAP_HEP_FROM: &str = "hep-from";
/// Verdict map: host endpoint interface → its egress chain.
pub const MAP_HEP_TO: &str = "hep-to";

/// ICMPv6 neighbour discovery: router solicit/advert, neighbour solicit/advert.
const ND_TYPES: [u8; 4] = [133, 134, 135, 136];
const UDP: u8 = 17;

/// Compiles the model into the ruleset for table [`TABLE`](crate::ir::TABLE).
/// Deterministic: the same model gives an identical ruleset.
pub fn compile(model: &Model) -> Ruleset {
    let mut once = Compiler {
        once: true,
        ..Compiler::default()
    };
    once.compile(model)
}

/// Compiles one model after another, reusing what an edit did not touch.
///
/// `Compiler::compile(&mut self, model)` returns exactly what [`compile()`]
/// returns for the model (a differential test checks it), but keeps the
/// chains and sets it made (see the `memo` module): policies, profiles,
/// endpoint chains and sets whose inputs are unchanged are not compiled again,
/// and their chains are the same `Arc`s as in the previous ruleset, which
/// [`diff()`](crate::diff()) skips without comparing rules. Editing one policy
/// recompiles its chains; relabelling an endpoint re-evaluates selectors on that
/// endpoint only. When nothing but policies' rules, endpoints' labels,
/// addresses or ports, or network sets changed, the previous ruleset is
/// patched rather than assembled again (`Compiler::patch`). A change of
/// [`Config`] starts afresh, but for its NAT settings: they change the
/// [`nat`](mod@crate::nat) objects and nothing else.
///
/// Policies in the [`Model`] are `Arc`s: an unchanged policy is recognised by
/// identity, an edited one (`Arc::make_mut`) by comparing it.
#[derive(Debug, Default)]
pub struct Compiler {
    config: Option<Config>,
    generation: u64,
    /// The endpoints and network sets of the previous model.
    endpoints: Vec<Endpoint>,
    network_sets: Vec<NetworkSet>,
    policies: FastMap<PolicyScope, FastMap<String, Compiled<Arc<Policy>>>>,
    profiles: FastMap<String, Compiled<Profile>>,
    endpoint_chains: FastMap<(Hop, Vec<Step>), (Arc<Chain>, u64)>,
    /// Base and dispatch chains: they depend on the config and the features only.
    base_chains: FastMap<String, Arc<Chain>>,
    base_features: Features,
    /// The sets the base chains use (failsafe `net`s).
    base_sets: Vec<(String, SetSource)>,
    selections: Selections,
    sets: SetCache,
    /// What the last full compilation made, for [`Compiler::patch`].
    last: Option<Last>,
    /// Made by [`compile()`] for one compilation: keeps no [`Last`].
    once: bool,
    /// The NAT objects and what they were made from.
    nat: Option<((NatOutgoing, Option<IpAddr>), nat::Objects)>,
}

/// Whether two configs compile policy alike: they may differ in the NAT
/// settings, which only the NAT objects read.
fn policy_alike(a: &Config, b: &Config) -> bool {
    let Config {
        node,
        workload_prefix,
        endpoint_to_host,
        log_prefix,
        failsafe_inbound,
        failsafe_outbound,
        nat_outgoing: _,
        nat_outgoing_address: _,
    } = a;
    (node, workload_prefix, endpoint_to_host, log_prefix)
        == (
            &b.node,
            &b.workload_prefix,
            &b.endpoint_to_host,
            &b.log_prefix,
        )
        && (failsafe_inbound, failsafe_outbound) == (&b.failsafe_inbound, &b.failsafe_outbound)
}

/// The last ruleset and what it was made from, as far as a patch needs.
#[derive(Debug)]
struct Last {
    ruleset: Ruleset,
    /// Every policy, tier after tier.
    policies: Vec<Arc<Policy>>,
    tiers: Vec<(String, TierDefaultAction, usize)>,
    profiles: BTreeMap<String, Profile>,
    set_uses: FastMap<String, usize>,
}

fn flat_policies(model: &Model) -> Vec<Arc<Policy>> {
    (model.tiers.iter())
        .flat_map(|t| t.policies.iter().cloned())
        .collect()
}

/// Whether two versions of an endpoint get the same chains in the same place
/// (they may differ in labels, addresses and ports).
fn placed_alike(a: &Endpoint, b: &Endpoint) -> bool {
    (a.kind, &a.name, &a.node, &a.interface, &a.profiles)
        == (b.kind, &b.name, &b.node, &b.interface, &b.profiles)
}

/// What places the policies: each tier's name, default action and size.
fn skeleton(model: &Model) -> Vec<(String, TierDefaultAction, usize)> {
    (model.tiers.iter())
        .map(|t| (t.name.clone(), t.default_action, t.policies.len()))
        .collect()
}

/// Adds `delta` uses of each set a chain's log names.
fn count_uses(uses: &mut FastMap<String, usize>, log: &[(String, SetSource)], delta: isize) {
    for (name, _) in log {
        let n = uses.entry(name.clone()).or_default();
        *n = n.saturating_add_signed(delta);
    }
}

/// A policy of this compilation, once looked up (and its chains put in the
/// ruleset): its name for comments and its chain names.
struct Slot {
    display: Arc<str>,
    names: [Arc<str>; 2],
}

impl Compiler {
    /// A compiler with nothing kept yet.
    pub fn new() -> Self {
        Compiler::default()
    }

    /// Compiles the model, reusing what the previous compilation made from
    /// the same inputs. Gives the same ruleset as [`compile()`].
    pub fn compile(&mut self, model: &Model) -> Ruleset {
        let config = &model.config;
        if !(self.config.as_ref()).is_some_and(|c| policy_alike(c, config)) {
            *self = Compiler {
                config: Some(config.clone()),
                once: self.once,
                ..Compiler::default()
            };
        }
        let mut ruleset = self.compile_policy(model);
        let nat_input = (&config.nat_outgoing, config.nat_outgoing_address);
        let nat = match &mut self.nat {
            Some((input, objects)) if (&input.0, input.1) == nat_input => objects,
            slot => {
                let mut objects = nat::objects(&config.nat_outgoing, config.nat_outgoing_address);
                if let Some((_, old)) = slot {
                    objects.keep_chain_of(old);
                }
                let input = (config.nat_outgoing.clone(), config.nat_outgoing_address);
                &mut slot.insert((input, objects)).1
            }
        };
        nat.add_to(&mut ruleset);
        ruleset
    }

    /// Everything but the NAT objects.
    fn compile_policy(&mut self, model: &Model) -> Ruleset {
        let endpoints = pair(&self.endpoints, &model.endpoints, |e| e.name.as_str());
        let network_sets = pair(&self.network_sets, &model.network_sets, |n| n.name.as_str());
        if let Some(ruleset) = self.patch(model, &endpoints, &network_sets) {
            return ruleset;
        }
        self.last = None;
        self.generation += 1;
        let generation = self.generation;
        let changed_endpoints: Vec<&Endpoint> = (endpoints.changed_old.iter())
            .map(|&i| &self.endpoints[i])
            .chain(endpoints.changed_new.iter().map(|&j| &model.endpoints[j]))
            .collect();
        let changed_sets: Vec<&NetworkSet> = (network_sets.changed_old.iter())
            .map(|&i| &self.network_sets[i])
            .chain(
                network_sets
                    .changed_new
                    .iter()
                    .map(|&j| &model.network_sets[j]),
            )
            .collect();
        self.sets.invalidate(&changed_endpoints, &changed_sets);
        self.selections.update(model, &endpoints);

        let features = Features::of(model);
        let mut pass = Pass {
            model,
            sets: SetRegistry::with_cache(model, std::mem::take(&mut self.sets), generation),
            set_uses: FastMap::default(),
            chains: FastMap::default(),
            maps: [MAP_WL_FROM, MAP_WL_TO, MAP_HEP_FROM, MAP_HEP_TO]
                .into_iter()
                .chain(features.maps().into_iter().map(|(m, _)| m))
                .map(|m| (m.to_string(), VerdictMap::default()))
                .collect(),
        };
        if self.base_chains.is_empty() || self.base_features != features {
            pass.sets.start_log();
            pass.base_chains(features);
            self.base_sets = pass.sets.take_log();
            self.base_chains.clone_from(&pass.chains);
            self.base_features = features;
        } else {
            pass.chains.clone_from(&self.base_chains);
            pass.sets.replay(&self.base_sets);
        }
        count_uses(&mut pass.set_uses, &self.base_sets, 1);

        // Which policies select each enforced endpoint, in tier and policy order.
        let mut selecting: Vec<Vec<(usize, usize)>> = vec![Vec::new(); model.endpoints.len()];
        let mut offsets = Vec::with_capacity(model.tiers.len());
        let mut count = 0;
        for (t, tier) in model.tiers.iter().enumerate() {
            offsets.push(count);
            count += tier.policies.len();
            for (j, policy) in tier.policies.iter().enumerate() {
                for &e in self.selections.get(model, &policy.selector, generation) {
                    selecting[e].push((t, j));
                }
            }
        }
        let tiers: Vec<Arc<str>> = model.tiers.iter().map(|t| t.name.as_str().into()).collect();
        let mut slots: Vec<Option<Slot>> = std::iter::repeat_with(|| None).take(count).collect();
        let all = all_interfaces(model);
        for (e, ep) in model.endpoints.iter().enumerate() {
            let Some(interface) = ep.interface.as_deref().filter(|_| model.is_local(ep)) else {
                continue;
            };
            let wildcard = ep.kind == EndpointKind::Host && interface == ALL_INTERFACES;
            if wildcard && !all.is_some_and(|a| std::ptr::eq(a, ep)) {
                continue;
            }
            let (from_map, to_map) = match ep.kind {
                EndpointKind::Workload => (MAP_WL_FROM, MAP_WL_TO),
                EndpointKind::Host => (MAP_HEP_FROM, MAP_HEP_TO),
            };
            for hop in features.hops(ep.kind) {
                // Calico enforces normal and pre-DNAT policy only on all interfaces.
                if wildcard && matches!(hop, Hop::Forward | Hop::Untracked) {
                    continue;
                }
                for &direction in hop.directions() {
                    let d = direction_index(direction);
                    let selected = |&(t, j): &(usize, usize)| {
                        let p: &Policy = &model.tiers[t].policies[j];
                        hop.selects(p) && p.rules(direction).is_some()
                    };
                    if hop.only_when_selected() && !selecting[e].iter().any(selected) {
                        // Its own interface passes pre-DNAT rather than meet
                        // the host endpoint for all interfaces there.
                        if hop == Hop::PreDnat
                            && features.all_interfaces_pre_dnat
                            && !wildcard
                            && let Some(m) = pass.maps.get_mut(MAP_PRE_FROM)
                        {
                            m.elements.insert(interface.to_string(), Verdict::Accept);
                        }
                        continue;
                    }
                    let steps = endpoint_steps(
                        model,
                        &tiers,
                        &selecting[e],
                        ep,
                        hop,
                        direction,
                        |r| match r {
                            Resolve::Policy(t, j) => {
                                let slot = &mut slots[offsets[t] + j];
                                let slot =
                                    self.policy_slot(&mut pass, slot, &model.tiers[t].policies[j]);
                                Some((slot.names[d].clone(), slot.display.clone()))
                            }
                            Resolve::Profile(profile) => self.profile_chain(&mut pass, profile, d),
                        },
                    );
                    let chain = endpoint_chain_name(ep, hop, direction, interface);
                    pass.chains
                        .insert(chain.clone(), self.endpoint_chain(hop, steps));
                    // A workload's ingress is traffic leaving by its interface; a host
                    // endpoint's ingress is traffic arriving on it.
                    let map = match (ep.kind, direction) {
                        _ if hop != Hop::Filter => hop.host_map(direction).unwrap_or_default(),
                        (EndpointKind::Workload, PolicyType::Ingress)
                        | (EndpointKind::Host, PolicyType::Egress) => to_map,
                        _ => from_map,
                    };
                    // The host endpoint for all interfaces is reached by a
                    // rule of the base chain after the lookup.
                    if let Some(m) = pass.maps.get_mut(map).filter(|_| !wildcard) {
                        m.elements
                            .insert(interface.to_string(), Verdict::Goto(chain));
                    }
                }
            }
        }
        for (map, comment) in features.maps().into_iter().chain([
            (MAP_WL_FROM, "workload interface -> egress chain"),
            (MAP_WL_TO, "workload interface -> ingress chain"),
            (
                MAP_HEP_FROM,
                "host interface -> host endpoint ingress chain",
            ),
            (MAP_HEP_TO, "host interface -> host endpoint egress chain"),
        ]) {
            if let Some(m) = pass.maps.get_mut(map) {
                m.comment = comment.to_string();
            }
        }

        let Pass {
            sets,
            chains,
            maps,
            set_uses,
            ..
        } = pass;
        let (sets, set_cache) = sets.into_parts();
        self.sets = set_cache;
        for by_name in self.policies.values_mut() {
            by_name.retain(|_, p| p.used == generation);
        }
        self.policies.retain(|_, by_name| !by_name.is_empty());
        self.profiles.retain(|_, p| p.used == generation);
        self.endpoint_chains
            .retain(|_, (_, used)| *used == generation);
        self.selections.retain_used(generation);
        self.endpoints.clone_from(&model.endpoints);
        self.network_sets.clone_from(&model.network_sets);
        let ruleset = Ruleset {
            sets,
            maps,
            chains: chains.into_iter().collect(),
        };
        if !self.once {
            self.last = Some(Last {
                ruleset: ruleset.clone(),
                policies: flat_policies(model),
                tiers: skeleton(model),
                profiles: model.profiles.clone(),
                set_uses,
            });
        }
        ruleset
    }

    /// The previous ruleset patched, when the only changes since are
    ///
    /// - to the rules of policies (same name, scope, selector, types and
    ///   stage, same place): the chains of the directions whose rules
    ///   changed are compiled again and replaced, sets no rule
    ///   uses any more dropped and new ones added;
    /// - to endpoints' labels, addresses or ports (same kind, name, node,
    ///   interface and profiles, same place), as long as every policy selects
    ///   some endpoint exactly when it did: their endpoint chains are made
    ///   again, and the sets they may be members of;
    /// - to network sets: the sets they may be members of are made again.
    ///
    /// `None` when anything else changed.
    fn patch(
        &mut self,
        model: &Model,
        endpoints: &Pairing,
        network_sets: &Pairing,
    ) -> Option<Ruleset> {
        let mut last = self.last.take()?;
        if skeleton(model) != last.tiers
            || model.profiles != last.profiles
            || self.endpoints.len() != model.endpoints.len()
        {
            return None;
        }
        let mut relabelled = Vec::new();
        for (i, paired) in endpoints.remap.iter().enumerate() {
            match paired {
                Some(j) if *j == i => {}
                None if placed_alike(&self.endpoints[i], &model.endpoints[i]) => {
                    relabelled.push(i);
                }
                _ => return None,
            }
        }
        if !self.selections.keep_emptiness(model, &relabelled) {
            return None;
        }
        // A relabelled host endpoint may gain or lose stage chains.
        if !Features::of(model).is_empty()
            && (relabelled.iter()).any(|&i| model.endpoints[i].kind == EndpointKind::Host)
        {
            return None;
        }
        // The policies selecting each relabelled endpoint that gets chains,
        // and the profiles it falls back on: all compiled already.
        let mut selecting = Vec::new();
        for &i in &relabelled {
            let ep = &model.endpoints[i];
            let wildcard = ep.interface.as_deref() == Some(ALL_INTERFACES);
            let outranked = wildcard && !all_interfaces(model).is_some_and(|a| std::ptr::eq(a, ep));
            if !enforced(model, ep) || ep.kind == EndpointKind::Host && outranked {
                continue;
            }
            let mut policies = Vec::new();
            for (t, tier) in model.tiers.iter().enumerate() {
                for (j, policy) in tier.policies.iter().enumerate() {
                    if policy.selector.matches(&ep.labels) {
                        self.policies.get(&policy.scope)?.get(&policy.name)?;
                        policies.push((t, j));
                    }
                }
            }
            for profile in ep.profiles.iter() {
                if model.profiles.contains_key(profile) {
                    self.profiles.get(profile)?;
                }
            }
            selecting.push((i, policies));
        }
        // The edited policies, and which of their chains the ruleset holds.
        let mut edited = Vec::new();
        let policies = model.tiers.iter().flat_map(|t| &t.policies);
        for (flat, (old, policy)) in last.policies.iter().zip(policies).enumerate() {
            if Arc::ptr_eq(old, policy) {
                continue;
            }
            if (&old.name, &old.scope, &old.selector, &old.types)
                != (&policy.name, &policy.scope, &policy.selector, &policy.types)
                || (old.stage, old.apply_on_forward) != (policy.stage, policy.apply_on_forward)
            {
                return None;
            }
            let entry = self.policies.get(&policy.scope)?.get(&policy.name)?;
            if !Arc::ptr_eq(&entry.source, old) {
                return None;
            }
            let mut held = [false; 2];
            for (d, direction) in DIRECTIONS.into_iter().enumerate() {
                if old.rules(direction).is_none() {
                    continue;
                }
                match (last.ruleset.chains.get(&*entry.names[d]), &entry.chains[d]) {
                    (Some(chain), Some(compiled)) if Arc::ptr_eq(chain, &compiled.chain) => {
                        held[d] = true;
                    }
                    (None, _) => {}
                    _ => return None,
                }
            }
            edited.push((flat, policy, held));
        }

        // Everything checked: patch.
        let changed_endpoints: Vec<&Endpoint> = (relabelled.iter())
            .flat_map(|&i| [&self.endpoints[i], &model.endpoints[i]])
            .collect();
        let changed_sets: Vec<&NetworkSet> = (network_sets.changed_old.iter())
            .map(|&i| &self.network_sets[i])
            .chain((network_sets.changed_new.iter()).map(|&j| &model.network_sets[j]))
            .collect();
        let stale = self.sets.invalidate(&changed_endpoints, &changed_sets);
        let cache = std::mem::take(&mut self.sets);
        let mut pass = Pass {
            model,
            sets: SetRegistry::with_cache(model, cache, self.generation),
            chains: FastMap::default(),
            maps: BTreeMap::new(),
            set_uses: FastMap::default(),
        };
        for (flat, policy, held) in edited {
            last.policies[flat] = policy.clone();
            let entry = self
                .policies
                .get_mut(&policy.scope)
                .and_then(|by_name| by_name.get_mut(&policy.name))
                .expect("checked above");
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
                let origin = format!("{} {}", entry.display, field(direction));
                let rules = policy.rules(direction).unwrap_or_default();
                let compiled = pass.compile_chain(rules, &origin);
                if let Some(old) = old {
                    count_uses(&mut last.set_uses, &old.sets, -1);
                }
                count_uses(&mut last.set_uses, &compiled.sets, 1);
                last.ruleset
                    .chains
                    .insert(entry.names[d].to_string(), compiled.chain.clone());
                entry.chains[d] = Some(compiled);
            }
        }
        let refreshed: Vec<String> = (stale.into_iter())
            .filter(|(name, _)| last.ruleset.sets.contains_key(name))
            .map(|(name, source)| {
                pass.sets.make_again(&name, &source);
                name
            })
            .collect();

        self.selections.update(model, endpoints);
        let tiers: Vec<Arc<str>> = model.tiers.iter().map(|t| t.name.as_str().into()).collect();
        for (i, policies) in selecting {
            let ep = &model.endpoints[i];
            let interface = ep.interface.as_deref().unwrap_or_default();
            for (d, direction) in DIRECTIONS.into_iter().enumerate() {
                let steps =
                    endpoint_steps(model, &tiers, &policies, ep, Hop::Filter, direction, |r| {
                        let entry = match r {
                            Resolve::Policy(t, j) => {
                                let p = &model.tiers[t].policies[j];
                                self.policies.get(&p.scope)?.get(&p.name)?.names_display(d)
                            }
                            Resolve::Profile(profile) => {
                                model.profiles.get(profile)?;
                                self.profiles.get(profile)?.names_display(d)
                            }
                        };
                        Some(entry)
                    });
                let chain = self.endpoint_chain(Hop::Filter, steps);
                last.ruleset.chains.insert(
                    endpoint_chain_name(ep, Hop::Filter, direction, interface),
                    chain,
                );
            }
        }
        for &i in &relabelled {
            self.endpoints[i].clone_from(&model.endpoints[i]);
        }
        if !(network_sets.changed_new.is_empty() && network_sets.changed_old.is_empty()) {
            self.network_sets.clone_from(&model.network_sets);
        }

        let (mut made, cache) = pass.sets.into_parts();
        self.sets = cache;
        for name in refreshed {
            if let Some(set) = made.remove(&name) {
                last.ruleset.sets.insert(name, set);
            }
        }
        last.set_uses.retain(|_, uses| *uses > 0);
        last.ruleset
            .sets
            .retain(|name, _| last.set_uses.contains_key(name));
        for (name, set) in made {
            if last.set_uses.contains_key(&name) {
                last.ruleset.sets.entry(name).or_insert(set);
            }
        }
        let ruleset = last.ruleset.clone();
        self.last = Some(last);
        Some(ruleset)
    }

    /// The policy's slot in this compilation. The first time, its chains go
    /// into the ruleset (each direction it has rules for, unless a chain of
    /// that name is there already): from the cache when the policy is
    /// unchanged, else compiled.
    fn policy_slot<'s>(
        &mut self,
        pass: &mut Pass<'_>,
        slot: &'s mut Option<Slot>,
        policy: &Arc<Policy>,
    ) -> &'s Slot {
        if slot.is_some() {
            return slot.as_ref().expect("checked above");
        }
        let generation = self.generation;
        if !self.policies.contains_key(&policy.scope) {
            self.policies
                .insert(policy.scope.clone(), FastMap::default());
        }
        let by_name = self
            .policies
            .get_mut(&policy.scope)
            .expect("inserted above when missing");
        let entry = match by_name.get_mut(policy.name.as_str()) {
            Some(entry) if same_chains(&entry.source, policy) => entry,
            _ => {
                let names = DIRECTIONS.map(|direction| policy_chain_name(policy, direction));
                let fresh = Compiled::new(policy.clone(), policy.display_name(), names, generation);
                by_name.insert(policy.name.clone(), fresh);
                by_name
                    .get_mut(policy.name.as_str())
                    .expect("inserted above")
            }
        };
        entry.used = generation;
        for (d, direction) in DIRECTIONS.into_iter().enumerate() {
            let Some(rules) = policy.rules(direction) else {
                continue;
            };
            let name = &*entry.names[d];
            if pass.chains.contains_key(name) {
                continue;
            }
            let compiled = entry.chains[d].get_or_insert_with(|| {
                let origin = format!("{} {}", entry.display, field(direction));
                pass.compile_chain(rules, &origin)
            });
            pass.sets.replay(&compiled.sets);
            count_uses(&mut pass.set_uses, &compiled.sets, 1);
            pass.chains.insert(name.to_string(), compiled.chain.clone());
        }
        slot.insert(Slot {
            display: entry.display.clone(),
            names: entry.names.clone(),
        })
    }

    /// The endpoint chain of these steps: one chain for every endpoint with
    /// the same steps, kept while some endpoint has them.
    fn endpoint_chain(&mut self, hop: Hop, steps: Vec<Step>) -> Arc<Chain> {
        let generation = self.generation;
        let key = (hop, steps);
        match self.endpoint_chains.get_mut(&key) {
            Some((chain, used)) => {
                *used = generation;
                chain.clone()
            }
            None => {
                let chain = Arc::new(regular(endpoint_rules(hop, &key.1)));
                self.endpoint_chains
                    .insert(key, (chain.clone(), generation));
                chain
            }
        }
    }

    /// The profile's chain for direction `d`, in the ruleset, and its name;
    /// `None` when the model has no such profile.
    fn profile_chain(
        &mut self,
        pass: &mut Pass<'_>,
        profile: &str,
        d: usize,
    ) -> Option<(Arc<str>, Arc<str>)> {
        let source = pass.model.profiles.get(profile)?;
        let generation = self.generation;
        let entry = match self.profiles.get_mut(profile) {
            Some(entry) if entry.source == *source => entry,
            _ => {
                let names = DIRECTIONS
                    .map(|direction| name(&format!("pro-{}", direction_word(direction)), profile));
                let fresh = Compiled::new(source.clone(), profile.to_string(), names, generation);
                self.profiles.insert(profile.to_string(), fresh);
                self.profiles.get_mut(profile).expect("inserted above")
            }
        };
        entry.used = generation;
        let name = &*entry.names[d];
        if !pass.chains.contains_key(name) {
            let direction = DIRECTIONS[d];
            let compiled = entry.chains[d].get_or_insert_with(|| {
                let rules = match direction {
                    PolicyType::Ingress => &source.ingress,
                    PolicyType::Egress => &source.egress,
                };
                pass.compile_chain(rules, &format!("profile {profile} {}", field(direction)))
            });
            pass.sets.replay(&compiled.sets);
            count_uses(&mut pass.set_uses, &compiled.sets, 1);
            pass.chains.insert(name.to_string(), compiled.chain.clone());
        }
        Some((entry.names[d].clone(), entry.display.clone()))
    }
}

/// What an endpoint chain's step needs resolved to a chain name and a name
/// for the comment.
enum Resolve<'a> {
    /// The policy at (tier, index).
    Policy(usize, usize),
    Profile(&'a str),
}

/// The steps of an endpoint's chain in one hop for one direction: per tier,
/// the policies selecting it (`selecting`: (tier, index), in order) that
/// apply in the hop and have rules in this direction, then the tier's end;
/// then (filter hop) its profiles that `resolve` knows.
fn endpoint_steps(
    model: &Model,
    tiers: &[Arc<str>],
    selecting: &[(usize, usize)],
    ep: &Endpoint,
    hop: Hop,
    direction: PolicyType,
    mut resolve: impl FnMut(Resolve<'_>) -> Option<(Arc<str>, Arc<str>)>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for (t, tier) in model.tiers.iter().enumerate() {
        let before = steps.len();
        for &(_, j) in selecting.iter().filter(|&&(pt, _)| pt == t) {
            if !hop.selects(&tier.policies[j]) || tier.policies[j].rules(direction).is_none() {
                continue;
            }
            if let Some((chain, display)) = resolve(Resolve::Policy(t, j)) {
                steps.push(Step::Policy { chain, display });
            }
        }
        if steps.len() > before {
            steps.push(Step::TierEnd {
                tier: tiers[t].clone(),
                deny: hop.tier_deny() && tier.default_action == TierDefaultAction::Deny,
            });
        }
    }
    for profile in ep.profiles.iter().filter(|_| hop.profiles()) {
        if let Some((chain, profile)) = resolve(Resolve::Profile(profile)) {
            steps.push(Step::Profile { chain, profile });
        }
    }
    steps
}

/// `wl-in-<if>`, `hep-out-<if>`, `hep-raw-in-<if>`, ...
fn endpoint_chain_name(ep: &Endpoint, hop: Hop, direction: PolicyType, interface: &str) -> String {
    if ep.kind == EndpointKind::Host && interface == ALL_INTERFACES {
        return all_interfaces_chain(hop, direction);
    }
    let kind = match ep.kind {
        EndpointKind::Workload => "wl",
        EndpointKind::Host => hop.host_kind(),
    };
    name(&format!("{kind}-{}", direction_word(direction)), interface)
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

const DIRECTIONS: [PolicyType; 2] = [PolicyType::Ingress, PolicyType::Egress];

fn direction_index(direction: PolicyType) -> usize {
    match direction {
        PolicyType::Ingress => 0,
        PolicyType::Egress => 1,
    }
}

fn policy_chain_name(policy: &Policy, direction: PolicyType) -> String {
    let d = direction_word(direction);
    match &policy.scope {
        PolicyScope::Global => name(&format!("gnp-{d}"), &policy.name),
        PolicyScope::Namespace(ns) => name(&format!("np-{d}"), &format!("{ns}/{}", policy.name)),
    }
}

/// An endpoint chain's rules in a hop, from its steps.
fn endpoint_rules(hop: Hop, steps: &[Step]) -> Vec<Rule> {
    let mut rules = hop.prelude();
    for step in steps {
        match step {
            Step::Policy { chain, display } => {
                rules.push(
                    Rule::new(
                        vec![mark_is(MARK_PASS, false)],
                        Verdict::Jump(chain.to_string()),
                    )
                    .comment(format!("policy {display}")),
                );
                rules.push(hop.on_allow());
            }
            Step::TierEnd { tier, deny } => {
                if *deny {
                    rules.push(
                        Rule::new(vec![mark_is(MARK_PASS, false)], Verdict::Drop)
                            .comment(format!("tier {tier}: default deny")),
                    );
                }
                rules.push(statement_rule(Statement::MarkClear(MARK_PASS)));
            }
            Step::Profile { chain, profile } => {
                rules.push(
                    Rule::new(vec![], Verdict::Jump(chain.to_string()))
                        .comment(format!("profile {profile}")),
                );
                rules.push(hop.on_allow());
            }
        }
    }
    rules.extend(hop.last());
    rules
}

/// One compilation: the model, the sets made so far, the chains and maps.
struct Pass<'m> {
    model: &'m Model,
    sets: SetRegistry<'m>,
    /// Hashed while compiling, sorted at the end.
    chains: FastMap<String, Arc<Chain>>,
    maps: BTreeMap<String, VerdictMap>,
    /// How many uses (rules) of each set the chains put in hold.
    set_uses: FastMap<String, usize>,
}

fn direction_word(direction: PolicyType) -> &'static str {
    match direction {
        PolicyType::Ingress => "in",
        PolicyType::Egress => "out",
    }
}

fn mark_is(mask: u32, set: bool) -> Match {
    Match::Mark {
        mask,
        value: if set { mask } else { 0 },
    }
}

fn statement_rule(statement: Statement) -> Rule {
    Rule {
        statements: vec![statement],
        ..Rule::default()
    }
}

fn regular(rules: Vec<Rule>) -> Chain {
    Chain { base: None, rules }
}

impl Pass<'_> {
    fn base_chains(&mut self, features: Features) {
        let prefix = format!("{}*", self.model.config.workload_prefix);
        let iface = |iface, name: &str| Match::Iface {
            iface,
            name: name.to_string(),
            negate: false,
        };
        let established = || {
            Rule::new(
                vec![Match::CtState(vec![CtState::Established, CtState::Related])],
                Verdict::Accept,
            )
        };
        let nd = || {
            Rule::new(
                vec![Match::Icmp {
                    family: Family::V6,
                    types: ND_TYPES.to_vec(),
                    code: None,
                    negate: false,
                }],
                Verdict::Accept,
            )
            .comment("ICMPv6 neighbour discovery")
        };
        let base = |hook, rules| Chain {
            base: Some(BaseChain::filter(hook, Priority::Filter)),
            rules,
        };
        let vmap = |i, map: &str| Rule {
            verdict: Some(Verdict::Vmap {
                iface: i,
                map: map.to_string(),
            }),
            ..Rule::default()
        };
        let chains = [
            (
                "forward",
                base(
                    Hook::Forward,
                    vec![
                        established(),
                        Rule::new(
                            vec![iface(Iface::In, &prefix)],
                            Verdict::Jump("from-wl".into()),
                        )
                        .comment("workload egress"),
                        Rule::new(
                            vec![iface(Iface::Out, &prefix)],
                            Verdict::Jump("to-wl".into()),
                        )
                        .comment("workload ingress"),
                    ],
                ),
            ),
            (
                "from-wl",
                regular(vec![
                    vmap(Iface::In, MAP_WL_FROM),
                    Rule::new(vec![], Verdict::Drop).comment("unknown workload interface"),
                ]),
            ),
            (
                "to-wl",
                regular(vec![
                    vmap(Iface::Out, MAP_WL_TO),
                    Rule::new(vec![], Verdict::Drop).comment("unknown workload interface"),
                ]),
            ),
            (
                "input",
                base(
                    Hook::Input,
                    vec![
                        established(),
                        nd(),
                        Rule::new(
                            vec![iface(Iface::In, &prefix)],
                            Verdict::Goto("wl-to-host".into()),
                        )
                        .comment("workload to host"),
                        vmap(Iface::In, MAP_HEP_FROM),
                    ],
                ),
            ),
            ("wl-to-host", regular(self.workload_to_host())),
            (
                "output",
                base(
                    Hook::Output,
                    vec![
                        established(),
                        nd(),
                        Rule::new(vec![iface(Iface::Out, &prefix)], Verdict::Accept)
                            .comment("host to its workloads"),
                        vmap(Iface::Out, MAP_HEP_TO),
                    ],
                ),
            ),
        ];
        for (name, mut chain) in chains {
            if chain.base.is_some() {
                // After `ct state established,related accept`.
                let mut at = 1;
                if let Some(rule) = features.untracked_accept() {
                    chain.rules.insert(at, rule);
                    at += 1;
                }
                let all = match name {
                    "input" => Some((Iface::In, PolicyType::Ingress)),
                    "output" => Some((Iface::Out, PolicyType::Egress)),
                    _ => None,
                };
                if let Some((i, direction)) = all.filter(|_| features.all_interfaces) {
                    let dispatch = all_interfaces_dispatch(&prefix, i, Hop::Filter, direction);
                    chain.rules.push(dispatch);
                }
                if name == "forward" && features.forward {
                    let fwd = |to: &str, what: &str| {
                        Rule::new(vec![], Verdict::Jump(to.to_string())).comment(what)
                    };
                    chain
                        .rules
                        .insert(at, fwd("from-hep-fwd", "forwarded host endpoint ingress"));
                    chain
                        .rules
                        .push(fwd("to-hep-fwd", "forwarded host endpoint egress"));
                }
            }
            self.insert_base(features, name, chain);
        }
        for (name, chain) in features.chains(&prefix) {
            self.insert_base(features, name, chain);
        }
    }

    /// Puts a base or dispatch chain in the ruleset, with the failsafe rules
    /// before its host endpoint dispatch (its verdict map) when it has some.
    fn insert_base(&mut self, features: Features, name: &str, mut chain: Chain) {
        if let Some(place) = Place::of_chain(name).filter(|_| features.hosts) {
            let rules = failsafe::rules(&self.model.config, place, &mut self.sets);
            let dispatch =
                (chain.rules.iter()).position(|r| matches!(r.verdict, Some(Verdict::Vmap { .. })));
            let at = dispatch.unwrap_or(chain.rules.len());
            chain.rules.splice(at..at, rules);
        }
        self.chains.insert(name.to_string(), Arc::new(chain));
    }

    fn workload_to_host(&self) -> Vec<Rule> {
        let dhcp = |sport: u16, dport: u16, what: &str| {
            Rule::new(
                vec![
                    Match::L4proto {
                        proto: UDP,
                        negate: false,
                    },
                    Match::Ports {
                        side: Side::Source,
                        ranges: vec![(sport, sport)],
                        negate: false,
                    },
                    Match::Ports {
                        side: Side::Destination,
                        ranges: vec![(dport, dport)],
                        negate: false,
                    },
                ],
                Verdict::Accept,
            )
            .comment(what)
        };
        let last = match self.model.config.endpoint_to_host {
            EndpointToHost::Drop => Verdict::Drop,
            EndpointToHost::Accept => Verdict::Accept,
        };
        vec![
            dhcp(68, 67, "DHCPv4"),
            dhcp(546, 547, "DHCPv6"),
            Rule::new(vec![], Verdict::Jump("from-wl".into())).comment("workload egress policy"),
            Rule::new(vec![], last).comment("endpoint to host action"),
        ]
    }

    /// A policy or profile chain of these rules, with the sets they asked for.
    fn compile_chain(&mut self, rules: &[crate::model::Rule], origin: &str) -> CompiledChain {
        self.sets.start_log();
        let compiled = self.rules(rules, origin);
        CompiledChain {
            chain: Arc::new(regular(compiled)),
            sets: self.sets.take_log(),
        }
    }

    fn rules(&mut self, rules: &[crate::model::Rule], origin: &str) -> Vec<Rule> {
        let mut out = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let comment = format!("{origin}[{i}]");
            let (statements, verdict) = match rule.action {
                Action::Allow => (vec![Statement::MarkSet(MARK_ALLOW)], Some(Verdict::Return)),
                Action::Pass => (vec![Statement::MarkSet(MARK_PASS)], Some(Verdict::Return)),
                Action::Deny => (vec![], Some(Verdict::Drop)),
                Action::Log => (
                    vec![Statement::Log {
                        prefix: format!("{} ", self.model.config.log_prefix),
                    }],
                    None,
                ),
            };
            for matches in self.rule_matches(rule) {
                out.push(Rule {
                    matches,
                    statements: statements.clone(),
                    verdict: verdict.clone(),
                    comment: Some(comment.clone()),
                });
            }
        }
        out
    }

    /// The match lists one policy rule becomes (none when it can never match).
    fn rule_matches(&mut self, rule: &crate::model::Rule) -> Vec<Vec<Match>> {
        let icmp_family = rule.protocol.and_then(Protocol::icmp_version);
        let allowed = |f: Family| {
            rule.ip_version.is_none_or(|v| v == f.number())
                && icmp_family.is_none_or(|v| v == f.number())
        };
        let variants: Vec<Option<Family>> =
            if needs_family(&rule.source) || needs_family(&rule.destination) {
                Family::BOTH
                    .into_iter()
                    .filter(|f| allowed(*f))
                    .map(Some)
                    .collect()
            } else {
                let fixed = rule
                    .ip_version
                    .map(|v| if v == 6 { Family::V6 } else { Family::V4 });
                vec![fixed]
            };
        let mut out = Vec::new();
        for family in variants {
            out.extend(self.variant(rule, family));
        }
        out
    }

    fn variant(&mut self, rule: &crate::model::Rule, family: Option<Family>) -> Vec<Vec<Match>> {
        let mut common = Vec::new();
        if let (Some(f), Some(_)) = (family, rule.ip_version) {
            common.push(Match::Nfproto(f));
        }
        if let Some(p) = rule.protocol {
            common.push(Match::L4proto {
                proto: p.number(),
                negate: false,
            });
        }
        if let Some(p) = rule.not_protocol {
            common.push(Match::L4proto {
                proto: p.number(),
                negate: true,
            });
        }
        let icmp_family = match rule.protocol.and_then(Protocol::icmp_version) {
            Some(6) => Family::V6,
            _ => Family::V4,
        };
        for (icmp, negate) in [(rule.icmp, false), (rule.not_icmp, true)] {
            if let Some(IcmpFields {
                icmp_type: Some(t),
                code,
            }) = icmp
            {
                common.push(Match::Icmp {
                    family: icmp_family,
                    types: vec![t],
                    code,
                    negate,
                });
            }
        }
        let proto = rule.protocol.map_or(0, Protocol::number);
        let mut alternatives = vec![common];
        for (side, entity) in [
            (Side::Source, &rule.source),
            (Side::Destination, &rule.destination),
        ] {
            let Some(side_alts) = self.entity(entity, side, family, proto) else {
                return Vec::new();
            };
            alternatives = alternatives
                .into_iter()
                .flat_map(|base| {
                    side_alts.iter().map(move |alt| {
                        let mut m = base.clone();
                        m.extend(alt.iter().cloned());
                        m
                    })
                })
                .collect();
        }
        alternatives
    }

    /// The alternatives one side of a rule adds (each a list of matches), or
    /// `None` when the side can never match in this family.
    fn entity(
        &mut self,
        e: &Entity,
        side: Side,
        family: Option<Family>,
        proto: u8,
    ) -> Option<Vec<Vec<Match>>> {
        let mut common = Vec::new();
        if let Some(f) = family {
            let addr = |set: String, negate| Match::Addr {
                family: f,
                side,
                set,
                negate,
            };
            if !e.nets.is_empty() {
                common.push(addr(self.sets.nets(&e.nets, f)?, false));
            }
            if let Some(set) = self.sets.nets(&e.not_nets, f) {
                common.push(addr(set, true));
            }
            if let Some(sel) = &e.selector {
                common.push(addr(self.sets.selector(sel, f), false));
            }
            if let Some(sel) = &e.not_selector {
                common.push(addr(self.sets.selector(sel, f), true));
            }
        }
        let (numeric, named) = split_ports(&e.not_ports);
        if !numeric.is_empty() {
            common.push(Match::Ports {
                side,
                ranges: numeric,
                negate: true,
            });
        }
        let all = Expr::All;
        let port_selector = e.selector.as_ref().unwrap_or(&all);
        if let Some(f) = family {
            for port in named {
                let set = self.sets.named_port(port_selector, proto, port, f);
                common.push(Match::AddrPort {
                    family: f,
                    side,
                    set,
                    negate: true,
                });
            }
        }
        if e.ports.is_empty() {
            return Some(vec![common]);
        }
        let (numeric, named) = split_ports(&e.ports);
        let mut alternatives = Vec::new();
        if !numeric.is_empty() {
            let mut m = common.clone();
            m.push(Match::Ports {
                side,
                ranges: numeric,
                negate: false,
            });
            alternatives.push(m);
        }
        if let Some(f) = family {
            for port in named {
                let mut m = common.clone();
                m.push(Match::AddrPort {
                    family: f,
                    side,
                    set: self.sets.named_port(port_selector, proto, port, f),
                    negate: false,
                });
                alternatives.push(m);
            }
        }
        Some(alternatives)
    }
}

fn field(direction: PolicyType) -> &'static str {
    match direction {
        PolicyType::Ingress => "ingress",
        PolicyType::Egress => "egress",
    }
}

/// Whether a side needs per-family sets.
fn needs_family(e: &Entity) -> bool {
    !e.nets.is_empty()
        || !e.not_nets.is_empty()
        || e.selector.is_some()
        || e.not_selector.is_some()
        || e.ports
            .iter()
            .chain(&e.not_ports)
            .any(|p| matches!(p, Port::Named(_)))
}

/// Numeric ports as sorted, merged ranges, and the names of named ports.
fn split_ports(ports: &[Port]) -> (Vec<(u16, u16)>, Vec<&str>) {
    let mut ranges: Vec<(u16, u16)> = ports.iter().filter_map(Port::bounds).collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some((_, last_hi)) if u32::from(lo) <= u32::from(*last_hi) + 1 => {
                *last_hi = (*last_hi).max(hi);
            }
            _ => merged.push((lo, hi)),
        }
    }
    let mut named: Vec<&str> = ports
        .iter()
        .filter_map(|p| match p {
            Port::Named(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    named.sort_unstable();
    named.dedup();
    (merged, named)
}
