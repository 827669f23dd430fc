//! Graceful restart (RFC 4724) against real daemons (root; `bird`/`birdc`,
//! `gobgpd`/`gobgp`), both roles, with the `bgpd` daemon in one namespace
//! and the other daemon in another, joined by a veth. Daemons "crash" with
//! SIGKILL, so the peer sees the TCP connection close without a
//! NOTIFICATION. Assertions read `birdc`, `gobgp` and both kernels.
//!
//! - BIRD as helper: BIRD keeps our routes (and its kernel routes) while
//!   bgpd is down; the restarted bgpd (R and F bits, since its kernel table
//!   still holds its routes) refreshes them, and the one it no longer
//!   announces goes at our End-of-RIB.
//! - bgpd as helper: BIRD's routes stay in our kernel while BIRD is down;
//!   BIRD back (`bird -R`) without one of them: it goes at BIRD's
//!   End-of-RIB; BIRD not back: they go when its restart time runs out.
//! - GoBGP: the same in both directions.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{Netns, require_programs, require_root};

mod common;
use common::gobgp::{self, GoBgp};
use common::{Daemon, holds_for, linked_pair, run, start_bird, start_bird_recovering, wait_for};

/// The `bgpd` daemon's YAML: one eBGP peer, the kernel table 100 with
/// protocol 201, `announce` and a GR restart time of 30 s.
fn bgpd_yaml(dir: &Path, ours: &str, peer: &str, peer_as: u32, announce: &str) -> String {
    format!(
        "router_id: {ours}
asn: 65001
listen: {ours}
{}peers:
  - address: {peer}
    asn: {peer_as}
    local_address: {ours}
announce: [{announce}]
kernel: {{ table: 100, protocol: 201 }}
graceful_restart: {{ restart_time: 30, stale_time: 20 }}
",
        Daemon::status_line(dir)
    )
}

/// A fresh directory under `dir` for one run of a daemon (its own log).
fn run_dir(dir: &Path, name: &str) -> std::path::PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `ip route show table 100 proto 201` in `ns`: bgpd's kernel routes
/// (an error, not a route, once the table is empty).
fn our_kernel(ns: &Netns) -> String {
    testkit::without_nhid(&run(ns
        .cmd("ip")
        .args(["route", "show", "table", "100", "proto", "201"])))
}

fn birdc(sock: &Path, args: &[&str]) -> String {
    run(Command::new("birdc").arg("-s").arg(sock).args(args))
}

/// BIRD's config: one eBGP peer (us, AS 65001), its kernel fed, the
/// given static routes, `gr` as its graceful-restart lines.
fn bird_conf(path: &Path, bird: &str, ours: &str, statics: &[&str], gr: &str) {
    let routes: String = statics
        .iter()
        .map(|r| format!("route {r} blackhole; "))
        .collect();
    std::fs::write(
        path,
        format!(
            "router id {bird};
protocol device {{ }}
protocol kernel {{ ipv4 {{ export all; }}; }}
protocol static static1 {{ ipv4; {routes}}}
protocol bgp peer1 {{
  local {bird} as 65002;
  neighbor {ours} as 65001;
  connect delay time 1;
  error wait time 1, 2;
  {gr}
  ipv4 {{ import all; export all; }};
}}
"
        ),
    )
    .unwrap();
}

