//! The policy driver in a network namespace of the test's own (root,
//! `nft`, `ip`, `nsenter`): a Desired with a policy model becomes felix's
//! table in that namespace's kernel; applying it again sends nothing; a
//! restarted driver takes the table over without flushing it (the table,
//! its sets, maps and chains keep their kernel handles and contents).

use std::collections::BTreeMap;
use std::sync::Arc;

use felix::policy_driver::PolicyDriver;
use felix::state::{Desired, Driver};
use policy::{Config, Model, Netlink};
use serde_json::Value;
use testkit::Netns;

const RESOURCES: &str = r#"
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node1-k8s-front-eth0, namespace: shop, labels: {app: front}}
spec: {orchestrator: k8s, node: node1, interfaceName: califront, ipNetworks: [10.65.0.2/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node1-k8s-back-eth0, namespace: shop, labels: {app: back}}
spec: {orchestrator: k8s, node: node1, interfaceName: caliback, ipNetworks: [10.65.0.3/32]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: back, namespace: shop}
spec:
  selector: app == "back"
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: app == "front"}
      destination: {ports: [8080]}
"#;

fn desired() -> Desired {
    let resources = api::parse_documents("test", RESOURCES).unwrap();
    let config = Config {
        node: Some("node1".into()),
        ..Config::default()
    };
    Desired {
        policy: Model::from_resources(&resources, config).unwrap(),
        ..Desired::default()
    }
}

fn driver(ns: &Netns) -> PolicyDriver {
    PolicyDriver::new(Arc::new(Netlink::in_netns(ns.path()).unwrap()))
}

/// Kernel handle of every table, set, map and chain (`kind name` → handle),
/// and the number of rules.
fn handles(ns: &Netns) -> (BTreeMap<String, u64>, usize) {
    let out = ns
        .exec("nft", ["-j", "-a", "list", "table", "inet", "calico"])
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut handles = BTreeMap::new();
    let mut rules = 0;
    for object in doc["nftables"].as_array().unwrap() {
        for kind in ["table", "set", "map", "chain"] {
            if let Some(o) = object.get(kind) {
                let name = o["name"].as_str().unwrap();
                handles.insert(format!("{kind} {name}"), o["handle"].as_u64().unwrap());
            }
        }
        rules += usize::from(object.get("rule").is_some());
    }
    (handles, rules)
}

/// `nft list table inet calico` without handles.
fn listing(ns: &Netns) -> String {
    let out = ns.exec("nft", ["list", "table", "inet", "calico"]).unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_policy_driver_programs_its_table_and_a_restart_takes_it_over_without_flushing() {
    if !(testkit::require_root() && testkit::require_programs(&["nft", "ip", "nsenter"])) {
        return;
    }
    let ns = Netns::new("flxpol").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let desired = desired();

    let mut first = driver(&ns);
    let applied = rt.block_on(first.apply_model(&desired.policy)).unwrap();
    assert!(applied.changed && applied.rules > 0 && applied.sets > 0);
    let listed = listing(&ns);
    assert!(
        listed.contains("califront") && listed.contains("caliback"),
        "{listed}"
    );
    assert!(listed.contains("8080"), "{listed}");
    let (before, rules) = handles(&ns);
    assert!(before.contains_key("table calico"));
    assert!(before.keys().any(|k| k.starts_with("set ")), "{before:?}");
    assert!(rules > 0);

    // The same Desired again: nothing is sent.
    let again = rt.block_on(first.apply_model(&desired.policy)).unwrap();
    assert!(!again.changed);
    assert_eq!(handles(&ns), (before.clone(), rules));
    // Through the Driver trait as the daemon calls it, too.
    rt.block_on(first.apply(&desired)).unwrap();
    assert_eq!(handles(&ns).0, before);
    drop(first);

    // A restarted driver reads the table and converges without removing
    // or recreating any object: every handle stays, the listing is the same.
    let mut restarted = driver(&ns);
    rt.block_on(restarted.apply_model(&desired.policy)).unwrap();
    assert_eq!(handles(&ns).0, before);
    assert_eq!(listing(&ns), listed);
    let settled = rt.block_on(restarted.apply_model(&desired.policy)).unwrap();
    assert!(!settled.changed, "converged after one update");

    // A change is applied incrementally by the restarted driver.
    let mut fewer = desired.clone();
    fewer
        .policy
        .tiers
        .iter_mut()
        .for_each(|t| t.policies.clear());
    rt.block_on(restarted.apply_model(&fewer.policy)).unwrap();
    assert!(!listing(&ns).contains("8080"));
    assert_eq!(
        handles(&ns).0.get("table calico"),
        before.get("table calico")
    );
}
