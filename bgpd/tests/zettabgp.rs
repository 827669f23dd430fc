//! Evidence for the choice in README.md ("Why our own codec"): zettabgp
//! 0.6.0 serves as an independent reference decoder on well-formed input,
//! and each of its bugs that made us keep our own layer is shown here on
//! crafted bytes. When an upgrade fixes a bug, its test fails and says so:
//! that is the moment to revisit the choice.
//!
//! zettabgp is a dev-dependency only; the library never links it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{AssertUnwindSafe, catch_unwind};

use bgpd::attr::{AsPath, DecodeContext, EncodeContext, NextHop, Origin, PathAttrs};
use bgpd::prefix::{AfiSafi, Prefix};
use bgpd::update::{Update, pack_announcements};
use bgpd::wire::{self, MAX_MESSAGE_LEN};
use zettabgp::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

/// What a zettabgp call did.
#[derive(Debug)]
enum Outcome<T> {
    Ok(T),
    Err(String),
    Panicked,
}

fn outcome<T>(f: impl FnOnce() -> Result<T, BgpError>) -> Outcome<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Outcome::Ok(v),
        Ok(Err(e)) => Outcome::Err(format!("{e:?}")),
        Err(_) => Outcome::Panicked,
    }
}

/// Session parameters as a careful user would set them: 4-octet AS, no
/// ADD-PATH guessing.
fn params(mode: BgpTransportMode) -> BgpSessionParams {
    let mut p = BgpSessionParams::new(
        65002,
        90,
        mode,
        Ipv4Addr::new(10, 0, 0, 2),
        vec![BgpCapability::CapASN32(65002)],
    );
    p.fuzzy_pathid = false;
    p
}

fn z_decode_update(body: &[u8], mode: BgpTransportMode) -> Outcome<BgpUpdateMessage> {
    let params = params(mode);
    outcome(|| {
        let mut u = BgpUpdateMessage::new();
        u.decode_from(&params, body)?;
        Ok(u)
    })
}

/// The route content both decoders must agree on.
#[derive(Debug, PartialEq, Eq)]
struct Routes {
    prefixes: Vec<Prefix>,
    as_path: Vec<u32>,
    next_hop: Option<IpAddr>,
}

fn z_prefixes(addrs: &BgpAddrs) -> Vec<Prefix> {
    match addrs {
        BgpAddrs::None => vec![],
        BgpAddrs::IPV4U(v) => v
            .iter()
            .map(|a| Prefix::new(IpAddr::V4(a.addr), a.prefixlen).unwrap())
            .collect(),
        BgpAddrs::IPV6U(v) => v
            .iter()
            .map(|a| Prefix::new(IpAddr::V6(a.addr), a.prefixlen).unwrap())
            .collect(),
        other => panic!("unexpected NLRI kind {other:?}"),
    }
}

