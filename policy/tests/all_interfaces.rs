//! Host endpoints for all interfaces (`interfaceName: "*"`), one sentence per
//! test, on the `host-endpoint-all-interfaces` golden case: node1's endpoint
//! for all interfaces takes TCP 80 in and sends TCP 443 out, denies NodePort
//! 30080 pre-DNAT and is selected by an untracked policy (which does not
//! apply to it); its named eth1 endpoint takes TCP 81 only; workload web
//! (`caliweb`) is open.

mod common;

use std::net::IpAddr;

use common::{cases, compile_case, through};
use policy::ir::{Hook, Ruleset};
use policy::simulate::{Outcome, Packet, simulate};
use policy::{Config, Model, ModelError};

const TCP: u8 = 6;
const UDP: u8 = 17;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn all_interfaces() -> Ruleset {
    let case = (cases().into_iter())
        .find(|c| c.ends_with("host-endpoint-all-interfaces"))
        .unwrap();
    compile_case(&case)
}

/// The verdict on a new packet to the host (192.168.1.1) arriving on `iif`:
/// prerouting, then input.
fn to_host(rs: &Ruleset, iif: &str, proto: u8, dport: u16) -> Outcome {
    let p = Packet::new(
        Hook::Prerouting,
        ip("192.0.2.7"),
        ip("192.168.1.1"),
        proto,
        dport,
    )
    .from_iface(iif);
    through(rs, p, Hook::Input, None)
}

/// The verdict on a new packet the host sends out of `oif`.
fn from_host(rs: &Ruleset, oif: &str, dport: u16) -> Outcome {
    let p = Packet::new(Hook::Output, ip("192.168.1.1"), ip("192.0.2.7"), TCP, dport).to_iface(oif);
    simulate(rs, &p).unwrap().outcome
}

#[test]
fn policy_of_the_all_interfaces_endpoint_holds_on_every_interface_without_one_of_its_own() {
    let rs = all_interfaces();
    for iface in ["eth0", "ens3", "bond0"] {
        assert_eq!(to_host(&rs, iface, TCP, 80), Outcome::Accept, "{iface}");
        assert_eq!(to_host(&rs, iface, TCP, 81), Outcome::Drop, "{iface}");
        assert_eq!(from_host(&rs, iface, 443), Outcome::Accept, "{iface}");
        assert_eq!(from_host(&rs, iface, 444), Outcome::Drop, "{iface}");
    }
    assert_eq!(to_host(&rs, "eth0", TCP, 22), Outcome::Accept, "failsafe");
}

#[test]
fn a_named_host_endpoint_takes_precedence_on_its_interface() {
    let rs = all_interfaces();
    assert_eq!(to_host(&rs, "eth1", TCP, 81), Outcome::Accept);
    assert_eq!(to_host(&rs, "eth1", TCP, 80), Outcome::Drop);
    assert_eq!(
        to_host(&rs, "eth1", TCP, 30080),
        Outcome::Drop,
        "the pre-DNAT deny of all interfaces is not eth1's: its normal policy drops it"
    );
    let p = Packet::new(
        Hook::Prerouting,
        ip("192.0.2.7"),
        ip("192.168.1.1"),
        TCP,
        30080,
    )
    .from_iface("eth1");
    assert_eq!(
        simulate(&rs, &p).unwrap().outcome,
        Outcome::Accept,
        "pre-DNAT"
    );
}

#[test]
fn pre_dnat_policy_applies_to_all_interfaces_but_untracked_policy_does_not() {
    let rs = all_interfaces();
    let pre = |proto, dport| {
        let p = Packet::new(
            Hook::Prerouting,
            ip("192.0.2.7"),
            ip("10.65.0.2"),
            proto,
            dport,
        )
        .from_iface("eth0");
        simulate(&rs, &p).unwrap().outcome
    };
    assert_eq!(pre(TCP, 30080), Outcome::Drop, "pre-DNAT deny");
    assert_eq!(pre(TCP, 30081), Outcome::Accept);
    assert_eq!(
        pre(UDP, 9999),
        Outcome::Accept,
        "the untracked deny does not apply"
    );
    assert!(!rs.chains.keys().any(|c| c.starts_with("hep-raw")));
}

#[test]
fn loopback_workload_and_forwarded_traffic_are_not_the_all_interfaces_endpoints() {
    let rs = all_interfaces();
    assert_eq!(to_host(&rs, "lo", TCP, 81), Outcome::Accept, "loopback");
    assert_eq!(from_host(&rs, "lo", 444), Outcome::Accept, "loopback");
    let fwd = Packet::new(Hook::Forward, ip("192.0.2.7"), ip("10.65.0.2"), TCP, 81)
        .from_iface("eth0")
        .to_iface("caliweb");
    assert_eq!(
        simulate(&rs, &fwd).unwrap().outcome,
        Outcome::Accept,
        "to web"
    );
    let to_wl_host =
        Packet::new(Hook::Output, ip("192.168.1.1"), ip("10.65.0.2"), TCP, 444).to_iface("caliweb");
    assert_eq!(simulate(&rs, &to_wl_host).unwrap().outcome, Outcome::Accept);
}

#[test]
fn only_node1s_endpoint_for_all_interfaces_gets_chains() {
    let rs = all_interfaces();
    assert!(rs.chains.contains_key("hep-in-all-interfaces"));
    assert!(!rs.maps["hep-from"].elements.contains_key("*"));
    let other_node =
        Packet::new(Hook::Input, ip("192.0.2.7"), ip("192.168.1.2"), TCP, 81).from_iface("eth0");
    assert_eq!(
        simulate(&rs, &other_node).unwrap().outcome,
        Outcome::Drop,
        "node1's policy, whatever the address"
    );
}

#[test]
fn a_second_all_interfaces_endpoint_on_one_node_is_an_error_naming_both() {
    let hep = |name: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {{name: {name}}}\n\
             spec: {{node: node1, interfaceName: \"*\"}}\n---\n"
        )
    };
    let yaml = hep("a") + &hep("b");
    let resources = api::parse_documents("inline", &yaml).expect("valid YAML");
    let err = Model::from_resources(&resources, Config::default()).unwrap_err();
    assert!(
        matches!(err, ModelError::WildcardHostEndpoint { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("host endpoint b") && text.contains(", a"),
        "{text}"
    );
}
