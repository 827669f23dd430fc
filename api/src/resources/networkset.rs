//! Named sets of networks that policy selectors can match: [`NetworkSet`]
//! (namespaced) and [`GlobalNetworkSet`].

use serde::{Deserialize, Serialize};

use crate::{meta::ObjectMeta, types::Cidr, validate::Errors};

use super::Spec;

/// `spec` of a [`NetworkSet`] or [`GlobalNetworkSet`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSetSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<Cidr>,
}

impl Spec for NetworkSetSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut Errors) {
        errs.networks("spec.nets", &self.nets, None);
    }
}

resource!(
    /// Networks, labelled so that namespaced policies can select them.
    NetworkSet,
    NetworkSetSpec
);

resource!(
    /// Networks, labelled so that any policy can select them.
    GlobalNetworkSet,
    NetworkSetSpec
);
