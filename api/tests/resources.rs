//! Every resource kind: a valid example, invalid ones with their exact errors, and
//! the defaults and serialised form.

use api::{AsNumber, FieldError, Kind, Port, Protocol, Resource};
use serde_json::{Value, json};

fn value(yaml: &str) -> Value {
    serde_yaml::from_str(yaml).expect("test YAML is well-formed")
}

/// Reads a document that must read cleanly (it may still be invalid).
fn read(yaml: &str) -> Resource {
    Resource::from_value(value(yaml)).unwrap_or_else(|e| panic!("read failed: {e}"))
}

/// The error reading a document.
fn read_error(yaml: &str) -> String {
    Resource::from_value(value(yaml))
        .expect_err("document should not read")
        .to_string()
}

/// Validation problems, as `path: message`.
fn problems(yaml: &str) -> Vec<String> {
    match read(yaml).validate() {
        Ok(()) => Vec::new(),
        Err(errs) => errs.iter().map(FieldError::to_string).collect(),
    }
}

fn assert_valid(yaml: &str) -> Resource {
    assert_eq!(problems(yaml), Vec::<String>::new());
    read(yaml)
}

const V3: &str = "apiVersion: projectcalico.org/v3\n";

fn doc(kind: &str, meta: &str, spec: &str) -> String {
    format!("{V3}kind: {kind}\nmetadata: {meta}\nspec: {spec}\n")
}

// ---- IPPool, IPReservation, IPAMConfiguration ----

#[test]
fn ippool_defaults_block_size_by_family_and_encapsulation_to_never() {
    let v4 = assert_valid(&doc("IPPool", "{name: p4}", "{cidr: 10.0.0.0/16}"));
    assert_eq!(
        v4.to_value()["spec"],
        json!({"cidr": "10.0.0.0/16", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never",
               "natOutgoing": false, "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"]})
    );
    let v6 = assert_valid(&doc("IPPool", "{name: p6}", "{cidr: 'fd00::/48'}"));
    assert_eq!(v6.to_value()["spec"]["blockSize"], 122);
}

#[test]
fn ippool_rejects_host_bits_bad_block_sizes_and_ipip_on_ipv6() {
    assert_eq!(
        problems(&doc(
            "IPPool",
            "{name: p}",
            "{cidr: 'fd00::1/64', blockSize: 112, ipipMode: Always, vxlanMode: Always}"
        )),
        [
            "spec.cidr: fd00::1/64 has host bits set (the network is fd00::/64)",
            "spec.blockSize: block size 112 is out of range 116-128 for an IPv6 pool",
            "spec.ipipMode: IPIP is not supported for IPv6 pools",
            "spec.vxlanMode: ipipMode and vxlanMode cannot both be enabled",
        ]
    );
    assert_eq!(
        problems(&doc(
            "IPPool",
            "{name: p}",
            "{cidr: 10.0.0.0/28, nodeSelector: rack == \"1\"}"
        )),
        ["spec.blockSize: block size /26 is larger than the pool 10.0.0.0/28"]
    );
    assert_eq!(
        problems(&doc("IPPool", "{name: p}", "{cidr: 169.254.0.0/20}")),
        ["spec.cidr: 169.254.0.0/20 overlaps the link-local range 169.254.0.0/16"]
    );
}

#[test]
fn ippool_needs_a_spec_and_a_known_mode() {
    assert_eq!(
        read_error(&format!("{V3}kind: IPPool\nmetadata: {{name: p}}\n")),
        "missing field `spec`"
    );
    let err = read_error(&doc(
        "IPPool",
        "{name: p}",
        "{cidr: 10.0.0.0/16, vxlanMode: Sometimes}",
    ));
    assert!(err.starts_with("spec.vxlanMode: unknown variant `Sometimes`, expected one of `Never`, `Always`, `CrossSubnet`"), "{err}");
    assert_eq!(
        read_error(&doc("IPPool", "{name: p}", "{cidr: 10.0.0/8}")),
        "spec.cidr: invalid CIDR \"10.0.0/8\""
    );
}

#[test]
fn ipreservation_needs_networks() {
    assert_valid(&doc(
        "IPReservation",
        "{name: r}",
        "{reservedCIDRs: [10.0.0.0/29, 10.0.1.1]}",
    ));
    assert_eq!(
        problems(&doc(
            "IPReservation",
            "{name: r}",
            "{reservedCIDRs: [10.0.0.1/29]}"
        )),
        ["spec.reservedCIDRs[0]: 10.0.0.1/29 has host bits set (the network is 10.0.0.0/29)"]
    );
    assert_eq!(
        problems(&doc("IPReservation", "{name: r}", "{}")),
        ["spec.reservedCIDRs: at least one CIDR is required"]
    );
}

#[test]
fn ipam_configuration_defaults_and_must_be_named_default() {
    let r = assert_valid(&format!(
        "{V3}kind: IPAMConfiguration\nmetadata: {{name: default}}\n"
    ));
    assert_eq!(
        r.to_value()["spec"],
        json!({"strictAffinity": false, "maxBlocksPerHost": 20, "autoAllocateBlocks": true})
    );
    assert_eq!(
        problems(&doc(
            "IPAMConfiguration",
            "{name: other}",
            "{maxBlocksPerHost: 0}"
        )),
        [
            "metadata.name: the IPAMConfiguration must be named \"default\", not \"other\"",
            "spec.maxBlocksPerHost: must be at least 1",
        ]
    );
}

// ---- Node, BGP ----

#[test]
fn node_accepts_interface_addresses_and_dotted_as_numbers() {
    let r = assert_valid(&doc(
        "Node",
        "{name: node-1}",
        "{bgp: {ipv4Address: 10.0.0.5/24, asNumber: '1.10', routeReflectorClusterID: 224.0.0.1}}",
    ));
    assert_eq!(r.to_value()["spec"]["bgp"]["asNumber"], 65546);
}

#[test]
fn node_rejects_wrong_families_cluster_ids_and_macs() {
    assert_eq!(
        problems(&doc(
            "Node",
            "{name: node-1}",
            "{bgp: {ipv4Address: 'fd00::5/64', ipv6Address: 10.0.0.5/24, routeReflectorClusterID: rr1}, vxlanTunnelMACAddr: 'zz:00'}"
        )),
        [
            "spec.bgp.ipv4Address: fd00::5/64 is not an IPv4 address",
            "spec.bgp.ipv6Address: 10.0.0.5/24 is not an IPv6 address",
            "spec.bgp.routeReflectorClusterID: \"rr1\" is not a cluster ID in IPv4 address form, e.g. \"224.0.0.1\"",
            "spec.vxlanTunnelMACAddr: \"zz:00\" is not a MAC address like \"ee:ee:ee:ee:ee:ee\"",
        ]
    );
    assert_eq!(
        read_error(&doc("Node", "{name: n}", "{bgp: {asNumber: 0}}")),
        "spec.bgp.asNumber: AS number 0 is reserved"
    );
}

