//! Untracked, pre-DNAT and forwarded host endpoint policy, one sentence per
//! test, on the `host-endpoint-stages` golden case: the simulator follows a
//! packet through the hooks it meets (prerouting, then input or forward).
//!
//! The case: eth0 (outside) and eth1 (inside) are host endpoints of a
//! gateway. Untracked: eth0/eth1 drop 198.51.100.0/24 and allow UDP 8125 from
//! 192.168.200.0/24. Pre-DNAT on eth0: TCP 30000-32767 only from
//! 192.168.100.0/24. Forwarded: in by eth0 only TCP 80 and 443; out by eth1
//! anything but 10.99.0.0/16. Host: TCP 22 in, anything out. Failsafe
//! ports: TCP 179 in, UDP 53 out.

mod common;

use std::net::IpAddr;

use common::{arrive, cases, compile_case, through};
use policy::Ruleset;
use policy::ir::{CtState, Hook};
use policy::simulate::{Outcome, Packet, simulate};

const TCP: u8 = 6;
const UDP: u8 = 17;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn stages() -> Ruleset {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("host-endpoint-stages"))
        .expect("the host-endpoint-stages case exists");
    compile_case(&case)
}

fn new_packet(src: &str, dst: &str, proto: u8, dport: u16, iif: &str) -> Packet {
    Packet::new(Hook::Prerouting, ip(src), ip(dst), proto, dport).from_iface(iif)
}

#[test]
fn untracked_allow_leaves_the_packet_untracked_and_skips_normal_host_policy() {
    let rs = stages();
    let p = new_packet("192.168.200.5", "192.0.2.10", UDP, 8125, "eth0");
    let (outcome, after) = arrive(&rs, p, Hook::Input, None);
    assert_eq!(outcome, Outcome::Accept);
    let after = after.unwrap();
    assert_eq!(after.ct, CtState::Untracked, "notrack");
    assert_eq!(
        simulate(&rs, &after).unwrap().outcome,
        Outcome::Accept,
        "normal policy allows only TCP 22, yet untracked allow stands"
    );
    let other = new_packet("192.168.201.5", "192.0.2.10", UDP, 8125, "eth0");
    assert_eq!(
        through(&rs, other, Hook::Input, None),
        Outcome::Drop,
        "no untracked verdict: normal policy decides"
    );
}

#[test]
fn untracked_deny_drops_before_conntrack_even_what_normal_policy_allows() {
    let rs = stages();
    let ssh = |src| new_packet(src, "192.0.2.10", TCP, 22, "eth0");
    let p = ssh("198.51.100.7");
    let raw = simulate(&rs, &p).unwrap();
    assert_eq!(raw.outcome, Outcome::Drop);
    assert_eq!(raw.after.ct, CtState::New, "dropped before conntrack");
    assert_eq!(
        through(&rs, ssh("192.0.2.1"), Hook::Input, None),
        Outcome::Accept
    );
}

#[test]
fn untracked_egress_allow_skips_normal_output_policy_and_other_traffic_goes_on() {
    let rs = stages();
    let mut reply = Packet::new(
        Hook::Output,
        ip("10.98.0.1"),
        ip("192.168.200.9"),
        UDP,
        40000,
    )
    .to_iface("eth1");
    reply.sport = 8125;
    let trace = simulate(&rs, &reply).unwrap();
    assert_eq!(trace.outcome, Outcome::Accept);
    assert_eq!(trace.after.ct, CtState::Untracked);
    let plain =
        Packet::new(Hook::Output, ip("10.98.0.1"), ip("192.0.2.1"), TCP, 443).to_iface("eth1");
    let trace = simulate(&rs, &plain).unwrap();
    assert_eq!(trace.outcome, Outcome::Accept, "host-ssh allows all egress");
    assert_eq!(trace.after.ct, CtState::New, "tracked as usual");
}

