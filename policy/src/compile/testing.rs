//! Small models for the compiler's unit tests, from Calico YAML.

use crate::model::{Config, Model};

/// A shop on node1: workloads `frontend` (califront, 10.65.0.2) and
/// `backend` (caliback, 10.65.0.3) with profile `open`, and `remote` on
/// node2; NetworkPolicy `shop/backend` lets the frontend in to TCP 8080,
/// GlobalNetworkPolicy `partners` lets the network set `partners` in, and
/// `remote-only` selects the remote workload only.
pub const SHOP: &str = include_str!("testing/shop.yaml");

/// The model of these YAML documents, compiled for node1.
pub fn model(yaml: &str) -> Model {
    let resources = api::parse_documents("test", yaml).expect("the test's YAML parses");
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
