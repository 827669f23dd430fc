//! [`Node`]: a host running felix, with its BGP identity and tunnel addresses.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::{
    meta::ObjectMeta,
    types::{AsNumber, Cidr},
    validate::{self, Errors},
};

use super::Spec;

/// A node's BGP identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBgpSpec {
    /// The node's IPv4 address and subnet, e.g. `10.0.0.5/24`.
    #[serde(
        default,
        rename = "ipv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_address: Option<Cidr>,
    #[serde(
        default,
        rename = "ipv6Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address: Option<Cidr>,
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<Ipv4Addr>,
    /// Overrides the cluster's AS for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// Set on route reflectors: their cluster ID, in IPv4 address form.
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

/// The orchestrator's name for this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrchRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    pub orchestrator: String,
}

/// One of the node's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    pub address: Cidr,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub address_type: String,
}

/// `spec` of a [`Node`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<Ipv4Addr>,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr: Option<String>,
    #[serde(
        default,
        rename = "ipv6VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_vxlan_tunnel_addr: Option<IpAddr>,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddrV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
}

impl Spec for NodeSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut Errors) {
        if let Some(bgp) = &self.bgp {
            for (field, addr, family) in [
                ("ipv4Address", bgp.ipv4_address, 4),
                ("ipv6Address", bgp.ipv6_address, 6),
            ] {
                if let Some(addr) = addr.filter(|a| a.family() != family) {
                    errs.add(
                        format!("spec.bgp.{field}"),
                        format!("{addr} is not an IPv{family} address"),
                    );
                }
            }
            if let Some(id) = &bgp.route_reflector_cluster_id
                && id.parse::<Ipv4Addr>().is_err()
            {
                errs.add(
                    "spec.bgp.routeReflectorClusterID",
                    format!("{id:?} is not a cluster ID in IPv4 address form, e.g. \"224.0.0.1\""),
                );
            }
        }
        if self.ipv6_vxlan_tunnel_addr.is_some_and(|a| a.is_ipv4()) {
            errs.add("spec.ipv6VXLANTunnelAddr", "is not an IPv6 address");
        }
        for (field, mac) in [
            ("vxlanTunnelMACAddr", &self.vxlan_tunnel_mac_addr),
            ("vxlanTunnelMACAddrV6", &self.vxlan_tunnel_mac_addr_v6),
        ] {
            if let Some(mac) = mac {
                errs.check(format!("spec.{field}"), validate::mac(mac));
            }
        }
        for (i, r) in self.orch_refs.iter().enumerate() {
            if r.orchestrator.is_empty() {
                errs.add(format!("spec.orchRefs[{i}].orchestrator"), "is required");
            }
        }
    }
}

resource!(
    /// A host in the cluster.
    Node,
    NodeSpec
);
