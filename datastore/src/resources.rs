//! Typed access to `projectcalico.org/v3` resources on any [`KvStore`], under
//! Calico's etcdv3 key layout:
//!
//! ```text
//! /calico/resources/v3/projectcalico.org/<plural>/<name>               cluster-wide kinds
//! /calico/resources/v3/projectcalico.org/<plural>/<namespace>/<name>   namespaced kinds
//! /calico/resources/v3/networking.k8s.io/networkpolicies/<namespace>/<name>
//! ```
//!
//! Values are the resource's JSON document (`apiVersion`, `kind`, `metadata`,
//! `spec`) without `metadata.resourceVersion`: a resource's version is its
//! key's `mod_revision`, exposed as `metadata.resourceVersion` (decimal) on
//! every resource read or written. A write carrying a `resourceVersion` is a
//! compare-and-swap on it: a stale one is refused with [`Error::Conflict`].
//! Namespaced kinds without a namespace go to `default`.

use std::collections::BTreeSet;
use std::sync::Arc;

use api::{Kind, Resource};

mod commit;
mod pools;

pub use commit::Change;
pub use pools::{as_pool, overlap_problem, overlapping};

use crate::error::{Error, Result};
use crate::kv::{Compare, KeyValue, KvStore, Op, OpResult, Revision, Txn};

/// The root of every resource key.
pub const RESOURCES_PREFIX: &str = "/calico/resources/v3/";

/// Typed, validated resource access on a shared [`KvStore`].
#[derive(Debug, Clone)]
pub struct ResourceStore {
    kv: Arc<dyn KvStore>,
}

/// The key directory of a kind, with its trailing `/`.
fn kind_prefix(kind: Kind) -> String {
    let group = kind.api_version().split('/').next().unwrap_or_default();
    let plural = match kind {
        Kind::KubernetesNetworkPolicy => "networkpolicies",
        other => other.plural(),
    };
    format!("{RESOURCES_PREFIX}{group}/{plural}/")
}

/// How a resource is named in errors: `IPPool(default-pool)`, `NetworkPolicy(ns/p)`.
fn describe(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if kind.namespaced() => format!("{kind}({ns}/{name})"),
        _ => format!("{kind}({name})"),
    }
}

/// Checks a user-supplied key segment (name or namespace): it must not be
/// empty nor break the key layout.
fn check_segment(kind: Kind, field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.contains('/') {
        return Err(Error::InvalidResource {
            what: kind.to_string(),
            message: format!("{field} {value:?} must be non-empty and contain no '/'"),
        });
    }
    Ok(())
}

/// Parses a `resourceVersion` into the revision it stands for.
fn parse_version(what: &str, version: &str) -> Result<Revision> {
    version
        .parse::<Revision>()
        .ok()
        .filter(|r| *r > 0)
        .ok_or_else(|| Error::InvalidResource {
            what: what.into(),
            message: format!(
                "metadata.resourceVersion {version:?} is not a revision of this datastore"
            ),
        })
}

/// A resource ready to be written: normalised, validated and encoded.
struct Prepared {
    key: String,
    what: String,
    /// The `resourceVersion` the caller expects, if any.
    expected: Option<Revision>,
    /// The value stored: the document without `resourceVersion`.
    value: Vec<u8>,
    /// The resource as returned once stored (its version set by the caller).
    resource: Resource,
}

impl Prepared {
    fn new(resource: Resource) -> Result<Self> {
        let mut resource = resource.with_defaults();
        let kind = resource.kind();
        let meta = resource.metadata();
        let what = describe(kind, meta.namespace.as_deref(), &meta.name);
        resource.validate().map_err(|errs| Error::InvalidResource {
            what: what.clone(),
            message: errs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        })?;
        let expected = meta
            .resource_version
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| parse_version(&what, v))
            .transpose()?;
        let key = ResourceStore::key(kind, meta.namespace.as_deref(), &meta.name);
        resource.metadata_mut().resource_version = None;
        let value =
            serde_json::to_vec(&resource.to_value()).map_err(|e| Error::InvalidResource {
                what: what.clone(),
                message: format!("cannot encode: {e}"),
            })?;
        Ok(Self {
            key,
            what,
            expected,
            value,
            resource,
        })
    }

    /// The stored copy at `revision`.
    fn stored(mut self, revision: Revision) -> Resource {
        self.resource.metadata_mut().resource_version = Some(revision.to_string());
        self.resource
    }

    /// Compares that make the write a CAS on the expected version, if any.
    fn compares(&self) -> Vec<Compare> {
        self.expected
            .map(|rev| {
                vec![
                    Compare::present(&self.key),
                    Compare::mod_revision(&self.key, rev),
                ]
            })
            .unwrap_or_default()
    }
}

/// The key and stored value of a resource, normalised and validated as a
/// write would store it (for writers that build their own transactions).
pub fn encode(resource: Resource) -> Result<(String, Vec<u8>)> {
    let p = Prepared::new(resource)?;
    Ok((p.key, p.value))
}

