//! `ipam check`, pure: from one listing of `/calico/ipam/v2/` (one revision)
//! and the resources that own addresses ([`Owners`]: Nodes, WorkloadEndpoints,
//! enabled IP pools), a [`Report`] of everything that does not add up:
//!
//! - leaked addresses: allocated with no handle, with a handle that does not
//!   exist, for a host (`node` attribute) whose Node resource is gone, or for
//!   a pod (`namespace` and `pod` attributes, as Calico's CNI plugin records
//!   them) whose WorkloadEndpoint is gone or does not list the address
//!   (Calico's "allocated in IPAM but not actually in use");
//! - workload endpoint addresses IPAM has not allocated, inside an enabled
//!   pool or outside every one (Calico's "in use but not allocated" and "not
//!   in active IP pools");
//! - handles whose count for a block differs from the addresses the block
//!   holds for them (a handle without addresses counts 0 everywhere);
//! - affinities: a block affine to a host whose Node is gone, an affinity
//!   key without its block or pointing at a block affine elsewhere, a block
//!   affine to a host without the host's affinity key;
//! - values that do not decode.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use api::WorkloadEndpoint;

use super::model::{
    ATTR_NAMESPACE, ATTR_NODE, ATTR_POD, AllocationBlock, BlockAffinity, CONFIG_KEY, IpamHandle,
    parse_affinity_key, parse_block_key, parse_handle_key,
};
use crate::kv::{KeyValue, Revision};

/// Why an allocated address is counted as leaked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LeakReason {
    /// The allocation carries no handle.
    NoHandle,
    /// Its handle does not exist.
    HandleMissing,
    /// It was made for a host whose Node resource does not exist.
    NodeMissing,
    /// It was made for a pod that has no WorkloadEndpoint.
    WorkloadEndpointMissing,
    /// It was made for a pod whose WorkloadEndpoints do not list it.
    NotOnWorkloadEndpoint,
}

/// One leaked address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeakedAddress {
    pub ip: IpAddr,
    pub block: IpNet,
    pub handle: Option<String>,
    pub reason: LeakReason,
}

/// A handle whose count for a block is not what the block holds for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandleProblem {
    pub handle: String,
    /// The block as the handle names it.
    pub block: String,
    /// What the handle counts.
    pub recorded: usize,
    /// What the block holds for the handle.
    pub actual: usize,
}

/// What is wrong with a host's affinity to a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AffinityIssue {
    /// The host has no Node resource.
    NodeMissing,
    /// The affinity key exists but the block does not.
    BlockMissing,
    /// The affinity key exists but the block is affine to another host (or none).
    BlockAffineElsewhere { affinity: Option<String> },
    /// The block is affine to the host but the host's affinity key is missing.
    AffinityKeyMissing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AffinityProblem {
    pub host: String,
    pub block: IpNet,
    pub issue: AffinityIssue,
}

/// A workload endpoint's address that IPAM has not allocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnallocatedAddress {
    pub ip: IpAddr,
    /// The endpoint, `namespace/name`.
    pub endpoint: String,
    /// Whether the address lies in an enabled IP pool (else no pool
    /// Calico's IPAM manages holds it).
    pub in_pool: bool,
}

/// What [`check`] holds the IPAM data against: the resources that own addresses.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    /// Names of the Node resources.
    pub nodes: BTreeSet<String>,
    /// Every WorkloadEndpoint.
    pub endpoints: Vec<WorkloadEndpoint>,
    /// The CIDRs of the enabled IP pools.
    pub pools: Vec<IpNet>,
}

/// A stored value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BadValue {
    pub key: String,
    pub message: String,
}

/// Two IPPools that share addresses (the store refuses such a pool, but two
/// clients creating them at the same instant can both pass its check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolOverlap {
    pub pool: String,
    pub cidr: IpNet,
    pub other: String,
    pub other_cidr: IpNet,
}

