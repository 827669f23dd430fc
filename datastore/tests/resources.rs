//! Typed resource access (`datastore::resources`) on a real SQLite store.

use std::sync::Arc;

use api::{Kind, Resource};
use datastore::resources::ResourceStore;
use datastore::{Batch, BatchWrite, Change, Error, KvStore, Refusal, SqliteStore};
use serde_json::json;

fn store() -> (tempfile::TempDir, Arc<dyn KvStore>, ResourceStore) {
    let dir = tempfile::tempdir().unwrap();
    let kv: Arc<dyn KvStore> = Arc::new(SqliteStore::open(dir.path().join("calico.db")).unwrap());
    let resources = ResourceStore::new(kv.clone());
    (dir, kv, resources)
}

fn resource(doc: serde_json::Value) -> Resource {
    Resource::from_value(doc).unwrap_or_else(|e| panic!("test document: {e}"))
}

fn pool(name: &str, cidr: &str) -> Resource {
    resource(json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr},
    }))
}

fn netset(namespace: Option<&str>, name: &str, net: &str) -> Resource {
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    resource(json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkSet",
        "metadata": metadata,
        "spec": {"nets": [net]},
    }))
}

fn version(r: &Resource) -> String {
    r.metadata()
        .resource_version
        .clone()
        .expect("resourceVersion set")
}

fn cidr_of(r: &Resource) -> serde_json::Value {
    r.to_value()["spec"]["cidr"].clone()
}

#[test]
fn keys_follow_calicos_etcdv3_layout() {
    assert_eq!(
        ResourceStore::key(Kind::IPPool, None, "default-ipv4-ippool"),
        "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool"
    );
    assert_eq!(
        ResourceStore::key(Kind::GlobalNetworkPolicy, None, "deny-all"),
        "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/deny-all"
    );
    assert_eq!(
        ResourceStore::key(Kind::NetworkPolicy, Some("prod"), "allow-web"),
        "/calico/resources/v3/projectcalico.org/networkpolicies/prod/allow-web"
    );
    assert_eq!(
        ResourceStore::key(Kind::NetworkSet, None, "s"),
        "/calico/resources/v3/projectcalico.org/networksets/default/s"
    );
    assert_eq!(
        ResourceStore::key(Kind::KubernetesNetworkPolicy, Some("prod"), "np"),
        "/calico/resources/v3/networking.k8s.io/networkpolicies/prod/np"
    );
}

#[tokio::test]
async fn stored_value_is_the_document_without_resource_version() {
    let (_dir, kv, store) = store();
    let created = store.create(pool("p1", "10.1.0.0/16")).await.unwrap();
    let raw = kv
        .get("/calico/resources/v3/projectcalico.org/ippools/p1")
        .await
        .unwrap()
        .expect("stored under the Calico key");
    assert_eq!(version(&created), raw.mod_revision.to_string());
    let doc: serde_json::Value = serde_json::from_slice(&raw.value).unwrap();
    assert_eq!(doc["apiVersion"], "projectcalico.org/v3");
    assert_eq!(doc["kind"], "IPPool");
    assert_eq!(doc["metadata"]["name"], "p1");
    assert_eq!(doc["spec"]["cidr"], "10.1.0.0/16");
    assert!(doc["metadata"].get("resourceVersion").is_none(), "{doc}");
}

#[tokio::test]
async fn namespaced_resource_without_namespace_goes_to_default() {
    let (_dir, kv, store) = store();
    let created = store.create(netset(None, "s", "10.0.0.0/8")).await.unwrap();
    assert_eq!(created.metadata().namespace.as_deref(), Some("default"));
    assert!(
        kv.get("/calico/resources/v3/projectcalico.org/networksets/default/s")
            .await
            .unwrap()
            .is_some()
    );
    let got = store.get(Kind::NetworkSet, None, "s").await.unwrap();
    assert_eq!(got, created);
}

