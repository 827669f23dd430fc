//! `calicoctl datastore migrate` end to end (the real binary): a SQLite
//! store moved to a real etcd and back, compared key by key, and what a
//! move refuses (an unlocked source, a target that holds anything, a file
//! that does not validate), leaving the target as it was.

use std::collections::BTreeMap;
use std::sync::Arc;

use datastore::ipam::{AutoAssignArgs, Ipam};
use datastore::migrate;
use datastore::testing::EtcdServer;
use datastore::{KvStore, SqliteStore};

mod common;

use common::{Ctl, Run};

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn sqlite(ctl: &Ctl) -> Arc<dyn KvStore> {
    Arc::new(SqliteStore::open(ctl.db()).unwrap())
}

type Dump = BTreeMap<String, serde_json::Value>;

/// Every key and value of the etcd (its client lives in one runtime).
fn etcd_dump(etcd: &EtcdServer) -> Dump {
    block_on(async {
        let kv = datastore::connect(&etcd.datastore_config()).await.unwrap();
        migrate::dump(&kv).await.unwrap()
    })
}

fn dump(kv: &Arc<dyn KvStore>) -> Dump {
    block_on(migrate::dump(kv)).unwrap()
}

/// calicoctl against the etcd, from `ctl`'s directory.
fn on_etcd(ctl: &Ctl, etcd: &EtcdServer, args: &[&str]) -> Run {
    let out = ctl
        .command(args)
        .env("DATASTORE_TYPE", "etcdv3")
        .env("ETCD_ENDPOINTS", etcd.endpoint())
        .env_remove("DATASTORE_PATH")
        .output()
        .unwrap();
    Run::of(out)
}

/// `datastore migrate import -f` of `text` (written to `name`) into `ctl`'s store.
fn import(ctl: &Ctl, name: &str, text: &str) -> Run {
    let path = ctl.write(name, text);
    ctl.run(&[
        "datastore",
        "migrate",
        "import",
        "-f",
        path.to_str().unwrap(),
    ])
}

const RESOURCES: &str = "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 10.40.0.0/16, blockSize: 28, natOutgoing: true}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.deny-db}
spec: {tier: security, selector: app == 'db', ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: shop}
spec: {nets: [192.0.2.0/24]}
---
apiVersion: projectcalico.org/v3
kind: IPReservation
metadata: {name: keep}
spec: {reservedCIDRs: [10.40.0.0/29]}
";

#[test]
fn a_store_moves_to_etcd_and_back_through_the_export_file() {
    let ctl = Ctl::new();
    ctl.apply(RESOURCES);
    let ipam = Ipam::new(sqlite(&ctl));
    for i in 0..20 {
        block_on(ipam.auto_assign(&AutoAssignArgs {
            handle: format!("k8s-pod-network.c{i}"),
            host: format!("host-{}", i % 2),
            num_v4: 1,
            ..AutoAssignArgs::default()
        }))
        .unwrap();
    }

    let unlocked = ctl.run(&["datastore", "migrate", "export"]).fails_with(1);
    assert!(unlocked.stderr.contains("migrate lock"), "{unlocked:?}");
    let locked = ctl.run(&["datastore", "migrate", "lock"]).ok();
    assert!(locked.stdout.starts_with("Datastore locked"), "{locked:?}");
    let export = ctl.run(&["datastore", "migrate", "export"]).ok().stdout;
    assert!(export.contains("kind: GlobalNetworkPolicyList"), "{export}");
    assert!(export.contains("\"blocks\""), "{export}");
    let file = ctl.write("export.txt", &export);
    let file = file.to_str().unwrap();
    let source = dump(&sqlite(&ctl));

    let etcd = EtcdServer::start().unwrap_or_else(|e| panic!("starting etcd: {e}"));
    let imported = on_etcd(&ctl, &etcd, &["datastore", "migrate", "import", "-f", file]).ok();
    assert!(
        imported.stdout.contains("Imported 5 resources"),
        "{imported:?}"
    );
    assert_eq!(etcd_dump(&etcd), source);

    // A second import finds the target holding something: refused, as is.
    let again = on_etcd(&ctl, &etcd, &["datastore", "migrate", "import", "-f", file]);
    assert!(again.fails_with(1).stderr.contains("not empty"));
    assert_eq!(etcd_dump(&etcd), source);

    // Back from etcd into a fresh SQLite store: the same keys and values.
    let back = on_etcd(&ctl, &etcd, &["datastore", "migrate", "export"])
        .ok()
        .stdout;
    assert_eq!(back, export);
    let fresh = Ctl::new();
    import(&fresh, "back.txt", &back).ok();
    assert_eq!(dump(&sqlite(&fresh)), source);

    // The target is left locked until unlocked.
    let info = on_etcd(
        &ctl,
        &etcd,
        &["get", "clusterinfo", "default", "-o", "json"],
    )
    .ok();
    assert_eq!(info.json()["spec"]["datastoreReady"], false, "{info:?}");
    on_etcd(&ctl, &etcd, &["datastore", "migrate", "unlock"]).ok();
    let info = on_etcd(
        &ctl,
        &etcd,
        &["get", "clusterinfo", "default", "-o", "json"],
    )
    .ok();
    assert_eq!(info.json()["spec"]["datastoreReady"], true, "{info:?}");
    assert_eq!(
        info.json()["spec"]["clusterGUID"],
        source["/calico/resources/v3/projectcalico.org/clusterinformations/default"]["spec"]["clusterGUID"]
    );
}

#[test]
fn a_file_that_does_not_validate_is_refused_naming_each_problem() {
    let ctl = Ctl::new();
    ctl.apply(RESOURCES);
    ctl.run(&["datastore", "migrate", "lock"]).ok();
    let export = ctl.run(&["datastore", "migrate", "export"]).ok().stdout;
    let bad = export
        .replace("10.40.0.0/16", "10.40.0.0/33")
        .replace("\"calicoVersion\"", "\"calicoVersio\"");
    let target = Ctl::new();
    let run = import(&target, "bad.txt", &bad).fails_with(2);
    assert!(run.stderr.contains("2 problems"), "{run:?}");
    assert!(run.stderr.contains("spec.cidr"), "{run:?}");
    assert!(run.stderr.contains("calicoVersio"), "{run:?}");
    let run = import(&target, "pools.yaml", RESOURCES).fails_with(2);
    assert!(run.stderr.contains("not a datastore export"), "{run:?}");
    assert!(dump(&sqlite(&target)).is_empty(), "the target was written");
}
