//! [`trace()`]: would this packet pass, and why, rule by rule. The model is
//! compiled as for the dataplane and the packet walked through the ruleset
//! by [`simulate::walk`]; the rules it reached are read back, through the
//! endpoint chains of its two ends and the policy and profile chains they
//! jump to ([`Index`]), as the tiers, policies and rules that decided it.
//!
//! ```text
//! Model ─compile─▶ Ruleset ─walk(packet)─▶ visits ─▶ per direction: policies, rules, reasons ─▶ Trace
//! ```
//!
//! Module `ends` resolves the two ends and makes the packet; `reason` says
//! why a rule did not match.

mod ends;
mod reason;

use std::collections::BTreeSet;
use std::net::IpAddr;

use api::Protocol;
use api::resources::policy::{Action, PolicyType};
use serde::Serialize;

pub use ends::{OUTSIDE, Role, hypothetical};

use crate::compile::endpoint_chain_of;
use crate::flowlog::{Index, Origin, Source};
use crate::ir::{Family, MARK_ALLOW, Match, Ruleset, Verdict};
use crate::model::{Model, Rule};
use crate::simulate::{self, Outcome, Packet, SimulateError, Visit};
use crate::stages::Hop;
use ends::Resolved;

/// One end of a traced packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// An endpoint by name: `ns/name` of a workload, `name` of a host endpoint.
    Endpoint(String),
    /// An address: the endpoint holding it, else somewhere outside.
    Addr(IpAddr),
}

/// The packet to trace: the first packet of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub src: End,
    pub dst: End,
    pub protocol: Protocol,
    /// The destination port (ignored for protocols without ports).
    pub port: u16,
    /// `None`: an address end's family, else IPv4 when both ends have one.
    pub family: Option<Family>,
}

/// A query the model cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("no endpoint {name:?} (workloads are ns/name or ns/pod, host endpoints name)")]
    UnknownEndpoint { end: Role, name: String },
    #[error("endpoint {name:?} has no IPv{family} address")]
    NoAddress { end: Role, name: String, family: u8 },
    #[error("{0}")]
    Family(String),
    #[error("the compiled ruleset: {0}")]
    Simulate(#[from] SimulateError),
}

impl TraceError {
    /// The end at fault, if one is.
    pub fn end(&self) -> Option<Role> {
        match self {
            TraceError::UnknownEndpoint { end, .. } | TraceError::NoAddress { end, .. } => {
                Some(*end)
            }
            TraceError::Family(_) | TraceError::Simulate(_) => None,
        }
    }
}

/// What a rule, a policy or a direction decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

/// The answer: both ends, both directions, the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    pub src: EndView,
    pub dst: EndView,
    pub family: u8,
    pub protocol: String,
    /// `None` for protocols without ports.
    pub port: Option<u16>,
    /// Egress of the source, then ingress of the destination.
    pub directions: Vec<Direction>,
    pub verdict: Decision,
    /// Which rule (or tier end, or missing profile) gave the verdict.
    pub reason: String,
}

impl Trace {
    pub fn allowed(&self) -> bool {
        self.verdict == Decision::Allow
    }
}

/// One end as the trace resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndView {
    /// The endpoint it is, if any.
    pub endpoint: Option<String>,
    pub address: IpAddr,
    /// Whether its policy is enforced on this host.
    pub local: bool,
}

/// One direction: the egress of the source or the ingress of the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Direction {
    /// `ingress` or `egress`.
    pub direction: String,
    pub endpoint: Option<String>,
    pub address: IpAddr,
    /// Whether the packet got here (an ingress is not reached when the
    /// egress denied; it is then shown as it would decide).
    pub reached: bool,
    /// Policies and profiles visited, in order.
    pub policies: Vec<PolicyStep>,
    /// `None`: not enforced here.
    pub verdict: Option<Decision>,
    pub decided_by: String,
}

/// A policy or profile the direction visited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStep {
    /// `None` for profiles.
    pub tier: Option<String>,
    pub kind: String,
    /// `ns/name` or `name`.
    pub name: String,
    /// The rules evaluated, up to the one that matched.
    pub rules: Vec<RuleStep>,
    pub result: StepResult,
    /// Its chain in the ruleset.
    #[serde(skip)]
    chain: String,
}

