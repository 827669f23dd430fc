//! Peers added, removed and updated while the speaker runs (root, `bird`
//! and `birdc`): one in-process speaker in its own namespace, three BIRDs
//! each in another, joined by veths. A change to one peer never resets the
//! others' sessions: both our session uptime and BIRD's protocol `Since`
//! stay as they were.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bgpd::attr::PathAttrs;
use bgpd::fib::{self, Fib, FibConfig};
use bgpd::fsm::State;
use bgpd::speaker::{PeerConfig, PeerStatus, Speaker, SpeakerConfig};
use testkit::{Bird, Netns, bird, require_programs, require_root};
use tokio::net::TcpListener;

mod common;
use common::{Daemon, eventually, link, output, run, wait_for};

const OUR_AS: u32 = 65000;
const PROTO: u8 = 201;

/// Our address toward BIRD `n`, and BIRD's.
fn ours(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 96, n, 1))
}
fn theirs(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 96, n, 2))
}
fn their_as(n: u8) -> u32 {
    65100 + u32::from(n)
}
/// The route BIRD `n` originates.
fn their_route(n: u8) -> String {
    format!("10.97.{n}.0/24")
}

fn peer(n: u8) -> PeerConfig {
    PeerConfig {
        local: Some(ours(n)),
        connect_retry: Duration::from_secs(1),
        description: Some(format!("bird{n}")),
        ..PeerConfig::new(theirs(n), their_as(n))
    }
}

/// Namespace `us` linked to a fresh namespace running BIRD `n`.
fn start_bird(us: &Netns, n: u8, dir: &std::path::Path) -> (Netns, Bird) {
    let ns = Netns::new("bgprt").unwrap();
    link(
        (us, &format!("p{n}"), &[&format!("{}/24", ours(n))]),
        (&ns, "eth0", &[&format!("{}/24", theirs(n))]),
    );
    let conf = bird::bgp_conf(
        &theirs(n).to_string(),
        their_as(n),
        &[&their_route(n)],
        &[("speaker", &ours(n).to_string(), OUR_AS)],
    );
    let b = Bird::start(&ns, dir, &format!("bird{n}"), &conf).unwrap();
    (ns, b)
}

async fn status(speaker: &Speaker, n: u8) -> Option<PeerStatus> {
    speaker
        .peers()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.addr == theirs(n))
}

/// Both views of a session that must not have been reset: our uptime, and
/// BIRD's protocol line.
struct Untouched {
    n: u8,
    taken: Instant,
    since: Duration,
    bird_since: String,
}

impl Untouched {
    async fn take(speaker: &Speaker, bird: &Bird, n: u8) -> Untouched {
        let bird_since = bird.protocol("speaker").unwrap().since;
        let s = status(speaker, n).await.unwrap();
        assert_eq!(s.state, State::Established, "peer {n}");
        Untouched {
            n,
            taken: Instant::now(),
            since: s.since,
            bird_since,
        }
    }

    async fn check(&self, speaker: &Speaker, bird: &Bird) {
        // Taken after the first answer and before this question: a lower
        // bound on how much longer the session must have been up.
        let waited = self.taken.elapsed();
        let s = status(speaker, self.n).await.unwrap();
        assert_eq!(s.state, State::Established, "peer {} went down", self.n);
        assert!(
            s.since + Duration::from_millis(5) >= self.since + waited,
            "peer {}: up for {:?}, was up {:?} {:?} ago: the session was reset",
            self.n,
            s.since,
            self.since,
            waited
        );
        let p = bird.protocol("speaker").unwrap();
        assert!(
            p.info == "Established" && p.same_since(&self.bird_since),
            "BIRD {}'s session was reset: {p:?}, was up since {}",
            self.n,
            self.bird_since
        );
    }
}