#[test]
fn bird_keeps_our_routes_while_bgpd_restarts_and_drops_the_one_no_longer_announced() {
    if !require_root() || !require_programs(&["bird", "birdc"]) {
        return;
    }
    const OURS: &str = "10.93.0.1";
    const BIRDS: &str = "10.93.0.2";
    let (ns_us, ns_bird) = linked_pair(&[&format!("{OURS}/24")], &[&format!("{BIRDS}/24")]);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bird.conf");
    // BIRD's default, spelled out: it helps a restarting peer.
    bird_conf(
        &conf,
        BIRDS,
        OURS,
        &["10.55.0.0/24"],
        "graceful restart aware;",
    );
    let sock = dir.path().join("bird.ctl");
    let _bird = start_bird(&ns_bird, &conf, &sock);
    let first = run_dir(dir.path(), "first");
    let bgpd = Daemon::start(
        &ns_us,
        &first,
        &bgpd_yaml(&first, OURS, BIRDS, 65002, "10.44.0.0/24, 10.45.0.0/24"),
    );
    let log = bgpd.log.clone();
    let bird_has = |prefix: &str| birdc(&sock, &["show", "route", prefix]).contains(prefix);
    let bird_kernel_has = |prefix: &str| {
        ns_bird
            .ip(["route", "show", prefix])
            .unwrap()
            .contains(&format!("via {OURS}"))
    };
    wait_for("BIRD to learn both our prefixes", &[&log], || {
        bird_has("10.44.0.0/24") && bird_has("10.45.0.0/24") && bird_kernel_has("10.44.0.0/24")
    });
    wait_for("our kernel to get BIRD's 10.55.0.0/24", &[&log], || {
        our_kernel(&ns_us).contains(&format!("10.55.0.0/24 via {BIRDS}"))
    });
    let caps = birdc(&sock, &["show", "protocols", "all", "peer1"]);
    assert!(
        caps.contains("Graceful restart") && caps.contains("Restart time: 30"),
        "BIRD sees our GR capability:\n{caps}"
    );

    // bgpd crashes: BIRD keeps our routes, in its RIB and its kernel.
    drop(bgpd);
    wait_for("BIRD to lose the session", &[&log], || {
        !birdc(&sock, &["show", "protocols", "peer1"]).contains("Established")
    });
    holds_for(
        "BIRD keeping our routes as stale",
        Duration::from_secs(3),
        &[&log],
        || bird_has("10.44.0.0/24") && bird_has("10.45.0.0/24") && bird_kernel_has("10.44.0.0/24"),
    );
    assert!(
        our_kernel(&ns_us).contains("10.55.0.0/24"),
        "our kernel routes outlive bgpd"
    );

    // bgpd restarts without 10.45.0.0/24: it finds its kernel routes, so
    // R and F are set; BIRD keeps 10.44.0.0/24 and drops 10.45.0.0/24 at
    // our End-of-RIB.
    let second = run_dir(dir.path(), "second");
    let bgpd = Daemon::start(
        &ns_us,
        &second,
        &bgpd_yaml(&second, OURS, BIRDS, 65002, "10.44.0.0/24"),
    );
    wait_for("the session to come back", &[&bgpd.log], || {
        bgpd.established(BIRDS)
    });
    wait_for(
        "BIRD to drop 10.45.0.0/24 after our End-of-RIB",
        &[&bgpd.log],
        || {
            assert!(
                bird_kernel_has("10.44.0.0/24"),
                "10.44.0.0/24 left meanwhile"
            );
            !bird_has("10.45.0.0/24")
        },
    );
    assert!(bird_has("10.44.0.0/24"));
    let caps = birdc(&sock, &["show", "protocols", "all", "peer1"]);
    assert!(
        caps.contains("Restart recovery") && caps.contains("AF preserved: ipv4"),
        "BIRD sees our R and F bits:\n{caps}"
    );
    assert!(our_kernel(&ns_us).contains(&format!("10.55.0.0/24 via {BIRDS}")));
}

