//! Endpoints policy applies to: [`HostEndpoint`] (a host interface) and
//! [`WorkloadEndpoint`] (a container's interface).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{
    meta::ObjectMeta,
    types::{Cidr, Protocol},
    validate::{self, Errors, at, names},
};

use super::Spec;

/// A named port an endpoint offers, for policies' named ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    /// Workload endpoints only: the host port mapped to this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

fn validate_ports(ports: &[EndpointPort], allow_host_port: bool, errs: &mut Errors) {
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        errs.check(at(&path, "name"), names::iana_service_name(&p.name));
        if !p.protocol.has_ports() {
            errs.add(
                at(&path, "protocol"),
                format!("protocol {} has no ports", p.protocol),
            );
        }
        if p.port == 0 {
            errs.add(at(&path, "port"), "port 0 is not valid (1-65535)");
        }
        if !allow_host_port && (p.host_port.is_some() || p.host_ip.is_some()) {
            errs.add(
                at(&path, "hostPort"),
                "hostPort and hostIP are only valid on workload endpoints",
            );
        }
    }
}

fn validate_node(node: &str, errs: &mut Errors) {
    if node.is_empty() {
        errs.add("spec.node", "is required");
    } else {
        errs.check("spec.node", names::dns1123_subdomain(node));
    }
}

/// `spec` of a [`HostEndpoint`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointSpec {
    #[serde(default)]
    pub node: String,
    /// The interface, or `*` for all of the host's interfaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    #[serde(default, rename = "expectedIPs", skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

impl Spec for HostEndpointSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut Errors) {
        validate_node(&self.node, errs);
        if self.interface_name.is_empty() && self.expected_ips.is_empty() {
            errs.add(
                "spec.interfaceName",
                "interfaceName or expectedIPs is required",
            );
        } else if !self.interface_name.is_empty() {
            errs.check(
                "spec.interfaceName",
                names::interface_name(&self.interface_name),
            );
        }
        errs.names("spec.profiles", &self.profiles);
        validate_ports(&self.ports, false, errs);
    }
}

resource!(
    /// A host interface (or all of them) that policy applies to.
    HostEndpoint,
    HostEndpointSpec
);

/// A 1:1 NAT from an external address to one of the workload's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpNat {
    #[serde(rename = "internalIP")]
    pub internal_ip: IpAddr,
    #[serde(rename = "externalIP")]
    pub external_ip: IpAddr,
}

/// `spec` of a [`WorkloadEndpoint`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub orchestrator: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    #[serde(default)]
    pub node: String,
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "String::is_empty"
    )]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
    /// The workload's addresses, each a host route (`/32`, `/128`).
    #[serde(default, rename = "ipNetworks", skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<Cidr>,
    #[serde(default, rename = "ipNATs", skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IpNat>,
    #[serde(
        default,
        rename = "ipv4Gateway",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_gateway: Option<IpAddr>,
    #[serde(
        default,
        rename = "ipv6Gateway",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// The host side of the workload's veth, e.g. `cali0123456789a`.
    #[serde(default)]
    pub interface_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<Cidr>,
    /// Bandwidth limits (Calico 3.30's `qosControls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_controls: Option<super::qos::QosControls>,
}

impl Spec for WorkloadEndpointSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut Errors) {
        validate_node(&self.node, errs);
        if let Some(q) = &self.qos_controls {
            q.validate("spec.qosControls", errs);
        }
        errs.check(
            "spec.interfaceName",
            names::interface_name(&self.interface_name),
        );
        if self.interface_name == "*" {
            errs.add(
                "spec.interfaceName",
                "a workload endpoint needs one interface, not \"*\"",
            );
        }
        errs.networks("spec.ipNetworks", &self.ip_networks, None);
        for (i, nat) in self.ip_nats.iter().enumerate() {
            if !self
                .ip_networks
                .iter()
                .any(|n| n.0.contains(&nat.internal_ip))
            {
                errs.add(
                    format!("spec.ipNATs[{i}].internalIP"),
                    format!(
                        "{} is not one of the endpoint's ipNetworks",
                        nat.internal_ip
                    ),
                );
            }
        }
        for (field, gw, v4) in [
            ("ipv4Gateway", self.ipv4_gateway, true),
            ("ipv6Gateway", self.ipv6_gateway, false),
        ] {
            if gw.is_some_and(|ip| ip.is_ipv4() != v4) {
                errs.add(
                    format!("spec.{field}"),
                    format!("is not an IPv{} address", if v4 { 4 } else { 6 }),
                );
            }
        }
        errs.names("spec.profiles", &self.profiles);
        if let Some(mac) = &self.mac {
            errs.check("spec.mac", validate::mac(mac));
        }
        validate_ports(&self.ports, true, errs);
        errs.networks(
            "spec.allowSpoofedSourcePrefixes",
            &self.allow_spoofed_source_prefixes,
            None,
        );
    }
}

resource!(
    /// A workload's (container's) network interface.
    WorkloadEndpoint,
    WorkloadEndpointSpec
);
