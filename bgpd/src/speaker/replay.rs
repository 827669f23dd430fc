//! Replay tests of the speaker's [`Core`] (see `crate::replay`): the
//! scripts under `tests/replay/speaker/`.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::time::Instant;

use super::core::{Answer, Core, Input, Output};
use super::{PeerConfig, SpeakerConfig};
use crate::attr::{AsPath, NextHop, Origin, PathAttrs};
use crate::capability::{GrFamily, GracefulRestart};
use crate::fsm::{DownReason, State};
use crate::notification::Notification;
use crate::open::Negotiated;
use crate::prefix::{AfiSafi, Prefix};
use crate::replay::{At, Replay, list};
use crate::rib::{Outgoing, PeerId};
use crate::session::{SessionCmd, SessionEvent};
use crate::update::Update;

/// A script's run: the core, its clock and who its peers are.
struct Run {
    core: Core,
    start: Instant,
    asn: u32,
    /// Peers by ID, as their sessions were started.
    peers: Vec<(PeerId, IpAddr)>,
}

fn prefixes(at: &At<'_>, word: Option<&str>) -> Vec<Prefix> {
    let list: String = at.parse("prefix list", word);
    list.split(',')
        .map(|p| at.parse("prefix", Some(p)))
        .collect()
}

fn family(at: &At<'_>, word: Option<&str>) -> AfiSafi {
    match word {
        Some("ipv4") => AfiSafi::IPV4_UNICAST,
        Some("ipv6") => AfiSafi::IPV6_UNICAST,
        other => at.fail(format!("family ipv4 or ipv6 expected, not {other:?}")),
    }
}

/// `speaker as ASN id ROUTER-ID [fib] [restarting] [no-gr] [fib-sync-after SECS]`.
fn speaker(at: &At<'_>, line: &str) -> (SpeakerConfig, bool) {
    let mut words = line.split_whitespace();
    if words.next() != Some("speaker") {
        at.fail("the first line is `speaker as ASN id ROUTER-ID …`");
    }
    let mut config = SpeakerConfig::new(0, Ipv4Addr::UNSPECIFIED);
    let mut fib = false;
    while let Some(word) = words.next() {
        match word {
            "as" => config.asn = at.parse("AS number", words.next()),
            "id" => config.router_id = at.parse("router ID", words.next()),
            "fib" => fib = true,
            "restarting" => config.graceful_restart.restarting = true,
            "no-gr" => config.graceful_restart.enabled = false,
            "fib-sync-after" => {
                config.fib_sync_after = Duration::from_secs(at.parse("seconds", words.next()))
            }
            other => at.fail(format!("unknown speaker setting {other:?}")),
        }
    }
    (config, fib)
}

/// `ADDR as ASN [rr-client] [next-hop-self] [passive] [password]`.
fn peer_config(at: &At<'_>, words: &mut std::str::SplitWhitespace<'_>) -> PeerConfig {
    let addr = at.parse("peer address", words.next());
    if words.next() != Some("as") {
        at.fail("`as ASN` expected after the peer address");
    }
    let mut pc = PeerConfig::new(addr, at.parse("AS number", words.next()));
    for word in words {
        match word {
            "rr-client" => pc.route_reflector_client = true,
            "next-hop-self" => pc.next_hop_self = true,
            "passive" => pc.passive = true,
            other => at.fail(format!("unknown peer setting {other:?}")),
        }
    }
    pc
}

impl Run {
    fn peer(&self, at: &At<'_>, word: Option<&str>) -> PeerId {
        let addr: IpAddr = at.parse("peer address", word);
        self.peers
            .iter()
            .rev()
            .find(|(_, a)| *a == addr)
            .map(|(id, _)| *id)
            .unwrap_or_else(|| at.fail(format!("{addr} has no session")))
    }

    fn addr(&self, id: PeerId) -> String {
        self.peers
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(format!("peer {}", id.0), |(_, a)| a.to_string())
    }

