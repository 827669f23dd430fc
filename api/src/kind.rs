//! [`Kind`]: every resource kind the model knows, with its API group, etcd plural and
//! the names `calicoctl` accepts for it. The kinds are listed once, in `with_kinds!`,
//! which generates both [`Kind`] and [`Resource`](crate::Resource).

use std::fmt;

/// The Calico API group and version.
pub const CALICO_API_VERSION: &str = "projectcalico.org/v3";
/// The Kubernetes networking API group and version.
pub const K8S_NETWORKING_API_VERSION: &str = "networking.k8s.io/v1";

/// The table of every resource kind, one line each, handed to `$callback`: it
/// generates [`Kind`] (here) and [`Resource`](crate::Resource) (in `resource`),
/// so adding a kind is adding its line (and its type).
///
/// Each line: the variant, which is also the resource type's name; the module
/// of [`resources`](crate::resources) defining the type; `namespaced` or
/// `cluster`; then `[kind, plural, short forms...]`, the names `calicoctl`
/// accepts (the plural is also the datastore key's).
macro_rules! with_kinds {
    ($callback:ident) => {
        $callback! {
            IPPool: ippool, cluster, ["IPPool", "ippools", "ipp", "ipps", "pool", "pools"];
            IPReservation: ippool, cluster, ["IPReservation", "ipreservations", "ipr", "iprs"];
            IPAMConfiguration: ipam, cluster,
                ["IPAMConfiguration", "ipamconfigurations", "ipamconfig", "ipamconfigs"];
            Node: node, cluster, ["Node", "nodes", "no", "nos"];
            BGPConfiguration: bgp, cluster,
                ["BGPConfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs"];
            BGPPeer: bgp, cluster, ["BGPPeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"];
            BGPFilter: bgp, cluster, ["BGPFilter", "bgpfilters"];
            Tier: policy, cluster, ["Tier", "tiers"];
            NetworkPolicy: policy, namespaced,
                ["NetworkPolicy", "networkpolicies", "policy", "policies", "np", "nps", "pol", "pols"];
            GlobalNetworkPolicy: policy, cluster,
                ["GlobalNetworkPolicy", "globalnetworkpolicies", "gnp", "gnps"];
            NetworkSet: networkset, namespaced, ["NetworkSet", "networksets", "netset", "netsets"];
            GlobalNetworkSet: networkset, cluster,
                ["GlobalNetworkSet", "globalnetworksets", "gns", "gnss"];
            Profile: policy, cluster, ["Profile", "profiles", "pro", "pros"];
            HostEndpoint: endpoints, cluster, ["HostEndpoint", "hostendpoints", "hep", "heps"];
            WorkloadEndpoint: endpoints, namespaced,
                ["WorkloadEndpoint", "workloadendpoints", "wep", "weps"];
            FelixConfiguration: felix, cluster,
                ["FelixConfiguration", "felixconfigurations", "felixconfig", "felixconfigs"];
            /// kube-controllers' settings (stored and validated only).
            KubeControllersConfiguration: kubecontrollers, cluster,
                ["KubeControllersConfiguration", "kubecontrollersconfigurations",
                 "kubecontrollersconfig", "kubecontrollersconfigs"];
            /// The cluster's identity and its migration lock (`datastoreReady`).
            ClusterInformation: clusterinfo, cluster,
                ["ClusterInformation", "clusterinformations", "clusterinfo", "clusterinfos"];
            /// A node's status as its felix reports it (BGP sessions).
            CalicoNodeStatus: status, cluster,
                ["CalicoNodeStatus", "caliconodestatuses", "caliconodestatus"];
            /// `networking.k8s.io/v1` NetworkPolicy.
            KubernetesNetworkPolicy: k8s, namespaced,
                ["KubernetesNetworkPolicy", "kubernetesnetworkpolicies", "knp", "knps"];
            /// A NetworkPolicy staged, not enforced.
            StagedNetworkPolicy: staged, namespaced,
                ["StagedNetworkPolicy", "stagednetworkpolicies", "stagedpolicy", "stagedpolicies",
                 "snp", "spol", "spols"];
            /// A GlobalNetworkPolicy staged, not enforced.
            StagedGlobalNetworkPolicy: staged, cluster,
                ["StagedGlobalNetworkPolicy", "stagedglobalnetworkpolicies", "sgnp", "sgnps"];
            /// A Kubernetes NetworkPolicy staged, not enforced (a Calico kind).
            StagedKubernetesNetworkPolicy: staged, namespaced,
                ["StagedKubernetesNetworkPolicy", "stagedkubernetesnetworkpolicies",
                 "stagedkubernetespolicy", "stagedkubernetespolicies", "sknp", "skpol", "skpols"];
        }
    };
}
pub(crate) use with_kinds;

/// Generates [`Kind`] and the parts of it the table decides.
macro_rules! kind_enum {
    ($(
        $(#[$doc:meta])*
        $kind:ident: $module:ident, $scope:ident, [$($name:literal),+ $(,)?];
    )*) => {
        /// A resource kind.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind {
            $($(#[$doc])* $kind,)*
        }

        impl Kind {
            /// Every kind, in a stable order.
            pub const ALL: &'static [Kind] = &[$(Kind::$kind),*];

            /// Whether resources of this kind live in a namespace.
            pub fn namespaced(self) -> bool {
                match self {
                    $(Kind::$kind => kind_enum!(@namespaced $scope),)*
                }
            }

            /// `[kind, plural, short forms...]`.
            fn names(self) -> &'static [&'static str] {
                match self {
                    $(Kind::$kind => &[$($name),+],)*
                }
            }
        }
    };
    (@namespaced namespaced) => { true };
    (@namespaced cluster) => { false };
}

with_kinds!(kind_enum);

impl Kind {
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

    /// The enforced kind a staged kind stages (`StagedNetworkPolicy` →
    /// `NetworkPolicy`, ...); `None` for kinds that are not staged ones.
    pub fn enforced(self) -> Option<Kind> {
        match self {
            Kind::StagedNetworkPolicy => Some(Kind::NetworkPolicy),
            Kind::StagedGlobalNetworkPolicy => Some(Kind::GlobalNetworkPolicy),
            Kind::StagedKubernetesNetworkPolicy => Some(Kind::KubernetesNetworkPolicy),
            _ => None,
        }
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
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