#[test]
fn bgp_configuration_default_fills_cluster_defaults() {
    let r = assert_valid(&format!(
        "{V3}kind: BGPConfiguration\nmetadata: {{name: default}}\n"
    ));
    assert_eq!(
        r.to_value()["spec"],
        json!({"nodeToNodeMeshEnabled": true, "asNumber": 64512, "listenPort": 179})
    );
    let node = assert_valid(&doc("BGPConfiguration", "{name: node.rr-1}", "{}"));
    assert_eq!(node.to_value()["spec"], json!({"listenPort": 179}));
}

#[test]
fn bgp_configuration_checks_scope_communities_and_service_cidrs() {
    assert_eq!(
        problems(&doc(
            "BGPConfiguration",
            "{name: node.rr-1}",
            "{asNumber: 65000, nodeToNodeMeshEnabled: false, listenPort: 0, serviceClusterIPs: [{cidr: 10.96.0.1/12}],
              communities: [{name: c1, value: '65536:1'}],
              prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [c1, nope, '1:2']}]}"
        )),
        [
            "spec.asNumber: is only valid on the BGPConfiguration named \"default\"",
            "spec.nodeToNodeMeshEnabled: is only valid on the BGPConfiguration named \"default\"",
            "spec.listenPort: port 0 is not valid (1-65535)",
            "spec.serviceClusterIPs[0].cidr: 10.96.0.1/12 has host bits set (the network is 10.96.0.0/12)",
            "spec.communities[0].value: \"65536:1\": \"65536\" is not a number 0-65535",
            "spec.prefixAdvertisements[0].communities[1]: \"nope\" is neither a community defined in spec.communities nor a community value",
        ]
    );
}

#[test]
fn bgp_peer_reads_ports_durations_and_dotted_as_numbers() {
    let r = assert_valid(&doc(
        "BGPPeer",
        "{name: tor}",
        "{peerIP: '[fd00::1]:1179', asNumber: '1.10', maxRestartTime: 120s, filters: [f1], password: {secretKeyRef: {name: s, key: k}}}",
    ));
    let Resource::BGPPeer(peer) = &r else {
        panic!("not a peer")
    };
    assert_eq!(
        peer.spec.peer_address(),
        Some("[fd00::1]:1179".parse().unwrap())
    );
    assert_eq!(peer.spec.as_number, Some(AsNumber(65546)));
    assert_eq!(r.to_value()["spec"]["maxRestartTime"], "2m0s");
}

#[test]
fn bgp_peer_rejects_conflicting_targets() {
    assert_eq!(
        problems(&doc(
            "BGPPeer",
            "{name: p}",
            "{node: n1, nodeSelector: all(), peerIP: 10.0.0.1, peerSelector: all()}"
        )),
        [
            "spec.nodeSelector: node and nodeSelector cannot both be set",
            "spec.peerSelector: peerIP and peerSelector cannot both be set"
        ]
    );
    assert_eq!(
        problems(&doc("BGPPeer", "{name: p}", "{}")),
        ["spec.peerIP: either peerIP or peerSelector is required"]
    );
    assert_eq!(
        read_error(&doc(
            "BGPPeer",
            "{name: p}",
            "{peerIP: 10.0.0.1, asNumber: 1.1}"
        )),
        "spec.asNumber: AS number 1.1 is not a whole number (quote dotted AS numbers, e.g. \"1.10\")"
    );
    assert_eq!(
        read_error(&doc(
            "BGPPeer",
            "{name: p}",
            "{peerIP: 10.0.0.1, asNumber: '70000.1'}"
        )),
        "spec.asNumber: invalid AS number \"70000.1\": expected 1-4294967295 or dotted \"high.low\""
    );
    assert_eq!(
        read_error(&doc(
            "BGPPeer",
            "{name: p}",
            "{peerSelector: all(), maxRestartTime: 2 minutes}"
        )),
        "spec.maxRestartTime: invalid duration \"2 minutes\": expected e.g. \"90s\", \"1m30s\" or \"250ms\""
    );
}

#[test]
fn bgp_filter_checks_operators_families_and_prefix_lengths() {
    assert_valid(&doc(
        "BGPFilter",
        "{name: f}",
        "{exportV4: [{action: Accept, matchOperator: In, cidr: 10.0.0.0/8, prefixLength: {min: 16, max: 32}}]}",
    ));
    assert_eq!(
        problems(&doc(
            "BGPFilter",
            "{name: f}",
            "{importV4: [{action: Reject, cidr: 10.0.0.0/8}, {action: Accept, matchOperator: Equal, cidr: 'fd00::/8'}],
              exportV6: [{action: Accept, matchOperator: In, cidr: 'fd00::/16', prefixLength: {min: 8, max: 130}}]}"
        )),
        [
            "spec.importV4[0].matchOperator: is required with cidr",
            "spec.importV4[1].cidr: fd00::/8 is not an IPv4 network",
            "spec.exportV6[0].prefixLength.min: 8 is shorter than the cidr's /16",
            "spec.exportV6[0].prefixLength.max: 130 exceeds /128",
        ]
    );
}

// ---- Policy ----

#[test]
fn policy_types_are_inferred_as_calico_does() {
    let types = |spec: &str| {
        read(&doc("GlobalNetworkPolicy", "{name: p}", spec)).to_value()["spec"]["types"].clone()
    };
    assert_eq!(types("{}"), json!(["Ingress"]));
    assert_eq!(types("{ingress: [{action: Allow}]}"), json!(["Ingress"]));
    assert_eq!(types("{egress: [{action: Allow}]}"), json!(["Egress"]));
    assert_eq!(
        types("{ingress: [{action: Allow}], egress: [{action: Deny}]}"),
        json!(["Ingress", "Egress"])
    );
    assert_eq!(types("{types: [Egress]}"), json!(["Egress"]));
}

