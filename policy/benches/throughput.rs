//! iperf3 TCP throughput between two workloads routed by a host namespace:
//! with no ruleset, through the compiled ruleset of 1,000 policies over
//! 1,000 endpoints (sets, verdict maps, conntrack fast path), and through an
//! equivalent hand-rendered chain of 1,000 linear rules (one address pair and
//! port each, no sets, no maps, no conntrack; the flow's rule last), and
//! through the compiled ruleset with flow logs on (every deciding rule logs
//! new connections to NFLOG group 20, which a reader drains meanwhile, as
//! felix does). Goals: the compiled ruleset keeps at least 0.95 of the
//! no-ruleset throughput, and flow logs on at least 0.95 of flow logs off.
//!
//! `cargo bench -p policy --bench throughput` (root, `nft`, `ip`, `iperf3`)

mod common;
#[path = "../tests/common/lab.rs"]
mod lab;

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{cluster, model, resources};
use lab::Lab;
use nfevents::{GroupConfig, NflogSocket};
use testkit::{Background, Netns};

const POLICIES: usize = 1_000;
const ENDPOINTS: usize = 1_000;
const ROUNDS: usize = 3;
const SECONDS: &str = "3";

fn addr(e: usize) -> String {
    format!("10.202.{}.{}", e / 250, e % 250 + 1)
}

/// One rule per generated policy (a source of its role, a destination of its
/// app, its port), each with a counter as the compiled rules have, then the
/// rules for the measured flow, then drop.
fn linear(a: &str, b: &str) -> String {
    let mut s = String::from(
        "table inet linear {\n  chain forward {\n    type filter hook forward priority 0; policy drop;\n",
    );
    for k in 0..POLICIES {
        let (src, dst) = (addr(k % 50 + 50), addr(k % 500 + 500));
        let _ = writeln!(
            s,
            "    ip saddr {src} ip daddr {dst} tcp dport {} counter accept",
            1000 + k % 1000
        );
    }
    let _ = writeln!(
        s,
        "    ip saddr {a} ip daddr {b} tcp dport 5201 counter accept"
    );
    let _ = writeln!(
        s,
        "    ip saddr {b} ip daddr {a} tcp sport 5201 counter accept"
    );
    s.push_str("  }\n}\n");
    s
}

fn load(host: &Netns, script: &str) {
    host.exec("nft", ["flush", "ruleset"]).unwrap();
    if script.is_empty() {
        return;
    }
    let mut child = host
        .cmd("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f failed");
}

/// One iperf3 run from a to b; Gbit/s received.
fn iperf(lab: &Lab) -> f64 {
    let (a, b) = (&lab.workloads[0], &lab.workloads[1]);
    let _server = Background::spawn(
        b.ns.cmd("iperf3")
            .args(["-s", "-1", "-B", &b.v4])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(200));
        let out =
            a.ns.cmd("timeout")
                .args(["15", "iperf3", "-c", &b.v4, "-t", SECONDS, "-J"])
                .output()
                .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(bps) = doc["end"]["sum_received"]["bits_per_second"].as_f64() {
            return bps / 1e9;
        }
    }
    panic!("iperf3 did not run");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Packets counted by rules of table `table` whose line contains `needle`.
