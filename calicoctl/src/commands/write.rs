//! `apply`, `create`, `replace` and `delete`: the commands that write the
//! resources read from `-f` (or named on the command line).
//!
//! `apply` is one datastore transaction. `replace` checks that every resource
//! exists, then writes them in one transaction (each with a resourceVersion is
//! a compare-and-swap). `create` checks that none exists before creating any;
//! only a resource created concurrently between the check and the write can
//! leave the batch half-done (the datastore has no create-all transaction).

use std::io::Write;

use anyhow::{Context, Result, anyhow};
use datastore::resources::ResourceStore;

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
    let mut fresh = Vec::new();
    let mut existing = Vec::new();
    for resource in resources {
        if exists(store, &resource).await? {
            existing.push(resource);
        } else {
            fresh.push(resource);
        }
    }
    if !existing.is_empty() && !skip_exists {
        let names: Vec<String> = existing.iter().map(name_of).collect();
        return Err(anyhow!(
            "already exists: {}; nothing was written (--skip-exists creates the others)",
            names.join(", ")
        ));
    }
    let kinds: Vec<api::Kind> = fresh.iter().map(api::Resource::kind).collect();
    // One transaction: one created concurrently by someone else writes none.
    store.create_all(fresh).await.with_context(|| {
        format!(
            "creating {}; nothing was written",
            plural(kinds.len(), "resource")
        )
    })?;
    writeln!(out, "{}", success("created", &kinds))?;
    if !existing.is_empty() {
        writeln!(
            out,
            "Skipped {} that already existed",
            plural(existing.len(), "resource")
        )?;
    }
    Ok(())
}

/// Replaces every resource; all must exist. A resource carrying
/// `metadata.resourceVersion` is written only if that is still its version.
pub async fn replace(
    store: &ResourceStore,
    resources: Vec<api::Resource>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut missing = Vec::new();
    for resource in &resources {
        if !exists(store, resource).await? {
            missing.push(name_of(resource));
        }
    }
    if !missing.is_empty() {
        return Err(anyhow!(
            "{} not found, nothing was written: {}",
            plural(missing.len(), "resource"),
            missing.join(", ")
        ));
    }
    let kinds: Vec<api::Kind> = resources.iter().map(api::Resource::kind).collect();
    // One transaction: a stale resourceVersion on any of them, or one deleted
    // meanwhile, writes none.
    store.replace_all(resources).await.with_context(|| {
        format!(
            "replacing {}; nothing was written",
            plural(kinds.len(), "resource")
        )
    })?;
    writeln!(out, "{}", success("replaced", &kinds))?;
    Ok(())
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

async fn exists(store: &ResourceStore, resource: &api::Resource) -> Result<bool> {
    let meta = resource.metadata();
    match store
        .get(resource.kind(), meta.namespace.as_deref(), &meta.name)
        .await
    {
        Ok(_) => Ok(true),
        Err(datastore::Error::NotFound { .. }) => Ok(false),
        Err(err) => Err(err).with_context(|| format!("reading {}", name_of(resource))),
    }
}