#[tokio::test]
async fn stale_resource_version_is_refused_with_a_conflict() {
    let (_dir, _kv, store) = store();
    let v1 = store.create(pool("p", "10.1.0.0/16")).await.unwrap();
    let mut edit = pool("p", "10.2.0.0/16");
    edit.metadata_mut().resource_version = Some(version(&v1));
    let v2 = store.replace(edit).await.unwrap();
    assert_ne!(version(&v2), version(&v1));

    let mut stale = pool("p", "10.3.0.0/16");
    stale.metadata_mut().resource_version = Some(version(&v1));
    let err = store.replace(stale.clone()).await.unwrap_err();
    assert_eq!(
        err,
        Error::Conflict {
            key: ResourceStore::key(Kind::IPPool, None, "p"),
            expected: version(&v1).parse().unwrap(),
            actual: version(&v2).parse().unwrap(),
        }
    );
    assert!(matches!(
        store.apply(stale).await,
        Err(Error::Conflict { .. })
    ));
    let current = store.get(Kind::IPPool, None, "p").await.unwrap();
    assert_eq!(cidr_of(&current), "10.2.0.0/16");
    assert_eq!(version(&current), version(&v2));
}

#[tokio::test]
async fn create_refuses_an_existing_resource_and_replace_a_missing_one() {
    let (_dir, _kv, store) = store();
    store.create(pool("p", "10.1.0.0/16")).await.unwrap();
    let key = ResourceStore::key(Kind::IPPool, None, "p");
    assert_eq!(
        store.create(pool("p", "10.9.0.0/16")).await.unwrap_err(),
        Error::AlreadyExists { key }
    );
    assert_eq!(
        store.replace(pool("q", "10.9.0.0/16")).await.unwrap_err(),
        Error::NotFound {
            key: ResourceStore::key(Kind::IPPool, None, "q")
        }
    );
    assert_eq!(
        store.get(Kind::IPPool, None, "q").await.unwrap_err(),
        Error::NotFound {
            key: ResourceStore::key(Kind::IPPool, None, "q")
        }
    );
}

#[tokio::test]
async fn apply_creates_then_replaces() {
    let (_dir, _kv, store) = store();
    let first = store.apply(pool("p", "10.1.0.0/16")).await.unwrap();
    let second = store.apply(pool("p", "10.2.0.0/16")).await.unwrap();
    assert!(version(&second).parse::<i64>().unwrap() > version(&first).parse::<i64>().unwrap());
    let got = store.get(Kind::IPPool, None, "p").await.unwrap();
    assert_eq!(cidr_of(&got), "10.2.0.0/16");
}

#[tokio::test]
async fn list_by_namespace_does_not_reach_a_namespace_sharing_its_prefix() {
    let (_dir, _kv, store) = store();
    for (ns, name) in [("a", "x"), ("ab", "y"), ("a", "w"), ("b", "z")] {
        store
            .create(netset(Some(ns), name, "10.0.0.0/8"))
            .await
            .unwrap();
    }
    store.create(pool("p", "10.1.0.0/16")).await.unwrap();
    let names = |rs: Vec<Resource>| -> Vec<String> {
        rs.iter().map(|r| r.metadata().display_name()).collect()
    };
    assert_eq!(
        names(store.list(Kind::NetworkSet, Some("a")).await.unwrap()),
        ["a/w", "a/x"]
    );
    assert_eq!(
        names(store.list(Kind::NetworkSet, None).await.unwrap()),
        ["a/w", "a/x", "ab/y", "b/z"]
    );
    assert_eq!(names(store.list(Kind::IPPool, None).await.unwrap()), ["p"]);
    assert!(store.list(Kind::Tier, None).await.unwrap().is_empty());
}

