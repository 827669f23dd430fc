//! `apply`, `create`, `replace` and `delete`: the commands that write the
//! resources read from `-f` (or named on the command line).
//!
//! `apply`, `create` and `replace` are each one datastore transaction that
//! writes every resource or none (a resource with a resourceVersion is a
//! compare-and-swap). When it is refused, the datastore names every resource
//! at fault ([`BatchWrite::Refused`]), so the success path reads nothing
//! first. Only `create --skip-exists` with some resources existing takes a
//! second transaction, for the others.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::{Context, Result, anyhow};
use datastore::resources::{Batch, BatchWrite, ResourceStore};

use super::load::{Target, plural};
use super::{describe, success};

fn name_of(resource: &api::Resource) -> String {
    let meta = resource.metadata();
    describe(resource.kind(), meta.namespace.as_deref(), &meta.name)
}

/// Creates or updates every resource in one transaction.
pub async fn apply(
    store: &ResourceStore,
    resources: Vec<api::Resource>,
    out: &mut dyn Write,
) -> Result<()> {
    let kinds: Vec<api::Kind> = resources.iter().map(api::Resource::kind).collect();
    store.apply_all(resources).await.with_context(|| {
        format!(
            "applying {}; nothing was written",
            plural(kinds.len(), "resource")
        )
    })?;
    writeln!(out, "{}", success("applied", &kinds))?;
    Ok(())
}

/// Creates every resource. Existing ones fail the whole command (nothing is
/// written) unless `skip_exists`, which leaves them unchanged.
pub async fn create(
    store: &ResourceStore,
    resources: Vec<api::Resource>,
    skip_exists: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let kinds: Vec<api::Kind> = resources.iter().map(api::Resource::kind).collect();
    let context = |n: usize| format!("creating {}; nothing was written", plural(n, "resource"));
    // Kept only for the second transaction `skip_exists` may need.
    let retry = skip_exists.then(|| resources.clone());
    let names: Vec<String> = resources.iter().map(name_of).collect();
    let refused = match store
        .write_all(resources, Batch::Create)
        .await
        .with_context(|| context(kinds.len()))?
    {
        BatchWrite::Written(_) => {
            writeln!(out, "{}", success("created", &kinds))?;
            return Ok(());
        }
        BatchWrite::Refused(refused) => refused,
    };
    let existing: BTreeSet<usize> = refused.iter().map(|r| r.index).collect();
    let Some(resources) = retry else {
        let names: Vec<&str> = existing.iter().map(|&i| names[i].as_str()).collect();
        return Err(anyhow!(
            "already exists: {}; nothing was written (--skip-exists creates the others)",
            names.join(", ")
        ));
    };
    let fresh: Vec<api::Resource> = resources
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !existing.contains(i))
        .map(|(_, r)| r)
        .collect();
    let kinds: Vec<api::Kind> = fresh.iter().map(api::Resource::kind).collect();
    if !fresh.is_empty() {
        // One transaction: one created concurrently by someone else writes none.
        store
            .create_all(fresh)
            .await
            .with_context(|| context(kinds.len()))?;
    }
    writeln!(out, "{}", success("created", &kinds))?;
    writeln!(
        out,
        "Skipped {} that already existed",
        plural(existing.len(), "resource")
    )?;
    Ok(())
}

/// Replaces every resource; all must exist. A resource carrying
/// `metadata.resourceVersion` is written only if that is still its version.
pub async fn replace(
    store: &ResourceStore,
    resources: Vec<api::Resource>,
    out: &mut dyn Write,
) -> Result<()> {
    let kinds: Vec<api::Kind> = resources.iter().map(api::Resource::kind).collect();
    let names: Vec<String> = resources.iter().map(name_of).collect();
    let context = || {
        format!(
            "replacing {}; nothing was written",
            plural(kinds.len(), "resource")
        )
    };
    // One transaction: a missing resource, a stale resourceVersion on any of
    // them, or one deleted meanwhile, writes none.
    let refused = match store
        .write_all(resources, Batch::Replace)
        .await
        .with_context(context)?
    {
        BatchWrite::Written(_) => {
            writeln!(out, "{}", success("replaced", &kinds))?;
            return Ok(());
        }
        BatchWrite::Refused(refused) => refused,
    };
    let missing: Vec<&str> = refused
        .iter()
        .filter(|r| matches!(r.error, datastore::Error::NotFound { .. }))
        .map(|r| names[r.index].as_str())
        .collect();
    if !missing.is_empty() {
        return Err(anyhow!(
            "{} not found, nothing was written: {}",
            plural(missing.len(), "resource"),
            missing.join(", ")
        ));
    }
    // No resource is missing: the first whose resourceVersion is stale.
    match refused.into_iter().next() {
        Some(first) => Err(anyhow::Error::from(first.error).context(context())),
        None => Err(anyhow!("{}: refused for no reason", context())),
    }
}

/// Deletes every target, continuing past failures and reporting them all.
/// Absent targets fail unless `skip_not_exists`.
pub async fn delete(
    store: &ResourceStore,
    targets: Vec<Target>,
    skip_not_exists: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for target in targets {
        let what = describe(target.kind, target.namespace.as_deref(), &target.name);
        match store
            .delete(
                target.kind,
                target.namespace.as_deref(),
                &target.name,
                target.resource_version.as_deref(),
            )
            .await
        {
            Ok(_) => deleted.push(target.kind),
            Err(datastore::Error::NotFound { .. }) if skip_not_exists => {}
            Err(datastore::Error::NotFound { .. }) => failures.push(format!("{what}: not found")),
            Err(err) => failures.push(format!("{what}: {err}")),
        }
    }
    if !deleted.is_empty() || failures.is_empty() {
        writeln!(out, "{}", success("deleted", &deleted))?;
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(anyhow!(
        "{} could not be deleted:\n  - {}",
        plural(failures.len(), "resource"),
        failures.join("\n  - ")
    ))
}
