//! [`ResourceStore::commit`]: writes and deletes of several resources in one
//! transaction, all or none (what promoting a staged policy needs: the
//! enforced policy written or deleted, and the staged one deleted, together).

use std::collections::BTreeSet;

use api::{Kind, Resource};

use super::{
    Batch, BatchWrite, Checked, Prepared, ResourceStore, decode, describe, mismatches,
    parse_version,
};
use crate::error::{Error, Result};
use crate::kv::{Compare, Op, OpResult, Revision, Txn};

/// One change of [`ResourceStore::commit`]. (A commit holds a handful: the
/// size of an inline resource costs nothing worth boxing it for.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create or replace the resource, as [`ResourceStore::apply`]; with a
    /// `resourceVersion`, only while it is current.
    Apply(Resource),
    /// Delete the resource, which must exist; with a `resource_version`,
    /// only while it is current.
    Delete {
        kind: Kind,
        namespace: Option<String>,
        name: String,
        resource_version: Option<String>,
    },
}

/// A change ready to go into the transaction.
enum Step {
    Put(Box<Prepared>),
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl Step {
    fn key(&self) -> &str {
        match self {
            Step::Put(p) => &p.key,
            Step::Delete { key, .. } => key,
        }
    }

    /// Whether the step has a check to hold (so the failure branch reads it).
    fn checked(&self) -> Option<Option<Revision>> {
        match self {
            Step::Put(p) => p.expected.map(Some),
            Step::Delete { expected, .. } => Some(*expected),
        }
    }
}

impl ResourceStore {
    /// Applies and deletes every resource of `changes` in one transaction,
    /// or none. Each resource is validated first and may appear once;
    /// `Written` holds, in order, the stored copy of each applied resource
    /// and the last state of each deleted one; `Refused` names every change
    /// whose check did not hold (a deleted resource absent:
    /// [`Error::NotFound`]; a stale `resourceVersion`: [`Error::Conflict`]).
    pub async fn commit(&self, changes: Vec<Change>) -> Result<BatchWrite> {
        let deleted_pools: BTreeSet<String> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Delete {
                    kind: Kind::IPPool,
                    name,
                    ..
                } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let steps = changes
            .into_iter()
            .map(|change| self.step(change))
            .collect::<Result<Vec<_>>>()?;
        let mut keys = BTreeSet::new();
        if let Some(dup) = steps.iter().find(|s| !keys.insert(s.key())) {
            return Err(Error::InvalidResource {
                what: dup.key().to_string(),
                message: "appears more than once in one batch".into(),
            });
        }
        let written = steps.iter().filter_map(|s| match s {
            Step::Put(p) => Some(&p.resource),
            Step::Delete { .. } => None,
        });
        self.check_pools(written, &deleted_pools.iter().map(String::as_str).collect())
            .await?;
        let checked: Vec<Checked<'_>> = steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.checked().map(|expected| (i, s.key(), expected)))
            .collect();
        let compares = checked.iter().flat_map(|(_, key, expected)| {
            let mut compares = vec![Compare::present(*key)];
            compares.extend(expected.map(|rev| Compare::mod_revision(*key, rev)));
            compares
        });
        let txn = Txn::new()
            .when(compares)
            .and_then(steps.iter().map(|s| match s {
                Step::Put(p) => Op::put(&p.key, p.value.clone()),
                Step::Delete { key, .. } => Op::delete(key),
            }))
            .or_else(checked.iter().map(|(_, key, _)| Op::get(*key)));
        let resp = self.kv.txn(txn).await?;
        if !resp.succeeded {
            let refused = mismatches(&checked, &resp.results, Batch::Replace);
            if refused.is_empty() {
                return Err(Error::Backend("batch refused but every check held".into()));
            }
            return Ok(BatchWrite::Refused(refused));
        }
        steps
            .into_iter()
            .zip(&resp.results)
            .map(|(step, result)| match (step, result) {
                (Step::Put(p), _) => Ok(p.stored(resp.revision)),
                (Step::Delete { .. }, OpResult::Delete { prev: Some(kv) }) => decode(kv),
                (Step::Delete { key, .. }, _) => Err(Error::Backend(format!(
                    "{key} was checked present but its delete found nothing"
                ))),
            })
            .collect::<Result<Vec<_>>>()
            .map(BatchWrite::Written)
    }

    fn step(&self, change: Change) -> Result<Step> {
        Ok(match change {
            Change::Apply(resource) => Step::Put(Box::new(Prepared::new(resource)?)),
            Change::Delete {
                kind,
                namespace,
                name,
                resource_version,
            } => {
                let namespace = namespace.as_deref();
                let what = describe(kind, namespace, &name);
                Step::Delete {
                    key: self.checked_key(kind, namespace, &name)?,
                    expected: resource_version
                        .as_deref()
                        .filter(|v| !v.is_empty())
                        .map(|v| parse_version(&what, v))
                        .transpose()?,
                }
            }
        })
    }
}
