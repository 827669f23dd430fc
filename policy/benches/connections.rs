//! New connections per second with flow logs on: workload a opens short TCP
//! connections to b (64 at a time, each reset at once so no TIME_WAIT runs
//! out the ports) through the host namespace, whose compiled ruleset (1,000
//! policies over 1,000 endpoints) logs each new connection's deciding rules
//! to NFLOG group 20; a reader drains the group as felix does. Reported: the
//! connections a made per second, those the reader saw (distinct tuples),
//! and what the kernel says it dropped (NFLOG sequence gaps, overruns).
//! Goal: at least 10,000 new connections per second recorded, none lost,
//! or the loss counted.
//!
//! `cargo bench -p policy --bench connections` (root, `nft`, `ip`)

mod common;
#[path = "../tests/common/lab.rs"]
mod lab;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{cluster, model, resources};
use lab::Lab;
use nfevents::{GroupConfig, NflogSocket, Stats};
use tokio::net::{TcpListener, TcpSocket};

const GROUP: u16 = 20;
const SECONDS: u64 = 3;
const CONCURRENCY: usize = 64;
const PORT: u16 = 7000;

fn enter(netns: &Path) {
    let file = std::fs::File::open(netns).unwrap();
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Reads the group until `stop`: the connections logged (one message each
/// at b's ingress rule), and the socket's counts.
fn read(netns: &Path, stop: &AtomicBool, ready: &AtomicBool) -> (usize, Stats) {
    enter(netns);
    runtime().block_on(async {
        let mut socket = NflogSocket::bind(GroupConfig::new(GROUP)).await.unwrap();
        ready.store(true, Ordering::Release);
        let mut seen = 0;
        while !stop.load(Ordering::Acquire) {
            if let Ok(Ok(batch)) =
                tokio::time::timeout(Duration::from_millis(200), socket.next_batch()).await
            {
                seen += batch
                    .iter()
                    .filter(|l| l.prefix.ends_with(" np-in-ns-1/conns"))
                    .count();
            }
        }
        (seen, socket.stats())
    })
}

/// Accepts and drops connections on b until `stop`.
fn serve(netns: &Path, addr: &str, stop: &AtomicBool, ready: &AtomicBool) {
    enter(netns);
    runtime().block_on(async {
        let listener = TcpListener::bind((addr, PORT)).await.unwrap();
        ready.store(true, Ordering::Release);
        while !stop.load(Ordering::Acquire) {
            if let Ok(Ok((s, _))) =
                tokio::time::timeout(Duration::from_millis(200), listener.accept()).await
            {
                drop(s);
            }
        }
    });
}

/// Opens connections from a to b for SECONDS; how many succeeded.
fn connect(netns: &Path, to: &str) -> u64 {
    enter(netns);
    let to: std::net::SocketAddr = format!("{to}:{PORT}").parse().unwrap();
    let made = AtomicU64::new(0);
    runtime().block_on(async {
        let end = Instant::now() + Duration::from_secs(SECONDS);
        let made = &made;
        let tasks = (0..CONCURRENCY).map(|_| async move {
            while Instant::now() < end {
                let socket = TcpSocket::new_v4().unwrap();
                if let Ok(Ok(s)) =
                    tokio::time::timeout(Duration::from_secs(1), socket.connect(to)).await
                {
                    // Reset, not FIN: no TIME_WAIT. A zero linger closes
                    // at once, so the drop never blocks the thread.
                    #[allow(deprecated)]
                    let _ = s.set_linger(Some(Duration::ZERO));
                    made.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        futures::future::join_all(tasks).await;
    });
    made.load(Ordering::Relaxed)
}

fn main() {
    if !common::ready(&["nft", "ip"]) {
        println!("connections bench skipped: needs root, nft and ip");
        return;
    }
    let lab = Lab::new(&["a", "b"]);
    let (a, b) = (&lab.workloads[0], &lab.workloads[1]);
    a.ns.exec("sysctl", ["-qw", "net.ipv4.ip_local_port_range=1024 65000"])
        .unwrap();
    let fixed = [
        (a.iface.as_str(), a.v4.as_str(), a.v6.as_str()),
        (b.iface.as_str(), b.v4.as_str(), b.v6.as_str()),
    ];
    let allow = common::admit_first_to_second("conns", PORT);
    let yaml = format!("{}{allow}", cluster(1_000, 1_000, &fixed));
    let mut m = model(&resources(&yaml));
    m.config.flow_logs = Some(policy::flowlog::FlowLogs { group: GROUP });
    let ruleset = policy::compile(&m);
    policy::converge(&lab.driver(), &ruleset).unwrap();

    let (stop, reading, serving) = (
        AtomicBool::new(false),
        AtomicBool::new(false),
        AtomicBool::new(false),
    );
    let (host, a_ns, b_ns) = (lab.host.path(), a.ns.path(), b.ns.path());
    let (made, (recorded, stats), elapsed) = std::thread::scope(|s| {
        let reader = s.spawn(|| read(&host, &stop, &reading));
        let server = s.spawn(|| serve(&b_ns, &b.v4, &stop, &serving));
        while !(reading.load(Ordering::Acquire) && serving.load(Ordering::Acquire)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let started = Instant::now();
        let made = connect(&a_ns, &b.v4);
        let elapsed = started.elapsed();
        // What is still queued reaches the reader within a second.
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Release);
        server.join().unwrap();
        (made, reader.join().unwrap(), elapsed)
    });
    let rate = |n: u64| n as f64 / elapsed.as_secs_f64();
    println!(
        "\n### New TCP connections with flow logs on ({SECONDS} s, {CONCURRENCY} at a time, 1,000 policies)\n"
    );
    println!("| made/s | recorded/s | recorded | made | NFLOG lost | overruns | malformed |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {:.0} | {:.0} | {recorded} | {made} | {} | {} | {} |",
        rate(made),
        rate(recorded as u64),
        stats.lost,
        stats.overruns,
        stats.malformed
    );
    let all = recorded as u64 >= made;
    println!(
        "\nGoal >= 10,000 recorded/s with none lost, or the loss counted: {} ({:.0}/s; {} not recorded, {} counted lost)",
        if rate(recorded as u64) >= 10_000.0 && (all || stats.lost + stats.overruns > 0) {
            "met"
        } else {
            "NOT met"
        },
        rate(recorded as u64),
        made.saturating_sub(recorded as u64),
        stats.lost + stats.overruns
    );
}
