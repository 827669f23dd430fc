//! BGP resources: [`BGPConfiguration`] (cluster-wide or per-node settings), [`BGPPeer`]
//! (explicit sessions) and [`BGPFilter`] (import/export route filters).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::{
    meta::ObjectMeta,
    types::{AsNumber, Cidr, GoDuration},
    validate::{Errors, at, names},
};

use super::Spec;

/// The cluster-wide BGPConfiguration's name; others are per-node (`node.<name>`).
pub const DEFAULT_BGP_CONFIGURATION: &str = "default";

/// Calico's default BGP port.
pub const DEFAULT_LISTEN_PORT: u16 = 179;

/// A log level as Calico spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LogSeverity {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
}

/// A service CIDR to advertise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCidr {
    pub cidr: Cidr,
}

/// A named BGP community value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Community {
    pub name: String,
    /// `"aa:nn"` (standard) or `"aa:nn:mm"` (large).
    pub value: String,
}

/// Communities to attach when advertising a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixAdvertisement {
    pub cidr: Cidr,
    /// Community names defined in `communities`, or literal values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

/// A BGP password, read from a Kubernetes secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPassword {
    pub secret_key_ref: SecretKeyRef,
}

/// A key within a named secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

impl BgpPassword {
    fn validate(&self, path: &str, errs: &mut Errors) {
        let r = &self.secret_key_ref;
        errs.check(
            format!("{path}.secretKeyRef.name"),
            names::dns1123_subdomain(&r.name),
        );
        if r.key.is_empty() {
            errs.add(format!("{path}.secretKeyRef.key"), "is required");
        }
    }
}

/// Checks a community literal: `aa:nn` with 16-bit parts or `aa:nn:mm` with 32-bit parts.
pub fn parse_community(value: &str) -> Result<Vec<u32>, String> {
    let parts: Vec<&str> = value.split(':').collect();
    let limit = match parts.len() {
        2 => u64::from(u16::MAX),
        3 => u64::from(u32::MAX),
        _ => {
            return Err(format!(
                "{value:?} is not a community \"aa:nn\" or large community \"aa:nn:mm\""
            ));
        }
    };
    parts
        .iter()
        .map(|p| match p.parse::<u64>() {
            Ok(n) if n <= limit => Ok(n as u32),
            _ => Err(format!("{value:?}: {p:?} is not a number 0-{limit}")),
        })
        .collect()
}

/// `spec` of a [`BGPConfiguration`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<LogSeverity>,
    /// Defaults to true on the `default` configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// Defaults to 64512 on the `default` configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// Defaults to 179.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<ServiceCidr>,
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<ServiceCidr>,
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<ServiceCidr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BgpPassword>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
}

impl BGPConfigurationSpec {
    /// The cluster AS: as given, else 64512.
    pub fn as_number(&self) -> AsNumber {
        self.as_number.unwrap_or(AsNumber::DEFAULT)
    }

    /// Whether the node-to-node mesh is on: as given, else true.
    pub fn node_to_node_mesh_enabled(&self) -> bool {
        self.node_to_node_mesh_enabled.unwrap_or(true)
    }

    /// The BGP port: as given, else 179.
    pub fn listen_port(&self) -> u16 {
        self.listen_port.unwrap_or(DEFAULT_LISTEN_PORT)
    }
}

impl Spec for BGPConfigurationSpec {
    fn apply_defaults(&mut self, meta: &ObjectMeta) {
        if meta.name == DEFAULT_BGP_CONFIGURATION {
            self.as_number = Some(self.as_number());
            self.node_to_node_mesh_enabled = Some(self.node_to_node_mesh_enabled());
        }
        self.listen_port = Some(self.listen_port());
    }

