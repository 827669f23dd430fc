//! Kernel tests (root, `nft`, `ip`, `python3`): every golden file loads into a
//! fresh network namespace and lists back with the same sets, maps and chains;
//! and the compiled ruleset, loaded in a "host" namespace routing between two
//! "workload" namespaces joined by `cali*` veths, passes exactly the traffic the
//! policy allows.

mod common;

use common::{cases, compile_case, compile_yaml, pings, ready, server, tcp_connects, topology};
use testkit::Netns;

/// Names declared in `nft list table` output for one kind (`set`, `map`, `chain`).
fn listed(listing: &str, kind: &str) -> Vec<String> {
    let prefix = format!("\t{kind} ");
    listing
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.strip_suffix(" {"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_golden_file_loads_into_the_kernel_and_lists_the_same_objects() {
    if !ready() {
        return;
    }
    for case in cases() {
        let ns = Netns::new("polk").unwrap();
        let file = case.join("expected.nft");
        ns.exec(
            "nft",
            [
                std::ffi::OsStr::new("-c"),
                std::ffi::OsStr::new("-f"),
                file.as_os_str(),
            ],
        )
        .unwrap_or_else(|e| panic!("{}: nft -c: {e}", case.display()));
        ns.exec("nft", [std::ffi::OsStr::new("-f"), file.as_os_str()])
            .unwrap_or_else(|e| panic!("{}: nft -f: {e}", case.display()));
        let out = ns.exec("nft", ["list", "table", "inet", "calico"]).unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        let ruleset = compile_case(&case);
        let mut want: Vec<String> = ruleset.sets.keys().cloned().collect();
        let mut got = listed(&listing, "set");
        want.sort();
        got.sort();
        assert_eq!(got, want, "{}: sets", case.display());
        let mut got = listed(&listing, "map");
        got.sort();
        assert_eq!(
            got,
            ruleset.maps.keys().cloned().collect::<Vec<_>>(),
            "{}: maps",
            case.display()
        );
        let mut got = listed(&listing, "chain");
        got.sort();
        assert_eq!(
            got,
            ruleset
                .chains
                .keys()
                .map(|c| c.to_string())
                .collect::<Vec<_>>(),
            "{}: chains",
            case.display()
        );
        let rules = listing
            .lines()
            .filter(|l| l.contains(" counter packets "))
            .count()
            + listing
                .lines()
                .filter(|l| l.trim_start().starts_with("counter packets"))
                .count();
        let want_rules: usize = ruleset.chains.values().map(|c| c.rules.len()).sum();
        assert_eq!(
            rules,
            want_rules,
            "{}: every rule is there with its counter",
            case.display()
        );
    }
}

const WORKLOADS: &str = "
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: open}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: a, namespace: shop, labels: {app: a}}
spec: {node: host, interfaceName: calia, ipNetworks: [10.200.1.1/32], profiles: [open]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: b, namespace: shop, labels: {app: b}}
spec:
  node: host
  interfaceName: calib
  ipNetworks: [10.200.2.1/32]
  ports: [{name: web, protocol: TCP, port: 8080}]
";

#[test]
fn the_kernel_passes_exactly_the_traffic_the_policy_allows() {
    if !ready() {
        return;
    }
    let t = topology();
    let _web = server(&t.b, 8080);
    let _other = server(&t.b, 8081);
    // Before any ruleset: everything flows (the topology works).
    assert!(pings(&t.a, "10.200.2.1"));
    assert!(tcp_connects(&t.a, "10.200.2.1", 8081));

    // b takes its named port "web" and ping from a; b has no profile and no
    // egress policy, so it can start nothing.
    let ruleset = compile_yaml(&format!(
        "{WORKLOADS}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: b, namespace: shop}}
spec:
  selector: app == 'b'
  ingress:
    - action: Allow
      protocol: TCP
      source: {{selector: app == 'a'}}
      destination: {{ports: [web]}}
    - action: Allow
      protocol: ICMP
      source: {{selector: app == 'a'}}
"
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ruleset.nft");
    std::fs::write(&file, policy::render(&ruleset)).unwrap();
    t.host
        .exec("nft", [std::ffi::OsStr::new("-f"), file.as_os_str()])
        .unwrap();

    assert!(tcp_connects(&t.a, "10.200.2.1", 8080), "a -> b:web allowed");
    assert!(pings(&t.a, "10.200.2.1"), "a -> b ping allowed");
    assert!(
        !tcp_connects(&t.a, "10.200.2.1", 8081),
        "a -> b:8081 denied"
    );
    assert!(
        !pings(&t.b, "10.200.1.1"),
        "b -> a denied by b's egress (no policy, no profile)"
    );
    assert!(
        !pings(&t.b, "10.200.2.254"),
        "b -> host: workload egress drops first"
    );
    assert!(
        pings(&t.host, "10.200.1.1"),
        "the host reaches its workloads"
    );

    let out = t
        .host
        .exec("nft", ["list", "chain", "inet", "calico", "np-in-shop/b"])
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.contains(" dport @port4-") && !l.contains("packets 0 ")),
        "the named-port rule counted the allowed connection:\n{listing}"
    );
}
