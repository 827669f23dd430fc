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
