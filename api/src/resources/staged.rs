//! Staged policies, as Calico 3.30 has them: [`StagedNetworkPolicy`],
//! [`StagedGlobalNetworkPolicy`] and [`StagedKubernetesNetworkPolicy`]. Each
//! holds the spec of its enforced kind plus `stagedAction`: what enforcing it
//! would do to the enforced policy of the same name. `Set` (the default)
//! creates or replaces it; `Delete` removes it, and then the spec names only
//! the policy (its tier), as Calico's validator requires.
//!
//! A staged policy is never enforced: it is kept so flows can be evaluated
//! as if it were (see `policy::Model::staged`), and promoted by
//! `calicoctl policy promote`.
//!
//! The spec is [`StagedSpec`] over the enforced kind's spec type: one struct
//! per field list, so the enforced kind's fields, defaults and validation
//! (field paths included) are reused as they are.

use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::ser::{self, SerializeMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::{
    Resource,
    meta::ObjectMeta,
    resources::{
        Spec,
        k8s::{KubernetesNetworkPolicy, KubernetesNetworkPolicySpec},
        policy::{GlobalNetworkPolicy, GlobalNetworkPolicySpec, NetworkPolicy, NetworkPolicySpec},
    },
    validate::Errors,
};

/// The `stagedAction` field's name.
const STAGED_ACTION: &str = "stagedAction";

/// What enforcing a staged policy would do to the enforced policy of its name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StagedAction {
    /// Create the enforced policy, or replace it, with this spec.
    #[default]
    Set,
    /// Delete the enforced policy.
    Delete,
}

/// An enforced kind's spec that can be staged.
pub(crate) trait Stageable: Spec + Default + Serialize {
    /// The spec of a staged `Delete` of the policy this spec belongs to: only
    /// what identifies the policy (a tier, defaulted), every other field empty.
    fn identity(&self) -> Self;

    /// Fills in the defaults of the fields [`identity`](Stageable::identity)
    /// keeps, and only those.
    fn default_identity(&mut self);
}

/// `spec` of a staged policy: the enforced kind's spec `S` plus `stagedAction`,
/// all in one mapping as Calico writes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StagedSpec<S> {
    pub staged_action: StagedAction,
    /// The spec the enforced policy would have (with `Delete`, only its tier).
    pub policy: S,
}

impl<S: Stageable> Spec for StagedSpec<S> {
    /// The enforced kind's defaults; with `Delete`, only those of the fields
    /// that identify the policy (so no `types` are inferred).
    fn apply_defaults(&mut self, meta: &ObjectMeta) {
        match self.staged_action {
            StagedAction::Set => self.policy.apply_defaults(meta),
            StagedAction::Delete => self.policy.default_identity(),
        }
    }

    /// As the enforced kind; with `Delete`, every field beyond the identity
    /// is refused, each named.
    fn validate(&self, meta: &ObjectMeta, errs: &mut Errors) {
        self.policy.validate(meta, errs);
        if self.staged_action == StagedAction::Delete {
            for field in fields_beyond(&self.policy, &self.policy.identity()) {
                errs.add(
                    format!("spec.{field}"),
                    "must be left out when stagedAction is Delete: a staged Delete only names the policy to delete",
                );
            }
        }
    }
}

/// The top-level fields of `spec` (in serialised form) that `identity` does
/// not have with the same value.
fn fields_beyond<S: Serialize>(spec: &S, identity: &S) -> Vec<String> {
    let (Ok(Value::Object(spec)), Ok(Value::Object(identity))) =
        (serde_json::to_value(spec), serde_json::to_value(identity))
    else {
        return Vec::new();
    };
    spec.into_iter()
        .filter(|(field, value)| identity.get(field) != Some(value))
        .map(|(field, _)| field)
        .collect()
}

impl<S: Serialize> Serialize for StagedSpec<S> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let fields = match serde_json::to_value(&self.policy).map_err(ser::Error::custom)? {
            Value::Object(fields) => fields,
            other => {
                return Err(ser::Error::custom(format!(
                    "a policy spec serialises to a mapping, not {other}"
                )));
            }
        };
        let mut map = s.serialize_map(Some(fields.len() + 1))?;
        map.serialize_entry(STAGED_ACTION, &self.staged_action)?;
        for (field, value) in &fields {
            map.serialize_entry(field, value)?;
        }
        map.end()
    }
}