#[test]
fn network_policy_round_trips_in_calico_form_with_defaults() {
    let r = assert_valid(&format!(
        "{V3}kind: NetworkPolicy\nmetadata: {{name: allow-web, namespace: shop}}\nspec:\n  order: 10.5\n  selector: app == 'web'\n  ingress:\n  - action: Allow\n    protocol: tcp\n    notProtocol: 17\n    source: {{nets: [10.0.0.1], notPorts: []}}\n    destination: {{ports: [80, '8000:8080', http, '443']}}\n"
    ));
    assert_eq!(
        r.to_value(),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": "allow-web", "namespace": "shop"},
            "spec": {
                "tier": "default",
                "order": 10.5,
                "selector": "app == 'web'",
                "types": ["Ingress"],
                "ingress": [{
                    "action": "Allow",
                    "protocol": "TCP",
                    "notProtocol": 17,
                    "source": {"nets": ["10.0.0.1/32"]},
                    "destination": {"ports": [80, "8000:8080", "http", 443]}
                }]
            }
        })
    );
    let again = Resource::from_value(r.to_value()).unwrap();
    assert_eq!(again, r);
}

#[test]
fn rule_checks_ports_need_a_port_protocol_and_icmp_an_icmp_protocol() {
    assert_eq!(
        problems(&doc(
            "GlobalNetworkPolicy",
            "{name: p}",
            "{egress: [
                {action: Allow, destination: {ports: [80]}},
                {action: Allow, protocol: ICMP, icmp: {code: 1}, ipVersion: 6},
                {action: Deny, protocol: TCP, notICMP: {type: 8}},
                {action: Allow, protocol: ICMPv6, icmp: {type: 255}},
                {action: Allow, protocol: UDP, ipVersion: 4, source: {nets: ['fd00::/8'], notPorts: [bad--name]}}
              ]}"
        )),
        [
            "spec.egress[0].destination.ports: ports need protocol TCP, UDP, SCTP or UDPLite",
            "spec.egress[1].icmp: protocol ICMP does not match ipVersion 6",
            "spec.egress[1].icmp.code: an ICMP code needs an ICMP type",
            "spec.egress[2].notICMP: ICMP matches need protocol ICMP or ICMPv6",
            "spec.egress[3].icmp.type: ICMP type 255 is not valid (0-254)",
            "spec.egress[4].source.nets[0]: fd00::/8 is not an IPv4 network",
            "spec.egress[4].source.notPorts[0]: invalid named port \"bad--name\": a port name is 1-15 of lowercase letters, digits and '-', with at least one letter and no leading, trailing or double '-'",
        ]
    );
}

#[test]
fn rule_fields_that_cannot_be_read_are_named() {
    let rule = |r: &str| {
        read_error(&doc(
            "GlobalNetworkPolicy",
            "{name: p}",
            &format!("{{ingress: [{r}]}}"),
        ))
    };
    assert_eq!(
        rule("{action: Allow, protocol: TCP, destination: {ports: [70000]}}"),
        "spec.ingress[0].destination.ports[0]: port 70000 is out of range 0-65535"
    );
    assert_eq!(
        rule("{action: Allow, protocol: TCP, destination: {ports: ['1:x']}}"),
        "spec.ingress[0].destination.ports[0]: invalid port range \"1:x\": \"x\" is not a port number 0-65535"
    );
    assert_eq!(
        rule("{action: Allow, protocol: GRE}"),
        "spec.ingress[0].protocol: unknown protocol \"GRE\": expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255"
    );
    assert_eq!(
        rule("{action: Allow, protocol: 0}"),
        "spec.ingress[0].protocol: protocol 0 is out of range 1-255"
    );
    assert!(rule("{action: Accept}").starts_with("spec.ingress[0].action: unknown variant `Accept`, expected one of `Allow`, `Deny`, `Log`, `Pass`"));
    let bad_version = problems(&doc(
        "GlobalNetworkPolicy",
        "{name: p}",
        "{ingress: [{action: Allow, ipVersion: 5}]}",
    ));
    assert_eq!(
        bad_version,
        ["spec.ingress[0].ipVersion: ipVersion 5 is not 4 or 6"]
    );
}

#[test]
fn policy_checks_selectors_order_and_types() {
    let errs = problems(&doc(
        "GlobalNetworkPolicy",
        "{name: p}",
        "{selector: 'app ==', types: [Ingress, Ingress], egress: [{action: Allow}]}",
    ));
    assert!(
        errs[0].starts_with("spec.selector: invalid selector \"app ==\": column "),
        "{}",
        errs[0]
    );
    assert_eq!(
        errs[1..],
        [
            "spec.types[1]: Ingress is listed twice",
            "spec.egress: egress rules are given but types does not include Egress"
        ]
    );

    // JSON has no infinities, so only a policy built in code can carry one.
    let spec = api::GlobalNetworkPolicySpec {
        order: Some(f64::INFINITY),
        ..Default::default()
    };
    let policy = api::GlobalNetworkPolicy::new(api::ObjectMeta::named("p"), spec);
    assert_eq!(
        policy.validate().unwrap_err(),
        [FieldError::new(
            "spec.order",
            "order inf is not a finite number"
        )]
    );
}

#[test]
fn policies_outside_the_default_tier_must_carry_the_tier_prefix() {
    assert_valid(&doc(
        "GlobalNetworkPolicy",
        "{name: security.deny}",
        "{tier: security}",
    ));
    assert_valid(&doc("GlobalNetworkPolicy", "{name: default.allow}", "{}"));
    assert_eq!(
        problems(&doc(
            "GlobalNetworkPolicy",
            "{name: deny}",
            "{tier: security}"
        )),
        [
            "metadata.name: a policy in tier \"security\" must be named \"security.<name>\", not \"deny\""
        ]
    );
    assert_eq!(
        problems(&format!(
            "{V3}kind: NetworkPolicy\nmetadata: {{name: security.deny, namespace: ns}}\n"
        )),
        [
            "metadata.name: policy \"security.deny\" is named for tier \"security\" but is in tier \"default\""
        ]
    );
}

#[test]
fn global_policy_checks_host_policy_flags() {
    assert_valid(&doc(
        "GlobalNetworkPolicy",
        "{name: h}",
        "{doNotTrack: true, applyOnForward: true, namespaceSelector: has(team)}",
    ));
    assert_eq!(
        problems(&doc(
            "GlobalNetworkPolicy",
            "{name: h}",
            "{preDNAT: true, doNotTrack: true, egress: [{action: Deny}]}"
        )),
        [
            "spec.preDNAT: preDNAT and doNotTrack cannot both be true",
            "spec.applyOnForward: must be true when preDNAT is true",
            "spec.egress: a preDNAT policy cannot have egress rules or the Egress type",
        ]
    );
    let np = read_error(&format!(
        "{V3}kind: NetworkPolicy\nmetadata: {{name: p, namespace: n}}\nspec: {{doNotTrack: true}}\n"
    ));
    assert!(
        np.starts_with("spec.doNotTrack: unknown field `doNotTrack`"),
        "{np}"
    );
}