/// Decodes a stored value into a resource carrying its `resourceVersion`.
fn decode(kv: &KeyValue) -> Result<Resource> {
    let invalid = |message: String| Error::InvalidValue {
        key: kv.key.clone(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&kv.value).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let mut resource = Resource::from_value(value).map_err(|e| invalid(e.to_string()))?;
    resource.metadata_mut().resource_version = Some(kv.mod_revision.to_string());
    Ok(resource)
}

impl ResourceStore {
    pub fn new(kv: Arc<dyn KvStore>) -> Self {
        Self { kv }
    }

    /// The key-value store underneath.
    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    /// The key of a resource. Namespaced kinds without a namespace use
    /// `default`; cluster-wide kinds ignore the namespace.
    pub fn key(kind: Kind, namespace: Option<&str>, name: &str) -> String {
        let prefix = kind_prefix(kind);
        if kind.namespaced() {
            format!("{prefix}{}/{name}", namespace.unwrap_or("default"))
        } else {
            format!("{prefix}{name}")
        }
    }

    /// The key prefix listing a kind, in one namespace or (`None`) in all.
    pub fn list_prefix(kind: Kind, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if kind.namespaced() => format!("{}{ns}/", kind_prefix(kind)),
            _ => kind_prefix(kind),
        }
    }

    /// Creates the resource; [`Error::AlreadyExists`] if it exists. Returns
    /// the stored copy with its `resourceVersion`.
    pub async fn create(&self, resource: Resource) -> Result<Resource> {
        let p = Prepared::new(resource)?;
        self.check_pools([&p.resource], &BTreeSet::new()).await?;
        let revision = self.kv.create(&p.key, p.value.clone()).await?;
        Ok(p.stored(revision))
    }

    /// Replaces an existing resource ([`Error::NotFound`] if absent). With a
    /// `resourceVersion`, only if it is still current ([`Error::Conflict`]).
    pub async fn replace(&self, resource: Resource) -> Result<Resource> {
        let p = Prepared::new(resource)?;
        self.check_pools([&p.resource], &BTreeSet::new()).await?;
        let revision = match p.expected {
            Some(expected) => self.kv.update(&p.key, p.value.clone(), expected).await?,
            None => {
                let resp = self
                    .kv
                    .txn(
                        Txn::new()
                            .when([Compare::present(&p.key)])
                            .and_then([Op::put(&p.key, p.value.clone())]),
                    )
                    .await?;
                if !resp.succeeded {
                    return Err(Error::NotFound { key: p.key });
                }
                resp.revision
            }
        };
        Ok(p.stored(revision))
    }

    /// Creates or replaces the resource. With a `resourceVersion` it acts as
    /// [`ResourceStore::replace`]; without, it writes whatever is there.
    pub async fn apply(&self, resource: Resource) -> Result<Resource> {
        let p = Prepared::new(resource)?;
        self.check_pools([&p.resource], &BTreeSet::new()).await?;
        let revision = match p.expected {
            Some(expected) => self.kv.update(&p.key, p.value.clone(), expected).await?,
            None => self.kv.put(&p.key, p.value.clone()).await?,
        };
        Ok(p.stored(revision))
    }

    /// Creates or replaces every resource in one transaction: all are written
    /// or none. Those carrying a `resourceVersion` must still be current
    /// ([`Error::Conflict`], [`Error::NotFound`]).
    pub async fn apply_all(&self, resources: Vec<Resource>) -> Result<Vec<Resource>> {
        self.write_all(resources, Batch::Apply).await?.into_result()
    }

    /// Creates every resource in one transaction: if any already exists,
    /// nothing is written ([`Error::AlreadyExists`] names the first).
    pub async fn create_all(&self, resources: Vec<Resource>) -> Result<Vec<Resource>> {
        self.write_all(resources, Batch::Create)
            .await?
            .into_result()
    }

    /// Replaces every resource in one transaction: each must exist and, with a
    /// `resourceVersion`, be current; otherwise nothing is written.
    pub async fn replace_all(&self, resources: Vec<Resource>) -> Result<Vec<Resource>> {
        self.write_all(resources, Batch::Replace)
            .await?
            .into_result()
    }

    /// Writes every resource in one transaction, as `batch` says, or none.
    /// When a check does not hold, the transaction's failure branch reads
    /// every checked key, so [`BatchWrite::Refused`] names every resource at
    /// fault without another round trip. `Err` is kept for invalid input
    /// (each resource is validated first; a key may appear once) and for
    /// the store failing.
    pub async fn write_all(&self, resources: Vec<Resource>, batch: Batch) -> Result<BatchWrite> {
        let mut prepared = resources
            .into_iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>>>()?;
        if batch == Batch::Create {
            // A create never compares versions, as `create` ignores them.
            prepared.iter_mut().for_each(|p| p.expected = None);
        }
        let mut keys = BTreeSet::new();
        if let Some(dup) = prepared.iter().find(|p| !keys.insert(p.key.as_str())) {
            return Err(Error::InvalidResource {
                what: dup.what.clone(),
                message: "appears more than once in one batch".into(),
            });
        }
        self.check_pools(prepared.iter().map(|p| &p.resource), &BTreeSet::new())
            .await?;
        let checked: Vec<Checked<'_>> = prepared
            .iter()
            .enumerate()
            .filter(|(_, p)| batch != Batch::Apply || p.expected.is_some())
            .map(|(i, p)| (i, p.key.as_str(), p.expected))
            .collect();
        let compares = prepared.iter().flat_map(|p| match batch {
            Batch::Apply => p.compares(),
            Batch::Create => vec![Compare::absent(&p.key)],
            Batch::Replace => match p.expected {
                Some(_) => p.compares(),
                None => vec![Compare::present(&p.key)],
            },
        });
        let txn = Txn::new()
            .when(compares)
            .and_then(prepared.iter().map(|p| Op::put(&p.key, p.value.clone())))
            .or_else(checked.iter().map(|(_, key, _)| Op::get(*key)));
        let resp = self.kv.txn(txn).await?;
        if !resp.succeeded {
            let refused = mismatches(&checked, &resp.results, batch);
            if refused.is_empty() {
                return Err(Error::Backend("batch refused but every check held".into()));
            }
            return Ok(BatchWrite::Refused(refused));
        }
        Ok(BatchWrite::Written(
            prepared
                .into_iter()
                .map(|p| p.stored(resp.revision))
                .collect(),
        ))
    }

    /// The resource; [`Error::NotFound`] if absent.
    pub async fn get(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Result<Resource> {
        let key = self.checked_key(kind, namespace, name)?;
        match self.kv.get(&key).await? {
            Some(kv) => decode(&kv),
            None => Err(Error::NotFound { key }),
        }
    }

    /// Every resource of a kind, sorted by key, in one namespace or (`None`)
    /// in all.
    pub async fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<Vec<Resource>> {
        if let Some(ns) = namespace.filter(|_| kind.namespaced()) {
            check_segment(kind, "namespace", ns)?;
        }
        let (kvs, _) = self.kv.list(&Self::list_prefix(kind, namespace)).await?;
        kvs.iter().map(decode).collect()
    }

    /// Deletes the resource, if `resource_version` is given only while it is
    /// current. Returns the deleted resource.
    pub async fn delete(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Resource> {
        let key = self.checked_key(kind, namespace, name)?;
        let expected = resource_version
            .map(|v| parse_version(&describe(kind, namespace, name), v))
            .transpose()?;
        decode(&self.kv.delete(&key, expected).await?)
    }

    fn checked_key(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Result<String> {
        check_segment(kind, "name", name)?;
        if let Some(ns) = namespace.filter(|_| kind.namespaced()) {
            check_segment(kind, "namespace", ns)?;
        }
        Ok(Self::key(kind, namespace, name))
    }
}

/// How a batch write treats keys that exist or do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Create or replace; a resource with a `resourceVersion` must be current.
    Apply,
    /// Create; none may exist.
    Create,
    /// Replace; each must exist and, with a `resourceVersion`, be current.
    Replace,
}

/// One resource a batch write refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its position in the batch.
    pub index: usize,
    /// Why: [`Error::AlreadyExists`], [`Error::NotFound`] or [`Error::Conflict`].
    pub error: Error,
}

/// The outcome of [`ResourceStore::write_all`].
#[derive(Debug, Clone, PartialEq)]
pub enum BatchWrite {
    /// Every resource was written, at one revision: the stored copies, in
    /// batch order.
    Written(Vec<Resource>),
    /// Nothing was written: every resource whose check did not hold, in
    /// batch order (never empty).
    Refused(Vec<Refusal>),
}

impl BatchWrite {
    /// The stored copies, or the first refusal's error.
    pub fn into_result(self) -> Result<Vec<Resource>> {
        match self {
            BatchWrite::Written(stored) => Ok(stored),
            BatchWrite::Refused(refused) => Err(refused
                .into_iter()
                .next()
                .map(|r| r.error)
                .unwrap_or_else(|| Error::Backend("batch refused for no reason".into()))),
        }
    }
}

/// A key a batch checks: its position in the batch, the key, and the
/// revision it must still be at, if any.
type Checked<'a> = (usize, &'a str, Option<Revision>);

/// Every resource whose check did not hold, from the failure branch's gets
/// (one per checked resource, in order).
fn mismatches(checked: &[Checked<'_>], results: &[OpResult], batch: Batch) -> Vec<Refusal> {
    checked
        .iter()
        .zip(results)
        .filter_map(|((index, key, expected), result)| {
            let OpResult::Get { kv } = result else {
                return None;
            };
            let key = key.to_string();
            match (kv, expected) {
                (Some(_), _) if batch == Batch::Create => Some(Error::AlreadyExists { key }),
                (None, _) if batch == Batch::Create => None,
                (None, _) => Some(Error::NotFound { key }),
                (Some(kv), Some(expected)) if kv.mod_revision != *expected => {
                    Some(Error::Conflict {
                        key,
                        expected: *expected,
                        actual: kv.mod_revision,
                    })
                }
                (Some(_), _) => None,
            }
            .map(|error| Refusal {
                index: *index,
                error,
            })
        })
        .collect()
}
