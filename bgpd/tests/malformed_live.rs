//! Malformed input against a live speaker (root, `bird` and `birdc`): for
//! each error class of RFC 4271 §6 and RFC 7606, one row of a table says
//! what to send and what must follow.
//!
//! One in-process speaker (AS 65001, with its kernel table) has two eBGP
//! peers, each in a namespace of its own joined to ours by a veth: BIRD
//! (AS 65002), which holds an established session and announces a route,
//! and an injector played by the test (AS 65003, [`Peer`]). The speaker
//! connects to the injector; the injector answers OPEN and KEEPALIVE, then
//! for each row announces a well-formed route 10.201.ROW.0/24, waits for it
//! in our kernel, and sends the row's crafted message:
//! - session reset: the injector gets the row's NOTIFICATION code and
//!   subcode and the connection is closed; the route leaves the Loc-RIB and
//!   the kernel; the speaker connects again for the next row;
//! - treat-as-withdraw: the session stays Established (its uptime keeps
//!   growing) and the route leaves the Loc-RIB and the kernel;
//! - attribute discard: the session stays and the route is replaced by the
//!   crafted one (AS path 65003 64999), which BIRD receives from us without
//!   the faulty attribute (and had received with the well-formed one).
//!
//! After every row, BIRD's session is still Established with its uptime
//! growing and its route still in our Loc-RIB; at the end BIRD's own view of
//! the session has the same start time as before the first row, and its
//! route is in our kernel.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bgpd::fib::{self, Fib, FibConfig};
use bgpd::fsm::State;
use bgpd::speaker::{PeerConfig, PeerStatus, Speaker, SpeakerConfig};
use bgpd::wire::{self, MessageType};
use testkit::{Netns, require_programs, require_root};
use tokio::net::TcpListener;

mod common;
use common::peer::Peer;
use common::{eventually, link, linked_pair, output, start_bird};

const OURS: &str = "10.96.1.1";
const BIRDS: &str = "10.96.1.2";
const OURS_TO_INJECTOR: &str = "10.96.2.1";
const INJECTOR: &str = "10.96.2.2";
const INJECTOR_AS: u32 = 65003;
const BIRD_ROUTE: &str = "10.56.0.0/24";

/// What must follow a crafted message.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// NOTIFICATION (code, subcode), connection closed, routes gone.
    Reset(u8, u8),
    /// Session kept, the announced route removed (RFC 7606 §2).
    Withdraw,
    /// Session kept, the route installed; BIRD sees it with `kept` (if
    /// any) and without `absent` in `birdc show route all`.
    Discard {
        absent: &'static str,
        kept: Option<&'static str>,
    },
}

/// One row: what to send (given the row number, which picks the prefix
/// 10.201.ROW.0/24) and what must follow.
struct Case {
    name: &'static str,
    message: fn(u8) -> Vec<u8>,
    outcome: Outcome,
}

fn attr(flags: u8, type_code: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![flags, type_code, u8::try_from(value.len()).unwrap()];
    v.extend_from_slice(value);
    v
}

const WELL_KNOWN: u8 = 0x40;
const OPTIONAL: u8 = 0x80;
const OPTIONAL_TRANSITIVE: u8 = 0xc0;

fn segment(kind: u8, asns: &[u32]) -> Vec<u8> {
    let mut v = vec![kind, u8::try_from(asns.len()).unwrap()];
    v.extend(asns.iter().flat_map(|a| a.to_be_bytes()));
    v
}

fn origin() -> Vec<u8> {
    attr(WELL_KNOWN, 1, &[0])
}

/// The AS path of every crafted announcement (the well-formed one before
/// it has only 65003).
fn as_path() -> Vec<u8> {
    attr(WELL_KNOWN, 2, &segment(2, &[INJECTOR_AS, 64999]))
}

fn next_hop() -> Vec<u8> {
    attr(WELL_KNOWN, 3, &[10, 96, 2, 2])
}