#[test]
fn bgpd_keeps_birds_routes_while_bird_restarts_until_end_of_rib_or_restart_time() {
    if !require_root() || !require_programs(&["bird", "birdc"]) {
        return;
    }
    const OURS: &str = "10.92.0.1";
    const BIRDS: &str = "10.92.0.2";
    const RESTART_TIME: u64 = 6;
    let (ns_us, ns_bird) = linked_pair(&[&format!("{OURS}/24")], &[&format!("{BIRDS}/24")]);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bird.conf");
    let gr = format!("graceful restart on; graceful restart time {RESTART_TIME};");
    bird_conf(&conf, BIRDS, OURS, &["10.56.0.0/24", "10.57.0.0/24"], &gr);
    let sock = dir.path().join("bird.ctl");
    let bird = start_bird(&ns_bird, &conf, &sock);
    let bgpd = Daemon::start(
        &ns_us,
        dir.path(),
        &bgpd_yaml(dir.path(), OURS, BIRDS, 65002, "10.46.0.0/24"),
    );
    let log = bgpd.log.clone();
    let kernel_has = |prefix: &str| our_kernel(&ns_us).contains(&format!("{prefix} via {BIRDS}"));
    wait_for("our kernel to get both of BIRD's routes", &[&log], || {
        kernel_has("10.56.0.0/24") && kernel_has("10.57.0.0/24")
    });

    // BIRD crashes: its routes stay in our kernel.
    drop(bird);
    wait_for("bgpd to lose the session", &[&log], || {
        !bgpd.established(BIRDS)
    });
    holds_for(
        "our kernel keeping BIRD's routes",
        Duration::from_secs(2),
        &[&log],
        || kernel_has("10.56.0.0/24") && kernel_has("10.57.0.0/24"),
    );

    // BIRD comes back in recovery without 10.57.0.0/24: that one goes at
    // its End-of-RIB, 10.56.0.0/24 stays.
    bird_conf(&conf, BIRDS, OURS, &["10.56.0.0/24"], &gr);
    let bird = start_bird_recovering(&ns_bird, &conf, &sock);
    wait_for("the session to come back", &[&log], || {
        bgpd.established(BIRDS)
    });
    // (BIRD in recovery sends End-of-RIB some seconds later; our stale
    // timer is 20 s.)
    wait_for("bgpd to drop 10.57.0.0/24 at End-of-RIB", &[&log], || {
        assert!(kernel_has("10.56.0.0/24"), "10.56.0.0/24 left meanwhile");
        !kernel_has("10.57.0.0/24")
    });
    let fields = bgpd.peer_fields(BIRDS);
    assert_eq!(
        fields.get(4..6),
        Some(&["1".to_owned(), "1".to_owned()][..])
    );

    // BIRD crashes for good: its route goes when its restart time is up.
    drop(bird);
    let down = Instant::now();
    wait_for("bgpd to lose the session again", &[&log], || {
        !bgpd.established(BIRDS)
    });
    holds_for(
        "our kernel keeping 10.56.0.0/24 during BIRD's restart time",
        Duration::from_secs(2),
        &[&log],
        || kernel_has("10.56.0.0/24"),
    );
    wait_for("the restart timer to remove 10.56.0.0/24", &[&log], || {
        !kernel_has("10.56.0.0/24")
    });
    assert!(
        down.elapsed() >= Duration::from_secs(RESTART_TIME - 1),
        "removed after {:?}, before BIRD's restart time",
        down.elapsed()
    );
}

fn gobgpd_conf(theirs: &str, ours: &str, restart_time: u64) -> String {
    format!(
        r#"[global.config]
  as = 65003
  router-id = "{theirs}"
  port = 179

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{ours}"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 1
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = {restart_time}
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"#
    )
}

