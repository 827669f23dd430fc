//! Kubernetes NetworkPolicy mapped onto Calico's model, as libcalico-go's
//! conversion maps it: a NetworkPolicy `knp.default.<name>` in the same
//! namespace, tier `default`, order 1000, whose rules allow.
//!
//! - `podSelector` becomes `projectcalico.org/orchestrator == "k8s" && <labels>`
//!   (pods only; an empty podSelector selects every pod of the namespace).
//! - Each rule becomes one Allow rule per peer (or one with no peer when `from`/`to`
//!   is empty) and per protocol of its ports (ports without protocol are TCP; a
//!   port-less entry allows the whole protocol; `endPort` makes a range).
//! - A peer's `podSelector` is the rule's selector; a `namespaceSelector` is the
//!   rule's namespaceSelector (empty: every namespace) and then the selector is
//!   at least `projectcalico.org/orchestrator == "k8s"`; an `ipBlock` gives
//!   `nets: [cidr]`, `notNets: except`.
//! - `policyTypes` are kept (the api fills in Kubernetes' default); an empty
//!   ingress or egress list under a listed type allows nothing.

use std::collections::BTreeMap;

use api::{
    KubernetesNetworkPolicy, NetworkPolicy, NetworkPolicySpec, ObjectMeta, Port, Protocol,
    resources::{
        k8s::{LabelSelector, LabelSelectorOperator, NetworkPolicyPeer, NetworkPolicyPort},
        policy::{Action, DEFAULT_TIER, EntityRule},
    },
    selector::{CompareOp, Expr},
};

use crate::model::LABEL_ORCHESTRATOR;

/// Name prefix of mapped Kubernetes policies.
pub const NAME_PREFIX: &str = "knp.default.";
/// Order of mapped Kubernetes policies.
pub const ORDER: f64 = 1000.0;

/// The Calico NetworkPolicy Calico would make of a Kubernetes one.
pub fn convert(p: &KubernetesNetworkPolicy) -> NetworkPolicy {
    let s = &p.spec;
    let rules = |peers_and_ports: Vec<(&[NetworkPolicyPeer], &[NetworkPolicyPort])>, ingress| {
        peers_and_ports
            .into_iter()
            .flat_map(|(peers, ports)| convert_rule(peers, ports, ingress))
            .collect()
    };
    let spec = NetworkPolicySpec {
        tier: DEFAULT_TIER.to_string(),
        order: Some(ORDER),
        selector: pod_selector(&s.pod_selector).to_string(),
        types: s.policy_types.clone(),
        ingress: rules(
            s.ingress
                .iter()
                .map(|r| (r.from.as_slice(), r.ports.as_slice()))
                .collect(),
            true,
        ),
        egress: rules(
            s.egress
                .iter()
                .map(|r| (r.to.as_slice(), r.ports.as_slice()))
                .collect(),
            false,
        ),
        service_account_selector: String::new(),
    };
    let metadata = ObjectMeta {
        name: format!("{NAME_PREFIX}{}", p.metadata.name),
        namespace: p.metadata.namespace.clone(),
        ..ObjectMeta::default()
    };
    NetworkPolicy::new(metadata, spec)
}

fn convert_rule(
    peers: &[NetworkPolicyPeer],
    ports: &[NetworkPolicyPort],
    ingress: bool,
) -> Vec<api::Rule> {
    let peers: Vec<EntityRule> = if peers.is_empty() {
        vec![EntityRule::default()]
    } else {
        peers.iter().map(peer).collect()
    };
    let port_groups = group_ports(ports);
    let mut rules = Vec::new();
    for peer in &peers {
        for (protocol, ports) in &port_groups {
            let mut rule = api::Rule::new(Action::Allow);
            rule.protocol = *protocol;
            let mut remote = peer.clone();
            if ingress {
                rule.source = remote;
                rule.destination = EntityRule {
                    ports: ports.clone(),
                    ..EntityRule::default()
                };
            } else {
                remote.ports.clone_from(ports);
                rule.destination = remote;
            }
            rules.push(rule);
        }
    }
    rules
}

/// Ports grouped by protocol, in first-seen order; `[(None, [])]` when there
/// are none. A port-less entry allows the whole protocol.
fn group_ports(ports: &[NetworkPolicyPort]) -> Vec<(Option<Protocol>, Vec<Port>)> {
    if ports.is_empty() {
        return vec![(None, Vec::new())];
    }
    let mut groups: Vec<(Option<Protocol>, Option<Vec<Port>>)> = Vec::new();
    for p in ports {
        let protocol = Some(p.protocol.unwrap_or(Protocol::Tcp));
        let port = p.port.clone().map(|port| match (port, p.end_port) {
            (Port::Number(min), Some(max)) => Port::Range { min, max },
            (port, _) => port,
        });
        let index = match groups.iter().position(|(proto, _)| *proto == protocol) {
            Some(i) => i,
            None => {
                groups.push((protocol, Some(Vec::new())));
                groups.len() - 1
            }
        };
        let group = &mut groups[index].1;
        match port {
            None => *group = None,
            Some(port) => {
                if let Some(list) = group.as_mut().filter(|l| !l.contains(&port)) {
                    list.push(port);
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|(proto, ports)| (proto, ports.unwrap_or_default()))
        .collect()
}

fn peer(p: &NetworkPolicyPeer) -> EntityRule {
    if let Some(block) = &p.ip_block {
        return EntityRule {
            nets: vec![block.cidr],
            not_nets: block.except.clone(),
            ..EntityRule::default()
        };
    }
    let mut entity = EntityRule::default();
    match (&p.pod_selector, &p.namespace_selector) {
        (pods, Some(ns)) => {
            entity.namespace_selector = label_selector(ns).to_string();
            entity.selector =
                pod_selector(pods.as_ref().unwrap_or(&LabelSelector::default())).to_string();
        }
        (Some(pods), None) => entity.selector = pod_selector(pods).to_string(),
        (None, None) => {}
    }
    entity
}

/// `projectcalico.org/orchestrator == "k8s" && <labels>`.
fn pod_selector(s: &LabelSelector) -> Expr {
    let k8s = Expr::compare(LABEL_ORCHESTRATOR, CompareOp::Eq, "k8s");
    Expr::and(std::iter::once(k8s).chain(requirements(s)))
}

/// A Kubernetes label selector as a Calico expression (`all()` when empty).
fn label_selector(s: &LabelSelector) -> Expr {
    Expr::and(requirements(s))
}

fn requirements(s: &LabelSelector) -> Vec<Expr> {
    let labels: &BTreeMap<String, String> = &s.match_labels;
    let mut out: Vec<Expr> = labels
        .iter()
        .map(|(k, v)| Expr::compare(k.clone(), CompareOp::Eq, v.clone()))
        .collect();
    for req in &s.match_expressions {
        let key = req.key.clone();
        out.push(match req.operator {
            LabelSelectorOperator::In => Expr::In {
                key,
                values: req.values.iter().cloned().collect(),
            },
            LabelSelectorOperator::NotIn => Expr::NotIn {
                key,
                values: req.values.iter().cloned().collect(),
            },
            LabelSelectorOperator::Exists => Expr::has(key),
            LabelSelectorOperator::DoesNotExist => Expr::has(key).negate(),
        });
    }
    out
}
