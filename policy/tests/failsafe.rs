//! Failsafe ports, one sentence per test: traffic to and from the host on
//! the failsafe ports passes host endpoints whatever their policy says, in
//! the normal, pre-DNAT and untracked stages, as Felix has it. The
//! simulator follows a packet through the hooks it meets.

mod common;

use std::net::IpAddr;

use api::Protocol;
use api::resources::felix::ProtoPort;
use common::{cases, compile_case, compile_yaml_with, through};
use policy::Config;
use policy::ir::{Hook, Ruleset};
use policy::simulate::{Outcome, Packet, simulate};

const TCP: u8 = 6;
const UDP: u8 = 17;

/// eth0 is a host endpoint of node1 that every normal policy denies.
const DENY_ALL: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-all}
spec:
  selector: role == "uplink"
  types: [Ingress, Egress]
  ingress: [{action: Deny}]
  egress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node1-eth0, labels: {role: uplink}}
spec: {node: node1, interfaceName: eth0, expectedIPs: [192.168.1.1]}
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn case(name: &str) -> Ruleset {
    let case = cases().into_iter().find(|c| c.ends_with(name)).unwrap();
    compile_case(&case)
}

/// The verdict on a packet to the host arriving on eth0: prerouting, then input.
fn inbound(rs: &Ruleset, src: &str, proto: u8, sport: u16, dport: u16) -> Outcome {
    let mut p =
        Packet::new(Hook::Prerouting, ip(src), ip("192.168.1.1"), proto, dport).from_iface("eth0");
    p.sport = sport;
    through(rs, p, Hook::Input, None)
}

/// The verdict on a packet the host sends out of eth0.
fn outbound(rs: &Ruleset, dst: &str, proto: u8, dport: u16) -> Outcome {
    let p = Packet::new(Hook::Output, ip("192.168.1.1"), ip(dst), proto, dport).to_iface("eth0");
    simulate(rs, &p).unwrap().outcome
}

#[test]
fn a_host_endpoint_that_denies_everything_still_takes_ssh_in_and_sends_dns_out() {
    let rs = compile_yaml_with(DENY_ALL, Config::default());
    assert_eq!(inbound(&rs, "192.0.2.7", TCP, 40000, 22), Outcome::Accept);
    assert_eq!(
        inbound(&rs, "192.0.2.7", UDP, 67, 68),
        Outcome::Accept,
        "DHCP"
    );
    assert_eq!(
        inbound(&rs, "2001:db8::7", TCP, 40000, 6443),
        Outcome::Accept
    );
    assert_eq!(inbound(&rs, "192.0.2.7", TCP, 40000, 23), Outcome::Drop);
    assert_eq!(inbound(&rs, "192.0.2.7", UDP, 40000, 22), Outcome::Drop);
    assert_eq!(outbound(&rs, "192.0.2.53", UDP, 53), Outcome::Accept);
    assert_eq!(outbound(&rs, "192.0.2.9", TCP, 179), Outcome::Accept, "BGP");
    assert_eq!(outbound(&rs, "192.0.2.53", TCP, 53), Outcome::Drop);
    assert_eq!(outbound(&rs, "192.0.2.9", TCP, 22), Outcome::Drop);
}

#[test]
fn an_empty_failsafe_list_removes_the_failsafe_ports() {
    let config = Config {
        failsafe_inbound: Vec::new(),
        failsafe_outbound: Vec::new(),
        ..Config::default()
    };
    let rs = compile_yaml_with(DENY_ALL, config);
    assert_eq!(inbound(&rs, "192.0.2.7", TCP, 40000, 22), Outcome::Drop);
    assert_eq!(outbound(&rs, "192.0.2.53", UDP, 53), Outcome::Drop);
}