    fn validate(&self, meta: &ObjectMeta, errs: &mut Errors) {
        if meta.name != DEFAULT_BGP_CONFIGURATION {
            for (field, set) in [
                ("asNumber", self.as_number.is_some()),
                (
                    "nodeToNodeMeshEnabled",
                    self.node_to_node_mesh_enabled.is_some(),
                ),
            ] {
                if set {
                    errs.add(
                        format!("spec.{field}"),
                        "is only valid on the BGPConfiguration named \"default\"",
                    );
                }
            }
        }
        if self.listen_port == Some(0) {
            errs.add("spec.listenPort", "port 0 is not valid (1-65535)");
        }
        for (field, list) in [
            ("serviceClusterIPs", &self.service_cluster_ips),
            ("serviceExternalIPs", &self.service_external_ips),
            ("serviceLoadBalancerIPs", &self.service_load_balancer_ips),
        ] {
            for (i, s) in list.iter().enumerate() {
                errs.check(format!("spec.{field}[{i}].cidr"), s.cidr.check_network());
            }
        }
        for (i, c) in self.communities.iter().enumerate() {
            let path = format!("spec.communities[{i}]");
            errs.check(at(&path, "name"), names::dns1123_label(&c.name));
            errs.check(at(&path, "value"), parse_community(&c.value).map(drop));
        }
        for (i, adv) in self.prefix_advertisements.iter().enumerate() {
            let path = format!("spec.prefixAdvertisements[{i}]");
            errs.check(at(&path, "cidr"), adv.cidr.check_network());
            for (j, c) in adv.communities.iter().enumerate() {
                if !self.communities.iter().any(|d| d.name == *c) && parse_community(c).is_err() {
                    errs.add(
                        format!("{path}.communities[{j}]"),
                        format!("{c:?} is neither a community defined in spec.communities nor a community value"),
                    );
                }
            }
        }
        if let Some(p) = &self.node_mesh_password {
            p.validate("spec.nodeMeshPassword", errs);
        }
        for (i, name) in self.ignored_interfaces.iter().enumerate() {
            errs.check(
                format!("spec.ignoredInterfaces[{i}]"),
                names::interface_name(name),
            );
        }
    }
}

resource!(
    /// BGP settings: cluster-wide (`default`) or for one node (`node.<name>`).
    BGPConfiguration,
    BGPConfigurationSpec
);

/// The source address a peering uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceAddress {
    #[serde(rename = "UseNodeIP")]
    UseNodeIp,
    None,
}

/// `spec` of a [`BGPPeer`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPeerSpec {
    /// The one node that peers; empty with no `nodeSelector` means every node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The peer's address: `"10.0.0.1"`, `"10.0.0.1:1179"` or `"[fd00::1]:1179"`.
    #[serde(default, rename = "peerIP", skip_serializing_if = "String::is_empty")]
    pub peer_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    /// Peer with the nodes this selects instead of `peerIP`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BgpPassword>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_original_next_hop: bool,
    /// Graceful-restart time the peer is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<GoDuration>,
    /// Names of [`BGPFilter`]s, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    #[serde(
        default,
        rename = "numAllowedLocalASNumbers",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<u32>,
    /// GTSM (RFC 5082): how many hops away the peer may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<u8>,
    /// The AS this node presents to this peer instead of its own (3.31).
    #[serde(
        default,
        rename = "localASNumber",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<AsNumber>,
    /// Which next hop routes sent to the peer carry (3.31); supersedes
    /// `keepOriginalNextHop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<NextHopMode>,
}

/// `nextHopMode` of a BGPPeer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NextHopMode {
    /// Ours toward eBGP peers, kept toward iBGP peers (BIRD's default).
    Auto,
    /// Always ours.
    #[serde(rename = "Self")]
    NextHopSelf,
    /// Always the original.
    Keep,
}

/// Parses a `peerIP`: an address with an optional port.
pub fn parse_peer_ip(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    s.parse::<IpAddr>()
        .map(|ip| (ip, None))
        .or_else(|_| s.parse::<SocketAddr>().map(|sa| (sa.ip(), Some(sa.port()))))
        .map_err(|_| format!("{s:?} is not an IP address, \"ip:port\" or \"[ipv6]:port\""))
}

impl BGPPeerSpec {
    /// The peer's address and port (179 unless given), when `peerIP` is set and valid.
    pub fn peer_address(&self) -> Option<SocketAddr> {
        parse_peer_ip(&self.peer_ip)
            .ok()
            .map(|(ip, port)| SocketAddr::new(ip, port.unwrap_or(DEFAULT_LISTEN_PORT)))
    }
}

