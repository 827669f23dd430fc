//! Test fixtures: a [`Snapshot`] from YAML as a user would write the
//! datastore, IPAM blocks with allocations, and short resource documents.

use std::net::IpAddr;

use datastore::ipam::block_math;
use datastore::ipam::model::{ATTR_NODE, AllocationAttribute, AllocationBlock, block_key};
use datastore::resources::ResourceStore;
use ipnet::IpNet;

use crate::state::{HostSettings, Snapshot};

/// The resources of a YAML file (validated by `api::parse_documents`), keyed
/// as the datastore keys them.
pub(crate) fn snapshot(yaml: &str) -> Snapshot {
    let resources = api::parse_documents("fixture.yaml", yaml)
        .unwrap_or_else(|errors| panic!("fixture does not parse: {errors:?}"));
    let mut snap = Snapshot::default();
    for r in resources {
        let meta = r.metadata();
        let key = ResourceStore::key(r.kind(), meta.namespace.as_deref(), &meta.name);
        snap.resources.insert(key, r);
    }
    snap
}

/// The resources of a YAML file as a datastore might hold them: read with
/// defaults but not validated (another writer, an older version, a bug).
pub(crate) fn snapshot_unvalidated(yaml: &str) -> Snapshot {
    use serde::Deserialize;
    let mut snap = Snapshot::default();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_json::Value::deserialize(doc).expect("fixture YAML");
        if value.is_null() {
            continue;
        }
        let r = api::Resource::from_value(value).expect("fixture document reads");
        let meta = r.metadata();
        let key = ResourceStore::key(r.kind(), meta.namespace.as_deref(), &meta.name);
        snap.resources.insert(key, r);
    }
    snap
}

/// `snapshot(yaml)` with `blocks`.
pub(crate) fn snapshot_with(yaml: &str, blocks: Vec<AllocationBlock>) -> Snapshot {
    let mut snap = snapshot(yaml);
    for b in blocks {
        snap.blocks.insert(block_key(b.cidr), b);
    }
    snap
}

/// A block affine to `host` (`None`: no affinity) with `allocations`, each
/// an address and the node its workload runs on.
pub(crate) fn block(
    cidr: &str,
    host: Option<&str>,
    allocations: &[(&str, &str)],
) -> AllocationBlock {
    let cidr: IpNet = cidr.parse().expect("fixture block CIDR");
    let mut b = AllocationBlock::new(cidr, host);
    for (ip, node) in allocations {
        let ip: IpAddr = ip.parse().expect("fixture address");
        let ordinal = block_math::ordinal(cidr, ip).expect("fixture address in its block");
        let attr = AllocationAttribute {
            handle_id: Some(format!("k8s-pod-network.{ip}")),
            secondary: [(ATTR_NODE.to_string(), node.to_string())].into(),
        };
        assert!(b.assign_ordinal(ordinal, &attr));
    }
    b
}

/// Settings of host `node`, running BGP.
pub(crate) fn host(node: &str) -> HostSettings {
    HostSettings {
        node: node.to_string(),
        bgp_enabled: true,
        flow_logs: None,
    }
}

/// A Node document with a BGP IPv4 address (and the given extra `spec` lines,
/// indented by two spaces).
pub(crate) fn node(name: &str, ipv4: &str, extra: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{name: {name}}}\n\
         spec:\n  bgp:\n    ipv4Address: {ipv4}\n{extra}---\n"
    )
}

/// An IPPool document (extra `spec` lines indented by two spaces).
pub(crate) fn pool(name: &str, cidr: &str, extra: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n{extra}---\n"
    )
}

/// A WorkloadEndpoint `default/<name>` on `node`.
pub(crate) fn workload(name: &str, node: &str, iface: &str, addrs: &[&str]) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {name}\n  namespace: default\n\
         spec:\n  node: {node}\n  interfaceName: {iface}\n  ipNetworks: [{}]\n---\n",
        addrs.join(", ")
    )
}
