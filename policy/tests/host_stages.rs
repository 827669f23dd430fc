//! Kernel traffic tests (root, `nft`, `ip`, `python3`) of untracked, pre-DNAT
//! and forwarded host endpoint policy, of failsafe ports and of a host
//! endpoint for all interfaces (`interfaceName: "*"`): the compiled
//! ruleset loaded in a "host" namespace whose `eth0` (a host endpoint) faces
//! an "outside" namespace and whose `calia` leads to workload a.

mod common;

use common::kernel::load_nft;
use common::{
    Topology, compile_yaml, compile_yaml_with, pings, ready, server, tcp_connects, topology,
};
use policy::Config;
use testkit::{Netns, veth_pair};

/// Host endpoint eth0 (10.210.0.254). Untracked: TCP 7001 denied, TCP 7002
/// allowed from the outside network (replies too). Pre-DNAT: TCP 7003
/// denied. Forwarded in by eth0: TCP 8080 only. The host itself: TCP 7001,
/// 7003 and 7004 in, anything out.
const POLICY: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec:
  selector: role == "outside"
  doNotTrack: true
  applyOnForward: true
  types: [Ingress, Egress]
  ingress:
    - {action: Deny, protocol: TCP, destination: {ports: [7001]}}
    - {action: Allow, protocol: TCP, source: {nets: [10.210.0.0/24]}, destination: {ports: [7002]}}
  egress:
    - {action: Allow, protocol: TCP, source: {ports: [7002]}, destination: {nets: [10.210.0.0/24]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pre-dnat}
spec:
  selector: role == "outside"
  preDNAT: true
  applyOnForward: true
  types: [Ingress]
  ingress:
    - {action: Deny, protocol: TCP, destination: {ports: [7003]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: forward-8080}
spec:
  selector: role == "outside"
  applyOnForward: true
  types: [Ingress]
  ingress:
    - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host}
spec:
  selector: role == "outside"
  types: [Ingress, Egress]
  ingress:
    - {action: Allow, protocol: TCP, destination: {ports: [7001, 7003, 7004]}}
  egress:
    - action: Allow
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: host-eth0, labels: {role: outside}}
spec: {node: host, interfaceName: eth0, expectedIPs: [10.210.0.254]}
"#;

/// Workload a behind `calia`, open both ways; appended to the policies of
/// the tests that forward traffic to it.
const OPEN_WORKLOAD_A: &str = r#"
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: open}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: a, namespace: shop, labels: {app: a}}
spec: {node: host, interfaceName: calia, ipNetworks: [10.200.1.1/32], profiles: [open]}
"#;

/// `policies` with workload a.
fn with_workload_a(policies: &str) -> String {
    format!("{policies}{OPEN_WORKLOAD_A}")
}

#[test]
fn untracked_pre_dnat_and_forwarded_host_endpoint_policy_hold_on_real_traffic() {
    if !ready() {
        return;
    }
    let (t, outside) = with_outside();
    let _servers: Vec<_> = [7001, 7002, 7003, 7004]
        .into_iter()
        .map(|port| server(&t.host, port))
        .chain([8080, 8081].into_iter().map(|port| server(&t.a, port)))
        .collect();
    let from_outside = |addr: &str, port| tcp_connects(&outside, addr, port);
    for (addr, port) in [("10.210.0.254", 7001), ("10.200.1.1", 8081)] {
        assert!(from_outside(addr, port), "{addr}:{port} before any policy");
    }

    let compiled = compile_yaml(&with_workload_a(POLICY));
    load_nft(&t.host, &policy::render(&compiled));
    let host = "10.210.0.254";
    assert!(from_outside(host, 7004), "normal host policy allows 7004");
    assert!(
        !from_outside(host, 7001),
        "untracked deny drops 7001, which normal policy allows"
    );
    assert!(
        from_outside(host, 7002),
        "untracked allow lets 7002 in, though normal policy does not"
    );
    assert!(
        !from_outside(host, 7003),
        "pre-DNAT deny drops 7003, which normal policy allows"
    );
    assert!(
        from_outside("10.200.1.1", 8080),
        "forwarded to a: applyOnForward allows 8080"
    );
    assert!(
        !from_outside("10.200.1.1", 8081),
        "forwarded to a: no applyOnForward allow for 8081"
    );
    assert!(
        pings(&t.a, "10.210.0.1"),
        "forwarded out by eth0: no applyOnForward egress policy, allowed"
    );
    // eth0's untracked ingress chain, as the map leads to it.
    let Some(policy::ir::Verdict::Goto(raw_in)) =
        compiled.maps["hep-raw-from"].elements.get("eth0")
    else {
        panic!("hep-raw-from has no chain for eth0")
    };
    let untracked = t
        .host
        .exec("nft", ["list", "chain", "inet", "calico", raw_in])
        .unwrap();
    let listing = String::from_utf8_lossy(&untracked.stdout);
    assert!(
        listing.contains("notrack") && !listing.contains("packets 0 bytes 0 notrack"),
        "the untracked allow rule counted packets:\n{listing}"
    );
}

