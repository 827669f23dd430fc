//! Property tests: no decoder panics, whatever the bytes, and the FSM
//! survives any sequence of events. (Fuzz targets come in a later slice;
//! these keep the decoders honest meanwhile.)

use std::net::Ipv4Addr;
use std::time::Duration;

use bgpd::Notification;
use bgpd::attr::{self, DecodeContext};
use bgpd::capability::{self, Capability};
use bgpd::fsm::{Action, Config, Event, Fsm, State};
use bgpd::open::Open;
use bgpd::prefix::AfiSafi;
use bgpd::update::Update;
use bgpd::wire::{self, Framer, MAX_MESSAGE_LEN};
use proptest::prelude::*;

fn contexts() -> [DecodeContext; 2] {
    let families = vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST];
    [
        DecodeContext {
            four_octet_as: true,
            ibgp: true,
            families: families.clone(),
        },
        DecodeContext {
            four_octet_as: false,
            ibgp: false,
            families,
        },
    ]
}

fn bird_update() -> Vec<u8> {
    let s = include_str!("vectors/bird_update_ipv6.hex").trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = wire::split(&bytes, MAX_MESSAGE_LEN);
        let _ = Open::decode(&bytes);
        let _ = capability::decode_list(&bytes);
        let _ = Notification::decode(&bytes);
        let _ = wire::RouteRefresh::decode(&bytes);
        for ctx in contexts() {
            let _ = Update::decode(&bytes, &ctx);
            let _ = attr::decode(&bytes, &ctx);
        }
    }

    #[test]
    fn framer_never_panics_and_never_returns_a_body_over_the_limit(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..300),
        marker in any::<bool>(),
    ) {
        if marker && bytes.len() >= 16 {
            bytes[..16].copy_from_slice(&wire::MARKER);
        }
        let mut f = Framer::new();
        f.push(&bytes);
        while let Ok(Some((_, body))) = f.next_message() {
            prop_assert!(body.len() + wire::HEADER_LEN <= MAX_MESSAGE_LEN);
        }
    }

    /// Random corruption of a real BIRD UPDATE reaches deeper paths than
    /// random bytes do.
    #[test]
    fn mutated_bird_update_never_panics(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut body = bird_update()[19..].to_vec();
        for (i, b) in edits {
            let at = i.index(body.len());
            body[at] = b;
        }
        for ctx in contexts() {
            if let Ok(u) = Update::decode(&body, &ctx) {
                let _ = u.withdrawals();
                let _ = u.announcements();
            }
        }
    }

    #[test]
    fn fsm_survives_any_event_sequence(events in proptest::collection::vec(0u8..16, 0..60)) {
        let local = Open::new(65001, 90, Ipv4Addr::new(10, 0, 0, 1), vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST)]);
        let peer = Open::new(65002, 9, Ipv4Addr::new(10, 0, 0, 2), vec![]);
        let mut fsm = Fsm::new(Config { local, peer_as: 65002, connect_retry: Duration::from_secs(5), idle_hold: Duration::from_secs(1), passive: false });
        for (t, e) in events.into_iter().enumerate() {
            let event = Event::from_code(e, &peer);
            let before = fsm.state();
            let actions = fsm.handle(Duration::from_secs(t as u64), event);
            let up = actions.iter().any(|a| matches!(a, Action::SessionEstablished(_)));
            let down = actions.iter().any(|a| matches!(a, Action::SessionDown(_)));
            prop_assert_eq!(up, before == State::OpenConfirm && fsm.state() == State::Established);
            prop_assert_eq!(down, before == State::Established && fsm.state() == State::Idle);
            prop_assert_eq!(fsm.negotiated().is_some(), matches!(fsm.state(), State::OpenConfirm | State::Established));
        }
    }
}
