//! The FSM fed any sequence of events at any times: it never panics, and
//! sessions come up and go down only on the matching transitions.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Duration;

use bgpd::capability::Capability;
use bgpd::fsm::{Action, Config, Event, Fsm, State};
use bgpd::open::Open;
use bgpd::prefix::AfiSafi;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let local = Open::new(
        65001,
        90,
        Ipv4Addr::new(10, 0, 0, 1),
        vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST)],
    );
    let peer = Open::new(65002, 9, Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let mut fsm = Fsm::new(Config {
        local,
        peer_as: 65002,
        connect_retry: Duration::from_secs(5),
        idle_hold: Duration::from_secs(1),
        passive: data.first().is_some_and(|b| b & 1 == 1),
    });
    let mut now = Duration::ZERO;
    for pair in data.chunks_exact(2) {
        now += Duration::from_millis(u64::from(pair[1]) * 100);
        let event = Event::from_code(pair[0], &peer);
        let before = fsm.state();
        let actions = fsm.handle(now, event);
        let up = actions
            .iter()
            .any(|a| matches!(a, Action::SessionEstablished(_)));
        let down = actions.iter().any(|a| matches!(a, Action::SessionDown(_)));
        assert_eq!(
            up,
            before == State::OpenConfirm && fsm.state() == State::Established
        );
        assert_eq!(
            down,
            before == State::Established && fsm.state() == State::Idle
        );
    }
});