/// Every pair of `pools` that overlaps, each pair once (the later pool
/// first).
pub fn pool_overlaps(pools: &[api::IPPool]) -> Vec<PoolOverlap> {
    pools
        .iter()
        .enumerate()
        .filter_map(|(i, pool)| {
            let other = crate::resources::overlapping(pool, &pools[..i])?;
            Some(PoolOverlap {
                pool: pool.metadata.name.clone(),
                cidr: pool.spec.cidr.network(),
                other: other.metadata.name.clone(),
                other_cidr: other.spec.cidr.network(),
            })
        })
        .collect()
}

/// Per-host counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostSummary {
    pub host: String,
    /// Blocks affine to the host.
    pub blocks: usize,
    /// Addresses allocated for the host (`node` attribute), in any block.
    pub addresses: usize,
    /// Whether the host's Node resource exists.
    pub node_exists: bool,
}

/// The result of `ipam check`; serialisable as the machine-readable report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The store revision the IPAM data was read at.
    pub revision: Revision,
    pub blocks: usize,
    pub allocated: usize,
    pub handles: usize,
    /// Addresses the workload endpoints list.
    #[serde(default)]
    pub workload_addresses: usize,
    pub hosts: Vec<HostSummary>,
    pub leaked: Vec<LeakedAddress>,
    /// Workload endpoint addresses with no allocation.
    #[serde(default)]
    pub unallocated: Vec<UnallocatedAddress>,
    pub handle_problems: Vec<HandleProblem>,
    pub affinity_problems: Vec<AffinityProblem>,
    pub bad_values: Vec<BadValue>,
    #[serde(default)]
    pub pool_overlaps: Vec<PoolOverlap>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.leaked.is_empty()
            && self.unallocated.is_empty()
            && self.handle_problems.is_empty()
            && self.affinity_problems.is_empty()
            && self.bad_values.is_empty()
            && self.pool_overlaps.is_empty()
    }

    /// Number of problems found.
    pub fn problems(&self) -> usize {
        self.leaked.len()
            + self.unallocated.len()
            + self.handle_problems.len()
            + self.affinity_problems.len()
            + self.bad_values.len()
            + self.pool_overlaps.len()
    }
}

/// The summary of host `name`, created on first use.
fn host_entry<'a>(
    hosts: &'a mut BTreeMap<String, HostSummary>,
    nodes: &BTreeSet<String>,
    name: &str,
) -> &'a mut HostSummary {
    hosts.entry(name.to_owned()).or_insert_with(|| HostSummary {
        host: name.to_owned(),
        node_exists: nodes.contains(name),
        ..HostSummary::default()
    })
}

/// The addresses of each pod's workload endpoints, by `(namespace, pod)`.
fn pod_addresses(endpoints: &[WorkloadEndpoint]) -> BTreeMap<(&str, &str), BTreeSet<IpAddr>> {
    let mut pods: BTreeMap<(&str, &str), BTreeSet<IpAddr>> = BTreeMap::new();
    for wep in endpoints.iter().filter(|w| !w.spec.pod.is_empty()) {
        let namespace = wep.metadata.namespace.as_deref().unwrap_or("default");
        pods.entry((namespace, wep.spec.pod.as_str()))
            .or_default()
            .extend(wep.spec.ip_networks.iter().map(|n| n.0.addr()));
    }
    pods
}

/// Why an allocation for the pod its attributes name is leaked, if it is.
fn workload_leak(
    attrs: &BTreeMap<String, String>,
    ip: IpAddr,
    pods: &BTreeMap<(&str, &str), BTreeSet<IpAddr>>,
) -> Option<LeakReason> {
    let pod = (
        attrs.get(ATTR_NAMESPACE)?.as_str(),
        attrs.get(ATTR_POD)?.as_str(),
    );
    match pods.get(&pod) {
        None => Some(LeakReason::WorkloadEndpointMissing),
        Some(ips) if !ips.contains(&ip) => Some(LeakReason::NotOnWorkloadEndpoint),
        Some(_) => None,
    }
}

