//! `calicoctl policy promote KIND NAME [-n NS]`: enforce a staged policy. A
//! staged `Set` creates or replaces the enforced policy of its name with its
//! spec; a staged `Delete` deletes the enforced policy. Either way the
//! staged policy is deleted, in the same datastore transaction, and only if
//! it is still the version read: nothing is left half-done.

use std::io::Write;

use anyhow::{Context, Result, anyhow};
use api::{Kind, StagedAction};
use datastore::resources::{BatchWrite, Change, ResourceStore};

use crate::cli::PolicyPromoteArgs;
use crate::errors::Invalid;

use super::describe;

/// The staged policy to promote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: String,
}

impl Target {
    /// Checks that the kind is a staged one.
    pub fn from_args(args: &PolicyPromoteArgs) -> Result<Self, Invalid> {
        let kind = super::kind(&args.kind)?;
        if kind.enforced().is_none() {
            let staged: Vec<&str> = Kind::ALL
                .iter()
                .filter(|k| k.enforced().is_some())
                .map(|k| k.name())
                .collect();
            return Err(Invalid::new(format!(
                "policy promote: {kind} is not a staged kind; expected one of {}",
                staged.join(", ")
            )));
        }
        Ok(Self {
            kind,
            namespace: super::namespace_for(kind, args.namespace.as_deref()),
            name: args.name.clone(),
        })
    }

    fn describe(&self) -> String {
        describe(self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// Reads the staged policy and commits its promotion.
pub async fn run(store: &ResourceStore, target: &Target, out: &mut dyn Write) -> Result<()> {
    let staged_name = target.describe();
    let staged = match store
        .get(target.kind, target.namespace.as_deref(), &target.name)
        .await
    {
        Err(datastore::Error::NotFound { .. }) => {
            return Err(anyhow!("{staged_name} does not exist; nothing was changed"));
        }
        other => other.with_context(|| format!("reading {staged_name}"))?,
    };
    let (action, enforced) = staged
        .to_enforced()
        .ok_or_else(|| anyhow!("{staged_name} read back as a {}", staged.kind()))?;
    let enforced_name = describe(
        enforced.kind(),
        enforced.metadata().namespace.as_deref(),
        &enforced.metadata().name,
    );
    let delete = |kind: Kind, resource_version: Option<String>| Change::Delete {
        kind,
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        resource_version,
    };
    let delete_staged = delete(target.kind, staged.metadata().resource_version.clone());
    let (first, done) = match action {
        StagedAction::Set => (Change::Apply(enforced), "applied"),
        StagedAction::Delete => (delete(enforced.kind(), None), "deleted"),
    };
    let outcome = store
        .commit(vec![first, delete_staged])
        .await
        .with_context(|| format!("promoting {staged_name}; nothing was changed"))?;
    let BatchWrite::Refused(refused) = outcome else {
        writeln!(
            out,
            "Promoted {staged_name} (stagedAction {action:?}): {done} {enforced_name} and deleted the staged policy"
        )?;
        return Ok(());
    };
    let reasons: Vec<String> = refused
        .iter()
        .map(|r| match (r.index, &r.error) {
            (0, datastore::Error::NotFound { .. }) => format!(
                "{enforced_name} does not exist, so there is nothing to delete (`calicoctl delete` removes the staged policy)"
            ),
            (0, error) => format!("{enforced_name}: {error}"),
            (_, _) => format!("{staged_name} changed or was deleted since it was read"),
        })
        .collect();
    Err(anyhow!(
        "promoting {staged_name}: {}; nothing was changed",
        reasons.join("; ")
    ))
}
