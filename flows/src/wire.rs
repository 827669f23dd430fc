//! Between our types and the protobuf ones: enums both ways (an
//! `…Unspecified` is `None`), an aggregated [`Flow`] to a `FlowResult`, and a
//! pushed `proto::Flow` (FlowCollector) back to a key and its figures.

use crate::key::{FlowKey, Labels, Peer};
use crate::log::{
    Action, Counters, EndpointKind, PolicyHit, PolicyKind, PolicyTrace, Reporter, Service,
};
use crate::proto;
use crate::store::Flow;

pub fn action(a: proto::Action) -> Option<Action> {
    match a {
        proto::Action::Unspecified => None,
        proto::Action::Allow => Some(Action::Allow),
        proto::Action::Deny => Some(Action::Deny),
        proto::Action::Pass => Some(Action::Pass),
    }
}

pub fn reporter(r: proto::Reporter) -> Option<Reporter> {
    match r {
        proto::Reporter::Unspecified => None,
        proto::Reporter::Src => Some(Reporter::Src),
        proto::Reporter::Dst => Some(Reporter::Dst),
    }
}

pub fn endpoint_kind(t: proto::EndpointType) -> Option<EndpointKind> {
    match t {
        proto::EndpointType::Unspecified => None,
        proto::EndpointType::WorkloadEndpoint => Some(EndpointKind::Workload),
        proto::EndpointType::HostEndpoint => Some(EndpointKind::HostEndpoint),
        proto::EndpointType::NetworkSet => Some(EndpointKind::NetworkSet),
        proto::EndpointType::Network => Some(EndpointKind::Network),
    }
}

pub fn policy_kind(k: proto::PolicyKind) -> Option<PolicyKind> {
    use proto::PolicyKind as P;
    Some(match k {
        P::KindUnspecified => return None,
        P::CalicoNetworkPolicy => PolicyKind::CalicoNetworkPolicy,
        P::GlobalNetworkPolicy => PolicyKind::GlobalNetworkPolicy,
        P::StagedNetworkPolicy => PolicyKind::StagedNetworkPolicy,
        P::StagedGlobalNetworkPolicy => PolicyKind::StagedGlobalNetworkPolicy,
        P::StagedKubernetesNetworkPolicy => PolicyKind::StagedKubernetesNetworkPolicy,
        P::NetworkPolicy => PolicyKind::NetworkPolicy,
        P::ClusterNetworkPolicy => PolicyKind::ClusterNetworkPolicy,
        P::Profile => PolicyKind::Profile,
        P::EndOfTier => PolicyKind::EndOfTier,
    })
}

pub fn to_action(a: Action) -> proto::Action {
    match a {
        Action::Allow => proto::Action::Allow,
        Action::Deny => proto::Action::Deny,
        Action::Pass => proto::Action::Pass,
    }
}

fn to_endpoint_type(k: EndpointKind) -> proto::EndpointType {
    match k {
        EndpointKind::Workload => proto::EndpointType::WorkloadEndpoint,
        EndpointKind::HostEndpoint => proto::EndpointType::HostEndpoint,
        EndpointKind::NetworkSet => proto::EndpointType::NetworkSet,
        EndpointKind::Network => proto::EndpointType::Network,
    }
}

pub fn to_policy_kind(k: PolicyKind) -> proto::PolicyKind {
    use proto::PolicyKind as P;
    match k {
        PolicyKind::CalicoNetworkPolicy => P::CalicoNetworkPolicy,
        PolicyKind::GlobalNetworkPolicy => P::GlobalNetworkPolicy,
        PolicyKind::StagedNetworkPolicy => P::StagedNetworkPolicy,
        PolicyKind::StagedGlobalNetworkPolicy => P::StagedGlobalNetworkPolicy,
        PolicyKind::StagedKubernetesNetworkPolicy => P::StagedKubernetesNetworkPolicy,
        PolicyKind::NetworkPolicy => P::NetworkPolicy,
        PolicyKind::ClusterNetworkPolicy => P::ClusterNetworkPolicy,
        PolicyKind::Profile => P::Profile,
        PolicyKind::EndOfTier => P::EndOfTier,
    }
}

fn to_reporter(r: Reporter) -> proto::Reporter {
    match r {
        Reporter::Src => proto::Reporter::Src,
        Reporter::Dst => proto::Reporter::Dst,
    }
}

