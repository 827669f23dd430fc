//! VERSION, STATUS, GC and the error JSON of bad invocations, called as a
//! runtime calls the binaries; no namespaces needed (calico-ipam alone
//! never touches one), so these run without root.

mod common;

use std::path::Path;
use std::process::Command;

use common::{calico_conf, cni_path, store_with_pools};
use serde_json::{Value, json};
use testkit::cni::run;

fn plugin(name: &str, vars: &[(&str, &str)]) -> Command {
    let binary = Path::new(env!("CARGO_BIN_EXE_calico")).with_file_name(name);
    let mut cmd = Command::new(binary);
    cmd.env_clear().envs(vars.iter().copied());
    cmd
}

fn conf(db: &Path, version: &str) -> Value {
    let mut c = calico_conf(db);
    c["name"] = json!("k8s-pod-network");
    c["cniVersion"] = json!(version);
    c
}

#[test]
fn version_lists_the_supported_versions_in_the_version_asked() {
    for name in ["calico", "calico-ipam"] {
        let out = run(
            plugin(name, &[("CNI_COMMAND", "VERSION")]),
            &json!({"cniVersion": "1.1.0"}),
        )
        .ok();
        assert_eq!(out["cniVersion"], "1.1.0");
        assert_eq!(out["supportedVersions"], json!(["1.0.0", "1.1.0"]));
    }
}

#[test]
fn bad_invocations_get_error_json_with_the_specs_codes_and_exit_1() {
    let (_dir, db) = store_with_pools(&[("10.77.0.0/24", 28)]);
    let path = cni_path();
    let base = [
        ("CNI_CONTAINERID", "abc"),
        ("CNI_NETNS", "/run/netns/none"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", path.as_str()),
    ];
    let missing = run(plugin("calico", &base), &conf(&db, "1.0.0"));
    assert_eq!((missing.exit_code, missing.code()), (Some(1), 4));
    assert!(
        missing.msg().starts_with("CNI_COMMAND"),
        "{}",
        missing.msg()
    );

    let mut vars = base.to_vec();
    vars.push(("CNI_COMMAND", "ADD"));
    let old = run(plugin("calico", &vars), &conf(&db, "0.3.1"));
    assert_eq!(old.code(), 1);
    assert!(old.msg().contains("0.3.1"), "{}", old.msg());

    let not_json = run(plugin("calico-ipam", &vars), &json!("just a string"));
    assert_eq!(not_json.code(), 6);

    let mut bad = conf(&db, "1.0.0");
    bad["log_level"] = json!("chatty");
    let bad = run(plugin("calico", &vars), &bad);
    assert_eq!(bad.code(), 7);
    assert!(bad.msg().starts_with("log_level"), "{}", bad.msg());
    assert_eq!(bad.stdout["cniVersion"], "1.0.0");
}

#[test]
fn status_reports_whether_the_datastore_answers() {
    let (dir, db) = store_with_pools(&[("10.77.0.0/24", 28)]);
    let path = cni_path();
    let vars = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", path.as_str())];
    let up = run(plugin("calico", &vars), &conf(&db, "1.1.0"));
    assert!(up.success, "{up:?}");
    // A store whose directory cannot exist: its parent is a file.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let gone = run(
        plugin("calico", &vars),
        &conf(&file.join("calico.db"), "1.1.0"),
    );
    assert_eq!(gone.code(), 50, "{gone:?}");
}