#[test]
fn gobgp_and_bgpd_keep_each_others_routes_across_a_crash() {
    if !require_root() || !require_programs(&["gobgpd", "gobgp"]) {
        return;
    }
    const OURS: &str = "10.91.0.1";
    const THEIRS: &str = "10.91.0.2";
    const RESTART_TIME: u64 = 6;
    let (ns_us, ns_go) = linked_pair(&[&format!("{OURS}/24")], &[&format!("{THEIRS}/24")]);
    let dir = tempfile::tempdir().unwrap();
    let go = GoBgp::new(&ns_go, dir.path(), &gobgpd_conf(THEIRS, OURS, RESTART_TIME));
    let go_log = go.log.clone();
    let gobgpd = go.spawn();
    let gobgp = |args: &[&str]| {
        run(ns_go
            .cmd("gobgp")
            .args(["-u", "127.0.0.1", "-p", gobgp::API])
            .args(args))
    };
    let go_has = |prefix: &str| gobgp(&["global", "rib", "-a", "ipv4"]).contains(prefix);
    let first = run_dir(dir.path(), "first");
    let bgpd = Daemon::start(
        &ns_us,
        &first,
        &bgpd_yaml(&first, OURS, THEIRS, 65003, "10.48.0.0/24, 10.49.0.0/24"),
    );
    let logs = [bgpd.log.clone(), go_log.clone()];
    let logs: Vec<&Path> = logs.iter().map(|p| p.as_path()).collect();
    wait_for("gobgpd's API", &logs, || {
        gobgp(&["global", "rib", "add", "10.78.0.0/24", "-a", "ipv4"]).is_empty()
    });
    let kernel_has = |prefix: &str| our_kernel(&ns_us).contains(&format!("{prefix} via {THEIRS}"));
    wait_for("routes both ways", &logs, || {
        go_has("10.48.0.0/24") && go_has("10.49.0.0/24") && kernel_has("10.78.0.0/24")
    });

    // bgpd crashes: GoBGP keeps our routes (stale) for our restart time.
    drop(bgpd);
    wait_for("GoBGP to lose the session", &logs, || {
        !gobgp(&["neighbor"]).contains("Establ")
    });
    holds_for(
        "GoBGP keeping our routes",
        Duration::from_secs(2),
        &logs,
        || go_has("10.48.0.0/24") && go_has("10.49.0.0/24"),
    );
    // bgpd restarts without 10.49.0.0/24: GoBGP drops it at our End-of-RIB.
    let second = run_dir(dir.path(), "second");
    let bgpd = Daemon::start(
        &ns_us,
        &second,
        &bgpd_yaml(&second, OURS, THEIRS, 65003, "10.48.0.0/24"),
    );
    let logs = [bgpd.log.clone(), go_log.clone()];
    let logs: Vec<&Path> = logs.iter().map(|p| p.as_path()).collect();
    wait_for("the session to come back", &logs, || {
        bgpd.established(THEIRS)
    });
    wait_for("GoBGP to drop 10.49.0.0/24", &logs, || {
        assert!(go_has("10.48.0.0/24"), "10.48.0.0/24 left meanwhile");
        !go_has("10.49.0.0/24")
    });
    assert!(go_has("10.48.0.0/24") && kernel_has("10.78.0.0/24"));

    // gobgpd crashes and stays away: its route stays in our kernel for
    // its restart time, then goes.
    drop(gobgpd);
    let down = Instant::now();
    wait_for("bgpd to lose the session", &logs, || {
        !bgpd.established(THEIRS)
    });
    holds_for(
        "our kernel keeping GoBGP's route",
        Duration::from_secs(2),
        &logs,
        || kernel_has("10.78.0.0/24"),
    );
    wait_for("GoBGP's restart time to run out", &logs, || {
        !kernel_has("10.78.0.0/24")
    });
    assert!(
        down.elapsed() >= Duration::from_secs(RESTART_TIME - 1),
        "removed after {:?}, before GoBGP's restart time",
        down.elapsed()
    );
}

