//! Interop with GoBGP (root, `gobgpd` and `gobgp`): bgpd runs in-process in
//! one network namespace, gobgpd in another, joined by a veth, with two
//! sessions, one over IPv4 (IPv4 unicast) and one over IPv6 (IPv6
//! unicast): eBGP signed with TCP-MD5 in one test, iBGP in the other.
//! gobgpd does not program its kernel, so its side is read with `gobgp
//! global rib` and `gobgp neighbor`; ours from the kernel table.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bgpd::attr::PathAttrs;
use bgpd::fib::{self, Fib, FibConfig, FibHandle};
use bgpd::fsm::State;
use bgpd::speaker::{PeerConfig, Speaker, SpeakerConfig};
use bgpd::tcp_md5::Key;
use testkit::{require_programs, require_root};
use tokio::net::TcpListener;

mod common;
use common::gobgp::GoBgp;
use common::{eventually, linked_pair, output};

const OURS4: &str = "10.97.0.1";
const THEIRS4: &str = "10.97.0.2";
const OURS6: &str = "fd00:97::1";
const THEIRS6: &str = "fd00:97::2";
/// Both sessions are TCP-MD5 signed; our listener is dual-stack, so the
/// IPv4 peer's key goes on it as a v4-mapped address.
const PASSWORD: &str = "go-md5";

/// gobgpd's TOML: AS `asn`, one neighbor per family (us, AS 65001 over
/// IPv4 for IPv4 unicast, over IPv6 for IPv6 unicast), signed with
/// `password` if given.
fn gobgpd_conf(asn: u32, password: Option<&str>) -> String {
    let auth = password
        .map(|p| format!("    auth-password = \"{p}\"\n"))
        .unwrap_or_default();
    let neighbor = |addr: &str, family: &str| {
        format!(
            r#"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{addr}"
    peer-as = 65001
{auth}  [neighbors.timers.config]
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{family}"
"#
        )
    };
    format!(
        r#"[global.config]
  as = {asn}
  router-id = "{THEIRS4}"
  port = 179
{}{}"#,
        neighbor(OURS4, "ipv4-unicast"),
        neighbor(OURS6, "ipv6-unicast")
    )
}

impl GoBgp {
    /// Whether `gobgp global rib -a FAMILY` has `prefix` with next hop
    /// `hop` and every one of `fields` on its line.
    async fn rib_has(&self, family: &str, prefix: &str, hop: &str, fields: &[&str]) -> bool {
        let out = self.cli(&["global", "rib", "-a", family]).await;
        out.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.contains(&prefix) && f.contains(&hop) && fields.iter().all(|x| l.contains(x))
        })
    }

    /// Originates `v4` and `v6` through the API, retrying until both are in
    /// gobgpd's RIB (its API may not be up yet).
    async fn originate(&self, v4: &str, v6: &str) {
        eventually(&format!("gobgpd to originate {v4} and {v6}"), async || {
            self.cli(&["global", "rib", "add", v4]).await;
            self.cli(&["global", "rib", "-a", "ipv6", "add", v6]).await;
            self.cli(&["global", "rib", "-a", "ipv4"])
                .await
                .contains(v4)
                && self
                    .cli(&["global", "rib", "-a", "ipv6"])
                    .await
                    .contains(v6)
        })
        .await
    }

    /// Whether gobgpd has both sessions with us Established.
    async fn both_established(&self) -> bool {
        let out = self.cli(&["neighbor"]).await;
        [OURS4, OURS6].iter().all(|a| {
            out.lines()
                .any(|l| l.starts_with(a) && l.contains("Establ"))
        })
    }
}

/// Our kernel table 100 (protocol 201) in `ns`, for `family` (`-4`, `-6`).
async fn our_table(ns: &str, family: &str) -> String {
    let text = output(
        "ip",
        &[
            "-n", ns, family, "route", "show", "table", "100", "proto", "201",
        ],
    )
    .await;
    testkit::without_nhid(&text)
}

/// Opens table 100 with protocol 201 and starts the FIB task.
async fn our_fib() -> FibHandle {
    let fib = Fib::open(FibConfig {
        table: 100,
        protocol: 201,
    })
    .await
    .unwrap();
    fib::spawn(fib).0
}

