//! IPAM behaviour on a real SQLite store (a fresh file per test): where
//! addresses come from, what is never handed out, release, the stored
//! layout, configuration, check and split.

use std::collections::BTreeMap;
use std::net::IpAddr;

use api::resources::ippool::AllowedUse;
use api::{
    Cidr, IPAMConfiguration, IPAMConfigurationSpec, IPPool, IPPoolSpec, IPReservation,
    IPReservationSpec, Kind, Node, NodeSpec, ObjectMeta, Resource, WorkloadEndpoint,
    WorkloadEndpointSpec,
};
use datastore::ipam::check::LeakReason;
use datastore::ipam::{
    AutoAssignArgs, ConfigUpdate, IpUse, Ipam, IpamError, NoClaim, PoolRef, model,
};
use datastore::{KvStore, ResourceStore, SqliteStore};
use ipnet::IpNet;
use serde_json::{Value, json};

struct Fixture {
    _dir: tempfile::TempDir,
    ipam: Ipam,
    store: ResourceStore,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let kv: std::sync::Arc<dyn KvStore> =
        std::sync::Arc::new(SqliteStore::open(dir.path().join("calico.db")).unwrap());
    Fixture {
        _dir: dir,
        ipam: Ipam::new(kv.clone()),
        store: ResourceStore::new(kv),
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn args(handle: &str, host: &str, v4: usize, v6: usize) -> AutoAssignArgs {
    AutoAssignArgs {
        handle: handle.into(),
        host: host.into(),
        num_v4: v4,
        num_v6: v6,
        ..AutoAssignArgs::default()
    }
}

impl Fixture {
    async fn pool(&self, name: &str, cidr: &str, edit: impl FnOnce(&mut IPPoolSpec)) {
        let mut spec = IPPoolSpec::new(cidr.parse::<Cidr>().unwrap());
        edit(&mut spec);
        self.store
            .apply(IPPool::new(ObjectMeta::named(name), spec).into())
            .await
            .unwrap();
    }

    async fn node(&self, name: &str, labels: &[(&str, &str)]) {
        let mut meta = ObjectMeta::named(name);
        meta.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.store
            .apply(Node::new(meta, NodeSpec::default()).into())
            .await
            .unwrap();
    }

    async fn one(&self, handle: &str, host: &str) -> IpAddr {
        self.ipam
            .auto_assign(&args(handle, host, 1, 0))
            .await
            .unwrap()
            .v4[0]
            .ip
    }

    async fn json(&self, key: &str) -> Option<Value> {
        let kv = self.ipam.kv().get(key).await.unwrap()?;
        Some(serde_json::from_slice(&kv.value).unwrap())
    }

    async fn in_use(&self) -> u128 {
        let usage = self.ipam.usage().await.unwrap();
        usage.pools.iter().map(|p| p.in_use).sum()
    }
}

#[tokio::test]
async fn a_host_uses_its_affine_block_before_claiming_another() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/24", |s| s.block_size = Some(30))
        .await;
    let first = f.one("k8s-pod-network.a", "node1").await;
    let blocks = f.ipam.host_blocks("node1").await.unwrap();
    assert_eq!(blocks.len(), 1);
    let block = blocks[0];
    assert!(block.contains(&first));
    for i in 0..3 {
        let next = f.one(&format!("k8s-pod-network.b{i}"), "node1").await;
        assert!(block.contains(&next), "{next} not from {block}");
    }
    // The block is full: the fifth address comes from a newly claimed block.
    let fifth = f.one("k8s-pod-network.c", "node1").await;
    assert!(!block.contains(&fifth));
    let blocks = f.ipam.host_blocks("node1").await.unwrap();
    assert_eq!(blocks.len(), 2);
    assert!(blocks.iter().any(|b| b.contains(&fifth)));
    let status = f.ipam.ip_status(fifth).await.unwrap();
    assert_eq!(status.block_host.as_deref(), Some("node1"));
    assert_eq!(status.handle.as_deref(), Some("k8s-pod-network.c"));
    assert_eq!(status.attrs.get("node").map(String::as_str), Some("node1"));
}

#[tokio::test]
async fn at_max_blocks_per_host_the_host_borrows_from_another_hosts_block() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/28", |s| s.block_size = Some(30))
        .await;
    f.ipam
        .configure(ConfigUpdate {
            max_blocks_per_host: Some(1),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap();
    f.ipam.auto_assign(&args("a", "node1", 4, 0)).await.unwrap();
    let b_ip = f.one("b", "node2").await;
    let borrowed = f.one("a2", "node1").await;
    assert_eq!(f.ipam.host_blocks("node1").await.unwrap().len(), 1);
    let node2_block = f.ipam.host_blocks("node2").await.unwrap()[0];
    assert!(node2_block.contains(&b_ip));
    assert!(
        node2_block.contains(&borrowed),
        "{borrowed} not borrowed from {node2_block}"
    );
    let status = f.ipam.ip_status(borrowed).await.unwrap();
    assert_eq!(status.block_host.as_deref(), Some("node2"));
    assert_eq!(status.attrs.get("node").map(String::as_str), Some("node1"));
}

#[tokio::test]
async fn without_auto_allocated_blocks_a_host_claims_none_and_the_error_says_so() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/28", |s| s.block_size = Some(30))
        .await;
    f.ipam
        .configure(ConfigUpdate {
            strict_affinity: Some(true),
            auto_allocate_blocks: Some(false),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap();
    let err = f
        .ipam
        .auto_assign(&args("a", "node1", 1, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            IpamError::Exhausted {
                no_claim: NoClaim::AutoAllocateOff,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("autoAllocateBlocks is false"),
        "{err}"
    );
    assert!(f.ipam.host_blocks("node1").await.unwrap().is_empty());
}

#[tokio::test]
async fn strict_affinity_refuses_to_borrow_and_leaves_nothing_behind() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/29", |s| s.block_size = Some(30))
        .await;
    f.ipam
        .configure(ConfigUpdate {
            strict_affinity: Some(true),
            max_blocks_per_host: Some(1),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap();
    f.ipam.auto_assign(&args("a", "node1", 3, 0)).await.unwrap();
    f.one("b", "node2").await;
    let err = f
        .ipam
        .auto_assign(&args("a2", "node1", 2, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            IpamError::Exhausted {
                no_claim: NoClaim::AtMaxBlocks { held: 1, max: 1 },
                strict: true,
                ..
            }
        ),
        "{err}"
    );
    // The limit hit is named, with what raises it.
    let text = err.to_string();
    assert!(text.contains("strictAffinity"), "{err}");
    assert!(text.contains("maxBlocksPerHost is 1"), "{err}");
    assert!(text.contains("--max-blocks-per-host"), "{err}");
    // The one address that fitted in node1's block was rolled back.
    assert_eq!(f.in_use().await, 4);
    assert!(f.json(&model::handle_key("a2")).await.is_none());
}

#[tokio::test]
async fn reserved_addresses_are_never_handed_out() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/29", |s| s.block_size = Some(29))
        .await;
    f.store
        .apply(
            IPReservation::new(
                ObjectMeta::named("gateways"),
                IPReservationSpec {
                    reserved_cidrs: vec!["10.0.0.0/30".parse().unwrap()],
                },
            )
            .into(),
        )
        .await
        .unwrap();
    let got = f.ipam.auto_assign(&args("a", "n", 4, 0)).await.unwrap();
    let mut ips: Vec<String> = got.v4.iter().map(|a| a.ip.to_string()).collect();
    ips.sort();
    assert_eq!(ips, ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"]);
    let err = f.ipam.auto_assign(&args("b", "n", 1, 0)).await.unwrap_err();
    assert!(
        matches!(
            err,
            IpamError::Exhausted {
                no_claim: NoClaim::PoolsFull,
                ..
            }
        ),
        "{err}"
    );
    let err = f
        .ipam
        .assign_ip(ip("10.0.0.1"), "c", &BTreeMap::new(), "n")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "10.0.0.1 is reserved by IPReservation gateways"
    );
}

#[tokio::test]
async fn disabled_pools_are_not_used_for_new_addresses() {
    let f = fixture().await;
    f.pool("old", "10.0.0.0/24", |s| s.disabled = true).await;
    f.pool("new", "10.1.0.0/24", |_| {}).await;
    let got = f.one("a", "n").await;
    assert!(net("10.1.0.0/24").contains(&got));
    f.pool("new", "10.1.0.0/24", |s| s.disabled = true).await;
    let err = f.ipam.auto_assign(&args("b", "n", 1, 0)).await.unwrap_err();
    assert!(matches!(err, IpamError::NoUsablePool { .. }), "{err}");
}

#[tokio::test]
async fn node_selector_decides_which_hosts_may_use_a_pool() {
    let f = fixture().await;
    f.pool("rack1", "10.1.0.0/24", |s| {
        s.node_selector = "rack == 'r1'".into()
    })
    .await;
    f.pool("anywhere", "10.9.0.0/24", |_| {}).await;
    f.node("in-rack1", &[("rack", "r1")]).await;
    f.node("in-rack2", &[("rack", "r2")]).await;
    let only_rack1 = |host: &str| AutoAssignArgs {
        ipv4_pools: Some(vec![net("10.1.0.0/24")]),
        ..args(&format!("h-{host}"), host, 1, 0)
    };
    let got = f.ipam.auto_assign(&only_rack1("in-rack1")).await.unwrap();
    assert!(net("10.1.0.0/24").contains(&got.v4[0].ip));
    let err = f
        .ipam
        .auto_assign(&only_rack1("in-rack2"))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::PoolNotUsable { .. }), "{err}");
    // Without a Node resource only all() pools match.
    for host in ["in-rack2", "no-node"] {
        for i in 0..3 {
            let got = f.one(&format!("{host}-{i}"), host).await;
            assert!(net("10.9.0.0/24").contains(&got), "{host}: {got}");
        }
    }
}

#[tokio::test]
async fn namespace_selector_decides_which_namespaces_may_use_a_pool() {
    let f = fixture().await;
    f.pool("team-a", "10.1.0.0/24", |s| {
        s.namespace_selector = "team == 'a'".into()
    })
    .await;
    f.pool("anywhere", "10.9.0.0/24", |_| {}).await;
    // The namespace's labels, as kube-controllers writes them on its profile.
    f.store
        .apply(
            serde_json::from_value::<Resource>(json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "Profile",
                "metadata": {"name": "kns.shop"},
                "spec": {"labelsToApply": {"pcns.team": "a", "pcns.projectcalico.org/name": "shop"}},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let in_ns = |handle: &str, ns: Option<&str>| AutoAssignArgs {
        ipv4_pools: Some(vec![net("10.1.0.0/24")]),
        namespace: ns.map(str::to_string),
        ..args(handle, "h1", 1, 0)
    };
    let got = f
        .ipam
        .auto_assign(&in_ns("shop-1", Some("shop")))
        .await
        .unwrap();
    assert!(net("10.1.0.0/24").contains(&got.v4[0].ip));
    for (handle, ns) in [("web-1", Some("web")), ("none-1", None)] {
        let err = f.ipam.auto_assign(&in_ns(handle, ns)).await.unwrap_err();
        assert!(matches!(err, IpamError::PoolNotUsable { .. }), "{err}");
    }
    let err = f
        .ipam
        .auto_assign(&in_ns("web-1", Some("web")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("namespace web"), "{err}");
    // Unrestricted, a namespace the selector does not match gets the other pool.
    let any = AutoAssignArgs {
        namespace: Some("web".into()),
        ..args("web-2", "h1", 1, 0)
    };
    let got = f.ipam.auto_assign(&any).await.unwrap();
    assert!(net("10.9.0.0/24").contains(&got.v4[0].ip), "{got:?}");
}

#[tokio::test]
async fn allowed_uses_keep_tunnel_and_workload_addresses_apart() {
    let f = fixture().await;
    f.pool("tunnels", "10.0.0.0/24", |s| {
        s.allowed_uses = vec![AllowedUse::Tunnel]
    })
    .await;
    f.pool("pods", "10.1.0.0/24", |s| {
        s.allowed_uses = vec![AllowedUse::Workload]
    })
    .await;
    let tunnel = AutoAssignArgs {
        ip_use: IpUse::Tunnel,
        ..args("vxlan-tunnel-addr-n", "n", 1, 0)
    };
    let got = f.ipam.auto_assign(&tunnel).await.unwrap();
    assert!(net("10.0.0.0/24").contains(&got.v4[0].ip));
    assert!(net("10.1.0.0/24").contains(&f.one("pod", "n").await));
}

#[tokio::test]
async fn release_by_address_and_by_handle_updates_block_and_handle_together() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/24", |_| {}).await;
    let got = f
        .ipam
        .auto_assign(&args("k8s-pod-network.abc", "n", 3, 0))
        .await
        .unwrap();
    let block = got.v4[0].block;
    let handle_key = model::handle_key("k8s-pod-network.abc");
    assert_eq!(
        f.json(&handle_key).await.unwrap()["block"][block.to_string()],
        json!(3)
    );
    let unallocated = f
        .ipam
        .release_ips(&[got.v4[0].ip, ip("10.0.0.200"), ip("192.168.1.1")])
        .await
        .unwrap();
    assert_eq!(unallocated, vec![ip("192.168.1.1"), ip("10.0.0.200")]);
    assert_eq!(
        f.json(&handle_key).await.unwrap()["block"][block.to_string()],
        json!(2)
    );
    let mut released = f
        .ipam
        .release_by_handle("k8s-pod-network.abc")
        .await
        .unwrap();
    released.sort();
    assert_eq!(released, vec![got.v4[1].ip, got.v4[2].ip]);
    assert!(f.json(&handle_key).await.is_none());
    assert_eq!(f.in_use().await, 0);
    let err = f
        .ipam
        .release_by_handle("k8s-pod-network.abc")
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::HandleNotFound { .. }), "{err}");
    assert!(f.ipam.check().await.unwrap().leaked.is_empty());
}

#[tokio::test]
async fn an_emptied_block_is_released_only_when_the_host_keeps_another() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/24", |s| s.block_size = Some(30))
        .await;
    let got = f.ipam.auto_assign(&args("a", "n", 8, 0)).await.unwrap();
    let blocks = f.ipam.host_blocks("n").await.unwrap();
    assert_eq!(blocks.len(), 2);
    let second = got.v4[4].block;
    let second_ips: Vec<IpAddr> = got.v4[4..].iter().map(|a| a.ip).collect();
    f.ipam.release_ips(&second_ips).await.unwrap();
    assert!(f.json(&model::block_key(second)).await.is_none());
    assert!(f.json(&model::affinity_key("n", second)).await.is_none());
    let first = got.v4[0].block;
    assert_eq!(f.ipam.host_blocks("n").await.unwrap(), vec![first]);
    // The host's last block stays, empty and affine, for its next workload.
    f.ipam.release_by_handle("a").await.unwrap();
    assert_eq!(f.ipam.host_blocks("n").await.unwrap(), vec![first]);
    let block = f.json(&model::block_key(first)).await.unwrap();
    assert_eq!(block["affinity"], json!("host:n"));
    assert_eq!(block["unallocated"].as_array().unwrap().len(), 4);
    assert_eq!(f.one("b", "n").await, got.v4[0].ip);
}

#[tokio::test]
async fn ipv6_blocks_are_slash_122_of_a_slash_64() {
    let f = fixture().await;
    f.pool("v6", "fd00:1:2:3::/64", |_| {}).await;
    let got = f.ipam.auto_assign(&args("a", "n", 0, 2)).await.unwrap();
    assert!(got.v4.is_empty());
    let block = got.v6[0].block;
    assert_eq!(block.prefix_len(), 122);
    assert!(net("fd00:1:2:3::/64").contains(&block));
    assert!(got.v6.iter().all(|a| block.contains(&a.ip)));
    let key = model::block_key(block);
    assert!(
        key.starts_with("/calico/ipam/v2/assignment/ipv6/block/fd00:1:2:3:")
            && key.ends_with("-122"),
        "{key}"
    );
    let stored = f.json(&key).await.unwrap();
    assert_eq!(stored["allocations"].as_array().unwrap().len(), 64);
    assert!(
        f.json(&format!("/calico/ipam/v2/host/n/ipv6/block/{}", &key[38..]))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn one_handle_owns_ipv4_and_ipv6_addresses() {
    let f = fixture().await;
    f.pool("v4", "10.0.0.0/24", |_| {}).await;
    f.pool("v6", "fd00::/64", |_| {}).await;
    let got = f
        .ipam
        .auto_assign(&args("k8s-pod-network.dual", "n", 1, 2))
        .await
        .unwrap();
    assert_eq!((got.v4.len(), got.v6.len()), (1, 2));
    let handle = f
        .json(&model::handle_key("k8s-pod-network.dual"))
        .await
        .unwrap();
    assert_eq!(
        handle,
        json!({"block": {
            got.v4[0].block.to_string(): 1,
            got.v6[0].block.to_string(): 2
        }, "deleted": false})
    );
    let released = f
        .ipam
        .release_by_handle("k8s-pod-network.dual")
        .await
        .unwrap();
    assert_eq!(released.len(), 3);
    assert_eq!(f.in_use().await, 0);
}

#[tokio::test]
async fn a_request_that_fails_for_one_family_rolls_back_the_other() {
    let f = fixture().await;
    f.pool("v4", "10.0.0.0/24", |_| {}).await;
    let err = f.ipam.auto_assign(&args("a", "n", 2, 1)).await.unwrap_err();
    assert!(
        matches!(err, IpamError::NoUsablePool { family: 6, .. }),
        "{err}"
    );
    assert_eq!(f.in_use().await, 0);
    assert!(f.json(&model::handle_key("a")).await.is_none());
}

#[tokio::test]
async fn a_chosen_address_is_assigned_once_and_only_inside_a_pool() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/24", |_| {}).await;
    let attrs = BTreeMap::from([("pod".to_string(), "web".to_string())]);
    let got = f
        .ipam
        .assign_ip(ip("10.0.0.77"), "h1", &attrs, "n")
        .await
        .unwrap();
    assert_eq!(got.block, net("10.0.0.64/26"));
    assert_eq!(
        f.ipam.host_blocks("n").await.unwrap(),
        vec![net("10.0.0.64/26")]
    );
    let err = f
        .ipam
        .assign_ip(ip("10.0.0.77"), "h2", &attrs, "n")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        IpamError::AlreadyAllocated {
            ip: ip("10.0.0.77"),
            handle: Some("h1".into())
        }
    );
    let err = f
        .ipam
        .assign_ip(ip("10.5.0.1"), "h3", &attrs, "n")
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::NotInPool { .. }), "{err}");
    // Auto-assignment on the same host skips the taken address.
    let next = f.ipam.auto_assign(&args("h4", "n", 64, 0)).await.unwrap();
    assert!(next.v4.iter().all(|a| a.ip != ip("10.0.0.77")));
}

