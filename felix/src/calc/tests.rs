//! `calculate` end to end on small datastores, and a property test that it
//! never panics and is deterministic on arbitrary mixes of resources.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::calculate;
use super::fixtures::{block, host, node, pool, snapshot_with, workload};
use crate::state::{
    Calculated, HostSettings, NatOutgoing, Route, RouteTarget, Snapshot, VXLAN_DEVICE,
};
use datastore::ipam::model::{AllocationAttribute, AllocationBlock, block_key};
use datastore::resources::ResourceStore;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn route(dst: &str, target: RouteTarget) -> Route {
    Route {
        dst: net(dst),
        target,
    }
}

/// Two BGP hosts sharing one `natOutgoing` pool; host-a runs workloads
/// `w1` (in its own block) and `w2` (borrowed from host-b's block).
fn two_hosts() -> Snapshot {
    let yaml = [
        node("host-a", "192.168.0.1/24", ""),
        node("host-b", "192.168.0.2/24", ""),
        pool("main", "10.0.0.0/16", "  natOutgoing: true\n"),
        workload("w1", "host-a", "cali1", &["10.0.0.1"]),
        workload("w2", "host-a", "cali2", &["10.0.0.70"]),
        workload("w3", "host-b", "cali3", &["10.0.0.65"]),
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-all}\n\
         spec: {selector: all(), types: [Ingress]}\n---\n"
            .into(),
    ]
    .concat();
    snapshot_with(
        &yaml,
        vec![
            block("10.0.0.0/26", Some("host-a"), &[("10.0.0.1", "host-a")]),
            block(
                "10.0.0.64/26",
                Some("host-b"),
                &[("10.0.0.65", "host-b"), ("10.0.0.70", "host-a")],
            ),
        ],
    )
}

#[test]
fn a_bgp_host_gets_its_workloads_blackholes_announcements_policy_and_nat() {
    let Calculated { desired, problems } = calculate(&two_hosts(), &host("host-a"));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        desired.workloads.keys().collect::<Vec<_>>(),
        ["cali1", "cali2"]
    );
    assert_eq!(
        desired.routes,
        BTreeSet::from([
            route("10.0.0.1/32", RouteTarget::Interface("cali1".into())),
            route("10.0.0.70/32", RouteTarget::Interface("cali2".into())),
            route("10.0.0.0/26", RouteTarget::Blackhole),
        ])
    );
    let bgp = desired.bgp.expect("BGP");
    assert_eq!(
        bgp.announce,
        BTreeSet::from([net("10.0.0.0/26"), net("10.0.0.70/32")])
    );
    assert_eq!(
        bgp.peers.keys().copied().collect::<Vec<_>>(),
        ["192.168.0.2".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        desired.policy.config.nat_outgoing,
        NatOutgoing {
            masquerade: vec![net("10.0.0.0/16")],
            pools: vec![net("10.0.0.0/16")],
            hosts: vec![],
        }
    );
    assert_eq!(desired.policy.config.node.as_deref(), Some("host-a"));
    assert_eq!(
        desired.policy.endpoints.len(),
        3,
        "remote endpoints fill selector sets"
    );
    assert!(desired.vxlan.is_none());
}

#[test]
fn a_host_without_bgp_gets_no_speaker_but_everything_else() {
    let settings = HostSettings {
        bgp_enabled: false,
        ..host("host-a")
    };
    let with = calculate(&two_hosts(), &host("host-a")).desired;
    let without = calculate(&two_hosts(), &settings).desired;
    assert!(without.bgp.is_none());
    assert_eq!(
        (without.routes, without.workloads),
        (with.routes, with.workloads)
    );
}

#[test]
fn a_workloads_qos_controls_become_its_shaping_defaults_applied() {
    let yaml = node("host-a", "192.168.0.1/24", "")
        + &workload("w", "host-a", "cali00000000001", &["10.65.0.5/32"]).replace(
            "  ipNetworks:",
            "  qosControls: {ingressBandwidth: 100000000, egressBandwidth: 5000000, egressBurst: 80000}\n  ipNetworks:",
        );
    let desired = calculate(&super::fixtures::snapshot(&yaml), &host("host-a")).desired;
    let shaping = desired.workloads["cali00000000001"].shaping;
    let ingress = shaping.ingress.unwrap();
    assert_eq!(
        (ingress.rate, ingress.burst),
        (100_000_000, 4 << 30),
        "Calico's default burst"
    );
    assert_eq!(shaping.egress.unwrap().burst, 80_000);
}

