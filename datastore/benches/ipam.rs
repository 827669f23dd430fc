//! IPAM throughput benchmark: allocations per second and their latency on
//! each backend (an SQLite file in a temporary directory, and a real etcd
//! from `datastore::testing`), printed as a markdown table.
//!
//! Per backend, on a fresh store holding one IPPool (10.96.0.0/16, blocks
//! of /26) and the Node resources of the simulated hosts:
//!
//! - single: one task, sequential `auto_assign` of one IPv4 address each;
//! - concurrent: eight tasks in this process on four hosts, each task on
//!   its own connection;
//! - processes: four `ipam-worker` processes on four hosts, two tasks each
//!   (wall clock includes process start and connect; no per-call latency);
//! - release: `release_by_handle` of the single and the concurrent
//!   scenarios' handles, sequentially and from eight tasks.
//!
//! Every scenario checks what it measured: each address handed out once,
//! each release freeing exactly its handle's address, and at the end no
//! address in use and a clean `ipam check`.
//!
//! Run: `cargo bench -p datastore --bench ipam`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{Cidr, IPPool, IPPoolSpec, Node, NodeSpec, ObjectMeta, Resource};
use datastore::ipam::{AutoAssignArgs, Ipam};
use datastore::testing::EtcdServer;
use datastore::{DatastoreConfig, ResourceStore, connect};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const POOL: &str = "10.96.0.0/16";
const BLOCK_SIZE: u8 = 26;
/// Sequential allocations of the single scenario.
const SINGLE: usize = 500;
/// Tasks and hosts of the in-process concurrent scenario.
const TASKS: usize = 8;
const HOSTS: usize = 4;
/// Allocations per task of the in-process concurrent scenario.
const PER_TASK: usize = 100;
/// Worker processes (one per host), tasks in each, allocations per task.
const PROCESSES: usize = 4;
const PROCESS_TASKS: usize = 2;
const PROCESS_PER_TASK: usize = 50;

const WORKER: &str = env!("CARGO_BIN_EXE_ipam-worker");

/// One measured scenario.
struct Row {
    backend: &'static str,
    scenario: String,
    operations: usize,
    elapsed: Duration,
    /// Per-call latencies; empty when they cannot be observed.
    latencies: Vec<Duration>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile of the latencies, in milliseconds.
    fn percentile(&self, q: f64) -> Option<f64> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted.get(rank - 1).map(|d| d.as_secs_f64() * 1000.0)
    }

    fn markdown(&self) -> String {
        let ms = |p: Option<f64>| p.map_or("n/a".to_owned(), |v| format!("{v:.2} ms"));
        format!(
            "| {} | {} | {} | {:.0} | {} | {} |",
            self.backend,
            self.scenario,
            self.operations,
            self.rate(),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
        )
    }
}

async fn open(cfg: &DatastoreConfig) -> Result<Ipam> {
    Ok(Ipam::new(connect(cfg).await?))
}

/// The pool and a Node resource per host.
async fn seed(ipam: &Ipam, hosts: &[String]) -> Result<()> {
    let mut spec = IPPoolSpec::new(POOL.parse::<Cidr>()?);
    spec.block_size = Some(BLOCK_SIZE);
    let mut resources = vec![Resource::from(IPPool::new(
        ObjectMeta::named("bench-pool"),
        spec,
    ))];
    resources.extend(
        hosts
            .iter()
            .map(|h| Resource::from(Node::new(ObjectMeta::named(h), NodeSpec::default()))),
    );
    ResourceStore::new(ipam.kv().clone())
        .apply_all(resources)
        .await?;
    Ok(())
}

/// What an allocation run handed out, and how long it took.
struct Allocated {
    elapsed: Duration,
    latencies: Vec<Duration>,
    handles: Vec<String>,
}

