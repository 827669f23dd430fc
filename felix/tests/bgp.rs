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
            tags: BTreeMap::new(),
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
    let kernel = || testkit::without_nhid(&host.ip(["route", "show", "proto", "200"]).unwrap());

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

/// The resources of the second test: this host, BIRD 1 as a peer with a
/// BGPFilter, a keepalive time and a local AS, a service CIDR with
/// communities.
const RESOURCES: &str = r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: host}
spec: {bgp: {ipv4Address: 10.93.1.1/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  nodeToNodeMeshEnabled: false
  asNumber: 64512
  serviceClusterIPs: [{cidr: 10.96.0.0/12}]
  communities: [{name: services, value: "65000:96"}]
  prefixAdvertisements: [{cidr: 10.96.0.0/12, communities: [services, "65000:1:2"]}]
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 10.93.1.2, asNumber: 64601, filters: [tor], keepaliveTime: 10s, localASNumber: 64555}
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: tor}
spec:
  exportV4:
  - {action: Reject, matchOperator: Equal, cidr: 10.91.1.0/26}
  - action: Accept
    matchOperator: In
    cidr: 10.91.0.0/16
    operations:
    - prependASPath: {prefix: [65001, 65002]}
    - addCommunity: {value: "65000:7"}
  importV4:
  - {action: Reject, asPathPrefix: [64601], matchOperator: Equal, cidr: 10.88.0.0/24}
"#;

#[test]
fn bgp_filters_service_cidrs_and_their_communities_reach_bird_as_calico_describes() {
    if !require_root() || !require_programs(&["bird", "birdc"]) {
        return;
    }
    let host = Netns::new("felixbgp").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ns = Netns::new("felixbgp").unwrap();
    veth_pair(&host, "p1", &ns, "eth0").unwrap();
    host.add_addr("p1", &format!("{}/24", ours(1))).unwrap();
    ns.add_addr("eth0", &format!("{}/24", theirs(1))).unwrap();
    let conf = bird::bgp_conf(
        &theirs(1).to_string(),
        64601,
        &["10.92.1.0/24", "10.88.0.0/24"],
        // The AS felix presents to this peer (localASNumber).
        &[("felix", &ours(1).to_string(), 64555)],
    );
    let b = Bird::start(&ns, dir.path(), "bird1", &conf).unwrap();
    let kernel = || testkit::without_nhid(&host.ip(["route", "show", "proto", "200"]).unwrap());

    let mut snapshot = felix::state::Snapshot::default();
    for r in api::parse_documents("resources", RESOURCES).unwrap() {
        let m = r.metadata();
        let key = datastore::ResourceStore::key(r.kind(), m.namespace.as_deref(), &m.name);
        snapshot.resources.insert(key, r);
    }
    let calculated = felix::calc::calculate(
        &snapshot,
        &felix::state::HostSettings {
            node: "host".into(),
            bgp_enabled: true,
            flow_logs: None,
        },
    );
    let mut bgp = calculated.desired.bgp.clone().expect("BGP");
    assert!(
        calculated
            .problems
            .iter()
            .all(|p| !p.field.contains("filters")),
        "{:?}",
        calculated.problems
    );
    // Two blocks of this host (its IPAM is not part of this test).
    bgp.announce
        .extend(["10.91.0.0/26", "10.91.1.0/26"].map(|p| p.parse::<ipnet::IpNet>().unwrap()));
    let desired = Desired {
        bgp: Some(bgp),
        ..Desired::default()
    };

    host.block_on(|| async {
        let mut driver = BgpDriver::new(BgpOptions::default()).unwrap();
        driver.apply(&desired).await.unwrap();
        eventually("BIRD to learn our block and the service CIDR", async || {
            b.established("felix") && b.has_route("10.91.0.0/26") && b.has_route("10.96.0.0/12")
        })
        .await;
        let block = b.birdc(&["show", "route", "all", "for", "10.91.0.0/26"]);
        assert!(block.contains("BGP.as_path: 64555 65001 65002"), "{block}");
        assert!(block.contains("BGP.community: (65000,7)"), "{block}");
        let service = b.birdc(&["show", "route", "all", "for", "10.96.0.0/12"]);
        assert!(service.lines().any(|l| l.trim() == "BGP.as_path: 64555"), "{service}");
        assert!(service.contains("(65000,96)"), "{service}");
        assert!(service.contains("BGP.large_community: (65000, 1, 2)"), "{service}");
        assert!(!b.has_route("10.91.1.0/26"), "the Reject rule's block reached BIRD");
        // Import: BIRD's 10.92.1.0/24 arrives; 10.88.0.0/24 is rejected.
        eventually("BIRD's route in our kernel", async || kernel().contains("10.92.1.0/24")).await;
        assert!(!kernel().contains("10.88.0.0/24"), "{}", kernel());
        // keepaliveTime 10s: a hold time of 30 s proposed and agreed.
        let p = b.birdc(&["show", "protocols", "all", "felix"]);
        assert!(
            p.lines().any(|l| l.trim_start().starts_with("Hold timer:") && l.trim_end().ends_with("/30")),
            "{p}"
        );
    })
    .unwrap();
}