#[test]
fn felix_configuration_reaches_the_policy_config() {
    let yaml = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.host-a}\n\
                spec: {interfacePrefix: tap, defaultEndpointToHostAction: Accept, failsafeInboundHostPorts: []}\n";
    let d = calculate(&snapshot_with(yaml, vec![]), &host("host-a")).desired;
    assert_eq!(d.policy.config.workload_prefix, "tap");
    assert_eq!(
        d.policy.config.endpoint_to_host,
        policy::model::EndpointToHost::Accept
    );
    assert!(d.policy.config.failsafe_inbound.is_empty());
    assert!(
        !d.policy.config.failsafe_outbound.is_empty(),
        "Calico's defaults"
    );
}

#[test]
fn vxlan_pools_are_routed_via_vteps_and_not_announced() {
    let vtep = |addr: &str, mac: &str| {
        format!("  ipv4VXLANTunnelAddr: {addr}\n  vxlanTunnelMACAddr: \"{mac}\"\n")
    };
    let yaml = [
        node(
            "host-a",
            "192.168.0.1/24",
            &vtep("10.5.0.1", "66:00:00:00:00:01"),
        ),
        node(
            "host-b",
            "192.168.0.2/24",
            &vtep("10.5.0.2", "66:00:00:00:00:02"),
        ),
        pool("vx", "10.0.0.0/16", "  vxlanMode: Always\n"),
    ]
    .concat();
    let snap = snapshot_with(
        &yaml,
        vec![
            block("10.0.0.0/26", Some("host-a"), &[]),
            block("10.0.0.64/26", Some("host-b"), &[]),
        ],
    );
    let Calculated { desired, problems } = calculate(&snap, &host("host-a"));
    assert!(problems.is_empty(), "{problems:?}");
    assert!(desired.bgp.expect("BGP still runs").announce.is_empty());
    assert_eq!(desired.vxlan.expect("VXLAN").remotes.len(), 1);
    assert_eq!(
        desired.routes,
        BTreeSet::from([
            route("10.0.0.0/26", RouteTarget::Blackhole),
            route(
                "10.0.0.64/26",
                RouteTarget::Via {
                    gateway: "10.5.0.2".parse().unwrap(),
                    dev: VXLAN_DEVICE.into(),
                }
            ),
        ])
    );
}

#[test]
fn a_host_endpoint_claiming_a_workloads_interface_is_skipped_and_the_workload_kept() {
    let mut yaml = workload("w1", "host-a", "cali1", &["10.0.0.1"]);
    yaml += "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: thief}\n\
             spec: {node: host-a, interfaceName: cali1}\n";
    let Calculated { desired, problems } =
        calculate(&snapshot_with(&yaml, vec![]), &host("host-a"));
    assert_eq!(desired.workloads.keys().collect::<Vec<_>>(), ["cali1"]);
    assert_eq!(problems.len(), 2, "{problems:?}"); // the skip, and no Node for BGP
    assert!(
        problems[0]
            .to_string()
            .starts_with("HostEndpoint thief: endpoints default/w1 and thief both claim")
    );
}

#[test]
fn a_staged_deny_all_is_in_the_policy_model_but_not_in_the_ruleset() {
    let without = calculate(&two_hosts(), &host("host-a"));
    let mut staged = two_hosts();
    let deny_all = "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\n\
                    metadata: {name: deny-everything}\n\
                    spec: {order: 1, selector: all(), ingress: [{action: Deny}], egress: [{action: Deny}]}\n";
    staged
        .resources
        .extend(snapshot_with(deny_all, vec![]).resources);
    let with = calculate(&staged, &host("host-a"));
    assert!(with.problems.is_empty(), "{:?}", with.problems);
    let (with, without) = (with.desired.policy, without.desired.policy);
    assert_eq!(with.staged.len(), 1);
    assert_eq!(with.staged[0].name, "deny-everything");
    assert_eq!(with.tiers, without.tiers);
    assert_eq!(
        policy::render(&policy::compile(&with)),
        policy::render(&policy::compile(&without)),
        "byte for byte"
    );
    assert_ne!(
        policy::compile(&with.with_staged_enforced()),
        policy::compile(&without),
        "enforced, it would change the ruleset"
    );
}

// ---- property: never panics, deterministic ----

fn pick<T: Clone + std::fmt::Debug + 'static>(
    options: &[T],
) -> impl Strategy<Value = T> + Clone + use<T> {
    prop::sample::select(options.to_vec())
}

const NODES: &[&str] = &["host-a", "host-b", "host-c"];

