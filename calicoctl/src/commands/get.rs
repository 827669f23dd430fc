//! `get`: read resources by kind (all, or by name) and print them as a table,
//! YAML or JSON.

use std::io::Write;

use anyhow::{Result, anyhow};
use datastore::resources::ResourceStore;

use crate::cli::{GetArgs, OutputFormat};
use crate::output;

/// A validated `get` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The kind asked for.
    pub kind: api::Kind,
    /// Names asked for; every resource of the kind when empty.
    pub names: Vec<String>,
    /// The namespace; `None` for cluster-wide kinds and for `-A`.
    pub namespace: Option<String>,
    /// `-A` on a namespaced kind.
    pub all_namespaces: bool,
    /// Output format.
    pub output: OutputFormat,
}

impl Query {
    /// Checks the kind and works out the namespace.
    pub fn from_args(args: &GetArgs) -> Result<Self> {
        let kind = super::kind(&args.kind)?;
        let all_namespaces = args.all_namespaces && kind.namespaced();
        if all_namespaces && !args.names.is_empty() {
            return Err(crate::errors::Invalid::new(
                "get: -A lists every namespace; name no resources with it",
            )
            .into());
        }
        let namespace = if all_namespaces {
            None
        } else {
            super::namespace_for(kind, args.namespace.as_deref())
        };
        Ok(Self {
            kind,
            names: args.names.clone(),
            namespace,
            all_namespaces,
            output: args.output,
        })
    }
}

/// Reads what `query` asks for and prints it. Names that are not found are
/// reported after the ones that are (exit 1).
pub async fn run(store: &ResourceStore, query: &Query, out: &mut dyn Write) -> Result<()> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    if query.names.is_empty() {
        found = store.list(query.kind, query.namespace.as_deref()).await?;
    } else {
        for name in &query.names {
            match store
                .get(query.kind, query.namespace.as_deref(), name)
                .await
            {
                Ok(resource) => found.push(resource),
                Err(datastore::Error::NotFound { .. }) => missing.push(super::describe(
                    query.kind,
                    query.namespace.as_deref(),
                    name,
                )),
                Err(err) => return Err(err.into()),
            }
        }
    }
    let values: Vec<serde_json::Value> = found.iter().map(api::Resource::to_value).collect();
    let single = query.names.len() == 1;
    let text = match query.output {
        OutputFormat::Yaml => output::to_yaml(&values, single),
        OutputFormat::Json => output::to_json(&values, single),
        format => output::to_table(
            query.kind.name(),
            &values,
            format == OutputFormat::Wide,
            query.all_namespaces,
        ),
    };
    // Print (even an empty table) unless every name asked for was missing.
    if !found.is_empty() || missing.is_empty() {
        out.write_all(text.as_bytes())?;
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("not found: {}", missing.join(", ")))
    }
}