/// Reads `stagedAction` out of the mapping and hands every other field to
/// `S`'s own (strict) deserializer, through the same map: unknown fields stay
/// errors and every error keeps its field path.
impl<'de, S: Deserialize<'de>> Deserialize<'de> for StagedSpec<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StagedVisitor(PhantomData))
    }
}

struct StagedVisitor<S>(PhantomData<S>);

impl<'de, S: Deserialize<'de>> Visitor<'de> for StagedVisitor<S> {
    type Value = StagedSpec<S>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a staged policy spec (a mapping)")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut staged_action = None;
        let policy = S::deserialize(de::value::MapAccessDeserializer::new(WithoutAction {
            map,
            staged_action: &mut staged_action,
        }))?;
        Ok(StagedSpec {
            staged_action: staged_action.unwrap_or_default(),
            policy,
        })
    }
}

/// A map's entries but `stagedAction`, which is read into `staged_action`.
struct WithoutAction<'a, A> {
    map: A,
    staged_action: &'a mut Option<StagedAction>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WithoutAction<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<String>()? {
            if key != STAGED_ACTION {
                return seed.deserialize(key.into_deserializer()).map(Some);
            }
            if self.staged_action.is_some() {
                return Err(de::Error::duplicate_field(STAGED_ACTION));
            }
            *self.staged_action = Some(self.map.next_value()?);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A Kubernetes policy is identified by its name alone.
impl Stageable for KubernetesNetworkPolicySpec {
    fn identity(&self) -> Self {
        Self::default()
    }

    fn default_identity(&mut self) {}
}

/// Defines a staged kind over its enforced kind: the resource, its spec
/// alias, and the conversion to the enforced resource.
macro_rules! staged_kind {
    ($(#[$doc:meta])* $name:ident, $spec:ident, $enforced:ident, $enforced_spec:ty) => {
        #[doc = concat!("`spec` of a [`", stringify!($name), "`].")]
        pub type $spec = StagedSpec<$enforced_spec>;

        resource!($(#[$doc])* $name, $spec);

        impl $name {
            #[doc = concat!(
                "The staged action and the [`", stringify!($enforced),
                "`] this stages: the same metadata (but its `resourceVersion`, `uid` and ",
                "`creationTimestamp`, which belong to the staged resource) and spec."
            )]
            pub fn to_enforced(&self) -> (StagedAction, $enforced) {
                let metadata = ObjectMeta {
                    resource_version: None,
                    uid: None,
                    creation_timestamp: None,
                    ..self.metadata.clone()
                };
                (self.spec.staged_action, $enforced::new(metadata, self.spec.policy.clone()))
            }
        }
    };
}

staged_kind!(
    /// A staged Calico NetworkPolicy: not enforced; what a NetworkPolicy of
    /// its name would become.
    StagedNetworkPolicy,
    StagedNetworkPolicySpec,
    NetworkPolicy,
    NetworkPolicySpec
);

staged_kind!(
    /// A staged GlobalNetworkPolicy: not enforced; what a GlobalNetworkPolicy
    /// of its name would become.
    StagedGlobalNetworkPolicy,
    StagedGlobalNetworkPolicySpec,
    GlobalNetworkPolicy,
    GlobalNetworkPolicySpec
);

staged_kind!(
    /// A staged Kubernetes NetworkPolicy (a `projectcalico.org/v3` kind whose
    /// spec is a Kubernetes NetworkPolicy spec): not enforced; what the
    /// Kubernetes NetworkPolicy of its name would become.
    StagedKubernetesNetworkPolicy,
    StagedKubernetesNetworkPolicySpec,
    KubernetesNetworkPolicy,
    KubernetesNetworkPolicySpec
);

impl Resource {
    /// For a staged policy, its staged action and the enforced resource it
    /// stages (see `to_enforced` on each staged kind); `None` for other kinds.
    pub fn to_enforced(&self) -> Option<(StagedAction, Resource)> {
        match self {
            Resource::StagedNetworkPolicy(p) => {
                let (action, enforced) = p.to_enforced();
                Some((action, enforced.into()))
            }
            Resource::StagedGlobalNetworkPolicy(p) => {
                let (action, enforced) = p.to_enforced();
                Some((action, enforced.into()))
            }
            Resource::StagedKubernetesNetworkPolicy(p) => {
                let (action, enforced) = p.to_enforced();
                Some((action, enforced.into()))
            }
            _ => None,
        }
    }
}
