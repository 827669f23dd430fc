//! [`ClusterInformation`]: the cluster's identity and readiness, Calico's
//! resource of that name (the one named `default`). `datastoreReady: false`
//! is the migration lock `calicoctl datastore migrate lock` sets: while it
//! holds, felix writes nothing to the datastore and the CNI plugin refuses
//! to add or delete workloads, so the store stays still while it is copied.

use serde::{Deserialize, Serialize};

use super::Spec;
use crate::{meta::ObjectMeta, validate::Errors};

/// The one name a ClusterInformation may have.
pub const CLUSTER_INFORMATION_NAME: &str = "default";

/// `spec` of a [`ClusterInformation`] (Calico's fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterInformationSpec {
    /// The cluster's unique id, set once when the store is initialised.
    #[serde(
        default,
        rename = "clusterGUID",
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_guid: String,
    /// Comma-separated tags naming how the cluster was installed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_type: String,
    /// The version of the software that last initialised the store.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub calico_version: String,
    /// False while the store is locked for a migration; absent means ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_ready: Option<bool>,
    /// The product variant (Calico's is `Calico`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl ClusterInformationSpec {
    /// Whether the store is ready for writes (not locked for a migration).
    pub fn ready(&self) -> bool {
        self.datastore_ready.unwrap_or(true)
    }
}

impl Spec for ClusterInformationSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut Errors) {
        if !meta.name.is_empty() && meta.name != CLUSTER_INFORMATION_NAME {
            errs.add(
                "metadata.name",
                format!(
                    "the ClusterInformation must be named {CLUSTER_INFORMATION_NAME:?}, not {:?}",
                    meta.name
                ),
            );
        }
    }
}

resource!(
    /// The cluster's identity and whether its store is locked for a migration.
    ClusterInformation,
    ClusterInformationSpec
);
