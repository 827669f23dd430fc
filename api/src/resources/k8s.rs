//! [`KubernetesNetworkPolicy`]: a `networking.k8s.io/v1` NetworkPolicy, accepted
//! alongside Calico's own kinds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    meta::ObjectMeta,
    resource::validate_labels,
    types::{Cidr, Port, Protocol},
    validate::{Errors, at, names},
};

use super::{Spec, policy::PolicyType};

/// How a label selector requirement compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LabelSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: LabelSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A Kubernetes label selector; empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    fn validate(&self, path: &str, errs: &mut Errors) {
        validate_labels(&at(path, "matchLabels"), &self.match_labels, errs);
        for (i, req) in self.match_expressions.iter().enumerate() {
            let path = format!("{path}.matchExpressions[{i}]");
            errs.check(at(&path, "key"), names::label_key(&req.key));
            let wants_values = matches!(
                req.operator,
                LabelSelectorOperator::In | LabelSelectorOperator::NotIn
            );
            if wants_values == req.values.is_empty() {
                let message = if wants_values {
                    "are required with In and NotIn"
                } else {
                    "must be empty with Exists and DoesNotExist"
                };
                errs.add(at(&path, "values"), message);
            }
            for (j, v) in req.values.iter().enumerate() {
                errs.check(format!("{path}.values[{j}]"), names::label_value(v));
            }
        }
    }
}

/// An address block, less some exceptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: Cidr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<Cidr>,
}

/// A rule peer: pods, namespaces, or an address block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

/// A port (number or name) with an optional end of range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPort {
    /// TCP, UDP or SCTP; TCP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

/// One ingress (`from`) or egress (`to`) rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyIngressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<NetworkPolicyPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
}

/// One egress rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyEgressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<NetworkPolicyPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
}

fn validate_peers(path: &str, peers: &[NetworkPolicyPeer], errs: &mut Errors) {
    for (i, peer) in peers.iter().enumerate() {
        let path = format!("{path}[{i}]");
        if let Some(sel) = &peer.pod_selector {
            sel.validate(&at(&path, "podSelector"), errs);
        }
        if let Some(sel) = &peer.namespace_selector {
            sel.validate(&at(&path, "namespaceSelector"), errs);
        }
        let selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
        match &peer.ip_block {
            Some(_) if selectors => errs.add(
                &path,
                "ipBlock cannot be combined with podSelector or namespaceSelector",
            ),
            Some(block) => {
                let path = at(&path, "ipBlock");
                errs.check(at(&path, "cidr"), block.cidr.check_network());
                for (j, ex) in block.except.iter().enumerate() {
                    if !block.cidr.0.contains(&ex.0) {
                        errs.add(
                            format!("{path}.except[{j}]"),
                            format!("{ex} is not within {}", block.cidr),
                        );
                    }
                }
            }
            None if !selectors => errs.add(
                &path,
                "a peer needs podSelector, namespaceSelector or ipBlock",
            ),
            None => {}
        }
    }
}

fn validate_ports(path: &str, ports: &[NetworkPolicyPort], errs: &mut Errors) {
    for (i, p) in ports.iter().enumerate() {
        let path = format!("{path}[{i}]");
        if let Some(proto) = p
            .protocol
            .filter(|p| !matches!(p, Protocol::Tcp | Protocol::Udp | Protocol::Sctp))
        {
            errs.add(
                at(&path, "protocol"),
                format!("protocol {proto} is not TCP, UDP or SCTP"),
            );
        }
        match (&p.port, p.end_port) {
            (Some(Port::Range { .. }), _) => {
                errs.add(
                    at(&path, "port"),
                    "Kubernetes ports are a number or a name; use endPort for a range",
                );
            }
            (Some(Port::Number(start)), Some(end)) if end < *start => {
                errs.add(
                    at(&path, "endPort"),
                    format!("range {start}:{end} is reversed"),
                );
            }
            (Some(Port::Named(_)) | None, Some(_)) => {
                errs.add(at(&path, "endPort"), "needs a numeric port");
            }
            (Some(port), _) => errs.check(at(&path, "port"), port.check()),
            (None, None) => {}
        }
    }
}

/// `spec` of a [`KubernetesNetworkPolicy`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesNetworkPolicySpec {
    #[serde(default)]
    pub pod_selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<NetworkPolicyIngressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<NetworkPolicyEgressRule>,
}

impl Spec for KubernetesNetworkPolicySpec {
    /// Kubernetes' rule for absent `policyTypes`: Ingress always, Egress when there are
    /// egress rules.
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        if self.policy_types.is_empty() {
            self.policy_types.push(PolicyType::Ingress);
            if !self.egress.is_empty() {
                self.policy_types.push(PolicyType::Egress);
            }
        }
    }

    fn validate(&self, _meta: &ObjectMeta, errs: &mut Errors) {
        self.pod_selector.validate("spec.podSelector", errs);
        for (i, rule) in self.ingress.iter().enumerate() {
            let path = format!("spec.ingress[{i}]");
            validate_peers(&at(&path, "from"), &rule.from, errs);
            validate_ports(&at(&path, "ports"), &rule.ports, errs);
        }
        for (i, rule) in self.egress.iter().enumerate() {
            let path = format!("spec.egress[{i}]");
            validate_peers(&at(&path, "to"), &rule.to, errs);
            validate_ports(&at(&path, "ports"), &rule.ports, errs);
        }
    }
}

resource!(
    /// A Kubernetes NetworkPolicy (`networking.k8s.io/v1`).
    KubernetesNetworkPolicy,
    KubernetesNetworkPolicySpec
);