#[test]
fn peers_are_added_removed_and_updated_without_resetting_the_others() {
    if !require_root() || !require_programs(&["bird", "birdc"]) {
        return;
    }
    let us = Netns::new("bgprt").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_ns1, b1) = start_bird(&us, 1, dir.path());
    let (_ns2, b2) = start_bird(&us, 2, dir.path());
    let (_ns3, b3) = start_bird(&us, 3, dir.path());
    let us_name = us.name().to_owned();
    let kernel_has = async |prefix: String| {
        output("ip", &["-n", &us_name, "route", "show", "proto", "201"])
            .await
            .contains(&prefix)
    };

    us.block_on(|| async {
        let fib = Fib::open(FibConfig {
            table: 254,
            protocol: PROTO,
        })
        .await
        .unwrap();
        let (fib, _task) = fib::spawn(fib);
        let listener = TcpListener::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 179))
            .await
            .unwrap();
        let mut config = SpeakerConfig::new(OUR_AS, Ipv4Addr::new(10, 96, 0, 1));
        config.peers = vec![peer(1), peer(2)];
        let speaker = Speaker::start(config, Some(listener), Some(fib));
        speaker
            .announce("10.99.0.0/26".parse().unwrap(), PathAttrs::default())
            .await
            .unwrap();
        eventually(
            "BIRDs 1 and 2 to learn our /26 and each other's route",
            async || {
                b1.has_route("10.99.0.0/26")
                    && b2.has_route("10.99.0.0/26")
                    && b1.has_route(&their_route(2))
                    && b2.has_route(&their_route(1))
            },
        )
        .await;
        assert!(!b3.established("speaker"), "BIRD 3 is not configured yet");

        // Adding a third peer: it comes up (accepted or connecting), and
        // the other two sessions are untouched.
        let (u1, u2) = (
            Untouched::take(&speaker, &b1, 1).await,
            Untouched::take(&speaker, &b2, 2).await,
        );
        speaker.add_peer(peer(3)).await.unwrap();
        eventually(
            "BIRD 3 to come up and learn our /26 and BIRD 1's route",
            async || {
                b3.established("speaker")
                    && b3.has_route("10.99.0.0/26")
                    && b3.has_route(&their_route(1))
            },
        )
        .await;
        eventually("our kernel to get BIRD 3's route", async || {
            kernel_has(their_route(3)).await
        })
        .await;
        u1.check(&speaker, &b1).await;
        u2.check(&speaker, &b2).await;
        let s3 = status(&speaker, 3).await.unwrap();
        assert_eq!(s3.description.as_deref(), Some("bird3"));
        assert!(matches!(
            speaker.add_peer(peer(3)).await,
            Err(bgpd::speaker::SpeakerError::DuplicatePeer(_))
        ));

        // Removing BIRD 2: Cease / Peer De-configured; its route leaves our
        // kernel and the other peers.
        let u3 = Untouched::take(&speaker, &b3, 3).await;
        assert!(kernel_has(their_route(2)).await);
        speaker.remove_peer(theirs(2)).await.unwrap();
        eventually(
            "BIRD 2's route to leave our kernel and BIRDs 1 and 3",
            async || {
                !kernel_has(their_route(2)).await
                    && !b1.has_route(&their_route(2))
                    && !b3.has_route(&their_route(2))
            },
        )
        .await;
        eventually("BIRD 2 to see Cease / Peer de-configured", async || {
            b2.received("Peer de-configured")
        })
        .await;
        assert!(status(&speaker, 2).await.is_none());
        u1.check(&speaker, &b1).await;
        u3.check(&speaker, &b3).await;

        // A description-only change resets nothing; a new hold time resets
        // BIRD 1's session only.
        let u1 = Untouched::take(&speaker, &b1, 1).await;
        let relabelled = PeerConfig {
            description: Some("global".into()),
            ..peer(1)
        };
        assert!(!speaker.update_peer(relabelled.clone()).await.unwrap());
        u1.check(&speaker, &b1).await;
        assert_eq!(
            status(&speaker, 1).await.unwrap().description.as_deref(),
            Some("global")
        );
        assert!(
            speaker
                .update_peer(PeerConfig {
                    hold_time: 30,
                    ..relabelled
                })
                .await
                .unwrap()
        );
        eventually(
            "BIRD 1 to receive Cease / Other configuration change",
            async || b1.received("Other configuration change"),
        )
        .await;
        eventually(
            "BIRD 1's session to come back with hold time 30",
            async || {
                b1.established("speaker")
                    && b1
                        .birdc(&["show", "protocols", "all", "speaker"])
                        .lines()
                        .any(|l| l.contains("Hold timer:") && l.ends_with("/30"))
                    && status(&speaker, 1)
                        .await
                        .is_some_and(|s| s.state == State::Established)
            },
        )
        .await;
        u3.check(&speaker, &b3).await;
    })
    .unwrap();
}

/// The `bgpd` daemon's YAML with BIRDs `peers` as its peers.
fn daemon_yaml(dir: &Path, peers: &[u8]) -> String {
    let mut yaml = format!(
        "router_id: 10.96.0.1\nasn: {OUR_AS}\nlisten: 0.0.0.0\n{}announce: [10.99.0.0/26]\n\
         kernel: {{ table: 254, protocol: {PROTO} }}\npeers:\n",
        Daemon::status_line(dir)
    );
    for &n in peers {
        yaml.push_str(&format!(
            "  - {{ address: {}, asn: {}, local_address: {} }}\n",
            theirs(n),
            their_as(n),
            ours(n)
        ));
    }
    yaml
}

#[test]
fn the_daemon_adds_and_removes_peers_on_sighup() {
    if !require_root() || !require_programs(&["bird", "birdc"]) {
        return;
    }
    let us = Netns::new("bgprt").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_ns1, b1) = start_bird(&us, 1, dir.path());
    let (_ns2, b2) = start_bird(&us, 2, dir.path());
    let bgpd = Daemon::start(&us, dir.path(), &daemon_yaml(dir.path(), &[1]));
    let logs = [bgpd.log.as_path()];
    let reload = |peers: &[u8]| {
        std::fs::write(dir.path().join("bgpd.yaml"), daemon_yaml(dir.path(), peers)).unwrap();
        run(Command::new("kill").args(["-HUP", &bgpd.process.id().to_string()]));
    };
    wait_for("BIRD 1 to learn our /26", &logs, || {
        b1.has_route("10.99.0.0/26")
    });
    let since1 = b1.protocol("speaker").unwrap().since;

    reload(&[1, 2]);
    wait_for("BIRD 2 to come up and learn our /26", &logs, || {
        bgpd.established(&theirs(2).to_string()) && b2.has_route("10.99.0.0/26")
    });
    let p = b1.protocol("speaker").unwrap();
    assert!(
        p.same_since(&since1),
        "BIRD 1 was reset: {p:?}, up since {since1}"
    );
    // The status socket's JSON answer lists both, in order.
    let json = run(Command::new(env!("CARGO_BIN_EXE_bgpd"))
        .args(["status", "--json"])
        .arg(&bgpd.status_socket));
    let report: bgpd::status::Report = serde_json::from_str(&json).unwrap();
    let peers: Vec<(IpAddr, &str)> = report
        .peers
        .iter()
        .map(|p| (p.addr, p.state.as_str()))
        .collect();
    assert_eq!(
        peers,
        [(theirs(1), "Established"), (theirs(2), "Established")]
    );

    reload(&[2]);
    wait_for("BIRD 1 to see Cease / Peer de-configured", &logs, || {
        b1.received("Peer de-configured")
    });
    assert!(b2.established("speaker"));
    assert!(!bgpd.status().contains(&theirs(1).to_string()));
}
