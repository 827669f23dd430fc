//! A workload's packet-rate and connection limits (`qosControls`) in the
//! ruleset and in the kernel (root, `nft`, `ip`, `python3`, `ping`):
//! workload `a` takes at most two connections at once, the third is
//! dropped until one closes; `b` answers at most its packet rate and burst
//! of a ping flood (one connection: the limit meets established packets
//! too).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::lab::Lab;
use common::{compile_yaml, ready};
use policy::{Netlink, converge, render};
use testkit::{Background, poll_until};

fn resources(limits: bool) -> String {
    let (a, b) = if limits {
        (
            "  qosControls: {ingressMaxConnections: 2}\n",
            "  qosControls: {ingressPacketRate: 10, ingressPacketBurst: 5}\n",
        )
    } else {
        ("", "")
    };
    format!(
        "apiVersion: projectcalico.org/v3
kind: Profile
metadata: {{name: open}}
spec:
  ingress: [{{action: Allow}}]
  egress: [{{action: Allow}}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: a, namespace: shop}}
spec:
  node: host
  interfaceName: calia
  ipNetworks: [10.201.1.1/32]
  profiles: [open]
{a}---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: b, namespace: shop}}
spec:
  node: host
  interfaceName: calib
  ipNetworks: [10.201.2.1/32]
  profiles: [open]
{b}"
    )
}

#[test]
fn connection_limits_lead_the_endpoint_chain_and_packet_rates_meet_every_packet() {
    let text = render(&compile_yaml(&resources(true)));
    assert!(
        text.contains("ct state new ct count over 2 counter drop comment \"qos: max connections\""),
        "{text}"
    );
    // Every packet to b, established or not, is looked up first.
    assert!(
        text.contains("\"calib\" : jump wl-limit-in-calib"),
        "{text}"
    );
    assert!(
        text.contains(
            "limit rate over 10/second burst 5 packets counter drop comment \"qos: packet rate"
        ),
        "{text}"
    );
    let forward = text.split("chain forward {").nth(1).unwrap();
    let first = forward.lines().find(|l| l.contains("counter")).unwrap();
    assert!(first.contains("oifname vmap @wl-limit-to"), "{forward}");
    let plain = render(&compile_yaml(&resources(false)));
    assert!(!plain.contains("qos:"), "{plain}");
}

/// Accepts TCP connections on 7100 and holds each open until its client
/// closes it.
const HOLDER: &str = r#"
import socket, threading
def hold(c):
    while c.recv(1024): pass
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7100)); s.listen(64)
while True:
    c, _ = s.accept(); threading.Thread(target=hold, args=(c,), daemon=True).start()
"#;

/// Opens argv[2] connections to argv[1]:7100 one after another, keeping
/// them open; prints 1 or 0 for each.
const OPENER: &str = r#"
import socket, sys
out, keep = "", []
for _ in range(int(sys.argv[2])):
    try:
        keep.append(socket.create_connection((sys.argv[1], 7100), timeout=1)); out += "1"
    except OSError:
        out += "0"
print(out)
"#;