/// Without root: the speaker helps a peer played by the test on loopback,
/// which "crashes" by closing its socket.
mod helper_on_loopback {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use bgpd::attr::{AsPath, EncodeContext, NextHop, Origin, PathAttrs};
    use bgpd::capability::{Capability, GrFamily, GracefulRestart};
    use bgpd::fsm::State;
    use bgpd::open::Open;
    use bgpd::prefix::{AfiSafi, Prefix};
    use bgpd::speaker::{PeerConfig, Speaker, SpeakerConfig};
    use bgpd::update::{end_of_rib, pack_announcements};
    use bgpd::wire::{self, Framer, MessageType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const US: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    /// Accepts the speaker's connection and completes the OPEN exchange
    /// with `gr` in the peer's OPEN; returns the stream and the speaker's
    /// Graceful Restart capability.
    async fn handshake(
        listener: &TcpListener,
        gr: GracefulRestart,
    ) -> (TcpStream, Option<GracefulRestart>) {
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("bgpd did not connect within 10 s")
            .unwrap();
        let mut framer = Framer::new();
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        // Our OPEN goes out once theirs is in; then their KEEPALIVE.
        while !seen.iter().any(|(k, _)| *k == MessageType::Keepalive) {
            if let Some(m) = framer.next_message().unwrap() {
                if m.0 == MessageType::Open {
                    let ours = Open::new(
                        65002,
                        90,
                        Ipv4Addr::new(2, 2, 2, 2),
                        vec![
                            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
                            Capability::GracefulRestart(gr.clone()),
                        ],
                    );
                    stream.write_all(&ours.encode()).await.unwrap();
                    stream.write_all(&wire::keepalive()).await.unwrap();
                }
                seen.push(m);
                continue;
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "bgpd closed during the handshake");
            framer.push(&buf[..n]);
        }
        let open = Open::decode(&seen[0].1).unwrap();
        let cap = open.capabilities.into_iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr),
            _ => None,
        });
        (stream, cap)
    }

    fn gr(restarting: bool, restart_time: u16) -> GracefulRestart {
        GracefulRestart {
            restarting,
            notification: false,
            restart_time,
            families: vec![GrFamily {
                family: AfiSafi::IPV4_UNICAST,
                forwarding_preserved: restarting,
            }],
        }
    }

    fn announcement(prefixes: &[Prefix]) -> Vec<u8> {
        let attrs = PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65002])),
            ..PathAttrs::default()
        };
        // Open::new adds the 4-octet AS capability: both sides have it.
        let ctx = EncodeContext {
            four_octet_as: true,
            max_message_len: wire::MAX_MESSAGE_LEN,
        };
        pack_announcements(
            &attrs,
            NextHop::V4(Ipv4Addr::new(127, 0, 0, 3)),
            prefixes,
            &ctx,
        )
        .unwrap()
        .concat()
    }

    async fn routes(s: &Speaker) -> Vec<Prefix> {
        s.routes().await.unwrap().iter().map(|r| r.prefix).collect()
    }

    async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
        for _ in 0..400 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out after 10 s waiting for {what}");
    }

    #[tokio::test]
    async fn stale_routes_are_replaced_then_removed_at_end_of_rib_or_by_the_restart_timer() {
        let listener = TcpListener::bind(SocketAddr::new(PEER, 0)).await.unwrap();
        let mut config = SpeakerConfig::new(65001, Ipv4Addr::new(1, 1, 1, 1));
        config.peers.push(PeerConfig {
            port: listener.local_addr().unwrap().port(),
            local: Some(US),
            connect_retry: Duration::from_millis(200),
            ..PeerConfig::new(PEER, 65002)
        });
        let speaker = Speaker::start(config, None, None);
        let (mut stream, ours) = handshake(&listener, gr(false, 120)).await;
        let ours = ours.expect("bgpd advertises graceful restart");
        assert_eq!((ours.restart_time, ours.restarting), (120, false));
        stream
            .write_all(&announcement(&[p("10.9.0.0/24"), p("10.10.0.0/24")]))
            .await
            .unwrap();
        until("both routes", async || routes(&speaker).await.len() == 2).await;

        // The peer's TCP connection goes without a NOTIFICATION.
        drop(stream);
        until("the session to go down", async || {
            speaker.peers().await.unwrap()[0].state != State::Established
        })
        .await;
        assert_eq!(
            routes(&speaker).await,
            [p("10.9.0.0/24"), p("10.10.0.0/24")],
            "kept as stale"
        );

        // Back with R and F: 10.9.0.0/24 is refreshed, 10.10.0.0/24 is not
        // and goes at End-of-RIB.
        let (mut stream, _) = handshake(&listener, gr(true, 1)).await;
        stream
            .write_all(&announcement(&[p("10.9.0.0/24")]))
            .await
            .unwrap();
        assert_eq!(routes(&speaker).await.len(), 2, "stale until End-of-RIB");
        stream
            .write_all(&end_of_rib(AfiSafi::IPV4_UNICAST))
            .await
            .unwrap();
        until("10.10.0.0/24 to go at End-of-RIB", async || {
            routes(&speaker).await == [p("10.9.0.0/24")]
        })
        .await;
        let status = &speaker.peers().await.unwrap()[0];
        assert_eq!((status.received, status.accepted), (1, 1));

        // Lost again, never back: gone after its restart time of 1 s.
        drop(stream);
        let down = std::time::Instant::now();
        until("the restart timer to remove 10.9.0.0/24", async || {
            routes(&speaker).await.is_empty()
        })
        .await;
        assert!(down.elapsed() >= Duration::from_millis(900));
    }
}
