//! Address pools: [`IPPool`] (where workload addresses come from and how they are
//! encapsulated) and [`IPReservation`] (addresses IPAM must not hand out).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    meta::ObjectMeta,
    types::Cidr,
    validate::{Errors, at},
};

use super::Spec;

/// When traffic between pools' hosts is encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

/// What a pool's addresses may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

/// `spec` of an [`IPPool`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPPoolSpec {
    pub cidr: Cidr,
    /// Prefix length of the blocks handed to hosts; see [`IPPoolSpec::block_size`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(default)]
    pub ipip_mode: EncapMode,
    #[serde(default)]
    pub vxlan_mode: EncapMode,
    #[serde(default)]
    pub nat_outgoing: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(
        default,
        rename = "disableBGPExport",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_bgp_export: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    /// Which namespaces' workloads may take addresses from the pool (Calico
    /// 3.31), matched against the namespace's labels; empty: every namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<AllowedUse>,
}

impl IPPoolSpec {
    /// A pool for `cidr` with every other field at its default.
    pub fn new(cidr: Cidr) -> Self {
        let mut spec = Self {
            cidr,
            block_size: None,
            ipip_mode: EncapMode::Never,
            vxlan_mode: EncapMode::Never,
            nat_outgoing: false,
            disabled: false,
            disable_bgp_export: false,
            node_selector: String::new(),
            namespace_selector: String::new(),
            allowed_uses: Vec::new(),
        };
        spec.apply_defaults(&ObjectMeta::default());
        spec
    }

    /// Whether the pool's CIDR shares an address with `other`'s.
    pub fn overlaps(&self, other: &IPPoolSpec) -> bool {
        let (a, b) = (self.cidr.network(), other.cidr.network());
        a.contains(&b.network()) || b.contains(&a.network())
    }

    /// The block prefix length: as given, else 26 for IPv4 and 122 for IPv6.
    pub fn block_size(&self) -> u8 {
        self.block_size.unwrap_or(match self.cidr.0 {
            IpNet::V4(_) => 26,
            IpNet::V6(_) => 122,
        })
    }
}

impl Spec for IPPoolSpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        self.block_size = Some(self.block_size());
        if self.node_selector.is_empty() {
            self.node_selector = "all()".to_string();
        }
        if self.allowed_uses.is_empty() {
            self.allowed_uses = vec![AllowedUse::Workload, AllowedUse::Tunnel];
        }
    }

    fn validate(&self, _meta: &ObjectMeta, errs: &mut Errors) {
        let cidr = self.cidr;
        errs.check("spec.cidr", cidr.check_network());
        let link_local: IpNet = match cidr.0 {
            IpNet::V4(_) => "169.254.0.0/16".parse().expect("valid"),
            IpNet::V6(_) => "fe80::/10".parse().expect("valid"),
        };
        if link_local.contains(&cidr.network()) || cidr.network().contains(&link_local) {
            errs.add(
                "spec.cidr",
                format!("{cidr} overlaps the link-local range {link_local}"),
            );
        }
        let block = self.block_size();
        let (min, max) = if cidr.family() == 4 {
            (20, 32)
        } else {
            (116, 128)
        };
        if !(min..=max).contains(&block) {
            errs.add(
                "spec.blockSize",
                format!(
                    "block size {block} is out of range {min}-{max} for an IPv{} pool",
                    cidr.family()
                ),
            );
        } else if block < cidr.0.prefix_len() {
            errs.add(
                "spec.blockSize",
                format!("block size /{block} is larger than the pool {cidr}"),
            );
        }
        if cidr.family() == 6 && self.ipip_mode != EncapMode::Never {
            errs.add("spec.ipipMode", "IPIP is not supported for IPv6 pools");
        }
        if self.ipip_mode != EncapMode::Never && self.vxlan_mode != EncapMode::Never {
            errs.add(
                "spec.vxlanMode",
                "ipipMode and vxlanMode cannot both be enabled",
            );
        }
        errs.selector("spec.nodeSelector", &self.node_selector);
        if !self.namespace_selector.is_empty() {
            errs.selector("spec.namespaceSelector", &self.namespace_selector);
        }
        if self.allowed_uses.contains(&AllowedUse::LoadBalancer) && self.allowed_uses.len() > 1 {
            errs.add(
                "spec.allowedUses",
                "LoadBalancer cannot be combined with other uses",
            );
        }
    }
}

resource!(
    /// A pool of addresses for workloads, cut into blocks per host.
    IPPool,
    IPPoolSpec,
    required
);

/// `spec` of an [`IPReservation`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPReservationSpec {
    #[serde(default, rename = "reservedCIDRs")]
    pub reserved_cidrs: Vec<Cidr>,
}

impl Spec for IPReservationSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut Errors) {
        let path = at("spec", "reservedCIDRs");
        if self.reserved_cidrs.is_empty() {
            errs.add(&path, "at least one CIDR is required");
        }
        errs.networks(&path, &self.reserved_cidrs, None);
    }
}

resource!(
    /// Addresses IPAM must never assign.
    IPReservation,
    IPReservationSpec
);
