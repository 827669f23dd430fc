//! Many peers at once, in bgperf2's shape: N feeders (ours, from
//! `feed/feeder.rs`) each announce the same 100,000 IPv4 prefixes, with
//! paths of their own, over eBGP to one speaker, `bgpd` and BIRD 2 in turn
//! in the same run; we measure the time from the first session Established
//! until every path of every peer is in the speaker's table (N × 100,000)
//! and every prefix in its kernel table, and its peak RSS. Neither speaker
//! exports anything back (BIRD's `export none`, a reject-all export filter
//! for bgpd), and both install each prefix's equal-best paths as one
//! multipath route (BIRD's `merge paths on`, bgpd's default), so both
//! replace a kernel route as each peer's equal path arrives. With
//! `PEERS_MULTIPATH=off` both install the best path only (BIRD without
//! `merge paths`, bgpd with `max_paths: 1`).
//!
//! ```text
//! cargo bench -p bgpd --bench peers                  # 10 and 50 peers × 100,000, 1 run each
//! PEERS=10 PEERS_PREFIXES=20000 PEERS_SPEAKERS=bgpd cargo bench -p bgpd --bench peers
//! ```
//!
//! The feeders share one namespace, each with an address of its own
//! (172.30.1.N) on the veth to the speaker's (172.30.0.1/16). Other knobs:
//! `PEERS_MULTIPATH` (`on`, `off`), `PEERS_RUNS` (runs per speaker and size, interleaved; 1), `PEERS_TIMEOUT`
//! (seconds per run, 600). Root and `bird` are needed; without them it says
//! so and stops. Without `--bench` (as `cargo test --benches` runs it) it
//! does nothing.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "feed/feeder.rs"]
mod feeder;
// Shared with the feed bench, which uses all of it.
#[allow(dead_code)]
#[path = "feed/speakers.rs"]
mod speakers;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Daemon;
use feeder::{Feeder, Table};
use speakers::{Kind, SPEAKER, SPEAKER_AS, TABLE, env_or, fib_count};
use testkit::{Background, Netns};

/// Feeder `i`'s address and AS.
fn feeder(i: usize) -> (Ipv4Addr, u32) {
    (Ipv4Addr::new(172, 30, 1, i as u8 + 1), 65100 + i as u32)
}

/// Whether the speakers install every equal-best path (`PEERS_MULTIPATH`).
fn multipath() -> bool {
    std::env::var("PEERS_MULTIPATH").map_or(true, |v| v != "off")
}

fn bgpd_conf(dir: &Path, peers: usize) -> String {
    let max_paths = if multipath() { "" } else { "max_paths: 1\n" };
    let mut conf = format!(
        "router_id: {SPEAKER}\nasn: {SPEAKER_AS}\nlisten: {SPEAKER}:179\n{}{max_paths}kernel: {{ table: {TABLE}, protocol: 200 }}\npeers:\n",
        Daemon::status_line(dir)
    );
    for i in 0..peers {
        let (addr, asn) = feeder(i);
        // Nothing exported, as BIRD's `export none` below.
        conf += &format!(
            "  - address: {addr}\n    asn: {asn}\n    passive: true\n    export: {{ default: reject }}\n"
        );
    }
    conf
}

fn bird_conf(peers: usize) -> String {
    let merge = if multipath() { " merge paths on;" } else { "" };
    let mut conf = format!(
        "router id {SPEAKER};\nprotocol device {{ }}\n\
         protocol kernel kernel1 {{ ipv4 {{ export all; }}; kernel table {TABLE};{merge} }}\n"
    );
    for i in 0..peers {
        let (addr, asn) = feeder(i);
        conf += &format!(
            "protocol bgp f{i} {{ local {SPEAKER} as {SPEAKER_AS}; neighbor {addr} as {asn}; \
             passive on; ipv4 {{ import all; export none; }}; }}\n"
        );
    }
    conf
}