#[test]
fn both_policy_kinds_read_and_write_their_shared_fields_alike() {
    let shared = "{tier: security, order: 100, selector: has(app), types: [Egress], \
                  egress: [{action: Allow}], serviceAccountSelector: has(sa)}";
    let np = read(&doc(
        "NetworkPolicy",
        "{name: security.p, namespace: n}",
        shared,
    ));
    let gnp = read(&doc("GlobalNetworkPolicy", "{name: security.p}", shared));
    let expected = json!({
        "tier": "security",
        "order": 100,
        "selector": "has(app)",
        "types": ["Egress"],
        "egress": [{"action": "Allow"}],
        "serviceAccountSelector": "has(sa)",
    });
    assert_eq!(np.to_value()["spec"], expected);
    assert_eq!(gnp.to_value()["spec"], expected);
    // Defaults, the same for both: the default tier, types from the rules.
    for kind in ["NetworkPolicy", "GlobalNetworkPolicy"] {
        let r = read(&doc(kind, "{name: p}", "{ingress: [{action: Deny}]}"));
        assert_eq!(r.to_value()["spec"]["tier"], "default", "{kind}");
        assert_eq!(r.to_value()["spec"]["types"], json!(["Ingress"]), "{kind}");
        let err = read_error(&doc(kind, "{name: p}", "{selectr: all()}"));
        assert!(
            err.starts_with("spec.selectr: unknown field `selectr`"),
            "{kind}: {err}"
        );
    }
}

#[test]
fn network_policy_is_namespaced_and_defaults_to_the_default_namespace() {
    let r = assert_valid(&format!("{V3}kind: NetworkPolicy\nmetadata: {{name: p}}\n"));
    assert_eq!(r.metadata().namespace.as_deref(), Some("default"));
    assert_eq!(
        problems(&format!(
            "{V3}kind: NetworkPolicy\nmetadata: {{name: p, namespace: Bad_NS}}\n"
        ))
        .len(),
        1
    );
    assert_eq!(
        problems(&format!(
            "{V3}kind: GlobalNetworkPolicy\nmetadata: {{name: p, namespace: ns}}\n"
        )),
        ["metadata.namespace: GlobalNetworkPolicy is not namespaced"]
    );
}

#[test]
fn tier_names_are_single_labels() {
    assert_valid(&doc(
        "Tier",
        "{name: security}",
        "{order: 100, defaultAction: Pass}",
    ));
    assert_eq!(
        problems(&doc("Tier", "{name: a.b}", "{}")),
        [
            "metadata.name: \"a.b\" is not a valid DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)"
        ]
    );
}

#[test]
fn profile_validates_rules_and_labels_to_apply() {
    assert_valid(&doc(
        "Profile",
        "{name: kns.shop}",
        "{ingress: [{action: Allow}], labelsToApply: {team: web}}",
    ));
    assert_eq!(
        problems(&doc(
            "Profile",
            "{name: p}",
            "{egress: [{action: Allow, protocol: TCP, destination: {ports: ['9:1']}}], labelsToApply: {'bad key': v}}"
        )),
        [
            "spec.egress[0].destination.ports[0]: range 9:1 is reversed",
            "spec.labelsToApply.bad key: invalid key \"bad key\": the name must be 1-63 of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        ]
    );
}

// ---- Network sets ----

#[test]
fn network_sets_hold_networks() {
    assert_valid(&format!(
        "{V3}kind: NetworkSet\nmetadata: {{name: s, namespace: ns}}\nspec: {{nets: [10.0.0.0/8, '2001:db8::/32']}}\n"
    ));
    assert_valid(&doc(
        "GlobalNetworkSet",
        "{name: s, labels: {feed: bad}}",
        "{nets: [192.0.2.1]}",
    ));
    assert_eq!(
        problems(&doc(
            "GlobalNetworkSet",
            "{name: s, labels: {feed: 'no good'}}",
            "{nets: [192.0.2.1/24]}"
        )),
        [
            "metadata.labels.feed: invalid label value \"no good\": at most 63 of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            "spec.nets[0]: 192.0.2.1/24 has host bits set (the network is 192.0.2.0/24)",
        ]
    );
}

// ---- Endpoints ----

#[test]
fn host_endpoint_needs_a_node_and_an_interface_or_addresses() {
    assert_valid(&doc(
        "HostEndpoint",
        "{name: h}",
        "{node: n1, interfaceName: '*'}",
    ));
    assert_valid(&doc(
        "HostEndpoint",
        "{name: h}",
        "{node: n1, expectedIPs: [10.0.0.1]}",
    ));
    assert_eq!(
        problems(&doc(
            "HostEndpoint",
            "{name: h}",
            "{ports: [{name: HTTP, protocol: ICMP, port: 0, hostPort: 80}]}"
        )),
        [
            "spec.node: is required",
            "spec.interfaceName: interfaceName or expectedIPs is required",
            "spec.ports[0].name: a port name is 1-15 of lowercase letters, digits and '-', with at least one letter and no leading, trailing or double '-'",
            "spec.ports[0].protocol: protocol ICMP has no ports",
            "spec.ports[0].port: port 0 is not valid (1-65535)",
            "spec.ports[0].hostPort: hostPort and hostIP are only valid on workload endpoints",
        ]
    );
}

#[test]
fn workload_endpoint_checks_addresses_nat_and_gateways() {
    let ok = "{node: n1, interfaceName: cali12345, ipNetworks: [10.0.0.5/32], ipNATs: [{internalIP: 10.0.0.5, externalIP: 192.0.2.5}], ipv4Gateway: 169.254.1.1, mac: 'ee:ee:ee:ee:ee:ee'}";
    assert_valid(&format!(
        "{V3}kind: WorkloadEndpoint\nmetadata: {{name: w, namespace: ns}}\nspec: {ok}\n"
    ));
    assert_eq!(
        problems(&format!(
            "{V3}kind: WorkloadEndpoint\nmetadata: {{name: w, namespace: ns}}\nspec: {{node: n1, interfaceName: '*', ipNetworks: [10.0.0.5/24], ipNATs: [{{internalIP: 10.1.0.5, externalIP: 192.0.2.5}}], ipv6Gateway: 169.254.1.1}}\n"
        )),
        [
            "spec.interfaceName: a workload endpoint needs one interface, not \"*\"",
            "spec.ipNetworks[0]: 10.0.0.5/24 has host bits set (the network is 10.0.0.0/24)",
            "spec.ipNATs[0].internalIP: 10.1.0.5 is not one of the endpoint's ipNetworks",
            "spec.ipv6Gateway: is not an IPv6 address",
        ]
    );
}

// ---- FelixConfiguration ----

#[test]
fn felix_configuration_checks_names_mtus_and_ports() {
    assert_valid(&doc(
        "FelixConfiguration",
        "{name: default}",
        "{vxlanEnabled: true, vxlanVNI: 4096, reportingInterval: 30s, failsafeInboundHostPorts: [{protocol: TCP, port: 22}]}",
    ));
    assert_eq!(
        problems(&doc(
            "FelixConfiguration",
            "{name: custom}",
            "{vxlanMTU: 100, vxlanVNI: 16777216, healthPort: 0, interfacePrefix: 'cali,tap/x', failsafeOutboundHostPorts: [{protocol: ICMP, port: 1}], routeTableRange: {min: 10, max: 5}}"
        )),
        [
            "metadata.name: \"custom\" must be \"default\" or \"node.<node name>\"",
            "spec.vxlanMTU: MTU 100 is out of range 576-9216",
            "spec.vxlanVNI: VNI 16777216 is out of range 1-16777215",
            "spec.healthPort: port 0 is not valid (1-65535)",
            "spec.interfacePrefix: \"tap/x\" is not a valid interface name (1-15 characters, no '/', ':' or spaces)",
            "spec.failsafeOutboundHostPorts[0].protocol: protocol ICMP has no ports",
            "spec.routeTableRange: 10-5 is not a range within 1-250",
        ]
    );
    assert!(
        read_error(&doc(
            "FelixConfiguration",
            "{name: default}",
            "{iptablesBackend: nft}"
        ))
        .starts_with("spec.iptablesBackend: unknown field")
    );
}

// ---- Kubernetes NetworkPolicy ----

const K8S: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: knp, namespace: shop}\n";