#[tokio::test]
async fn configure_writes_calicos_ipam_config_and_the_resource_in_one_go() {
    let f = fixture().await;
    assert_eq!(
        f.ipam.config().await.unwrap(),
        IPAMConfigurationSpec::default()
    );
    f.ipam
        .configure(ConfigUpdate {
            strict_affinity: Some(true),
            max_blocks_per_host: Some(7),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap();
    assert_eq!(
        f.json("/calico/ipam/v2/config").await.unwrap(),
        json!({"strict_affinity": true, "auto_allocate_blocks": true, "maxBlocksPerHost": 7})
    );
    let Resource::IPAMConfiguration(r) = f
        .store
        .get(Kind::IPAMConfiguration, None, "default")
        .await
        .unwrap()
    else {
        panic!("not an IPAMConfiguration")
    };
    assert!(r.spec.strict_affinity);
    // A later `calicoctl apply` of the resource wins over the IPAM key.
    let spec = IPAMConfigurationSpec {
        max_blocks_per_host: 3,
        ..IPAMConfigurationSpec::default()
    };
    f.store
        .apply(IPAMConfiguration::new(ObjectMeta::named("default"), spec.clone()).into())
        .await
        .unwrap();
    assert_eq!(f.ipam.config().await.unwrap(), spec);
    let err = f
        .ipam
        .configure(ConfigUpdate {
            max_blocks_per_host: Some(0),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("maxBlocksPerHost"), "{err}");
}

#[tokio::test]
async fn check_finds_a_leaked_address_and_releasing_the_leak_fixes_it() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/24", |_| {}).await;
    f.node("n", &[]).await;
    let kept = f.one("k8s-pod-network.kept", "n").await;
    let lost = f.one("k8s-pod-network.lost", "n").await;
    assert!(f.ipam.check().await.unwrap().is_clean());
    f.ipam
        .kv()
        .delete(&model::handle_key("k8s-pod-network.lost"), None)
        .await
        .unwrap();
    let report = f.ipam.check().await.unwrap();
    assert_eq!(report.leaked.len(), 1);
    assert_eq!(report.leaked[0].ip, lost);
    assert_eq!(report.leaked[0].reason, LeakReason::HandleMissing);
    assert_eq!(
        f.ipam.release_leaked(&report.leaked).await.unwrap(),
        vec![lost]
    );
    let report = f.ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.allocated, 1);
    assert!(f.ipam.ip_status(kept).await.unwrap().allocated);
}

/// Writes the workload endpoint of pod `shop/<pod>` on host `n` listing `ips`.
async fn put_endpoint(f: &Fixture, pod: &str, ips: &[IpAddr]) {
    let mut meta = ObjectMeta::named(format!("n-k8s-{pod}-eth0"));
    meta.namespace = Some("shop".into());
    let spec = WorkloadEndpointSpec {
        pod: pod.into(),
        node: "n".into(),
        interface_name: format!("cali{pod}"),
        ip_networks: ips.iter().map(|ip| Cidr(IpNet::from(*ip))).collect(),
        ..WorkloadEndpointSpec::default()
    };
    f.store
        .apply(WorkloadEndpoint::new(meta, spec).into())
        .await
        .unwrap();
}

#[tokio::test]
async fn check_holds_pod_allocations_against_workload_endpoints() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/24", |_| {}).await;
    f.pool("off", "10.9.0.0/24", |s| s.disabled = true).await;
    f.node("n", &[]).await;
    let for_pod = |pod: &str| AutoAssignArgs {
        attrs: BTreeMap::from([
            ("namespace".to_string(), "shop".to_string()),
            ("pod".to_string(), pod.to_string()),
        ]),
        ..args(&format!("k8s-pod-network.{pod}"), "n", 1, 0)
    };
    let web = f.ipam.auto_assign(&for_pod("web")).await.unwrap().v4[0].ip;
    let gone = f.ipam.auto_assign(&for_pod("gone")).await.unwrap().v4[0].ip;
    // web's endpoint also lists an address of a disabled pool.
    put_endpoint(&f, "web", &[web, ip("10.9.0.5")]).await;

    let report = f.ipam.check().await.unwrap();
    let leaked: Vec<(IpAddr, LeakReason)> =
        report.leaked.iter().map(|l| (l.ip, l.reason)).collect();
    assert_eq!(leaked, [(gone, LeakReason::WorkloadEndpointMissing)]);
    let unallocated: Vec<(IpAddr, &str, bool)> = report
        .unallocated
        .iter()
        .map(|u| (u.ip, u.endpoint.as_str(), u.in_pool))
        .collect();
    assert_eq!(
        unallocated,
        [(ip("10.9.0.5"), "shop/n-k8s-web-eth0", false)]
    );
    assert_eq!(report.workload_addresses, 2);

    assert_eq!(
        f.ipam.release_leaked(&report.leaked).await.unwrap(),
        vec![gone]
    );
    put_endpoint(&f, "web", &[web]).await;
    let report = f.ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.allocated, 1);
}

