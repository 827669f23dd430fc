//! Interop with BIRD 2 (root, `bird` and `birdc`): bgpd runs in one network
//! namespace, BIRD in another, joined by a veth. Assertions read BIRD's
//! own view (`birdc show route`) and both kernels (`ip route`), never logs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bgpd::attr::PathAttrs;
use bgpd::fib::{self, Fib, FibConfig};
use bgpd::fsm::State;
use bgpd::speaker::{PeerConfig, Speaker, SpeakerConfig};
use testkit::{require_programs, require_root};
use tokio::net::TcpListener;

mod common;
use common::{Daemon, eventually, holds_for, linked_pair, output, run, start_bird, wait_for};

const OURS: &str = "10.99.0.1";
const BIRDS: &str = "10.99.0.2";
const TABLE: u32 = 100;
const PROTO: u8 = 201;

fn bird_conf(dir: &Path) -> std::path::PathBuf {
    let conf = format!(
        "router id {BIRDS};
protocol device {{ }}
protocol kernel {{ ipv4 {{ export all; }}; }}
protocol static static1 {{ ipv4; route 10.55.0.0/24 blackhole; }}
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

#[test]
fn ebgp_ipv4_with_bird_exchanges_withdraws_and_cleans_up_on_reset() {
    if !require_root() || !require_programs(&["bird", "birdc"]) {
        return;
    }
    let (ns_us, ns_bird) = linked_pair(&[&format!("{OURS}/24")], &[&format!("{BIRDS}/24")]);
    // A route of ours left by an earlier run: reconciled away, not flushed
    // at start.
    ns_us
        .ip([
            "route",
            "add",
            "10.66.0.0/24",
            "via",
            BIRDS,
            "table",
            "100",
            "proto",
            "201",
        ])
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let conf = bird_conf(dir.path());
    let sock = dir.path().join("bird.ctl");
    let sock_s = sock.to_str().unwrap().to_owned();
    let mut bird = Some(start_bird(&ns_bird, &conf, &sock));
    let bird_ns = ns_bird.name().to_owned();
    let us_ns = ns_us.name().to_owned();
    let birdc = |args: &'static [&'static str]| {
        let sock_s = sock_s.clone();
        async move {
            let mut a = vec!["-s", &sock_s];
            a.extend_from_slice(args);
            output("birdc", &a).await
        }
    };
    let kernel = |ns: String, args: &'static [&'static str]| async move {
        let mut a = vec!["-n", &ns];
        a.extend_from_slice(args);
        testkit::without_nhid(&output("ip", &a).await)
    };
    let our_table = &["route", "show", "table", "100", "proto", "201"];

    ns_us
        .block_on(|| async {
            let fib = Fib::open(FibConfig {
                table: TABLE,
                protocol: PROTO,
            })
            .await
            .unwrap();
            assert_eq!(fib.installed().len(), 1, "the leftover route is read, kept");
            let (fib, _task) = fib::spawn(fib);
            let ours: IpAddr = OURS.parse().unwrap();
            let listener = TcpListener::bind(SocketAddr::new(ours, 179)).await.unwrap();
            let mut config = SpeakerConfig::new(65001, Ipv4Addr::new(10, 99, 0, 1));
            config.fib_sync_after = Duration::from_secs(3);
            config.peers.push(PeerConfig {
                local: Some(ours),
                connect_retry: Duration::from_secs(1),
                ..PeerConfig::new(BIRDS.parse().unwrap(), 65002)
            });
            let speaker = Speaker::start(config, Some(listener), Some(fib));
            speaker
                .announce("10.44.0.0/24".parse().unwrap(), PathAttrs::default())
                .await
                .unwrap();

            // Our route in BIRD's RIB and BIRD's kernel.
            eventually("BIRD to learn 10.44.0.0/24 from us", async || {
                let out = birdc(&["show", "route", "10.44.0.0/24", "all"]).await;
                out.contains("10.44.0.0/24") && out.contains("BGP.as_path: 65001")
            })
            .await;
            eventually("BIRD's kernel to get 10.44.0.0/24", async || {
                kernel(bird_ns.clone(), &["route", "show", "10.44.0.0/24"])
                    .await
                    .contains(&format!("via {OURS}"))
            })
            .await;
            // BIRD's static route in our Loc-RIB and our kernel table.
            eventually("our kernel table to get 10.55.0.0/24", async || {
                kernel(us_ns.clone(), our_table)
                    .await
                    .contains(&format!("10.55.0.0/24 via {BIRDS}"))
            })
            .await;
            let routes = speaker.routes().await.unwrap();
            let r = routes
                .iter()
                .find(|r| r.prefix == "10.55.0.0/24".parse().unwrap())
                .unwrap();
            assert_eq!(r.as_path, vec![65002]);
            let peers = speaker.peers().await.unwrap();
            assert_eq!(peers[0].state, State::Established);
            assert_eq!((peers[0].accepted, peers[0].advertised), (1, 1));
            // The leftover route goes once the session has converged.
            eventually(
                "the leftover 10.66.0.0/24 to be reconciled away",
                async || {
                    !kernel(us_ns.clone(), our_table)
                        .await
                        .contains("10.66.0.0/24")
                },
            )
            .await;

            // Withdraw on our side.
            speaker
                .withdraw("10.44.0.0/24".parse().unwrap())
                .await
                .unwrap();
            eventually("BIRD to drop 10.44.0.0/24", async || {
                !birdc(&["show", "route", "10.44.0.0/24"])
                    .await
                    .contains("10.44.0.0/24")
            })
            .await;

            // Withdraw on BIRD's side, then announce again.
            birdc(&["disable", "static1"]).await;
            eventually("our kernel to drop 10.55.0.0/24", async || {
                !kernel(us_ns.clone(), our_table)
                    .await
                    .contains("10.55.0.0/24")
            })
            .await;
            birdc(&["enable", "static1"]).await;
            eventually("our kernel to get 10.55.0.0/24 back", async || {
                kernel(us_ns.clone(), our_table)
                    .await
                    .contains("10.55.0.0/24")
            })
            .await;

            // Session reset: BIRD dies; its routes leave our kernel.
            let mut b = bird.take().unwrap();
            b.child_mut().kill().unwrap();
            let _ = b.child_mut().wait();
            eventually(
                "our kernel to drop BIRD's routes after the reset",
                async || kernel(us_ns.clone(), our_table).await.trim().is_empty(),
            )
            .await;
            eventually("the peer to leave Established", async || {
                speaker.peers().await.unwrap()[0].state != State::Established
            })
            .await;
        })
        .unwrap();
}