/// `tasks` concurrent tasks (task `t` on `hosts[t % hosts.len()]`, each on
/// its own connection) each assigning one IPv4 address to `per_task`
/// handles in turn. Fails if any address is handed out twice.
async fn allocate(
    cfg: &DatastoreConfig,
    hosts: &[String],
    prefix: &str,
    tasks: usize,
    per_task: usize,
) -> Result<Allocated> {
    let mut ipams = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        ipams.push(open(cfg).await?);
    }
    let start = Arc::new(tokio::sync::Barrier::new(tasks + 1));
    let mut running = Vec::with_capacity(tasks);
    for (t, ipam) in ipams.into_iter().enumerate() {
        let host = hosts[t % hosts.len()].clone();
        let prefix = prefix.to_owned();
        let start = start.clone();
        running.push(tokio::spawn(async move {
            start.wait().await;
            let mut done = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let args = AutoAssignArgs {
                    handle: format!("{prefix}.{t}-{i}"),
                    host: host.clone(),
                    num_v4: 1,
                    ..AutoAssignArgs::default()
                };
                let began = Instant::now();
                let assigned = ipam.auto_assign(&args).await?;
                let took = began.elapsed();
                let [ip] = assigned.v4[..] else {
                    return Err(format!("{}: assigned {:?}", args.handle, assigned.v4).into());
                };
                done.push((took, ip.ip, args.handle));
            }
            Ok::<_, BoxError>(done)
        }));
    }
    start.wait().await;
    let began = Instant::now();
    let mut results = Vec::with_capacity(tasks);
    for task in running {
        results.push(task.await??);
    }
    let elapsed = began.elapsed();
    let mut seen = BTreeSet::new();
    let mut latencies = Vec::new();
    let mut handles = Vec::new();
    for (took, ip, handle) in results.into_iter().flatten() {
        if !seen.insert(ip) {
            return Err(format!("{ip} handed out twice").into());
        }
        latencies.push(took);
        handles.push(handle);
    }
    Ok(Allocated {
        elapsed,
        latencies,
        handles,
    })
}