#[tokio::test]
async fn releasing_a_hosts_affinities_keeps_blocks_that_still_hold_addresses() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/24", |s| s.block_size = Some(30))
        .await;
    let got = f.ipam.auto_assign(&args("a", "n", 5, 0)).await.unwrap();
    f.ipam.release_ips(&[got.v4[4].ip]).await.unwrap();
    // The emptied second block went; n keeps the first.
    assert_eq!(f.ipam.host_blocks("n").await.unwrap().len(), 1);
    f.one("b", "n2").await;
    let released = f.ipam.release_host_affinities("n").await.unwrap();
    assert_eq!(released, vec![got.v4[0].block]);
    assert!(f.ipam.host_blocks("n").await.unwrap().is_empty());
    let block = f.json(&model::block_key(got.v4[0].block)).await.unwrap();
    assert_eq!(block["affinity"], Value::Null);
    assert_eq!(f.in_use().await, 5);
}

#[tokio::test]
async fn splitting_a_pool_replaces_it_by_equal_pools_with_its_settings() {
    let f = fixture().await;
    f.pool("big", "10.0.0.0/24", |s| s.nat_outgoing = true)
        .await;
    let before = f.one("a", "n").await;
    let children = f
        .ipam
        .split_pool(&PoolRef::Cidr(net("10.0.0.0/24")), 2)
        .await
        .unwrap();
    let names: Vec<&str> = children.iter().map(|p| p.metadata.name.as_str()).collect();
    assert_eq!(names, ["big-0", "big-1"]);
    let pools = f.store.list(Kind::IPPool, None).await.unwrap();
    let cidrs: Vec<String> = pools
        .iter()
        .map(|p| match p {
            Resource::IPPool(p) => {
                assert!(p.spec.nat_outgoing);
                p.spec.cidr.to_string()
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(cidrs, ["10.0.0.0/25", "10.0.0.128/25"]);
    assert!(f.ipam.ip_status(before).await.unwrap().allocated);
    let err = f
        .ipam
        .split_pool(&PoolRef::Name("big-0".into()), 4)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("smaller than one /26 block"),
        "{err}"
    );
    let err = f
        .ipam
        .split_pool(&PoolRef::Name("nope".into()), 2)
        .await
        .unwrap_err();
    assert_eq!(err, IpamError::PoolNotFound("nope".into()));
}

#[tokio::test]
async fn handles_and_hosts_with_a_slash_are_refused() {
    let f = fixture().await;
    f.pool("p", "10.0.0.0/24", |_| {}).await;
    let err = f
        .ipam
        .auto_assign(&args("a/b", "n", 1, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, IpamError::InvalidName { what: "handle", .. }),
        "{err}"
    );
    let err = f.ipam.auto_assign(&args("a", "", 1, 0)).await.unwrap_err();
    assert!(
        matches!(err, IpamError::InvalidName { what: "host", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn min_ip_reclaim_age_holds_a_released_address_back() {
    for (age, reused) in [(0, true), (3600, false)] {
        let f = fixture().await;
        f.pool("p", "10.70.0.0/29", |s| s.block_size = Some(30))
            .await;
        if age > 0 {
            let config: Resource = serde_json::from_value(json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPAMConfiguration",
                "metadata": {"name": "default"},
                "spec": {"minIPReclaimAgeSeconds": age},
            }))
            .unwrap();
            f.store.apply(config).await.unwrap();
            assert_eq!(
                f.ipam.config().await.unwrap().min_ip_reclaim_age_seconds,
                age
            );
        }
        let mut first = Vec::new();
        for i in 0..4 {
            let got = f
                .ipam
                .auto_assign(&args(&format!("h{i}"), "host-a", 1, 0))
                .await
                .unwrap();
            first.push(got.v4[0].ip);
        }
        let freed = first[2];
        assert!(f.ipam.release_ips(&[freed]).await.unwrap().is_empty());
        let again = f
            .ipam
            .auto_assign(&args("h9", "host-a", 1, 0))
            .await
            .unwrap()
            .v4[0]
            .ip;
        assert_eq!(
            again == freed,
            reused,
            "age {age}: got {again}, released {freed}"
        );
        if !reused {
            assert!(!first.contains(&again), "from a second block: {again}");
        }
    }
}
