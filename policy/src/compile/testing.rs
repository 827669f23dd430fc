//! Small models for the compiler's unit tests, from Calico YAML.

use crate::model::{Config, Model};

/// A shop on node1: workloads `frontend` (califront, 10.65.0.2) and
/// `backend` (caliback, 10.65.0.3) with profile `open`, and `remote` on
/// node2; NetworkPolicy `shop/backend` lets the frontend in to TCP 8080,
/// GlobalNetworkPolicy `partners` lets the network set `partners` in, and
/// `remote-only` selects the remote workload only.
pub const SHOP: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: backend, namespace: shop}
spec:
  selector: app == "backend"
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: app == "frontend"}
      destination: {ports: [8080]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: partners}
spec:
  order: 10
  selector: app == "backend"
  ingress:
    - action: Allow
      source: {selector: role == "partner"}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: remote-only}
spec:
  order: 20
  selector: app == "remote"
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: open}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {role: partner}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: frontend, namespace: shop, labels: {app: frontend}}
spec: {node: node1, interfaceName: califront, ipNetworks: [10.65.0.2/32], profiles: [open]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: backend, namespace: shop, labels: {app: backend}}
spec: {node: node1, interfaceName: caliback, ipNetworks: [10.65.0.3/32], profiles: [open, missing]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: remote, namespace: shop, labels: {app: remote}}
spec: {node: node2, interfaceName: caliremote, ipNetworks: [10.65.1.2/32]}
"#;

/// The model of these YAML documents, compiled for node1.
pub fn model(yaml: &str) -> Model {
    let resources = api::parse_documents("test", yaml).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("{}", lines.join("\n"))
    });
    let config = Config {
        node: Some("node1".into()),
        ..Config::default()
    };
    Model::from_resources(&resources, config).unwrap_or_else(|e| panic!("{e}"))
}

/// The index of the endpoint `name` in the model.
pub fn endpoint(model: &Model, name: &str) -> usize {
    (model.endpoints.iter().position(|e| e.name.ends_with(name)))
        .unwrap_or_else(|| panic!("no endpoint {name}"))
}
