//! [`Kind`]: every resource kind the model knows, with its API group, etcd plural and
//! the names `calicoctl` accepts for it.

use std::fmt;

/// The Calico API group and version.
pub const CALICO_API_VERSION: &str = "projectcalico.org/v3";
/// The Kubernetes networking API group and version.
pub const K8S_NETWORKING_API_VERSION: &str = "networking.k8s.io/v1";

/// A resource kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    IPPool,
    IPReservation,
    IPAMConfiguration,
    Node,
    BGPConfiguration,
    BGPPeer,
    BGPFilter,
    Tier,
    NetworkPolicy,
    GlobalNetworkPolicy,
    NetworkSet,
    GlobalNetworkSet,
    Profile,
    HostEndpoint,
    WorkloadEndpoint,
    FelixConfiguration,
    /// `networking.k8s.io/v1` NetworkPolicy.
    KubernetesNetworkPolicy,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: &'static [Kind] = &[
        Kind::IPPool,
        Kind::IPReservation,
        Kind::IPAMConfiguration,
        Kind::Node,
        Kind::BGPConfiguration,
        Kind::BGPPeer,
        Kind::BGPFilter,
        Kind::Tier,
        Kind::NetworkPolicy,
        Kind::GlobalNetworkPolicy,
        Kind::NetworkSet,
        Kind::GlobalNetworkSet,
        Kind::Profile,
        Kind::HostEndpoint,
        Kind::WorkloadEndpoint,
        Kind::FelixConfiguration,
        Kind::KubernetesNetworkPolicy,
    ];

    /// The `kind:` field of the document, e.g. `"IPPool"`.
    pub fn name(self) -> &'static str {
        self.names()[0]
    }

    /// The `apiVersion:` field of the document.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::KubernetesNetworkPolicy => K8S_NETWORKING_API_VERSION,
            _ => CALICO_API_VERSION,
        }
    }

    /// The `kind:` field as written in documents: `"NetworkPolicy"` for
    /// [`Kind::KubernetesNetworkPolicy`], else [`Kind::name`].
    pub fn document_kind(self) -> &'static str {
        match self {
            Kind::KubernetesNetworkPolicy => "NetworkPolicy",
            _ => self.name(),
        }
    }

    /// The kind of a document with these `apiVersion` and `kind` fields.
    pub fn from_document(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.api_version() == api_version && k.document_kind() == kind)
    }

    /// The lowercase plural used in datastore keys, e.g. `"globalnetworkpolicies"`.
    pub fn plural(self) -> &'static str {
        self.names()[1]
    }

    /// Whether resources of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(
            self,
            Kind::NetworkPolicy
                | Kind::NetworkSet
                | Kind::WorkloadEndpoint
                | Kind::KubernetesNetworkPolicy
        )
    }

    /// Looks a kind up by any name `calicoctl` accepts: the kind, its plural or a short
    /// form, ignoring case. `NetworkPolicy` names the Calico kind; the Kubernetes one is
    /// `KubernetesNetworkPolicy` (or `knp`).
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.names().iter().any(|n| n.eq_ignore_ascii_case(s)))
    }

    /// `[kind, plural, short forms...]`.
    fn names(self) -> &'static [&'static str] {
        match self {
            Kind::IPPool => &["IPPool", "ippools", "ipp", "ipps", "pool", "pools"],
            Kind::IPReservation => &["IPReservation", "ipreservations", "ipr", "iprs"],
            Kind::IPAMConfiguration => &[
                "IPAMConfiguration",
                "ipamconfigurations",
                "ipamconfig",
                "ipamconfigs",
            ],
            Kind::Node => &["Node", "nodes", "no", "nos"],
            Kind::BGPConfiguration => &[
                "BGPConfiguration",
                "bgpconfigurations",
                "bgpconfig",
                "bgpconfigs",
            ],
            Kind::BGPPeer => &["BGPPeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"],
            Kind::BGPFilter => &["BGPFilter", "bgpfilters"],
            Kind::Tier => &["Tier", "tiers"],
            Kind::NetworkPolicy => &[
                "NetworkPolicy",
                "networkpolicies",
                "policy",
                "policies",
                "np",
                "nps",
                "pol",
                "pols",
            ],
            Kind::GlobalNetworkPolicy => &[
                "GlobalNetworkPolicy",
                "globalnetworkpolicies",
                "gnp",
                "gnps",
            ],
            Kind::NetworkSet => &["NetworkSet", "networksets", "netset", "netsets"],
            Kind::GlobalNetworkSet => &["GlobalNetworkSet", "globalnetworksets", "gns", "gnss"],
            Kind::Profile => &["Profile", "profiles", "pro", "pros"],
            Kind::HostEndpoint => &["HostEndpoint", "hostendpoints", "hep", "heps"],
            Kind::WorkloadEndpoint => &["WorkloadEndpoint", "workloadendpoints", "wep", "weps"],
            Kind::FelixConfiguration => &[
                "FelixConfiguration",
                "felixconfigurations",
                "felixconfig",
                "felixconfigs",
            ],
            Kind::KubernetesNetworkPolicy => &[
                "KubernetesNetworkPolicy",
                "kubernetesnetworkpolicies",
                "knp",
                "knps",
            ],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
