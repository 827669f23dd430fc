//! IPAM cases that need several processes, written once against a
//! [`DatastoreConfig`] (as the backend conformance suite is) and run by each
//! backend's tests (`tests/ipam_sqlite.rs`, `tests/ipam_etcd.rs`), unchanged.
//!
//! Each case takes the store's configuration and the path of the
//! `ipam-worker` binary (a thin wrapper over [`worker`]), which reaches the
//! same store through [`DatastoreConfig::to_env`]. Cases assert by
//! panicking; give each a store of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use api::{Cidr, IPPool, IPPoolSpec, Node, NodeSpec, ObjectMeta, Resource};
use ipnet::IpNet;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::Ipam;
use super::model::HANDLES_PREFIX;
use crate::config::{DatastoreConfig, connect};
use crate::resources::ResourceStore;

/// The pool every case allocates from: 1024 addresses, 16 blocks of /26.
const POOL: &str = "10.77.0.0/22";

async fn open(cfg: &DatastoreConfig) -> Ipam {
    Ipam::new(
        connect(cfg)
            .await
            .unwrap_or_else(|e| panic!("connecting to {cfg:?}: {e}")),
    )
}

/// Creates the pool and a Node resource per host.
async fn seed(ipam: &Ipam, hosts: &[String]) {
    let store = ResourceStore::new(ipam.kv().clone());
    let pool = IPPool::new(
        ObjectMeta::named("suite-pool"),
        IPPoolSpec::new(POOL.parse::<Cidr>().unwrap()),
    );
    let mut resources = vec![Resource::from(pool)];
    resources.extend(
        hosts
            .iter()
            .map(|h| Resource::from(Node::new(ObjectMeta::named(h), NodeSpec::default()))),
    );
    store.apply_all(resources).await.expect("seeding the store");
}

