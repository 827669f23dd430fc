//! Registering this host's Node against a real SQLite store: created with
//! its addresses, updated without clobbering what others wrote, a VTEP
//! allocated from IPAM once a VXLAN pool exists and kept afterwards.

mod common;

use std::net::IpAddr;

use api::{Kind, Node, Resource};
use common::{apply, pool};
use datastore::ipam::client::Ipam;
use datastore::{KvStore, ResourceStore};
use felix::node::{Registration, VXLAN_TUNNEL_ATTR, register, vxlan_handle};
use std::sync::Arc;

fn reg(ip: &str) -> Registration {
    Registration {
        node: "n1".into(),
        ipv4: Some(ip.parse().unwrap()),
        ipv6: None,
        as_number: None,
    }
}

async fn stored(kv: &Arc<dyn KvStore>) -> Node {
    match ResourceStore::new(kv.clone())
        .get(Kind::Node, None, "n1")
        .await
        .unwrap()
    {
        Resource::Node(n) => n,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_node_is_created_then_updated_without_clobbering_others_fields() {
    let (kv, _keep) = common::sqlite();
    let first = register(kv.clone(), &reg("10.0.0.5/24"))
        .await
        .unwrap()
        .node;
    assert_eq!(first, stored(&kv).await);
    assert_eq!(first.spec.vxlan_tunnel_mac_addr, None, "no VXLAN pool");

    // Registering again changes nothing (not even the resourceVersion).
    let again = register(kv.clone(), &reg("10.0.0.5/24"))
        .await
        .unwrap()
        .node;
    assert_eq!(
        again.metadata.resource_version,
        first.metadata.resource_version
    );

    // Someone else labels the node and sets a route reflector ID.
    let mut theirs = first.clone();
    theirs.metadata.labels.insert("rack".into(), "r7".into());
    theirs.spec.bgp.as_mut().unwrap().route_reflector_cluster_id = Some("224.0.0.1".into());
    apply(&kv, Resource::Node(theirs)).await;

    let moved = register(kv.clone(), &reg("10.0.1.5/24"))
        .await
        .unwrap()
        .node;
    assert_eq!(moved, stored(&kv).await);
    assert_eq!(moved.metadata.labels["rack"], "r7");
    let bgp = moved.spec.bgp.unwrap();
    assert_eq!(bgp.route_reflector_cluster_id.as_deref(), Some("224.0.0.1"));
    assert_eq!(bgp.ipv4_address.unwrap().to_string(), "10.0.1.5/24");
}

#[tokio::test]
async fn a_vxlan_pool_gets_the_node_a_vtep_from_ipam_once() {
    let (kv, _keep) = common::sqlite();
    apply(&kv, pool("vx", "10.244.0.0/16", true)).await;
    let node = register(kv.clone(), &reg("10.0.0.5/24"))
        .await
        .unwrap()
        .node;
    let vtep = node.spec.ipv4_vxlan_tunnel_addr.expect("a VTEP address");
    assert!(
        "10.244.0.0/16"
            .parse::<ipnet::IpNet>()
            .unwrap()
            .contains(&IpAddr::V4(vtep))
    );
    let mac = node.spec.vxlan_tunnel_mac_addr.clone().expect("a VTEP MAC");
    let first = u8::from_str_radix(&mac[..2], 16).unwrap();
    assert_eq!(first & 0x03, 0x02, "unicast, locally administered: {mac}");

    // IPAM holds it under Calico's handle with Calico's attribute.
    let status = Ipam::new(kv.clone())
        .ip_status(IpAddr::V4(vtep))
        .await
        .unwrap();
    assert!(status.allocated);
    assert_eq!(status.handle.as_deref(), Some(vxlan_handle("n1").as_str()));
    assert_eq!(
        status.attrs.get("type").map(String::as_str),
        Some(VXLAN_TUNNEL_ATTR)
    );
    assert_eq!(status.attrs.get("node").map(String::as_str), Some("n1"));

    // A restart keeps address and MAC; nothing more is allocated.
    let again = register(kv.clone(), &reg("10.0.0.5/24"))
        .await
        .unwrap()
        .node;
    assert_eq!(again.spec.ipv4_vxlan_tunnel_addr, Some(vtep));
    assert_eq!(again.spec.vxlan_tunnel_mac_addr, Some(mac));
    assert_eq!(
        again.metadata.resource_version,
        node.metadata.resource_version
    );
    let usage = Ipam::new(kv.clone()).usage().await.unwrap();
    let in_use: u128 = usage.pools.iter().map(|p| p.in_use).sum();
    assert_eq!(in_use, 1);
}

#[tokio::test]
async fn a_vtep_that_cannot_be_allocated_does_not_stop_the_registration() {
    let (kv, _keep) = common::sqlite();
    let Resource::IPPool(mut elsewhere) = pool("vx", "10.244.0.0/16", true) else {
        unreachable!()
    };
    elsewhere.spec.node_selector = "rack == 'r9'".into();
    apply(&kv, Resource::IPPool(elsewhere)).await;
    let registered = register(kv.clone(), &reg("10.0.0.5/24")).await.unwrap();
    let error = registered
        .vtep_error
        .expect("no pool this node may use")
        .to_string();
    assert!(error.contains("n1"), "{error}");
    assert_eq!(registered.node, stored(&kv).await);
    assert_eq!(registered.node.spec.ipv4_vxlan_tunnel_addr, None);
    assert!(registered.node.spec.bgp.is_some());
}

#[tokio::test]
async fn an_address_a_crashed_run_left_under_the_handle_is_not_leaked() {
    let (kv, _keep) = common::sqlite();
    apply(&kv, pool("vx", "10.244.0.0/16", true)).await;
    let ipam = Ipam::new(kv.clone());
    // An earlier run allocated but died before writing the Node.
    let leaked = ipam
        .auto_assign(&datastore::ipam::client::AutoAssignArgs {
            handle: vxlan_handle("n1"),
            host: "n1".into(),
            num_v4: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .v4[0]
        .ip;
    let node = register(kv.clone(), &reg("10.0.0.5/24"))
        .await
        .unwrap()
        .node;
    let vtep = IpAddr::V4(node.spec.ipv4_vxlan_tunnel_addr.unwrap());
    let usage = ipam.usage().await.unwrap();
    let in_use: u128 = usage.pools.iter().map(|p| p.in_use).sum();
    assert_eq!(in_use, 1, "only the node's VTEP is allocated");
    if vtep != leaked {
        assert!(!ipam.ip_status(leaked).await.unwrap().allocated);
    }
}

#[tokio::test]
async fn nothing_is_registered_while_the_store_is_locked_for_a_migration() {
    let (kv, _keep) = common::sqlite();
    let store = ResourceStore::new(kv.clone());
    datastore::migrate::set_ready(&store, false).await.unwrap();
    let err = register(kv.clone(), &reg("10.0.0.5/24")).await.unwrap_err();
    assert!(err.to_string().contains("locked for a migration"), "{err}");
    assert!(store.list(Kind::Node, None).await.unwrap().is_empty());

    datastore::migrate::set_ready(&store, true).await.unwrap();
    let node = register(kv.clone(), &reg("10.0.0.5/24"))
        .await
        .unwrap()
        .node;
    assert_eq!(node, stored(&kv).await);
}
