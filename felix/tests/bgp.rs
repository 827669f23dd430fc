//! The BGP driver against real BIRD 2 peers (root, `bird` and `birdc`):
//! felix's speaker runs in one namespace ("host"), each BIRD in its own,
//! joined to the host by a veth. Applying `Desired`s brings sessions up,
//! adds a peer without resetting the first (BIRD's own `Since` unchanged),
//! withdraws a prefix, removes a peer, and with `bgp: None` stops the
//! speaker and clears its kernel routes. Assertions read BIRD (`birdc`),
//! the host's kernel (`ip route`), the status socket and the metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bgpd::speaker::PeerConfig;
use felix::bgp::{BgpDriver, BgpOptions, PeerMetrics};
use felix::metrics::Metrics;
use felix::state::{BgpDesired, Desired, Driver};
use testkit::{Bird, Netns, bird, require_programs, require_root, veth_pair};

const OUR_AS: u32 = 64512;

fn ours(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 93, n, 1))
}
fn theirs(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 93, n, 2))
}
fn their_route(n: u8) -> String {
    format!("10.92.{n}.0/24")
}

/// BIRD `n` in its own namespace, linked to `host`.
fn start_bird(host: &Netns, n: u8, dir: &std::path::Path) -> (Netns, Bird) {
    let ns = Netns::new("felixbgp").unwrap();
    veth_pair(host, &format!("p{n}"), &ns, "eth0").unwrap();
    host.add_addr(&format!("p{n}"), &format!("{}/24", ours(n)))
        .unwrap();
    ns.add_addr("eth0", &format!("{}/24", theirs(n))).unwrap();
    let conf = bird::bgp_conf(
        &theirs(n).to_string(),
        64600 + u32::from(n),
        &[&their_route(n)],
        &[("felix", &ours(n).to_string(), OUR_AS)],
    );
    let b = Bird::start(&ns, dir, &format!("bird{n}"), &conf).unwrap();
    (ns, b)
}

/// A `Desired` with BIRDs `peers` as peers and `announce` originated.
fn desired(peers: &[u8], announce: &[&str]) -> Desired {
    let peers = peers
        .iter()
        .map(|&n| {
            let p = PeerConfig {
                local: Some(ours(n)),
                connect_retry: Duration::from_secs(1),
                description: Some("global".into()),
                ..PeerConfig::new(theirs(n), 64600 + u32::from(n))
            };
            (p.addr, p)
        })
        .collect::<BTreeMap<_, _>>();
    Desired {
        bgp: Some(BgpDesired {
            asn: OUR_AS,
            router_id: Ipv4Addr::new(10, 93, 0, 1),
            cluster_id: None,
            listen_port: 179,
            restart_time: Duration::from_secs(120),
            peers,
            announce: announce
                .iter()
                .map(|p| p.parse().unwrap())
                .collect::<BTreeSet<_>>(),
        }),
        ..Desired::default()
    }
}

/// Polls `check` every 100 ms for up to 30 s, letting the speaker run.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after 30 s waiting for {what}");
}