#[test]
fn kubernetes_network_policy_reads_and_infers_policy_types() {
    let r = assert_valid(&format!(
        "{K8S}spec:\n  podSelector: {{matchLabels: {{app: api}}}}\n  egress:\n  - to: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}}}]\n    ports: [{{protocol: TCP, port: 8000, endPort: 8080}}, {{port: http}}]\n"
    ));
    assert_eq!(r.kind(), Kind::KubernetesNetworkPolicy);
    let v = r.to_value();
    assert_eq!(
        (&v["apiVersion"], &v["kind"]),
        (&json!("networking.k8s.io/v1"), &json!("NetworkPolicy"))
    );
    assert_eq!(v["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
}

#[test]
fn kubernetes_network_policy_checks_peers_ports_and_expressions() {
    assert_eq!(
        problems(&format!(
            "{K8S}spec:\n  podSelector: {{matchExpressions: [{{key: app, operator: In}}, {{key: tier, operator: Exists, values: [x]}}]}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}}}, {{}}, {{podSelector: {{}}, ipBlock: {{cidr: 10.0.0.0/8}}}}]\n    ports: [{{protocol: ICMP}}, {{port: 90, endPort: 80}}, {{port: '1:2'}}, {{port: http, endPort: 90}}]\n"
        )),
        [
            "spec.podSelector.matchExpressions[0].values: are required with In and NotIn",
            "spec.podSelector.matchExpressions[1].values: must be empty with Exists and DoesNotExist",
            "spec.ingress[0].from[0].ipBlock.except[0]: 10.1.0.0/24 is not within 10.0.0.0/16",
            "spec.ingress[0].from[1]: a peer needs podSelector, namespaceSelector or ipBlock",
            "spec.ingress[0].from[2]: ipBlock cannot be combined with podSelector or namespaceSelector",
            "spec.ingress[0].ports[0].protocol: protocol ICMP is not TCP, UDP or SCTP",
            "spec.ingress[0].ports[1].endPort: range 90:80 is reversed",
            "spec.ingress[0].ports[2].port: Kubernetes ports are a number or a name; use endPort for a range",
            "spec.ingress[0].ports[3].endPort: needs a numeric port",
        ]
    );
}

// ---- Staged policies ----

#[test]
fn staged_network_policy_is_a_network_policy_spec_with_a_staged_action() {
    let r = assert_valid(&doc(
        "StagedNetworkPolicy",
        "{name: deny-all, namespace: shop, resourceVersion: '9'}",
        "{order: 10, selector: all(), ingress: [{action: Deny}]}",
    ));
    assert_eq!(
        r.to_value()["spec"],
        json!({
            "stagedAction": "Set",
            "tier": "default",
            "order": 10,
            "selector": "all()",
            "types": ["Ingress"],
            "ingress": [{"action": "Deny"}]
        }),
        "the enforced kind's defaults, stagedAction Set by default and first"
    );
    assert_eq!(Resource::from_value(r.to_value()).as_ref(), Ok(&r));
    let Resource::StagedNetworkPolicy(staged) = &r else {
        panic!("read as {:?}", r.kind())
    };
    let (action, enforced) = staged.to_enforced();
    assert_eq!(action, api::StagedAction::Set);
    assert_eq!(enforced.metadata.display_name(), "shop/deny-all");
    assert_eq!(enforced.metadata.resource_version, None, "the staged one's");
    assert_eq!(enforced.spec, staged.spec.policy);
    let (_, as_resource) = r.to_enforced().unwrap();
    assert_eq!(as_resource.kind(), Kind::NetworkPolicy);
    assert_eq!(as_resource.validate(), Ok(()));
}

#[test]
fn staged_policies_are_validated_as_their_enforced_kinds() {
    let errs = problems(&doc(
        "StagedNetworkPolicy",
        "{name: p, namespace: shop}",
        "{selector: 'app ==', ingress: [{action: Allow, destination: {ports: [80]}}]}",
    ));
    assert!(
        errs[0].starts_with("spec.selector: invalid selector \"app ==\""),
        "{errs:?}"
    );
    assert_eq!(
        errs[1..],
        ["spec.ingress[0].destination.ports: ports need protocol TCP, UDP, SCTP or UDPLite"]
    );
    assert_eq!(
        problems(&doc(
            "StagedGlobalNetworkPolicy",
            "{name: p}",
            "{tier: security, preDNAT: true}"
        )),
        [
            "metadata.name: a policy in tier \"security\" must be named \"security.<name>\", not \"p\"",
            "spec.applyOnForward: must be true when preDNAT is true",
        ]
    );
    assert_eq!(
        problems(&doc(
            "StagedKubernetesNetworkPolicy",
            "{name: p, namespace: shop}",
            "{podSelector: {matchExpressions: [{key: app, operator: In}]}}"
        )),
        ["spec.podSelector.matchExpressions[0].values: are required with In and NotIn"]
    );
    assert_eq!(
        problems(&doc(
            "StagedGlobalNetworkPolicy",
            "{name: p, namespace: x}",
            "{}"
        )),
        ["metadata.namespace: StagedGlobalNetworkPolicy is not namespaced"]
    );
}

#[test]
fn a_staged_action_other_than_set_or_delete_is_refused_naming_the_field() {
    for kind in [
        "StagedNetworkPolicy",
        "StagedGlobalNetworkPolicy",
        "StagedKubernetesNetworkPolicy",
    ] {
        let err = read_error(&doc(
            kind,
            "{name: p, namespace: shop}",
            "{stagedAction: Learn}",
        ));
        assert_eq!(
            err, "spec.stagedAction: unknown variant `Learn`, expected `Set` or `Delete`",
            "{kind}"
        );
    }
    let err = read_error(&doc(
        "StagedNetworkPolicy",
        "{name: p, namespace: shop}",
        "{stagedAction: Set, ingress: [{action: Allow, colour: red}]}",
    ));
    assert!(
        err.starts_with("spec.ingress[0].colour: unknown field `colour`"),
        "the enforced spec's paths and strictness: {err}"
    );
}

#[test]
fn a_staged_delete_names_the_policy_and_nothing_else() {
    let r = assert_valid(&doc(
        "StagedGlobalNetworkPolicy",
        "{name: security.old}",
        "{stagedAction: Delete, tier: security}",
    ));
    assert_eq!(
        r.to_value()["spec"],
        json!({"stagedAction": "Delete", "tier": "security"}),
        "no types inferred for a Delete"
    );
    assert_eq!(
        read(&doc(
            "StagedNetworkPolicy",
            "{name: old, namespace: shop}",
            "{stagedAction: Delete}"
        ))
        .to_value()["spec"],
        json!({"stagedAction": "Delete", "tier": "default"})
    );
    assert_eq!(
        problems(&doc(
            "StagedNetworkPolicy",
            "{name: old, namespace: shop}",
            "{stagedAction: Delete, selector: all(), ingress: [{action: Deny}]}"
        )),
        [
            "spec.selector: must be left out when stagedAction is Delete: a staged Delete only names the policy to delete",
            "spec.ingress: must be left out when stagedAction is Delete: a staged Delete only names the policy to delete",
        ]
    );
    assert_eq!(
        problems(&doc(
            "StagedKubernetesNetworkPolicy",
            "{name: old, namespace: shop}",
            "{stagedAction: Delete, podSelector: {matchLabels: {app: a}}}"
        )),
        [
            "spec.podSelector: must be left out when stagedAction is Delete: a staged Delete only names the policy to delete"
        ]
    );
    assert_valid(&doc(
        "StagedKubernetesNetworkPolicy",
        "{name: old, namespace: shop}",
        "{stagedAction: Delete}",
    ));
}

#[test]
fn staged_kubernetes_network_policy_is_a_calico_kind_with_a_kubernetes_spec() {
    let r = assert_valid(&doc(
        "StagedKubernetesNetworkPolicy",
        "{name: api, namespace: shop}",
        "{podSelector: {matchLabels: {app: api}}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}]}]}",
    ));
    let v = r.to_value();
    assert_eq!(v["apiVersion"], json!("projectcalico.org/v3"));
    assert_eq!(v["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    let (_, enforced) = r.to_enforced().unwrap();
    assert_eq!(enforced.kind(), Kind::KubernetesNetworkPolicy);
    assert_eq!(enforced.to_value()["spec"], {
        let mut spec = v["spec"].clone();
        spec.as_object_mut().unwrap().remove("stagedAction");
        spec
    });
}

// ---- Kinds, metadata and value types ----

#[test]
fn kinds_are_found_by_name_plural_and_short_form() {
    for (name, kind) in [
        ("ippool", Kind::IPPool),
        ("IPPools", Kind::IPPool),
        ("ipp", Kind::IPPool),
        ("gnp", Kind::GlobalNetworkPolicy),
        ("networkpolicy", Kind::NetworkPolicy),
        ("np", Kind::NetworkPolicy),
        ("gns", Kind::GlobalNetworkSet),
        ("hep", Kind::HostEndpoint),
        ("wep", Kind::WorkloadEndpoint),
        ("bgpconfig", Kind::BGPConfiguration),
        ("bgppeer", Kind::BGPPeer),
        ("felixconfig", Kind::FelixConfiguration),
        ("ipamconfig", Kind::IPAMConfiguration),
        ("knp", Kind::KubernetesNetworkPolicy),
        ("snp", Kind::StagedNetworkPolicy),
        ("stagedpolicies", Kind::StagedNetworkPolicy),
        ("sgnp", Kind::StagedGlobalNetworkPolicy),
        ("sknp", Kind::StagedKubernetesNetworkPolicy),
        (
            "stagedkubernetesnetworkpolicy",
            Kind::StagedKubernetesNetworkPolicy,
        ),
        ("caliconodestatus", Kind::CalicoNodeStatus),
        ("kubecontrollersconfig", Kind::KubeControllersConfiguration),
        ("clusterinfos", Kind::ClusterInformation),
    ] {
        assert_eq!(Kind::from_name(name), Some(kind), "{name}");
    }
    assert_eq!(Kind::from_name("pods"), None);
    assert_eq!(Kind::GlobalNetworkPolicy.plural(), "globalnetworkpolicies");
    assert_eq!(Kind::BGPConfiguration.plural(), "bgpconfigurations");
    assert_eq!(Kind::ALL.len(), 23);
    assert_eq!(Kind::StagedNetworkPolicy.plural(), "stagednetworkpolicies");
    assert_eq!(
        Kind::StagedKubernetesNetworkPolicy.enforced(),
        Some(Kind::KubernetesNetworkPolicy)
    );
    assert_eq!(Kind::NetworkPolicy.enforced(), None);
    let namespaced: Vec<Kind> = Kind::ALL
        .iter()
        .copied()
        .filter(|k| k.namespaced())
        .collect();
    assert_eq!(
        namespaced,
        [
            Kind::NetworkPolicy,
            Kind::NetworkSet,
            Kind::WorkloadEndpoint,
            Kind::KubernetesNetworkPolicy,
            Kind::StagedNetworkPolicy,
            Kind::StagedKubernetesNetworkPolicy,
        ]
    );
}

#[test]
fn every_kind_reads_back_what_it_writes() {
    for &kind in Kind::ALL {
        let spec = match kind {
            Kind::IPPool => json!({"cidr": "10.0.0.0/16"}),
            _ => json!({}),
        };
        let mut meta = json!({"name": "default", "labels": {"a": "b"}, "resourceVersion": "7"});
        if kind.namespaced() {
            meta["namespace"] = json!("ns");
        }
        let written = json!({"apiVersion": kind.api_version(), "kind": kind.document_kind(), "metadata": meta, "spec": spec});
        let r = Resource::from_value(written).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(r.kind(), kind);
        assert_eq!(r.metadata().resource_version.as_deref(), Some("7"));
        assert_eq!(
            Resource::from_value(r.to_value()).as_ref(),
            Ok(&r),
            "{kind}"
        );
        let typed: Resource = serde_json::from_value(r.to_value()).unwrap();
        assert_eq!(typed, r);
    }
}

#[test]
fn metadata_rejects_unknown_fields_and_non_string_names() {
    assert!(
        read_error(&format!(
            "{V3}kind: Tier\nmetadata: {{name: t, owner: me}}\n"
        ))
        .starts_with("metadata.owner: unknown field `owner`")
    );
    assert_eq!(
        read_error(&format!("{V3}kind: Tier\nmetadata: {{name: 5}}\n")),
        "metadata.name: must be a string, not 5"
    );
    assert_eq!(
        read_error("kind: Tier\nmetadata: {name: t}\n"),
        "apiVersion: is required"
    );
    assert_eq!(read_error("[1]"), "a resource must be a mapping, not [1]");
}

#[test]
fn typed_resources_check_their_kind_when_read_directly() {
    let err = serde_json::from_value::<api::Tier>(
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "t"}}),
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "kind is \"IPPool\", expected \"Tier\""
    );
    let tier: api::Tier = serde_json::from_value(json!({"metadata": {"name": "t"}})).unwrap();
    assert_eq!(tier.metadata.name, "t");
}

#[test]
fn ports_protocols_and_as_numbers_serialise_in_calico_form() {
    let ports: Vec<Port> = serde_json::from_value(json!([80, "80", "1:2", "http"])).unwrap();
    assert_eq!(
        ports,
        [
            Port::Number(80),
            Port::Number(80),
            Port::Range { min: 1, max: 2 },
            Port::Named("http".into())
        ]
    );
    assert_eq!(
        serde_json::to_value(&ports).unwrap(),
        json!([80, 80, "1:2", "http"])
    );
    let protocols: Vec<Protocol> =
        serde_json::from_value(json!(["udplite", "icmpv6", 6, "132"])).unwrap();
    assert_eq!(
        protocols,
        [
            Protocol::UdpLite,
            Protocol::IcmpV6,
            Protocol::Number(6),
            Protocol::Number(132)
        ]
    );
    assert_eq!(
        serde_json::to_value(protocols).unwrap(),
        json!(["UDPLite", "ICMPv6", 6, 132])
    );
    assert!(Protocol::Number(6).has_ports() && !Protocol::Icmp.has_ports());
    let asns: Vec<AsNumber> =
        serde_json::from_value(json!([64512, "64512", "1.10", 4294967295u64])).unwrap();
    assert_eq!(
        serde_json::to_value(asns).unwrap(),
        json!([64512, 64512, 65546, 4294967295u64])
    );
}

#[test]
fn a_calico_node_status_keeps_its_status_and_needs_a_node() {
    let doc = serde_json::json!({
        "apiVersion": "projectcalico.org/v3", "kind": "CalicoNodeStatus",
        "metadata": {"name": "h1"},
        "spec": {"node": "h1", "classes": ["Agent", "BGP"], "updatePeriodSeconds": 10},
        "status": {"lastUpdated": "2026-12-07T06:14:30Z", "bgp": {
            "numberEstablishedV4": 1, "numberEstablishedV6": 0,
            "numberNotEstablishedV4": 0, "numberNotEstablishedV6": 0,
            "peersV4": [{"peerIP": "10.0.0.1", "type": "GlobalPeer", "state": "Established",
                         "since": "2026-12-07T06:11:52Z", "prefixesReceived": 2, "prefixesAdvertised": 1}]}}
    });
    let r = Resource::from_value(doc.clone()).expect("a status");
    assert!(r.validate().is_ok());
    assert_eq!(r.to_value(), doc);
    let Resource::CalicoNodeStatus(s) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(s.update_period_seconds(), 10);

    let no_node = serde_json::json!({"apiVersion": "projectcalico.org/v3", "kind": "CalicoNodeStatus",
        "metadata": {"name": "x"}, "spec": {"classes": ["Routes"]}});
    let errs = Resource::from_value(no_node)
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(errs[0].path, "spec.node", "{errs:?}");
    let bad = serde_json::json!({"apiVersion": "projectcalico.org/v3", "kind": "CalicoNodeStatus",
        "metadata": {"name": "x"}, "spec": {"node": "x", "classes": ["Nope"]}});
    let err = Resource::from_value(bad).unwrap_err();
    assert!(err.to_string().contains("spec.classes"), "{err}");
}

#[test]
fn kube_controllers_configuration_round_trips_and_names_a_bad_field() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kube-controllers.yaml"),
    )
    .unwrap();
    let resources = api::parse_documents("kube-controllers.yaml", &text).unwrap();
    let r = &resources[0];
    assert_eq!(r.kind(), Kind::KubeControllersConfiguration);
    let again = Resource::from_value(r.to_value()).unwrap();
    assert_eq!(&again, r);
    assert_eq!(
        r.to_value()["spec"]["controllers"]["node"]["leakGracePeriod"],
        "15m0s"
    );

    for (bad, field) in [
        ("spec: {healthChecks: Sometimes}", "spec.healthChecks"),
        (
            "spec: {controllers: {node: {reconcilerPeriod: soon}}}",
            "spec.controllers.node.reconcilerPeriod",
        ),
        (
            "spec: {controllers: {loadBalancer: {assignIPs: Some}}}",
            "spec.controllers.loadBalancer.assignIPs",
        ),
        (
            "spec: {prometheusMetricsPort: 70000}",
            "spec.prometheusMetricsPort",
        ),
        ("spec: {controllers: {route: {}}}", "spec.controllers"),
    ] {
        let doc = format!(
            "apiVersion: projectcalico.org/v3\nkind: KubeControllersConfiguration\nmetadata: {{name: default}}\n{bad}\n"
        );
        let errs = api::parse_documents("k.yaml", &doc).unwrap_err();
        let text = errs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains(field), "{bad}: {text}");
    }
    let named = "apiVersion: projectcalico.org/v3\nkind: KubeControllersConfiguration\nmetadata: {name: other}\nspec: {}\n";
    let text = api::parse_documents("k.yaml", named).unwrap_err()[0].to_string();
    assert!(text.contains("must be named \"default\""), "{text}");
}

