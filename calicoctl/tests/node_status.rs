//! `calicoctl node status` against a running speaker's status socket: two
//! in-process bgpd speakers peer over loopback (no root needed), one of
//! them also configured with an IPv4 and an IPv6 peer that never answer;
//! the real calicoctl binary reads the socket as it would felix's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bgpd::speaker::{PeerConfig, Speaker, SpeakerConfig};
use bgpd::status;
use tokio::net::TcpListener;

mod common;
use common::Ctl;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A peer at `addr:port` of the given kind, connecting from `local`.
fn peer(addr: IpAddr, port: u16, local: IpAddr, kind: &str) -> PeerConfig {
    PeerConfig {
        port,
        local: Some(local),
        connect_retry: Duration::from_millis(300),
        description: Some(kind.into()),
        ..PeerConfig::new(addr, 64512)
    }
}

/// The table row of `addr`: its cells.
fn row(stdout: &str, addr: &str) -> Vec<String> {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("| {addr} ")))
        .unwrap_or_else(|| panic!("no row for {addr}:\n{stdout}"))
        .split('|')
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_status_prints_established_and_waiting_peers_by_family() {
    let la = TcpListener::bind(SocketAddr::new(A, 0)).await.unwrap();
    let lb = TcpListener::bind(SocketAddr::new(B, 0)).await.unwrap();
    let (pa, pb) = (
        la.local_addr().unwrap().port(),
        lb.local_addr().unwrap().port(),
    );
    // A port nobody listens on: those peers stay in Connect/Active.
    let closed = {
        let l = std::net::TcpListener::bind((A, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let mut ca = SpeakerConfig::new(64512, Ipv4Addr::new(1, 1, 1, 1));
    ca.peers = vec![
        peer(B, pb, A, "node-to-node mesh"),
        peer(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), closed, A, "global"),
        peer(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            closed,
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            "node specific",
        ),
    ];
    let mut cb = SpeakerConfig::new(64512, Ipv4Addr::new(2, 2, 2, 2));
    cb.peers = vec![peer(A, pa, B, "node-to-node mesh")];
    let a = Speaker::start(ca, Some(la), None);
    let _b = Speaker::start(cb, Some(lb), None);

    let ctl = Ctl::new();
    let socket = ctl.dir.path().join("bgp.sock");
    let (_tx, rx) = tokio::sync::watch::channel(Some(a.handle()));
    tokio::spawn(status::serve(status::bind(&socket).unwrap(), rx));
    let socket_arg = socket.to_str().unwrap().to_owned();
    let node_status =
        || tokio::task::block_in_place(|| ctl.run(&["node", "status", "--socket", &socket_arg]));

    let mut out = String::new();
    for _ in 0..100 {
        out = node_status().ok().stdout;
        if out.contains("| 127.0.0.2 ") && row(&out, "127.0.0.2")[2] == "up" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        out.starts_with("Calico process is running.\n\nIPv4 BGP status\n"),
        "{out}"
    );
    assert!(
        out.contains("| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |"),
        "{out}"
    );
    let mesh = row(&out, "127.0.0.2");
    assert_eq!(
        (mesh[1].as_str(), mesh[2].as_str(), mesh[4].as_str()),
        ("node-to-node mesh", "up", "Established"),
        "{out}"
    );
    assert_eq!(
        mesh[3].len(),
        "23:30:04".len(),
        "SINCE is a time of day: {out}"
    );
    let global = row(&out, "127.0.0.3");
    assert_eq!(
        (global[1].as_str(), global[2].as_str()),
        ("global", "start"),
        "{out}"
    );
    assert!(
        ["Idle", "Connect", "Active"]
            .iter()
            .any(|s| global[4].starts_with(s)),
        "{out}"
    );
    let v6 = out.split("IPv6 BGP status\n").nth(1).unwrap();
    assert_eq!(row(v6, "::1")[1], "node specific", "{out}");

    // No socket: no felix.
    let missing = ctl.dir.path().join("missing.sock");
    let run = ctl
        .run(&["node", "status", "--socket", missing.to_str().unwrap()])
        .fails_with(1);
    assert_eq!(run.stdout, "Calico process is not running.\n");
    assert!(run.stderr.contains("missing.sock"), "{}", run.stderr);
}

#[test]
fn node_status_without_a_speaker_says_bgp_is_not_running() {
    let ctl = Ctl::new();
    let socket = ctl.dir.path().join("bgp.sock");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(None);
    let _guard = rt.enter();
    rt.spawn(status::serve(status::bind(&socket).unwrap(), rx));
    let run = ctl
        .run(&["node", "status", "--socket", socket.to_str().unwrap()])
        .ok();
    assert_eq!(
        run.stdout,
        "Calico process is running.\n\nThe BGP speaker is not running: BGP is not running.\n"
    );
}

/// A node's status as felix writes it, reported `age` seconds ago.
fn reported(node: &str, age: u64, peers: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = api::resources::status::rfc3339(now - age);
    format!(
        "apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {{name: {node}}}
spec: {{node: {node}, classes: [Agent, BGP], updatePeriodSeconds: 10}}
status:
  lastUpdated: {at}
  bgp:
    peersV4: {peers}
---
"
    )
}

#[test]
fn node_status_all_lists_every_nodes_sessions_with_why_one_is_down() {
    let ctl = Ctl::new();
    let since = api::resources::status::rfc3339(1_796_624_000);
    let up = format!(
        "[{{peerIP: 10.0.0.1, type: GlobalPeer, state: Established, since: {since}, prefixesReceived: 4, prefixesAdvertised: 1}}]"
    );
    let down = format!(
        "[{{peerIP: 10.0.0.12, type: NodeMesh, state: Active, since: {since}, reason: 'TCP 179 refused: nothing listens for BGP at the peer', lastError: 'TCP connection failed: Connection refused (os error 111)'}}]"
    );
    let file = ctl.write(
        "status.yaml",
        &(reported("h1", 3, &up) + &reported("h2", 4, &down) + &reported("h3", 600, &up)),
    );
    ctl.run(&["apply", "-f", file.to_str().unwrap()]).ok();

    let out = ctl.run(&["node", "status", "--all"]).ok().stdout;
    assert!(
        out.contains("| NODE | PEER ADDRESS | PEER TYPE  | STATE |"),
        "{out}"
    );
    let h1 = row(&out, "h1");
    assert_eq!(&h1[1..4], ["10.0.0.1", "GlobalPeer", "up"], "{out}");
    assert_eq!(
        (h1[5].as_str(), h1[6].as_str()),
        ("4/1", "Established"),
        "{out}"
    );
    let h2 = row(&out, "h2");
    assert_eq!(h2[3], "start", "{out}");
    assert_eq!(
        h2[6], "Active: TCP 179 refused: nothing listens for BGP at the peer",
        "{out}"
    );
    // h3 has not written for ten minutes: its felix is down.
    assert_eq!(row(&out, "h3")[6], "Established (stale)", "{out}");
    assert!(
        out.contains("\nh3: last reported 600 s ago; its felix is not running"),
        "{out}"
    );

    let one = ctl
        .run(&["node", "status", "--all", "--node", "h2"])
        .ok()
        .stdout;
    assert!(one.contains("| h2 ") && !one.contains("| h1 "), "{one}");
    let none = ctl
        .run(&["node", "status", "--all", "--node", "h9"])
        .fails_with(1);
    assert!(
        none.stderr.contains("no CalicoNodeStatus for node \"h9\""),
        "{}",
        none.stderr
    );
}