fn to_hit(h: &PolicyHit) -> proto::PolicyHit {
    proto::PolicyHit {
        kind: to_policy_kind(h.kind).into(),
        namespace: h.namespace.clone(),
        name: h.name.clone(),
        tier: h.tier.clone(),
        action: to_action(h.action).into(),
        policy_index: h.policy_index,
        rule_index: h.rule_index,
        trigger: h.trigger.as_deref().map(|t| Box::new(to_hit(t))),
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn to_key(k: &FlowKey) -> proto::FlowKey {
    let service = k.dest_service.clone().unwrap_or_default();
    proto::FlowKey {
        source_name: k.source.name.clone(),
        source_namespace: k.source.namespace.clone(),
        source_type: to_endpoint_type(k.source.kind).into(),
        dest_name: k.dest.name.clone(),
        dest_namespace: k.dest.namespace.clone(),
        dest_type: to_endpoint_type(k.dest.kind).into(),
        dest_port: i64::from(k.dest_port),
        dest_service_name: service.name,
        dest_service_namespace: service.namespace,
        dest_service_port_name: service.port_name,
        dest_service_port: i64::from(service.port),
        proto: k.protocol.clone(),
        reporter: to_reporter(k.reporter).into(),
        action: to_action(k.action).into(),
        policies: Some(proto::PolicyTrace {
            enforced_policies: k.policies.enforced.iter().map(to_hit).collect(),
            pending_policies: k.policies.pending.iter().map(to_hit).collect(),
        }),
    }
}

pub fn to_result(f: &Flow) -> proto::FlowResult {
    proto::FlowResult {
        id: f.id,
        flow: Some(to_flow(
            &f.key,
            f.start,
            f.end,
            &f.source_labels,
            &f.dest_labels,
            &f.counters,
        )),
    }
}

/// A key's sum over `[start, end)` as the protobuf `Flow`.
pub fn to_flow(
    key: &FlowKey,
    start: i64,
    end: i64,
    source_labels: &Labels,
    dest_labels: &Labels,
    c: &Counters,
) -> proto::Flow {
    proto::Flow {
        key: Some(to_key(key)),
        start_time: start,
        end_time: end,
        source_labels: source_labels.as_slice().to_vec(),
        dest_labels: dest_labels.as_slice().to_vec(),
        packets_in: to_i64(c.packets_in),
        packets_out: to_i64(c.packets_out),
        bytes_in: to_i64(c.bytes_in),
        bytes_out: to_i64(c.bytes_out),
        num_connections_started: to_i64(c.connections_started),
        num_connections_completed: to_i64(c.connections_completed),
        num_connections_live: to_i64(c.connections_live),
    }
}

/// Why a pushed flow was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadFlow {
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{field}: {value} is not a known value")]
    Value { field: &'static str, value: i64 },
}

/// A flow pushed by a host (FlowCollector): its key, labels, counters and
/// span. Unspecified or unknown enums, ports out of range and negative
/// counters are refused: a flow must say what it is.
#[derive(Debug)]
pub struct Pushed {
    pub key: FlowKey,
    pub source_labels: Labels,
    pub dest_labels: Labels,
    pub counters: Counters,
    pub start: i64,
    pub end: i64,
}

impl TryFrom<&proto::Flow> for Pushed {
    type Error = BadFlow;

    fn try_from(f: &proto::Flow) -> Result<Pushed, BadFlow> {
        let k = f.key.as_ref().ok_or(BadFlow::Missing("flow.Key"))?;
        let known = |field: &'static str, value: i32| BadFlow::Value {
            field,
            value: i64::from(value),
        };
        let kind = |field, value: i32| {
            proto::EndpointType::try_from(value)
                .ok()
                .and_then(endpoint_kind)
                .ok_or(known(field, value))
        };
        let port =
            |field, value: i64| u16::try_from(value).map_err(|_| BadFlow::Value { field, value });
        let count =
            |field, value: i64| u64::try_from(value).map_err(|_| BadFlow::Value { field, value });
        let service = (!k.dest_service_name.is_empty()).then(|| -> Result<Service, BadFlow> {
            Ok(Service {
                namespace: k.dest_service_namespace.clone(),
                name: k.dest_service_name.clone(),
                port_name: k.dest_service_port_name.clone(),
                port: port("dest_service_port", k.dest_service_port)?,
            })
        });
        let trace = k.policies.clone().unwrap_or_default();
        let key = FlowKey {
            source: Peer {
                kind: kind("source_type", k.source_type)?,
                namespace: k.source_namespace.clone(),
                name: k.source_name.clone(),
            },
            dest: Peer {
                kind: kind("dest_type", k.dest_type)?,
                namespace: k.dest_namespace.clone(),
                name: k.dest_name.clone(),
            },
            dest_port: port("dest_port", k.dest_port)?,
            dest_service: service.transpose()?,
            protocol: k.proto.clone(),
            reporter: proto::Reporter::try_from(k.reporter)
                .ok()
                .and_then(reporter)
                .ok_or(known("reporter", k.reporter))?,
            action: proto::Action::try_from(k.action)
                .ok()
                .and_then(action)
                .ok_or(known("action", k.action))?,
            policies: PolicyTrace {
                enforced: trace
                    .enforced_policies
                    .iter()
                    .map(from_hit)
                    .collect::<Result<_, _>>()?,
                pending: trace
                    .pending_policies
                    .iter()
                    .map(from_hit)
                    .collect::<Result<_, _>>()?,
            },
        };
        Ok(Pushed {
            key,
            source_labels: Labels::from_sorted(f.source_labels.clone()),
            dest_labels: Labels::from_sorted(f.dest_labels.clone()),
            counters: Counters {
                packets_in: count("packets_in", f.packets_in)?,
                packets_out: count("packets_out", f.packets_out)?,
                bytes_in: count("bytes_in", f.bytes_in)?,
                bytes_out: count("bytes_out", f.bytes_out)?,
                connections_started: count("num_connections_started", f.num_connections_started)?,
                connections_completed: count(
                    "num_connections_completed",
                    f.num_connections_completed,
                )?,
                connections_live: count("num_connections_live", f.num_connections_live)?,
            },
            start: f.start_time,
            end: f.end_time,
        })
    }
}

fn from_hit(h: &proto::PolicyHit) -> Result<PolicyHit, BadFlow> {
    let bad = |field: &'static str, value: i32| BadFlow::Value {
        field,
        value: i64::from(value),
    };
    Ok(PolicyHit {
        kind: proto::PolicyKind::try_from(h.kind)
            .ok()
            .and_then(policy_kind)
            .ok_or(bad("policy_hit.kind", h.kind))?,
        namespace: h.namespace.clone(),
        name: h.name.clone(),
        tier: h.tier.clone(),
        action: proto::Action::try_from(h.action)
            .ok()
            .and_then(action)
            .ok_or(bad("policy_hit.action", h.action))?,
        policy_index: h.policy_index,
        rule_index: h.rule_index,
        trigger: h
            .trigger
            .as_deref()
            .map(from_hit)
            .transpose()?
            .map(Box::new),
    })
}