#[test]
fn the_bgp_driver_follows_desired_peers_and_prefixes_without_resetting_unchanged_sessions() {
    if !require_root() || !require_programs(&["bird", "birdc"]) {
        return;
    }
    let host = Netns::new("felixbgp").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_ns1, b1) = start_bird(&host, 1, dir.path());
    let (_ns2, b2) = start_bird(&host, 2, dir.path());
    let socket = dir.path().join("bgp.sock");
    let kernel = || host.ip(["route", "show", "proto", "200"]).unwrap();

    host.block_on(|| async {
        let mut driver = BgpDriver::new(BgpOptions {
            status_socket: Some(socket.clone()),
            ..BgpOptions::default()
        })
        .unwrap();
        let e = bgpd::status::query_report(&socket).await.unwrap_err();
        assert_eq!(e.to_string(), "BGP is not running");

        // One peer: the session comes up, BIRD gets our /26, our kernel
        // BIRD's route.
        let first = desired(&[1], &["10.91.0.0/26"]);
        driver.apply(&first).await.unwrap();
        eventually(
            "BIRD 1 to learn our /26 and our kernel its route",
            async || {
                b1.established("felix")
                    && b1.has_route("10.91.0.0/26")
                    && kernel().contains(&format!("{} via {}", their_route(1), theirs(1)))
            },
        )
        .await;
        let since1 = b1.protocol("felix").unwrap().since;
        // Applying the same again changes nothing.
        driver.apply(&first).await.unwrap();

        // A second peer: it comes up; the first session is not reset.
        driver
            .apply(&desired(&[1, 2], &["10.91.0.0/26"]))
            .await
            .unwrap();
        eventually("BIRD 2 to learn our /26 and BIRD 1's route", async || {
            b2.established("felix")
                && b2.has_route("10.91.0.0/26")
                && b2.has_route(&their_route(1))
                && kernel().contains(&their_route(2))
        })
        .await;
        let p = b1.protocol("felix").unwrap();
        assert!(
            p.same_since(&since1),
            "BIRD 1 was reset: {p:?}, up since {since1}"
        );

        // The status socket lists both peers.
        let report = bgpd::status::query_report(&socket).await.unwrap();
        let peers: Vec<(IpAddr, &str, Option<&str>)> = report
            .peers
            .iter()
            .map(|p| (p.addr, p.state.as_str(), p.description.as_deref()))
            .collect();
        assert_eq!(
            peers,
            [
                (theirs(1), "Established", Some("global")),
                (theirs(2), "Established", Some("global"))
            ]
        );

        // The metrics show each session, what went each way, and, once
        // BIRD 1 resets its session, one flap.
        let metrics = Metrics::new();
        let (peers, _refresh) =
            PeerMetrics::spawn(driver.status_source(), Duration::from_millis(100));
        metrics.set_bgp_status(peers);
        let has = |text: &str, line: String| text.lines().any(|l| l == line);
        eventually("the metrics to show both sessions", async || {
            let text = metrics.render();
            [1, 2].iter().all(|&n| {
                has(
                    &text,
                    format!(
                        "felix_bgp_peer_state{{peer=\"{}\",state=\"Established\"}} 1",
                        theirs(n)
                    ),
                ) && has(
                    &text,
                    format!("felix_bgp_prefixes_received{{peer=\"{}\"}} 1", theirs(n)),
                ) && has(
                    &text,
                    format!("felix_bgp_session_flaps_total{{peer=\"{}\"}} 0", theirs(n)),
                )
            }) && has(
                &text,
                format!("felix_bgp_prefixes_advertised{{peer=\"{}\"}} 2", theirs(1)),
            )
        })
        .await;
        b1.birdc(&["restart", "felix"]);
        eventually("the metrics to count BIRD 1's reset", async || {
            let text = metrics.render();
            has(
                &text,
                format!("felix_bgp_session_flaps_total{{peer=\"{}\"}} 1", theirs(1)),
            ) && has(
                &text,
                format!(
                    "felix_bgp_peer_state{{peer=\"{}\",state=\"Established\"}} 1",
                    theirs(1)
                ),
            ) && text.contains(&format!(
                "felix_bgp_peer_last_error{{peer=\"{}\",error=\"received Cease",
                theirs(1)
            ))
        })
        .await;

        // The /26 withdrawn, a borrowed /32 announced.
        driver
            .apply(&desired(&[1, 2], &["10.91.0.70/32"]))
            .await
            .unwrap();
        eventually("both BIRDs to swap the /26 for the /32", async || {
            [&b1, &b2]
                .iter()
                .all(|b| !b.has_route("10.91.0.0/26") && b.has_route("10.91.0.70/32"))
        })
        .await;

        // BIRD 1 removed: Peer de-configured, its route leaves our kernel
        // and BIRD 2; BIRD 2's session stays.
        let since2 = b2.protocol("felix").unwrap().since;
        driver
            .apply(&desired(&[2], &["10.91.0.70/32"]))
            .await
            .unwrap();
        eventually(
            "BIRD 1's route to leave our kernel and BIRD 2",
            async || !kernel().contains(&their_route(1)) && !b2.has_route(&their_route(1)),
        )
        .await;
        eventually("BIRD 1 to see Cease / Peer de-configured", async || {
            b1.received("Peer de-configured")
        })
        .await;
        let p = b2.protocol("felix").unwrap();
        assert!(
            p.same_since(&since2),
            "BIRD 2 was reset: {p:?}, up since {since2}"
        );

        // A new router ID restarts the speaker (gracefully: its kernel
        // routes stay meanwhile); BIRD 2 comes back with our /32.
        let mut renamed = desired(&[2], &["10.91.0.70/32"]);
        if let Some(bgp) = renamed.bgp.as_mut() {
            bgp.router_id = Ipv4Addr::new(10, 93, 0, 9);
        }
        driver.apply(&renamed).await.unwrap();
        assert!(
            kernel().contains(&their_route(2)),
            "routes kept across the restart"
        );
        eventually(
            "BIRD 2's session to restart with the new router ID",
            async || {
                b2.birdc(&["show", "protocols", "all", "felix"])
                    .contains("Neighbor ID:      10.93.0.9")
                    && b2.established("felix")
                    && b2.has_route("10.91.0.70/32")
            },
        )
        .await;

        // No BGP: the speaker stops and its kernel routes go.
        driver.apply(&Desired::default()).await.unwrap();
        assert!(kernel().trim().is_empty(), "{}", kernel());
        eventually("BIRD 2 to lose the session", async || {
            !b2.established("felix") && !b2.has_route("10.91.0.70/32")
        })
        .await;
        let e = bgpd::status::query_report(&socket).await.unwrap_err();
        assert_eq!(e.to_string(), "BGP is not running");
    })
    .unwrap();
}