impl Spec for BGPPeerSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut Errors) {
        if !self.node.is_empty() {
            errs.check("spec.node", names::dns1123_subdomain(&self.node));
            if !self.node_selector.is_empty() {
                errs.add(
                    "spec.nodeSelector",
                    "node and nodeSelector cannot both be set",
                );
            }
        }
        errs.selector("spec.nodeSelector", &self.node_selector);
        errs.selector("spec.peerSelector", &self.peer_selector);
        match (self.peer_ip.is_empty(), self.peer_selector.is_empty()) {
            (true, true) => errs.add("spec.peerIP", "either peerIP or peerSelector is required"),
            (false, false) => errs.add(
                "spec.peerSelector",
                "peerIP and peerSelector cannot both be set",
            ),
            (false, true) => {
                errs.check("spec.peerIP", parse_peer_ip(&self.peer_ip).map(drop));
                if self.as_number.is_none() {
                    errs.add("spec.asNumber", "is required when peerIP is set");
                }
            }
            (true, false) => {}
        }
        if let Some(p) = &self.password {
            p.validate("spec.password", errs);
        }
        errs.names("spec.filters", &self.filters);
        if self.ttl_security == Some(0) {
            errs.add("spec.ttlSecurity", "must be 1-255 hops");
        }
        if self.keep_original_next_hop && self.next_hop_mode.is_some_and(|m| m != NextHopMode::Keep)
        {
            errs.add(
                "spec.nextHopMode",
                "contradicts keepOriginalNextHop: true (set only nextHopMode: Keep)",
            );
        }
        if let Some(d) = self.keepalive_time
            && d.0.as_secs() == 0
        {
            errs.add("spec.keepaliveTime", "must be at least 1s");
        }
    }
}

resource!(
    /// An explicit BGP peering, from some or all nodes to an address or to selected nodes.
    BGPPeer,
    BGPPeerSpec
);

/// What a filter rule does with a matching route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FilterAction {
    Accept,
    Reject,
}

/// How a filter rule compares a route's prefix with its `cidr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchOperator {
    Equal,
    NotEqual,
    In,
    NotIn,
}

/// Where a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RouteSource {
    RemotePeers,
}

/// Bounds on a route's prefix length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u8>,
}

/// One filter rule; the first that matches decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterRule {
    pub action: FilterAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_operator: Option<MatchOperator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Cidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RouteSource>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    /// Only routes to or from peers of this type (3.32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<PeerType>,
    /// Only routes carrying this community (3.32; one value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<CommunityMatch>,
    /// Only routes whose AS path begins with these ASes (3.32).
    #[serde(
        default,
        rename = "asPathPrefix",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub as_path_prefix: Vec<AsNumber>,
    /// Only routes of this kernel priority (3.32); not supported here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u64>,
    /// Changes made to an accepted route, in order (3.32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<FilterOperation>,
}

/// `peerType` of a filter rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerType {
    #[serde(rename = "eBGP")]
    Ebgp,
    #[serde(rename = "iBGP")]
    Ibgp,
}

/// `communities` of a filter rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunityMatch {
    pub values: Vec<String>,
}

/// One entry of a filter rule's `operations`: exactly one is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterOperation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_community: Option<AddCommunity>,
    #[serde(
        default,
        rename = "prependASPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub prepend_as_path: Option<PrependAsPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_priority: Option<SetPriority>,
}

/// `addCommunity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddCommunity {
    pub value: String,
}

/// `prependASPath`: the path starts with `prefix`, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrependAsPath {
    pub prefix: Vec<AsNumber>,
}

/// `setPriority`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPriority {
    pub value: u64,
}

/// Why route priorities are refused (a filter rule's `priority` and
/// `setPriority`).
const NO_PRIORITY: &str = "not supported: the BGP speaker installs routes without a kernel \
     priority, so it can neither match nor set one";

