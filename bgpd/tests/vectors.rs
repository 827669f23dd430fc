//! Wire vectors captured from BIRD 2.0.12 (see tests/vectors/README.md),
//! checked both ways: decoding gives the expected values, and encoding those
//! values gives BIRD's bytes (or, where BIRD picked another legal encoding,
//! exactly the bytes named in the test).

use std::net::{Ipv4Addr, Ipv6Addr};

use bgpd::Notification;
use bgpd::attr::{AsPath, DecodeContext, EncodeContext, LargeCommunity, NextHop, Origin};
use bgpd::capability::{Capability, GrFamily, GracefulRestart};
use bgpd::open::{Open, negotiate};
use bgpd::prefix::{AfiSafi, Prefix};
use bgpd::update::{Update, end_of_rib};
use bgpd::wire::{self, MAX_MESSAGE_LEN, MessageType};

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Frames one whole message and returns its type and body.
fn frame(bytes: &[u8]) -> (MessageType, &[u8]) {
    let (f, used) = wire::split(bytes, MAX_MESSAGE_LEN).unwrap().unwrap();
    assert_eq!(used, bytes.len(), "vector holds exactly one message");
    (f.kind, f.body)
}

fn session() -> DecodeContext {
    DecodeContext {
        four_octet_as: true,
        ibgp: false,
        families: vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST],
    }
}

const ENCODE: EncodeContext = EncodeContext {
    four_octet_as: true,
    max_message_len: MAX_MESSAGE_LEN,
};

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn bird_open() -> Vec<u8> {
    hex(include_str!("vectors/bird_open.hex"))
}

fn our_open() -> Vec<u8> {
    hex(include_str!("vectors/peer_open_sent_to_bird.hex"))
}

#[test]
fn bird_open_decodes_to_its_capabilities_and_re_encodes_to_the_same_bytes() {
    let bytes = bird_open();
    let (kind, body) = frame(&bytes);
    assert_eq!(kind, MessageType::Open);
    let open = Open::decode(body).unwrap();
    assert_eq!(
        (open.my_as, open.hold_time, open.bgp_id),
        (65001, 90, Ipv4Addr::new(10, 0, 0, 1))
    );
    assert_eq!(
        open.capabilities,
        vec![
            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
            Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::GracefulRestart(GracefulRestart {
                restarting: false,
                notification: false,
                restart_time: 120,
                families: vec![
                    GrFamily {
                        family: AfiSafi::IPV4_UNICAST,
                        forwarding_preserved: false
                    },
                    GrFamily {
                        family: AfiSafi::IPV6_UNICAST,
                        forwarding_preserved: false
                    },
                ],
            }),
            Capability::FourOctetAs(65001),
            Capability::EnhancedRouteRefresh,
            // Long-Lived Graceful Restart (71): not ours, kept and ignored.
            Capability::Unknown {
                code: 71,
                value: vec![]
            },
        ]
    );
    assert_eq!(open.encode(), bytes);
}

#[test]
fn open_we_sent_to_bird_round_trips_and_negotiates_with_birds_open() {
    let bytes = our_open();
    let ours = Open::decode(frame(&bytes).1).unwrap();
    assert_eq!(ours.encode(), bytes);
    let bird = Open::decode(frame(&bird_open()).1).unwrap();
    let n = negotiate(&ours, &bird, 65001).unwrap();
    assert_eq!(
        n.families,
        vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST]
    );
    assert!(n.four_octet_as && n.route_refresh && !n.enhanced_route_refresh && !n.is_ibgp());
    assert_eq!((n.hold_time, n.keepalive_time), (90, 30));
    assert_eq!(n.peer_graceful_restart.unwrap().restart_time, 120);
}

#[test]
fn bird_keepalive_is_ours() {
    assert_eq!(
        wire::keepalive(),
        hex(include_str!("vectors/bird_keepalive.hex"))
    );
}

