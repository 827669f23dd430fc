//! Interop with GoBGP (root, `gobgpd` and `gobgp`): bgpd runs in-process in
//! one network namespace, gobgpd in another, joined by a veth, with two
//! eBGP sessions, one over IPv4 (IPv4 unicast) and one over IPv6 (IPv6
//! unicast), both signed with TCP-MD5. gobgpd does not program its kernel, so its side is read with
//! `gobgp global rib` and `gobgp neighbor`; ours from the kernel table.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bgpd::attr::PathAttrs;
use bgpd::fib::{self, Fib, FibConfig};
use bgpd::fsm::State;
use bgpd::speaker::{PeerConfig, Speaker, SpeakerConfig};
use bgpd::tcp_md5::Key;
use testkit::{Background, require_programs, require_root};
use tokio::net::TcpListener;

mod common;
use common::{eventually, linked_pair, output};

const OURS4: &str = "10.97.0.1";
const THEIRS4: &str = "10.97.0.2";
const OURS6: &str = "fd00:97::1";
const THEIRS6: &str = "fd00:97::2";
const API: &str = "50051";
/// Both sessions are TCP-MD5 signed; our listener is dual-stack, so the
/// IPv4 peer's key goes on it as a v4-mapped address.
const PASSWORD: &str = "go-md5";

fn gobgpd_conf() -> String {
    format!(
        r#"[global.config]
  as = 65003
  router-id = "{THEIRS4}"
  port = 179

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{OURS4}"
    peer-as = 65001
    auth-password = "{PASSWORD}"
  [neighbors.timers.config]
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{OURS6}"
    peer-as = 65001
    auth-password = "{PASSWORD}"
  [neighbors.timers.config]
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#
    )
}