#[tokio::test]
async fn delete_honours_the_resource_version() {
    let (_dir, _kv, store) = store();
    let v1 = store.create(pool("p", "10.1.0.0/16")).await.unwrap();
    let v2 = store.apply(pool("p", "10.2.0.0/16")).await.unwrap();
    let err = store
        .delete(Kind::IPPool, None, "p", Some(&version(&v1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    let deleted = store
        .delete(Kind::IPPool, None, "p", Some(&version(&v2)))
        .await
        .unwrap();
    assert_eq!(deleted, v2);
    assert!(matches!(
        store.delete(Kind::IPPool, None, "p", None).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn apply_all_writes_everything_or_nothing() {
    let (_dir, kv, store) = store();
    let p = store.create(pool("p", "10.1.0.0/16")).await.unwrap();
    store.apply(pool("p", "10.2.0.0/16")).await.unwrap();
    let before = kv.revision().await.unwrap();

    let mut stale = pool("p", "10.3.0.0/16");
    stale.metadata_mut().resource_version = Some(version(&p));
    let err = store
        .apply_all(vec![pool("q", "10.4.0.0/16"), stale])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { ref key, .. } if key.ends_with("/ippools/p")),
        "{err:?}"
    );
    assert_eq!(kv.revision().await.unwrap(), before, "nothing written");
    assert!(matches!(
        store.get(Kind::IPPool, None, "q").await,
        Err(Error::NotFound { .. })
    ));

    let written = store
        .apply_all(vec![
            pool("q", "10.4.0.0/16"),
            netset(Some("ns"), "s", "10.0.0.0/8"),
        ])
        .await
        .unwrap();
    assert_eq!(version(&written[0]), version(&written[1]), "one revision");
    assert_eq!(
        store.get(Kind::IPPool, None, "q").await.unwrap(),
        written[0]
    );

    let dup = store
        .apply_all(vec![pool("r", "10.5.0.0/16"), pool("r", "10.6.0.0/16")])
        .await
        .unwrap_err();
    assert!(matches!(dup, Error::InvalidResource { .. }), "{dup:?}");
}

#[tokio::test]
async fn invalid_resource_is_refused_naming_the_field() {
    let (_dir, kv, store) = store();
    let before = kv.revision().await.unwrap();
    let err = store
        .create(pool("Not_A_DNS_Name", "10.1.0.0/16"))
        .await
        .unwrap_err();
    let Error::InvalidResource { message, .. } = &err else {
        panic!("expected InvalidResource, got {err:?}")
    };
    assert!(message.contains("metadata.name"), "{message}");
    assert_eq!(kv.revision().await.unwrap(), before);
    let err = store.get(Kind::IPPool, None, "a/b").await.unwrap_err();
    assert!(matches!(err, Error::InvalidResource { .. }), "{err:?}");
}

#[tokio::test]
async fn a_corrupt_stored_value_is_reported_with_its_key() {
    let (_dir, kv, store) = store();
    let key = ResourceStore::key(Kind::IPPool, None, "broken");
    kv.put(&key, b"{\"apiVersion\": 3}".to_vec()).await.unwrap();
    let err = store.get(Kind::IPPool, None, "broken").await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidValue { key: ref k, .. } if *k == key),
        "{err:?}"
    );
}

#[tokio::test]
async fn kubernetes_network_policy_is_stored_under_the_networking_group() {
    let (_dir, kv, store) = store();
    let knp = resource(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": "prod"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }));
    let calico = resource(json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": "prod"},
        "spec": {"selector": "all()"},
    }));
    let created = store.create(knp).await.unwrap();
    store.create(calico).await.unwrap();
    let raw = kv
        .get("/calico/resources/v3/networking.k8s.io/networkpolicies/prod/deny")
        .await
        .unwrap()
        .expect("stored under the networking.k8s.io key");
    let doc: serde_json::Value = serde_json::from_slice(&raw.value).unwrap();
    assert_eq!(
        (doc["apiVersion"].as_str(), doc["kind"].as_str()),
        (Some("networking.k8s.io/v1"), Some("NetworkPolicy"))
    );
    let listed = store
        .list(Kind::KubernetesNetworkPolicy, Some("prod"))
        .await
        .unwrap();
    assert_eq!(listed, [created]);
    assert_eq!(
        store.list(Kind::NetworkPolicy, None).await.unwrap()[0].kind(),
        Kind::NetworkPolicy
    );
}

#[tokio::test]
async fn create_all_writes_nothing_when_one_already_exists() {
    let (_dir, kv, store) = store();
    store.create(pool("p", "10.1.0.0/16")).await.unwrap();
    let before = kv.revision().await.unwrap();

    let err = store
        .create_all(vec![pool("q", "10.2.0.0/16"), pool("p", "10.3.0.0/16")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AlreadyExists { ref key } if key.ends_with("/ippools/p")),
        "{err:?}"
    );
    assert_eq!(kv.revision().await.unwrap(), before, "nothing written");
    assert_eq!(
        cidr_of(&store.get(Kind::IPPool, None, "p").await.unwrap()),
        "10.1.0.0/16"
    );

    let written = store
        .create_all(vec![pool("q", "10.2.0.0/16"), pool("r", "10.3.0.0/16")])
        .await
        .unwrap();
    assert_eq!(version(&written[0]), version(&written[1]), "one revision");
}

#[tokio::test]
async fn replace_all_writes_nothing_when_one_is_missing_or_stale() {
    let (_dir, kv, store) = store();
    let p = store.create(pool("p", "10.1.0.0/16")).await.unwrap();
    let before = kv.revision().await.unwrap();

    let err = store
        .replace_all(vec![
            pool("p", "10.2.0.0/16"),
            pool("missing", "10.3.0.0/16"),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { ref key } if key.ends_with("/ippools/missing")),
        "{err:?}"
    );
    assert_eq!(kv.revision().await.unwrap(), before, "nothing written");

    store.apply(pool("p", "10.4.0.0/16")).await.unwrap();
    let mut stale = pool("p", "10.5.0.0/16");
    stale.metadata_mut().resource_version = Some(version(&p));
    let err = store.replace_all(vec![stale]).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");

    let replaced = store
        .replace_all(vec![pool("p", "10.6.0.0/16")])
        .await
        .unwrap();
    assert_eq!(cidr_of(&replaced[0]), "10.6.0.0/16");
}

/// `(index, key suffix, kind of error)` of each refusal, for comparing.
fn refusals(outcome: BatchWrite) -> Vec<(usize, String, &'static str)> {
    let BatchWrite::Refused(refused) = outcome else {
        panic!("expected a refusal, got {outcome:?}")
    };
    refused
        .into_iter()
        .map(|Refusal { index, error }| {
            let (key, what) = match error {
                Error::AlreadyExists { key } => (key, "exists"),
                Error::NotFound { key } => (key, "missing"),
                Error::Conflict { key, .. } => (key, "stale"),
                other => panic!("unexpected refusal {other:?}"),
            };
            let name = key.rsplit('/').next().unwrap().to_owned();
            (index, name, what)
        })
        .collect()
}

#[tokio::test]
async fn a_refused_batch_names_every_resource_at_fault_and_writes_nothing() {
    let (_dir, kv, store) = store();
    store.create(pool("p", "10.1.0.0/16")).await.unwrap();
    let q = store.create(pool("q", "10.2.0.0/16")).await.unwrap();
    store.apply(pool("q", "10.3.0.0/16")).await.unwrap();
    let before = kv.revision().await.unwrap();
    let mut stale_q = pool("q", "10.4.0.0/16");
    stale_q.metadata_mut().resource_version = Some(version(&q));

    let create = vec![
        pool("a", "10.5.0.0/16"),
        pool("p", "10.6.0.0/16"),
        pool("b", "10.7.0.0/16"),
        pool("q", "10.8.0.0/16"),
    ];
    assert_eq!(
        refusals(store.write_all(create, Batch::Create).await.unwrap()),
        [(1, "p".into(), "exists"), (3, "q".into(), "exists")]
    );
    let replace = vec![
        pool("p", "10.6.0.0/16"),
        pool("gone", "10.7.0.0/16"),
        stale_q.clone(),
        pool("lost", "10.8.0.0/16"),
    ];
    assert_eq!(
        refusals(store.write_all(replace, Batch::Replace).await.unwrap()),
        [
            (1, "gone".into(), "missing"),
            (2, "q".into(), "stale"),
            (3, "lost".into(), "missing")
        ]
    );
    let apply = vec![pool("c", "10.9.0.0/16"), stale_q];
    assert_eq!(
        refusals(store.write_all(apply, Batch::Apply).await.unwrap()),
        [(1, "q".into(), "stale")]
    );
    assert_eq!(kv.revision().await.unwrap(), before, "nothing written");

    let outcome = store
        .write_all(
            vec![pool("p", "10.6.0.0/16"), pool("q", "10.8.0.0/16")],
            Batch::Replace,
        )
        .await
        .unwrap();
    let BatchWrite::Written(stored) = outcome else {
        panic!("expected the batch written, got {outcome:?}")
    };
    assert_eq!(kv.revision().await.unwrap(), before + 1, "one transaction");
    assert_eq!(cidr_of(&stored[1]), "10.8.0.0/16");
    assert_eq!(version(&stored[0]), (before + 1).to_string());
}

#[test]
fn staged_policies_are_keyed_under_their_own_plurals() {
    assert_eq!(
        ResourceStore::key(Kind::StagedNetworkPolicy, Some("prod"), "deny"),
        "/calico/resources/v3/projectcalico.org/stagednetworkpolicies/prod/deny"
    );
    assert_eq!(
        ResourceStore::key(Kind::StagedGlobalNetworkPolicy, None, "deny"),
        "/calico/resources/v3/projectcalico.org/stagedglobalnetworkpolicies/deny"
    );
    assert_eq!(
        ResourceStore::key(Kind::StagedKubernetesNetworkPolicy, Some("prod"), "deny"),
        "/calico/resources/v3/projectcalico.org/stagedkubernetesnetworkpolicies/prod/deny"
    );
}

#[tokio::test]
async fn commit_applies_and_deletes_in_one_transaction_or_not_at_all() {
    let (_dir, kv, store) = store();
    let p = store.create(pool("p", "10.1.0.0/16")).await.unwrap();
    store.create(pool("q", "10.2.0.0/16")).await.unwrap();
    let delete = |name: &str, resource_version: Option<String>| Change::Delete {
        kind: Kind::IPPool,
        namespace: None,
        name: name.into(),
        resource_version,
    };
    let before = kv.revision().await.unwrap();
    let refused = store
        .commit(vec![
            Change::Apply(pool("a", "10.5.0.0/16")),
            delete("gone", None),
            delete("p", Some("1000".into())),
        ])
        .await
        .unwrap();
    assert_eq!(
        refusals(refused),
        [(1, "gone".into(), "missing"), (2, "p".into(), "stale")]
    );
    assert_eq!(kv.revision().await.unwrap(), before, "nothing written");

    let outcome = store
        .commit(vec![
            Change::Apply(pool("a", "10.5.0.0/16")),
            delete("p", Some(version(&p))),
            delete("q", None),
        ])
        .await
        .unwrap();
    let BatchWrite::Written(done) = outcome else {
        panic!("expected the changes written, got {outcome:?}")
    };
    assert_eq!(kv.revision().await.unwrap(), before + 1, "one transaction");
    assert_eq!(cidr_of(&done[0]), "10.5.0.0/16");
    assert_eq!(cidr_of(&done[1]), "10.1.0.0/16", "the deleted resource");
    let names: Vec<String> = store
        .list(Kind::IPPool, None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.metadata().name.clone())
        .collect();
    assert_eq!(names, ["a"]);

    let err = store
        .commit(vec![
            Change::Apply(pool("a", "10.6.0.0/16")),
            delete("a", None),
        ])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("appears more than once"), "{err}");
}