fn community(value: u32) -> Vec<u8> {
    attr(OPTIONAL_TRANSITIVE, 8, &value.to_be_bytes())
}

/// ORIGIN, AS_PATH and NEXT_HOP, then `more`.
fn mandatory(more: &[u8]) -> Vec<u8> {
    [origin(), as_path(), next_hop(), more.to_vec()].concat()
}

fn nlri(row: u8) -> Vec<u8> {
    vec![24, 10, 201, row]
}

/// An UPDATE with consistent field lengths.
fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(withdrawn.len()).unwrap().to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    wire::encode_message(MessageType::Update, &body)
}

fn announce(row: u8, attrs: &[u8]) -> Vec<u8> {
    update(&[], attrs, &nlri(row))
}

/// The well-formed announcement made before each row's crafted message,
/// with a well-formed copy of each attribute a row discards: BIRD shows
/// them before the row, so their absence after it means something.
fn good(row: u8) -> Vec<u8> {
    let path = attr(WELL_KNOWN, 2, &segment(2, &[INJECTOR_AS]));
    let atomic_aggregate = attr(WELL_KNOWN, 6, &[]);
    let aggregator = attr(OPTIONAL_TRANSITIVE, 7, &[0, 0, 0xfd, 0xeb, 10, 96, 2, 2]);
    let attrs = [
        origin(),
        path,
        next_hop(),
        atomic_aggregate,
        aggregator,
        community(65003 << 16 | 2),
    ];
    announce(row, &attrs.concat())
}

/// MP_REACH_NLRI for IPv6 unicast with next-hop length `nh_len` (the
/// next hop has that many bytes) and `nlri`.
fn mp_reach_v6(nh_len: u8, nlri: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 2, 1, nh_len];
    v.extend((0..nh_len).map(|i| {
        if i < 2 {
            [0x20, 0x01][usize::from(i)]
        } else {
            i
        }
    }));
    v.push(0);
    v.extend_from_slice(nlri);
    attr(OPTIONAL, 14, &v)
}

/// 2001:db8:201::/48.
const V6_NLRI: [u8; 7] = [48, 0x20, 0x01, 0x0d, 0xb8, 0x02, 0x01];

