//! [`Resource`]: any one resource of any kind, read from and written to Calico's
//! document form, with the checks every kind shares (metadata).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::{
    error::FieldError,
    kind::{CALICO_API_VERSION, K8S_NETWORKING_API_VERSION, Kind, with_kinds},
    meta::ObjectMeta,
    validate::{Errors, names},
};

/// Checks label keys and values.
pub(crate) fn validate_labels(path: &str, labels: &BTreeMap<String, String>, errs: &mut Errors) {
    for (key, value) in labels {
        let path = format!("{path}.{key}");
        errs.check(&path, names::label_key(key));
        errs.check(&path, names::label_value(value));
    }
}

/// The checks on `metadata` that every kind shares.
pub(crate) fn validate_metadata(kind: Kind, meta: &ObjectMeta, errs: &mut Errors) {
    if meta.name.is_empty() {
        errs.add("metadata.name", "is required");
    } else if kind == Kind::Tier {
        errs.check("metadata.name", names::dns1123_label(&meta.name));
    } else {
        errs.check("metadata.name", names::dns1123_subdomain(&meta.name));
    }
    match (&meta.namespace, kind.namespaced()) {
        (Some(ns), true) => errs.check("metadata.namespace", names::dns1123_label(ns)),
        (None, true) => errs.add("metadata.namespace", format!("is required for {kind}")),
        (Some(_), false) => errs.add("metadata.namespace", format!("{kind} is not namespaced")),
        (None, false) => {}
    }
    validate_labels("metadata.labels", &meta.labels, errs);
    for key in meta.annotations.keys() {
        errs.check(format!("metadata.annotations.{key}"), names::label_key(key));
    }
}

/// Reads one typed document from a JSON value, strictly, with the failing field's path.
fn read<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FieldError::new(path, e.into_inner().to_string())
    })
}

/// Kinds Calico 3.32 accepts that this project does not enforce yet, and
/// what to write instead: refused by name, never ignored.
fn unsupported(api_version: &str, kind: &str) -> Option<&'static str> {
    if !api_version.starts_with("policy.networking.k8s.io/") {
        return None;
    }
    match kind {
        "AdminNetworkPolicy" | "ClusterNetworkPolicy" => Some(
            "write it as GlobalNetworkPolicies in a Tier ordered before the default tier (Calico maps it to its adminnetworkpolicy tier)",
        ),
        "BaselineAdminNetworkPolicy" => Some(
            "write it as GlobalNetworkPolicies in a Tier ordered after the default tier (Calico maps it to its baselineadminnetworkpolicy tier)",
        ),
        _ => None,
    }
}

/// Which kind a document is, from its `apiVersion` and `kind`, with a clear error.
fn document_kind(obj: &serde_json::Map<String, Value>) -> Result<Kind, FieldError> {
    let field = |name: &str| match obj.get(name) {
        None => Err(FieldError::new(name, "is required")),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => Err(FieldError::new(
            name,
            format!("must be a string, not {other}"),
        )),
    };
    let api_version = field("apiVersion")?;
    let kind = field("kind")?;
    if let Some(instead) = unsupported(api_version, kind) {
        return Err(FieldError::new(
            "kind",
            format!("{kind} ({api_version}) is not supported: {instead}"),
        ));
    }
    if ![CALICO_API_VERSION, K8S_NETWORKING_API_VERSION].contains(&api_version) {
        return Err(FieldError::new(
            "apiVersion",
            format!(
                "unknown apiVersion {api_version:?}: expected {CALICO_API_VERSION:?} or {K8S_NETWORKING_API_VERSION:?}"
            ),
        ));
    }
    Kind::from_document(api_version, kind).ok_or_else(|| {
        let known: Vec<_> = Kind::ALL
            .iter()
            .filter(|k| k.api_version() == api_version)
            .map(|k| k.document_kind())
            .collect();
        FieldError::new(
            "kind",
            format!(
                "unknown kind {kind:?} for {api_version}: expected one of {}",
                known.join(", ")
            ),
        )
    })
}

/// Generates [`Resource`] from the table of kinds (see `kind::with_kinds`): one
/// variant per kind, holding the type of the same name.
macro_rules! resource_enum {
    ($(
        $(#[$doc:meta])*
        $kind:ident: $module:ident, $scope:ident, [$($name:literal),+ $(,)?];
    )*) => {
        /// One resource of any kind.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum Resource {
            $($kind(crate::resources::$module::$kind),)*
        }

        impl Resource {
            /// The resource's kind.
            pub fn kind(&self) -> Kind {
                match self {
                    $(Resource::$kind(_) => Kind::$kind,)*
                }
            }

            /// The resource's metadata.
            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(Resource::$kind(r) => &r.metadata,)*
                }
            }

            /// The resource's metadata, to change.
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Resource::$kind(r) => &mut r.metadata,)*
                }
            }

            /// This resource with Calico's defaults filled in.
            pub fn with_defaults(self) -> Self {
                match self {
                    $(Resource::$kind(r) => Resource::$kind(r.with_defaults()),)*
                }
            }

            /// Every problem with this resource, each naming its field path.
            pub fn validate(&self) -> Result<(), Vec<FieldError>> {
                match self {
                    $(Resource::$kind(r) => r.validate(),)*
                }
            }

            fn read_as(kind: Kind, value: Value) -> Result<Self, FieldError> {
                match kind {
                    $(Kind::$kind => {
                        read::<crate::resources::$module::$kind>(value).map(Resource::$kind)
                    })*
                }
            }
        }

        impl Serialize for Resource {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(Resource::$kind(r) => r.serialize(s),)*
                }
            }
        }

        $(
            impl From<crate::resources::$module::$kind> for Resource {
                fn from(r: crate::resources::$module::$kind) -> Self {
                    Resource::$kind(r)
                }
            }
        )*
    };
}

with_kinds!(resource_enum);

impl Resource {
    /// Reads a document strictly (unknown fields are errors) and fills in defaults.
    /// Does not validate: see [`Resource::validate`].
    pub fn from_value(value: Value) -> Result<Resource, FieldError> {
        let Value::Object(obj) = &value else {
            return Err(FieldError::new(
                "",
                format!("a resource must be a mapping, not {value}"),
            ));
        };
        let kind = document_kind(obj)?;
        match obj.get("metadata").and_then(|m| m.get("name")) {
            Some(Value::String(name)) if !name.is_empty() => {}
            Some(Value::String(_)) | None => {
                return Err(FieldError::new("metadata.name", "is required"));
            }
            Some(other) => {
                return Err(FieldError::new(
                    "metadata.name",
                    format!("must be a string, not {other}"),
                ));
            }
        }
        Ok(Resource::read_as(kind, value)?.with_defaults())
    }

    /// The full document `{apiVersion, kind, metadata, spec}` with defaults filled in.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self.clone().with_defaults())
            .expect("resources serialise to JSON: all map keys are strings")
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Resource::from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