fn opens(lab: &Lab, n: usize) -> String {
    let out = lab.workloads[1]
        .ns
        .cmd("python3")
        .args(["-c", OPENER, "10.201.1.1", &n.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// How many of 40 fast pings from `a` to `b` are answered.
fn answered(lab: &Lab) -> u32 {
    let out = lab.workloads[0]
        .ns
        .cmd("ping")
        .args(["-c", "40", "-i", "0.005", "-W", "1", "-q", "10.201.2.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(',')
        .find_map(|part| part.trim().strip_suffix(" received"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("ping said: {text}"))
}

#[test]
fn the_third_connection_waits_for_a_free_slot_and_a_flood_gets_its_rate() {
    if !(ready() && testkit::require_programs(&["ping"])) {
        return;
    }
    let lab = Lab::new(&["a", "b"]);
    let _holder = Background::spawn(
        lab.workloads[0]
            .ns
            .cmd("python3")
            .args(["-c", HOLDER])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let dp = Netlink::in_netns(lab.host.path()).unwrap();
    converge(&dp, &compile_yaml(&resources(false))).unwrap();
    assert!(
        poll_until(
            Duration::from_secs(10),
            Duration::from_millis(100),
            || opens(&lab, 1) == "1"
        ),
        "a's server did not answer"
    );
    assert_eq!(opens(&lab, 3), "111", "no limit");
    assert_eq!(answered(&lab), 40, "no limit");

    converge(&dp, &compile_yaml(&resources(true))).unwrap();
    // Each run's connections close when it ends, freeing the slots.
    assert_eq!(opens(&lab, 3), "110", "the third connection is dropped");
    // Closed connections leave the count (TIME_WAIT is not counted).
    assert!(
        poll_until(
            Duration::from_secs(10),
            Duration::from_millis(200),
            || opens(&lab, 2) == "11"
        ),
        "the slots did not free up"
    );
    let got = answered(&lab);
    eprintln!("{got} of 40 fast pings answered at 10/s, burst 5");
    // The burst of 5, and about one more per tenth of a second of flood.
    assert!((3..=12).contains(&got), "{got} of 40 pings answered");
}

/// Answers each UDP datagram on 7200 with the TOS byte it arrived with.
const TOS_SERVER: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVTOS", 13), 1)
s.bind(("0.0.0.0", 7200))
while True:
    data, anc, _, addr = s.recvmsg(64, socket.CMSG_SPACE(4))
    tos = anc[0][2][0] if anc else -1
    s.sendto(str(tos).encode(), addr)
"#;

/// Sends a datagram to argv[1]:7200 and prints the answer.
const TOS_CLIENT: &str = r#"
import socket, sys
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(1)
c.sendto(b"x", (sys.argv[1], 7200))
print(c.recv(64).decode())
"#;

/// The TOS byte a datagram from workload `a` arrived at `addr` with.
fn tos_at(lab: &Lab, addr: &str) -> Option<u8> {
    let out = lab.workloads[0]
        .ns
        .cmd("python3")
        .args(["-c", TOS_CLIENT, addr])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
fn dscp_marks_the_workloads_traffic_leaving_the_cluster_only() {
    if !ready() {
        return;
    }
    let lab = Lab::new(&["a", "b"]);
    let outside = testkit::Netns::new("polq").unwrap();
    testkit::veth_pair(&lab.host, "out0", &outside, "eth0").unwrap();
    lab.host.add_addr("out0", "10.99.0.254/24").unwrap();
    outside.add_addr("eth0", "10.99.0.1/24").unwrap();
    outside.ip(["link", "set", "lo", "up"]).unwrap();
    outside
        .ip(["route", "add", "10.201.0.0/16", "via", "10.99.0.254"])
        .unwrap();
    let serve = |ns: &testkit::Netns| {
        Background::spawn(
            ns.cmd("python3")
                .args(["-c", TOS_SERVER])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap()
    };
    let (_out, _b) = (serve(&outside), serve(&lab.workloads[1].ns));
    // The workloads' pool is the cluster; nothing is masqueraded.
    let config = policy::Config {
        nat_outgoing: policy::NatOutgoing::of_nets([("10.201.0.0/16".parse().unwrap(), false)]),
        ..policy::Config::default()
    };
    let marked = resources(false).replace(
        "  ipNetworks: [10.201.1.1/32]\n",
        "  ipNetworks: [10.201.1.1/32]\n  qosControls: {dscp: EF}\n",
    );
    let dp = Netlink::in_netns(lab.host.path()).unwrap();
    converge(
        &dp,
        &common::compile_yaml_with(&resources(false), config.clone()),
    )
    .unwrap();
    let answered = |addr| {
        let mut seen = None;
        poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
            seen = tos_at(&lab, addr);
            seen.is_some()
        });
        seen.unwrap_or_else(|| panic!("no answer from {addr}"))
    };
    assert_eq!(answered("10.99.0.1"), 0, "unmarked");

    let rs = common::compile_yaml_with(&marked, config);
    let text = render(&rs);
    assert!(
        text.contains("iifname \"calia\" meta nfproto ipv4 ip daddr != @dscp-cluster4"),
        "{text}"
    );
    assert!(text.contains("ip dscp set 46"), "{text}");
    converge(&dp, &rs).unwrap();
    // EF (46) in the upper six bits of the TOS byte: 0xb8.
    assert_eq!(answered("10.99.0.1"), 0xb8, "leaving the cluster");
    assert_eq!(answered("10.201.2.1"), 0, "to a pool address: unmarked");
}
