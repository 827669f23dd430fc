//! Host endpoint stages: where, besides the filter hooks, policy on host
//! endpoints is enforced (Calico's `doNotTrack`, `preDNAT` and
//! `applyOnForward`), and the base chains, maps and endpoint-chain shapes
//! each stage needs. [`compile`](crate::compile) builds the chains; this
//! module says what differs from stage to stage.
//!
//! ```text
//! raw-prerouting (prerouting, raw)   iifname vmap @hep-raw-from ─ goto hep-raw-in-<h>    (untracked ingress)
//! raw-output     (output, raw)       oifname vmap @hep-raw-to   ─ goto hep-raw-out-<h>   (untracked egress)
//! pre-dnat       (prerouting, mangle) ct established,related accept; UNTRACKED mark accept
//!                                    iifname vmap @hep-pre-from ─ goto hep-pre-in-<h>    (pre-DNAT ingress)
//! forward        ... jump from-hep-fwd ── iifname vmap @hep-fwd-from ─ goto hep-fwd-in-<h>   (before workloads)
//!                ... jump to-hep-fwd   ── oifname vmap @hep-fwd-to   ─ goto hep-fwd-out-<h>  (after workloads)
//! input, output, forward: UNTRACKED mark accept, right after ct established,related accept
//! ```
//!
//! With host endpoints, the raw, pre-DNAT, input and output base chains
//! accept failsafe ports before their dispatch (the `failsafe` module).
//!
//! Semantics, as Calico documents them for host endpoints:
//!
//! - **untracked** (`doNotTrack`), before conntrack: a policy's Allow leaves
//!   the packet untracked (`notrack`), sets the UNTRACKED mark bit and accepts;
//!   the later stages accept a packet with that bit, so normal policy is
//!   skipped. Deny drops. No verdict: the packet goes on to the later stages.
//! - **pre-DNAT** (`preDNAT`, ingress only), on the first packet of a flow
//!   before DNAT: Allow accepts for this stage only (the packet still meets
//!   normal policy after DNAT), Deny drops, no verdict goes on.
//! - **forwarded** (`applyOnForward` on a normal policy): such policies also
//!   apply to traffic forwarded in by, or out of, the host endpoint, with
//!   tiers' default deny and no profiles; with no such policy selecting the
//!   endpoint in a direction, forwarded traffic passes that direction.
//!
//! Tiers end without a default deny in the untracked and pre-DNAT stages (a
//! Pass still moves on to the next tier). A stage's chains, maps and base
//! chain exist only when some policy of the model belongs to it, so models
//! without them compile as before.

use api::resources::policy::PolicyType;

use crate::ir::{
    BaseChain, Chain, CtState, Hook, Iface, MARK_ALLOW, MARK_PASS, MARK_UNTRACKED, Match, Priority,
    Rule, Statement, Verdict,
};
use crate::memo::enforced;
use crate::model::{ALL_INTERFACES, Endpoint, EndpointKind, Model, Policy, Stage};

/// Verdict map: host endpoint interface → its untracked ingress chain.
pub const MAP_RAW_FROM: &str = "hep-raw-from";
/// Verdict map: host endpoint interface → its untracked egress chain.
pub const MAP_RAW_TO: &str = "hep-raw-to";
/// Verdict map: host endpoint interface → its pre-DNAT ingress chain.
pub const MAP_PRE_FROM: &str = "hep-pre-from";
/// Verdict map: host endpoint interface → its forwarded ingress chain.
pub const MAP_FWD_FROM: &str = "hep-fwd-from";
/// Verdict map: host endpoint interface → its forwarded egress chain.
pub const MAP_FWD_TO: &str = "hep-fwd-to";

/// Where an endpoint chain is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hop {
    /// The filter hooks: traffic to and from workloads and the host itself.
    Filter,
    /// Forwarded traffic through a host endpoint (`applyOnForward`).
    Forward,
    /// Pre-DNAT ingress of a host endpoint.
    PreDnat,
    /// Untracked ingress and egress of a host endpoint.
    Untracked,
}