/// Runs the worker binary against the store.
fn worker_command(
    cfg: &DatastoreConfig,
    worker: &Path,
    args: &[String],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(worker);
    cmd.args(args)
        .envs(cfg.to_env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Parses the worker's `<ip> <handle>` lines.
fn parse_line(line: &str) -> (IpAddr, String) {
    let (ip, handle) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("worker printed {line:?}"));
    (
        ip.parse()
            .unwrap_or_else(|e| panic!("worker printed {line:?}: {e}")),
        handle.to_owned(),
    )
}

/// Every handle stored.
async fn stored_handles(ipam: &Ipam) -> BTreeSet<String> {
    let (kvs, _) = ipam.kv().list(HANDLES_PREFIX).await.unwrap();
    kvs.iter()
        .map(|kv| kv.key[HANDLES_PREFIX.len()..].to_owned())
        .collect()
}

async fn total_in_use(ipam: &Ipam) -> u128 {
    let usage = ipam.usage().await.unwrap();
    usage.pools.iter().map(|p| p.in_use).sum::<u128>()
        + usage
            .orphan_blocks
            .iter()
            .map(|b| b.in_use as u128)
            .sum::<u128>()
}

/// Eight processes on four simulated hosts, two tasks each, 100 addresses
/// per process from one small pool (800 of its 1024): every address is
/// handed out once, the store agrees with what the workers report, `check`
/// is clean; releasing everything (half by handle, half by address, from
/// concurrent tasks) leaves no address in use and `check` clean.
pub async fn concurrent_allocations_from_many_processes_never_collide(
    cfg: &DatastoreConfig,
    worker: &Path,
) {
    const PROCESSES: usize = 8;
    const TASKS: usize = 2;
    const PER_TASK: usize = 50;
    let hosts: Vec<String> = (0..4).map(|i| format!("host-{i}")).collect();
    let ipam = open(cfg).await;
    seed(&ipam, &hosts).await;

    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            let args = [
                "allocate".to_owned(),
                hosts[p % hosts.len()].clone(),
                format!("k8s-pod-network.p{p}"),
                TASKS.to_string(),
                PER_TASK.to_string(),
            ];
            worker_command(cfg, worker, &args)
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", worker.display()))
        })
        .collect();
    let mut owners: BTreeMap<IpAddr, String> = BTreeMap::new();
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let (ip, handle) = parse_line(line);
            if let Some(first) = owners.insert(ip, handle.clone()) {
                panic!("{ip} handed out twice: to {first} and to {handle}");
            }
        }
    }
    let pool: IpNet = POOL.parse().unwrap();
    assert_eq!(owners.len(), PROCESSES * TASKS * PER_TASK);
    assert!(owners.keys().all(|ip| pool.contains(ip)));
    assert_eq!(total_in_use(&ipam).await, owners.len() as u128);
    let report = ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.allocated, owners.len());
    assert_eq!(report.handles, owners.len());
    for (ip, handle) in owners.iter().step_by(37) {
        let status = ipam.ip_status(*ip).await.unwrap();
        assert_eq!(
            status.handle.as_deref(),
            Some(handle.as_str()),
            "{status:?}"
        );
    }

    let entries: Vec<(IpAddr, String)> = owners.into_iter().collect();
    let mut tasks = Vec::new();
    for (t, chunk) in entries.chunks(entries.len().div_ceil(4)).enumerate() {
        let ipam = open(cfg).await;
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for (ip, handle) in chunk {
                if t % 2 == 0 {
                    let released = ipam.release_by_handle(&handle).await.unwrap();
                    assert_eq!(released, vec![ip]);
                } else {
                    let unallocated = ipam.release_ips(&[ip]).await.unwrap();
                    assert!(unallocated.is_empty(), "{ip} was not allocated");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(total_in_use(&ipam).await, 0);
    assert!(stored_handles(&ipam).await.is_empty());
    let report = ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    for host in &hosts {
        let kept = ipam.host_blocks(host).await.unwrap();
        assert!(kept.len() <= 1, "{host} keeps empty blocks {kept:?}");
    }
}

/// A process killed while allocating leaves every committed address owned
/// by its handle: `check` finds nothing inconsistent and counts exactly the
/// addresses the worker committed (those it printed, plus at most the one
/// in flight per task); releasing the worker's handles frees them all.
pub async fn a_killed_allocator_leaves_only_owned_addresses(cfg: &DatastoreConfig, worker: &Path) {
    const SEEN_BEFORE_KILL: usize = 40;
    const TASKS: usize = 2;
    let host = "crash-host".to_owned();
    let ipam = open(cfg).await;
    seed(&ipam, std::slice::from_ref(&host)).await;
    let args = [
        "allocate".to_owned(),
        host.clone(),
        "k8s-pod-network.crash".to_owned(),
        TASKS.to_string(),
        "1000".to_owned(),
    ];
    let mut child = worker_command(cfg, worker, &args).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = BTreeMap::new();
    while printed.len() < SEEN_BEFORE_KILL {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("worker output within 30 s")
            .unwrap()
            .expect("worker exited early");
        let (ip, handle) = parse_line(&line);
        printed.insert(handle, ip);
    }
    child.kill().await.unwrap();
    // Lines printed before the kill but not yet read.
    while let Ok(Some(line)) = lines.next_line().await {
        let (ip, handle) = parse_line(&line);
        printed.insert(handle, ip);
    }

    let report = ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    let handles = stored_handles(&ipam).await;
    assert!(
        printed.keys().all(|h| handles.contains(h)),
        "a printed handle is missing: {printed:?} vs {handles:?}"
    );
    assert!(
        handles.len() <= printed.len() + TASKS,
        "{} handles stored, {} printed",
        handles.len(),
        printed.len()
    );
    assert_eq!(report.allocated, handles.len());
    assert_eq!(report.handles, handles.len());
    for (handle, ip) in &printed {
        let status = ipam.ip_status(*ip).await.unwrap();
        assert_eq!(status.handle.as_deref(), Some(handle.as_str()));
    }

    for handle in &handles {
        assert_eq!(ipam.release_by_handle(handle).await.unwrap().len(), 1);
    }
    assert_eq!(total_in_use(&ipam).await, 0);
    let report = ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.handles, 0);
}

/// What the `ipam-worker` binary does.
pub mod worker {
    use super::*;
    use crate::ipam::AutoAssignArgs;

    /// Assigns one IPv4 address per handle `<prefix>.<task>-<i>` for
    /// `per_task` handles in each of `tasks` concurrent tasks (each on its
    /// own connection), printing `<ip> <handle>` once each is committed.
    pub async fn allocate(
        cfg: &DatastoreConfig,
        host: &str,
        prefix: &str,
        tasks: usize,
        per_task: usize,
    ) -> Result<(), String> {
        let mut running = Vec::new();
        for t in 0..tasks {
            let ipam = Ipam::new(connect(cfg).await.map_err(|e| e.to_string())?);
            let host = host.to_owned();
            let prefix = prefix.to_owned();
            running.push(tokio::spawn(async move {
                for i in 0..per_task {
                    let handle = format!("{prefix}.{t}-{i}");
                    let args = AutoAssignArgs {
                        handle: handle.clone(),
                        host: host.clone(),
                        num_v4: 1,
                        ..AutoAssignArgs::default()
                    };
                    let assigned = ipam
                        .auto_assign(&args)
                        .await
                        .map_err(|e| format!("{handle}: {e}"))?;
                    for a in assigned.v4 {
                        println!("{} {handle}", a.ip);
                    }
                }
                Ok::<(), String>(())
            }));
        }
        for t in running {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    }

    /// The command line: `allocate <host> <handle-prefix> <tasks> <per-task>`;
    /// the store comes from the environment.
    pub async fn main(args: &[String]) -> Result<(), String> {
        let usage = "usage: allocate <host> <handle-prefix> <tasks> <per-task>";
        let number = |i: usize, what: &str| -> Result<usize, String> {
            let arg = args.get(i).ok_or(format!("missing <{what}>; {usage}"))?;
            arg.parse().map_err(|e| format!("<{what}> {arg:?}: {e}"))
        };
        match args.first().map(String::as_str) {
            Some("allocate") => {
                let cfg = DatastoreConfig::from_env().map_err(|e| e.to_string())?;
                let host = args.get(1).ok_or(format!("missing <host>; {usage}"))?;
                let prefix = args
                    .get(2)
                    .ok_or(format!("missing <handle-prefix>; {usage}"))?;
                allocate(
                    &cfg,
                    host,
                    prefix,
                    number(3, "tasks")?,
                    number(4, "per-task")?,
                )
                .await
            }
            other => Err(format!("unknown command {other:?}; {usage}")),
        }
    }
}
