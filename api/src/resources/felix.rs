//! [`FelixConfiguration`]: settings for the host agent, cluster-wide (`default`) or per
//! node (`node.<name>`). Models the settings this project's felix reads; others are
//! rejected as unknown rather than silently ignored.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{
    meta::ObjectMeta,
    types::{Cidr, GoDuration, Protocol},
    validate::{Errors, at, names},
};

use super::{Spec, bgp::LogSeverity};

/// What happens to traffic from a workload to its own host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EndpointToHostAction {
    Drop,
    Accept,
    Return,
}

/// Whether a feature is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Toggle {
    Enabled,
    Disabled,
}

/// Whether felix uses nftables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NftablesMode {
    Enabled,
    Disabled,
    Auto,
}

/// Which destinations traffic from a `natOutgoing` pool keeps its source
/// address for (Calico 3.30's `natOutgoingExclusions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NatOutgoingExclusions {
    /// Every IP pool (Calico's default).
    #[default]
    IPPoolsOnly,
    /// Every IP pool and every host's addresses.
    IPPoolsAndHostIPs,
}

/// A protocol and port always let through, so the host stays reachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtoPort {
    pub protocol: Protocol,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<Cidr>,
}

/// A range of kernel routing table indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTableRange {
    pub min: u32,
    pub max: u32,
}

/// `spec` of a [`FelixConfiguration`]. Every field is optional; felix has its own defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FelixConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<LogSeverity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_file: Option<LogSeverity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_refresh_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_refresh_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_mode: Option<NftablesMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_enabled: Option<bool>,
    #[serde(default, rename = "ipipMTU", skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_enabled: Option<bool>,
    #[serde(default, rename = "vxlanMTU", skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<u32>,
    #[serde(
        default,
        rename = "vxlanMTUV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_mtu_v6: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<u16>,
    #[serde(default, rename = "vxlanVNI", skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_support: Option<bool>,
    #[serde(
        default,
        rename = "bpfEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_to_host_action: Option<EndpointToHostAction>,
    /// Comma-separated prefixes of workload interfaces, e.g. `"cali"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu_iface_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_outbound_host_ports: Option<Vec<ProtoPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table_range: Option<RouteTableRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_route_source_address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing_address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing_exclusions: Option<NatOutgoingExclusions>,
    #[serde(
        default,
        rename = "floatingIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub floating_ips: Option<Toggle>,
}

/// Linux's minimum IPv4 MTU and the largest jumbo frame felix accepts.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 576..=9216;

impl Spec for FelixConfigurationSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut Errors) {
        if meta.name != "default" && !meta.name.starts_with("node.") {
            errs.add(
                "metadata.name",
                format!(
                    "{:?} must be \"default\" or \"node.<node name>\"",
                    meta.name
                ),
            );
        }
        for (field, mtu) in [
            ("ipipMTU", self.ipip_mtu),
            ("vxlanMTU", self.vxlan_mtu),
            ("vxlanMTUV6", self.vxlan_mtu_v6),
        ] {
            if let Some(mtu) = mtu.filter(|m| !MTU_RANGE.contains(m)) {
                errs.add(
                    format!("spec.{field}"),
                    format!("MTU {mtu} is out of range 576-9216"),
                );
            }
        }
        if let Some(vni) = self.vxlan_vni.filter(|v| *v == 0 || *v >= 1 << 24) {
            errs.add(
                "spec.vxlanVNI",
                format!("VNI {vni} is out of range 1-16777215"),
            );
        }
        for (field, port) in [
            ("vxlanPort", self.vxlan_port),
            ("healthPort", self.health_port),
            ("prometheusMetricsPort", self.prometheus_metrics_port),
        ] {
            if port == Some(0) {
                errs.add(format!("spec.{field}"), "port 0 is not valid (1-65535)");
            }
        }
        if let Some(prefixes) = &self.interface_prefix {
            for p in prefixes.split(',') {
                errs.check("spec.interfacePrefix", names::interface_name(p));
            }
        }
        for (field, ports) in [
            (
                "failsafeInboundHostPorts",
                &self.failsafe_inbound_host_ports,
            ),
            (
                "failsafeOutboundHostPorts",
                &self.failsafe_outbound_host_ports,
            ),
        ] {
            for (i, p) in ports.iter().flatten().enumerate() {
                let path = format!("spec.{field}[{i}]");
                if !p.protocol.has_ports() {
                    errs.add(
                        at(&path, "protocol"),
                        format!("protocol {} has no ports", p.protocol),
                    );
                }
                if let Some(net) = p.net {
                    errs.check(at(&path, "net"), net.check_network());
                }
            }
        }
        if let Some(r) = self.route_table_range
            && (r.min == 0 || r.min > r.max || r.max > 250)
        {
            errs.add(
                "spec.routeTableRange",
                format!("{}-{} is not a range within 1-250", r.min, r.max),
            );
        }
    }
}

resource!(
    /// Host agent settings.
    FelixConfiguration,
    FelixConfigurationSpec
);