/// A speaker with `peers` passive neighbours.
struct Speaker {
    kind: Kind,
    process: Background,
    dir: tempfile::TempDir,
}

impl Speaker {
    fn start(kind: Kind, ns: &Netns, peers: usize) -> Speaker {
        let dir = tempfile::tempdir().unwrap();
        let process = match kind {
            Kind::Bgpd => Daemon::start(ns, dir.path(), &bgpd_conf(dir.path(), peers)).process,
            _ => {
                let conf = dir.path().join("bird.conf");
                std::fs::write(&conf, bird_conf(peers)).unwrap();
                common::start_bird(ns, &conf, &dir.path().join("bird.ctl"))
            }
        };
        Speaker { kind, process, dir }
    }

    /// Paths accepted from all peers together.
    fn paths(&self) -> u64 {
        match self.kind {
            Kind::Bgpd => {
                let out = common::run(
                    Command::new(env!("CARGO_BIN_EXE_bgpd"))
                        .args(["status", "--peers"])
                        .arg(self.dir.path().join("bgpd.sock")),
                );
                // Peer AS State Since Received Accepted Advertised
                out.lines()
                    .filter(|l| l.starts_with("172.30.1."))
                    .filter_map(|l| l.split_whitespace().nth(5)?.parse::<u64>().ok())
                    .sum()
            }
            _ => {
                let sock = self.dir.path().join("bird.ctl");
                let out = common::run(Command::new("birdc").arg("-s").arg(&sock).args([
                    "show",
                    "protocols",
                    "all",
                ]));
                out.lines()
                    .filter_map(|l| {
                        let rest = l.trim().strip_prefix("Routes:")?;
                        rest.split_whitespace().next()?.parse::<u64>().ok()
                    })
                    .sum()
            }
        }
    }

    fn peak_rss_kib(&self) -> u64 {
        speakers::peak_rss_kib(self.process.id())
    }
}

