//! Loads 1,000,000 IPv4 /24s into the RIB the way a feeder's UPDATEs would
//! bring them (1,000 prefixes per UPDATE, one AS path per UPDATE), runs
//! best-path selection, computes one eBGP peer's Adj-RIB-Out, and prints
//! the time and the process's peak RSS.
//!
//! ```text
//! cargo run --release -p bgpd --example rib_load [PREFIXES]
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use bgpd::attr::{AsPath, NextHop, Origin, PathAttrs};
use bgpd::prefix::{AfiSafi, Prefix};
use bgpd::rib::{PeerId, PeerInfo, Rib, RibConfig};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn peer(n: u8, asn: u32) -> PeerInfo {
    PeerInfo {
        addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)),
        asn,
        router_id: Ipv4Addr::new(10, 0, 0, n),
        local_v4: Some(Ipv4Addr::new(10, 0, 0, 100)),
        local_v6: None,
        families: vec![AfiSafi::IPV4_UNICAST],
        next_hop_self: false,
        route_reflector_client: false,
        local_asn: 65000,
    }
}

fn main() {
    let total: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let base_rss = peak_rss_kib();
    let mut rib = Rib::new(RibConfig {
        asn: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 100),
        cluster_id: None,
        always_compare_med: false,
        max_paths: bgpd::rib::ALL_PATHS,
    });
    rib.peer_up(PeerId(1), peer(1, 65001));
    rib.peer_up(PeerId(2), peer(2, 65002));
    let start = Instant::now();
    let next_hop = NextHop::V4(Ipv4Addr::new(10, 0, 0, 1));
    let mut changes = 0;
    for chunk in 0..total.div_ceil(1000) {
        let attrs = PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![
                65001,
                64512 + chunk % 400,
                3356,
                174,
            ])),
            communities: vec![(65001 << 16) | (chunk % 100)],
            ..PathAttrs::default()
        };
        let prefixes: Vec<(Prefix, NextHop)> = (0..1000)
            .map(|i| chunk * 1000 + i)
            .take_while(|&n| n < total)
            .map(|n| {
                let addr = Ipv4Addr::from(0x0100_0000 + (n << 8));
                (Prefix::new(IpAddr::V4(addr), 24).unwrap(), next_hop)
            })
            .collect();
        changes += rib.update(PeerId(1), &attrs, &prefixes, &[]).len();
    }
    let loaded = start.elapsed();
    let rib_rss = peak_rss_kib().saturating_sub(base_rss);
    let out = rib.adj_rib_out(PeerId(2));
    let exported = start.elapsed() - loaded;
    let rss = peak_rss_kib().saturating_sub(base_rss);
    println!(
        "{total} prefixes: Loc-RIB in {:.2} s ({changes} changes), Adj-RIB-Out of {} prefixes in {} groups in {:.2} s, \
         {} interned attribute sets; peak RSS +{} MiB after loading ({} bytes/route), +{} MiB with the Adj-RIB-Out",
        loaded.as_secs_f64(),
        out.added,
        out.announce.len(),
        exported.as_secs_f64(),
        rib.interned_attrs(),
        rib_rss / 1024,
        rib_rss * 1024 / u64::from(total.max(1)),
        rss / 1024,
    );
}