#[tokio::test]
async fn an_overlapping_pool_is_refused_naming_the_other_and_nothing_is_written() {
    let (_dir, kv, store) = store();
    store.create(pool("rack1", "10.1.0.0/16")).await.unwrap();
    let before = kv.revision().await.unwrap();
    let refused = |err: Error| match err {
        Error::InvalidResource { what, message } => format!("{what}: {message}"),
        other => panic!("expected an invalid resource, got {other:?}"),
    };

    for inner in ["10.1.2.0/24", "10.0.0.0/8", "10.1.0.0/16"] {
        let err = store.apply(pool("rack2", inner)).await.unwrap_err();
        let message = refused(err);
        assert!(
            message.contains("spec.cidr") && message.contains("IPPool \"rack1\" (10.1.0.0/16)"),
            "{message}"
        );
    }
    let err = store
        .create(pool("rack2", "10.1.2.0/24"))
        .await
        .unwrap_err();
    assert!(refused(err).contains("rack1"));
    let err = store
        .apply_all(vec![pool("a", "10.8.0.0/16"), pool("b", "10.8.1.0/24")])
        .await
        .unwrap_err();
    assert!(refused(err).contains("IPPool \"b\""), "two of one batch");
    assert_eq!(kv.revision().await.unwrap(), before, "nothing written");

    // A pool may change its own CIDR, and a commit may move a range from
    // one pool to another by deleting the first.
    store.apply(pool("rack1", "10.1.0.0/17")).await.unwrap();
    store
        .commit(vec![
            Change::Delete {
                kind: Kind::IPPool,
                namespace: None,
                name: "rack1".into(),
                resource_version: None,
            },
            Change::Apply(pool("rack2", "10.1.0.0/16")),
        ])
        .await
        .unwrap();
    let err = store
        .commit(vec![Change::Apply(pool("rack3", "10.1.128.0/17"))])
        .await
        .unwrap_err();
    assert!(refused(err).contains("IPPool \"rack2\""));
    let v6 = store.apply(pool("v6", "fd00::/64")).await;
    assert!(v6.is_ok(), "another family never overlaps: {v6:?}");
}