/// One session between the `bgpd` daemon and BIRD, for the daemon tests
/// below: the address family and whether it is iBGP.
#[derive(Debug, Clone, Copy)]
struct Session {
    v6: bool,
    ibgp: bool,
}

impl Session {
    /// (our address, BIRD's, prefix length of the link).
    fn addresses(self) -> (&'static str, &'static str, u8) {
        if self.v6 {
            ("fd00:99::1", "fd00:99::2", 64)
        } else {
            ("10.99.0.1", "10.99.0.2", 24)
        }
    }

    /// (our prefix, BIRD's prefix).
    fn prefixes(self) -> (&'static str, &'static str) {
        if self.v6 {
            ("2001:db8:44::/48", "2001:db8:55::/48")
        } else {
            ("10.44.0.0/24", "10.55.0.0/24")
        }
    }

    fn bird_as(self) -> u32 {
        if self.ibgp { 65001 } else { 65002 }
    }
}

/// The daemon (from its YAML file) and BIRD exchange a route each way;
/// `bgpd status` shows the session Established with 1/1/1 prefixes; BIRD
/// sees our route as iBGP (LOCAL_PREF 100) or eBGP (our AS in the path),
/// with our address as next hop; SIGTERM makes BIRD report `Administrative
/// shutdown` and drop our route.
fn daemon_session_with_bird(session: Session) {
    if !require_root() || !require_programs(&["bird", "birdc"]) {
        return;
    }
    let (ours, birds, len) = session.addresses();
    let (our_prefix, bird_prefix) = session.prefixes();
    let bird_as = session.bird_as();
    let (family, ip_family) = if session.v6 {
        ("ipv6", "-6")
    } else {
        ("ipv4", "-4")
    };
    let (ns_us, ns_bird) = linked_pair(&[&format!("{ours}/{len}")], &[&format!("{birds}/{len}")]);

    let dir = tempfile::tempdir().unwrap();
    let bird_conf = dir.path().join("bird.conf");
    std::fs::write(
        &bird_conf,
        format!(
            "router id 10.99.0.2;
protocol device {{ }}
protocol kernel {{ {family} {{ export all; }}; }}
protocol static static1 {{ {family}; route {bird_prefix} blackhole; }}
protocol bgp peer1 {{
  local {birds} as {bird_as};
  neighbor {ours} as 65001;
  connect delay time 1;
  direct;
  {family} {{ import all; export all; }};
}}
"
        ),
    )
    .unwrap();
    let bird_sock = dir.path().join("bird.ctl");
    let _bird = start_bird(&ns_bird, &bird_conf, &bird_sock);

    let listen = if session.v6 {
        format!("\"[{ours}]:179\"")
    } else {
        ours.to_owned()
    };
    let bgpd = Daemon::start(
        &ns_us,
        dir.path(),
        &format!(
            "router_id: 10.99.0.1
asn: 65001
listen: {listen}
{}peers:
  - address: {birds}
    asn: {bird_as}
    local_address: {ours}
announce: [{our_prefix}]
kernel: {{ table: 100, protocol: 201 }}
",
            Daemon::status_line(dir.path())
        ),
    );
    let log = bgpd.log.clone();
    let birdc = |args: &[&str]| {
        run(std::process::Command::new("birdc")
            .arg("-s")
            .arg(&bird_sock)
            .args(args))
    };

    let kind = if session.ibgp { "iBGP" } else { "eBGP" };
    wait_for(
        &format!("BIRD to learn {our_prefix} over {kind}"),
        &[&log],
        || {
            let out = birdc(&["show", "route", our_prefix, "all"]);
            let attrs = if session.ibgp {
                out.contains("BGP.local_pref: 100") && out.contains("BGP.as_path: \n")
            } else {
                out.contains("BGP.as_path: 65001\n")
            };
            out.contains(our_prefix) && attrs && out.contains(&format!("BGP.next_hop: {ours}"))
        },
    );
    wait_for(&format!("our kernel to get {bird_prefix}"), &[&log], || {
        ns_us
            .table_routes([ip_family, "route", "show", "table", "100", "proto", "201"])
            .unwrap()
            .contains(&format!("{bird_prefix} via {birds}"))
    });
    wait_for(
        "bgpd status to show the session and both routes",
        &[&log],
        || {
            let out = bgpd.status();
            let fields = bgpd.peer_fields(birds);
            fields.get(1..3) == Some(&[bird_as.to_string(), "Established".into()][..])
                && fields.get(4..7) == Some(&["1".into(), "1".into(), "1".into()][..])
                && out.contains(our_prefix)
                && out.contains(bird_prefix)
        },
    );

    // Stopping bgpd tells BIRD with a Cease, and BIRD drops our route.
    let status_code = bgpd.process.stop(Duration::from_secs(5)).unwrap();
    assert!(status_code.success(), "bgpd exited with {status_code}");
    wait_for("BIRD to see our Cease and drop our route", &[&log], || {
        let proto = birdc(&["show", "protocols", "all", "peer1"]);
        proto.contains("Administrative shutdown")
            && !birdc(&["show", "route", our_prefix]).contains(our_prefix)
    });
}

