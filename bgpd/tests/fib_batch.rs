//! The FIB's batched netlink path at volume, in a fresh namespace (root):
//! a route the kernel refuses in the middle of a batch, and the FIB task's
//! bounded backlog draining tens of thousands of routes into the kernel.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bgpd::fib::{self, BACKLOG, BATCH, Fib, FibConfig, FibOp};
use bgpd::prefix::Prefix;
use testkit::{Netns, require_root, veth_pair};

const CONFIG: FibConfig = FibConfig {
    table: 100,
    protocol: 200,
};

/// The `n`th /24 from 10.0.0.0.
fn nth(n: usize) -> Prefix {
    let n = u32::try_from(n).unwrap();
    Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (n << 8))), 24).unwrap()
}

const GATEWAY: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 98, 0, 2));

/// A namespace whose eth0 (10.98.0.1/24) leads to a peer namespace.
fn namespaces() -> (Netns, Netns) {
    let ns = Netns::new("bgpfib").unwrap();
    let peer = Netns::new("bgpfib").unwrap();
    veth_pair(&ns, "eth0", &peer, "eth0").unwrap();
    ns.add_addr("eth0", "10.98.0.1/24").unwrap();
    (ns, peer)
}

#[test]
fn a_route_refused_inside_a_batch_is_reported_while_the_rest_of_its_batch_is_recorded() {
    if !require_root() {
        return;
    }
    let (ns, _peer) = namespaces();
    ns.block_on(|| async {
        let mut fib = Fib::open(CONFIG).await.unwrap();
        assert!(
            !fib.needs_reconcile(),
            "a fresh table has nothing to repair"
        );
        let bad = 100;
        let ops: Vec<FibOp> = (0..BATCH + 44)
            .map(|i| FibOp::Replace {
                prefix: nth(i),
                // Not on any link: the kernel refuses the gateway.
                next_hops: vec![if i == bad {
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
                } else {
                    GATEWAY
                }],
            })
            .collect();
        let err = fib.apply(&ops).await.unwrap_err().to_string();
        assert!(err.contains(&format!("installing {}", nth(bad))), "{err}");
        // The first batch went in but for the refused route; the second
        // was not sent.
        let read = fib.read().await.unwrap();
        assert_eq!(read.len(), BATCH - 1);
        assert!(!read.contains_key(&nth(bad)));
        assert!(read.contains_key(&nth(BATCH - 1)));
        assert!(!read.contains_key(&nth(BATCH)));
        assert_eq!(read, fib.installed());
        assert!(fib.needs_reconcile());
    })
    .unwrap();
}

#[test]
fn the_fib_task_reports_a_backlog_over_its_limit_and_drains_it_into_the_kernel() {
    if !require_root() {
        return;
    }
    let (ns, _peer) = namespaces();
    let count = BACKLOG + 10_000;
    ns.block_on(|| async {
        let (handle, _task) = fib::spawn(Fib::open(CONFIG).await.unwrap());
        handle.update((0..count).map(|i| (nth(i), vec![GATEWAY])).collect());
        // The task has not run yet (one thread): all of it is queued.
        assert!(handle.is_behind());
        let start = Instant::now();
        while handle.is_behind() {
            assert!(start.elapsed() < Duration::from_secs(60), "no progress");
            handle.applied().await;
        }
        loop {
            let installed = Fib::open(CONFIG).await.unwrap().installed_len();
            if installed == count {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{installed} of {count} routes in the kernel after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!handle.needs_reconcile());
        eprintln!("{count} routes into the kernel in {:.2?}", start.elapsed());
    })
    .unwrap();
}
