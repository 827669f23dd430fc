//! [`IPAMConfiguration`]: cluster-wide IPAM settings (the one resource named `default`).

use serde::{Deserialize, Serialize};

use crate::{meta::ObjectMeta, validate::Errors};

use super::{Spec, is_zero};

fn default_max_blocks_per_host() -> u32 {
    20
}

fn yes() -> bool {
    true
}

/// `spec` of an [`IPAMConfiguration`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPAMConfigurationSpec {
    /// Hosts may only assign from blocks they have an affinity to (no borrowing).
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default = "default_max_blocks_per_host")]
    pub max_blocks_per_host: u32,
    #[serde(default = "yes")]
    pub auto_allocate_blocks: bool,
    /// How long a released address is held back before it is handed out
    /// again (Calico 3.33's `minIPReclaimAgeSeconds`); 0: at once (still
    /// last, as released addresses go to the back of the free list).
    #[serde(
        default,
        rename = "minIPReclaimAgeSeconds",
        skip_serializing_if = "is_zero"
    )]
    pub min_ip_reclaim_age_seconds: u64,
}

impl Default for IPAMConfigurationSpec {
    fn default() -> Self {
        Self {
            strict_affinity: false,
            max_blocks_per_host: default_max_blocks_per_host(),
            auto_allocate_blocks: true,
            min_ip_reclaim_age_seconds: 0,
        }
    }
}

impl Spec for IPAMConfigurationSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut Errors) {
        if !meta.name.is_empty() && meta.name != "default" {
            errs.add(
                "metadata.name",
                format!(
                    "the IPAMConfiguration must be named \"default\", not {:?}",
                    meta.name
                ),
            );
        }
        if self.max_blocks_per_host == 0 {
            errs.add("spec.maxBlocksPerHost", "must be at least 1");
        }
        // A day at most: an address held back longer looks leaked.
        if self.min_ip_reclaim_age_seconds > 86_400 {
            errs.add(
                "spec.minIPReclaimAgeSeconds",
                format!(
                    "{} is more than a day (86400)",
                    self.min_ip_reclaim_age_seconds
                ),
            );
        }
    }
}

resource!(
    /// Cluster-wide IPAM settings.
    IPAMConfiguration,
    IPAMConfigurationSpec
);