impl BGPFilterRule {
    /// Validates the 3.32 matches and operations.
    fn validate_newer(&self, path: &str, errs: &mut Errors) {
        if let Some(c) = &self.communities {
            let at_values = at(&at(path, "communities"), "values");
            match c.values.as_slice() {
                [one] => errs.check(format!("{at_values}[0]"), parse_community(one).map(drop)),
                _ => errs.add(
                    at_values,
                    format!("must hold exactly one community, not {}", c.values.len()),
                ),
            }
        }
        if self.priority.is_some() {
            errs.add(at(path, "priority"), NO_PRIORITY);
        }
        if !self.operations.is_empty() && self.action != FilterAction::Accept {
            errs.add(
                at(path, "operations"),
                "may only be used with action Accept",
            );
        }
        if self.operations.len() > 10 {
            errs.add(at(path, "operations"), "at most 10 operations");
        }
        for (i, op) in self.operations.iter().enumerate() {
            let path = format!("{path}.operations[{i}]");
            let set = [
                op.add_community.is_some(),
                op.prepend_as_path.is_some(),
                op.set_priority.is_some(),
            ]
            .iter()
            .filter(|s| **s)
            .count();
            if set != 1 {
                errs.add(
                    &path,
                    format!(
                        "exactly one of addCommunity, prependASPath, setPriority must be set, not {set}"
                    ),
                );
            }
            if let Some(a) = &op.add_community {
                errs.check(
                    at(&at(&path, "addCommunity"), "value"),
                    parse_community(&a.value).map(drop),
                );
            }
            if let Some(p) = &op.prepend_as_path
                && !(1..=10).contains(&p.prefix.len())
            {
                errs.add(
                    at(&at(&path, "prependASPath"), "prefix"),
                    format!("must hold 1 to 10 AS numbers, not {}", p.prefix.len()),
                );
            }
            if op.set_priority.is_some() {
                errs.add(at(&path, "setPriority"), NO_PRIORITY);
            }
        }
    }

    fn validate(&self, path: &str, family: u8, errs: &mut Errors) {
        self.validate_newer(path, errs);
        match (self.cidr, self.match_operator) {
            (Some(cidr), Some(_)) if cidr.family() != family => {
                errs.add(
                    at(path, "cidr"),
                    format!("{cidr} is not an IPv{family} network"),
                );
            }
            (Some(cidr), Some(_)) => errs.check(at(path, "cidr"), cidr.check_network()),
            (Some(_), None) => errs.add(at(path, "matchOperator"), "is required with cidr"),
            (None, Some(_)) => errs.add(at(path, "cidr"), "is required with matchOperator"),
            (None, None) => {}
        }
        if let Some(len) = self.prefix_length {
            let path = at(path, "prefixLength");
            let max_len = if family == 4 { 32 } else { 128 };
            let floor = self.cidr.map_or(0, |c| c.0.prefix_len());
            for (field, v) in [("min", len.min), ("max", len.max)] {
                match v {
                    Some(v) if v > max_len => {
                        errs.add(at(&path, field), format!("{v} exceeds /{max_len}"))
                    }
                    Some(v) if v < floor => errs.add(
                        at(&path, field),
                        format!("{v} is shorter than the cidr's /{floor}"),
                    ),
                    _ => {}
                }
            }
            if let (Some(min), Some(max)) = (len.min, len.max)
                && min > max
            {
                errs.add(path, format!("min {min} is greater than max {max}"));
            }
        }
        if !self.interface.is_empty() {
            errs.check(
                at(path, "interface"),
                names::interface_name(&self.interface),
            );
        }
    }
}

/// `spec` of a [`BGPFilter`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPFilterSpec {
    #[serde(default, rename = "exportV4", skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV4", skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "exportV6", skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV6", skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BGPFilterRule>,
}

impl Spec for BGPFilterSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut Errors) {
        for (field, rules, family) in [
            ("exportV4", &self.export_v4, 4),
            ("importV4", &self.import_v4, 4),
            ("exportV6", &self.export_v6, 6),
            ("importV6", &self.import_v6, 6),
        ] {
            for (i, rule) in rules.iter().enumerate() {
                rule.validate(&format!("spec.{field}[{i}]"), family, errs);
            }
        }
    }
}

resource!(
    /// Import and export route filters that BGPPeers name.
    BGPFilter,
    BGPFilterSpec
);
