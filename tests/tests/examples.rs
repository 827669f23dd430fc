//! The route-reflector and dual-stack examples of `examples/lab/` end to end
//! (root): `scripts/lab-example.sh EXAMPLE` with the binaries these tests
//! built brings each up under a lab name of its own, plugs its workloads
//! through the CNI plugin and prints what reaches what; the tests check the
//! matrices against the example's policy cell by cell, the BGP sessions
//! every host has, the routes in the hosts' kernels, and that `--down`
//! leaves nothing. (The quickstart has its own test, `quickstart.rs`; both
//! share `topology/`.)

mod topology;

use std::collections::BTreeSet;
use std::time::Duration;

use testkit::poll_until;
use topology::{Example, peer_rows};

/// The label value a workload's name starts with (`blue-1` → `blue`).
fn kind(workload: &str) -> &str {
    workload.split('-').next().unwrap()
}

/// Next hops of the BGP routes (protocol 200, bgpd's) in a node's kernel,
/// one per route.
fn bgp_next_hops(ex: &Example, node: &str, family: &str) -> Vec<String> {
    let out = ex.in_node(node, &["ip", family, "route", "show", "proto", "200"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "via")?;
            Some(words[at + 1].to_string())
        })
        .collect()
}

/// The peer addresses of a status, all of which must be Established.
fn established(rows: &[(String, String, String)]) -> BTreeSet<String> {
    for (addr, _, info) in rows {
        assert_eq!(info, "Established", "{addr}: {rows:?}");
    }
    rows.iter().map(|(addr, _, _)| addr.clone()).collect()
}

fn set(addrs: &[&str]) -> BTreeSet<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

/// Whether `from` pings `to`'s first address within two seconds.
fn pings(ex: &Example, from: &str, to: &str, report: &topology::Report) -> bool {
    let addr = &report.addresses(to)[0];
    ex.in_workload(from, &["ping", "-c1", "-W2", "-q", addr])
        .status
        .success()
}

#[test]
fn route_reflectors_carry_every_route_with_the_mesh_off_and_one_reflector_is_enough() {
    if !topology::can_run() {
        return;
    }
    let ex = Example::new("route-reflectors", "rr");
    let report = ex.up();

    // Tenants alternate across the six hosts; each reaches only its own.
    let counts = report.check_matrix("IPv4 ping", |from, to| kind(from) == kind(to));
    assert_eq!(counts, (12, 18), "{}", report.text());

    // The reflectors peer with everyone, the clients with the reflectors only.
    let host = |n: u8| format!("10.0.0.1{n}");
    for n in 1..=6u8 {
        let peers = established(&report.peers(&format!("h{n}")));
        let want: BTreeSet<String> = if n <= 2 {
            (1..=6).filter(|m| *m != n).map(host).collect()
        } else {
            set(&["10.0.0.11", "10.0.0.12"])
        };
        assert_eq!(peers, want, "h{n}\n{}", report.text());
    }

    // Reflection keeps each route's next hop: h3 reaches every other host's
    // block directly, not through a reflector.
    let hops: BTreeSet<String> = bgp_next_hops(&ex, "h3", "-4").into_iter().collect();
    assert_eq!(
        hops,
        [1, 2, 4, 5, 6].map(host).into_iter().collect(),
        "{}",
        report.text()
    );

    // h1 stops being a reflector (its label and cluster ID removed; with the
    // cluster ID left, h1 would rightly drop what h2 reflects to it as a
    // cluster loop): every client drops its session to h1, and h2 alone
    // carries every route, h1's own included.
    for args in [
        &["label", "node", "h1", "route-reflector", "--remove"][..],
        &[
            "patch",
            "node",
            "h1",
            "-p",
            r#"{"spec": {"bgp": {"routeReflectorClusterID": null}}}"#,
        ],
    ] {
        let out = ex.calicoctl(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    for n in 1..=6u8 {
        let node = format!("h{n}");
        let want = if n == 2 {
            [1, 3, 4, 5, 6].map(host).into_iter().collect()
        } else {
            set(&["10.0.0.12"])
        };
        let settled = poll_until(Duration::from_secs(60), Duration::from_millis(250), || {
            let rows = peer_rows(&ex.node_status(&node));
            rows.iter().all(|(_, _, info)| info == "Established")
                && rows.into_iter().map(|(a, ..)| a).collect::<BTreeSet<_>>() == want
        });
        assert!(settled, "{node}: {}", ex.node_status(&node));
    }
    let all: BTreeSet<String> = [1, 2, 4, 5, 6].map(host).into_iter().collect();
    let routed = poll_until(Duration::from_secs(60), Duration::from_millis(250), || {
        bgp_next_hops(&ex, "h3", "-4")
            .into_iter()
            .collect::<BTreeSet<_>>()
            == all
    });
    assert!(routed, "h3: {:?}", bgp_next_hops(&ex, "h3", "-4"));
    for (from, to) in [
        ("blue-1", "blue-3"),
        ("blue-3", "blue-5"),
        ("blue-5", "blue-1"),
        ("red-2", "red-4"),
        ("red-4", "red-6"),
        ("red-6", "red-2"),
    ] {
        assert!(
            poll_until(Duration::from_secs(30), Duration::from_millis(250), || {
                pings(&ex, from, to, &report)
            }),
            "{from} → {to} after h1 stopped reflecting"
        );
    }
    assert!(!pings(&ex, "blue-3", "red-4", &report));

    ex.down();
}

#[test]
fn dual_stack_routes_and_polices_both_families_over_a_session_per_family() {
    if !topology::can_run() {
        return;
    }
    let ex = Example::new("dual-stack", "ds");
    let report = ex.up();

    // Every workload has an address of each family.
    for w in ["client-1", "web-1", "web-2", "db-2", "client-3", "db-3"] {
        let addrs = report.addresses(w);
        assert!(
            addrs.len() == 2 && addrs[0].contains('.') && addrs[1].contains(':'),
            "{w}: {addrs:?}"
        );
    }

    // `web` admits clients over both families; `db` admits webs over IPv6
    // only; clients admit everyone.
    let v4 = report.check_matrix("IPv4 ping", |from, to| match kind(to) {
        "web" => kind(from) == "client",
        "db" => false,
        _ => true,
    });
    assert_eq!(v4, (14, 16), "{}", report.text());
    let v6 = report.check_matrix("IPv6 ping", |from, to| match kind(to) {
        "web" => kind(from) == "client",
        "db" => kind(from) == "web",
        _ => true,
    });
    assert_eq!(v6, (18, 12), "{}", report.text());

    // The mesh: one session per family to each other host, and each
    // family's blocks routed via that family's address of their host.
    for n in 1..=3u8 {
        let node = format!("h{n}");
        let others: Vec<u8> = (1..=3).filter(|m| *m != n).collect();
        let rows = report.peers(&node);
        assert!(
            rows.iter().all(|(_, kind, _)| kind == "node-to-node mesh"),
            "{rows:?}"
        );
        let want_v4: BTreeSet<String> = others.iter().map(|m| format!("10.0.0.1{m}")).collect();
        let want_v6: BTreeSet<String> = others.iter().map(|m| format!("fd00:10::1{m}")).collect();
        assert_eq!(
            established(&rows),
            want_v4.union(&want_v6).cloned().collect(),
            "{node}\n{}",
            report.text()
        );
        let hops = |family| -> BTreeSet<String> {
            bgp_next_hops(&ex, &node, family).into_iter().collect()
        };
        assert_eq!(hops("-4"), want_v4, "{node}");
        assert_eq!(hops("-6"), want_v6, "{node}");
    }

    ex.down();
}