/// A speaker in AS 65001 with a dual-stack listener and two peers in
/// AS `peer_as`, gobgpd over IPv4 and over IPv6.
fn speaker_config(peer_as: u32, password: Option<&str>) -> SpeakerConfig {
    let mut config = SpeakerConfig::new(65001, OURS4.parse().unwrap());
    for (peer, local) in [(THEIRS4, OURS4), (THEIRS6, OURS6)] {
        config.peers.push(PeerConfig {
            local: Some(local.parse().unwrap()),
            connect_retry: Duration::from_secs(1),
            password: password.map(|p| Key::new(p).unwrap()),
            ..PeerConfig::new(peer.parse().unwrap(), peer_as)
        });
    }
    config
}

async fn dual_stack_listener() -> TcpListener {
    let any = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    TcpListener::bind(SocketAddr::new(any, 179)).await.unwrap()
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
    let go = GoBgp::new(&ns_go, dir.path(), &gobgpd_conf(65003, Some(PASSWORD)));
    let mut gobgpd = Some(go.spawn());
    let us_ns = ns_us.name().to_owned();
    let our_table = async |family| our_table(&us_ns, family).await;

    ns_us
        .block_on(|| async {
            let speaker = Speaker::start(
                speaker_config(65003, Some(PASSWORD)),
                Some(dual_stack_listener().await),
                Some(our_fib().await),
            );
            for p in ["10.45.0.0/24", "2001:db8:45::/48"] {
                speaker
                    .announce(p.parse().unwrap(), PathAttrs::default())
                    .await
                    .unwrap();
            }
            go.originate("10.58.0.0/24", "2001:db8:58::/48").await;

            eventually("gobgpd to have both sessions Established", async || {
                go.both_established().await
            })
            .await;
            let peers = speaker.peers().await.unwrap();
            assert!(
                peers.iter().all(|p| p.state == State::Established),
                "{peers:?}"
            );

            // Ours in GoBGP's RIB, with our AS and our next hop per family.
            eventually("GoBGP to learn 10.45.0.0/24", async || {
                go.rib_has("ipv4", "10.45.0.0/24", OURS4, &["65001"]).await
            })
            .await;
            eventually("GoBGP to learn 2001:db8:45::/48", async || {
                go.rib_has("ipv6", "2001:db8:45::/48", OURS6, &["65001"])
                    .await
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
                !go.cli(&["global", "rib", "-a", "ipv4"])
                    .await
                    .contains("10.45.0.0/24")
                    && !go
                        .cli(&["global", "rib", "-a", "ipv6"])
                        .await
                        .contains("2001:db8:45::/48")
            })
            .await;
            go.cli(&["global", "rib", "del", "10.58.0.0/24"]).await;
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
                go.rib_has("ipv4", "10.46.0.0/24", OURS4, &["65001"]).await
            })
            .await;
            go.cli(&["neighbor", OURS6, "reset"]).await;
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
                our_table("-4").await.trim().is_empty() && our_table("-6").await.trim().is_empty()
            })
            .await;

            // A new gobgpd: both sessions come back, and routes flow
            // both ways again.
            gobgpd = Some(go.spawn());
            go.originate("10.58.0.0/24", "2001:db8:58::/48").await;
            eventually("both sessions back after the restart", async || {
                go.both_established().await
            })
            .await;
            eventually("GoBGP to learn 10.46.0.0/24 again", async || {
                go.rib_has("ipv4", "10.46.0.0/24", OURS4, &["65001"]).await
            })
            .await;
            eventually("our kernel to get GoBGP's routes again", async || {
                ours_has("-4", "10.58.0.0/24", THEIRS4).await
                    && ours_has("-6", "2001:db8:58::/48", THEIRS6).await
            })
            .await;
            assert!(
                !go.cli(&["global", "rib", "-a", "ipv4"])
                    .await
                    .contains("10.45.0.0/24"),
                "a withdrawn route must not come back"
            );
            drop(gobgpd);
        })
        .unwrap();
}