fn z_routes(u: &BgpUpdateMessage) -> Routes {
    let mut prefixes = z_prefixes(&u.updates);
    let mut next_hop = u.get_attr_nexthop().map(|n| n.value);
    if let Some(mp) = u.get_mpupdates() {
        prefixes.extend(z_prefixes(&mp.addrs));
        next_hop = match &mp.nexthop {
            BgpAddr::V4(a) => Some(IpAddr::V4(*a)),
            BgpAddr::V6(a) => Some(IpAddr::V6(*a)),
            other => panic!("unexpected next hop {other:?}"),
        };
    }
    let as_path = u
        .get_attr_aspath()
        .map(|path| {
            path.value
                .iter()
                .flat_map(|item| match item {
                    BgpASitem::Seq(s) => s.value.iter().map(|a| a.value).collect::<Vec<_>>(),
                    BgpASitem::Set(s) => s.value.iter().map(|a| a.value).collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    Routes {
        prefixes,
        as_path,
        next_hop,
    }
}

fn our_routes(body: &[u8]) -> Routes {
    let ctx = DecodeContext {
        four_octet_as: true,
        ibgp: false,
        families: vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST],
    };
    let u = Update::decode(body, &ctx).unwrap();
    let ann = u.announcements();
    Routes {
        prefixes: ann.iter().map(|(p, _)| *p).collect(),
        as_path: u
            .attrs
            .as_path
            .map(|a| a.asns().collect())
            .unwrap_or_default(),
        next_hop: ann.first().map(|(_, nh)| nh.addr()),
    }
}

fn body(msg: &[u8]) -> &[u8] {
    let (frame, used) = wire::split(msg, MAX_MESSAGE_LEN).unwrap().unwrap();
    assert_eq!(used, msg.len());
    frame.body
}

fn agree(msg: &[u8], mode: BgpTransportMode) -> Routes {
    let ours = our_routes(body(msg));
    match z_decode_update(body(msg), mode) {
        Outcome::Ok(z) => assert_eq!(z_routes(&z), ours, "zettabgp and bgpd disagree"),
        other => panic!("zettabgp failed on well-formed input: {other:?}"),
    }
    ours
}

// ---- (a) differential decoding on well-formed input ----

#[test]
fn zettabgp_decodes_birds_ipv4_update_as_we_do() {
    let routes = agree(
        &hex(include_str!("vectors/bird_update_ipv4.hex")),
        BgpTransportMode::IPv4,
    );
    assert_eq!(routes.prefixes, vec![p("10.1.0.0/24"), p("10.1.1.0/24")]);
    assert_eq!(routes.as_path, vec![65001]);
}

#[test]
fn zettabgp_decodes_birds_ipv6_update_as_we_do() {
    let routes = agree(
        &hex(include_str!("vectors/bird_update_ipv6.hex")),
        BgpTransportMode::IPv6,
    );
    assert_eq!(routes.prefixes, vec![p("2001:db8:1::/48")]);
}

fn attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(vec![65001, 4_200_000_000, 65003])),
        med: Some(10),
        communities: vec![(65001 << 16) | 7],
        ..PathAttrs::default()
    }
}

const ENCODE: EncodeContext = EncodeContext {
    four_octet_as: true,
    max_message_len: MAX_MESSAGE_LEN,
};

#[test]
fn zettabgp_decodes_our_ipv4_updates_as_we_do() {
    let prefixes: Vec<Prefix> = (0..1200u32)
        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap())
        .chain([p("0.0.0.0/0"), p("192.0.2.77/32"), p("172.16.0.0/12")])
        .collect();
    let nh = NextHop::V4(Ipv4Addr::new(10, 0, 0, 1));
    let msgs = pack_announcements(&attrs(), nh, &prefixes, &ENCODE).unwrap();
    assert!(msgs.len() > 1, "1200 prefixes span several UPDATEs");
    let mut seen = Vec::new();
    for m in &msgs {
        let r = agree(m, BgpTransportMode::IPv4);
        assert_eq!(r.as_path, vec![65001, 4_200_000_000, 65003]);
        assert_eq!(r.next_hop, Some(nh.addr()));
        seen.extend(r.prefixes);
    }
    assert_eq!(seen, prefixes);
}

#[test]
fn zettabgp_decodes_our_ipv6_updates_as_we_do() {
    let prefixes = vec![p("2001:db8:1::/48"), p("2001:db8:2:3::/64"), p("::/0")];
    let nh = NextHop::V6 {
        global: "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
        link_local: None,
    };
    let msgs = pack_announcements(&attrs(), nh, &prefixes, &ENCODE).unwrap();
    let r = agree(&msgs[0], BgpTransportMode::IPv6);
    assert_eq!(r.prefixes, prefixes);
    assert_eq!(r.next_hop, Some(nh.addr()));
}

// ---- (b) the bugs of zettabgp 0.6.0 listed in README.md ----