#[test]
fn bird_ipv4_update_decodes_and_re_encodes_to_the_same_bytes() {
    let bytes = hex(include_str!("vectors/bird_update_ipv4.hex"));
    let (kind, body) = frame(&bytes);
    assert_eq!(kind, MessageType::Update);
    let u = Update::decode(body, &session()).unwrap();
    assert!(!u.treat_as_withdraw && u.errors.is_empty() && u.eor.is_none());
    assert_eq!(u.attrs.origin, Some(Origin::Igp));
    assert_eq!(u.attrs.as_path, Some(AsPath::sequence(vec![65001])));
    assert_eq!(u.attrs.next_hop, Some(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(u.attrs.communities, vec![(65001 << 16) | 100]);
    assert_eq!(
        u.attrs.large_communities,
        vec![LargeCommunity {
            global: 65001,
            local1: 1,
            local2: 2
        }]
    );
    assert_eq!(u.announced, vec![p("10.1.0.0/24"), p("10.1.1.0/24")]);
    assert_eq!(u.encode(&ENCODE).unwrap(), bytes);
}

#[test]
fn bird_ipv6_update_decodes_with_link_local_next_hop_and_re_encodes() {
    let bytes = hex(include_str!("vectors/bird_update_ipv6.hex"));
    let u = Update::decode(frame(&bytes).1, &session()).unwrap();
    assert!(!u.treat_as_withdraw && u.errors.is_empty());
    let mp = u.mp_reach.clone().unwrap();
    assert_eq!(mp.family, AfiSafi::IPV6_UNICAST);
    assert_eq!(
        mp.next_hop,
        NextHop::V6 {
            global: "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
            link_local: Some("fe80::407a:56ff:fecf:c08".parse::<Ipv6Addr>().unwrap()),
        }
    );
    assert_eq!(mp.prefixes, vec![p("2001:db8:1::/48")]);
    assert_eq!(u.attrs.next_hop, None);
    // BIRD sets Extended Length on MP_REACH_NLRI even for 44 bytes; we use
    // the one-byte length: flags 0x80, length 0x2c, one byte shorter.
    let mut expected = bytes.clone();
    expected.splice(23..27, [0x80, 0x0e, 0x2c]);
    expected[17] -= 1; // message length
    expected[22] -= 1; // total path attribute length
    let ours = u.encode(&ENCODE).unwrap();
    assert_eq!(ours, expected);
    assert_eq!(Update::decode(frame(&ours).1, &session()).unwrap(), u);
}

#[test]
fn bird_end_of_rib_markers_are_recognised_and_match_ours() {
    for (file, family) in [
        (
            include_str!("vectors/bird_eor_ipv4.hex"),
            AfiSafi::IPV4_UNICAST,
        ),
        (
            include_str!("vectors/bird_eor_ipv6.hex"),
            AfiSafi::IPV6_UNICAST,
        ),
    ] {
        let bytes = hex(file);
        let u = Update::decode(frame(&bytes).1, &session()).unwrap();
        assert_eq!(u.eor, Some(family));
        assert!(u.withdrawals().is_empty() && u.announcements().is_empty());
        assert_eq!(end_of_rib(family), bytes);
    }
}

#[test]
fn our_notification_for_a_short_header_matches_birds() {
    // BIRD answered a header with length 18 with this NOTIFICATION.
    let birds = hex(include_str!("vectors/bird_notification_bad_length.hex"));
    let (kind, body) = frame(&birds);
    assert_eq!(kind, MessageType::Notification);
    assert_eq!(
        Notification::decode(body).unwrap(),
        Notification::new(1, 2, [0, 18])
    );
    let mut short = vec![0xff; 16];
    short.extend_from_slice(&[0, 18, 4]);
    let ours = wire::split(&short, MAX_MESSAGE_LEN).unwrap_err();
    assert_eq!(ours.encode(MAX_MESSAGE_LEN), birds);
}
