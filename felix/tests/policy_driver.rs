//! The policy driver in a network namespace of the test's own (root,
//! `nft`, `ip`, `nsenter`): a Desired with a policy model becomes felix's
//! table in that namespace's kernel; applying it again sends nothing; a
//! restarted driver takes the table over without flushing it (the table,
//! its sets, maps and chains keep their kernel handles and contents).

mod common;

use std::sync::Arc;

use felix::policy_driver::PolicyDriver;
use felix::state::{Desired, Driver};
use policy::{Config, Model, Netlink};
use testkit::Netns;

fn desired() -> Desired {
    let resources = api::parse_documents("test", common::POLICY_RESOURCES).unwrap();
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
    let listed = common::nft_listing(&ns);
    assert!(
        listed.contains("califront") && listed.contains("caliback"),
        "{listed}"
    );
    assert!(listed.contains("8080"), "{listed}");
    let (before, rules) = common::nft_handles(&ns);
    assert!(before.contains_key("table calico"));
    assert!(before.keys().any(|k| k.starts_with("set ")), "{before:?}");
    assert!(rules > 0);

    // The same Desired again: nothing is sent.
    let again = rt.block_on(first.apply_model(&desired.policy)).unwrap();
    assert!(!again.changed);
    assert_eq!(common::nft_handles(&ns), (before.clone(), rules));
    // Through the Driver trait as the daemon calls it, too.
    rt.block_on(first.apply(&desired)).unwrap();
    assert_eq!(common::nft_handles(&ns).0, before);
    drop(first);

    // A restarted driver reads the table and converges without removing
    // or recreating any object: every handle stays, the listing is the same.
    let mut restarted = driver(&ns);
    rt.block_on(restarted.apply_model(&desired.policy)).unwrap();
    assert_eq!(common::nft_handles(&ns).0, before);
    assert_eq!(common::nft_listing(&ns), listed);
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
    assert!(!common::nft_listing(&ns).contains("8080"));
    assert_eq!(
        common::nft_handles(&ns).0.get("table calico"),
        before.get("table calico")
    );
}
