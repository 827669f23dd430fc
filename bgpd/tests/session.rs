//! The session task against a scripted peer on loopback: the test plays
//! the remote speaker byte by byte, so what bgpd sends is checked exactly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bgpd::attr::{AsPath, NextHop, Origin, PathAttrs};
use bgpd::capability::Capability;
use bgpd::fsm::State;
use bgpd::open::Open;
use bgpd::prefix::{AfiSafi, Prefix};
use bgpd::speaker::{PeerConfig, Speaker, SpeakerConfig};
use bgpd::update::pack_announcements;
use bgpd::wire::{self, Framer, MessageType, RouteRefresh};
use tokio::net::TcpListener;

mod common;
use common::peer::Peer;

const US: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

/// Starts a speaker (AS 65001) with one active peer (AS 65002) played by
/// the test, and brings the session to Established with hold time `hold`.
async fn established(hold: u16) -> (Speaker, Peer) {
    let listener = TcpListener::bind(SocketAddr::new(PEER, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = SpeakerConfig::new(65001, Ipv4Addr::new(1, 1, 1, 1));
    config.peers.push(PeerConfig {
        port,
        local: Some(US),
        connect_retry: Duration::from_millis(200),
        ..PeerConfig::new(PEER, 65002)
    });
    let speaker = Speaker::start(config, None, None);
    let (stream, _) = listener.accept().await.unwrap();
    let mut peer = Peer {
        stream,
        framer: Framer::new(),
    };
    let (kind, body) = peer.recv().await.unwrap();
    assert_eq!(kind, MessageType::Open);
    let theirs = Open::decode(&body).unwrap();
    assert_eq!(theirs.asn(), 65001);
    assert!(theirs.capabilities.contains(&Capability::RouteRefresh));
    let ours = Open::new(
        65002,
        hold,
        Ipv4Addr::new(2, 2, 2, 2),
        vec![
            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
            Capability::RouteRefresh,
        ],
    );
    peer.send(&ours.encode()).await;
    peer.send(&wire::keepalive()).await;
    assert_eq!(peer.recv().await.unwrap().0, MessageType::Keepalive);
    (speaker, peer)
}

fn announcement(prefix: &str, attrs: &PathAttrs) -> Vec<u8> {
    let ctx = bgpd::attr::EncodeContext {
        four_octet_as: true,
        max_message_len: wire::MAX_MESSAGE_LEN,
    };
    pack_announcements(
        attrs,
        NextHop::V4(Ipv4Addr::new(127, 0, 0, 2)),
        &[p(prefix)],
        &ctx,
    )
    .unwrap()
    .remove(0)
}

fn peer_attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(vec![65002])),
        ..PathAttrs::default()
    }
}

async fn has_route(s: &Speaker, prefix: &str) -> bool {
    s.routes()
        .await
        .unwrap()
        .iter()
        .any(|r| r.prefix == p(prefix))
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn new_session_gets_the_table_then_end_of_rib() {
    let (speaker, mut peer) = established(90).await;
    speaker
        .announce(p("10.1.0.0/24"), PathAttrs::default())
        .await
        .unwrap();
    // Announced after Established: either in the initial table or right
    // after End-of-RIB.
    let mut seen = Vec::new();
    let mut eor = false;
    while seen.is_empty() || !eor {
        let u = peer.recv_update().await;
        eor |= u.eor == Some(AfiSafi::IPV4_UNICAST);
        seen.extend(u.announcements());
    }
    assert_eq!(
        seen,
        vec![(p("10.1.0.0/24"), NextHop::V4(Ipv4Addr::new(127, 0, 0, 1)))]
    );
}

#[tokio::test]
async fn route_refresh_gets_the_adj_rib_out_again() {
    let (speaker, mut peer) = established(90).await;
    speaker
        .announce(p("10.1.0.0/24"), PathAttrs::default())
        .await
        .unwrap();
    let mut got = 0;
    while got < 1 {
        got += peer.recv_update().await.announcements().len();
    }
    peer.send(
        &RouteRefresh {
            family: AfiSafi::IPV4_UNICAST,
        }
        .encode(),
    )
    .await;
    loop {
        let u = peer.recv_update().await;
        if !u.announcements().is_empty() {
            assert_eq!(u.announced, vec![p("10.1.0.0/24")]);
            assert_eq!(u.attrs.as_path, Some(AsPath::sequence(vec![65001])));
            break;
        }
    }
}

#[tokio::test]
async fn malformed_nlri_is_answered_with_3_10_and_the_session_resets() {
    let (speaker, mut peer) = established(90).await;
    peer.send(&announcement("10.9.0.0/24", &peer_attrs())).await;
    eventually("the route to be learned", async || {
        has_route(&speaker, "10.9.0.0/24").await
    })
    .await;
    // Same UPDATE with the prefix length byte made 33.
    let mut bad = announcement("10.9.0.0/24", &peer_attrs());
    let at = bad.len() - 4;
    bad[at] = 33;
    peer.send(&bad).await;
    let n = peer.expect_notification().await;
    assert_eq!((n.code, n.subcode), (3, 10));
    peer.expect_closed().await;
    eventually("the peer's routes to go", async || {
        !has_route(&speaker, "10.9.0.0/24").await
    })
    .await;
    let status = &speaker.peers().await.unwrap()[0];
    assert_ne!(status.state, State::Established);
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("sent"),
        "{:?}",
        status.last_error
    );
}