#[test]
fn pre_dnat_policy_denies_nodeports_before_dnat_to_all_but_the_allowed_network() {
    let rs = stages();
    let nodeport = |src| new_packet(src, "192.0.2.10", TCP, 30080, "eth0");
    assert_eq!(
        simulate(&rs, &nodeport("192.0.2.1")).unwrap().outcome,
        Outcome::Drop
    );
    assert_eq!(
        simulate(&rs, &nodeport("192.168.100.5")).unwrap().outcome,
        Outcome::Accept
    );
    let inside = new_packet("192.0.2.1", "10.98.0.1", TCP, 30080, "eth1");
    assert_eq!(
        simulate(&rs, &inside).unwrap().outcome,
        Outcome::Accept,
        "eth1 has no pre-DNAT policy"
    );
    let mut established = nodeport("192.0.2.1");
    established.ct = CtState::Established;
    assert_eq!(
        simulate(&rs, &established).unwrap().outcome,
        Outcome::Accept,
        "pre-DNAT policy sees new flows only"
    );
}

#[test]
fn pre_dnat_allow_still_leaves_the_packet_to_normal_policy() {
    let rs = stages();
    let to_host = new_packet("192.168.100.5", "192.0.2.10", TCP, 30080, "eth0");
    assert_eq!(
        through(&rs, to_host, Hook::Input, None),
        Outcome::Drop,
        "host policy allows only TCP 22"
    );
    // Kept to a NodePort that DNAT sends to a host across eth1 on port 80.
    let mut forwarded = new_packet("192.168.100.5", "192.0.2.10", TCP, 30080, "eth0");
    let (_, after) = arrive(&rs, forwarded.clone(), Hook::Forward, Some("eth1"));
    let mut after = after.unwrap();
    (after.dst, after.dport) = (ip("10.98.0.20"), 80);
    assert_eq!(simulate(&rs, &after).unwrap().outcome, Outcome::Accept);
    forwarded.src = ip("192.0.2.1");
    assert_eq!(
        through(&rs, forwarded, Hook::Forward, Some("eth1")),
        Outcome::Drop
    );
}

#[test]
fn apply_on_forward_policy_applies_to_traffic_forwarded_through_a_host_endpoint() {
    let rs = stages();
    let forward = |dst, dport, iif, oif| {
        let p = Packet::new(Hook::Forward, ip("192.0.2.1"), ip(dst), TCP, dport)
            .from_iface(iif)
            .to_iface(oif);
        simulate(&rs, &p).unwrap().outcome
    };
    assert_eq!(forward("10.98.0.20", 443, "eth0", "eth1"), Outcome::Accept);
    assert_eq!(
        forward("10.98.0.20", 22, "eth0", "eth1"),
        Outcome::Drop,
        "only web is forwarded in by eth0; host-ssh is not applyOnForward"
    );
    assert_eq!(
        forward("10.99.0.20", 443, "eth0", "eth1"),
        Outcome::Drop,
        "eth1's forwarded egress denies 10.99.0.0/16"
    );
    assert_eq!(
        forward("192.0.2.99", 5000, "eth1", "eth0"),
        Outcome::Accept,
        "no applyOnForward policy selects eth1 ingress nor eth0 egress: allowed"
    );
    assert_eq!(
        forward("192.0.2.99", 5000, "eth9", "eth8"),
        Outcome::Accept,
        "not a host endpoint"
    );
}

#[test]
fn without_stage_policies_no_stage_chain_or_map_is_made() {
    for case in cases() {
        // The cases with untracked, pre-DNAT or applyOnForward policies.
        let staged = ["stages", "all-interfaces", "failsafe"];
        if staged
            .iter()
            .any(|s| case.ends_with(format!("host-endpoint-{s}")))
        {
            continue;
        }
        let rs = compile_case(&case);
        for name in ["pre-dnat", "raw-prerouting", "raw-output", "from-hep-fwd"] {
            assert!(!rs.chains.contains_key(name), "{}: {name}", case.display());
        }
        assert_eq!(rs.maps.len(), 4, "{}", case.display());
    }
}
