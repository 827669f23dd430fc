//! This host's Node resource: [`register`] creates or updates it with the
//! fields felix owns and leaves every other field as others wrote it.
//!
//! Felix owns `spec.bgp.ipv4Address` / `ipv6Address` (the host's
//! addresses), `spec.bgp.asNumber` (only when configured), the
//! `CalicoNodeIP` entries of `spec.addresses`, and, when an enabled IPv4
//! pool has `vxlanMode` other than `Never`, the VTEP: `ipv4VXLANTunnelAddr`
//! from IPAM (handle `vxlan-tunnel-addr-<node>`, attribute `type:
//! vxlanTunnelAddress`, as Calico allocates it) and `vxlanTunnelMACAddr`
//! (random, locally administered, kept once written). Labels, annotations,
//! `orchRefs`, the route reflector cluster ID and the rest are untouched.
//! Every write is a compare-and-swap on the Node's `resourceVersion`,
//! retried after a conflict.
//!
//! A VTEP that cannot be allocated (no VXLAN pool this node may use for
//! tunnels, pools full) is reported in [`Registered::vtep_error`]; the rest
//! is written anyway.
//!
//! [`merge`], [`vxlan_pools`] and [`needs_registration`] decide (pure);
//! [`register`] reads and writes; [`autodetect`] finds the host's address
//! in the kernel.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use api::resources::ippool::{AllowedUse, EncapMode};
use api::resources::node::{NodeAddress, NodeBgpSpec};
use api::{AsNumber, Cidr, IPPool, Kind, Node, NodeSpec, ObjectMeta, Resource};
use datastore::ipam::IpamError;
use datastore::ipam::client::{AutoAssignArgs, Ipam};
use datastore::ipam::select::IpUse;
use datastore::{KvStore, ResourceStore};
use ipnet::IpNet;

use crate::state::Snapshot;

/// What felix registers for this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub node: String,
    /// The host's IPv4 address and subnet; `None` removes it.
    pub ipv4: Option<IpNet>,
    pub ipv6: Option<IpNet>,
    /// Overrides the cluster AS when set; `None` leaves the Node's as is.
    pub as_number: Option<u32>,
}

/// `spec.addresses[].type` of the entries felix owns (Calico's).
pub const NODE_IP_TYPE: &str = "CalicoNodeIP";
/// IPAM attribute key and value of a VTEP address (Calico's).
pub const ATTR_TYPE: &str = "type";
pub const VXLAN_TUNNEL_ATTR: &str = "vxlanTunnelAddress";
/// Conflicting concurrent Node writes tolerated before giving up.
const MAX_CONFLICTS: usize = 20;

/// The IPAM handle of a node's VTEP address (Calico's).
pub fn vxlan_handle(node: &str) -> String {
    format!("vxlan-tunnel-addr-{node}")
}

/// Why registering failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("Node {node}: {source}")]
    Datastore {
        node: String,
        source: datastore::Error,
    },
    #[error("Node {node}: allocating the VXLAN tunnel address: {source}")]
    Ipam { node: String, source: IpamError },
    #[error("Node {node}: gave up after {MAX_CONFLICTS} conflicting writes")]
    Conflicts { node: String },
    #[error("Node {node}: datastore holds a {kind} at the Node's key")]
    WrongKind { node: String, kind: Kind },
    #[error("Node {node}: reading /dev/urandom for a VTEP MAC: {source}")]
    Random {
        node: String,
        source: std::io::Error,
    },
    #[error("finding this host's IPv{family} address: {message}")]
    Autodetect { family: u8, message: String },
}

/// The Node with felix's fields set from `reg` and everything else as in
/// `existing` (or empty for a new Node).
pub fn merge(existing: Option<&Node>, reg: &Registration) -> Node {
    let mut node = existing.cloned().unwrap_or_else(|| Node {
        metadata: ObjectMeta::named(&reg.node),
        spec: NodeSpec::default(),
    });
    let mut bgp = node.spec.bgp.take().unwrap_or_default();
    bgp.ipv4_address = reg.ipv4.map(Cidr);
    bgp.ipv6_address = reg.ipv6.map(Cidr);
    if let Some(asn) = reg.as_number {
        bgp.as_number = Some(AsNumber(asn));
    }
    node.spec.bgp = (bgp != NodeBgpSpec::default()).then_some(bgp);
    node.spec
        .addresses
        .retain(|a| a.address_type != NODE_IP_TYPE);
    node.spec.addresses.extend(
        [reg.ipv4, reg.ipv6]
            .into_iter()
            .flatten()
            .map(|net| NodeAddress {
                address: Cidr(net),
                address_type: NODE_IP_TYPE.into(),
            }),
    );
    node
}