impl PolicyStep {
    /// Its chain in the ruleset (the key of [`Index::origin`]).
    pub fn chain(&self) -> &str {
        &self.chain
    }
}

/// How a policy ended for the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StepResult {
    Allow,
    Deny,
    /// Passed to the next tier.
    Pass,
    /// No rule matched: on to the next policy.
    NoMatch,
    /// Not evaluated: an earlier policy of its tier passed.
    Skipped,
}

/// A rule of a policy, evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleStep {
    pub index: usize,
    pub action: String,
    pub matched: bool,
    /// Why it did not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many matches of the best compiled alternative held.
    #[serde(skip)]
    progress: usize,
}

/// Traces the query's packet through the ruleset `compile(model)` gives.
pub fn trace(model: &Model, query: &Query) -> Result<Trace, TraceError> {
    Tracer::new(model.clone()).trace(query)
}

/// A model compiled once, to trace many packets through (flow logs'
/// pending verdicts trace each new connection).
#[derive(Debug)]
pub struct Tracer {
    model: Model,
    ruleset: Ruleset,
    index: Index,
}

impl Tracer {
    pub fn new(model: Model) -> Tracer {
        let ruleset = crate::compile(&model);
        let index = Index::new(&model);
        Tracer {
            model,
            ruleset,
            index,
        }
    }

    /// The model traced.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Its chains, to name the policy of a [`PolicyStep::chain`].
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Traces the query's packet.
    pub fn trace(&self, query: &Query) -> Result<Trace, TraceError> {
        traced(&self.model, &self.ruleset, &self.index, query)
    }
}

fn traced(
    model: &Model,
    ruleset: &Ruleset,
    index: &Index,
    query: &Query,
) -> Result<Trace, TraceError> {
    let plan = ends::plan(model, query)?;
    let reader = Reader {
        model,
        ruleset,
        index,
    };
    let walked = simulate::walk(ruleset, &plan.packet)?;
    let egress = reader.direction(&walked.visits, &plan.src, PolicyType::Egress, &plan.packet);
    let mut ingress =
        reader.direction(&walked.visits, &plan.dst, PolicyType::Ingress, &plan.packet);
    if egress.verdict == Some(Decision::Deny) && ingress.verdict.is_none() && plan.dst.local {
        // Not reached: what it would decide for the packet coming from outside.
        let alone = ends::packet_alone(&plan, query);
        let visits = simulate::walk(ruleset, &alone)?.visits;
        ingress = reader.direction(&visits, &plan.dst, PolicyType::Ingress, &alone);
        ingress.reached = false;
    }
    let verdict = match walked.trace.outcome {
        Outcome::Accept => Decision::Allow,
        Outcome::Drop => Decision::Deny,
    };
    let reason = match verdict {
        Decision::Deny => [&egress, &ingress]
            .into_iter()
            .find(|d| d.reached && d.verdict == Some(Decision::Deny))
            .map(|d| format!("{} of {}: {}", d.direction, end_name(d), d.decided_by))
            .unwrap_or_else(|| last_drop(ruleset, &walked.visits)),
        Decision::Allow => [&egress, &ingress]
            .into_iter()
            .map(|d| format!("{} of {}: {}", d.direction, end_name(d), d.decided_by))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let view = |r: &Resolved<'_>| EndView {
        endpoint: r.endpoint.map(|e| e.name.clone()),
        address: r.addr,
        local: r.local,
    };
    Ok(Trace {
        src: view(&plan.src),
        dst: view(&plan.dst),
        family: Family::of_addr(plan.packet.src).number(),
        protocol: ends::protocol_name(plan.packet.proto),
        port: query.protocol.has_ports().then_some(query.port),
        directions: vec![egress, ingress],
        verdict,
        reason,
    })
}

fn end_name(d: &Direction) -> String {
    d.endpoint.clone().unwrap_or_else(|| d.address.to_string())
}

/// The comment of the last rule that dropped the packet.
fn last_drop(ruleset: &Ruleset, visits: &[Visit]) -> String {
    visits
        .iter()
        .rev()
        .filter(|v| v.failed.is_none())
        .find_map(|v| {
            let rule = ruleset.chains.get(v.chain.as_str())?.rules.get(v.rule)?;
            (rule.verdict == Some(Verdict::Drop)).then(|| {
                let what = rule.comment.clone().unwrap_or_else(|| "a drop".into());
                format!("{what} (chain {})", v.chain)
            })
        })
        .unwrap_or_else(|| "dropped".into())
}

