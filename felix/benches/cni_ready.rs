//! CNI ADD until traffic flows, on one host (root): `cargo bench -p felix
//! --bench cni_ready`.
//!
//! A host namespace runs felix on a SQLite datastore with one pool; a probe
//! workload is made first. Then, `CNI_READY_RUNS` times (default 40): a new
//! workload through the CNI chain (`loopback`, `calico`), timed until the
//! ADD returns, then until the probe's ping (one every 5 ms) reaches it (felix has seen the
//! WorkloadEndpoint and programmed its route, sysctls and policy: until
//! then the new veth drops everything), then DEL.
//!
//! The anchor, on the same machine in the same run: the reference `ptp`
//! plugin with `host-local` IPAM (a veth and /32 routes, no datastore, no
//! policy), timed the same way. Prints p50/p99 of both and their ratios.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::cni::{Container, REFERENCE_PLUGINS, Runtime, interface_address};
use testkit::{Background, Netns};

struct Sample {
    add: Duration,
    ready: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `runs` ADD → ping → DEL rounds of `conf`, pinging from `probe`.
fn measure(
    rt: &Runtime<'_>,
    conf: &Value,
    probe: &Container,
    runs: usize,
    tag: &str,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    for i in 0..runs {
        let c = Container::new(
            &format!("{tag}{i:0>24}"),
            Some(("default", &format!("{tag}-{i}"))),
        );
        let started = Instant::now();
        let result = rt
            .add_chain(conf, &c, &json!({}))
            .unwrap_or_else(|e| panic!("ADD: {e:?}"));
        let add = started.elapsed();
        let ip = interface_address(&result, "eth0")
            .expect("an eth0 address")
            .to_string();
        // One ping process sending every 5 ms until the first reply (`-c1`
        // with a deadline): a lost request costs 5 ms, not a reply timeout.
        let answered = probe
            .ns()
            .cmd("ping")
            .args(["-q", "-c1", "-w30", "-i0.005", &ip])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(answered, "{ip} not reachable within 30 s");
        let ready = started.elapsed();
        rt.chain("DEL", conf, &c, &result, &json!({}))
            .unwrap_or_else(|e| panic!("DEL: {e:?}"));
        samples.push(Sample { add, ready });
    }
    samples
}

fn report(name: &str, samples: &[Sample]) -> (Duration, Duration) {
    let mut add: Vec<_> = samples.iter().map(|s| s.add).collect();
    let mut ready: Vec<_> = samples.iter().map(|s| s.ready).collect();
    add.sort();
    ready.sort();
    println!(
        "{name:<22} ADD p50 {:>7.1} ms  p99 {:>7.1} ms   ADD→ping p50 {:>7.1} ms  p99 {:>7.1} ms  ({} runs)",
        ms(percentile(&add, 0.5)),
        ms(percentile(&add, 0.99)),
        ms(percentile(&ready, 0.5)),
        ms(percentile(&ready, 0.99)),
        samples.len()
    );
    (percentile(&ready, 0.5), percentile(&ready, 0.99))
}

fn main() {
    if !testkit::require_root()
        || !testkit::require_programs(&[&format!("{REFERENCE_PLUGINS}/ptp")])
    {
        return;
    }
    let runs: usize = std::env::var("CNI_READY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let calico = testkit::workspace_binary("cni", "calico").expect("build the CNI plugin");
    testkit::workspace_binary("cni", "calico-ipam").expect("build calico-ipam");
    let felix = testkit::workspace_binary("felix", "felix").expect("build felix");
    let cni_path = format!("{}:{REFERENCE_PLUGINS}", calico.parent().unwrap().display());

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("calico.db");
    let pool = api::parse_documents(
        "pool.yaml",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: main}\nspec: {cidr: 10.250.0.0/16, blockSize: 26}\n",
    )
    .unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let kv = datastore::connect(&datastore::DatastoreConfig::Sqlite { path: db.clone() })
            .await
            .unwrap();
        datastore::ResourceStore::new(kv)
            .create_all(pool)
            .await
            .unwrap();
    });

    // Ours: felix in the host namespace.
    let host = Netns::new("bcni").unwrap();
    host.link_up("lo").unwrap();
    host.add_addr("lo", "10.0.9.1/32").unwrap();
    let log = std::fs::File::create(dir.path().join("felix.log")).unwrap();
    let _felix = Background::spawn(
        host.cmd(&felix)
            .args([
                "run",
                "--node-name",
                "bench",
                "--backend",
                "none",
                "--ip",
                "10.0.9.1/32",
            ])
            .env("DATASTORE_TYPE", "sqlite")
            .env("DATASTORE_PATH", &db)
            .env("FELIX_LOGSEVERITYSCREEN", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    )
    .unwrap();
    let conf = json!({
        "cniVersion": "1.0.0", "name": "k8s-pod-network",
        "plugins": [
            {"type": "loopback"},
            {"type": "calico", "datastore_type": "sqlite", "datastore_path": db.display().to_string(),
             "nodename": "bench", "ipam": {"type": "calico-ipam"}}
        ]
    });
    let rt = Runtime::new(&host, cni_path.as_str());
    let probe = Container::new("probe000000000000000000000", Some(("default", "probe")));
    rt.add_chain(&conf, &probe, &json!({})).expect("probe ADD");
    let ours = measure(&rt, &conf, &probe, runs, "c");

    // The anchor: ptp + host-local in another host namespace.
    let anchor_host = Netns::new("bptp").unwrap();
    anchor_host.link_up("lo").unwrap();
    anchor_host
        .exec("sysctl", ["-qw", "net.ipv4.ip_forward=1"])
        .unwrap();
    let ptp = json!({
        "cniVersion": "1.0.0", "name": "ptp-bench",
        "plugins": [
            {"type": "loopback"},
            {"type": "ptp", "ipam": {"type": "host-local", "subnet": "10.251.0.0/16",
             "dataDir": dir.path().join("host-local").display().to_string()}}
        ]
    });
    let rt_ptp = Runtime::new(&anchor_host, REFERENCE_PLUGINS);
    let probe_ptp = Container::new("pprobe00000000000000000000", Some(("default", "pprobe")));
    rt_ptp
        .add_chain(&ptp, &probe_ptp, &json!({}))
        .expect("ptp probe ADD");
    let anchor = measure(&rt_ptp, &ptp, &probe_ptp, runs, "p");

    println!("CNI ADD until traffic flows, one host, {runs} runs each:");
    let (o50, o99) = report("calico + felix", &ours);
    let (a50, a99) = report("ptp + host-local", &anchor);
    println!(
        "ratio (ours / ptp): p50 {:.2}, p99 {:.2}",
        o50.as_secs_f64() / a50.as_secs_f64(),
        o99.as_secs_f64() / a99.as_secs_f64()
    );
}