/// Connects from `local` in `ns`, retrying while the speaker is not yet
/// listening.
fn connect(ns: &Netns, local: Ipv4Addr) -> Result<TcpStream, String> {
    let to: SocketAddr = format!("{SPEAKER}:179").parse().unwrap();
    ns.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = rt.block_on(async {
                let s = tokio::net::TcpSocket::new_v4()?;
                s.bind(SocketAddr::new(local.into(), 0))?;
                let stream = tokio::time::timeout(Duration::from_secs(1), s.connect(to))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                stream.into_std()
            });
            match attempt {
                Ok(s) => {
                    s.set_nonblocking(false).map_err(|e| e.to_string())?;
                    return Ok(s);
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("connecting {local} to {to}: {e}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
    .map_err(|e| e.to_string())?
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// First Established to every path in the speaker's table.
    paths: Duration,
    /// First Established to every prefix in the kernel table.
    kernel: Duration,
    peak_rss_kib: u64,
}

fn run(kind: Kind, tables: &[Arc<Table>], timeout: Duration) -> Result<Run, String> {
    let addrs: Vec<String> = (0..tables.len())
        .map(|i| format!("{}/16", feeder(i).0))
        .collect();
    let addr_refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let (ns_speaker, ns_feeders) = common::linked_pair(&[&format!("{SPEAKER}/16")], &addr_refs);
    let speaker = Speaker::start(kind, &ns_speaker, tables.len());
    let mut feeds = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let (addr, asn) = feeder(i);
        let stream = connect(&ns_feeders, addr)?;
        let _ = stream.set_nodelay(true);
        feeds.push(Feeder::start(stream, asn, addr, table.clone()));
    }
    let prefixes = u64::from(tables[0].prefixes);
    let want = prefixes * tables.len() as u64;
    let deadline = Instant::now() + timeout;
    let mut first = None;
    let (mut paths_at, mut kernel_at) = (None, None);
    loop {
        for f in &mut feeds {
            if let Some(t) = f.timings()?.established {
                first = Some(first.map_or(t, |f: Instant| f.min(t)));
            }
        }
        let now = Instant::now();
        if paths_at.is_none() && speaker.paths() >= want {
            paths_at = Some(now);
        }
        if kernel_at.is_none() && fib_count(&ns_speaker, TABLE) >= prefixes {
            kernel_at = Some(Instant::now());
        }
        if let (Some(first), Some(p), Some(k)) = (first, paths_at, kernel_at) {
            return Ok(Run {
                paths: p - first,
                kernel: k - first,
                peak_rss_kib: speaker.peak_rss_kib(),
            });
        }
        if now > deadline {
            return Err(format!(
                "timed out after {timeout:?}: {} of {want} paths, {} of {prefixes} in the kernel; logs in {}",
                speaker.paths(),
                fib_count(&ns_speaker, TABLE),
                speaker.dir.keep().display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("peers: a benchmark; run it with `cargo bench -p bgpd --bench peers`");
        return;
    }
    if !testkit::require_root() || !testkit::require_programs(&["ip"]) {
        return;
    }
    let sizes: Vec<usize> = std::env::var("PEERS")
        .unwrap_or_else(|_| "10,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&n| (1..=250).contains(&n))
        .collect();
    let prefixes: u32 = env_or("PEERS_PREFIXES", 100_000);
    let runs: usize = env_or("PEERS_RUNS", 1);
    let timeout = Duration::from_secs(env_or("PEERS_TIMEOUT", 600));
    let kinds: Vec<Kind> = std::env::var("PEERS_SPEAKERS")
        .unwrap_or_else(|_| "bgpd,bird".into())
        .split(',')
        .filter_map(Kind::parse)
        .filter(|&k| k != Kind::Gobgp && testkit::require_programs(k.programs()))
        .collect();

    println!(
        "kernel routes: {}\n",
        if multipath() {
            "every equal-best path (multipath)"
        } else {
            "the best path only"
        }
    );
    println!(
        "| peers × prefixes | speaker | all paths in | all prefixes in the kernel | peak RSS |"
    );
    println!("|---|---|---:|---:|---:|");
    for &n in &sizes {
        let tables: Vec<Arc<Table>> = (0..n)
            .map(|i| {
                let (addr, asn) = feeder(i);
                Arc::new(Table::new(prefixes, asn, addr))
            })
            .collect();
        eprintln!(
            "peers: {n} feeders, each {prefixes} prefixes in {} UPDATEs ({} attribute sets)",
            tables[0].updates, tables[0].attr_sets
        );
        let mut results: Vec<(Kind, Vec<Run>)> = kinds.iter().map(|&k| (k, Vec::new())).collect();
        for r in 0..runs {
            for (kind, done) in &mut results {
                match run(*kind, &tables, timeout) {
                    Ok(m) => {
                        eprintln!(
                            "peers: {n} × {prefixes} {} run {}: paths {:.2} s, kernel {:.2} s, peak RSS {} MiB",
                            kind.name(),
                            r + 1,
                            m.paths.as_secs_f64(),
                            m.kernel.as_secs_f64(),
                            m.peak_rss_kib / 1024
                        );
                        done.push(m);
                    }
                    Err(e) => {
                        eprintln!("peers: {n} × {prefixes} {} run {}: {e}", kind.name(), r + 1)
                    }
                }
            }
        }
        for (kind, mut done) in results {
            if done.is_empty() {
                println!("| {n} × {prefixes} | {} | failed | | |", kind.name());
                continue;
            }
            done.sort_by_key(|m| m.paths);
            let m = done[done.len() / 2];
            println!(
                "| {n} × {prefixes} | {} | {:.2} s | {:.2} s | {} MiB |",
                kind.name(),
                m.paths.as_secs_f64(),
                m.kernel.as_secs_f64(),
                m.peak_rss_kib / 1024
            );
        }
    }
}
