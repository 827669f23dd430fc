//! The typed resources, one module per family, and the machinery they share: the
//! document envelope (`apiVersion`, `kind`, `metadata`, `spec`) and the `Spec` hooks
//! through which each kind fills in its defaults and validates itself.

use serde::{Deserialize, Serialize};

use crate::{kind::Kind, meta::ObjectMeta, validate::Errors};

/// What each resource's spec contributes beyond its serde form.
pub(crate) trait Spec {
    /// Fills in Calico's defaults for fields left out.
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {}
    /// Records every problem with the spec (paths under `spec`) or with how the spec
    /// and the metadata fit together.
    fn validate(&self, meta: &ObjectMeta, errs: &mut Errors);
}

/// `skip_serializing_if` of optional numbers Calico omits when 0.
pub(crate) fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The document as read: `apiVersion` and `kind` are optional here and checked
/// against the type being read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DocIn<S> {
    pub(crate) api_version: Option<String>,
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) metadata: ObjectMeta,
    pub(crate) spec: Option<S>,
}

/// The document as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DocOut<'a, S> {
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) metadata: &'a ObjectMeta,
    pub(crate) spec: &'a S,
}

/// Checks a document's `apiVersion` and `kind`, when present, against `kind`.
pub(crate) fn check_header(
    kind: Kind,
    api_version: Option<&str>,
    doc_kind: Option<&str>,
) -> Result<(), String> {
    if let Some(v) = api_version.filter(|v| *v != kind.api_version()) {
        return Err(format!(
            "apiVersion is {v:?}, expected {:?}",
            kind.api_version()
        ));
    }
    if let Some(k) = doc_kind.filter(|k| *k != kind.document_kind()) {
        return Err(format!(
            "kind is {k:?}, expected {:?}",
            kind.document_kind()
        ));
    }
    Ok(())
}

/// Defines a resource struct `{ metadata, spec }` with its document serde form,
/// `with_defaults` and `validate`. `required` makes a missing `spec` an error; otherwise
/// the spec's `Default` is used.
macro_rules! resource {
    ($(#[$doc:meta])* $name:ident, $spec:ty $(, $required:ident)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            pub metadata: $crate::meta::ObjectMeta,
            pub spec: $spec,
        }

        impl $name {
            /// The kind of this resource.
            pub const KIND: $crate::kind::Kind = $crate::kind::Kind::$name;

            /// A resource with the given metadata and spec.
            pub fn new(metadata: $crate::meta::ObjectMeta, spec: $spec) -> Self {
                Self { metadata, spec }
            }

            /// This resource with Calico's defaults filled in.
            pub fn with_defaults(mut self) -> Self {
                if Self::KIND.namespaced() && self.metadata.namespace.is_none() {
                    self.metadata.namespace = Some("default".to_string());
                }
                $crate::resources::Spec::apply_defaults(&mut self.spec, &self.metadata);
                self
            }

            /// Every problem with this resource.
            pub fn validate(&self) -> Result<(), Vec<$crate::error::FieldError>> {
                let mut errs = $crate::validate::Errors::default();
                $crate::resource::validate_metadata(Self::KIND, &self.metadata, &mut errs);
                $crate::resources::Spec::validate(&self.spec, &self.metadata, &mut errs);
                errs.into_result()
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::resources::DocOut {
                    api_version: Self::KIND.api_version(),
                    kind: Self::KIND.document_kind(),
                    metadata: &self.metadata,
                    spec: &self.spec,
                }
                .serialize(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                let doc = $crate::resources::DocIn::<$spec>::deserialize(d)?;
                $crate::resources::check_header(Self::KIND, doc.api_version.as_deref(), doc.kind.as_deref())
                    .map_err(D::Error::custom)?;
                let spec = match doc.spec {
                    Some(spec) => spec,
                    None => resource!(@missing $spec $(, $required)?),
                };
                Ok(Self { metadata: doc.metadata, spec })
            }
        }
    };
    (@missing $spec:ty, required) => {
        return Err(D::Error::missing_field("spec"))
    };
    (@missing $spec:ty) => {
        <$spec>::default()
    };
}

pub mod bgp;
pub mod clusterinfo;
pub mod endpoints;
pub mod felix;
pub mod ipam;
pub mod ippool;
pub mod k8s;
pub mod kubecontrollers;
pub mod networkset;
pub mod node;
pub mod policy;
pub mod qos;
pub mod staged;
pub mod status;
