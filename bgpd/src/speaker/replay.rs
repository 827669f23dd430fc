//! Replay tests of the speaker's [`Core`]: each script under
//! `tests/replay/speaker/` is a recorded run, inputs at their time, each
//! followed by the outputs expected, indented. The test feeds the inputs
//! and writes the transcript it gets in the same form; it must equal the
//! script. `BLESS=1` rewrites the scripts from what the core does.
//!
//! ```text
//! speaker as 65001 id 1.1.1.1 fib          -- the SpeakerConfig (first line)
//! at 0 add-peer 10.0.0.2 as 65002          -- an input, at 0 s
//!     start 10.0.0.2:179 as 65002          -- an output it must give
//! ```

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
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

/// Where a script is, for errors.
struct At<'a> {
    file: &'a Path,
    line: usize,
}

impl At<'_> {
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!("{}:{}: {what}", self.file.display(), self.line)
    }
}

fn parse<T: std::str::FromStr>(at: &At<'_>, what: &str, word: Option<&str>) -> T
where
    T::Err: std::fmt::Display,
{
    let word = word.unwrap_or_else(|| at.fail(format!("{what} expected")));
    word.parse()
        .unwrap_or_else(|e| at.fail(format!("{what} {word:?}: {e}")))
}

fn prefixes(at: &At<'_>, word: Option<&str>) -> Vec<Prefix> {
    let list: String = parse(at, "prefix list", word);
    list.split(',')
        .map(|p| parse(at, "prefix", Some(p)))
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
            "as" => config.asn = parse(at, "AS number", words.next()),
            "id" => config.router_id = parse(at, "router ID", words.next()),
            "fib" => fib = true,
            "restarting" => config.graceful_restart.restarting = true,
            "no-gr" => config.graceful_restart.enabled = false,
            "fib-sync-after" => {
                config.fib_sync_after = Duration::from_secs(parse(at, "seconds", words.next()))
            }
            other => at.fail(format!("unknown speaker setting {other:?}")),
        }
    }
    (config, fib)
}

/// `ADDR as ASN [rr-client] [next-hop-self] [passive] [password]`.
fn peer_config(at: &At<'_>, words: &mut std::str::SplitWhitespace<'_>) -> PeerConfig {
    let addr = parse(at, "peer address", words.next());
    if words.next() != Some("as") {
        at.fail("`as ASN` expected after the peer address");
    }
    let mut pc = PeerConfig::new(addr, parse(at, "AS number", words.next()));
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
        let addr: IpAddr = parse(at, "peer address", word);
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
            "announce" => Input::Announce(parse(at, "prefix", words.next()), PathAttrs::default()),
            "withdraw" => Input::Withdraw(parse(at, "prefix", words.next())),
            "add-peer" => Input::AddPeer(Box::new(peer_config(at, &mut words))),
            "update-peer" => Input::UpdatePeer(Box::new(peer_config(at, &mut words))),
            "remove-peer" => Input::RemovePeer(parse(at, "peer address", words.next())),
            "refresh" => Input::Refresh(parse(at, "peer address", words.next())),
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
                        "    {} {} for {} s received {} accepted {} advertised {}{}",
                        s.addr,
                        s.state,
                        s.since.as_secs(),
                        s.received,
                        s.accepted,
                        s.advertised,
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
        if let Some(extra) = words.next() {
            at.fail(format!("unexpected {extra:?}"));
        }
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
                        "epoch" => epoch = parse(at, "epoch", words.next()),
                        "as" => peer_as = parse(at, "AS number", words.next()),
                        "gr" => gr = Some(parse(at, "restart time", words.next())),
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
                        "via" => update.attrs.next_hop = Some(parse(at, "next hop", words.next())),
                        "path" => {
                            let list: String = parse(at, "AS list", words.next());
                            as_path = list
                                .split(',')
                                .map(|a| parse(at, "AS number", Some(a)))
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

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(T::to_string).collect();
    format!("[{}]", items.join(" "))
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

/// Runs one script, returning its transcript.
fn replay(file: &Path, script: &str) -> String {
    let mut out = String::new();
    let mut run: Option<Run> = None;
    for (i, line) in script.lines().enumerate() {
        let at = At { file, line: i + 1 };
        if line.starts_with("    ") {
            continue; // an expected output: the transcript has the real ones
        }
        out.push_str(line);
        out.push('\n');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(run) = run.as_mut() else {
            let (config, fib) = speaker(&at, line);
            let start = Instant::now();
            run = Some(Run {
                core: Core::new(&config, start, fib),
                start,
                asn: config.asn,
                peers: Vec::new(),
            });
            continue;
        };
        let Some(rest) = line.strip_prefix("at ") else {
            at.fail("an input line starts with `at SECONDS`");
        };
        let (secs, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let now = run.start + Duration::from_secs(parse(&at, "seconds", Some(secs)));
        if let Some(input) = run.input(&at, now, rest, &mut out) {
            for output in run.core.handle(now, input) {
                run.output(output, &mut out);
            }
        }
    }
    out
}

fn scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replay/speaker");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "replay"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_recorded_speaker_run_replays_to_its_expected_outputs() {
    let bless = std::env::var_os("BLESS").is_some();
    let files = scripts();
    assert!(files.len() >= 5, "scripts missing: {files:?}");
    let mut failed = Vec::new();
    for file in files {
        let script = std::fs::read_to_string(&file).unwrap();
        let got = replay(&file, &script);
        if got == script {
            continue;
        }
        if bless {
            std::fs::write(&file, &got).unwrap();
        } else {
            failed.push(format!("{}:\n{got}", file.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "transcripts differ from the scripts (BLESS=1 rewrites them):\n{}",
        failed.join("\n")
    );
}
