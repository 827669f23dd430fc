//! CNI ADD (and DEL) latency of the `calico` plugin, called as a runtime
//! calls it: a fresh container namespace per round (not timed), ADD then
//! DEL, on a SQLite datastore in a host namespace of its own; then the same
//! for the whole chain (loopback, calico, portmap). Prints p50/p99.
//!
//! `cargo bench -p cni --bench add_latency` (root; ROUNDS=50 by default).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Container, Host};
use serde_json::{Value, json};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what:<28} n={:<3} p50={:>7.2} ms  p99={:>7.2} ms  min={:>7.2} ms  max={:>7.2} ms",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
    );
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: the ADD latency bench needs root");
        return;
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let host = Host::new(&[("10.77.0.0/20", 26)]);
    let list = host.conflist();
    let mut conf = host.calico_conf();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    let calico_only = json!({"cniVersion": "1.0.0", "name": list["name"], "plugins": [conf]});
    let no_ports = json!({});
    for (what, chain, runtime) in [
        ("calico", &calico_only, no_ports.clone()),
        (
            "loopback+calico+portmap",
            &list,
            json!({"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}),
        ),
    ] {
        let (mut adds, mut dels) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            let c = Container::new(
                &format!("bench{i:04}{}", what.len()),
                Some(("bench", &format!("pod-{i}"))),
            );
            let start = Instant::now();
            let result: Value = host
                .add_chain(chain, &c, &runtime)
                .unwrap_or_else(|o| panic!("ADD failed: {o:?}"));
            adds.push(start.elapsed());
            let start = Instant::now();
            host.chain("DEL", chain, &c, &result, &runtime)
                .unwrap_or_else(|o| panic!("DEL failed: {o:?}"));
            dels.push(start.elapsed());
        }
        report(&format!("ADD {what}"), adds);
        report(&format!("DEL {what}"), dels);
    }
}