#[test]
fn bgpd_daemon_speaks_ibgp_over_ipv6_with_bird_and_shows_status() {
    daemon_session_with_bird(Session {
        v6: true,
        ibgp: true,
    });
}

#[test]
fn bgpd_daemon_speaks_ibgp_over_ipv4_with_bird() {
    daemon_session_with_bird(Session {
        v6: false,
        ibgp: true,
    });
}

#[test]
fn bgpd_daemon_speaks_ebgp_over_ipv6_with_bird() {
    daemon_session_with_bird(Session {
        v6: true,
        ibgp: false,
    });
}

fn md5_bird_conf(path: &Path, password: &str) {
    std::fs::write(
        path,
        format!(
            "router id 10.98.0.2;
protocol device {{ }}
protocol static static1 {{ ipv4; route 10.57.0.0/24 blackhole; }}
protocol bgp peer1 {{
  local 10.98.0.2 as 65002;
  neighbor 10.98.0.1 as 65001;
  password \"{password}\";
  connect delay time 1;
  ipv4 {{ import all; export all; }};
}}
"
        ),
    )
    .unwrap();
}

#[test]
fn tcp_md5_session_with_bird_comes_up_only_with_the_right_password() {
    if !require_root() || !require_programs(&["bird", "birdc"]) {
        return;
    }
    let (ns_us, ns_bird) = linked_pair(&["10.98.0.1/24"], &["10.98.0.2/24"]);

    let dir = tempfile::tempdir().unwrap();
    let bird_conf = dir.path().join("bird.conf");
    md5_bird_conf(&bird_conf, "not-the-password");
    let bird_sock = dir.path().join("bird.ctl");
    let _bird = start_bird(&ns_bird, &bird_conf, &bird_sock);
    let bgpd = Daemon::start(
        &ns_us,
        dir.path(),
        &format!(
            "router_id: 10.98.0.1
asn: 65001
listen: 10.98.0.1
{}peers:
  - address: 10.98.0.2
    asn: 65002
    local_address: 10.98.0.1
    password: \"s3cret md5\"
announce: [10.47.0.0/24]
",
            Daemon::status_line(dir.path())
        ),
    );
    let birdc = |args: &[&str]| {
        run(std::process::Command::new("birdc")
            .arg("-s")
            .arg(&bird_sock)
            .args(args))
    };
    let bird_established = || birdc(&["show", "protocols", "peer1"]).contains("Established");

    // With the wrong password on BIRD's side, both sides keep trying (each
    // connects to the other) and neither gets a session.
    wait_for("bgpd's status socket", &[&bgpd.log], || {
        !bgpd.peer_fields("10.98.0.2").is_empty()
    });
    holds_for(
        "no session with the wrong password",
        Duration::from_secs(6),
        &[&bgpd.log],
        || !bird_established() && !bgpd.established("10.98.0.2"),
    );
    assert!(!birdc(&["show", "route", "10.47.0.0/24"]).contains("10.47.0.0/24"));

    // The right password: the session comes up and routes flow both ways.
    md5_bird_conf(&bird_conf, "s3cret md5");
    let out = birdc(&["configure"]);
    assert!(out.contains("Reconfigur"), "birdc configure: {out}");
    wait_for("the signed session to come up", &[&bgpd.log], || {
        bird_established() && bgpd.established("10.98.0.2")
    });
    wait_for(
        "BIRD to learn 10.47.0.0/24 over the signed session",
        &[&bgpd.log],
        || birdc(&["show", "route", "10.47.0.0/24", "all"]).contains("BGP.as_path: 65001"),
    );
    wait_for("bgpd to learn 10.57.0.0/24 from BIRD", &[&bgpd.log], || {
        bgpd.status().contains("10.57.0.0/24")
    });
}