#[test]
fn cluster_information_is_calico_s_and_only_default() {
    let text = "apiVersion: projectcalico.org/v3\nkind: ClusterInformation\nmetadata: {name: default}\n\
                spec: {clusterGUID: 0f1e, calicoVersion: v3.30.0, datastoreReady: false, variant: Calico}\n";
    let r = api::parse_documents("ci.yaml", text).unwrap().remove(0);
    let Resource::ClusterInformation(ci) = &r else {
        panic!("{r:?}")
    };
    assert!(!ci.spec.ready());
    assert_eq!(r.to_value()["spec"]["clusterGUID"], "0f1e");
    assert_eq!(Resource::from_value(r.to_value()).unwrap(), r);
    assert_eq!(
        Kind::from_name("clusterinfo"),
        Some(Kind::ClusterInformation)
    );
    let named = text.replace("name: default", "name: other");
    let err = api::parse_documents("ci.yaml", &named).unwrap_err()[0].to_string();
    assert!(err.contains("must be named \"default\""), "{err}");
    let bad = text.replace("datastoreReady: false", "datastoreReady: maybe");
    let err = api::parse_documents("ci.yaml", &bad).unwrap_err()[0].to_string();
    assert!(err.contains("datastoreReady"), "{err}");
}

#[test]
fn a_typed_list_as_calico_prints_it_reads_as_its_items() {
    let text = "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nmetadata: {resourceVersion: '7'}\n\
                items:\n- apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata: {name: a}\n  spec: {cidr: 10.1.0.0/16}\n\
                - apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata: {name: b}\n  spec: {cidr: 10.2.0.0/16}\n\
                ---\napiVersion: projectcalico.org/v3\nkind: BGPPeerList\nitems: []\n";
    let names: Vec<String> = api::parse_documents("l.yaml", text)
        .unwrap()
        .iter()
        .map(|r| r.metadata().name.clone())
        .collect();
    assert_eq!(names, ["a", "b"]);
    // A list of a kind nobody knows is a document of an unknown kind.
    let odd = "apiVersion: projectcalico.org/v3\nkind: WidgetList\nitems: []\n";
    let err = api::parse_documents("l.yaml", odd).unwrap_err()[0].to_string();
    assert!(err.contains("WidgetList"), "{err}");
}

