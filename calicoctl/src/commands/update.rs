//! `patch` and `label`: read one resource, change its JSON form with a pure
//! edit from `crate::edit`, re-parse and re-validate it, and replace it with
//! the resourceVersion that was read (a concurrent change makes it fail).

use std::io::Write;

use anyhow::{Context, Result};
use datastore::resources::ResourceStore;
use serde_json::Value;

use crate::cli::{LabelArgs, PatchArgs};
use crate::edit::{self, LabelEdit};
use crate::errors::Invalid;

/// Which resource a read-modify-write command changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Its kind.
    pub kind: api::Kind,
    /// Its namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl Address {
    fn new(kind: &str, namespace: Option<&str>, name: &str) -> Result<Self> {
        let kind = super::kind(kind)?;
        Ok(Self {
            kind,
            namespace: super::namespace_for(kind, namespace),
            name: name.to_string(),
        })
    }

    fn describe(&self) -> String {
        super::describe(self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// A validated `patch` request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    /// The resource.
    pub address: Address,
    /// The merge patch: a JSON object.
    pub patch: Value,
}

impl PatchRequest {
    /// Parses `-p` (JSON, or YAML as kubectl also accepts) and checks it is an object.
    pub fn from_args(args: &PatchArgs) -> Result<Self> {
        let address = Address::new(&args.kind, args.namespace.as_deref(), &args.name)?;
        let patch: Value = serde_json::from_str(&args.patch).or_else(|json_err| {
            serde_yaml::from_str(&args.patch)
                .map_err(|_| Invalid::new(format!("--patch is not JSON: {json_err}")))
        })?;
        if !patch.is_object() {
            return Err(
                Invalid::new("--patch must be a JSON object, e.g. '{\"spec\":{...}}'").into(),
            );
        }
        Ok(Self { address, patch })
    }
}

/// A validated `label` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequest {
    /// The resource.
    pub address: Address,
    /// The change.
    pub edit: LabelEdit,
}

impl LabelRequest {
    /// Parses `key=value` (or `key` with `--remove`).
    pub fn from_args(args: &LabelArgs) -> Result<Self> {
        let address = Address::new(&args.kind, args.namespace.as_deref(), &args.name)?;
        let edit = LabelEdit::parse(&args.label, args.overwrite, args.remove)
            .map_err(|e| Invalid::new(e.to_string()))?;
        Ok(Self { address, edit })
    }
}

/// Applies the merge patch and writes the result back.
pub async fn patch(
    store: &ResourceStore,
    request: &PatchRequest,
    out: &mut dyn Write,
) -> Result<()> {
    modify(store, &request.address, |value| {
        edit::merge_patch(value, &request.patch);
        Ok(true)
    })
    .await?;
    writeln!(
        out,
        "Successfully patched 1 '{}' resource",
        request.address.kind
    )?;
    Ok(())
}

/// Makes the label change and writes the result back (if anything changed).
pub async fn label(
    store: &ResourceStore,
    request: &LabelRequest,
    out: &mut dyn Write,
) -> Result<()> {
    let what = request.address.describe();
    let changed = modify(store, &request.address, |value| {
        request
            .edit
            .apply(value)
            .with_context(|| format!("labelling {what}"))
    })
    .await?;
    let message = match (&request.edit, changed) {
        (LabelEdit::Remove { key }, _) => format!("Successfully removed label {key} from {what}"),
        (LabelEdit::Set { key, value, .. }, true) => {
            format!("Successfully set label {key}={value} on {what}")
        }
        (LabelEdit::Set { key, value, .. }, false) => {
            format!("{what} already has label {key}={value}")
        }
    };
    writeln!(out, "{message}")?;
    Ok(())
}

/// Reads the resource, lets `change` edit its JSON form (returning whether
/// it changed anything), then re-parses, re-validates and replaces it with
/// the resourceVersion read (unless the edit set one itself).
async fn modify(
    store: &ResourceStore,
    address: &Address,
    change: impl FnOnce(&mut Value) -> Result<bool>,
) -> Result<bool> {
    let what = address.describe();
    let current = store
        .get(address.kind, address.namespace.as_deref(), &address.name)
        .await
        .with_context(|| format!("reading {what}"))?;
    let before = current.to_value();
    let mut after = before.clone();
    if !change(&mut after)? {
        return Ok(false);
    }
    let touched = edit::changed_identity(&before, &after);
    if !touched.is_empty() {
        return Err(Invalid::new(format!("{what}: cannot change {}", touched.join(", "))).into());
    }
    if after
        .pointer("/metadata/resourceVersion")
        .is_none_or(Value::is_null)
        && let (Some(version), Some(Value::Object(meta))) = (
            current.metadata().resource_version.clone(),
            after.get_mut("metadata"),
        )
    {
        meta.insert("resourceVersion".into(), Value::String(version));
    }
    let updated = api::Resource::from_value(after).map_err(|e| {
        Invalid::with_problems(
            format!("{what} would be invalid; nothing was written"),
            vec![e.to_string()],
        )
    })?;
    updated.validate().map_err(|errors| {
        Invalid::with_problems(
            format!("{what} would be invalid; nothing was written"),
            errors.iter().map(ToString::to_string).collect(),
        )
    })?;
    store
        .replace(updated)
        .await
        .with_context(|| format!("replacing {what}"))?;
    Ok(true)
}
