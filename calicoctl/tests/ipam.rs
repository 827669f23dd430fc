//! End-to-end tests of `calicoctl ipam` (the real binary) against a fresh
//! embedded (SQLite) store per test. Addresses are allocated by calling the
//! IPAM library on the same store file, as the CNI plugin would.

use std::net::IpAddr;
use std::sync::Arc;

use datastore::ipam::{AutoAssignArgs, Ipam, model};
use datastore::{KvStore, SqliteStore};
use serde_json::Value;

mod common;

/// The shared harness plus a runtime for calling the IPAM library directly.
struct Ctl {
    base: common::Ctl,
    runtime: tokio::runtime::Runtime,
}

impl std::ops::Deref for Ctl {
    type Target = common::Ctl;

    fn deref(&self) -> &common::Ctl {
        &self.base
    }
}

impl Ctl {
    fn new() -> Self {
        Self {
            base: common::Ctl::new(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// The IPAM library on the same store, as a CNI plugin uses it.
    fn ipam(&self) -> Ipam {
        let store: Arc<dyn KvStore> = Arc::new(SqliteStore::open(self.db()).unwrap());
        Ipam::new(store)
    }

    /// Allocates `n` addresses to `handle` for `host`, naming no pod.
    fn assign(&self, handle: &str, host: &str, n: usize) -> Vec<IpAddr> {
        self.assign_with(handle, host, n, &[])
    }

    /// Allocates `n` addresses to `handle` for `host` with these attributes.
    fn assign_with(
        &self,
        handle: &str,
        host: &str,
        n: usize,
        attrs: &[(&str, &str)],
    ) -> Vec<IpAddr> {
        let args = AutoAssignArgs {
            handle: handle.into(),
            host: host.into(),
            num_v4: n,
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..AutoAssignArgs::default()
        };
        let assigned = self
            .runtime
            .block_on(self.ipam().auto_assign(&args))
            .unwrap();
        assigned.v4.iter().map(|a| a.ip).collect()
    }

    /// One address for pod `shop/<pod>` on node1, as the CNI plugin asks.
    fn assign_pod(&self, pod: &str) -> IpAddr {
        let handle = format!("k8s-pod-network.{pod}");
        self.assign_with(&handle, "node1", 1, &[("namespace", "shop"), ("pod", pod)])[0]
    }
}

/// The workload endpoint of pod `shop/<pod>` on node1, listing `ips`.
fn endpoint(pod: &str, ips: &[String]) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  \
         name: node1-k8s-{pod}-eth0\n  namespace: shop\nspec:\n  node: node1\n  \
         pod: {pod}\n  interfaceName: cali{pod}\n  ipNetworks: [{}]\n",
        ips.iter()
            .map(|ip| format!("{ip}/32"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

const SETUP: &str = "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool-a
spec:
  cidr: 10.10.0.0/24
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node1
";

#[test]
fn show_reports_pool_and_block_usage_and_who_owns_an_address() {
    let ctl = Ctl::new();
    ctl.apply(SETUP);
    let ips = ctl.assign_with(
        "k8s-pod-network.0123abcd",
        "node1",
        3,
        &[("pod", "web-0"), ("namespace", "shop")],
    );

    let table = ctl.run(&["ipam", "show"]).ok().stdout;
    let pool_row = table
        .lines()
        .find(|l| l.starts_with("IP Pool"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        pool_row.contains("10.10.0.0/24") && pool_row.contains("3 (1%)"),
        "{table}"
    );
    assert!(!table.contains("Block"), "{table}");

    let blocks = ctl.run(&["ipam", "show", "--show-blocks"]).ok().stdout;
    let block_row = blocks
        .lines()
        .find(|l| l.starts_with("Block"))
        .unwrap_or_else(|| panic!("{blocks}"));
    assert!(
        block_row.contains("node1") && block_row.contains("3 (4%)"),
        "{blocks}"
    );

    let json = ctl.run(&["ipam", "show", "-o", "json"]).ok().json();
    assert_eq!(json["pools"][0]["inUse"], 3);
    assert_eq!(json["pools"][0]["blocks"][0]["host"], "node1");

    let ip = ips[1].to_string();
    let owner = ctl.run(&["ipam", "show", "--ip", &ip]).ok().stdout;
    assert!(owner.contains(&format!("IP {ip} is in use")), "{owner}");
    assert!(
        owner.contains("Handle: k8s-pod-network.0123abcd"),
        "{owner}"
    );
    assert!(
        owner.contains("pod: web-0") && owner.contains("namespace: shop"),
        "{owner}"
    );
    assert!(owner.contains("node: node1"), "{owner}");

    let free = ctl
        .run(&["ipam", "show", "--ip", "10.10.0.200"])
        .ok()
        .stdout;
    assert!(free.contains("is not assigned"), "{free}");
    let outside = ctl
        .run(&["ipam", "show", "--ip", "192.168.0.1"])
        .ok()
        .stdout;
    assert!(outside.contains("not in any IP pool"), "{outside}");
    ctl.run(&["ipam", "show", "--ip", "not-an-ip"])
        .fails_with(2);
}

#[test]
fn show_counts_reserved_addresses_once_in_the_ips_reserved_column() {
    let ctl = Ctl::new();
    ctl.apply(SETUP);
    let ips = ctl.assign("h", "node1", 3);
    let json = ctl.run(&["ipam", "show", "-o", "json"]).ok().json();
    let block: ipnet::IpNet = json["pools"][0]["blocks"][0]["cidr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The block's first /30 (which may hold allocated addresses), the same
    // again inside a second reservation, and a /28 of the pool no block holds.
    let first = ipnet::IpNet::new(block.network(), 30).unwrap();
    let elsewhere = ["10.10.0.0/28", "10.10.0.64/28", "10.10.0.128/28"]
        .into_iter()
        .find(|c| !block.contains(&c.parse::<ipnet::IpNet>().unwrap()))
        .unwrap();
    ctl.apply(&format!(
        "apiVersion: projectcalico.org/v3\nkind: IPReservation\nmetadata: {{name: r1}}\n\
         spec: {{reservedCIDRs: [{first}, {elsewhere}]}}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: IPReservation\nmetadata: {{name: r2}}\n\
         spec: {{reservedCIDRs: [{}/32]}}\n",
        block.network()
    ));
    let both = ips.iter().filter(|ip| first.contains(*ip)).count();

    let json = ctl.run(&["ipam", "show", "-o", "json"]).ok().json();
    let pool = &json["pools"][0];
    assert_eq!(pool["inUse"], 3);
    assert_eq!(pool["reserved"], 4 + 16, "{pool}");
    assert_eq!(pool["free"], 256 - 3 - 20 + both, "{pool}");
    let b = &pool["blocks"][0];
    assert_eq!(
        (b["reserved"].clone(), b["free"].clone()),
        (4.into(), (64 - 3 - 4 + both).into())
    );

    let table = ctl.run(&["ipam", "show", "--show-blocks"]).ok().stdout;
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("IPS IN USE  IPS RESERVED  IPS FREE"),
        "{table}"
    );
    let pool_row = table.lines().find(|l| l.starts_with("IP Pool")).unwrap();
    assert!(pool_row.contains("20 (7%)"), "{table}");
}

#[test]
fn check_is_clean_then_finds_a_leak_that_release_from_report_fixes() {
    let ctl = Ctl::new();
    ctl.apply(SETUP);
    ctl.assign("k8s-pod-network.keep", "node1", 2);
    let lost = ctl.assign("k8s-pod-network.lost", "node1", 1)[0];

    let clean = ctl.run(&["ipam", "check"]).ok().stdout;
    assert!(clean.contains("No problems found"), "{clean}");
    assert!(clean.contains("3 allocated address(es)"), "{clean}");
    assert!(
        clean.contains("host node1: 1 block(s), 3 address(es)"),
        "{clean}"
    );

    // The handle of one address disappears (as if its owner crashed
    // between two tools); the address is now owned by nobody.
    ctl.runtime
        .block_on(
            ctl.ipam()
                .kv()
                .delete(&model::handle_key("k8s-pod-network.lost"), None),
        )
        .unwrap();
    let run = ctl
        .run(&["ipam", "check", "-o", "report.json"])
        .fails_with(1);
    assert!(
        run.stdout
            .contains(&format!("leaked address {lost} in block")),
        "{run:?}"
    );
    assert!(run.stderr.contains("1 problem(s)"), "{run:?}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(ctl.dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["leaked"][0]["ip"], lost.to_string());
    assert_eq!(report["leaked"][0]["reason"], "handleMissing");
    assert_eq!(report["leaked"][0]["handle"], "k8s-pod-network.lost");

    let released = ctl
        .run(&["ipam", "release", "--from-report", "report.json"])
        .ok()
        .stdout;
    assert!(released.contains(&format!("Released {lost}")), "{released}");
    ctl.run(&["ipam", "check"]).ok();
    // Replaying the report changes nothing more.
    let again = ctl
        .run(&["ipam", "release", "--from-report", "report.json"])
        .ok()
        .stdout;
    assert!(again.contains("Released 0 of the 1"), "{again}");

    std::fs::write(ctl.dir.path().join("bad.json"), "{}").unwrap();
    ctl.run(&["ipam", "release", "--from-report", "bad.json"])
        .fails_with(2);
}

#[test]
fn check_holds_pod_addresses_against_workload_endpoints() {
    let ctl = Ctl::new();
    ctl.apply(SETUP);
    let web = ctl.assign_pod("web").to_string();
    let gone = ctl.assign_pod("gone").to_string();
    // web's endpoint lists its address and one IPAM never allocated; the
    // pod `gone` has no endpoint (its teardown never released the address).
    ctl.apply(&endpoint("web", &[web.clone(), "10.10.0.200".into()]));

    let run = ctl
        .run(&["ipam", "check", "-o", "report.json"])
        .fails_with(1);
    assert!(
        run.stdout.contains(&format!(
            "leaked address {gone} in block 10.10.0.0/26 (handle k8s-pod-network.gone): WorkloadEndpointMissing"
        )),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(
            "workload endpoint shop/node1-k8s-web-eth0 uses 10.10.0.200, which IPAM has not allocated"
        ),
        "{run:?}"
    );
    assert!(run.stderr.contains("2 problem(s)"), "{run:?}");

    let released = ctl
        .run(&["ipam", "release", "--from-report", "report.json"])
        .ok()
        .stdout;
    assert!(released.contains(&format!("Released {gone}")), "{released}");
    ctl.apply(&endpoint("web", &[web]));
    let clean = ctl.run(&["ipam", "check"]).ok().stdout;
    assert!(
        clean.contains("1 allocated address(es), 1 handle(s), 1 workload endpoint address(es)"),
        "{clean}"
    );
}

#[test]
fn check_reports_blocks_of_a_host_without_a_node() {
    let ctl = Ctl::new();
    ctl.apply(SETUP);
    ctl.assign("k8s-pod-network.x", "ghost", 1);
    let run = ctl.run(&["ipam", "check"]).fails_with(1);
    assert!(run.stdout.contains("host ghost"), "{run:?}");
    assert!(run.stdout.contains("NodeMissing"), "{run:?}");
}

#[test]
fn check_reports_overlapping_pools_written_past_the_stores_check() {
    let ctl = Ctl::new();
    ctl.apply(SETUP);
    // As two clients racing could leave them: written straight to the store.
    let kv: Arc<dyn KvStore> = Arc::new(SqliteStore::open(ctl.db()).unwrap());
    let key = datastore::ResourceStore::key(api::Kind::IPPool, None, "pool-b");
    let doc = br#"{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"pool-b"},"spec":{"cidr":"10.10.0.128/25"}}"#;
    ctl.runtime.block_on(kv.put(&key, doc.to_vec())).unwrap();
    let run = ctl.run(&["ipam", "check"]).fails_with(1);
    assert!(
        run.stdout
            .contains("IPPool pool-b (10.10.0.128/25) overlaps IPPool pool-a (10.10.0.0/24)"),
        "{run:?}"
    );
}

#[test]
fn release_by_address_frees_it_once() {
    let ctl = Ctl::new();
    ctl.apply(SETUP);
    let ip = ctl.assign("k8s-pod-network.r", "node1", 1)[0].to_string();
    let out = ctl.run(&["ipam", "release", "--ip", &ip]).ok().stdout;
    assert!(
        out.contains(&format!("Successfully released {ip}")),
        "{out}"
    );
    let run = ctl.run(&["ipam", "release", "--ip", &ip]).fails_with(1);
    assert!(run.stderr.contains("not allocated"), "{run:?}");
    let status = ctl.run(&["ipam", "show", "--ip", &ip]).ok().stdout;
    assert!(status.contains("is not assigned"), "{status}");
    ctl.run(&["ipam", "check"]).ok();
    ctl.run(&["ipam", "release"]).fails_with(2);
}

#[test]
fn split_replaces_a_pool_by_equal_smaller_pools() {
    let ctl = Ctl::new();
    ctl.apply(SETUP);
    let ip = ctl.assign("k8s-pod-network.s", "node1", 1)[0];
    let out = ctl
        .run(&["ipam", "split", "--cidr=10.10.0.0/24", "2"])
        .ok()
        .stdout;
    assert!(out.contains("pool-a-0  10.10.0.0/25"), "{out}");
    assert!(out.contains("pool-a-1  10.10.0.128/25"), "{out}");
    let pools = ctl.run(&["get", "ippools", "-o", "json"]).ok().json();
    let cidrs: Vec<&str> = pools["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spec"]["cidr"].as_str().unwrap())
        .collect();
    assert_eq!(cidrs, ["10.10.0.0/25", "10.10.0.128/25"]);
    let status = ctl
        .run(&["ipam", "show", "--ip", &ip.to_string()])
        .ok()
        .stdout;
    assert!(status.contains("Pool: pool-a-0"), "{status}");

    let run = ctl
        .run(&["ipam", "split", "--name", "pool-a-1", "3"])
        .fails_with(2);
    assert!(run.stderr.contains("power of two"), "{run:?}");
    ctl.run(&["ipam", "split", "--name", "pool-a-1", "4"])
        .fails_with(2);
    let run = ctl
        .run(&["ipam", "split", "--name", "nope", "2"])
        .fails_with(1);
    assert!(run.stderr.contains("nope"), "{run:?}");
}

#[test]
fn configure_sets_strict_affinity_and_max_blocks_per_host() {
    let ctl = Ctl::new();
    let out = ctl
        .run(&[
            "ipam",
            "configure",
            "--strictaffinity=true",
            "--max-blocks-per-host",
            "4",
        ])
        .ok()
        .stdout;
    assert!(
        out.contains("strictAffinity=true maxBlocksPerHost=4"),
        "{out}"
    );
    let cfg = ctl.runtime.block_on(ctl.ipam().config()).unwrap();
    assert!(cfg.strict_affinity);
    assert_eq!(cfg.max_blocks_per_host, 4);
    let resource = ctl
        .run(&["get", "ipamconfigurations", "default", "-o", "json"])
        .ok()
        .json();
    assert_eq!(resource["spec"]["strictAffinity"], true);

    ctl.run(&["ipam", "configure", "--strictaffinity=false"])
        .ok();
    let cfg = ctl.runtime.block_on(ctl.ipam().config()).unwrap();
    assert!(!cfg.strict_affinity);
    assert_eq!(cfg.max_blocks_per_host, 4);
    ctl.run(&["ipam", "configure", "--strictaffinity=maybe"])
        .fails_with(2);
    ctl.run(&["ipam", "configure", "--max-blocks-per-host", "0"])
        .fails_with(2);
}

#[test]
fn show_configuration_prints_calicos_property_table_and_json() {
    let ctl = Ctl::new();
    let out = ctl
        .run(&["ipam", "show", "--show-configuration"])
        .ok()
        .stdout;
    for (property, value) in [
        ("StrictAffinity", "false"),
        ("AutoAllocateBlocks", "true"),
        ("MaxBlocksPerHost", "20"),
        ("MinIPReclaimAgeSeconds", "0"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [property, value]),
            "{property}: {out}"
        );
    }
    ctl.run(&[
        "ipam",
        "configure",
        "--strictaffinity=true",
        "--max-blocks-per-host",
        "4",
    ])
    .ok();
    let json = ctl
        .run(&["ipam", "show", "--show-configuration", "-o", "json"])
        .ok()
        .json();
    assert_eq!(
        (
            json["strictAffinity"].as_bool(),
            json["maxBlocksPerHost"].as_u64()
        ),
        (Some(true), Some(4))
    );
    ctl.run(&["ipam", "show", "--show-configuration", "--show-blocks"])
        .fails_with(2);
}
