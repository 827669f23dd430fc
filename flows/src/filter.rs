//! [`Filter`]: Goldmane's `Filter`, checked, and whether a [`FlowKey`]
//! passes it. Each list is a disjunction, the fields a conjunction, an
//! empty list no constraint; `Exact` compares whole values, `Fuzzy` looks
//! for a substring. As in Goldmane, the names "pub" and "pvt" also answer to
//! "PUBLIC NETWORK" and "PRIVATE NETWORK", the namespace "Global" to "-".

use crate::key::FlowKey;
use crate::log::{Action, PolicyHit, PolicyKind, Reporter};
use crate::proto;
use crate::query::{InvalidRequest, enum_value};
use crate::wire;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub source_names: Vec<StringMatch>,
    pub source_namespaces: Vec<StringMatch>,
    pub dest_names: Vec<StringMatch>,
    pub dest_namespaces: Vec<StringMatch>,
    pub protocols: Vec<StringMatch>,
    pub dest_ports: Vec<i64>,
    /// `None`: any action; `Some`: one of these (empty when the request
    /// listed only ActionUnspecified, which no flow has).
    pub actions: Option<Vec<Action>>,
    /// As `actions`, for the actions of the pending policy hits.
    pub pending_actions: Option<Vec<Action>>,
    pub policies: Vec<PolicyMatch>,
    /// `None`: either end.
    pub reporter: Option<Reporter>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StringMatch {
    pub value: String,
    pub fuzzy: bool,
}

/// Matches one policy hit; `None` fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyMatch {
    pub kind: Option<PolicyKind>,
    pub tier: Option<StringMatch>,
    pub namespace: Option<StringMatch>,
    pub name: Option<StringMatch>,
    pub action: Option<Action>,
}

impl Filter {
    /// Checks a request's filter: unknown enum numbers are refused.
    pub fn from_proto(filter: Option<&proto::Filter>) -> Result<Filter, InvalidRequest> {
        let Some(f) = filter else {
            return Ok(Filter::default());
        };
        let strings = |field: &'static str, list: &[proto::StringMatch]| {
            list.iter()
                .map(|m| StringMatch::from_proto(field, m))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Filter {
            source_names: strings("filter.source_names", &f.source_names)?,
            source_namespaces: strings("filter.source_namespaces", &f.source_namespaces)?,
            dest_names: strings("filter.dest_names", &f.dest_names)?,
            dest_namespaces: strings("filter.dest_namespaces", &f.dest_namespaces)?,
            protocols: strings("filter.protocols", &f.protocols)?,
            dest_ports: f.dest_ports.iter().map(|p| p.port).collect(),
            actions: actions("filter.actions", &f.actions)?,
            pending_actions: actions("filter.pending_actions", &f.pending_actions)?,
            policies: f
                .policies
                .iter()
                .map(PolicyMatch::from_proto)
                .collect::<Result<_, _>>()?,
            reporter: wire::reporter(enum_value("filter.reporter", f.reporter)?),
        })
    }

    pub fn matches(&self, key: &FlowKey) -> bool {
        any_string(&self.source_names, &names(&key.source.name))
            && any_string(&self.dest_names, &names(&key.dest.name))
            && any_string(&self.source_namespaces, &namespaces(&key.source.namespace))
            && any_string(&self.dest_namespaces, &namespaces(&key.dest.namespace))
            && any_string(&self.protocols, &[key.protocol.as_str()])
            && (self.dest_ports.is_empty() || self.dest_ports.contains(&i64::from(key.dest_port)))
            && self
                .actions
                .as_ref()
                .is_none_or(|a| a.contains(&key.action))
            && self.pending_actions.as_ref().is_none_or(|a| {
                key.policies
                    .pending
                    .iter()
                    .any(|hit| a.contains(&hit.action))
            })
            && self.reporter.is_none_or(|r| r == key.reporter)
            && (self.policies.is_empty() || {
                let trace = &key.policies;
                trace
                    .enforced
                    .iter()
                    .chain(&trace.pending)
                    .any(|hit| self.policies.iter().any(|m| m.matches(hit)))
            })
    }
}

/// The values a name filter compares with: the name, and for networks the
/// words a console shows for them.
fn names(name: &str) -> Vec<&str> {
    match name {
        crate::log::PUBLIC_NETWORK => vec!["PUBLIC NETWORK", name],
        crate::log::PRIVATE_NETWORK => vec!["PRIVATE NETWORK", name],
        _ => vec![name],
    }
}

fn namespaces(namespace: &str) -> Vec<&str> {
    match namespace {
        "Global" => vec!["-", namespace],
        _ => vec![namespace],
    }
}

fn any_string(filter: &[StringMatch], values: &[&str]) -> bool {
    filter.is_empty() || filter.iter().any(|m| values.iter().any(|v| m.matches(v)))
}

fn actions(field: &'static str, list: &[i32]) -> Result<Option<Vec<Action>>, InvalidRequest> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for &value in list {
        if let Some(action) = wire::action(enum_value(field, value)?) {
            out.push(action);
        }
    }
    Ok(Some(out))
}

impl StringMatch {
    fn from_proto(
        field: &'static str,
        m: &proto::StringMatch,
    ) -> Result<StringMatch, InvalidRequest> {
        let kind: proto::MatchType = enum_value(field, m.r#type)?;
        Ok(StringMatch {
            value: m.value.clone(),
            fuzzy: kind == proto::MatchType::Fuzzy,
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        if self.fuzzy {
            value.contains(&self.value)
        } else {
            value == self.value
        }
    }

    /// A policy field's match: absent or empty matches anything.
    fn optional(
        field: &'static str,
        m: Option<&proto::StringMatch>,
    ) -> Result<Option<StringMatch>, InvalidRequest> {
        match m {
            Some(m) if !m.value.is_empty() => Ok(Some(StringMatch::from_proto(field, m)?)),
            _ => Ok(None),
        }
    }
}

impl PolicyMatch {
    fn from_proto(m: &proto::PolicyMatch) -> Result<PolicyMatch, InvalidRequest> {
        Ok(PolicyMatch {
            kind: wire::policy_kind(enum_value("filter.policies.kind", m.kind)?),
            tier: StringMatch::optional("filter.policies.tier", m.tier.as_ref())?,
            namespace: StringMatch::optional("filter.policies.namespace", m.namespace.as_ref())?,
            name: StringMatch::optional("filter.policies.name", m.name.as_ref())?,
            action: wire::action(enum_value("filter.policies.action", m.action)?),
        })
    }

    pub fn matches(&self, hit: &PolicyHit) -> bool {
        let text = |m: &Option<StringMatch>, v: &str| m.as_ref().is_none_or(|m| m.matches(v));
        self.kind.is_none_or(|k| k == hit.kind)
            && text(&self.tier, &hit.tier)
            && text(&self.namespace, &hit.namespace)
            && text(&self.name, &hit.name)
            && self.action.is_none_or(|a| a == hit.action)
    }
}