/// CIDRs of the enabled IPv4 pools that need VTEPs (`vxlanMode` `Always`
/// or `CrossSubnet`) and may hand out tunnel addresses.
pub fn vxlan_pools<'a>(pools: impl IntoIterator<Item = &'a IPPool>) -> Vec<IpNet> {
    pools
        .into_iter()
        .filter(|p| !p.spec.disabled && p.spec.vxlan_mode != EncapMode::Never)
        .filter(|p| {
            p.spec.allowed_uses.is_empty() || p.spec.allowed_uses.contains(&AllowedUse::Tunnel)
        })
        .map(|p| p.spec.cidr.network())
        .filter(|c| matches!(c, IpNet::V4(_)))
        .collect()
}

/// Whether this host's Node, as the snapshot has it, lacks something
/// [`register`] would write: it is missing, a field felix owns differs, or
/// a VXLAN pool exists and the Node has no VTEP address in one (or no MAC).
pub fn needs_registration(snapshot: &Snapshot, reg: &Registration) -> bool {
    let key = ResourceStore::key(Kind::Node, None, &reg.node);
    let Some(Resource::Node(node)) = snapshot.resources.get(&key) else {
        return true;
    };
    if merge(Some(node), reg) != *node {
        return true;
    }
    let pools = snapshot.resources.values().filter_map(|r| match r {
        Resource::IPPool(p) => Some(p),
        _ => None,
    });
    let vxlan = vxlan_pools(pools);
    let in_pool = |a: Ipv4Addr| vxlan.iter().any(|p| p.contains(&IpAddr::V4(a)));
    !vxlan.is_empty()
        && (!node.spec.ipv4_vxlan_tunnel_addr.is_some_and(in_pool)
            || node.spec.vxlan_tunnel_mac_addr.is_none())
}

