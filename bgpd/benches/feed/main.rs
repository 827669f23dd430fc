//! End-to-end load benchmark (issue 4 §4): one feeder of ours announces a
//! table of IPv4 prefixes over eBGP, across a veth between two namespaces,
//! to each speaker in turn (the `bgpd` daemon, BIRD 2, GoBGP), and we
//! measure the time from Established (the feeder writes its first UPDATE
//! at once) until every prefix is in the speaker's Loc-RIB and in its
//! kernel table, and the speaker's peak RSS. An `ip -batch` install of
//! 100,000 routes gives the kernel's own pace for scale.
//!
//! ```text
//! cargo bench -p bgpd --bench feed                     # 1,000,000 prefixes, 3 runs
//! FEED_PREFIXES=100000 FEED_RUNS=1 FEED_SPEAKERS=bgpd,bird cargo bench -p bgpd --bench feed
//! ```
//!
//! Other knobs: `FEED_TIMEOUT` (seconds per run, 300), `FEED_IP_BATCH`
//! (routes for the `ip -batch` anchor, 100000; 0 skips it).
//! `FEED_TRACE=1` prints the Loc-RIB and kernel counts at each kernel poll,
//! and keeps each speaker's directory (configuration, logs).
//! Root and the daemons are needed; without them it says so and stops.
//! Without `--bench` (as `cargo test --benches` runs it) it does nothing.
//!
//! Progress is polled every 100 ms with an O(1) counter of each speaker
//! (see `speakers.rs`); the kernel count, an in-kernel walk of the table,
//! at most every 100 ms and never more than a fifth of the time.

#[path = "../../tests/common/mod.rs"]
mod common;
mod feeder;
mod speakers;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use feeder::{Feeder, Table};
use speakers::{FEEDER, FEEDER_AS, Kind, SPEAKER, Speaker, TABLE, env_or, fib_count};
use testkit::Netns;

/// What one run measured.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    /// Established to every prefix in the Loc-RIB.
    rib: Option<Duration>,
    /// Established to every prefix in the kernel table.
    fib: Option<Duration>,
    /// Established to the last byte of the feed accepted by the socket.
    written: Option<Duration>,
    peak_rss_kib: u64,
}

