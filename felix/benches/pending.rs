//! The cost of pending verdicts: felix traces every new connection through
//! the would-be ruleset with the staged policies enforced
//! (`flowlog::pending::Pending::hits`), on the flow-log reader's one task.
//! How many traces a second that is, on the policy benches' cluster of
//! 1,000 endpoints and 1,000 policies with two staged policies (a
//! StagedGlobalNetworkPolicy deny-all ordered first, a staged NetworkPolicy
//! replacing one), for connections between random endpoints on the
//! policies' ports. The anchor, in the same run: the same traces through
//! the enforced ruleset (`policy::trace::Tracer`), what a trace costs
//! without staged policies. No root needed.
//!
//! `cargo bench -p felix --bench pending` (`PENDING_SECONDS`, default 3)

#[path = "../../policy/benches/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use felix::flowlog::pending::Pending;
use nfevents::Tuple;
use policy::trace::{End, Query, Tracer};

const ENDPOINTS: usize = 1000;
const POLICIES: usize = 1000;

const STAGED: &str = "---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: deny-all}
spec:
  order: 1
  selector: all()
  types: [Ingress, Egress]
  ingress: [{action: Deny}]
  egress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: np-7, namespace: ns-7}
spec:
  stagedAction: Set
  selector: app == 'app-7'
  ingress: [{action: Deny}]
";

/// Endpoint `e`'s IPv4 address in `common::cluster`.
fn addr(e: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 202, (e / 250) as u8, (e % 250 + 1) as u8))
}

/// A fixed pseudo-random sequence of connections (xorshift).
fn tuples(n: usize) -> Vec<Tuple> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    };
    (0..n)
        .map(|_| Tuple {
            proto: 6,
            src: addr(next() % ENDPOINTS),
            dst: addr(next() % ENDPOINTS),
            sport: 40_000,
            dport: 1000 + (next() % 1000) as u16,
        })
        .collect()
}

/// Calls `f` over `tuples` round and round for `seconds`: calls a second.
fn rate(seconds: u64, tuples: &[Tuple], mut f: impl FnMut(&Tuple)) -> f64 {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut calls = 0usize;
    while Instant::now() < deadline {
        for _ in 0..256 {
            f(&tuples[calls % tuples.len()]);
            calls += 1;
        }
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let seconds = std::env::var("PENDING_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let yaml = common::cluster(ENDPOINTS, POLICIES, &[]) + STAGED;
    let model = common::model(&common::resources(&yaml));
    let built = Instant::now();
    let pending = Pending::new(&model).expect("the model stages policies");
    let compile = built.elapsed();
    let tracer = Tracer::new(model.clone());
    let tuples = tuples(4096);

    let mut denied = 0usize;
    let staged = rate(seconds, &tuples, |t| {
        let [egress, ingress] = pending.hits(t);
        denied += usize::from(egress.iter().chain(&ingress).any(|h| h.name == "deny-all"));
    });
    assert!(denied > 0, "the staged deny-all decides some connections");
    let enforced = rate(seconds, &tuples, |t| {
        let q = Query {
            src: End::Addr(t.src),
            dst: End::Addr(t.dst),
            protocol: api::Protocol::Tcp,
            port: t.dport,
            family: None,
        };
        let _ = tracer.trace(&q);
    });
    println!(
        "pending verdicts, {ENDPOINTS} endpoints, {POLICIES} policies, 2 staged, one core, {seconds} s each"
    );
    println!("| what | traces/s |");
    println!("|---|---|");
    println!("| with the staged policies (Pending::hits) | {staged:.0} |");
    println!("| the enforced ruleset (Tracer::trace), anchor | {enforced:.0} |");
    println!(
        "ratio {:.2}; would-be ruleset compiled in {} ms once per model",
        staged / enforced,
        compile.as_millis()
    );
}