fn with_header(kind: u8, length: u16, body: &[u8]) -> Vec<u8> {
    let mut m = wire::MARKER.to_vec();
    m.extend_from_slice(&length.to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

const CASES: &[Case] = &[
    Case {
        name: "marker not all ones",
        message: |_| {
            let mut m = wire::keepalive();
            m[7] = 0;
            m
        },
        outcome: Outcome::Reset(1, 1),
    },
    Case {
        name: "header length 18",
        message: |_| with_header(4, 18, &[]),
        outcome: Outcome::Reset(1, 2),
    },
    Case {
        name: "header length 4097 without extended messages",
        message: |row| {
            let mut m = announce(row, &mandatory(&[]));
            m[16..18].copy_from_slice(&4097u16.to_be_bytes());
            m
        },
        outcome: Outcome::Reset(1, 2),
    },
    Case {
        name: "unknown message type 7",
        message: |_| with_header(7, 19, &[]),
        outcome: Outcome::Reset(1, 3),
    },
    Case {
        name: "withdrawn routes length past the message",
        message: |row| {
            let body = [&[0x0f, 0xff][..], &nlri(row)].concat();
            wire::encode_message(MessageType::Update, &body)
        },
        outcome: Outcome::Reset(3, 1),
    },
    Case {
        name: "total path attribute length past the message",
        message: |row| {
            let body = [&[0, 0, 0x0f, 0xff][..], &origin(), &nlri(row)].concat();
            wire::encode_message(MessageType::Update, &body)
        },
        outcome: Outcome::Reset(3, 1),
    },
    Case {
        name: "attribute length past the attribute field",
        message: |row| announce(row, &mandatory(&[OPTIONAL_TRANSITIVE, 8, 200, 0, 0, 0, 1])),
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "truncated attribute header",
        message: |row| announce(row, &mandatory(&[OPTIONAL_TRANSITIVE, 8])),
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "MP_REACH_NLRI twice",
        message: |_| {
            let mp = mp_reach_v6(16, &V6_NLRI);
            update(&[], &[origin(), as_path(), mp.clone(), mp].concat(), &[])
        },
        outcome: Outcome::Reset(3, 1),
    },
    Case {
        name: "COMMUNITIES twice",
        message: |row| {
            let c = [community(65003 << 16 | 1), community(65003 << 16 | 2)].concat();
            announce(row, &mandatory(&c))
        },
        outcome: Outcome::Discard {
            absent: "(65003,2)",
            kept: Some("(65003,1)"),
        },
    },
    Case {
        name: "ORIGIN flagged optional",
        message: |row| {
            let o = attr(OPTIONAL_TRANSITIVE, 1, &[0]);
            announce(row, &[o, as_path(), next_hop()].concat())
        },
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "COMMUNITIES flagged well-known",
        message: |row| {
            let c = attr(WELL_KNOWN, 8, &(65003u32 << 16 | 1).to_be_bytes());
            announce(row, &mandatory(&c))
        },
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "NLRI without AS_PATH",
        message: |row| announce(row, &[origin(), next_hop()].concat()),
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "NLRI without ORIGIN",
        message: |row| announce(row, &[as_path(), next_hop()].concat()),
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "NLRI without NEXT_HOP",
        message: |row| announce(row, &[origin(), as_path()].concat()),
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "NEXT_HOP of 5 bytes",
        message: |row| {
            let nh = attr(WELL_KNOWN, 3, &[10, 96, 2, 2, 0]);
            announce(row, &[origin(), as_path(), nh].concat())
        },
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "ATOMIC_AGGREGATE of 1 byte",
        message: |row| announce(row, &mandatory(&attr(WELL_KNOWN, 6, &[0]))),
        outcome: Outcome::Discard {
            absent: "BGP.atomic_aggr",
            kept: None,
        },
    },
    Case {
        name: "AGGREGATOR of 5 bytes",
        message: |row| {
            let agg = attr(OPTIONAL_TRANSITIVE, 7, &[0, 0, 0xfd, 0xeb, 1]);
            announce(row, &mandatory(&agg))
        },
        outcome: Outcome::Discard {
            absent: "BGP.aggregator",
            kept: None,
        },
    },
    Case {
        name: "MP_REACH_NLRI with an IPv6 next-hop length of 20",
        message: |_| {
            update(
                &[],
                &[origin(), as_path(), mp_reach_v6(20, &V6_NLRI)].concat(),
                &[],
            )
        },
        outcome: Outcome::Reset(3, 9),
    },
    Case {
        name: "NLRI prefix length 33",
        message: |row| update(&[], &mandatory(&[]), &[33, 10, 201, row, 0, 0]),
        outcome: Outcome::Reset(3, 10),
    },
    Case {
        name: "MP_REACH_NLRI IPv6 prefix length 129",
        message: |_| {
            let nlri = [&[129u8][..], &[0x20; 17]].concat();
            update(
                &[],
                &[origin(), as_path(), mp_reach_v6(16, &nlri)].concat(),
                &[],
            )
        },
        outcome: Outcome::Reset(3, 9),
    },
    Case {
        name: "AS_PATH segment overrunning the attribute",
        message: |row| {
            let mut seg = segment(2, &[INJECTOR_AS, 64999]);
            seg[1] = 3;
            announce(
                row,
                &[origin(), attr(WELL_KNOWN, 2, &seg), next_hop()].concat(),
            )
        },
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "AS_PATH segment of unknown type 7",
        message: |row| {
            let seg = segment(7, &[INJECTOR_AS, 64999]);
            announce(
                row,
                &[origin(), attr(WELL_KNOWN, 2, &seg), next_hop()].concat(),
            )
        },
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "COMMUNITIES of 5 bytes",
        message: |row| announce(row, &mandatory(&attr(OPTIONAL_TRANSITIVE, 8, &[1; 5]))),
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "EXTENDED_COMMUNITIES of 9 bytes",
        message: |row| announce(row, &mandatory(&attr(OPTIONAL_TRANSITIVE, 16, &[1; 9]))),
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "LARGE_COMMUNITIES of 13 bytes",
        message: |row| announce(row, &mandatory(&attr(OPTIONAL_TRANSITIVE, 32, &[1; 13]))),
        outcome: Outcome::Withdraw,
    },
    Case {
        name: "unrecognized well-known attribute",
        message: |row| announce(row, &mandatory(&attr(WELL_KNOWN, 99, &[1]))),
        outcome: Outcome::Reset(3, 2),
    },
];

fn bird_conf(dir: &Path) -> std::path::PathBuf {
    let conf = format!(
        "router id {BIRDS};
protocol device {{ }}
protocol static static1 {{ ipv4; route {BIRD_ROUTE} blackhole; }}
protocol bgp peer1 {{
  local {BIRDS} as 65002;
  neighbor {OURS} as 65001;
  connect delay time 1;
  ipv4 {{ import all; export all; }};
}}
"
    );
    let path = dir.join("bird.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// The speaker under test and what the rows need around it.
struct Lab {
    speaker: Speaker,
    us_ns: String,
    bird_sock: String,
    injector_listener: TcpListener,
    /// The injector's session, while connected.
    injector: Option<Peer>,
}

impl Lab {
    /// The injector's connection, accepting and opening a new one if the
    /// last row reset it.
    async fn injector(&mut self) -> &mut Peer {
        if self.injector.is_none() {
            let (stream, _) =
                tokio::time::timeout(Duration::from_secs(30), self.injector_listener.accept())
                    .await
                    .expect("the speaker did not connect to the injector within 30 s")
                    .unwrap();
            let mut peer = Peer::new(stream);
            peer.handshake(INJECTOR_AS, INJECTOR.parse().unwrap(), 90)
                .await;
            self.injector = Some(peer);
        }
        self.injector.as_mut().unwrap()
    }

    /// (BIRD's session, the injector's session).
    async fn peers(&self) -> (PeerStatus, PeerStatus) {
        let mut p = self.speaker.peers().await.unwrap().into_iter();
        (p.next().unwrap(), p.next().unwrap())
    }

    async fn kernel(&self) -> String {
        let text = output(
            "ip",
            &[
                "-n",
                &self.us_ns,
                "route",
                "show",
                "table",
                "100",
                "proto",
                "201",
            ],
        )
        .await;
        testkit::without_nhid(&text)
    }

    async fn birdc(&self, args: &[&str]) -> String {
        let mut a = vec!["-s", &self.bird_sock];
        a.extend_from_slice(args);
        output("birdc", &a).await
    }

    /// The AS path of `prefix` in the Loc-RIB, if it is there.
    async fn loc_rib_path(&self, prefix: &str) -> Option<Vec<u32>> {
        let prefix = prefix.parse().unwrap();
        self.speaker
            .routes()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.prefix == prefix)
            .map(|r| r.as_path)
    }

    async fn installed(&self, prefix: &str) -> bool {
        self.loc_rib_path(prefix).await.is_some()
            && self
                .kernel()
                .await
                .contains(&format!("{prefix} via {INJECTOR}"))
    }

    async fn gone(&self, prefix: &str) -> bool {
        self.loc_rib_path(prefix).await.is_none() && !self.kernel().await.contains(prefix)
    }

    async fn run(&mut self, row: u8, case: &Case) {
        let name = case.name;
        let prefix = format!("10.201.{row}.0/24");
        let good = good(row);
        self.injector().await.send(&good).await;
        eventually(
            &format!("{name}: the well-formed {prefix} installed"),
            async || self.installed(&prefix).await,
        )
        .await;
        if let Outcome::Discard { absent, .. } = case.outcome {
            eventually(
                &format!("{name}: BIRD to get {prefix} with {absent}"),
                async || {
                    let out = self.birdc(&["show", "route", &prefix, "all"]).await;
                    out.contains("BGP.as_path: 65001 65003\n") && out.contains(absent)
                },
            )
            .await;
        }
        let (bird_before, injector_before) = self.peers().await;
        self.injector().await.send(&(case.message)(row)).await;
        match case.outcome {
            Outcome::Reset(code, subcode) => {
                let injector = self.injector.as_mut().unwrap();
                let n = injector.expect_notification().await;
                assert_eq!((n.code, n.subcode), (code, subcode), "{name}: got {n}");
                injector.expect_closed().await;
                self.injector = None;
                eventually(
                    &format!("{name}: {prefix} gone after the reset"),
                    async || self.gone(&prefix).await,
                )
                .await;
                let (_, injector) = self.peers().await;
                assert_ne!(injector.state, State::Established, "{name}");
                let error = injector.last_error.unwrap_or_default();
                assert!(error.starts_with("sent"), "{name}: last error {error:?}");
            }
            Outcome::Withdraw => {
                eventually(
                    &format!("{name}: {prefix} treated as withdrawn"),
                    async || self.gone(&prefix).await,
                )
                .await;
                self.assert_kept(name, &injector_before).await;
            }
            Outcome::Discard { absent, kept } => {
                eventually(&format!("{name}: {prefix} replaced"), async || {
                    self.loc_rib_path(&prefix).await == Some(vec![INJECTOR_AS, 64999])
                })
                .await;
                eventually(
                    &format!("{name}: BIRD to get {prefix} without {absent}"),
                    async || {
                        let out = self.birdc(&["show", "route", &prefix, "all"]).await;
                        out.contains("BGP.as_path: 65001 65003 64999")
                            && !out.contains(absent)
                            && kept.is_none_or(|k| out.contains(k))
                    },
                )
                .await;
                self.assert_kept(name, &injector_before).await;
            }
        }
        // The other peer is untouched.
        let (bird, _) = self.peers().await;
        assert_eq!(bird.state, State::Established, "{name}: BIRD's session");
        assert!(
            bird.since >= bird_before.since,
            "{name}: BIRD's session restarted"
        );
        assert!(
            self.loc_rib_path(BIRD_ROUTE).await.is_some(),
            "{name}: BIRD's route left the Loc-RIB"
        );
    }

    async fn assert_kept(&self, name: &str, before: &PeerStatus) {
        let (_, injector) = self.peers().await;
        assert_eq!(injector.state, State::Established, "{name}: session reset");
        assert!(
            injector.since >= before.since,
            "{name}: the session restarted"
        );
    }
}

/// BIRD's `show protocols` line for its session with us.
fn session_line(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("peer1"))
        .unwrap_or("")
        .to_owned()
}

/// Whether two of BIRD's `show protocols` lines show the same session: the
/// same fields, and "since" times (`HH:MM:SS.mmm`) within 50 ms of each
/// other. BIRD derives that time from its monotonic clock at each display,
/// so it moves by a millisecond from one display to the next; a reset moves
/// it by the length of the test.
fn same_session(a: &str, b: &str) -> bool {
    let since_ms = |t: &str| -> Option<i64> {
        let (hms, ms) = t.split_once('.')?;
        let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
        let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
        Some(((h * 60 + m) * 60 + s) * 1000 + ms.parse::<i64>().ok()?)
    };
    let (a, b): (Vec<&str>, Vec<&str>) = (
        a.split_whitespace().collect(),
        b.split_whitespace().collect(),
    );
    a.len() == b.len()
        && a.len() > 4
        && (0..a.len()).filter(|&i| i != 4).all(|i| a[i] == b[i])
        && since_ms(a[4])
            .zip(since_ms(b[4]))
            .is_some_and(|(x, y)| (x - y).abs() <= 50)
}

#[test]
fn a_session_line_is_the_same_session_within_a_few_milliseconds_of_since() {
    let line = "peer1      BGP        ---        up     01:07:22.166  Established   ";
    assert!(same_session(
        line,
        "peer1      BGP        ---        up     01:07:22.165  Established   "
    ));
    assert!(!same_session(
        line,
        "peer1      BGP        ---        up     01:07:25.012  Established   "
    ));
    assert!(!same_session(
        line,
        "peer1      BGP        ---        start  01:07:22.166  Active   "
    ));
    assert!(!same_session(line, ""));
}

#[test]
fn malformed_messages_get_the_rfc_7606_treatment_and_leave_the_other_peer_alone() {
    if !require_root() || !require_programs(&["bird", "birdc"]) {
        return;
    }
    let (ns_us, ns_bird) = linked_pair(&[&format!("{OURS}/24")], &[&format!("{BIRDS}/24")]);
    let ns_injector = Netns::new("bgp").unwrap();
    link(
        (&ns_us, "eth1", &[&format!("{OURS_TO_INJECTOR}/24")]),
        (&ns_injector, "eth0", &[&format!("{INJECTOR}/24")]),
    );
    // A socket stays in the namespace it was made in: the injector listens
    // in its own, and the test drives it from ours.
    let injector_listener = ns_injector
        .run(|| {
            let l = std::net::TcpListener::bind((INJECTOR, 0)).unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .unwrap();
    let injector_port = injector_listener.local_addr().unwrap().port();

    let dir = tempfile::tempdir().unwrap();
    let bird_sock = dir.path().join("bird.ctl");
    let _bird = start_bird(&ns_bird, &bird_conf(dir.path()), &bird_sock);
    let us_ns = ns_us.name().to_owned();

    ns_us
        .block_on(|| async {
            let fib = Fib::open(FibConfig {
                table: 100,
                protocol: 201,
            })
            .await
            .unwrap();
            let (fib, _task) = fib::spawn(fib);
            let ours: IpAddr = OURS.parse().unwrap();
            let listener = TcpListener::bind(SocketAddr::new(ours, 179)).await.unwrap();
            let mut config = SpeakerConfig::new(65001, Ipv4Addr::new(10, 96, 1, 1));
            config.peers.push(PeerConfig {
                local: Some(ours),
                connect_retry: Duration::from_secs(1),
                ..PeerConfig::new(BIRDS.parse().unwrap(), 65002)
            });
            config.peers.push(PeerConfig {
                port: injector_port,
                local: Some(OURS_TO_INJECTOR.parse().unwrap()),
                connect_retry: Duration::from_secs(1),
                ..PeerConfig::new(INJECTOR.parse().unwrap(), INJECTOR_AS)
            });
            let mut lab = Lab {
                speaker: Speaker::start(config, Some(listener), Some(fib)),
                us_ns: us_ns.clone(),
                bird_sock: bird_sock.to_str().unwrap().to_owned(),
                injector_listener: TcpListener::from_std(injector_listener).unwrap(),
                injector: None,
            };
            eventually("BIRD's route in our kernel", async || {
                lab.kernel()
                    .await
                    .contains(&format!("{BIRD_ROUTE} via {BIRDS}"))
            })
            .await;
            let bird_session = session_line(&lab.birdc(&["show", "protocols"]).await);
            assert!(bird_session.contains("Established"), "{bird_session}");

            for (row, case) in CASES.iter().enumerate() {
                lab.run(u8::try_from(row).unwrap(), case).await;
            }

            // BIRD saw no reset either, and its route is still ours.
            let after = session_line(&lab.birdc(&["show", "protocols"]).await);
            assert!(
                same_session(&after, &bird_session),
                "BIRD's session changed: {bird_session:?} then {after:?}"
            );
            assert!(
                lab.kernel()
                    .await
                    .contains(&format!("{BIRD_ROUTE} via {BIRDS}"))
            );
            // The injector's session still works after all that.
            lab.injector().await.send(&good(250)).await;
            eventually("a last well-formed route from the injector", async || {
                lab.installed("10.201.250.0/24").await
            })
            .await;
        })
        .unwrap();
}
