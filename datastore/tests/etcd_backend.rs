//! Behaviour specific to the etcd backend, beyond the conformance suite:
//! TLS with client certificates, user and password, several endpoints,
//! watches across an etcd restart, and Calico's key layout as `etcdctl`
//! sees it. Every test runs a real etcd of its own on loopback.

use std::sync::Arc;
use std::time::Duration;

use api::Resource;
use datastore::resources::ResourceStore;
use datastore::testing::EtcdServer;
use datastore::{DatastoreConfig, Error, EtcdConfig, EtcdStore, KvStore, Watch, WatchEvent};

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

fn start(tls: bool) -> EtcdServer {
    let started = if tls {
        EtcdServer::start_tls()
    } else {
        EtcdServer::start()
    };
    started.unwrap_or_else(|e| panic!("starting etcd: {e}"))
}

async fn connect(cfg: EtcdConfig) -> Arc<dyn KvStore> {
    datastore::connect(&DatastoreConfig::Etcd(cfg))
        .await
        .unwrap_or_else(|e| panic!("connecting: {e}"))
}

async fn next_put(watch: &mut Watch) -> datastore::KeyValue {
    match tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await {
        Ok(Some(Ok(WatchEvent::Put(kv)))) => kv,
        other => panic!("expected a put event, got {other:?}"),
    }
}

/// No further event arrives within a short while.
async fn assert_quiet(watch: &mut Watch) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), watch.next()).await {
        panic!("unexpected watch item {item:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_continues_across_an_etcd_restart_without_loss_or_duplication() {
    let mut etcd = start(false);
    let store = connect(etcd.config()).await;
    let mut watch = store.watch("/restart/", 0).await.unwrap();
    let first = store.put("/restart/a", b"1".to_vec()).await.unwrap();
    assert_eq!(next_put(&mut watch).await.mod_revision, first);

    tokio::task::block_in_place(|| etcd.stop());
    let down = store.get("/restart/a").await;
    assert!(
        matches!(&down, Err(Error::Backend(m)) if m.contains(&etcd.endpoint())),
        "a request while etcd is down fails naming the endpoint: {down:?}"
    );
    tokio::task::block_in_place(|| etcd.restart()).unwrap_or_else(|e| panic!("{e}"));

    // The same handle reconnects; the same watch resumes after `first`.
    let second = store.put("/restart/a", b"2".to_vec()).await.unwrap();
    let third = store.put("/restart/b", b"3".to_vec()).await.unwrap();
    assert_eq!(second, first + 1, "the data survived the restart");
    let seen = [next_put(&mut watch).await, next_put(&mut watch).await];
    assert_eq!(
        seen.map(|kv| (kv.key, kv.mod_revision)),
        [
            ("/restart/a".to_owned(), second),
            ("/restart/b".to_owned(), third)
        ]
    );
    assert_quiet(&mut watch).await;
    assert_eq!(store.active_watches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_works_and_is_required() {
    let etcd = start(true);
    assert!(etcd.endpoint().starts_with("https://"));
    let store = connect(etcd.config()).await;
    let mut watch = store.watch("/tls/", 0).await.unwrap();
    let rev = store.create("/tls/k", b"secret".to_vec()).await.unwrap();
    assert_eq!(next_put(&mut watch).await.mod_revision, rev);
    assert_eq!(store.get("/tls/k").await.unwrap().unwrap().value, b"secret");

    // The same CA but no client certificate: etcd refuses the handshake.
    let anonymous = EtcdConfig {
        cert_file: None,
        key_file: None,
        ..etcd.config()
    };
    let store = connect(anonymous).await;
    let err = store.get("/tls/k").await.unwrap_err();
    assert!(
        matches!(&err, Error::Backend(m) if m.contains(&etcd.endpoint())),
        "{err:?}"
    );

    // Plain HTTP to a TLS port does not work either.
    let plain = EtcdConfig {
        endpoints: vec![etcd.endpoint().replace("https://", "http://")],
        ..EtcdConfig::default()
    };
    assert!(connect(plain).await.get("/tls/k").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_are_checked_and_a_wrong_password_is_named() {
    let mut etcd = start(false);
    let etcdctl = |args: &[&str]| {
        etcd.etcdctl(args)
            .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"))
    };
    tokio::task::block_in_place(|| {
        etcdctl(&["user", "add", "root:right-pw"]);
        etcdctl(&["auth", "enable"]);
    });
    let with_password = |password: &str| EtcdConfig {
        username: Some("root".into()),
        password: Some(password.into()),
        ..etcd.config()
    };

    let err = EtcdStore::connect(&with_password("wrong-pw"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("authentication as user \"root\" failed"),
        "{message}"
    );
    assert!(
        !message.contains("wrong-pw"),
        "the password leaks: {message}"
    );

    let store = connect(with_password("right-pw")).await;
    let rev = store.put("/auth/k", b"v".to_vec()).await.unwrap();
    assert_eq!(
        store.get("/auth/k").await.unwrap().unwrap().mod_revision,
        rev
    );

    // A restarted etcd has forgotten the token: the handle authenticates again.
    tokio::task::block_in_place(|| etcd.restart()).unwrap_or_else(|e| panic!("{e}"));
    let again = store.put("/auth/k", b"w".to_vec()).await.unwrap();
    assert_eq!(again, rev + 1);

    let anonymous = connect(etcd.config()).await;
    let err = anonymous.get("/auth/k").await.unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_among_several_is_avoided() {
    let etcd = start(false);
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let cfg = EtcdConfig {
        endpoints: vec![dead, etcd.endpoint()],
        ..EtcdConfig::default()
    };
    let store = connect(cfg).await;
    for i in 0..10 {
        let rev = store.put("/multi/k", vec![i]).await.unwrap();
        assert_eq!(
            store.get("/multi/k").await.unwrap().unwrap().mod_revision,
            rev
        );
    }
}

/// A list whose page of keys would be above gRPC's 4 MiB message limit
/// (a felix restarting in a 200-host lab could not list its statuses) is
/// read in smaller pages, whole and at one revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_larger_than_one_grpc_message_is_read_in_smaller_pages() {
    let etcd = start(false);
    let store = connect(EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        ..EtcdConfig::default()
    })
    .await;
    // 100 values of 64 KiB: 6.4 MiB in one page of up to 1,000 keys.
    let value = vec![b'x'; 64 * 1024];
    let mut last = 0;
    for i in 0..100 {
        last = store
            .put(&format!("/big/{i:03}"), value.clone())
            .await
            .unwrap();
    }
    let (kvs, revision) = store.list("/big/").await.unwrap();
    assert_eq!(revision, last);
    assert_eq!(kvs.len(), 100);
    assert!(
        kvs.iter()
            .enumerate()
            .all(|(i, kv)| kv.key == format!("/big/{i:03}") && kv.value == value)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_stored_where_calico_keeps_them() {
    let etcd = start(false);
    let resources = ResourceStore::new(connect(etcd.config()).await);
    let pool = Resource::from_value(serde_json::json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {"cidr": "10.244.0.0/16"},
    }))
    .unwrap();
    resources.create(pool).await.unwrap();
    let listed = tokio::task::block_in_place(|| {
        etcd.etcdctl(&["get", "--prefix", "/calico", "--print-value-only=false"])
    })
    .unwrap();
    let mut lines = listed.lines();
    assert_eq!(
        lines.next(),
        Some("/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool")
    );
    let value: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(value["kind"], "IPPool");
    assert_eq!(value["spec"]["cidr"], "10.244.0.0/16");
}