/// A MAC in Calico's text form from random bytes, made unicast and
/// locally administered.
pub fn local_mac(mut bytes: [u8; 6]) -> String {
    bytes[0] = (bytes[0] & 0xfe) | 0x02;
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn random_bytes() -> std::io::Result<[u8; 6]> {
    use std::io::Read;
    let mut bytes = [0u8; 6];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// What [`register`] wrote.
#[derive(Debug)]
pub struct Registered {
    /// The Node as stored.
    pub node: Node,
    /// Why no VTEP address could be allocated although a VXLAN pool exists
    /// (no pool this node may use for tunnels, the pools full, ...): the
    /// Node was written without it.
    pub vtep_error: Option<NodeError>,
}

/// Creates or updates this host's Node (see the module docs). A VTEP that
/// cannot be allocated does not stop the rest from being written.
pub async fn register(kv: Arc<dyn KvStore>, reg: &Registration) -> Result<Registered, NodeError> {
    let store = ResourceStore::new(kv.clone());
    let ipam = Ipam::new(kv);
    let db = |source| NodeError::Datastore {
        node: reg.node.clone(),
        source,
    };
    // Nothing is written while the store is locked for a migration.
    datastore::migrate::check_unlocked(store.kv())
        .await
        .map_err(db)?;
    // A VTEP address allocated by this call, kept across conflicts.
    let mut allocated: Option<Ipv4Addr> = None;
    for _ in 0..MAX_CONFLICTS {
        let mut vtep_error = None;
        let existing = match store.get(Kind::Node, None, &reg.node).await {
            Ok(Resource::Node(n)) => Some(n),
            Ok(other) => {
                return Err(NodeError::WrongKind {
                    node: reg.node.clone(),
                    kind: other.kind(),
                });
            }
            Err(datastore::Error::NotFound { .. }) => None,
            Err(e) => return Err(db(e)),
        };
        let mut node = merge(existing.as_ref(), reg);
        let pools: Vec<IPPool> = store
            .list(Kind::IPPool, None)
            .await
            .map_err(db)?
            .into_iter()
            .filter_map(|r| match r {
                Resource::IPPool(p) => Some(p),
                _ => None,
            })
            .collect();
        let vxlan = vxlan_pools(&pools);
        if !vxlan.is_empty() {
            let holds = |a: Ipv4Addr| vxlan.iter().any(|p| p.contains(&IpAddr::V4(a)));
            if !node.spec.ipv4_vxlan_tunnel_addr.is_some_and(holds) {
                if allocated.is_none() {
                    match allocate_vtep(&ipam, &reg.node, &vxlan).await {
                        Ok(a) => allocated = Some(a),
                        Err(e) => vtep_error = Some(e),
                    }
                }
                if let Some(addr) = allocated {
                    node.spec.ipv4_vxlan_tunnel_addr = Some(addr);
                }
            }
            if node.spec.vxlan_tunnel_mac_addr.is_none() {
                let bytes = random_bytes().map_err(|source| NodeError::Random {
                    node: reg.node.clone(),
                    source,
                })?;
                node.spec.vxlan_tunnel_mac_addr = Some(local_mac(bytes));
            }
        }
        if let Some(existing) = &existing
            && *existing == node
        {
            return Ok(Registered { node, vtep_error });
        }
        let written = match existing {
            Some(_) => store.replace(Resource::Node(node)).await,
            None => store.create(Resource::Node(node)).await,
        };
        match written {
            Ok(Resource::Node(n)) => {
                tracing::info!(
                    node = reg.node,
                    vtep = ?n.spec.ipv4_vxlan_tunnel_addr,
                    "registered this host's Node"
                );
                return Ok(Registered {
                    node: n,
                    vtep_error,
                });
            }
            Ok(other) => {
                return Err(NodeError::WrongKind {
                    node: reg.node.clone(),
                    kind: other.kind(),
                });
            }
            Err(datastore::Error::Conflict { .. } | datastore::Error::AlreadyExists { .. }) => {
                tracing::debug!(node = reg.node, "Node changed while registering; again");
            }
            Err(e) => {
                if allocated.is_some() {
                    release_vtep(&ipam, &reg.node).await;
                }
                return Err(db(e));
            }
        }
    }
    if allocated.is_some() {
        release_vtep(&ipam, &reg.node).await;
    }
    Err(NodeError::Conflicts {
        node: reg.node.clone(),
    })
}

/// Allocates the node's VTEP address from the VXLAN pools, releasing
/// whatever its handle held before (an address a crashed run allocated but
/// never wrote to the Node, or one from a pool since removed).
async fn allocate_vtep(ipam: &Ipam, node: &str, pools: &[IpNet]) -> Result<Ipv4Addr, NodeError> {
    let ipam_err = |source| NodeError::Ipam {
        node: node.into(),
        source,
    };
    let handle = vxlan_handle(node);
    match ipam.release_by_handle(&handle).await {
        Ok(_) | Err(IpamError::HandleNotFound { .. }) => {}
        Err(e) => return Err(ipam_err(e)),
    }
    let assigned = ipam
        .auto_assign(&AutoAssignArgs {
            handle,
            host: node.into(),
            num_v4: 1,
            attrs: BTreeMap::from([(ATTR_TYPE.into(), VXLAN_TUNNEL_ATTR.into())]),
            ipv4_pools: Some(pools.to_vec()),
            ip_use: IpUse::Tunnel,
            ..AutoAssignArgs::default()
        })
        .await
        .map_err(ipam_err)?;
    match assigned.v4.first().map(|a| a.ip) {
        Some(IpAddr::V4(a)) => Ok(a),
        other => Err(ipam_err(IpamError::Datastore(datastore::Error::Backend(
            format!("IPAM returned {other:?} for one IPv4 address"),
        )))),
    }
}

async fn release_vtep(ipam: &Ipam, node: &str) {
    if let Err(error) = ipam.release_by_handle(&vxlan_handle(node)).await {
        tracing::warn!(node, %error, "releasing the unused VTEP address failed");
    }
}

/// One default route and one address as the kernel lists them, for
/// [`pick_address`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelAddress {
    pub ifindex: u32,
    pub net: IpNet,
    /// Scope universe (not link or host).
    pub global: bool,
}

/// The first global address of the interface holding the default route
/// (the first of `default_oifs`, as the kernel lists them).
pub fn pick_address(default_oifs: &[u32], addrs: &[KernelAddress]) -> Option<IpNet> {
    default_oifs.iter().find_map(|oif| {
        addrs
            .iter()
            .find(|a| a.ifindex == *oif && a.global)
            .map(|a| a.net)
    })
}

/// Finds this host's address of `family` (4 or 6) as Calico's
/// `autodetect` (first-found on the default route's interface) does.
pub async fn autodetect(family: u8) -> Result<Option<IpNet>, NodeError> {
    use futures::TryStreamExt;
    use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
    use rtnetlink::packet_route::route::RouteAttribute;

    let fail = |message: String| NodeError::Autodetect { family, message };
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| fail(e.to_string()))?;
    // The connection's task lives as long as the queries below.
    let _conn = task::Task::spawn(conn);
    async {
        let msg = if family == 4 {
            rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build()
        } else {
            rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
        };
        let mut oifs = Vec::new();
        let mut routes = handle.route().get(msg).execute();
        while let Some(r) = routes.try_next().await.map_err(|e| fail(e.to_string()))? {
            let main = r.header.table == 254 || r.attributes.contains(&RouteAttribute::Table(254));
            if r.header.destination_prefix_length == 0 && main {
                oifs.extend(r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                }));
            }
        }
        let mut addrs = Vec::new();
        let mut list = handle.address().get().execute();
        while let Some(a) = list.try_next().await.map_err(|e| fail(e.to_string()))? {
            let ip = a
                .attributes
                .iter()
                .find_map(|x| match x {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                })
                .or_else(|| {
                    a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                });
            let Some(ip) = ip.filter(|ip| ip.is_ipv4() == (family == 4)) else {
                continue;
            };
            if let Ok(net) = IpNet::new(ip, a.header.prefix_len) {
                addrs.push(KernelAddress {
                    ifindex: a.header.index,
                    net,
                    global: a.header.scope == AddressScope::Universe,
                });
            }
        }
        Ok(pick_address(&oifs, &addrs))
    }
    .await
}