/// Which stages a model uses, and whether it has host endpoints here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    pub forward: bool,
    pub pre_dnat: bool,
    pub untracked: bool,
    /// Some host endpoint gets chains on this host: the base chains have
    /// failsafe rules (see the `failsafe` module).
    pub hosts: bool,
    /// A host endpoint for all interfaces gets chains here: input and output
    /// go to its chains after the per-interface lookup.
    pub all_interfaces: bool,
    /// ... and it has a pre-DNAT chain: pre-dnat goes to it likewise.
    pub all_interfaces_pre_dnat: bool,
    /// A local workload has a packet rate limit: the base chains look up
    /// the packet's workload interface in the limit maps first, for every
    /// packet (before `ct state established,related accept`).
    pub packet_limits: bool,
}

/// Verdict map: workload interface → its ingress packet-rate chain.
pub const MAP_LIMIT_TO: &str = "wl-limit-to";
/// Verdict map: workload interface → its egress packet-rate chain.
pub const MAP_LIMIT_FROM: &str = "wl-limit-from";

/// The host endpoint for all interfaces (`interfaceName: "*"`) that gets
/// chains on this host: the one with the least name, if several are local.
pub fn all_interfaces(model: &Model) -> Option<&Endpoint> {
    (model.endpoints.iter())
        .filter(|e| {
            e.kind == EndpointKind::Host
                && e.interface.as_deref() == Some(ALL_INTERFACES)
                && enforced(model, e)
        })
        .min_by(|a, b| a.name.cmp(&b.name))
}

/// Whether `ep` is a host endpoint for all interfaces other than `all`
/// (the model's [`all_interfaces`]): outranked, it gets no chains.
pub fn outranked(all: Option<&Endpoint>, ep: &Endpoint) -> bool {
    ep.kind == EndpointKind::Host
        && ep.interface.as_deref() == Some(ALL_INTERFACES)
        && !all.is_some_and(|a| std::ptr::eq(a, ep))
}

/// `hep-in-all-interfaces`, ...: the chain of the host endpoint for all
/// interfaces (longer than any interface name, so no named chain has it).
pub fn all_interfaces_chain(hop: Hop, direction: PolicyType) -> String {
    let d = match direction {
        PolicyType::Ingress => "in",
        PolicyType::Egress => "out",
    };
    format!("{}-{d}-all-interfaces", hop.host_kind())
}

impl Features {
    /// The stages some policy of the model belongs to, and which host
    /// endpoints get chains here.
    pub fn of(model: &Model) -> Features {
        let mut f = Features::default();
        for p in model.tiers.iter().flat_map(|t| &t.policies) {
            match p.stage {
                Stage::Normal => f.forward |= p.apply_on_forward,
                Stage::PreDnat => f.pre_dnat = true,
                Stage::Untracked => f.untracked = true,
            }
        }
        f.hosts =
            (model.endpoints.iter()).any(|e| e.kind == EndpointKind::Host && enforced(model, e));
        f.packet_limits = model.endpoints.iter().any(|e| {
            e.kind == EndpointKind::Workload
                && model.is_local(e)
                && (e.limits.ingress.packet_rate.is_some() || e.limits.egress.packet_rate.is_some())
        });
        if let Some(all) = all_interfaces(model) {
            f.all_interfaces = true;
            f.all_interfaces_pre_dnat = (model.tiers.iter().flat_map(|t| &t.policies)).any(|p| {
                Hop::PreDnat.selects(p)
                    && p.rules(PolicyType::Ingress).is_some()
                    && p.selector.matches(&all.labels)
            });
        }
        f
    }

    /// Whether the model uses no stage but the filter one.
    pub fn is_empty(self) -> bool {
        !(self.forward || self.pre_dnat || self.untracked)
    }

    /// The hops an endpoint of this kind gets chains in.
    pub fn hops(self, kind: EndpointKind) -> impl Iterator<Item = Hop> {
        let host = kind == EndpointKind::Host;
        [
            (Hop::Filter, true),
            (Hop::Forward, host && self.forward),
            (Hop::PreDnat, host && self.pre_dnat),
            (Hop::Untracked, host && self.untracked),
        ]
        .into_iter()
        .filter_map(|(hop, on)| on.then_some(hop))
    }