#[test]
fn ebgp_ipv4_and_ipv6_with_gobgp_exchange_withdraw_and_survive_resets() {
    if !require_root() || !require_programs(&["gobgpd", "gobgp"]) {
        return;
    }
    let (ns_us, ns_go) = linked_pair(
        &[&format!("{OURS4}/24"), &format!("{OURS6}/64")],
        &[&format!("{THEIRS4}/24"), &format!("{THEIRS6}/64")],
    );

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("gobgpd.toml");
    std::fs::write(&conf, gobgpd_conf()).unwrap();
    let log = dir.path().join("gobgpd.log");
    let api_hosts = format!("127.0.0.1:{API}");
    // Each run of gobgpd appends to the same log.
    let spawn_gobgpd = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        Background::spawn(
            ns_go
                .cmd("gobgpd")
                .args(["-f".as_ref(), conf.as_os_str()])
                .args(["-t", "toml", "-p", "--pprof-disable"])
                .args(["--api-hosts", &api_hosts])
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        )
        .unwrap()
    };
    let mut gobgpd = Some(spawn_gobgpd());
    let go_ns = ns_go.name().to_owned();
    let us_ns = ns_us.name().to_owned();
    // `gobgp` inside gobgpd's namespace, against its API on loopback.
    let gobgp = |args: Vec<&'static str>| {
        let go_ns = go_ns.clone();
        async move {
            let mut a = vec![
                "netns",
                "exec",
                &go_ns,
                "gobgp",
                "-u",
                "127.0.0.1",
                "-p",
                API,
            ];
            a.extend(args);
            output("ip", &a).await
        }
    };
    let our_table = |family: &'static str| {
        let us_ns = us_ns.clone();
        async move {
            output(
                "ip",
                &[
                    "-n", &us_ns, family, "route", "show", "table", "100", "proto", "201",
                ],
            )
            .await
        }
    };

    ns_us
        .run(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let fib = Fib::open(FibConfig {
                    table: 100,
                    protocol: 201,
                })
                .await
                .unwrap();
                let (fib, _task) = fib::spawn(fib);
                let any = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
                let listener = TcpListener::bind(SocketAddr::new(any, 179)).await.unwrap();
                let mut config = SpeakerConfig::new(65001, OURS4.parse().unwrap());
                for (peer, local) in [(THEIRS4, OURS4), (THEIRS6, OURS6)] {
                    config.peers.push(PeerConfig {
                        local: Some(local.parse().unwrap()),
                        connect_retry: Duration::from_secs(1),
                        password: Some(Key::new(PASSWORD).unwrap()),
                        ..PeerConfig::new(peer.parse().unwrap(), 65003)
                    });
                }
                let speaker = Speaker::start(config, Some(listener), Some(fib));
                for p in ["10.45.0.0/24", "2001:db8:45::/48"] {
                    speaker
                        .announce(p.parse().unwrap(), PathAttrs::default())
                        .await
                        .unwrap();
                }
                // gobgpd's API may not be up yet: add until the routes are in.
                let originate = async || {
                    eventually(
                        "gobgpd to originate 10.58.0.0/24 and 2001:db8:58::/48",
                        async || {
                            gobgp(vec!["global", "rib", "add", "10.58.0.0/24"]).await;
                            gobgp(vec![
                                "global",
                                "rib",
                                "-a",
                                "ipv6",
                                "add",
                                "2001:db8:58::/48",
                            ])
                            .await;
                            gobgp(vec!["global", "rib", "-a", "ipv4"])
                                .await
                                .contains("10.58.0.0/24")
                                && gobgp(vec!["global", "rib", "-a", "ipv6"])
                                    .await
                                    .contains("2001:db8:58::/48")
                        },
                    )
                    .await
                };
                originate().await;

                let both_established = async || {
                    let out = gobgp(vec!["neighbor"]).await;
                    [OURS4, OURS6].iter().all(|a| {
                        out.lines()
                            .any(|l| l.starts_with(a) && l.contains("Establ"))
                    })
                };
                eventually("gobgpd to have both sessions Established", both_established).await;
                let peers = speaker.peers().await.unwrap();
                assert!(
                    peers.iter().all(|p| p.state == State::Established),
                    "{peers:?}"
                );

                // Ours in GoBGP's RIB, with our AS and our next hop per family.
                let rib_has = async |family: &'static str, prefix: &'static str, hop: &str| {
                    let out = gobgp(vec!["global", "rib", "-a", family]).await;
                    out.lines().any(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.contains(&prefix) && f.contains(&hop) && f.contains(&"65001")
                    })
                };
                eventually("GoBGP to learn 10.45.0.0/24", async || {
                    rib_has("ipv4", "10.45.0.0/24", OURS4).await
                })
                .await;
                eventually("GoBGP to learn 2001:db8:45::/48", async || {
                    rib_has("ipv6", "2001:db8:45::/48", OURS6).await
                })
                .await;
                // Theirs in our kernel table, via GoBGP's address.
                let ours_has = async |family, prefix: &str, hop: &str| {
                    our_table(family)
                        .await
                        .contains(&format!("{prefix} via {hop}"))
                };
                eventually("our kernel to get 10.58.0.0/24", async || {
                    ours_has("-4", "10.58.0.0/24", THEIRS4).await
                })
                .await;
                eventually("our kernel to get 2001:db8:58::/48", async || {
                    ours_has("-6", "2001:db8:58::/48", THEIRS6).await
                })
                .await;
                let routes = speaker.routes().await.unwrap();
                let r = routes
                    .iter()
                    .find(|r| r.prefix == "2001:db8:58::/48".parse().unwrap())
                    .unwrap();
                assert_eq!(r.as_path, vec![65003]);

                // Withdraw on our side, then on GoBGP's.
                speaker
                    .withdraw("10.45.0.0/24".parse().unwrap())
                    .await
                    .unwrap();
                speaker
                    .withdraw("2001:db8:45::/48".parse().unwrap())
                    .await
                    .unwrap();
                eventually("GoBGP to drop our routes", async || {
                    !gobgp(vec!["global", "rib", "-a", "ipv4"])
                        .await
                        .contains("10.45.0.0/24")
                        && !gobgp(vec!["global", "rib", "-a", "ipv6"])
                            .await
                            .contains("2001:db8:45::/48")
                })
                .await;
                gobgp(vec!["global", "rib", "del", "10.58.0.0/24"]).await;
                eventually("our kernel to drop 10.58.0.0/24", async || {
                    !our_table("-4").await.contains("10.58.0.0/24")
                })
                .await;
                assert!(our_table("-6").await.contains("2001:db8:58::/48"));

                // Session reset from GoBGP's side: a Cease (Administrative
                // Reset) that we record as the session's last error. GoBGP
                // then holds the peer Idle for 30 s, whatever
                // `idle-hold-time-after-reset` says, so the rest of the
                // reset is done by restarting gobgpd.
                speaker
                    .announce("10.46.0.0/24".parse().unwrap(), PathAttrs::default())
                    .await
                    .unwrap();
                eventually("GoBGP to learn 10.46.0.0/24", async || {
                    rib_has("ipv4", "10.46.0.0/24", OURS4).await
                })
                .await;
                gobgp(vec!["neighbor", OURS6, "reset"]).await;
                eventually("our IPv6 session to go down with a Cease", async || {
                    let peers = speaker.peers().await.unwrap();
                    peers[1].state != State::Established
                        && peers[1]
                            .last_error
                            .as_deref()
                            .is_some_and(|e| e.contains("Cease"))
                })
                .await;
                eventually(
                    "our kernel to drop 2001:db8:58::/48 on the reset",
                    async || !our_table("-6").await.contains("2001:db8:58::/48"),
                )
                .await;

                // gobgpd dies: its routes leave our kernel.
                let mut g = gobgpd.take().unwrap();
                g.child_mut().kill().unwrap();
                let _ = g.child_mut().wait();
                eventually("our sessions to go down when gobgpd dies", async || {
                    let peers = speaker.peers().await.unwrap();
                    peers.iter().all(|p| p.state != State::Established)
                })
                .await;
                eventually("our kernel to drop GoBGP's routes", async || {
                    our_table("-4").await.trim().is_empty()
                        && our_table("-6").await.trim().is_empty()
                })
                .await;

                // A new gobgpd: both sessions come back, and routes flow
                // both ways again.
                gobgpd = Some(spawn_gobgpd());
                originate().await;
                eventually("both sessions back after the restart", both_established).await;
                eventually("GoBGP to learn 10.46.0.0/24 again", async || {
                    rib_has("ipv4", "10.46.0.0/24", OURS4).await
                })
                .await;
                eventually("our kernel to get GoBGP's routes again", async || {
                    ours_has("-4", "10.58.0.0/24", THEIRS4).await
                        && ours_has("-6", "2001:db8:58::/48", THEIRS6).await
                })
                .await;
                assert!(
                    !gobgp(vec!["global", "rib", "-a", "ipv4"])
                        .await
                        .contains("10.45.0.0/24"),
                    "a withdrawn route must not come back"
                );
                drop(gobgpd);
            })
        })
        .unwrap();
}