/// An UPDATE body with no withdrawals, the given attribute bytes and NLRI.
fn update_body(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

/// ORIGIN IGP, AS_PATH [65001], NEXT_HOP 10.0.0.1.
const GOOD_ATTRS: [u8; 20] = [
    0x40, 1, 1, 0, //
    0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9, //
    0x40, 3, 4, 10, 0, 0, 1,
];

fn assert_panics<T: std::fmt::Debug>(what: &str, o: Outcome<T>) {
    assert!(
        matches!(o, Outcome::Panicked),
        "{what}: zettabgp 0.6.0 panicked here; now it gives {o:?}: revisit README.md"
    );
}

#[test]
fn zettabgp_header_length_below_19_underflows() {
    let mut head = vec![0xff; 16];
    head.extend_from_slice(&[0, 5, 4]);
    let params = params(BgpTransportMode::IPv4);
    let o = outcome(|| params.decode_message_head(&head));
    if cfg!(debug_assertions) {
        assert_panics("header length 5", o);
    } else {
        // Without overflow checks the length wraps.
        assert!(matches!(o, Outcome::Ok((_, n)) if n > 60_000), "{o:?}");
    }
    // Ours: 1/2 Bad Message Length with the length as data.
    let n = wire::split(&head, MAX_MESSAGE_LEN).unwrap_err();
    assert_eq!((n.code, n.subcode, n.data), (1, 2, vec![0, 5]));
}

#[test]
fn zettabgp_panics_on_a_truncated_attribute_header() {
    assert_panics(
        "1-byte attribute field",
        z_decode_update(&update_body(&[0x40], &[]), BgpTransportMode::IPv4),
    );
}

#[test]
fn zettabgp_panics_on_a_short_mp_reach() {
    let mut a = GOOD_ATTRS.to_vec();
    a.extend_from_slice(&[0x80, 14, 2, 0, 2]);
    assert_panics(
        "MP_REACH of length 2",
        z_decode_update(&update_body(&a, &[]), BgpTransportMode::IPv4),
    );
}

#[test]
fn zettabgp_panics_on_an_overlong_mp_reach_next_hop_length() {
    let mut a = GOOD_ATTRS.to_vec();
    a.extend_from_slice(&[0x80, 14, 8, 0, 2, 1, 200, 0x20, 0x01, 0x0d, 0xb8]);
    assert_panics(
        "MP_REACH next-hop length 200",
        z_decode_update(&update_body(&a, &[]), BgpTransportMode::IPv4),
    );
}

#[test]
fn zettabgp_panics_on_a_short_mp_unreach() {
    assert_panics(
        "MP_UNREACH of length 1",
        z_decode_update(&update_body(&[0x80, 15, 1, 0], &[]), BgpTransportMode::IPv4),
    );
}

#[test]
fn zettabgp_panics_on_communities_not_a_multiple_of_4() {
    let mut a = GOOD_ATTRS.to_vec();
    a.extend_from_slice(&[0xc0, 8, 5, 0, 1, 0, 2, 9]);
    assert_panics(
        "COMMUNITIES of length 5",
        z_decode_update(&update_body(&a, &[24, 10, 1, 0]), BgpTransportMode::IPv4),
    );
}

#[test]
fn zettabgp_panics_on_large_communities_not_a_multiple_of_12() {
    let mut a = GOOD_ATTRS.to_vec();
    a.extend_from_slice(&[0xc0, 32, 13]);
    a.extend_from_slice(&[1; 13]);
    assert_panics(
        "LARGE_COMMUNITIES of length 13",
        z_decode_update(&update_body(&a, &[24, 10, 1, 0]), BgpTransportMode::IPv4),
    );
}

#[test]
fn zettabgp_decodes_end_of_rib_as_an_empty_ipv4_withdraw() {
    match z_decode_update(&[0, 0, 0, 0], BgpTransportMode::IPv4) {
        Outcome::Ok(u) => {
            assert!(matches!(&u.withdraws, BgpAddrs::IPV4U(v) if v.is_empty()));
            assert!(u.attrs.is_empty());
        }
        o => panic!("zettabgp 0.6.0 decoded End-of-RIB as a withdraw; now {o:?}"),
    }
}

#[test]
fn zettabgp_fails_a_plain_ipv4_update_in_ipv6_peer_mode() {
    let msg = hex(include_str!("vectors/bird_update_ipv4.hex"));
    let o = z_decode_update(body(&msg), BgpTransportMode::IPv6);
    assert!(
        matches!(&o, Outcome::Err(e) if e.contains("nexthop")),
        "zettabgp 0.6.0 failed with Invalid nexthop length; now {o:?}"
    );
}

#[test]
fn zettabgp_encodes_an_as_sequence_with_the_as_set_type() {
    let params = params(BgpTransportMode::IPv4);
    let item = BgpASitem::Seq(BgpASseq {
        value: vec![BgpAS::new(65001), BgpAS::new(65002)],
    });
    let mut buf = [0u8; 16];
    let n = item.encode_to(&params, &mut buf).unwrap();
    assert_eq!(n, 10);
    assert_eq!(
        buf[0], 1,
        "type 1 is AS_SET (RFC 4271 §4.3); a sequence is 2"
    );
    // Ours writes type 2.
    let mut ours = Vec::new();
    PathAttrs {
        as_path: Some(AsPath::sequence(vec![65001, 65002])),
        ..PathAttrs::default()
    }
    .encode(&ENCODE, &mut ours);
    assert_eq!(ours[3], 2);
}

fn open_body_with_caps(caps: &[u8]) -> Vec<u8> {
    let mut b = vec![4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1];
    b.push(caps.len() as u8 + 2);
    b.push(2);
    b.push(caps.len() as u8);
    b.extend_from_slice(caps);
    b
}

#[test]
fn zettabgp_rejects_an_fqdn_capability_with_a_domain_name() {
    // FQDN (73): hostname "rt1", domain "lab".
    let caps = [73, 8, 3, b'r', b't', b'1', 3, b'l', b'a', b'b'];
    let body = open_body_with_caps(&caps);
    let params = params(BgpTransportMode::IPv4);
    let o = outcome(|| {
        let mut m = BgpOpenMessage::new();
        m.decode_from(&params, &body)?;
        Ok(m)
    });
    assert!(
        matches!(&o, Outcome::Err(e) if e.contains("Invalid capability")),
        "zettabgp 0.6.0 refused this OPEN; now {o:?}"
    );
    let ours = bgpd::open::Open::decode(&body).unwrap();
    assert!(ours.capabilities.iter().any(|c| matches!(
        c,
        bgpd::capability::Capability::Fqdn { hostname, domain } if hostname == "rt1" && domain == "lab"
    )));
}

#[test]
fn zettabgp_match_caps_drops_graceful_restart_when_flags_differ() {
    let gr = |restart_state| BgpCapability::CapGR {
        restart_time: 120,
        restart_state,
        afis: vec![],
    };
    let mut local = params(BgpTransportMode::IPv4);
    local.caps.push(gr(false));
    local.match_caps(&[BgpCapability::CapASN32(65001), gr(true)]);
    assert!(
        !local
            .caps
            .iter()
            .any(|c| matches!(c, BgpCapability::CapGR { .. })),
        "zettabgp 0.6.0 lost the peer's GR capability; now {:?}",
        local.caps
    );
}

#[test]
fn zettabgp_session_params_guess_add_path_by_default() {
    let p = BgpSessionParams::new(
        65001,
        90,
        BgpTransportMode::IPv4,
        Ipv4Addr::new(10, 0, 0, 1),
        vec![],
    );
    assert!(p.fuzzy_pathid, "zettabgp 0.6.0 turned fuzzy_pathid on");
}

#[test]
fn zettabgp_fails_the_whole_update_on_one_bad_attribute() {
    // MED of length 3 among good attributes, with NLRI.
    let mut a = GOOD_ATTRS.to_vec();
    a.extend_from_slice(&[0x80, 4, 3, 0, 0, 1]);
    let body = update_body(&a, &[24, 10, 1, 0]);
    let o = z_decode_update(&body, BgpTransportMode::IPv4);
    assert!(
        matches!(o, Outcome::Err(_) | Outcome::Panicked),
        "zettabgp 0.6.0 failed this UPDATE without a NOTIFICATION code; now {o:?}"
    );
    // Ours: treat-as-withdraw of 10.1.0.0/24, with 3/5 for the log.
    let ctx = DecodeContext {
        four_octet_as: true,
        ibgp: false,
        families: vec![AfiSafi::IPV4_UNICAST],
    };
    let u = Update::decode(&body, &ctx).unwrap();
    assert!(u.treat_as_withdraw);
    assert_eq!(u.withdrawals(), vec![p("10.1.0.0/24")]);
    assert_eq!(
        (
            u.errors[0].notification.code,
            u.errors[0].notification.subcode
        ),
        (3, 5)
    );
}