/// Checks IPAM data listed at `revision` against the resources that own
/// addresses.
pub fn check(kvs: &[KeyValue], revision: Revision, owners: &Owners) -> Report {
    let nodes = &owners.nodes;
    let pods = pod_addresses(&owners.endpoints);
    let mut report = Report {
        revision,
        ..Report::default()
    };
    let mut bad = |key: &str, message: String| {
        report.bad_values.push(BadValue {
            key: key.into(),
            message,
        })
    };
    let mut blocks: BTreeMap<IpNet, AllocationBlock> = BTreeMap::new();
    let mut handles: BTreeMap<String, IpamHandle> = BTreeMap::new();
    let mut affinities: BTreeSet<(String, IpNet)> = BTreeSet::new();
    for kv in kvs {
        if let Some(cidr) = parse_block_key(&kv.key) {
            match serde_json::from_slice::<AllocationBlock>(&kv.value)
                .map_err(|e| e.to_string())
                .and_then(|b| b.check().map(|()| b))
            {
                Ok(b) if b.cidr == cidr => {
                    blocks.insert(cidr, b);
                }
                Ok(b) => bad(&kv.key, format!("holds the block {}", b.cidr)),
                Err(e) => bad(&kv.key, e),
            }
        } else if let Some((host, cidr)) = parse_affinity_key(&kv.key) {
            match serde_json::from_slice::<BlockAffinity>(&kv.value) {
                Ok(_) => {
                    affinities.insert((host, cidr));
                }
                Err(e) => bad(&kv.key, e.to_string()),
            }
        } else if let Some(handle) = parse_handle_key(&kv.key) {
            match serde_json::from_slice::<IpamHandle>(&kv.value) {
                Ok(h) => {
                    handles.insert(handle.to_owned(), h);
                }
                Err(e) => bad(&kv.key, e.to_string()),
            }
        } else if kv.key != CONFIG_KEY {
            bad(&kv.key, "not an IPAM key this version knows".into());
        }
    }

    let mut hosts: BTreeMap<String, HostSummary> = BTreeMap::new();
    // (handle, block) -> addresses the block holds for the handle.
    let mut actual: BTreeMap<(String, IpNet), usize> = BTreeMap::new();
    let mut allocated: BTreeSet<IpAddr> = BTreeSet::new();
    for (cidr, block) in &blocks {
        for a in block.allocations() {
            report.allocated += 1;
            allocated.insert(a.ip);
            let node = a.attrs.get(ATTR_NODE);
            if let Some(node) = node {
                host_entry(&mut hosts, nodes, node).addresses += 1;
            }
            let reason = match a.handle {
                None => Some(LeakReason::NoHandle),
                Some(h) if !handles.contains_key(h) => Some(LeakReason::HandleMissing),
                _ if node.is_some_and(|n| !nodes.contains(n)) => Some(LeakReason::NodeMissing),
                _ => workload_leak(a.attrs, a.ip, &pods),
            };
            if let Some(h) = a.handle {
                *actual.entry((h.to_owned(), *cidr)).or_default() += 1;
            }
            if let Some(reason) = reason {
                report.leaked.push(LeakedAddress {
                    ip: a.ip,
                    block: *cidr,
                    handle: a.handle.map(str::to_owned),
                    reason,
                });
            }
        }
        if let Some(owner) = block.host() {
            host_entry(&mut hosts, nodes, owner).blocks += 1;
            if !nodes.contains(owner) {
                report.affinity_problems.push(AffinityProblem {
                    host: owner.into(),
                    block: *cidr,
                    issue: AffinityIssue::NodeMissing,
                });
            }
            if !affinities.contains(&(owner.to_owned(), *cidr)) {
                report.affinity_problems.push(AffinityProblem {
                    host: owner.into(),
                    block: *cidr,
                    issue: AffinityIssue::AffinityKeyMissing,
                });
            }
        }
    }
    for (host, cidr) in &affinities {
        let issue = match blocks.get(cidr) {
            None => Some(AffinityIssue::BlockMissing),
            Some(b) if b.host() != Some(host.as_str()) => {
                Some(AffinityIssue::BlockAffineElsewhere {
                    affinity: b.affinity.clone(),
                })
            }
            Some(_) => None,
        };
        if let Some(issue) = issue {
            report.affinity_problems.push(AffinityProblem {
                host: host.clone(),
                block: *cidr,
                issue,
            });
        }
    }

    for (name, handle) in &handles {
        let mut seen = BTreeSet::new();
        for (cidr, text, recorded) in handle.blocks() {
            let Some(cidr) = cidr else {
                report.bad_values.push(BadValue {
                    key: super::model::handle_key(name),
                    message: format!("block {text:?} is not a CIDR"),
                });
                continue;
            };
            seen.insert(cidr);
            let held = actual.get(&(name.clone(), cidr)).copied().unwrap_or(0);
            if held != recorded {
                report.handle_problems.push(HandleProblem {
                    handle: name.clone(),
                    block: text.to_owned(),
                    recorded,
                    actual: held,
                });
            }
        }
        if handle.block.is_empty() {
            report.handle_problems.push(HandleProblem {
                handle: name.clone(),
                block: String::new(),
                recorded: 0,
                actual: 0,
            });
        }
        let lowest: IpNet = "0.0.0.0/0".parse().expect("valid");
        for ((h, cidr), held) in actual.range((name.clone(), lowest)..) {
            if h != name {
                break;
            }
            if !seen.contains(cidr) {
                report.handle_problems.push(HandleProblem {
                    handle: name.clone(),
                    block: cidr.to_string(),
                    recorded: 0,
                    actual: *held,
                });
            }
        }
    }

    for wep in &owners.endpoints {
        let meta = &wep.metadata;
        let endpoint = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name
        );
        for net in &wep.spec.ip_networks {
            let ip = net.0.addr();
            report.workload_addresses += 1;
            if !allocated.contains(&ip) {
                report.unallocated.push(UnallocatedAddress {
                    ip,
                    endpoint: endpoint.clone(),
                    in_pool: owners.pools.iter().any(|p| p.contains(&ip)),
                });
            }
        }
    }

    report.blocks = blocks.len();
    report.handles = handles.len();
    report.hosts = hosts.into_values().collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::model::Reuse;
    use crate::ipam::model::{AllocationAttribute, affinity_key, block_key, encode, handle_key};

    fn kv(key: String, value: Vec<u8>) -> KeyValue {
        KeyValue {
            key,
            value,
            create_revision: 2,
            mod_revision: 2,
            version: 1,
        }
    }

    fn attr(handle: Option<&str>, node: &str) -> AllocationAttribute {
        AllocationAttribute {
            handle_id: handle.map(Into::into),
            secondary: BTreeMap::from([(ATTR_NODE.into(), node.into())]),
        }
    }

    /// Owners with these Nodes and nothing else.
    fn nodes(names: &[&str]) -> Owners {
        Owners {
            nodes: names.iter().map(|n| n.to_string()).collect(),
            ..Owners::default()
        }
    }

    fn none(_: IpAddr) -> bool {
        false
    }

    /// A block affine to n1 with two addresses for handle h (recorded), one
    /// without handle and one for a handle that does not exist.
    fn store() -> Vec<KeyValue> {
        let cidr: IpNet = "10.0.0.0/26".parse().unwrap();
        let mut b = AllocationBlock::new(cidr, Some("n1"));
        b.assign(2, &attr(Some("h"), "n1"), &none, Reuse::ANY);
        b.assign(1, &attr(None, "n1"), &none, Reuse::ANY);
        b.assign(1, &attr(Some("gone"), "n2"), &none, Reuse::ANY);
        let mut h = IpamHandle::default();
        h.add(cidr, 2);
        vec![
            kv(block_key(cidr), encode(&b)),
            kv(
                affinity_key("n1", cidr),
                encode(&crate::ipam::model::BlockAffinity::confirmed()),
            ),
            kv(handle_key("h"), encode(&h)),
        ]
    }

    #[test]
    fn a_consistent_store_is_clean_and_counted_per_host() {
        let mut kvs = store();
        let cidr: IpNet = "10.0.0.0/26".parse().unwrap();
        let mut b = AllocationBlock::new(cidr, Some("n1"));
        b.assign(2, &attr(Some("h"), "n1"), &none, Reuse::ANY);
        kvs[0].value = encode(&b);
        let report = check(&kvs, 7, &nodes(&["n1"]));
        assert!(report.is_clean(), "{report:#?}");
        assert_eq!(report.allocated, 2);
        assert_eq!(report.revision, 7);
        assert_eq!(
            report.hosts,
            vec![HostSummary {
                host: "n1".into(),
                blocks: 1,
                addresses: 2,
                node_exists: true
            }]
        );
    }

    #[test]
    fn leaks_are_reported_with_their_reason() {
        let report = check(&store(), 3, &nodes(&["n1", "n2"]));
        let reasons: Vec<(String, LeakReason)> = report
            .leaked
            .iter()
            .map(|l| (l.ip.to_string(), l.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("10.0.0.2".into(), LeakReason::NoHandle),
                ("10.0.0.3".into(), LeakReason::HandleMissing)
            ]
        );
        assert!(report.handle_problems.is_empty());
        assert!(report.affinity_problems.is_empty());
    }

    #[test]
    fn a_missing_node_shows_in_leaks_and_affinities() {
        let mut kvs = store();
        kvs.truncate(1);
        let report = check(&kvs, 3, &nodes(&[]));
        assert_eq!(
            report
                .affinity_problems
                .iter()
                .map(|p| &p.issue)
                .collect::<Vec<_>>(),
            vec![
                &AffinityIssue::NodeMissing,
                &AffinityIssue::AffinityKeyMissing
            ]
        );
        // Handle h is gone too: its two addresses leak.
        assert_eq!(report.leaked.len(), 4);
    }

    #[test]
    fn handle_counts_that_disagree_with_the_blocks_are_reported() {
        let mut kvs = store();
        let mut h = IpamHandle::default();
        h.add("10.0.0.0/26".parse().unwrap(), 5);
        h.add("10.9.0.0/26".parse().unwrap(), 1);
        kvs[2].value = encode(&h);
        kvs.push(kv(handle_key("empty"), encode(&IpamHandle::default())));
        let report = check(&kvs, 3, &nodes(&["n1", "n2"]));
        let got: Vec<(&str, &str, usize, usize)> = report
            .handle_problems
            .iter()
            .map(|p| (p.handle.as_str(), p.block.as_str(), p.recorded, p.actual))
            .collect();
        assert_eq!(
            got,
            vec![
                ("empty", "", 0, 0),
                ("h", "10.0.0.0/26", 5, 2),
                ("h", "10.9.0.0/26", 1, 0)
            ]
        );
    }

    #[test]
    fn undecodable_values_and_stray_affinities_are_reported() {
        let mut kvs = store();
        kvs.push(kv(
            affinity_key("n1", "10.0.1.0/26".parse().unwrap()),
            encode(&crate::ipam::model::BlockAffinity::confirmed()),
        ));
        kvs.push(kv(handle_key("x"), b"{not json".to_vec()));
        let report = check(&kvs, 3, &nodes(&["n1", "n2"]));
        assert_eq!(report.bad_values.len(), 1);
        assert_eq!(report.bad_values[0].key, "/calico/ipam/v2/handle/x");
        assert!(
            report
                .affinity_problems
                .iter()
                .any(|p| p.issue == AffinityIssue::BlockMissing)
        );
        assert!(!report.is_clean());
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }

    /// A workload endpoint of pod `shop/<pod>` listing `ips`.
    fn wep(pod: &str, ips: &[&str]) -> WorkloadEndpoint {
        let mut meta = api::ObjectMeta::named(format!("n1-k8s-{pod}-eth0"));
        meta.namespace = Some("shop".into());
        WorkloadEndpoint::new(
            meta,
            api::WorkloadEndpointSpec {
                pod: pod.into(),
                node: "n1".into(),
                interface_name: "cali0".into(),
                ip_networks: ips
                    .iter()
                    .map(|ip| format!("{ip}/32").parse().unwrap())
                    .collect(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn allocations_for_a_pod_are_held_against_its_workload_endpoints() {
        let cidr: IpNet = "10.0.0.0/26".parse().unwrap();
        let mut b = AllocationBlock::new(cidr, Some("n1"));
        let mut handles = Vec::new();
        for (pod, n) in [("web", 2), ("gone", 1)] {
            let mut a = attr(Some(pod), "n1");
            a.secondary.insert(ATTR_NAMESPACE.into(), "shop".into());
            a.secondary.insert(ATTR_POD.into(), pod.into());
            b.assign(n, &a, &none, Reuse::ANY);
            let mut h = IpamHandle::default();
            h.add(cidr, n);
            handles.push(kv(handle_key(pod), encode(&h)));
        }
        // An allocation naming no pod is not held against endpoints.
        b.assign(1, &attr(Some("tunnel"), "n1"), &none, Reuse::ANY);
        let mut h = IpamHandle::default();
        h.add(cidr, 1);
        handles.push(kv(handle_key("tunnel"), encode(&h)));
        let mut kvs = vec![
            kv(block_key(cidr), encode(&b)),
            kv(
                affinity_key("n1", cidr),
                encode(&crate::ipam::model::BlockAffinity::confirmed()),
            ),
        ];
        kvs.extend(handles);
        let owners = |endpoints: Vec<WorkloadEndpoint>| Owners {
            endpoints,
            pools: vec!["10.0.0.0/24".parse().unwrap()],
            ..nodes(&["n1"])
        };
        let leaks = |report: &Report| -> Vec<(String, LeakReason)> {
            report
                .leaked
                .iter()
                .map(|l| (l.ip.to_string(), l.reason))
                .collect()
        };

        let report = check(
            &kvs,
            3,
            &owners(vec![wep("web", &["10.0.0.0", "10.0.0.1"])]),
        );
        assert_eq!(
            leaks(&report),
            [("10.0.0.2".into(), LeakReason::WorkloadEndpointMissing)]
        );
        assert!(report.unallocated.is_empty(), "{report:#?}");
        assert_eq!(report.workload_addresses, 2);

        // web's endpoint lists one of its two addresses, one IPAM never
        // allocated and one outside every pool.
        let report = check(
            &kvs,
            3,
            &owners(vec![
                wep("web", &["10.0.0.1", "10.0.0.9", "192.168.0.1"]),
                wep("gone", &["10.0.0.2"]),
            ]),
        );
        assert_eq!(
            leaks(&report),
            [("10.0.0.0".into(), LeakReason::NotOnWorkloadEndpoint)]
        );
        let unallocated: Vec<(String, &str, bool)> = report
            .unallocated
            .iter()
            .map(|u| (u.ip.to_string(), u.endpoint.as_str(), u.in_pool))
            .collect();
        assert_eq!(
            unallocated,
            [
                ("10.0.0.9".into(), "shop/n1-k8s-web-eth0", true),
                ("192.168.0.1".into(), "shop/n1-k8s-web-eth0", false)
            ]
        );
        assert_eq!(report.problems(), 3);
    }
}
