//! Turning `-f` into validated resources (or, for `delete`, into targets),
//! collecting every problem of every document before anything is written.

use anyhow::Result;

use crate::cli::{DeleteArgs, FileArgs};
use crate::errors::Invalid;
use crate::input;

/// Reads, parses and validates every document `-f` designates. Namespaced
/// resources that name no namespace get `-n` (or "default"). Any invalid
/// document fails the whole input, listing every problem.
pub fn resources(args: &FileArgs) -> Result<Vec<api::Resource>> {
    let sources = input::read_sources(&args.filename, std::io::stdin().lock())?;
    let mut resources: Vec<api::Resource> = Vec::new();
    let mut problems = Vec::new();
    let namespace = args
        .namespace
        .as_deref()
        .unwrap_or(super::DEFAULT_NAMESPACE);
    for source in &sources {
        match api::parse_documents_in(&source.name, &source.text, Some(namespace)) {
            Ok(parsed) => resources.extend(parsed),
            Err(errors) => problems.extend(errors.iter().map(ToString::to_string)),
        }
    }
    // Pools of one input must not overlap each other (the store checks
    // them against the pools it holds); each pair is named once.
    let pools: Vec<&api::IPPool> = resources
        .iter()
        .filter_map(datastore::resources::as_pool)
        .collect();
    for (i, pool) in pools.iter().enumerate() {
        if let Some(problem) =
            datastore::resources::overlap_problem(pool, pools[..i].iter().copied())
        {
            problems.push(format!("IPPool {}: {problem}", pool.metadata.name));
        }
    }
    if !problems.is_empty() {
        let summary = format!(
            "{}: {} found; nothing was written",
            args.filename.display(),
            plural(problems.len(), "problem")
        );
        return Err(Invalid::with_problems(summary, problems).into());
    }
    if resources.is_empty() {
        return Err(
            Invalid::new(format!("{}: no resources found", args.filename.display())).into(),
        );
    }
    Ok(resources)
}

/// One resource `delete` should remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its kind.
    pub kind: api::Kind,
    /// Its namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Delete only while this is its version (from a file's `metadata.resourceVersion`).
    pub resource_version: Option<String>,
}

/// What `delete` removes: the named resources of a kind, or those in `-f`.
pub fn delete_targets(args: &DeleteArgs) -> Result<Vec<Target>> {
    if let Some(filename) = &args.filename {
        let file = FileArgs {
            filename: filename.clone(),
            namespace: args.namespace.clone(),
        };
        return Ok(resources(&file)?
            .iter()
            .map(|r| Target {
                kind: r.kind(),
                namespace: r.metadata().namespace.clone(),
                name: r.metadata().name.clone(),
                resource_version: r.metadata().resource_version.clone(),
            })
            .collect());
    }
    let kind_name = args
        .kind
        .as_deref()
        .expect("clap requires a kind without -f");
    let kind = super::kind(kind_name)?;
    if args.names.is_empty() {
        return Err(Invalid::new(format!("delete {kind}: name the resources to delete")).into());
    }
    let namespace = super::namespace_for(kind, args.namespace.as_deref());
    Ok(args
        .names
        .iter()
        .map(|name| Target {
            kind,
            namespace: namespace.clone(),
            name: name.clone(),
            resource_version: None,
        })
        .collect())
}

/// "1 problem", "3 problems".
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