/// Reads visits back as policies and rules.
struct Reader<'a> {
    model: &'a Model,
    ruleset: &'a Ruleset,
    index: &'a Index,
}

impl Reader<'_> {
    /// What the visits say about `end`'s chains in `direction`.
    fn direction(
        &self,
        visits: &[Visit],
        end: &Resolved<'_>,
        direction: PolicyType,
        packet: &Packet,
    ) -> Direction {
        let word = match direction {
            PolicyType::Ingress => "ingress",
            PolicyType::Egress => "egress",
        };
        let mut out = Direction {
            direction: word.to_string(),
            endpoint: end.endpoint.map(|e| e.name.clone()),
            address: end.addr,
            reached: true,
            policies: Vec::new(),
            verdict: None,
            decided_by: String::new(),
        };
        let Some(ep) = end.endpoint.filter(|_| end.local) else {
            out.decided_by = match end.endpoint {
                Some(e) => format!("not enforced here: {} is on node {:?}", e.name, e.node),
                None => format!(
                    "not enforced here: {} is no endpoint of this host",
                    end.addr
                ),
            };
            return out;
        };
        let interface = ep.interface.as_deref().unwrap_or_default();
        let chains: BTreeSet<String> = [Hop::Filter, Hop::Forward, Hop::PreDnat, Hop::Untracked]
            .into_iter()
            .filter_map(|hop| endpoint_chain_of(self.ruleset, ep, hop, direction, interface))
            .collect();
        let mut inside = false;
        for v in visits {
            if chains.contains(&v.chain) {
                inside = true;
                self.endpoint_rule(v, &mut out);
            } else if inside && let Some(origin) = self.index.origin(&v.chain) {
                self.policy_rule(v, origin, &mut out, packet);
            } else {
                inside = false;
            }
        }
        for step in &mut out.policies {
            self.fill_unreached(step);
        }
        if out.verdict.is_none() && out.decided_by.is_empty() {
            out.decided_by = format!("not enforced: this traffic does not pass {word} policy");
        }
        out
    }

    /// A rule of the endpoint chain: a jump to a policy (or one skipped), a
    /// tier's default deny, the final drop, the return after an allow.
    fn endpoint_rule(&self, v: &Visit, out: &mut Direction) {
        let Some(rule) = rule_of(self.ruleset, v) else {
            return;
        };
        match &rule.verdict {
            Some(Verdict::Jump(target)) => {
                if let Some(origin) = self.index.origin(target) {
                    let result = match v.failed {
                        Some(_) => StepResult::Skipped,
                        None => StepResult::NoMatch,
                    };
                    out.policies.push(step_of(origin, target, result));
                }
            }
            Some(Verdict::Drop) if v.failed.is_none() => {
                let comment = rule.comment.as_deref().unwrap_or("drop");
                out.verdict = Some(Decision::Deny);
                out.decided_by = match comment.strip_suffix(": default deny") {
                    Some(tier) => format!(
                        "the end of {tier} (no policy of the tier allowed or denied; its default action is Deny)"
                    ),
                    None => comment.to_string(),
                };
            }
            Some(Verdict::Return)
                if v.failed.is_none()
                    && rule.matches.contains(&Match::Mark {
                        mask: MARK_ALLOW,
                        value: MARK_ALLOW,
                    }) =>
            {
                out.verdict = Some(Decision::Allow);
            }
            _ => {}
        }
    }

    /// A rule of a policy or profile chain, for the step its jump began.
    fn policy_rule(&self, v: &Visit, origin: &Origin, out: &mut Direction, packet: &Packet) {
        let (Some(rule), Some(step)) = (rule_of(self.ruleset, v), out.policies.last_mut()) else {
            return;
        };
        let Some(i) = rule.comment.as_deref().and_then(rule_index) else {
            return;
        };
        let model_rule = self.rules(origin).and_then(|r| r.get(i));
        let action = model_rule.map_or(Action::Allow, |r| r.action);
        let at = match step.rules.iter().position(|r| r.index == i) {
            Some(at) => at,
            None => {
                step.rules.push(RuleStep {
                    index: i,
                    action: action_word(action).into(),
                    matched: false,
                    reason: None,
                    progress: 0,
                });
                step.rules.len() - 1
            }
        };
        let r = &mut step.rules[at];
        match v.failed {
            None => {
                r.matched = true;
                r.reason = None;
                let desc = format!(
                    "{} {} rule {i} ({})",
                    step.kind,
                    step.name,
                    action_word(action)
                );
                match action {
                    Action::Allow => {
                        step.result = StepResult::Allow;
                        out.decided_by = desc;
                    }
                    Action::Deny => {
                        step.result = StepResult::Deny;
                        out.verdict = Some(Decision::Deny);
                        out.decided_by = desc;
                    }
                    Action::Pass => step.result = StepResult::Pass,
                    Action::Log => {}
                }
            }
            Some(k) if !r.matched && (r.reason.is_none() || k > r.progress) => {
                r.progress = k;
                let m = &rule.matches[k];
                r.reason = Some(reason::explain(self.ruleset, m, model_rule, packet));
            }
            Some(_) => {}
        }
    }

    /// The model rules a policy or profile chain was compiled from.
    fn rules(&self, origin: &Origin) -> Option<&[Rule]> {
        let direction = match origin.ingress {
            true => PolicyType::Ingress,
            false => PolicyType::Egress,
        };
        if origin.source == Source::Profile {
            let p = self.model.profiles.get(&origin.name)?;
            return Some(match direction {
                PolicyType::Ingress => &p.ingress,
                PolicyType::Egress => &p.egress,
            });
        }
        let tier = self.model.tiers.iter().find(|t| t.name == origin.tier)?;
        tier.policies.get(origin.index)?.rules(direction)
    }

    /// Rules before the deciding one (all, when none decided) that compiled
    /// to nothing for this packet.
    fn fill_unreached(&self, step: &mut PolicyStep) {
        if step.result == StepResult::Skipped {
            return;
        }
        let Some(origin) = self.index.origin(&step.chain) else {
            return;
        };
        let Some(rules) = self.rules(origin) else {
            return;
        };
        let last = match step.rules.iter().find(|r| r.matched && r.action != "log") {
            Some(decider) => decider.index,
            None => rules.len().saturating_sub(1),
        };
        for (i, rule) in rules.iter().enumerate().take(last + 1) {
            if !step.rules.iter().any(|r| r.index == i) {
                step.rules.push(RuleStep {
                    index: i,
                    action: action_word(rule.action).into(),
                    matched: false,
                    reason: Some("can never match a packet of this IP version".into()),
                    progress: 0,
                });
            }
        }
        step.rules.sort_by_key(|r| r.index);
        step.rules.retain(|r| r.index <= last);
    }
}