#[test]
fn bgp_filter_rules_of_calico_3_32_validate_as_calico_does() {
    let rule = |r: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPFilter\nmetadata: {{name: f}}\nspec:\n  exportV4:\n  - {r}\n"
        )
    };
    let ok = rule(
        "{action: Accept, peerType: eBGP, communities: {values: ['65000:1']}, asPathPrefix: [65001], \
         operations: [{addCommunity: {value: '65000:2:3'}}, {prependASPath: {prefix: [65000, 65000]}}]}",
    );
    let r = api::parse_documents("f.yaml", &ok).unwrap().remove(0);
    assert_eq!(Resource::from_value(r.to_value()).unwrap(), r);
    assert_eq!(r.to_value()["spec"]["exportV4"][0]["peerType"], "eBGP");
    for (bad, field, says) in [
        (
            "{action: Reject, operations: [{addCommunity: {value: '65000:2'}}]}",
            "spec.exportV4[0].operations",
            "only be used with action Accept",
        ),
        (
            "{action: Accept, operations: [{addCommunity: {value: '65000:2'}, prependASPath: {prefix: [1]}}]}",
            "spec.exportV4[0].operations[0]",
            "exactly one",
        ),
        (
            "{action: Accept, communities: {values: ['65000:1', '65000:2']}}",
            "spec.exportV4[0].communities.values",
            "exactly one community",
        ),
        (
            "{action: Accept, communities: {values: ['65536:1']}}",
            "spec.exportV4[0].communities.values[0]",
            "not a number",
        ),
        (
            "{action: Accept, operations: [{prependASPath: {prefix: []}}]}",
            "spec.exportV4[0].operations[0].prependASPath.prefix",
            "1 to 10",
        ),
        (
            "{action: Accept, priority: 512}",
            "spec.exportV4[0].priority",
            "not supported",
        ),
        (
            "{action: Accept, operations: [{setPriority: {value: 512}}]}",
            "spec.exportV4[0].operations[0].setPriority",
            "not supported",
        ),
        (
            "{action: Accept, peerType: BGP}",
            "peerType",
            "unknown variant",
        ),
    ] {
        let errs = api::parse_documents("f.yaml", &rule(bad)).unwrap_err();
        let text = errs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains(field) && text.contains(says), "{bad}: {text}");
    }
}

