//! Replay tests of the [`PeerFsm`] (see `crate::replay`): the scripts
//! under `tests/replay/peer-fsm/`, connection collisions above all.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::{ConnId, Input, Output, PeerFsm};
use crate::capability::Capability;
use crate::fsm::{self, Action, Event};
use crate::notification::Notification;
use crate::open::Open;
use crate::prefix::AfiSafi;
use crate::replay::{At, Replay};

/// A script's run: the FSM and the peer's settings, for its OPENs.
struct Run {
    fsm: PeerFsm,
    peer_as: u32,
    hold_time: u16,
}

fn capabilities() -> Vec<Capability> {
    vec![
        Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
        Capability::RouteRefresh,
    ]
}

fn conn(at: &At<'_>, word: Option<&str>) -> ConnId {
    ConnId(at.parse("connection number", word))
}

impl Run {
    /// One input line: `start`, `incoming`, `stop [cease N]`, or an event
    /// of connection N: `connected N`, `connect-failed N ERROR...`, `open N id ID [as ASN]`,
    /// `keepalive N`, `update N`, `fails N`, `timer N NAME`,
    /// `notification N CODE SUBCODE`.
    fn input(&self, at: &At<'_>, line: &str) -> Input {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let input = match verb {
            "start" => Input::Start,
            "incoming" => Input::Incoming,
            "stop" => Input::Stop(match words.next() {
                Some("cease") => Event::ManualStopCease(at.parse("subcode", words.next())),
                None => Event::ManualStop,
                Some(other) => at.fail(format!("`stop` or `stop cease N`, not {other:?}")),
            }),
            "connected" => Input::Connected(conn(at, words.next())),
            "connect-failed" => {
                let id = conn(at, words.next());
                let error: Vec<&str> = words.by_ref().collect();
                Input::ConnectFailed(id, error.join(" "))
            }
            _ => {
                let id = conn(at, words.next());
                let event = match verb {
                    "open" => {
                        let mut bgp_id = Ipv4Addr::UNSPECIFIED;
                        let mut asn = self.peer_as;
                        while let Some(word) = words.next() {
                            match word {
                                "id" => bgp_id = at.parse("BGP identifier", words.next()),
                                "as" => asn = at.parse("AS number", words.next()),
                                other => at.fail(format!("unknown OPEN part {other:?}")),
                            }
                        }
                        Event::BgpOpen(Open::new(asn, self.hold_time, bgp_id, capabilities()))
                    }
                    "keepalive" => Event::KeepAliveMsg,
                    "update" => Event::UpdateMsg,
                    "fails" => Event::TcpConnectionFails,
                    "timer" => match words.next() {
                        Some("connect-retry") => Event::ConnectRetryTimerExpires,
                        Some("hold") => Event::HoldTimerExpires,
                        Some("keepalive") => Event::KeepaliveTimerExpires,
                        Some("idle-hold") => Event::IdleHoldTimerExpires,
                        other => at.fail(format!("unknown timer {other:?}")),
                    },
                    "notification" => Event::NotifMsg(Notification::new(
                        at.parse("code", words.next()),
                        at.parse("subcode", words.next()),
                        [],
                    )),
                    other => at.fail(format!("unknown input {other:?}")),
                };
                Input::Event(id, event)
            }
        };
        at.done(words);
        input
    }
}

/// How an output reads in a transcript.
fn render(output: &Output) -> String {
    match output {
        Output::Act(ConnId(n), action) => {
            let action = match action {
                Action::Connect => "connect".to_string(),
                Action::CloseConnection => "close".to_string(),
                Action::SendOpen(_) => "send OPEN".to_string(),
                Action::SendKeepalive => "send KEEPALIVE".to_string(),
                Action::SendNotification(n) => format!("send NOTIFICATION {n}"),
                Action::StartTimer(t, d) => format!("start {t:?} timer {}s", d.as_secs()),
                Action::StopTimer(t) => format!("stop {t:?} timer"),
                Action::SessionEstablished(n) => format!("established with {}", n.peer_id),
                Action::SessionDown(r) => format!("down: {}", super::reason_text(r)),
            };
            format!("conn {n}: {action}")
        }
        Output::Attach(ConnId(n)) => format!("attach to conn {n}"),
        Output::Refuse => "refuse".to_string(),
        Output::Release(ConnId(n)) => format!("release conn {n}"),
        Output::State { state, last_error } => match last_error {
            Some(e) => format!("state {state} ({e})"),
            None => format!("state {state}"),
        },
    }
}

impl Replay for Run {
    /// `session as ASN id ID peer-as ASN [hold SECS] [passive]`.
    fn start(at: &At<'_>, line: &str) -> Self {
        let mut words = line.split_whitespace();
        if words.next() != Some("session") {
            at.fail("the first line is `session as ASN id ID peer-as ASN …`");
        }
        let (mut asn, mut bgp_id, mut peer_as) = (0, Ipv4Addr::UNSPECIFIED, 0);
        let (mut hold_time, mut passive) = (90, false);
        while let Some(word) = words.next() {
            match word {
                "as" => asn = at.parse("AS number", words.next()),
                "id" => bgp_id = at.parse("BGP identifier", words.next()),
                "peer-as" => peer_as = at.parse("AS number", words.next()),
                "hold" => hold_time = at.parse("hold time", words.next()),
                "passive" => passive = true,
                other => at.fail(format!("unknown session setting {other:?}")),
            }
        }
        let config = fsm::Config {
            local: Open::new(asn, hold_time, bgp_id, capabilities()),
            peer_as,
            connect_retry: Duration::from_secs(120),
            idle_hold: Duration::from_secs(1),
            passive,
        };
        Run {
            fsm: PeerFsm::new(config),
            peer_as,
            hold_time,
        }
    }

    fn step(&mut self, at: &At<'_>, now: Duration, line: &str, out: &mut String) {
        let input = self.input(at, line);
        for output in self.fsm.handle(now, input) {
            let _ = writeln!(out, "    {}", render(&output));
        }
    }
}

#[test]
fn every_recorded_connection_run_replays_to_its_expected_outputs() {
    crate::replay::check::<Run>("peer-fsm", 5);
}
