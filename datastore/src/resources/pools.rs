//! IPPools must not overlap (Calico 3.33 refuses such a pool, naming the
//! other one). A pool written is checked against the pools stored, less
//! those the same write deletes or replaces, and against the other pools of
//! its batch.
//!
//! The check reads the pools before the write's transaction, as Calico's
//! does: two clients creating overlapping pools at the same instant can
//! both pass it. `calicoctl ipam check` reports such pools.

use std::collections::BTreeSet;

use api::{IPPool, Kind, Resource};

use super::{ResourceStore, describe};
use crate::error::{Error, Result};

/// The first pool of `others` (not named `name`) that `pool` overlaps.
pub fn overlapping<'a>(
    pool: &IPPool,
    others: impl IntoIterator<Item = &'a IPPool>,
) -> Option<&'a IPPool> {
    others
        .into_iter()
        .filter(|o| o.metadata.name != pool.metadata.name)
        .find(|o| pool.spec.overlaps(&o.spec))
}

/// Why `pool` may not exist beside `others`, if it may not: names the field
/// and the other pool.
pub fn overlap_problem<'a>(
    pool: &IPPool,
    others: impl IntoIterator<Item = &'a IPPool>,
) -> Option<String> {
    overlapping(pool, others).map(|other| {
        format!(
            "spec.cidr: {} overlaps IPPool {:?} ({}); pools must not overlap",
            pool.spec.cidr, other.metadata.name, other.spec.cidr
        )
    })
}

/// The resource as an IPPool, if it is one.
pub fn as_pool(resource: &Resource) -> Option<&IPPool> {
    match resource {
        Resource::IPPool(p) => Some(p),
        _ => None,
    }
}

impl ResourceStore {
    /// Refuses the write if a pool of `written` overlaps another pool that
    /// would exist after it; `deleted` names pools the same write removes.
    pub(super) async fn check_pools<'a>(
        &self,
        written: impl IntoIterator<Item = &'a Resource>,
        deleted: &BTreeSet<&str>,
    ) -> Result<()> {
        let written: Vec<&IPPool> = written.into_iter().filter_map(as_pool).collect();
        if written.is_empty() {
            return Ok(());
        }
        let names: BTreeSet<&str> = written.iter().map(|p| p.metadata.name.as_str()).collect();
        let stored: Vec<Resource> = self.list(Kind::IPPool, None).await?;
        let after: Vec<&IPPool> = stored
            .iter()
            .filter_map(as_pool)
            .filter(|p| {
                let name = p.metadata.name.as_str();
                !names.contains(name) && !deleted.contains(name)
            })
            .chain(written.iter().copied())
            .collect();
        for pool in &written {
            if let Some(message) = overlap_problem(pool, after.iter().copied()) {
                return Err(Error::InvalidResource {
                    what: describe(Kind::IPPool, None, &pool.metadata.name),
                    message,
                });
            }
        }
        Ok(())
    }
}
