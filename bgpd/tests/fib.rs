//! The FIB's netlink side in a fresh namespace (root): multipath install,
//! replace, idempotent delete, reading back, and reconcile leaving other
//! protocols' routes alone; routes go in over nexthop objects of ours,
//! shared, removed once unused, and never another daemon's.

use std::net::IpAddr;

use bgpd::fib::{Fib, FibConfig, FibOp, FibTable};
use bgpd::prefix::Prefix;
use testkit::{Netns, require_root, veth_pair, without_nhid};

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
    // Someone else's nexthop object, with an id in our range, and a route
    // over it: never touched, its id never taken.
    ns.ip([
        "nexthop",
        "add",
        "id",
        "3355443202",
        "via",
        "10.98.0.9",
        "dev",
        "eth0",
        "proto",
        "static",
    ])
    .unwrap();
    ns.ip([
        "route",
        "add",
        "10.78.0.0/24",
        "nhid",
        "3355443202",
        "table",
        "100",
        "proto",
        "static",
    ])
    .unwrap();
    // Our routes, without the object's number.
    let show = || {
        let text = ns
            .ip(["route", "show", "table", "100", "proto", "200"])
            .unwrap();
        without_nhid(&text)
    };
    // Our objects: `id N via GW dev eth0 …` or `id N group A/B …`, a line each.
    let objects = || {
        let text = ns.ip(["nexthop", "show", "protocol", "200"]).unwrap();
        let mut lines: Vec<String> = text
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .skip(2)
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        lines.sort();
        lines
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
        assert!(fib.uses_nexthop_objects());
        // One object per gateway and a group over both.
        let objs = objects();
        assert_eq!(objs.len(), 3, "{objs:?}");
        assert!(objs.contains(&"via 10.98.0.2".to_string()), "{objs:?}");
        assert!(objs.contains(&"via 10.98.0.3".to_string()), "{objs:?}");
        assert!(
            !ns.ip(["nexthop", "show", "protocol", "200"])
                .unwrap()
                .contains("3355443202")
        );

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
        // The group and 10.98.0.2's object went with their last routes.
        assert_eq!(objects(), ["via 10.98.0.3"]);

        // A new instance finds our route; reconcile to a new desired
        // table removes it and adds the new one.
        let mut again = Fib::open(CONFIG).await.unwrap();
        assert_eq!(again.installed().len(), 1);
        let desired: FibTable = [(p("10.3.0.0/24"), vec![a("10.98.0.2")])].into();
        again.reconcile(&desired).await.unwrap();
        assert_eq!(again.read().await.unwrap(), desired);
        assert_eq!(objects(), ["via 10.98.0.2"]);
    })
    .unwrap();
    let all = without_nhid(&ns.ip(["route", "show", "table", "100"]).unwrap());
    assert!(
        all.contains("10.78.0.0/24 via 10.98.0.9 dev eth0 proto static"),
        "{all}"
    );
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

/// An object of ours removed behind the FIB's back takes its routes with it
/// (the kernel's doing); a reconcile puts both back.
#[test]
fn a_reconcile_repairs_a_nexthop_object_removed_behind_its_back() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("bgpfibnh").unwrap();
    let peer = Netns::new("bgpfibnh").unwrap();
    veth_pair(&ns, "eth0", &peer, "eth0").unwrap();
    ns.add_addr("eth0", "10.98.0.1/24").unwrap();
    let show = || {
        without_nhid(
            &ns.ip(["route", "show", "table", "100", "proto", "200"])
                .unwrap(),
        )
    };
    ns.block_on(|| async {
        let mut fib = Fib::open(CONFIG).await.unwrap();
        let desired: FibTable = [
            (p("10.1.0.0/24"), vec![a("10.98.0.2")]),
            (p("10.2.0.0/24"), vec![a("10.98.0.2")]),
        ]
        .into();
        fib.reconcile(&desired).await.unwrap();
        assert!(show().contains("10.2.0.0/24 via 10.98.0.2"), "{}", show());
        let objects = ns.ip(["nexthop", "show", "protocol", "200"]).unwrap();
        let id = objects.split_whitespace().nth(1).unwrap().to_string();
        ns.ip(["nexthop", "del", "id", &id]).unwrap();
        assert!(show().trim().is_empty(), "{}", show());
        fib.reconcile(&desired).await.unwrap();
        assert_eq!(fib.read().await.unwrap(), desired);
    })
    .unwrap();
}