/// The topology, and an "outside" namespace (10.210.0.1) facing the host's
/// `eth0` (10.210.0.254), routed to the workloads.
fn with_outside() -> (Topology, Netns) {
    let t = topology();
    let outside = Netns::new("polo").unwrap();
    veth_pair(&t.host, "eth0", &outside, "eth0").unwrap();
    t.host.add_addr("eth0", "10.210.0.254/24").unwrap();
    outside.add_addr("eth0", "10.210.0.1/24").unwrap();
    outside
        .ip(["route", "add", "10.200.0.0/16", "via", "10.210.0.254"])
        .unwrap();
    (t, outside)
}

/// Host endpoint eth0 denied everything by normal and by untracked policy.
const DENY_ALL: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-all}
spec:
  selector: role == "outside"
  types: [Ingress, Egress]
  ingress: [{action: Deny}]
  egress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked-deny-all}
spec:
  selector: role == "outside"
  doNotTrack: true
  applyOnForward: true
  types: [Ingress, Egress]
  ingress: [{action: Deny}]
  egress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: host-eth0, labels: {role: outside}}
spec: {node: host, interfaceName: eth0, expectedIPs: [10.210.0.254]}
"#;

#[test]
fn failsafe_ports_get_through_a_host_endpoint_that_denies_everything_until_the_list_is_emptied() {
    if !ready() {
        return;
    }
    let (t, outside) = with_outside();
    // SSH (inbound failsafe) and 2222 on the host; the Kubernetes API port
    // (outbound failsafe) and 8443 outside.
    let _servers: Vec<_> = [
        (&t.host, 22),
        (&t.host, 2222),
        (&outside, 6443),
        (&outside, 8443),
    ]
    .into_iter()
    .map(|(ns, port)| server(ns, port))
    .collect();
    let (host, out) = ("10.210.0.254", "10.210.0.1");
    let ruleset = |config| policy::render(&compile_yaml_with(DENY_ALL, config));

    load_nft(&t.host, &ruleset(Config::default()));
    assert!(
        tcp_connects(&outside, host, 22),
        "failsafe inbound TCP 22, replies untracked-exempt"
    );
    assert!(
        !tcp_connects(&outside, host, 2222),
        "2222 is no failsafe port"
    );
    assert!(
        tcp_connects(&t.host, out, 6443),
        "failsafe outbound TCP 6443"
    );
    assert!(
        !tcp_connects(&t.host, out, 8443),
        "8443 is no failsafe port"
    );

    let none = Config {
        failsafe_inbound: Vec::new(),
        failsafe_outbound: Vec::new(),
        ..Config::default()
    };
    t.host
        .exec("nft", ["delete", "table", "inet", "calico"])
        .unwrap();
    load_nft(&t.host, &ruleset(none));
    assert!(
        !tcp_connects(&outside, host, 22),
        "no failsafe ports: SSH denied"
    );
    assert!(
        !tcp_connects(&t.host, out, 6443),
        "no failsafe ports: 6443 denied"
    );
}

/// A host endpoint for every interface (`interfaceName: "*"`) that lets TCP
/// 7004 in and nothing else.
const ALL_INTERFACES: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-7004}
spec:
  selector: role == "any-interface"
  types: [Ingress]
  ingress:
    - {action: Allow, protocol: TCP, destination: {ports: [7004]}}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: all-interfaces, labels: {role: any-interface}}
spec: {node: host, interfaceName: "*"}
"#;

#[test]
fn a_host_endpoint_for_all_interfaces_guards_the_host_but_not_forwarded_traffic() {
    if !ready() {
        return;
    }
    let (t, outside) = with_outside();
    let _servers: Vec<_> = [(&t.host, 7004), (&t.host, 2222), (&t.a, 8081)]
        .into_iter()
        .map(|(ns, port)| server(ns, port))
        .collect();
    let host = "10.210.0.254";
    assert!(
        tcp_connects(&outside, host, 2222),
        "2222 on the host before any policy"
    );

    load_nft(
        &t.host,
        &policy::render(&compile_yaml(&with_workload_a(ALL_INTERFACES))),
    );
    assert!(
        tcp_connects(&outside, host, 7004),
        "the all-interfaces endpoint's policy allows 7004"
    );
    assert!(
        !tcp_connects(&outside, host, 2222),
        "selected by a policy that does not allow 2222: the tier's default deny"
    );
    assert!(
        tcp_connects(&outside, "10.200.1.1", 8081),
        "forwarded traffic is not the all-interfaces endpoint's business"
    );
}