/// `PROCESSES` `ipam-worker` processes, process `p` on `hosts[p]`, each
/// with `PROCESS_TASKS` tasks of `PROCESS_PER_TASK` allocations. Returns
/// the wall clock from spawning to the last exit and the handles.
async fn allocate_in_processes(
    cfg: &DatastoreConfig,
    hosts: &[String],
) -> Result<(Duration, Vec<String>)> {
    let began = Instant::now();
    let mut children = Vec::with_capacity(PROCESSES);
    for (p, host) in hosts.iter().enumerate().take(PROCESSES) {
        let child = tokio::process::Command::new(WORKER)
            .args([
                "allocate".to_owned(),
                host.clone(),
                format!("bench-proc.p{p}"),
                PROCESS_TASKS.to_string(),
                PROCESS_PER_TASK.to_string(),
            ])
            .envs(cfg.to_env())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawning {WORKER}: {e}"))?;
        children.push(child);
    }
    let mut outputs = Vec::with_capacity(PROCESSES);
    for child in children {
        outputs.push(child.wait_with_output().await?);
    }
    let elapsed = began.elapsed();
    let mut seen = BTreeSet::new();
    let mut handles = Vec::new();
    for out in outputs {
        if !out.status.success() {
            return Err(format!(
                "ipam-worker failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        for line in String::from_utf8(out.stdout)?.lines() {
            let (ip, handle) = line
                .split_once(' ')
                .ok_or_else(|| format!("ipam-worker printed {line:?}"))?;
            let ip: IpAddr = ip.parse()?;
            if !seen.insert(ip) {
                return Err(format!("{ip} handed out twice").into());
            }
            handles.push(handle.to_owned());
        }
    }
    let expected = PROCESSES * PROCESS_TASKS * PROCESS_PER_TASK;
    if handles.len() != expected {
        return Err(format!(
            "workers reported {} addresses, not {expected}",
            handles.len()
        )
        .into());
    }
    Ok((elapsed, handles))
}

/// `release_by_handle` of `handles`, split among `tasks` tasks each on its
/// own connection; every handle must free exactly one address.
async fn release(
    cfg: &DatastoreConfig,
    handles: Vec<String>,
    tasks: usize,
) -> Result<(Duration, Vec<Duration>)> {
    let chunk = handles.len().div_ceil(tasks).max(1);
    let mut work = Vec::with_capacity(tasks);
    for part in handles.chunks(chunk) {
        work.push((open(cfg).await?, part.to_vec()));
    }
    let start = Arc::new(tokio::sync::Barrier::new(work.len() + 1));
    let mut running = Vec::with_capacity(work.len());
    for (ipam, part) in work {
        let start = start.clone();
        running.push(tokio::spawn(async move {
            start.wait().await;
            let mut latencies = Vec::with_capacity(part.len());
            for handle in part {
                let began = Instant::now();
                let released = ipam.release_by_handle(&handle).await?;
                latencies.push(began.elapsed());
                if released.len() != 1 {
                    return Err(format!("{handle}: released {released:?}").into());
                }
            }
            Ok::<_, BoxError>(latencies)
        }));
    }
    start.wait().await;
    let began = Instant::now();
    let mut latencies = Vec::new();
    for task in running {
        latencies.extend(task.await??);
    }
    Ok((began.elapsed(), latencies))
}

/// Every scenario on one fresh store.
async fn run(backend: &'static str, cfg: &DatastoreConfig) -> Result<Vec<Row>> {
    let single_host = vec!["bench-single".to_owned()];
    let hosts: Vec<String> = (0..HOSTS).map(|h| format!("bench-{h}")).collect();
    let process_hosts: Vec<String> = (0..PROCESSES).map(|h| format!("bench-proc-{h}")).collect();
    let ipam = open(cfg).await?;
    seed(
        &ipam,
        &[&single_host[..], &hosts[..], &process_hosts[..]].concat(),
    )
    .await?;
    let row = |scenario: String, operations, elapsed, latencies| Row {
        backend,
        scenario,
        operations,
        elapsed,
        latencies,
    };
    let mut rows = Vec::new();

    let single = allocate(cfg, &single_host, "bench.single", 1, SINGLE).await?;
    rows.push(row(
        "auto_assign, 1 task".into(),
        single.handles.len(),
        single.elapsed,
        single.latencies,
    ));
    let concurrent = allocate(cfg, &hosts, "bench.concurrent", TASKS, PER_TASK).await?;
    rows.push(row(
        format!("auto_assign, {TASKS} tasks on {HOSTS} hosts, 1 process"),
        concurrent.handles.len(),
        concurrent.elapsed,
        concurrent.latencies,
    ));
    let (elapsed, process_handles) = allocate_in_processes(cfg, &process_hosts).await?;
    rows.push(row(
        format!(
            "auto_assign, {PROCESSES} processes x {PROCESS_TASKS} tasks on {PROCESSES} hosts (incl. process start)"
        ),
        process_handles.len(),
        elapsed,
        Vec::new(),
    ));

    let released = single.handles.len();
    let (elapsed, latencies) = release(cfg, single.handles, 1).await?;
    rows.push(row(
        "release_by_handle, 1 task".into(),
        released,
        elapsed,
        latencies,
    ));
    let released = concurrent.handles.len();
    let (elapsed, latencies) = release(cfg, concurrent.handles, TASKS).await?;
    rows.push(row(
        format!("release_by_handle, {TASKS} tasks"),
        released,
        elapsed,
        latencies,
    ));
    release(cfg, process_handles, TASKS).await?;

    let usage = ipam.usage().await?;
    let in_use: u128 = usage.pools.iter().map(|p| p.in_use).sum::<u128>()
        + usage
            .orphan_blocks
            .iter()
            .map(|b| b.in_use as u128)
            .sum::<u128>();
    if in_use != 0 {
        return Err(
            format!("{backend}: {in_use} addresses still in use after releasing all").into(),
        );
    }
    let report = ipam.check().await?;
    if !report.is_clean() {
        return Err(format!("{backend}: ipam check is not clean: {report:#?}").into());
    }
    Ok(rows)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then only the wiring is checked, not timed.
    if !std::env::args().any(|a| a == "--bench") {
        println!("ipam bench: run with `cargo bench -p datastore --bench ipam`");
        return Ok(());
    }
    let mut rows = Vec::new();

    let dir = tempfile::tempdir()?;
    let sqlite = DatastoreConfig::Sqlite {
        path: dir.path().join("bench.db"),
    };
    rows.extend(run("SQLite", &sqlite).await?);

    let etcd = tokio::task::spawn_blocking(EtcdServer::start).await??;
    rows.extend(run("etcd", &etcd.datastore_config()).await?);

    println!(
        "Pool {POOL}, blocks /{BLOCK_SIZE}, one IPv4 address per call; \
         {} CPUs.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| backend | scenario | operations | operations/s | p50 | p99 |");
    println!("|---|---|---:|---:|---:|---:|");
    for row in &rows {
        println!("{}", row.markdown());
    }
    Ok(())
}