#[cfg(test)]
mod tests {
    use api::resources::node::OrchRef;

    use super::*;

    fn reg() -> Registration {
        Registration {
            node: "n1".into(),
            ipv4: Some("10.0.0.5/24".parse().unwrap()),
            ipv6: None,
            as_number: None,
        }
    }

    #[test]
    fn a_new_node_gets_its_addresses() {
        let n = merge(None, &reg());
        assert_eq!(n.metadata.name, "n1");
        let bgp = n.spec.bgp.unwrap();
        assert_eq!(bgp.ipv4_address, Some(Cidr("10.0.0.5/24".parse().unwrap())));
        assert_eq!(bgp.as_number, None);
        assert_eq!(n.spec.addresses.len(), 1);
        assert_eq!(n.spec.addresses[0].address_type, NODE_IP_TYPE);
    }

    #[test]
    fn merging_keeps_what_others_wrote() {
        let mut existing = merge(None, &reg());
        existing.metadata.labels.insert("rack".into(), "r1".into());
        existing.spec.orch_refs.push(OrchRef {
            node_name: "k8s-n1".into(),
            orchestrator: "k8s".into(),
        });
        existing.spec.addresses.push(NodeAddress {
            address: Cidr("192.0.2.1/32".parse().unwrap()),
            address_type: "ExternalIP".into(),
        });
        let bgp = existing.spec.bgp.as_mut().unwrap();
        bgp.route_reflector_cluster_id = Some("224.0.0.1".into());
        bgp.as_number = Some(AsNumber(65001));
        existing.spec.vxlan_tunnel_mac_addr = Some("02:00:00:00:00:01".into());

        let moved = Registration {
            ipv4: Some("10.0.1.5/24".parse().unwrap()),
            ..reg()
        };
        let n = merge(Some(&existing), &moved);
        assert_eq!(n.metadata.labels["rack"], "r1");
        assert_eq!(n.spec.orch_refs, existing.spec.orch_refs);
        let bgp = n.spec.bgp.as_ref().unwrap();
        assert_eq!(bgp.route_reflector_cluster_id.as_deref(), Some("224.0.0.1"));
        assert_eq!(
            bgp.as_number,
            Some(AsNumber(65001)),
            "no AS configured: kept"
        );
        assert_eq!(bgp.ipv4_address, Some(Cidr("10.0.1.5/24".parse().unwrap())));
        assert_eq!(
            n.spec.vxlan_tunnel_mac_addr,
            existing.spec.vxlan_tunnel_mac_addr
        );
        let addrs: Vec<_> = n
            .spec
            .addresses
            .iter()
            .map(|a| (a.address.to_string(), a.address_type.as_str()))
            .collect();
        assert_eq!(
            addrs,
            [
                ("192.0.2.1/32".to_string(), "ExternalIP"),
                ("10.0.1.5/24".to_string(), NODE_IP_TYPE)
            ]
        );
        let with_as = Registration {
            as_number: Some(64512),
            ..moved
        };
        assert_eq!(
            merge(Some(&n), &with_as).spec.bgp.unwrap().as_number,
            Some(AsNumber(64512))
        );
        assert_eq!(
            merge(Some(&n), &reg()),
            merge(Some(&merge(Some(&n), &reg())), &reg())
        );
    }