fn rule_of<'r>(ruleset: &'r Ruleset, v: &Visit) -> Option<&'r crate::ir::Rule> {
    ruleset.chains.get(v.chain.as_str())?.rules.get(v.rule)
}

/// `i` of a policy rule's comment `<origin>[i]`.
fn rule_index(comment: &str) -> Option<usize> {
    let (_, tail) = comment.rsplit_once('[')?;
    tail.strip_suffix(']')?.parse().ok()
}

fn step_of(origin: &Origin, chain: &str, result: StepResult) -> PolicyStep {
    PolicyStep {
        chain: chain.to_string(),
        tier: (origin.source != Source::Profile).then(|| origin.tier.clone()),
        kind: kind_word(origin.source).into(),
        name: display(origin),
        rules: Vec::new(),
        result,
    }
}

fn display(origin: &Origin) -> String {
    match origin.namespace.as_str() {
        "" => origin.name.clone(),
        ns => format!("{ns}/{}", origin.name),
    }
}

fn kind_word(source: Source) -> &'static str {
    match source {
        Source::NetworkPolicy => "NetworkPolicy",
        Source::KubernetesNetworkPolicy => "KubernetesNetworkPolicy",
        Source::GlobalNetworkPolicy => "GlobalNetworkPolicy",
        Source::Profile => "Profile",
    }
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Pass => "pass",
        Action::Log => "log",
    }
}
