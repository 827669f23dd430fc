//! The FIB's netlink side in a fresh namespace (root): multipath install,
//! replace, idempotent delete, reading back, and reconcile leaving other
//! protocols' routes alone.

use std::net::IpAddr;

use bgpd::fib::{Fib, FibConfig, FibOp, FibTable};
use bgpd::prefix::Prefix;
use testkit::{Netns, require_root, veth_pair};

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const CONFIG: FibConfig = FibConfig {
    table: 100,
    protocol: 200,
};

#[test]
fn fib_installs_multipath_replaces_deletes_and_reconciles_only_its_own_routes() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("bgpfib").unwrap();
    let peer = Netns::new("bgpfib").unwrap();
    veth_pair(&ns, "eth0", &peer, "eth0").unwrap();
    ns.add_addr("eth0", "10.98.0.1/24").unwrap();
    // Someone else's route in the same table: never touched.
    ns.ip([
        "route",
        "add",
        "10.77.0.0/24",
        "via",
        "10.98.0.9",
        "table",
        "100",
        "proto",
        "static",
    ])
    .unwrap();
    let show = || {
        ns.ip(["route", "show", "table", "100", "proto", "200"])
            .unwrap()
    };

    ns.block_on(|| async {
        let mut fib = Fib::open(CONFIG).await.unwrap();
        assert!(fib.installed().is_empty());
        fib.apply(&[
            FibOp::Replace {
                prefix: p("10.1.0.0/24"),
                next_hops: vec![a("10.98.0.2"), a("10.98.0.3")],
            },
            FibOp::Replace {
                prefix: p("10.2.0.0/24"),
                next_hops: vec![a("10.98.0.2")],
            },
        ])
        .await
        .unwrap();
        let out = show();
        assert!(out.contains("10.1.0.0/24"), "{out}");
        assert!(
            out.contains("nexthop via 10.98.0.2") && out.contains("nexthop via 10.98.0.3"),
            "{out}"
        );
        assert!(out.contains("10.2.0.0/24 via 10.98.0.2"), "{out}");

        // Reading back gives what we installed.
        let read = fib.read().await.unwrap();
        assert_eq!(read, fib.installed());
        assert_eq!(
            read[&p("10.1.0.0/24")],
            vec![a("10.98.0.2"), a("10.98.0.3")]
        );

        // Replace down to one next hop; delete twice (idempotent).
        fib.update(&[(p("10.1.0.0/24"), vec![a("10.98.0.3")])])
            .await
            .unwrap();
        assert!(show().contains("10.1.0.0/24 via 10.98.0.3"), "{}", show());
        fib.apply(&[FibOp::Delete {
            prefix: p("10.2.0.0/24"),
        }])
        .await
        .unwrap();
        fib.apply(&[FibOp::Delete {
            prefix: p("10.2.0.0/24"),
        }])
        .await
        .unwrap();
        assert!(!show().contains("10.2.0.0/24"));

        // A new instance finds our route; reconcile to a new desired
        // table removes it and adds the new one.
        let mut again = Fib::open(CONFIG).await.unwrap();
        assert_eq!(again.installed().len(), 1);
        let desired: FibTable = [(p("10.3.0.0/24"), vec![a("10.98.0.2")])].into();
        again.reconcile(&desired).await.unwrap();
        assert_eq!(again.read().await.unwrap(), desired);
    })
    .unwrap();
    let all = ns.ip(["route", "show", "table", "100"]).unwrap();
    assert!(
        all.contains("10.77.0.0/24 via 10.98.0.9 dev eth0 proto static"),
        "{all}"
    );
    assert!(
        all.contains("10.3.0.0/24 via 10.98.0.2 dev eth0 proto 200"),
        "{all}"
    );
    assert!(!all.contains("10.1.0.0/24"), "{all}");
}