fn counted(host: &Netns, table: &str, needle: &str) -> u64 {
    let out = host.exec("nft", ["list", "table", "inet", table]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            l.split("packets ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn main() {
    if !common::ready(&["nft", "ip", "iperf3"]) {
        println!("throughput bench skipped: needs root, nft, ip and iperf3");
        return;
    }
    let lab = Lab::new(&["a", "b"]);
    let (a, b) = (&lab.workloads[0], &lab.workloads[1]);
    let fixed = [
        (a.iface.as_str(), a.v4.as_str(), a.v6.as_str()),
        (b.iface.as_str(), b.v4.as_str(), b.v6.as_str()),
    ];
    let admit = common::admit_first_to_second("iperf", 5201);
    let yaml = format!("{}{admit}", cluster(ENDPOINTS, POLICIES, &fixed));
    let ruleset = policy::compile(&model(&resources(&yaml)));
    let rules: usize = ruleset.chains.values().map(|c| c.rules.len()).sum();
    let compiled = policy::render(&ruleset);
    let linear = linear(&a.v4, &b.v4);
    let mut logging_model = model(&resources(&yaml));
    logging_model.config.flow_logs = Some(policy::flowlog::FlowLogs { group: GROUP });
    let logging = policy::render(&policy::compile(&logging_model));

    // The reader felix would run, draining the group the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let logged = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, logged) = (stop.clone(), logged.clone());
        let host = lab.host.path();
        std::thread::spawn(move || drain(&host, &stop, &logged))
    };

    let configs: [(&str, &str); 4] = [
        ("no ruleset", ""),
        (
            "compiled: 1,000 policies (sets, vmaps, ct fast path)",
            &compiled,
        ),
        ("1,000 linear rules (no sets, maps or conntrack)", &linear),
        ("compiled, flow logs on (NFLOG group 20, drained)", &logging),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for _ in 0..ROUNDS {
        for (i, (_, script)) in configs.iter().enumerate() {
            load(&lab.host, script);
            results[i].push(iperf(&lab));
            match i {
                1 => assert!(
                    counted(&lab.host, "calico", "dport 5201") > 0,
                    "the flow went through the compiled iperf rule"
                ),
                2 => assert!(
                    counted(&lab.host, "linear", "5201") > 1000,
                    "every packet went through the linear chain"
                ),
                3 => assert!(
                    logged.load(Ordering::Relaxed) > 0,
                    "the flow's connection was logged"
                ),
                _ => {}
            }
        }
    }
    // The compiled ruleset really filters: b's other ports are closed to a.
    load(&lab.host, &compiled);
    let _server = Background::spawn(
        b.ns.cmd("iperf3")
            .args(["-s", "-1", "-p", "5202", "-B", &b.v4])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let blocked =
        a.ns.cmd("timeout")
            .args(["2", "iperf3", "-c", &b.v4, "-p", "5202", "-t", "1"])
            .output()
            .unwrap();
    assert!(!blocked.status.success(), "port 5202 is not allowed");

    let base = median(results[0].clone());
    println!(
        "\n### iperf3 TCP throughput, one stream a -> b through the host namespace ({ROUNDS} runs of {SECONDS} s each, median)\n"
    );
    println!(
        "Compiled ruleset: {} chains, {rules} rules, {} sets. Linear: {} rules in one chain.\n",
        ruleset.chains.len(),
        ruleset.sets.len(),
        POLICIES + 2
    );
    println!("| path | Gbit/s (median) | runs | vs no ruleset |");
    println!("|---|---|---|---|");
    for ((name, _), r) in configs.iter().zip(&results) {
        let runs: Vec<String> = r.iter().map(|g| format!("{g:.1}")).collect();
        let m = median(r.clone());
        println!(
            "| {name} | {m:.2} | {} | {:.2} |",
            runs.join(", "),
            m / base
        );
    }
    let ratio = median(results[1].clone()) / base;
    println!(
        "\nGoal compiled >= 0.95 of no ruleset: {} ({ratio:.2}).",
        if ratio >= 0.95 { "met" } else { "NOT met" }
    );
    let logs = median(results[3].clone()) / median(results[1].clone());
    println!(
        "Goal flow logs on >= 0.95 of off: {} ({logs:.2}; {} packets logged in all, only connections' first ones).",
        if logs >= 0.95 { "met" } else { "NOT met" },
        logged.load(Ordering::Relaxed)
    );
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
}

const GROUP: u16 = 20;

/// Reads NFLOG `GROUP` in the namespace at `netns` until `stop`, counting
/// what it reads into `logged`.
fn drain(netns: &std::path::Path, stop: &AtomicBool, logged: &AtomicU64) {
    let file = std::fs::File::open(netns).unwrap();
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut socket = NflogSocket::bind(GroupConfig::new(GROUP)).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Ok(batch)) =
                    tokio::time::timeout(Duration::from_millis(100), socket.next_batch()).await
                {
                    logged.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            }
        });
}