#[tokio::test]
async fn malformed_origin_withdraws_the_route_and_keeps_the_session() {
    let (speaker, mut peer) = established(90).await;
    peer.send(&announcement("10.9.0.0/24", &peer_attrs())).await;
    eventually("the route to be learned", async || {
        has_route(&speaker, "10.9.0.0/24").await
    })
    .await;
    // ORIGIN with value 7: treat-as-withdraw (RFC 7606 §7.1).
    let mut bad = announcement("10.9.0.0/24", &peer_attrs());
    let origin = bad
        .windows(3)
        .position(|w| w == [0x40, 1, 1])
        .expect("ORIGIN attribute");
    bad[origin + 3] = 7;
    peer.send(&bad).await;
    eventually("the route to be withdrawn", async || {
        !has_route(&speaker, "10.9.0.0/24").await
    })
    .await;
    let status = &speaker.peers().await.unwrap()[0];
    assert_eq!(status.state, State::Established);
    assert_eq!((status.received, status.accepted), (0, 0));
}

#[tokio::test]
async fn silent_peer_gets_hold_timer_expired_after_the_negotiated_hold_time() {
    let (_speaker, mut peer) = established(3).await;
    let started = tokio::time::Instant::now();
    // We never send a KEEPALIVE; bgpd's keepalives (every 1 s) are skipped.
    let n = peer.expect_notification().await;
    assert_eq!((n.code, n.subcode), (4, 0));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
}

#[tokio::test]
async fn peer_with_the_wrong_as_gets_bad_peer_as() {
    let listener = TcpListener::bind(SocketAddr::new(PEER, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = SpeakerConfig::new(65001, Ipv4Addr::new(1, 1, 1, 1));
    config.peers.push(PeerConfig {
        port,
        local: Some(US),
        ..PeerConfig::new(PEER, 65002)
    });
    let _speaker = Speaker::start(config, None, None);
    let (stream, _) = listener.accept().await.unwrap();
    let mut peer = Peer {
        stream,
        framer: Framer::new(),
    };
    assert_eq!(peer.recv().await.unwrap().0, MessageType::Open);
    peer.send(&Open::new(65099, 90, Ipv4Addr::new(2, 2, 2, 2), vec![]).encode())
        .await;
    let n = peer.expect_notification().await;
    assert_eq!((n.code, n.subcode), (2, 2));
}

/// Both sides connect and bgpd sends its OPEN on both. Returns the speaker,
/// the connection bgpd initiated, and the one the peer initiated.
async fn two_connections() -> (Speaker, Peer, Peer) {
    let peer_listener = TcpListener::bind(SocketAddr::new(PEER, 0)).await.unwrap();
    let peer_port = peer_listener.local_addr().unwrap().port();
    let our_listener = TcpListener::bind(SocketAddr::new(US, 0)).await.unwrap();
    let our_port = our_listener.local_addr().unwrap().port();
    let mut config = SpeakerConfig::new(65001, Ipv4Addr::new(1, 1, 1, 1));
    config.peers.push(PeerConfig {
        port: peer_port,
        local: Some(US),
        ..PeerConfig::new(PEER, 65002)
    });
    let speaker = Speaker::start(config, Some(our_listener), None);
    let (stream, _) = peer_listener.accept().await.unwrap();
    let mut outbound = Peer {
        stream,
        framer: Framer::new(),
    };
    assert_eq!(outbound.recv().await.unwrap().0, MessageType::Open);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(PEER, 0)).unwrap();
    let stream = socket.connect(SocketAddr::new(US, our_port)).await.unwrap();
    let mut inbound = Peer {
        stream,
        framer: Framer::new(),
    };
    assert_eq!(inbound.recv().await.unwrap().0, MessageType::Open);
    (speaker, outbound, inbound)
}

fn peer_open(peer_id: Ipv4Addr) -> Vec<u8> {
    Open::new(
        65002,
        90,
        peer_id,
        vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST)],
    )
    .encode()
}