#[test]
fn ipam_add_is_idempotent_and_gc_releases_only_unlisted_containers() {
    let (_dir, db) = store_with_pools(&[("10.77.0.0/24", 28)]);
    let path = cni_path();
    let add = |id: &str| {
        let vars = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", "/run/netns/unused-by-ipam"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", path.as_str()),
        ];
        let mut c = conf(&db, "1.1.0");
        c["ipam"]["ipv4_pools"] = json!(["pool-0"]);
        run(plugin("calico-ipam", &vars), &c).ok()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let kept = add("keepme");
    assert!(
        kept.starts_with("10.77.0.") && kept.ends_with("/32"),
        "{kept}"
    );
    assert_eq!(
        add("keepme"),
        kept,
        "a repeated ADD returns the same address"
    );
    let dropped = add("dropme");
    assert_ne!(dropped, kept);

    let mut gc = conf(&db, "1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keepme", "ifname": "eth0"}]);
    let vars = [("CNI_COMMAND", "GC"), ("CNI_PATH", path.as_str())];
    run(plugin("calico", &vars), &gc).ok();
    let handles = common::block_on(async {
        let kv = common::open(&db).await;
        (
            cni::ipam::addresses_of(&kv, "k8s-pod-network.keepme")
                .await
                .unwrap(),
            cni::ipam::addresses_of(&kv, "k8s-pod-network.dropme")
                .await
                .unwrap(),
        )
    });
    assert_eq!(handles.0.len(), 1);
    assert!(
        handles.1.is_empty(),
        "GC released the unlisted container's address"
    );
}

#[test]
fn ipam_on_etcd_with_tls_maps_the_etcd_fields_and_assigns_and_releases() {
    if !testkit::require_programs(&["etcd", "openssl"]) {
        return;
    }
    let etcd = datastore::testing::EtcdServer::start_tls().expect("a TLS etcd");
    let tls = etcd.tls_files().expect("TLS files").clone();
    common::block_on(async {
        let kv = datastore::connect(&etcd.datastore_config()).await.unwrap();
        let mut spec = api::IPPoolSpec::new(api::types::Cidr("10.79.0.0/24".parse().unwrap()));
        spec.block_size = Some(28);
        let pool = api::IPPool::new(api::ObjectMeta::named("etcd-pool"), spec);
        datastore::ResourceStore::new(kv)
            .create(pool.into())
            .await
            .unwrap();
    });
    let mut c = conf(Path::new("/unused"), "1.0.0");
    let obj = c.as_object_mut().unwrap();
    obj.remove("datastore_path");
    obj.insert("datastore_type".into(), json!("etcdv3"));
    obj.insert("etcd_endpoints".into(), json!(etcd.endpoint()));
    obj.insert("etcd_ca_cert_file".into(), json!(tls.ca));
    obj.insert("etcd_cert_file".into(), json!(tls.client_cert));
    obj.insert("etcd_key_file".into(), json!(tls.client_key));
    let path = cni_path();
    let vars = |command| {
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "e7cd0001"),
            ("CNI_NETNS", "/run/netns/unused-by-ipam"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", path.as_str()),
        ]
    };
    let added = run(plugin("calico-ipam", &vars("ADD")), &c).ok();
    let address = added["ips"][0]["address"].as_str().unwrap();
    assert!(address.starts_with("10.79.0."), "{address}");
    let handle = etcd
        .etcdctl(&[
            "get",
            "--prefix",
            "/calico/ipam/v2/handle/k8s-pod-network.e7cd0001",
        ])
        .unwrap();
    assert!(handle.contains("k8s-pod-network.e7cd0001"), "{handle}");
    run(plugin("calico-ipam", &vars("DEL")), &c).ok();
    run(plugin("calico-ipam", &vars("DEL")), &c).ok();
    let handle = etcd
        .etcdctl(&["get", "--prefix", "/calico/ipam/v2/handle/"])
        .unwrap();
    assert!(handle.trim().is_empty(), "the handle is gone: {handle}");

    // Without the client key the config is refused, naming the field.
    c.as_object_mut().unwrap().remove("etcd_key_file");
    let refused = run(plugin("calico-ipam", &vars("ADD")), &c);
    assert_eq!(refused.code(), 7);
    assert!(
        refused.msg().starts_with("etcd_key_file"),
        "{}",
        refused.msg()
    );
}