    #[test]
    fn a_node_without_addresses_has_no_bgp_section() {
        let none = Registration {
            ipv4: None,
            ..reg()
        };
        assert_eq!(merge(None, &none).spec.bgp, None);
    }

    #[test]
    fn vxlan_pools_are_the_enabled_ipv4_pools_with_vxlan() {
        let pool = |cidr: &str, mode, disabled| {
            let mut spec = api::IPPoolSpec::new(Cidr(cidr.parse().unwrap()));
            spec.vxlan_mode = mode;
            spec.disabled = disabled;
            IPPool::new(ObjectMeta::named(cidr.replace(['/', '.', ':'], "-")), spec)
        };
        let pools = [
            pool("10.1.0.0/16", EncapMode::Always, false),
            pool("10.2.0.0/16", EncapMode::Always, true),
            pool("10.3.0.0/16", EncapMode::Never, false),
            pool("10.4.0.0/16", EncapMode::CrossSubnet, false),
            pool("fd00::/48", EncapMode::Always, false),
        ];
        assert_eq!(
            vxlan_pools(&pools),
            [
                "10.1.0.0/16".parse::<IpNet>().unwrap(),
                "10.4.0.0/16".parse().unwrap()
            ]
        );
    }

    #[test]
    fn registration_is_needed_until_the_snapshot_holds_what_felix_writes() {
        let key = ResourceStore::key(Kind::Node, None, "n1");
        let mut snap = Snapshot::default();
        assert!(needs_registration(&snap, &reg()), "no Node");
        let mut node = merge(None, &reg());
        snap.resources
            .insert(key.clone(), Resource::Node(node.clone()));
        assert!(!needs_registration(&snap, &reg()));
        let moved = Registration {
            ipv4: Some("10.0.9.5/24".parse().unwrap()),
            ..reg()
        };
        assert!(needs_registration(&snap, &moved), "an address changed");

        let mut spec = api::IPPoolSpec::new(Cidr("10.244.0.0/16".parse().unwrap()));
        spec.vxlan_mode = EncapMode::Always;
        let pool = IPPool::new(ObjectMeta::named("vx"), spec);
        snap.resources
            .insert("pool".into(), Resource::IPPool(pool.clone()));
        assert!(needs_registration(&snap, &reg()), "a VXLAN pool, no VTEP");
        node.spec.ipv4_vxlan_tunnel_addr = Some("10.244.0.1".parse().unwrap());
        node.spec.vxlan_tunnel_mac_addr = Some("02:00:00:00:00:01".into());
        snap.resources.insert(key, Resource::Node(node));
        assert!(!needs_registration(&snap, &reg()));

        let mut workload_only = pool;
        workload_only.spec.allowed_uses = vec![AllowedUse::Workload];
        assert!(vxlan_pools([&workload_only]).is_empty());
    }

    #[test]
    fn a_vtep_mac_is_unicast_and_locally_administered() {
        assert_eq!(local_mac([0xff; 6]), "fe:ff:ff:ff:ff:ff");
        assert_eq!(local_mac([0; 6]), "02:00:00:00:00:00");
    }

    #[test]
    fn the_address_is_the_first_global_one_on_the_default_route_interface() {
        let a = |ifindex, net: &str, global| KernelAddress {
            ifindex,
            net: net.parse().unwrap(),
            global,
        };
        let addrs = [
            a(1, "127.0.0.1/8", false),
            a(2, "192.0.2.9/24", true),
            a(3, "169.254.0.3/16", false),
            a(3, "10.0.0.7/24", true),
        ];
        assert_eq!(
            pick_address(&[3, 2], &addrs),
            Some("10.0.0.7/24".parse().unwrap())
        );
        assert_eq!(pick_address(&[1], &addrs), None);
        assert_eq!(pick_address(&[], &addrs), None);
    }
}
