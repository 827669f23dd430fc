//! The incremental [`Compiler`]: the previous ruleset patched when an edit
//! allows (`patch`), else the pure pass again with the [`Memo`] it keeps;
//! [`Outcome`] says which, [`Fallback`] why a patch could not do.

use std::net::IpAddr;

use super::lower::Lowering;
use crate::ir::Ruleset;
use crate::memo::{Memo, Pairing, pair};
use crate::model::{Config, Endpoint, Model, NetworkSet};
use crate::nat::{self, NatOutgoing};
use crate::sets::SetRegistry;

mod patch;
#[cfg(test)]
mod tests;

use patch::Previous;

/// Compiles one model after another, reusing what an edit did not touch.
///
/// `Compiler::compile(&mut self, model)` returns exactly what [`compile()`](super::compile())
/// returns for the model (a differential test checks it), but keeps the
/// chains and sets it made (see the `memo` module): policies, profiles,
/// endpoint chains and sets whose inputs are unchanged are not compiled again,
/// and their chains are the same `Arc`s as in the previous ruleset, which
/// [`diff()`](crate::diff()) skips without comparing rules. Editing one policy
/// recompiles its chains; relabelling an endpoint re-evaluates, on that
/// endpoint only, the selectors whose leaves the changed labels touch. When nothing but policies' rules, endpoints' labels,
/// addresses or ports, or network sets changed, the previous ruleset is
/// patched rather than assembled again ([`Outcome::Patched`]); anything else
/// is a [`Fallback`]. A change of [`Config`] starts afresh, but for its NAT
/// settings: they change the [`nat`](mod@crate::nat) objects and nothing else.
///
/// Policies in the [`Model`] are `Arc`s: an unchanged policy is recognised by
/// identity, an edited one (`Arc::make_mut`) by comparing it.
#[derive(Debug, Default)]
pub struct Compiler {
    config: Option<Config>,
    /// The endpoints and network sets of the previous model.
    endpoints: Vec<Endpoint>,
    network_sets: Vec<NetworkSet>,
    memo: Memo,
    /// What the last compilation made, for a patch.
    previous: Option<Previous>,
    /// The NAT objects and what they were made from.
    nat: Option<((NatOutgoing, Option<IpAddr>), nat::Objects)>,
    outcome: Option<Outcome>,
}

/// How a [`Compiler::compile`] made its ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The previous ruleset, patched.
    Patched,
    /// The pure pass again (reusing kept chains and sets), as a patch could not do.
    Full(Fallback),
}

impl Outcome {
    /// `patched` or `full`.
    pub fn path(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Full(_) => "full",
        }
    }

    /// Why the compilation was not a patch.
    pub fn fallback(self) -> Option<Fallback> {
        match self {
            Outcome::Patched => None,
            Outcome::Full(fallback) => Some(fallback),
        }
    }
}

/// Why a [`Compiler`] compiled in full rather than patch the previous ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// No previous ruleset: the compiler's first compilation.
    FirstCompile,
    /// A setting other than the NAT ones changed: nothing kept applies.
    ConfigChanged,
    /// A tier was added, removed, renamed or moved, or its default action changed.
    TiersChanged,
    /// A tier holds more or fewer policies.
    PolicyAddedOrRemoved,
    /// A profile was added, removed or edited.
    ProfilesChanged,
    /// A host endpoint, or a workload with a packet rate limit, was added
    /// or removed.
    EndpointAddedOrRemoved,
    /// Endpoints kept (changed in place or not) are in another order.
    EndpointsReordered,
    /// An added or removed endpoint's interface is claimed by another
    /// endpoint as well.
    InterfaceShared,
    /// An endpoint changed in more than labels, addresses and ports (kind,
    /// name, node, interface or profiles), or one replaced another.
    EndpointReplaced,
    /// A selector selects some enforced endpoint now and none before, or
    /// the reverse.
    SelectionEmptiedOrFilled,
    /// A host endpoint was relabelled while the model has untracked,
    /// pre-DNAT or forwarded policy (it may gain or lose stage chains).
    HostEndpointRelabelled,
    /// A policy the patch needs (edited, or selecting a relabelled endpoint)
    /// has no chains kept: the last ruleset did not need them.
    PolicyNotKept,
    /// A profile of a relabelled endpoint has no chains kept.
    ProfileNotKept,
    /// Another policy is at an edited policy's place (name or scope):
    /// policies were reordered, or one replaced another.
    PolicyReplaced,
    /// An edited policy's selector changed.
    PolicySelectorChanged,
    /// An edited policy's types changed.
    PolicyTypesChanged,
    /// An edited policy's stage (normal, pre-DNAT, untracked) or
    /// `applyOnForward` changed.
    PolicyStageChanged,
    /// What is kept for an edited policy's name is not what the last
    /// ruleset holds (another policy of the same name made it).
    KeptChainsDiffer,
}

impl Fallback {
    /// Every reason, in declaration order.
    pub const ALL: [Fallback; 18] = [
        Fallback::FirstCompile,
        Fallback::ConfigChanged,
        Fallback::TiersChanged,
        Fallback::PolicyAddedOrRemoved,
        Fallback::ProfilesChanged,
        Fallback::EndpointAddedOrRemoved,
        Fallback::EndpointsReordered,
        Fallback::InterfaceShared,
        Fallback::EndpointReplaced,
        Fallback::SelectionEmptiedOrFilled,
        Fallback::HostEndpointRelabelled,
        Fallback::PolicyNotKept,
        Fallback::ProfileNotKept,
        Fallback::PolicyReplaced,
        Fallback::PolicySelectorChanged,
        Fallback::PolicyTypesChanged,
        Fallback::PolicyStageChanged,
        Fallback::KeptChainsDiffer,
    ];

