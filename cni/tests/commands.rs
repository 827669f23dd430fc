//! VERSION, STATUS, GC, the error JSON of bad invocations and IPAM's
//! results in each spec version, called as a runtime calls the binaries; no
//! namespaces needed (calico-ipam alone never touches one), so these run
//! without root.

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

/// `calico-ipam` ADD for container `id` from `pool`; with a namespace, as
/// a Kubernetes runtime calls it for pod `<namespace>/<id>`.
fn ipam_add(db: &Path, id: &str, pool: &str, namespace: Option<&str>) -> testkit::cni::Outcome {
    let path = cni_path();
    let mut vars = vec![
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", id.to_string()),
        ("CNI_NETNS", "/run/netns/unused-by-ipam".to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_PATH", path),
    ];
    if let Some(ns) = namespace {
        vars.push((
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE={ns};K8S_POD_NAME={id}"),
        ));
    }
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut c = conf(db, "1.1.0");
    c["ipam"]["ipv4_pools"] = json!([pool]);
    run(plugin("calico-ipam", &vars), &c)
}

#[test]
fn version_lists_the_supported_versions_in_the_version_asked() {
    for name in ["calico", "calico-ipam"] {
        for (asked, answered) in [
            (json!({"cniVersion": "1.1.0"}), "1.1.0"),
            (json!({"cniVersion": "0.3.1"}), "0.3.1"),
            (json!({"cniVersion": "0.2.0"}), "1.1.0"),
            (json!({}), "1.1.0"),
        ] {
            let out = run(plugin(name, &[("CNI_COMMAND", "VERSION")]), &asked).ok();
            assert_eq!(out["cniVersion"], answered, "{asked}");
            assert_eq!(
                out["supportedVersions"],
                json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
            );
        }
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
    for name in ["calico", "calico-ipam"] {
        for version in ["0.2.0", "2.0.0", "garbage"] {
            let refused = run(plugin(name, &vars), &conf(&db, version));
            assert_eq!(refused.code(), 1, "{name} {version}");
            assert_eq!(
                refused.msg(),
                format!(
                    "cniVersion: {version:?} is not supported; supported versions: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
                )
            );
        }
    }

    let not_json = run(plugin("calico-ipam", &vars), &json!("just a string"));
    assert_eq!(not_json.code(), 6);

    let mut bad = conf(&db, "1.0.0");
    bad["log_level"] = json!("chatty");
    let bad = run(plugin("calico", &vars), &bad);
    assert_eq!(bad.code(), 7);
    assert!(bad.msg().starts_with("log_level"), "{}", bad.msg());
    assert_eq!(bad.stdout["cniVersion"], "1.0.0");

    // Errors answer in the version asked.
    let mut bad = conf(&db, "0.3.1");
    bad["mtu"] = json!(1);
    let bad = run(plugin("calico", &vars), &bad);
    assert_eq!(
        (bad.code(), &bad.stdout["cniVersion"]),
        (7, &json!("0.3.1"))
    );
}

#[test]
fn status_and_gc_before_1_1_0_are_refused_as_incompatible() {
    let (_dir, db) = store_with_pools(&[("10.77.0.0/24", 28)]);
    let path = cni_path();
    for command in ["STATUS", "GC"] {
        let vars = [("CNI_COMMAND", command), ("CNI_PATH", path.as_str())];
        for name in ["calico", "calico-ipam"] {
            for version in ["0.3.1", "0.4.0", "1.0.0"] {
                let mut c = conf(&db, version);
                c["cni.dev/valid-attachments"] = json!([]);
                let refused = run(plugin(name, &vars), &c);
                assert_eq!(refused.code(), 1, "{name} {command} {version}");
                assert_eq!(
                    refused.msg(),
                    format!(
                        "cniVersion: {version} does not allow {command} (it exists from CNI 1.1.0 on)"
                    )
                );
                assert_eq!(refused.stdout["cniVersion"], version);
            }
        }
    }
}

#[test]
fn ipam_answers_in_the_configurations_version() {
    let (_dir, db) = store_with_pools(&[("10.77.0.0/24", 28), ("fd00:77::/120", 122)]);
    let path = cni_path();
    let vars = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "0ld5pec"),
        ("CNI_NETNS", "/run/netns/unused-by-ipam"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", path.as_str()),
    ];
    let mut old = conf(&db, "0.3.1");
    old["ipam"]["assign_ipv6"] = json!("true");
    let out = run(plugin("calico-ipam", &vars), &old).ok();
    assert_eq!(out["cniVersion"], "0.3.1");
    let ips = out["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2, "{out}");
    assert_eq!(ips[0]["version"], "4", "{out}");
    assert!(ips[0]["address"].as_str().unwrap().starts_with("10.77.0."));
    assert_eq!(ips[1]["version"], "6", "{out}");
    assert!(ips[1]["address"].as_str().unwrap().starts_with("fd00:77::"));

    // The same handle asked in 1.0.0: the same addresses, no `version`.
    let mut new = old.clone();
    new["cniVersion"] = json!("1.0.0");
    let again = run(plugin("calico-ipam", &vars), &new).ok();
    assert_eq!(again["cniVersion"], "1.0.0");
    let addresses = |v: &Value| -> Vec<Value> {
        v["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ip| ip["address"].clone())
            .collect()
    };
    assert_eq!(addresses(&again), addresses(&out));
    assert!(
        again["ips"]
            .as_array()
            .unwrap()
            .iter()
            .all(|ip| ip.get("version").is_none()),
        "{again}"
    );
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
        ipam_add(&db, id, "pool-0", None).ok()["ips"][0]["address"]
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

#[test]
fn ipam_takes_a_pod_address_from_the_pool_its_namespace_selector_admits() {
    let (_dir, db) = store_with_pools(&[("10.77.0.0/24", 28), ("10.78.0.0/24", 28)]);
    common::block_on(async {
        let store = datastore::ResourceStore::new(common::open(&db).await);
        let mut pool = store.get(api::Kind::IPPool, None, "pool-1").await.unwrap();
        let api::Resource::IPPool(p) = &mut pool else {
            unreachable!()
        };
        p.spec.namespace_selector = "team == 'a'".into();
        store.apply(pool).await.unwrap();
        let profile = serde_json::from_value::<api::Resource>(json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": "kns.shop"},
            "spec": {"labelsToApply": {"pcns.team": "a"}},
        }))
        .unwrap();
        store.apply(profile).await.unwrap();
    });
    let add = |id: &str, namespace: &str| ipam_add(&db, id, "pool-1", Some(namespace));
    let shop = add("shop-pod", "shop").ok();
    let address = shop["ips"][0]["address"].as_str().unwrap();
    assert!(address.starts_with("10.78.0."), "{shop}");
    let web = add("web-pod", "web");
    web.code();
    assert!(
        web.msg().contains("10.78.0.0/24") && web.msg().contains("namespace web"),
        "{}",
        web.stdout
    );
}

#[test]
fn a_store_locked_for_a_migration_is_refused_until_unlocked() {
    let (_dir, db) = store_with_pools(&[("10.77.0.0/24", 28)]);
    let set_ready = |ready: bool| {
        common::block_on(async {
            let store = datastore::ResourceStore::new(common::open(&db).await);
            datastore::migrate::set_ready(&store, ready).await.unwrap();
        })
    };
    set_ready(false);
    let locked = ipam_add(&db, "c1", "pool-0", None);
    assert_eq!(locked.code(), 11, "try again later: {locked:?}");
    assert!(
        locked.msg().contains("locked for a migration"),
        "{locked:?}"
    );
    let path = cni_path();
    let vars = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", path.as_str())];
    let status = run(plugin("calico", &vars), &conf(&db, "1.1.0"));
    assert_eq!(status.code(), 50, "{status:?}");
    let written = common::block_on(async {
        let kv = common::open(&db).await;
        cni::ipam::addresses_of(&kv, "k8s-pod-network.c1")
            .await
            .unwrap()
    });
    assert!(written.is_empty(), "an address was allocated while locked");

    set_ready(true);
    ipam_add(&db, "c1", "pool-0", None).ok();
    assert!(run(plugin("calico", &vars), &conf(&db, "1.1.0")).success);
}