/// Connects from the feeder's namespace, retrying while the speaker is
/// not yet listening.
fn connect(ns: &Netns) -> Result<TcpStream, String> {
    let to: SocketAddr = format!("{SPEAKER}:179").parse().unwrap();
    ns.run(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                Ok(s) => return Ok(s),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("connecting to {to}: {e}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
    .map_err(|e| e.to_string())?
}

/// One run of `kind` against `table`.
fn run(kind: Kind, table: &Arc<Table>, timeout: Duration) -> Result<Run, String> {
    let (ns_speaker, ns_feeder) =
        common::linked_pair(&[&format!("{SPEAKER}/30")], &[&format!("{FEEDER}/30")]);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let speaker = Speaker::start(kind, &ns_speaker, dir.path());
    let stream = connect(&ns_feeder)?;
    let _ = stream.set_nodelay(true);
    let mut feed = Feeder::start(
        stream,
        FEEDER_AS,
        FEEDER.parse::<Ipv4Addr>().unwrap(),
        table.clone(),
    );
    let want = u64::from(table.prefixes);
    let trace = std::env::var_os("FEED_TRACE").is_some();
    let deadline = Instant::now() + timeout;
    let (mut rib_at, mut fib_at) = (None, None);
    let mut next_fib = Instant::now();
    let timings = loop {
        let timings = feed.timings()?;
        let now = Instant::now();
        if rib_at.is_none() && timings.established.is_some() && speaker.rib_count() >= want {
            rib_at = Some(now);
        }
        if kind.has_fib() && fib_at.is_none() && now >= next_fib {
            let n = fib_count(&ns_speaker, TABLE);
            let at = Instant::now();
            if trace && let Some(t0) = timings.established {
                eprintln!(
                    "feed: {:>6.2} s  Loc-RIB {:>8}  kernel {n:>8}",
                    (at - t0).as_secs_f64(),
                    speaker.rib_count()
                );
            }
            if n >= want {
                fib_at = Some(at);
            }
            next_fib = at + (at - now).mul_f64(4.0).max(Duration::from_millis(100));
        }
        if rib_at.is_some() && (fib_at.is_some() || !kind.has_fib()) && timings.written.is_some() {
            break timings;
        }
        if now > deadline {
            return Err(format!(
                "timed out after {timeout:?}: Loc-RIB {}, kernel {} of {want}; logs in {}",
                speaker.rib_count(),
                fib_count(&ns_speaker, TABLE),
                dir.keep().display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let t0 = timings
        .established
        .expect("established before the RIB filled");
    let run = Run {
        rib: rib_at.map(|t| t - t0),
        fib: fib_at.map(|t| t - t0),
        written: timings.written.map(|t| t - t0),
        peak_rss_kib: speaker.peak_rss_kib(),
    };
    drop(feed);
    drop(speaker);
    if trace {
        eprintln!(
            "feed: {} logs kept in {}",
            kind.name(),
            dir.keep().display()
        );
    }
    Ok(run)
}

/// Installs `count` routes with `ip -batch` into a table of a fresh
/// namespace; the time it takes.
fn ip_batch(count: u32) -> Duration {
    let (ns, _peer) = common::linked_pair(&[&format!("{SPEAKER}/30")], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes");
    let text: String = (0..count)
        .map(|n| {
            format!(
                "route add {} via {FEEDER} table {TABLE} proto 200\n",
                feeder::nth_prefix(n)
            )
        })
        .collect();
    std::fs::write(&file, text).unwrap();
    let start = Instant::now();
    let out = common::run(ns.cmd("ip").arg("-batch").arg(&file));
    let took = start.elapsed();
    assert_eq!(fib_count(&ns, TABLE), u64::from(count), "ip -batch: {out}");
    took
}

fn median(mut xs: Vec<Duration>) -> Option<Duration> {
    xs.sort();
    xs.get(xs.len() / 2).copied()
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("n/a".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "n/a".into(),
    }
}

/// The medians of each column over `runs`.
fn summarise(runs: &[Run]) -> Run {
    let med = |f: fn(&Run) -> Option<Duration>| median(runs.iter().filter_map(f).collect());
    let mut rss: Vec<u64> = runs.iter().map(|r| r.peak_rss_kib).collect();
    rss.sort();
    Run {
        rib: med(|r| r.rib),
        fib: med(|r| r.fib),
        written: med(|r| r.written),
        peak_rss_kib: rss.get(rss.len() / 2).copied().unwrap_or(0),
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("feed: a benchmark; run it with `cargo bench -p bgpd --bench feed`");
        return;
    }
    if !testkit::require_root() || !testkit::require_programs(&["ip"]) {
        return;
    }
    let prefixes: u32 = env_or("FEED_PREFIXES", 1_000_000);
    let runs: usize = env_or("FEED_RUNS", 3);
    let timeout = Duration::from_secs(env_or("FEED_TIMEOUT", 300));
    let anchor: u32 = env_or("FEED_IP_BATCH", 100_000);
    let kinds: Vec<Kind> = std::env::var("FEED_SPEAKERS")
        .unwrap_or_else(|_| "bgpd,bird,gobgp".into())
        .split(',')
        .filter_map(Kind::parse)
        .filter(|k| testkit::require_programs(k.programs()))
        .collect();

    let built = Instant::now();
    let table = Arc::new(Table::new(prefixes, FEEDER_AS, FEEDER.parse().unwrap()));
    eprintln!(
        "feed: {} prefixes in {} UPDATEs ({} attribute sets, {:.1} MB) encoded in {:.2} s",
        table.prefixes,
        table.updates,
        table.attr_sets,
        table.bytes.len() as f64 / 1e6,
        built.elapsed().as_secs_f64()
    );

    // Runs interleave (bgpd, BIRD, GoBGP, bgpd, ...), so that load from
    // elsewhere on the machine falls on every speaker alike.
    let mut done: Vec<Vec<Run>> = vec![Vec::new(); kinds.len()];
    let mut failed: Vec<Option<String>> = vec![None; kinds.len()];
    for i in 0..runs {
        for (k, &kind) in kinds.iter().enumerate() {
            if failed[k].is_some() {
                continue;
            }
            match run(kind, &table, timeout) {
                Ok(r) => {
                    eprintln!(
                        "feed: {} run {}: Loc-RIB {}, kernel {}, written {}, peak RSS {} MiB",
                        kind.name(),
                        i + 1,
                        secs(r.rib),
                        secs(r.fib),
                        secs(r.written),
                        r.peak_rss_kib / 1024
                    );
                    done[k].push(r);
                }
                Err(e) => {
                    eprintln!("feed: {} run {}: {e}", kind.name(), i + 1);
                    failed[k] = Some(e);
                }
            }
        }
    }
    let results: Vec<(Kind, Result<Run, String>)> = kinds
        .iter()
        .zip(done.iter().zip(failed))
        .map(|(&kind, (runs, failure))| match failure {
            Some(e) if runs.is_empty() => (kind, Err(e)),
            _ => (kind, Ok(summarise(runs))),
        })
        .collect();
    let batch = (anchor > 0).then(|| ip_batch(anchor));

    println!(
        "\n{} IPv4 prefixes, {} UPDATEs, {} attribute sets; median of {runs} run(s)\n",
        table.prefixes, table.updates, table.attr_sets
    );
    println!("| speaker | to Loc-RIB | to kernel | feed written | peak RSS | RSS/prefix |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (kind, r) in &results {
        match r {
            Ok(r) => println!(
                "| {} | {} | {} | {} | {} MiB | {} B |",
                kind.name(),
                secs(r.rib),
                secs(r.fib),
                secs(r.written),
                r.peak_rss_kib / 1024,
                r.peak_rss_kib * 1024 / u64::from(table.prefixes.max(1))
            ),
            Err(e) => println!("| {} | failed: {e} | | | | |", kind.name()),
        }
    }
    let get = |k: Kind| {
        results
            .iter()
            .find(|(kind, _)| *kind == k)
            .and_then(|(_, r)| r.as_ref().ok())
    };
    if let (Some(ours), Some(bird)) = (get(Kind::Bgpd), get(Kind::Bird)) {
        println!(
            "| bgpd/BIRD | {} | {} | {} | {:.2} | |",
            ratio(ours.rib, bird.rib),
            ratio(ours.fib, bird.fib),
            ratio(ours.written, bird.written),
            ours.peak_rss_kib as f64 / bird.peak_rss_kib.max(1) as f64
        );
    }
    if let Some(b) = batch {
        println!(
            "| `ip -batch`, {anchor} routes | | {} ({:.1} µs/route) | | | |",
            secs(Some(b)),
            b.as_secs_f64() * 1e6 / f64::from(anchor)
        );
    }
}