    /// The reason in snake case, for a metric label or a log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::FirstCompile => "first_compile",
            Fallback::ConfigChanged => "config_changed",
            Fallback::TiersChanged => "tiers_changed",
            Fallback::PolicyAddedOrRemoved => "policy_added_or_removed",
            Fallback::ProfilesChanged => "profiles_changed",
            Fallback::EndpointAddedOrRemoved => "endpoint_added_or_removed",
            Fallback::EndpointsReordered => "endpoints_reordered",
            Fallback::InterfaceShared => "interface_shared",
            Fallback::EndpointReplaced => "endpoint_replaced",
            Fallback::SelectionEmptiedOrFilled => "selection_emptied_or_filled",
            Fallback::HostEndpointRelabelled => "host_endpoint_relabelled",
            Fallback::PolicyNotKept => "policy_not_kept",
            Fallback::ProfileNotKept => "profile_not_kept",
            Fallback::PolicyReplaced => "policy_replaced",
            Fallback::PolicySelectorChanged => "policy_selector_changed",
            Fallback::PolicyTypesChanged => "policy_types_changed",
            Fallback::PolicyStageChanged => "policy_stage_changed",
            Fallback::KeptChainsDiffer => "kept_chains_differ",
        }
    }
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
        flow_logs,
    } = a;
    (
        node,
        workload_prefix,
        endpoint_to_host,
        log_prefix,
        flow_logs,
    ) == (
        &b.node,
        &b.workload_prefix,
        &b.endpoint_to_host,
        &b.log_prefix,
        &b.flow_logs,
    ) && (failsafe_inbound, failsafe_outbound) == (&b.failsafe_inbound, &b.failsafe_outbound)
}

impl Compiler {
    /// A compiler with nothing kept yet.
    pub fn new() -> Self {
        Compiler::default()
    }

    /// Compiles the model, reusing what the previous compilation made from
    /// the same inputs. Gives the same ruleset as [`compile()`](super::compile()).
    pub fn compile(&mut self, model: &Model) -> Ruleset {
        self.compile_ref(model).clone()
    }

    /// [`Compiler::compile`], lending the ruleset the compiler keeps rather
    /// than copying it: for a caller that reads it (diffs against it) before
    /// it compiles again. A copy of 20,000 chains costs more than a patch.
    pub fn compile_ref(&mut self, model: &Model) -> &Ruleset {
        let config = &model.config;
        let afresh = match &self.config {
            None => Some(Fallback::FirstCompile),
            Some(kept) if !policy_alike(kept, config) => Some(Fallback::ConfigChanged),
            Some(_) => None,
        };
        if afresh.is_some() {
            *self = Compiler {
                config: Some(config.clone()),
                ..Compiler::default()
            };
        }
        self.strip_extras();
        let outcome = self.compile_policy(model, afresh);
        self.outcome = Some(outcome);
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
        let previous = (self.previous.as_mut()).expect("compile_policy keeps what it made");
        nat.add_to(&mut previous.ruleset);
        crate::dscp::add_to(model, &mut previous.ruleset);
        &previous.ruleset
    }

    /// Takes the NAT and DSCP objects out of the kept ruleset, leaving the
    /// policy part a patch works on (they are made again after it).
    fn strip_extras(&mut self) {
        let Some(previous) = &mut self.previous else {
            return;
        };
        if let Some((_, objects)) = &self.nat {
            objects.remove_from(&mut previous.ruleset);
        }
        crate::dscp::remove_from(&mut previous.ruleset);
    }

    /// How the last [`Compiler::compile`] made its ruleset (`None` before the first).
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// Everything but the NAT and DSCP objects, into the kept ruleset:
    /// patched, unless `afresh` or the patch says why not.
    fn compile_policy(&mut self, model: &Model, afresh: Option<Fallback>) -> Outcome {
        let endpoints = pair(&self.endpoints, &model.endpoints, |e| e.name.as_str());
        let network_sets = pair(&self.network_sets, &model.network_sets, |n| n.name.as_str());
        let patched = match afresh {
            Some(fallback) => Err(fallback),
            None => self.patch(model, &endpoints, &network_sets),
        };
        match patched {
            Ok(()) => Outcome::Patched,
            Err(fallback) => {
                self.lower(model, &endpoints, &network_sets);
                Outcome::Full(fallback)
            }
        }
    }

    /// The pure pass over the whole model, with what the memo kept.
    fn lower(&mut self, model: &Model, endpoints: &Pairing, network_sets: &Pairing) {
        self.previous = None;
        let memo = &mut self.memo;
        memo.generation += 1;
        let changed_endpoints = endpoints.changed(&self.endpoints, &model.endpoints);
        let changed_sets = network_sets.changed(&self.network_sets, &model.network_sets);
        memo.sets.invalidate(&changed_endpoints, &changed_sets);
        memo.selections.update(model, endpoints);
        let cache = std::mem::take(&mut memo.sets);
        let sets = SetRegistry::with_cache(model, cache, memo.generation);
        let lowered = Lowering::new(model, sets).lower(memo);
        memo.sets = lowered.sets;
        memo.retain_used();
        self.endpoints.clone_from(&model.endpoints);
        self.network_sets.clone_from(&model.network_sets);
        let previous = Previous::of(lowered.ruleset, model, lowered.set_uses, lowered.selecting);
        self.previous = Some(previous);
    }
}