/// Both sides connect; the peer sends its OPEN on both connections, with
/// BGP identifier `peer_id`. Returns (the connection bgpd initiated, the
/// one the peer initiated) after bgpd has answered both OPENs, and the
/// speaker.
async fn collide(peer_id: Ipv4Addr) -> (Speaker, Peer, Peer) {
    let (speaker, mut outbound, mut inbound) = two_connections().await;
    let open = peer_open(peer_id);
    outbound.send(&open).await;
    assert_eq!(outbound.recv().await.unwrap().0, MessageType::Keepalive);
    inbound.send(&open).await;
    (speaker, outbound, inbound)
}

#[tokio::test]
async fn collision_keeps_the_connection_of_the_peer_with_the_higher_identifier() {
    // The peer's identifier is higher: its connection (our inbound) wins.
    let (speaker, mut outbound, mut inbound) = collide(Ipv4Addr::new(2, 2, 2, 2)).await;
    assert_eq!(inbound.recv().await.unwrap().0, MessageType::Keepalive);
    let n = outbound.expect_notification().await;
    assert_eq!((n.code, n.subcode), (6, 7));
    outbound.expect_closed().await;
    inbound.send(&wire::keepalive()).await;
    eventually("the surviving session to be Established", async || {
        speaker.peers().await.unwrap()[0].state == State::Established
    })
    .await;
    speaker
        .announce(p("10.1.0.0/24"), PathAttrs::default())
        .await
        .unwrap();
    loop {
        if !inbound.recv_update().await.announced.is_empty() {
            break;
        }
    }
}

#[tokio::test]
async fn collision_keeps_our_connection_when_our_identifier_is_higher() {
    let (speaker, mut outbound, mut inbound) = collide(Ipv4Addr::new(0, 0, 0, 9)).await;
    let n = inbound.expect_notification().await;
    assert_eq!((n.code, n.subcode), (6, 7));
    inbound.expect_closed().await;
    outbound.send(&wire::keepalive()).await;
    eventually("our session to be Established", async || {
        speaker.peers().await.unwrap()[0].state == State::Established
    })
    .await;
}

#[tokio::test]
async fn inbound_connection_established_while_ours_is_opening_gets_the_table() {
    // The peer answers only on the connection it initiated; ours stays in
    // OpenSent. The session runs on the inbound one, routes included.
    let (speaker, _outbound, mut inbound) = two_connections().await;
    speaker
        .announce(p("10.1.0.0/24"), PathAttrs::default())
        .await
        .unwrap();
    inbound.send(&peer_open(Ipv4Addr::new(2, 2, 2, 2))).await;
    inbound.send(&wire::keepalive()).await;
    let mut seen = Vec::new();
    let mut eor = false;
    while seen.is_empty() || !eor {
        let u = inbound.recv_update().await;
        eor |= u.eor == Some(AfiSafi::IPV4_UNICAST);
        seen.extend(u.announced);
    }
    assert_eq!(seen, vec![p("10.1.0.0/24")]);
    assert_eq!(speaker.peers().await.unwrap()[0].state, State::Established);
}

#[tokio::test]
async fn a_dropped_speaker_sends_cease_administrative_shutdown() {
    let (speaker, mut peer) = established(90).await;
    drop(speaker);
    let n = peer.expect_notification().await;
    assert_eq!((n.code, n.subcode), (6, 2), "{n}");
}

#[tokio::test]
async fn an_abandoned_speaker_closes_without_a_notification() {
    // What felix does when it exits for a restart: the peer sees the
    // connection go and, helping with graceful restart, keeps the routes.
    let (speaker, mut peer) = established(90).await;
    speaker.abandon();
    while let Some((kind, _)) = peer.recv().await {
        // The initial table's End-of-RIB may come first.
        assert_ne!(kind, MessageType::Notification);
    }
}