    /// The stage maps the model needs, with their comments.
    pub fn maps(self) -> Vec<(&'static str, &'static str)> {
        let mut maps = Vec::new();
        if self.forward {
            maps.push((MAP_FWD_FROM, "host interface -> forwarded ingress chain"));
            maps.push((MAP_FWD_TO, "host interface -> forwarded egress chain"));
        }
        if self.pre_dnat {
            maps.push((MAP_PRE_FROM, "host interface -> pre-DNAT ingress chain"));
        }
        if self.untracked {
            maps.push((MAP_RAW_FROM, "host interface -> untracked ingress chain"));
            maps.push((MAP_RAW_TO, "host interface -> untracked egress chain"));
        }
        if self.packet_limits {
            maps.push((
                MAP_LIMIT_TO,
                "workload interface -> ingress packet rate chain",
            ));
            maps.push((
                MAP_LIMIT_FROM,
                "workload interface -> egress packet rate chain",
            ));
        }
        maps
    }

    /// The stage base and dispatch chains the model needs; `workloads` is
    /// the workload interface pattern (`cali*`).
    pub fn chains(self, workloads: &str) -> Vec<(&'static str, Chain)> {
        let vmap = |iface, map: &str| Rule {
            verdict: Some(Verdict::Vmap {
                iface,
                map: map.to_string(),
            }),
            ..Rule::default()
        };
        let base = |hook, priority, rules| Chain {
            base: Some(BaseChain::filter(hook, priority)),
            rules,
        };
        let regular = |rules| Chain { base: None, rules };
        let mut chains = Vec::new();
        if self.forward {
            chains.push(("from-hep-fwd", regular(vec![vmap(Iface::In, MAP_FWD_FROM)])));
            chains.push(("to-hep-fwd", regular(vec![vmap(Iface::Out, MAP_FWD_TO)])));
        }
        if self.pre_dnat {
            let mut rules = vec![
                Rule::new(
                    vec![Match::CtState(vec![CtState::Established, CtState::Related])],
                    Verdict::Accept,
                )
                .comment("pre-DNAT policy sees new flows only"),
            ];
            rules.extend(self.untracked_accept());
            rules.push(vmap(Iface::In, MAP_PRE_FROM));
            if self.all_interfaces_pre_dnat {
                rules.push(all_interfaces_dispatch(
                    workloads,
                    Iface::In,
                    Hop::PreDnat,
                    PolicyType::Ingress,
                ));
            }
            chains.push(("pre-dnat", base(Hook::Prerouting, Priority::Mangle, rules)));
        }
        if self.untracked {
            chains.push((
                "raw-prerouting",
                base(
                    Hook::Prerouting,
                    Priority::Raw,
                    vec![vmap(Iface::In, MAP_RAW_FROM)],
                ),
            ));
            chains.push((
                "raw-output",
                base(
                    Hook::Output,
                    Priority::Raw,
                    vec![vmap(Iface::Out, MAP_RAW_TO)],
                ),
            ));
        }
        chains
    }

    /// `meta mark & UNTRACKED == UNTRACKED accept`, when untracked policy
    /// may have allowed a packet: later stages let it through.
    pub fn untracked_accept(self) -> Option<Rule> {
        self.untracked.then(|| {
            Rule::new(
                vec![Match::Mark {
                    mask: MARK_UNTRACKED,
                    value: MARK_UNTRACKED,
                }],
                Verdict::Accept,
            )
            .comment("allowed by untracked policy")
        })
    }
}

/// `iifname != "cali*" iifname != "lo" goto hep-in-all-interfaces` (or the
/// `oifname` one, or the pre-DNAT one): what a per-interface lookup missed
/// goes to the host endpoint for all interfaces.
/// `workloads` is the workload interface pattern (`cali*`).
pub fn all_interfaces_dispatch(
    workloads: &str,
    iface: Iface,
    hop: Hop,
    direction: PolicyType,
) -> Rule {
    let not = |name: &str| Match::Iface {
        iface,
        name: name.to_string(),
        negate: true,
    };
    Rule::new(
        vec![not(workloads), not("lo")],
        Verdict::Goto(all_interfaces_chain(hop, direction)),
    )
    .comment("host endpoint for all interfaces")
}