/// Values of every kind, good and bad, as a datastore might hold them.
fn resource() -> impl Strategy<Value = Value> {
    let addr = pick(&[
        Value::Null,
        json!("192.168.0.1/24"),
        json!("192.168.0.2"),
        json!("192.168.0.1"),
        json!("fd00::1/64"),
        json!("10.0.0.1/32"),
    ]);
    let node = (
        pick(NODES),
        addr.clone(),
        addr.clone(),
        pick(&[Value::Null, json!(65001)]),
        pick(&[Value::Null, json!("1.0.0.1"), json!("bad")]),
        pick(&[Value::Null, json!("10.5.0.1"), json!("10.5.0.2")]),
        pick(&[Value::Null, json!("66:00:00:00:00:01"), json!("zz")]),
    )
        .prop_map(|(name, v4, v6, asn, rr, vtep, mac)| {
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                "metadata": {"name": name, "labels": {"name": name}},
                "spec": {"bgp": {"ipv4Address": v4, "ipv6Address": v6, "asNumber": asn,
                    "routeReflectorClusterID": rr},
                    "ipv4VXLANTunnelAddr": vtep, "vxlanTunnelMACAddr": mac,
                    "addresses": [{"address": "192.168.1.9", "type": "InternalIP"}]}})
        });
    let cidr = pick(&[
        "10.0.0.0/16",
        "10.0.0.1/16",
        "10.0.0.0/26",
        "0.0.0.0/0",
        "fd00::/48",
        "::/0",
    ]);
    let pool = (pick(&["p1", "p2"]), cidr, pick(&["Never", "Always", "CrossSubnet"]), any::<bool>(), any::<bool>(), any::<bool>())
        .prop_map(|(name, cidr, vxlan, nat, disabled, no_export)| {
            json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
                "spec": {"cidr": cidr, "vxlanMode": vxlan, "natOutgoing": nat, "disabled": disabled,
                    "disableBGPExport": no_export}})
        });
    let iface = pick(&["cali1", "cali2", "eth0", "", "cali0123456789abcdef", "*"]);
    let ip = pick(&["10.0.0.1", "10.0.0.70/32", "10.0.0.0/24", "fd00::5", "::/0"]);
    let wep = (
        pick(&["w1", "w2", "w3"]),
        pick(NODES),
        iface.clone(),
        prop::collection::vec(ip, 0..3),
    )
        .prop_map(|(name, node, iface, ips)| {
            json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"node": node, "interfaceName": iface, "ipNetworks": ips}})
        });
    let hep = (pick(&["h1", "h2"]), pick(NODES), iface).prop_map(|(name, node, iface)| {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "HostEndpoint", "metadata": {"name": name},
            "spec": {"node": node, "interfaceName": iface}})
    });
    let selector = pick(&["all()", "a ==", "name == 'host-a'", "has(x)", ""]);
    let rule = pick(&[
        json!({"action": "Deny"}),
        json!({"action": "Pass"}),
        json!({"action": "Log"}),
        json!({"action": "Allow", "protocol": "TCP", "destination": {"ports": ["90:80", 80, "http"]}}),
        json!({"action": "Allow", "destination": {"ports": [22]}}),
        json!({"action": "Allow", "source": {"nets": ["10.0.0.1/8"], "selector": "a =="}}),
        json!({"action": "Allow", "ipVersion": 7}),
        json!({"action": "Allow", "protocol": "UDP", "ipVersion": 6, "source": {"nets": ["10.0.0.0/8"]}}),
        json!({"action": "Allow", "source": {"namespaceSelector": "global()", "notSelector": "has(x)"}}),
        json!({"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}}),
    ]);
    let rules = prop::collection::vec(rule, 0..3);
    let gnp = (pick(&["g1", "missing.g2"]), selector.clone(), pick(&["default", "missing"]), rules.clone(), rules.clone())
        .prop_map(|(name, sel, tier, ingress, egress)| {
            json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": {"name": name},
                "spec": {"selector": sel, "tier": tier, "ingress": ingress, "egress": egress}})
        });
    let np =
        (pick(&["n1", "n2"]), selector.clone(), rules.clone()).prop_map(|(name, sel, ingress)| {
            json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": sel, "ingress": ingress}})
        });
    let profile = (pick(&["kns.default", "p1"]), rules).prop_map(|(name, egress)| {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": name},
            "spec": {"egress": egress, "labelsToApply": {"team": "a"}}})
    });
    let felix = (pick(&["default", "node.host-a"]), pick(&[Value::Null, json!(0), json!(4096), json!(1 << 25)]),
        pick(&[Value::Null, json!(0), json!(8472)]), pick(&[Value::Null, json!("tap,cali"), json!(","), json!("")]),
        pick(&[Value::Null, json!(false), json!(true)]))
        .prop_map(|(name, vni, port, prefix, vxlan)| {
            json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration", "metadata": {"name": name},
                "spec": {"vxlanVNI": vni, "vxlanPort": port, "interfacePrefix": prefix, "vxlanEnabled": vxlan}})
        });
    let bgp_config = (any::<bool>(), pick(&[Value::Null, json!(65000)]), pick(&[Value::Null, json!("30s")]))
        .prop_map(|(mesh, asn, restart)| {
            json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"},
                "spec": {"nodeToNodeMeshEnabled": mesh, "asNumber": asn, "nodeMeshMaxRestartTime": restart}})
        });
    let peer = (pick(&["b1", "b2"]), pick(&["", "host-a", "host-b"]), selector.clone(),
        pick(&["", "10.9.0.1", "10.9.0.1:1790", "[fd00::9]:179", "192.168.0.1", "nonsense"]), selector,
        pick(&[Value::Null, json!(65100)]), any::<bool>())
        .prop_map(|(name, node, node_sel, peer_ip, peer_sel, asn, password)| {
            let password = if password { json!({"secretKeyRef": {"name": "s", "key": "k"}}) } else { Value::Null };
            json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": name},
                "spec": {"node": node, "nodeSelector": node_sel, "peerIP": peer_ip, "peerSelector": peer_sel,
                    "asNumber": asn, "password": password}})
        });
    prop_oneof![
        node, pool, wep, hep, gnp, np, profile, felix, bgp_config, peer
    ]
}

