//! The README's quickstart end to end (root, BIRD 2): `scripts/quickstart.sh`
//! with the binaries this test built, under a lab name and state root of its
//! own, brings up `examples/lab/quickstart`, adds two workloads per host
//! through the CNI plugin and prints the reachability matrices (ping and TCP
//! 8080), which must follow the policy of its `resources.yaml` cell by cell
//! (the two differ where a rule names the port), and every host's
//! BGP session to the ToR must be Established; `--down` then leaves none of
//! the lab's namespaces.

mod topology;

use topology::Example;

/// The workload's `app` label: its name without the host suffix.
fn app(workload: &str) -> &str {
    workload.split('-').next().unwrap()
}

#[test]
fn the_quickstart_routes_polices_reports_bgp_and_tears_down() {
    if !topology::can_run() {
        return;
    }
    let qs = Example::quickstart();
    let report = qs.up();

    // `web` admits only clients, `db` only webs on TCP 8080, clients
    // everyone.
    let allowed = |tcp: bool| {
        move |from: &str, to: &str| match app(to) {
            "web" => app(from) == "client",
            "db" => tcp && app(from) == "web",
            _ => true,
        }
    };
    let ping = report.check_matrix("IPv4 ping", allowed(false));
    assert_eq!(ping, (14, 16), "{}", report.text());
    let tcp = report.check_matrix("IPv4 TCP 8080", allowed(true));
    assert_eq!(tcp, (18, 12), "{}", report.text());

    // Every host's status: the ToR, Established.
    for host in ["h1", "h2", "h3"] {
        let peers = report.peers(host);
        assert_eq!(
            peers,
            [("10.0.0.1".into(), "global".into(), "Established".into())],
            "{host}\n{}",
            report.text()
        );
    }

    // A second run refuses while the lab is up.
    let again = topology::Report::of(&qs.run(&[]));
    assert!(!again.success);
    assert!(again.stderr.contains("is up already"), "{}", again.stderr);

    qs.down();
}
