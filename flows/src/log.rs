//! [`FlowLog`]: what the dataplane reports about one connection over a span
//! of time, the aggregator's input. felix fills it from NFLOG (the rule that
//! decided a new connection) and conntrack (its counters); a test fills it
//! by hand. Plain data: no protobuf types, no I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// One connection, as seen by one end of it (the [`Reporter`]), over
/// `[start, end)` (seconds since the Unix epoch).
///
/// The aggregator sums it into the bucket that holds `start`, so a long
/// connection is best reported once per interval, each report with the
/// counters of its own span (deltas), `connections_live` 1 while it is open
/// and `connections_completed` 1 in the report where it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowLog {
    pub tuple: FiveTuple,
    pub source: Endpoint,
    pub dest: Endpoint,
    /// The service the destination was reached through, if any.
    pub dest_service: Option<Service>,
    pub reporter: Reporter,
    /// What the enforced policy did: [`Action::Allow`] or [`Action::Deny`].
    pub action: Action,
    pub policies: PolicyTrace,
    pub counters: Counters,
    /// Seconds since the Unix epoch.
    pub start: i64,
    /// Seconds since the Unix epoch, at least `start`.
    pub end: i64,
}

/// Addresses, ports and IP protocol. The aggregator keys flows by the
/// destination port and the protocol only (as Goldmane does); addresses
/// and the source port are for whoever reads the log itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub source: IpAddr,
    pub dest: IpAddr,
    /// IP protocol number: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP.
    pub protocol: u8,
    /// 0 for protocols without ports.
    pub source_port: u16,
    /// 0 for protocols without ports.
    pub dest_port: u16,
}

impl FiveTuple {
    /// The IP family, that of the source address.
    pub fn family(&self) -> IpFamily {
        match self.source {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

/// One end of a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub kind: EndpointKind,
    /// The workload's namespace; empty for host endpoints, global network
    /// sets and networks.
    pub namespace: String,
    /// For a workload its aggregated name (Calico's: the pod's generate-name
    /// followed by `*`, else its name); a host endpoint's or network set's
    /// name; [`PUBLIC_NETWORK`] or [`PRIVATE_NETWORK`] for a network.
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// The name of a [`EndpointKind::Network`] endpoint outside the private
/// ranges, as Goldmane names it.
pub const PUBLIC_NETWORK: &str = "pub";
/// The name of a [`EndpointKind::Network`] endpoint in a private range
/// (RFC 1918, ULA, …), as Goldmane names it.
pub const PRIVATE_NETWORK: &str = "pvt";

impl Endpoint {
    pub fn workload(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Endpoint {
        Endpoint::with(EndpointKind::Workload, namespace, name, labels)
    }

    pub fn host_endpoint(name: &str, labels: &[(&str, &str)]) -> Endpoint {
        Endpoint::with(EndpointKind::HostEndpoint, "", name, labels)
    }

    /// A NetworkSet (with its namespace) or GlobalNetworkSet (namespace "").
    pub fn network_set(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Endpoint {
        Endpoint::with(EndpointKind::NetworkSet, namespace, name, labels)
    }

    /// An address no endpoint or network set covers: [`PUBLIC_NETWORK`]
    /// unless `private`.
    pub fn network(private: bool) -> Endpoint {
        let name = if private {
            PRIVATE_NETWORK
        } else {
            PUBLIC_NETWORK
        };
        Endpoint::with(EndpointKind::Network, "", name, &[])
    }

    fn with(kind: EndpointKind, namespace: &str, name: &str, labels: &[(&str, &str)]) -> Endpoint {
        Endpoint {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointKind {
    #[default]
    Workload,
    HostEndpoint,
    NetworkSet,
    Network,
}

/// A Kubernetes-style service in front of the destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    pub port: u16,
}

/// Which end recorded the connection: the source's egress or the
/// destination's ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reporter {
    Src,
    Dst,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Deny,
    /// Only in a [`PolicyHit`]: the policy passed to the next tier.
    Pass,
}

/// The policy rules on the connection's path, in the order they were met,
/// as Goldmane's `PolicyTrace`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyTrace {
    /// What the dataplane enforced.
    pub enforced: Vec<PolicyHit>,
    /// What would decide with staged policies enforced (and staged deletes
    /// applied).
    pub pending: Vec<PolicyHit>,
}

/// One rule, or a tier's or profile's default, that acted on a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyHit {
    pub kind: PolicyKind,
    /// Empty for cluster-wide kinds.
    pub namespace: String,
    pub name: String,
    pub tier: String,
    pub action: Action,
    /// Position among the policies met, 0 first.
    pub policy_index: i64,
    /// Position of the rule in its policy, 0 first; -1 for a default.
    pub rule_index: i64,
    /// For [`PolicyKind::EndOfTier`]: the first policy of the tier that
    /// selected the endpoint.
    pub trigger: Option<Box<PolicyHit>>,
}

/// The kind of resource a [`PolicyHit`] comes from, as Goldmane's
/// `PolicyKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// projectcalico.org/v3 NetworkPolicy.
    CalicoNetworkPolicy,
    GlobalNetworkPolicy,
    StagedNetworkPolicy,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    /// networking.k8s.io NetworkPolicy.
    NetworkPolicy,
    ClusterNetworkPolicy,
    Profile,
    /// A tier's default action.
    EndOfTier,
}

/// Counters of a connection over the log's span, seen from the reporting
/// endpoint ("in" is towards it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_started: u64,
    pub connections_completed: u64,
    pub connections_live: u64,
}

impl Counters {
    /// Adds `other`, saturating.
    pub fn add(&mut self, other: &Counters) {
        self.packets_in = self.packets_in.saturating_add(other.packets_in);
        self.packets_out = self.packets_out.saturating_add(other.packets_out);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.connections_started = self
            .connections_started
            .saturating_add(other.connections_started);
        self.connections_completed = self
            .connections_completed
            .saturating_add(other.connections_completed);
        self.connections_live = self.connections_live.saturating_add(other.connections_live);
    }
}