    /// One input line, or a query answered right away.
    fn input(&self, at: &At<'_>, now: Instant, line: &str, out: &mut String) -> Option<Input> {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let input = match verb {
            "announce" => Input::Announce(at.parse("prefix", words.next()), PathAttrs::default()),
            "withdraw" => Input::Withdraw(at.parse("prefix", words.next())),
            "add-peer" => Input::AddPeer(Box::new(peer_config(at, &mut words))),
            "update-peer" => Input::UpdatePeer(Box::new(peer_config(at, &mut words))),
            "remove-peer" => Input::RemovePeer(at.parse("peer address", words.next())),
            "refresh" => Input::Refresh(at.parse("peer address", words.next())),
            "not-started" => Input::NotStarted {
                peer: self.peer(at, words.next()),
                error: words.by_ref().collect::<Vec<_>>().join(" "),
            },
            "tick" => Input::Tick,
            "state" | "established" | "update" | "eor" | "route-refresh" | "down" => {
                let peer = self.peer(at, words.next());
                Input::Session(self.session_event(at, verb, peer, &mut words))
            }
            "status" => {
                for s in self.core.status(now) {
                    let _ = writeln!(
                        out,
                        "    {} {} for {} s received {} accepted {} advertised {} flaps {}{}",
                        s.addr,
                        s.state,
                        s.since.as_secs(),
                        s.received,
                        s.accepted,
                        s.advertised,
                        s.flaps,
                        s.last_error.map(|e| format!(" ({e})")).unwrap_or_default()
                    );
                }
                return None;
            }
            "routes" => {
                for r in self.core.routes() {
                    let from = r.from.map_or("local".into(), |a| a.to_string());
                    let _ = writeln!(out, "    {} from {from} via {:?}", r.prefix, r.next_hops);
                }
                return None;
            }
            "deadline" => {
                let at = self.core.next_deadline().map_or("none".into(), |d| {
                    format!("at {}", d.duration_since(self.start).as_secs())
                });
                let _ = writeln!(out, "    deadline {at}");
                return None;
            }
            other => at.fail(format!("unknown input {other:?}")),
        };
        at.done(words);
        Some(input)
    }

    fn session_event(
        &self,
        at: &At<'_>,
        verb: &str,
        peer: PeerId,
        words: &mut std::str::SplitWhitespace<'_>,
    ) -> SessionEvent {
        match verb {
            // state ADDR STATE [ERROR...]
            "state" => {
                let state = match words.next() {
                    Some("Idle") => State::Idle,
                    Some("Connect") => State::Connect,
                    Some("Active") => State::Active,
                    Some("OpenSent") => State::OpenSent,
                    Some("OpenConfirm") => State::OpenConfirm,
                    other => at.fail(format!("state name expected, not {other:?}")),
                };
                let error: Vec<&str> = words.collect();
                SessionEvent::State {
                    peer,
                    state,
                    last_error: (!error.is_empty()).then(|| error.join(" ")),
                }
            }
            // established ADDR epoch N [as ASN] [gr SECS] [no-route-refresh]
            "established" => {
                let mut epoch = 0;
                let mut peer_as = self.asn;
                let mut gr = None;
                let mut route_refresh = true;
                while let Some(word) = words.next() {
                    match word {
                        "epoch" => epoch = at.parse("epoch", words.next()),
                        "as" => peer_as = at.parse("AS number", words.next()),
                        "gr" => gr = Some(at.parse("restart time", words.next())),
                        "no-route-refresh" => route_refresh = false,
                        other => at.fail(format!("unknown session parameter {other:?}")),
                    }
                }
                let families = vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST];
                let peer_graceful_restart = gr.map(|restart_time| GracefulRestart {
                    restarting: false,
                    notification: false,
                    restart_time,
                    families: families
                        .iter()
                        .map(|&family| GrFamily {
                            family,
                            forwarding_preserved: true,
                        })
                        .collect(),
                });
                SessionEvent::Established {
                    peer,
                    epoch,
                    negotiated: Negotiated {
                        local_as: self.asn,
                        peer_as,
                        peer_id: Ipv4Addr::from(peer.0 + 1),
                        four_octet_as: true,
                        families,
                        hold_time: 90,
                        keepalive_time: 30,
                        route_refresh,
                        enhanced_route_refresh: false,
                        extended_message: false,
                        peer_graceful_restart,
                        peer_fqdn: None,
                    },
                    local_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                }
            }
            // update ADDR [announce P,P via NH [path A,B]] [withdraw P,P]
            "update" => {
                let mut update = Update::default();
                let mut as_path = Vec::new();
                while let Some(word) = words.next() {
                    match word {
                        "announce" => update.announced = prefixes(at, words.next()),
                        "withdraw" => update.withdrawn = prefixes(at, words.next()),
                        "via" => update.attrs.next_hop = Some(at.parse("next hop", words.next())),
                        "path" => {
                            let list: String = at.parse("AS list", words.next());
                            as_path = list
                                .split(',')
                                .map(|a| at.parse("AS number", Some(a)))
                                .collect();
                        }
                        other => at.fail(format!("unknown UPDATE part {other:?}")),
                    }
                }
                update.attrs.origin = Some(Origin::Igp);
                update.attrs.as_path = Some(AsPath::sequence(as_path));
                SessionEvent::Update {
                    peer,
                    update: Box::new(update),
                }
            }
            "eor" => SessionEvent::Update {
                peer,
                update: Box::new(Update {
                    eor: Some(family(at, words.next())),
                    ..Update::default()
                }),
            },
            "route-refresh" => SessionEvent::RouteRefresh {
                peer,
                family: family(at, words.next()),
            },
            "down" => SessionEvent::Down {
                peer,
                reason: match words.next() {
                    Some("connection-lost") => DownReason::ConnectionLost,
                    Some("hold-timer-expired") => DownReason::HoldTimerExpired,
                    Some("manual-stop") => DownReason::ManualStop,
                    Some("cease-received") => {
                        DownReason::NotificationReceived(Notification::new(6, 2, []))
                    }
                    other => at.fail(format!("unknown reason {other:?}")),
                },
            },
            _ => unreachable!("not a session event: {verb}"),
        }
    }

    /// Renders one output as an indented transcript line.
    fn output(&mut self, output: Output, out: &mut String) {
        let line = match output {
            Output::Answer(Answer::Done(r)) => answer(r.map(|()| String::new())),
            Output::Answer(Answer::Refreshed(r)) => answer(r.map(|f| format!(" {}", list(&f)))),
            Output::Answer(Answer::Updated(r)) => {
                answer(r.map(|reset| if reset { " reset" } else { " kept" }.to_string()))
            }
            Output::StartSession(sc) => {
                self.peers.push((sc.peer, sc.remote.ip()));
                format!("start {} as {}", sc.remote, sc.fsm.peer_as)
            }
            Output::StopSession { peer, subcode } => {
                format!("stop {} cease {subcode}", self.addr(peer))
            }
            Output::Session(peer, cmd) => {
                let to = self.addr(peer);
                match cmd {
                    SessionCmd::Send { epoch, out } => {
                        format!("send {to} epoch {epoch}{}", routes(&out))
                    }
                    SessionCmd::EndOfRib { epoch } => format!("end-of-rib {to} epoch {epoch}"),
                    SessionCmd::RouteRefresh { epoch, families } => {
                        format!("route-refresh {to} epoch {epoch} {}", list(&families))
                    }
                    other => format!("{other:?} to {to}"),
                }
            }
            Output::Fib(hops) => {
                let hops: Vec<String> = hops
                    .iter()
                    .map(|(p, h)| format!("{p} {}", list(h)))
                    .collect();
                format!("fib {}", hops.join(", "))
            }
            Output::ReconcileFib => {
                let table: Vec<String> = self
                    .core
                    .fib_table()
                    .iter()
                    .map(|(p, h)| format!("{p} {}", list(h)))
                    .collect();
                format!("reconcile-fib {}", table.join(", "))
            }
        };
        let _ = writeln!(out, "    {}", line.trim_end());
    }
}

