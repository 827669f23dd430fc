//! What each view of the console shows, built from what was read (pure:
//! the resources, the flows, the statuses and the time are arguments).
//!
//! - [`policies`]: tiers in order, their policies with the endpoints each
//!   selects and its hits in the flows (connections, packets, per rule);
//!   the staged policies with their would-be hits.
//! - [`bgp`]: every node's sessions, down ones with their reason, and the
//!   nodes that stopped reporting or never did.
//! - [`borrowed`]: addresses in a block affine to another host.

use std::collections::BTreeMap;

use api::resources::status::CalicoNodeStatus;
use datastore::ipam::model::AllocationBlock;
use policy::model::{EndpointKind, Model, Policy, PolicyScope};
use serde::Serialize;

use crate::commands::flows::{FlowView, HitView};

/// Hits of one policy in the flows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hits {
    /// Flows (a key in a bucket) it took part in.
    pub flows: u64,
    pub connections: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Flows per rule index (`-1`: its end, no rule matched).
    pub rules: BTreeMap<i64, u64>,
    /// Flows it allowed and denied.
    pub allowed: u64,
    pub denied: u64,
}

impl Hits {
    fn add(&mut self, f: &FlowView, h: &HitView) {
        self.flows += 1;
        self.connections += f.connections_started.max(0) as u64;
        self.packets += (f.packets_in + f.packets_out).max(0) as u64;
        self.bytes += (f.bytes_in + f.bytes_out).max(0) as u64;
        *self.rules.entry(h.rule_index).or_default() += 1;
        match h.action.as_str() {
            "allow" => self.allowed += 1,
            "deny" => self.denied += 1,
            _ => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub order: Option<f64>,
    pub selector: String,
    pub types: Vec<String>,
    pub ingress_rules: usize,
    pub egress_rules: usize,
    /// The endpoints it selects (`ns/pod` as flows name them, or a host
    /// endpoint's name).
    pub endpoints: Vec<String>,
    /// `None` when the flows could not be read.
    pub hits: Option<Hits>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierView {
    pub name: String,
    pub order: Option<f64>,
    pub default_action: String,
    pub policies: Vec<PolicyView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoliciesView {
    pub tiers: Vec<TierView>,
    /// Staged policies, with the flows in which they are pending.
    pub staged: Vec<PolicyView>,
    /// Why there are no hits, when the flows could not be read.
    pub flows_error: Option<String>,
}

fn kind_of(p: &Policy) -> &'static str {
    match (&p.scope, p.name.starts_with(policy::k8s::NAME_PREFIX)) {
        (PolicyScope::Global, _) => "GlobalNetworkPolicy",
        (PolicyScope::Namespace(_), true) => "KubernetesNetworkPolicy",
        (PolicyScope::Namespace(_), false) => "NetworkPolicy",
    }
}

fn namespace_of(p: &Policy) -> String {
    match &p.scope {
        PolicyScope::Global => String::new(),
        PolicyScope::Namespace(ns) => ns.clone(),
    }
}

/// The endpoints `p` selects in `model`.
fn selected(model: &Model, p: &Policy) -> Vec<String> {
    model
        .endpoints
        .iter()
        .filter(|e| match &p.scope {
            PolicyScope::Global => true,
            PolicyScope::Namespace(ns) => {
                e.kind == EndpointKind::Workload
                    && e.name.split_once('/').is_some_and(|(n, _)| n == ns)
            }
        })
        .filter(|e| p.selector.matches(&e.labels))
        .map(|e| match e.name.split_once('/') {
            // As flows name them: the pod.
            Some((ns, _)) => format!("{ns}/{}", e.display),
            None => e.name.clone(),
        })
        .collect()
}

/// The hits of the policy named (`tier`, `namespace`, `name`) among
/// `hits` of each flow (`pending` or enforced ones).
fn hits_of(flows: &[FlowView], tier: &str, namespace: &str, name: &str, pending: bool) -> Hits {
    let mut out = Hits::default();
    for f in flows {
        let list = if pending {
            &f.pending_policies
        } else {
            &f.policies
        };
        // A policy appears once per flow: its first hit decided for it.
        if let Some(h) = list
            .iter()
            .find(|h| h.tier == tier && h.namespace == namespace && h.name == name)
        {
            out.add(f, h);
        }
    }
    out
}

fn view(
    model: &Model,
    p: &Policy,
    tier: &str,
    flows: Option<&[FlowView]>,
    pending: bool,
) -> PolicyView {
    let namespace = namespace_of(p);
    PolicyView {
        kind: kind_of(p),
        hits: flows.map(|f| hits_of(f, tier, &namespace, &p.name, pending)),
        namespace,
        name: p.name.clone(),
        order: p.order,
        selector: p.selector.to_string(),
        types: p.types.iter().map(|t| format!("{t:?}")).collect(),
        ingress_rules: p.ingress.len(),
        egress_rules: p.egress.len(),
        endpoints: selected(model, p),
    }
}

/// The policies view of `model` (as felix compiles it) and its staged
/// twin, with hits from `flows` (or the error that kept them away).
pub fn policies(model: &Model, staged: &Model, flows: Result<&[FlowView], String>) -> PoliciesView {
    let (flows, flows_error) = match flows {
        Ok(f) => (Some(f), None),
        Err(e) => (None, Some(e)),
    };
    let tiers = model
        .tiers
        .iter()
        .map(|t| TierView {
            name: t.name.clone(),
            order: t.order,
            default_action: format!("{:?}", t.default_action),
            policies: t
                .policies
                .iter()
                .map(|p| view(model, p, &t.name, flows, false))
                .collect(),
        })
        .collect();
    // A staged policy is one the staged model has and the enforced one
    // does not (or has otherwise): what promoting it would change.
    let mut staged_views = Vec::new();
    for t in &staged.tiers {
        let enforced = model.tiers.iter().find(|e| e.name == t.name);
        for p in &t.policies {
            let same = enforced.is_some_and(|e| e.policies.iter().any(|q| q == p));
            if !same {
                staged_views.push(view(staged, p, &t.name, flows, true));
            }
        }
    }
    PoliciesView {
        tiers,
        staged: staged_views,
        flows_error,
    }
}

/// One BGP session as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub peer: String,
    pub peer_type: String,
    pub state: String,
    pub up: bool,
    pub since: String,
    pub prefixes_in: u64,
    pub prefixes_out: u64,
    /// Why it is down, in plain words (empty when up).
    pub reason: String,
    pub last_error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub node: String,
    /// Seconds since its felix last wrote its status; `None`: never.
    pub age: Option<u64>,
    /// Its felix stopped reporting (or never did).
    pub stale: bool,
    /// Ready or NotReady; empty when not reported.
    pub agent: String,
    pub sessions: Vec<SessionView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpView {
    pub nodes: Vec<NodeView>,
    pub sessions: usize,
    /// Sessions not Established, on nodes that report.
    pub down: usize,
    /// Nodes whose status is stale or missing.
    pub silent: usize,
}

/// Every node's sessions from the statuses felix wrote; `nodes` (the Node
/// resources) adds those that never reported.
pub fn bgp(statuses: &[CalicoNodeStatus], nodes: &[String], now: u64) -> BgpView {
    let mut views: BTreeMap<String, NodeView> = BTreeMap::new();
    for s in statuses {
        let sessions = s
            .status
            .bgp
            .iter()
            .flat_map(|b| b.peers_v4.iter().chain(&b.peers_v6))
            .map(|p| SessionView {
                peer: p.peer_ip.clone(),
                peer_type: p.peer_type.clone(),
                up: p.state == "Established",
                state: p.state.clone(),
                since: p.since.clone(),
                prefixes_in: p.prefixes_received,
                prefixes_out: p.prefixes_advertised,
                reason: p.reason.clone(),
                last_error: p.last_error.clone(),
            })
            .collect();
        let agent = s
            .status
            .agent
            .as_ref()
            .and_then(|a| a.bird_v4.as_ref())
            .map(|d| d.state.clone())
            .unwrap_or_default();
        views.insert(
            s.spec.node.clone(),
            NodeView {
                node: s.spec.node.clone(),
                age: s.age(now),
                stale: s.is_stale(now),
                agent,
                sessions,
            },
        );
    }
    for n in nodes {
        views.entry(n.clone()).or_insert_with(|| NodeView {
            node: n.clone(),
            age: None,
            stale: true,
            agent: String::new(),
            sessions: Vec::new(),
        });
    }
    let nodes: Vec<NodeView> = views.into_values().collect();
    BgpView {
        sessions: nodes.iter().map(|n| n.sessions.len()).sum(),
        down: nodes
            .iter()
            .filter(|n| !n.stale)
            .flat_map(|n| &n.sessions)
            .filter(|s| !s.up)
            .count(),
        silent: nodes.iter().filter(|n| n.stale).count(),
        nodes,
    }
}

/// An address used by a host other than its block's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Borrowed {
    pub ip: String,
    pub block: String,
    pub block_host: String,
    /// The host that uses it (the allocation's `node` attribute).
    pub host: String,
    pub handle: Option<String>,
}

/// The borrowed addresses of `blocks`.
pub fn borrowed(blocks: &[AllocationBlock]) -> Vec<Borrowed> {
    let mut out = Vec::new();
    for b in blocks {
        let Some(owner) = b.host() else { continue };
        for a in b.allocations() {
            if let Some(host) = a.attrs.get("node").filter(|h| h.as_str() != owner) {
                out.push(Borrowed {
                    ip: a.ip.to_string(),
                    block: b.cidr.to_string(),
                    block_host: owner.to_string(),
                    host: host.clone(),
                    handle: a.handle.map(str::to_string),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::ObjectMeta;
    use api::resources::status::{
        BgpPeerStatus, BgpStatus, CalicoNodeStatusSpec, CalicoNodeStatusStatus, rfc3339,
    };

    const NOW: u64 = 1_796_624_070;

    fn status(node: &str, age: u64, peers: Vec<BgpPeerStatus>) -> CalicoNodeStatus {
        CalicoNodeStatus {
            metadata: ObjectMeta {
                name: node.into(),
                ..ObjectMeta::default()
            },
            spec: CalicoNodeStatusSpec {
                node: node.into(),
                classes: vec![],
                update_period_seconds: Some(10),
            },
            status: CalicoNodeStatusStatus {
                last_updated: rfc3339(NOW - age),
                agent: None,
                bgp: Some(BgpStatus {
                    peers_v4: peers,
                    ..BgpStatus::default()
                }),
            },
        }
    }

    fn peer(ip: &str, state: &str, reason: &str) -> BgpPeerStatus {
        BgpPeerStatus {
            peer_ip: ip.into(),
            peer_type: "NodeMesh".into(),
            state: state.into(),
            reason: reason.into(),
            ..BgpPeerStatus::default()
        }
    }

    #[test]
    fn down_sessions_silent_nodes_and_nodes_never_reporting_are_counted() {
        let view = bgp(
            &[
                status(
                    "h1",
                    5,
                    vec![
                        peer("10.0.0.12", "Established", ""),
                        peer("10.0.0.13", "Active", "TCP 179 refused"),
                    ],
                ),
                status("h3", 900, vec![peer("10.0.0.11", "Established", "")]),
            ],
            &["h1".into(), "h2".into(), "h3".into()],
            NOW,
        );
        assert_eq!((view.sessions, view.down, view.silent), (3, 1, 2));
        let names: Vec<_> = view
            .nodes
            .iter()
            .map(|n| (n.node.as_str(), n.stale))
            .collect();
        assert_eq!(names, [("h1", false), ("h2", true), ("h3", true)]);
        assert_eq!(view.nodes[0].sessions[1].reason, "TCP 179 refused");
        assert_eq!(view.nodes[0].age, Some(5));
    }

    #[test]
    fn a_policy_counts_the_flows_it_took_part_in_per_rule() {
        let yaml = "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: default}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: h1-k8s-db-eth0, namespace: default, labels: {app: db}}
spec: {node: h1, pod: db, interfaceName: calidb, ipNetworks: [10.0.0.2/32]}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: deny-all}
spec: {order: 1, selector: all(), ingress: [{action: Deny}]}
";
        let resources = api::parse_documents("test.yaml", yaml).unwrap();
        let model = Model::from_resources(&resources, policy::Config::default()).unwrap();
        let staged = model.with_staged_enforced();
        let flow = |action: &str, rule: i64, pending: Option<&str>| {
            let hit = |name: &str, ns: &str, action: &str, rule: i64| HitView {
                kind: String::new(),
                tier: "default".into(),
                namespace: ns.into(),
                name: name.into(),
                action: action.into(),
                rule_index: rule,
            };
            FlowView {
                policies: vec![hit("db", "default", action, rule)],
                pending_policies: pending
                    .map(|p| vec![hit(p, "", "deny", 0)])
                    .unwrap_or_default(),
                connections_started: 2,
                packets_in: 3,
                ..FlowView::default()
            }
        };
        let flows = [flow("allow", 0, Some("deny-all")), flow("deny", -1, None)];
        let view = policies(&model, &staged, Ok(&flows));
        let db = &view.tiers[0].policies[0];
        assert_eq!((db.kind, db.name.as_str()), ("NetworkPolicy", "db"));
        assert_eq!(db.endpoints, ["default/db"]);
        let hits = db.hits.as_ref().unwrap();
        assert_eq!(
            (
                hits.flows,
                hits.connections,
                hits.packets,
                hits.allowed,
                hits.denied
            ),
            (2, 4, 6, 1, 1)
        );
        assert_eq!(hits.rules, BTreeMap::from([(-1, 1), (0, 1)]));
        assert_eq!(view.staged.len(), 1);
        assert_eq!(view.staged[0].name, "deny-all");
        assert_eq!(view.staged[0].hits.as_ref().unwrap().flows, 1);

        let none = policies(&model, &staged, Err("flows down".into()));
        assert!(none.tiers[0].policies[0].hits.is_none());
        assert_eq!(none.flows_error.as_deref(), Some("flows down"));
    }
}