/// iBGP with GoBGP (both in AS 65001, no password) over IPv4 and IPv6:
/// our routes reach GoBGP with LOCAL_PREF 100, an empty AS path and our
/// next hop; GoBGP's land in our kernel via its address with an empty AS
/// path; withdrawals both ways.
#[test]
fn ibgp_ipv4_and_ipv6_with_gobgp_exchange_and_withdraw() {
    if !require_root() || !require_programs(&["gobgpd", "gobgp"]) {
        return;
    }
    let (ns_us, ns_go) = linked_pair(
        &[&format!("{OURS4}/24"), &format!("{OURS6}/64")],
        &[&format!("{THEIRS4}/24"), &format!("{THEIRS6}/64")],
    );
    let dir = tempfile::tempdir().unwrap();
    let go = GoBgp::new(&ns_go, dir.path(), &gobgpd_conf(65001, None));
    let _gobgpd = go.spawn();
    let us_ns = ns_us.name().to_owned();
    let our_table = async |family| our_table(&us_ns, family).await;

    ns_us
        .block_on(|| async {
            let speaker = Speaker::start(
                speaker_config(65001, None),
                Some(dual_stack_listener().await),
                Some(our_fib().await),
            );
            let ours = [
                ("10.48.0.0/24", "ipv4", OURS4),
                ("2001:db8:48::/48", "ipv6", OURS6),
            ];
            for (p, _, _) in ours {
                speaker
                    .announce(p.parse().unwrap(), PathAttrs::default())
                    .await
                    .unwrap();
            }
            go.originate("10.59.0.0/24", "2001:db8:59::/48").await;
            eventually(
                "gobgpd to have both iBGP sessions Established",
                async || go.both_established().await,
            )
            .await;

            for (prefix, family, hop) in ours {
                eventually(&format!("GoBGP to learn {prefix} over iBGP"), async || {
                    go.rib_has(family, prefix, hop, &["LocalPref: 100"]).await
                })
                .await;
            }
            // iBGP: no AS in the path GoBGP shows (its AS_PATH column
            // is empty, so the age follows the next hop).
            let line = go.cli(&["global", "rib", "-a", "ipv4"]).await;
            let line = line.lines().find(|l| l.contains("10.48.0.0/24")).unwrap();
            let fields: Vec<&str> = line.split_whitespace().collect();
            let hop = fields.iter().position(|f| *f == OURS4).unwrap();
            assert!(fields[hop + 1].contains(':'), "an AS path in {line:?}");

            let theirs = [
                ("-4", "10.59.0.0/24", THEIRS4),
                ("-6", "2001:db8:59::/48", THEIRS6),
            ];
            for (family, prefix, hop) in theirs {
                eventually(&format!("our kernel to get {prefix}"), async || {
                    our_table(family)
                        .await
                        .contains(&format!("{prefix} via {hop}"))
                })
                .await;
            }
            let routes = speaker.routes().await.unwrap();
            for (_, prefix, hop) in theirs {
                let r = routes
                    .iter()
                    .find(|r| r.prefix == prefix.parse().unwrap())
                    .unwrap();
                assert!(r.as_path.is_empty(), "{r:?}");
                assert_eq!(r.next_hops, vec![hop.parse::<IpAddr>().unwrap()]);
            }

            // Withdrawals both ways.
            for (prefix, _, _) in ours {
                speaker.withdraw(prefix.parse().unwrap()).await.unwrap();
            }
            eventually("GoBGP to drop our routes", async || {
                !go.cli(&["global", "rib", "-a", "ipv4"])
                    .await
                    .contains("10.48.0.0/24")
                    && !go
                        .cli(&["global", "rib", "-a", "ipv6"])
                        .await
                        .contains("2001:db8:48::/48")
            })
            .await;
            go.cli(&["global", "rib", "del", "10.59.0.0/24"]).await;
            go.cli(&["global", "rib", "-a", "ipv6", "del", "2001:db8:59::/48"])
                .await;
            eventually("our kernel to drop GoBGP's routes", async || {
                our_table("-4").await.trim().is_empty() && our_table("-6").await.trim().is_empty()
            })
            .await;
            let peers = speaker.peers().await.unwrap();
            assert!(
                peers.iter().all(|p| p.state == State::Established),
                "withdrawals must not reset: {peers:?}"
            );
        })
        .unwrap();
}