#[test]
fn configured_failsafe_ports_replace_the_defaults_and_their_nets_limit_the_peer() {
    let only = |protocol, port, net: Option<&str>| ProtoPort {
        protocol,
        port,
        net: net.map(|n| n.parse().unwrap()),
    };
    let config = Config {
        failsafe_inbound: vec![only(Protocol::Tcp, 2222, Some("10.0.0.0/8"))],
        failsafe_outbound: vec![only(Protocol::Udp, 5353, None)],
        ..Config::default()
    };
    let rs = compile_yaml_with(DENY_ALL, config);
    assert_eq!(inbound(&rs, "10.1.2.3", TCP, 40000, 2222), Outcome::Accept);
    assert_eq!(inbound(&rs, "11.1.2.3", TCP, 40000, 2222), Outcome::Drop);
    assert_eq!(
        inbound(&rs, "10.1.2.3", TCP, 40000, 22),
        Outcome::Drop,
        "no default"
    );
    assert_eq!(outbound(&rs, "192.0.2.53", UDP, 5353), Outcome::Accept);
    assert_eq!(
        outbound(&rs, "192.0.2.53", UDP, 53),
        Outcome::Drop,
        "no default"
    );
}

#[test]
fn a_felix_configuration_sets_the_failsafe_ports_per_family_and_untracked_policy_cannot_drop_them()
{
    // host-endpoint-failsafe: TCP 22 from 192.168.100.0/24 and fd00:100::/64,
    // TCP 179 from anywhere, UDP 161 from 10.0.0.0/8 (which untracked policy
    // denies); nothing outbound.
    let rs = case("host-endpoint-failsafe");
    assert_eq!(
        inbound(&rs, "192.168.100.5", TCP, 40000, 22),
        Outcome::Accept
    );
    assert_eq!(inbound(&rs, "fd00:100::5", TCP, 40000, 22), Outcome::Accept);
    assert_eq!(inbound(&rs, "192.168.101.5", TCP, 40000, 22), Outcome::Drop);
    assert_eq!(inbound(&rs, "fd00:101::5", TCP, 40000, 22), Outcome::Drop);
    assert_eq!(inbound(&rs, "192.0.2.7", TCP, 40000, 179), Outcome::Accept);
    assert_eq!(inbound(&rs, "10.9.9.9", UDP, 40000, 161), Outcome::Accept);
    assert_eq!(inbound(&rs, "11.9.9.9", UDP, 40000, 161), Outcome::Drop);
    assert_eq!(outbound(&rs, "192.0.2.53", UDP, 53), Outcome::Drop);
}

#[test]
fn untracked_policy_lets_replies_of_failsafe_connections_through() {
    // host-endpoint-stages: untracked policy drops 198.51.100.0/24 on eth0;
    // UDP 53 is a failsafe outbound port.
    let rs = case("host-endpoint-stages");
    let reply = |sport| {
        let mut p = Packet::new(
            Hook::Prerouting,
            ip("198.51.100.53"),
            ip("192.0.2.10"),
            UDP,
            40000,
        )
        .from_iface("eth0");
        p.sport = sport;
        simulate(&rs, &p).unwrap().outcome
    };
    assert_eq!(reply(53), Outcome::Accept, "a DNS reply");
    assert_eq!(reply(54), Outcome::Drop, "not a failsafe port");
}

#[test]
fn models_without_host_endpoints_get_no_failsafe_rules() {
    for name in ["allow-by-selector", "profiles-fallback"] {
        let rs = case(name);
        let failsafe = (rs.chains.values())
            .flat_map(|c| &c.rules)
            .filter(|r| r.comment.as_deref().is_some_and(|c| c.contains("failsafe")))
            .count();
        assert_eq!(failsafe, 0, "{name}");
    }
}

#[test]
fn a_felix_configuration_sets_the_endpoint_to_host_action_and_leaves_unset_fields_alone() {
    use api::resources::felix::{EndpointToHostAction, FelixConfigurationSpec};
    use policy::model::EndpointToHost;
    let base = Config::default();
    let unset = base.clone().with_felix(&FelixConfigurationSpec::default());
    assert_eq!(unset, base, "an empty spec changes nothing");
    for (action, expected) in [
        (EndpointToHostAction::Drop, EndpointToHost::Drop),
        (EndpointToHostAction::Accept, EndpointToHost::Accept),
        // Return hands the packet to the host's own rules: accepting in our
        // table does that.
        (EndpointToHostAction::Return, EndpointToHost::Accept),
    ] {
        let spec = FelixConfigurationSpec {
            default_endpoint_to_host_action: Some(action),
            ..FelixConfigurationSpec::default()
        };
        let config = Config::default().with_felix(&spec);
        assert_eq!(config.endpoint_to_host, expected, "{action:?}");
        assert_eq!(config.failsafe_inbound, base.failsafe_inbound);
    }
}