impl Hop {
    /// Whether the policy applies in this hop.
    pub fn selects(self, policy: &Policy) -> bool {
        match self {
            Hop::Filter => policy.stage == Stage::Normal,
            Hop::Forward => policy.stage == Stage::Normal && policy.apply_on_forward,
            Hop::PreDnat => policy.stage == Stage::PreDnat,
            Hop::Untracked => policy.stage == Stage::Untracked,
        }
    }

    /// The directions this hop has chains for.
    pub fn directions(self) -> &'static [PolicyType] {
        match self {
            Hop::PreDnat => &[PolicyType::Ingress],
            _ => &[PolicyType::Ingress, PolicyType::Egress],
        }
    }

    /// Whether an endpoint gets a chain in this hop only when a policy of
    /// the hop selects it in the direction (else its traffic passes the hop).
    pub fn only_when_selected(self) -> bool {
        self != Hop::Filter
    }

    /// Whether a tier's default action Deny drops at the tier's end.
    pub fn tier_deny(self) -> bool {
        matches!(self, Hop::Filter | Hop::Forward)
    }

    /// Whether the endpoint's profiles apply.
    pub fn profiles(self) -> bool {
        self == Hop::Filter
    }

    /// The chain-name kind of a host endpoint's chain in this hop (`hep`, `hep-fwd`, ...).
    pub fn host_kind(self) -> &'static str {
        match self {
            Hop::Filter => "hep",
            Hop::Forward => "hep-fwd",
            Hop::PreDnat => "hep-pre",
            Hop::Untracked => "hep-raw",
        }
    }

    /// The map for a host endpoint's chain of this direction in a stage hop.
    pub fn host_map(self, direction: PolicyType) -> Option<&'static str> {
        let ingress = direction == PolicyType::Ingress;
        match self {
            Hop::Filter => None,
            Hop::Forward => Some(if ingress { MAP_FWD_FROM } else { MAP_FWD_TO }),
            Hop::PreDnat => ingress.then_some(MAP_PRE_FROM),
            Hop::Untracked => Some(if ingress { MAP_RAW_FROM } else { MAP_RAW_TO }),
        }
    }

    /// The first rules of an endpoint chain in this hop.
    pub fn prelude(self) -> Vec<Rule> {
        let clear = |bits| Rule {
            statements: vec![Statement::MarkClear(bits)],
            ..Rule::default()
        };
        match self {
            Hop::Filter | Hop::Forward => vec![
                Rule::new(vec![Match::CtState(vec![CtState::Invalid])], Verdict::Drop),
                clear(MARK_ALLOW | MARK_PASS),
            ],
            Hop::PreDnat => vec![clear(MARK_ALLOW | MARK_PASS)],
            Hop::Untracked => vec![clear(MARK_ALLOW | MARK_PASS | MARK_UNTRACKED)],
        }
    }

    /// What follows a policy that allowed the packet (ALLOW set).
    pub fn on_allow(self) -> Rule {
        let allowed = vec![Match::Mark {
            mask: MARK_ALLOW,
            value: MARK_ALLOW,
        }];
        match self {
            Hop::Filter | Hop::Forward => Rule::new(allowed, Verdict::Return),
            Hop::PreDnat => Rule::new(allowed, Verdict::Accept),
            Hop::Untracked => Rule {
                matches: allowed,
                statements: vec![Statement::Notrack, Statement::MarkSet(MARK_UNTRACKED)],
                verdict: Some(Verdict::Accept),
                comment: None,
            },
        }
    }

    /// The last rule of an endpoint chain in this hop, if any: the filter
    /// hops fail closed, the others go on to the next stage.
    pub fn last(self) -> Option<Rule> {
        match self {
            Hop::Filter => {
                Some(Rule::new(vec![], Verdict::Drop).comment("no policy or profile allowed"))
            }
            Hop::Forward => Some(Rule::new(vec![], Verdict::Drop).comment("no policy allowed")),
            Hop::PreDnat | Hop::Untracked => None,
        }
    }
}