#[test]
fn bgp_peer_local_as_and_next_hop_mode_read_as_calico_writes_them() {
    let peer = |extra: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: p}}\n\
             spec: {{peerIP: 10.0.0.1, asNumber: 65000, {extra}}}\n"
        )
    };
    let r = api::parse_documents("p.yaml", &peer("localASNumber: '1.10', nextHopMode: Self"))
        .unwrap()
        .remove(0);
    assert_eq!(r.to_value()["spec"]["localASNumber"], 65546);
    assert_eq!(r.to_value()["spec"]["nextHopMode"], "Self");
    let clash = peer("keepOriginalNextHop: true, nextHopMode: Self");
    let err = api::parse_documents("p.yaml", &clash).unwrap_err()[0].to_string();
    assert!(
        err.contains("spec.nextHopMode") && err.contains("keepOriginalNextHop"),
        "{err}"
    );
    let err = api::parse_documents("p.yaml", &peer("localASNumber: x")).unwrap_err()[0].to_string();
    assert!(err.contains("localASNumber"), "{err}");
}

#[test]
fn ipam_configuration_min_ip_reclaim_age_round_trips_and_is_bounded() {
    let doc = |age: u64| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata: {{name: default}}\n\
             spec: {{minIPReclaimAgeSeconds: {age}}}\n"
        )
    };
    let r = api::parse_documents("i.yaml", &doc(600)).unwrap().remove(0);
    assert_eq!(r.to_value()["spec"]["minIPReclaimAgeSeconds"], 600);
    assert_eq!(Resource::from_value(r.to_value()).unwrap(), r);
    let err = api::parse_documents("i.yaml", &doc(100_000)).unwrap_err()[0].to_string();
    assert!(err.contains("spec.minIPReclaimAgeSeconds"), "{err}");
}