/// Blocks with small, possibly inconsistent allocation tables.
fn raw_block() -> impl Strategy<Value = AllocationBlock> {
    (
        pick(&[
            "10.0.0.0/26",
            "10.0.0.64/26",
            "10.0.0.0/16",
            "fd00::/122",
            "::/0",
            "0.0.0.0/0",
        ]),
        pick(&[
            None,
            Some("host:host-a"),
            Some("host:host-b"),
            Some("virtual:x"),
        ]),
        prop::collection::vec(prop::option::of(0usize..3), 0..8),
        prop::collection::vec(pick(NODES), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(cidr, affinity, allocations, nodes, deleted)| AllocationBlock {
                cidr: cidr.parse().unwrap(),
                affinity: affinity.map(str::to_string),
                allocations,
                unallocated: vec![],
                attributes: nodes
                    .into_iter()
                    .map(|n| AllocationAttribute {
                        handle_id: None,
                        secondary: [("node".to_string(), n.to_string())].into(),
                    })
                    .collect(),
                sequence_number: 0,
                sequence_number_for_allocation: Default::default(),
                deleted,
                released_at: Default::default(),
            },
        )
}

fn snapshot_of(values: Vec<Value>, blocks: Vec<AllocationBlock>) -> Snapshot {
    let mut snap = Snapshot::default();
    for v in values {
        // Every value generated reads as its kind (checked by
        // `every_generated_resource_reads`); the later of two with one key wins.
        if let Ok(r) = api::Resource::from_value(v) {
            let meta = r.metadata();
            let key = ResourceStore::key(r.kind(), meta.namespace.as_deref(), &meta.name);
            snap.resources.insert(key, r);
        }
    }
    for b in blocks {
        snap.blocks.insert(block_key(b.cidr), b);
    }
    snap
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_generated_resource_reads(value in resource()) {
        prop_assert!(api::Resource::from_value(value.clone()).is_ok(), "{}", value);
    }

    #[test]
    fn calculate_never_panics_and_is_deterministic(
        values in prop::collection::vec(resource(), 0..14),
        blocks in prop::collection::vec(raw_block(), 0..4),
        bgp_enabled in any::<bool>(),
    ) {
        let snap = snapshot_of(values, blocks);
        let host = HostSettings { node: "host-a".into(), bgp_enabled, flow_logs: None };
        let first = calculate(&snap, &host);
        prop_assert_eq!(&first, &calculate(&snap, &host));
        let d = &first.desired;
        for r in &d.routes {
            if let RouteTarget::Interface(iface) = &r.target {
                prop_assert!(d.workloads.contains_key(iface), "route to unknown {}", iface);
            }
        }
        for w in d.workloads.values() {
            prop_assert!(d.policy.endpoints.iter().any(|e| e.name == w.endpoint));
        }
        if let Some(bgp) = &d.bgp {
            prop_assert!(!bgp.peers.contains_key(&IpAddr::V4(bgp.router_id)));
        }
        // The model compiles (whatever was skipped to build it).
        policy::compile(&d.policy);
    }
}