fn answer(r: Result<String, super::SpeakerError>) -> String {
    match r {
        Ok(detail) => format!("answer ok{detail}"),
        Err(e) => format!("answer error: {e}"),
    }
}

/// `: announce P,P via NH path A,B; withdraw P,P`.
fn routes(out: &Outgoing) -> String {
    let mut s = String::new();
    for (route, prefixes) in &out.announce {
        let via = match route.next_hop {
            NextHop::V4(a) => a.to_string(),
            NextHop::V6 { global, .. } => global.to_string(),
        };
        let path: Vec<u32> = route
            .attrs
            .as_path
            .as_ref()
            .map(|p| p.asns().collect())
            .unwrap_or_default();
        let _ = write!(
            s,
            "; announce {} via {via} path {}",
            list(prefixes),
            list(&path)
        );
    }
    if !out.withdraw.is_empty() {
        let _ = write!(s, "; withdraw {}", list(&out.withdraw));
    }
    s.replacen(';', ":", 1)
}

impl Replay for Run {
    fn start(at: &At<'_>, line: &str) -> Self {
        let (config, fib) = speaker(at, line);
        let start = Instant::now();
        Run {
            core: Core::new(&config, start, fib),
            start,
            asn: config.asn,
            peers: Vec::new(),
        }
    }

    fn step(&mut self, at: &At<'_>, now: Duration, line: &str, out: &mut String) {
        let now = self.start + now;
        if let Some(input) = self.input(at, now, line, out) {
            for output in self.core.handle(now, input) {
                self.output(output, out);
            }
        }
    }
}

#[test]
fn every_recorded_speaker_run_replays_to_its_expected_outputs() {
    crate::replay::check::<Run>("speaker", 7);
}
