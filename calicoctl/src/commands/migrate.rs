//! `datastore migrate lock|export|import|unlock`: thin shells over
//! `datastore::migrate`. The import file is read and validated whole
//! before the target is touched; a bad one exits 2 naming every problem.

use std::io::Write;

use anyhow::{Context, Result};
use datastore::ResourceStore;
use datastore::migrate::{self, Export, MigrateError};

use crate::cli::MigrateCommand;
use crate::errors::Invalid;
use crate::input;

/// One step, its input already read.
pub enum Step {
    Lock,
    Unlock,
    Export,
    Import(Box<Export>),
}

impl Step {
    /// Reads and validates the import file, if any.
    pub fn from_args(command: MigrateCommand) -> Result<Step> {
        Ok(match command {
            MigrateCommand::Lock => Step::Lock,
            MigrateCommand::Unlock => Step::Unlock,
            MigrateCommand::Export => Step::Export,
            MigrateCommand::Import(args) => {
                let mut sources = input::read_sources(&args.filename, std::io::stdin().lock())?;
                if sources.len() != 1 {
                    return Err(Invalid::new(format!(
                        "{}: an export is one file, not a directory",
                        args.filename.display()
                    ))
                    .into());
                }
                let source = sources.remove(0);
                let export = Export::parse(&source.name, &source.text)
                    .map_err(|e| Invalid::with_problems(e.summary, e.problems))?;
                Step::Import(Box::new(export))
            }
        })
    }
}

/// Runs the step against the selected datastore.
pub async fn run(store: &ResourceStore, step: Step, out: &mut dyn Write) -> Result<()> {
    match step {
        Step::Lock | Step::Unlock => {
            let ready = matches!(step, Step::Unlock);
            let ci = migrate::set_ready(store, ready)
                .await
                .context("updating ClusterInformation \"default\"")?;
            let what = if ready { "unlocked" } else { "locked" };
            writeln!(out, "Datastore {what} (cluster {}).", ci.spec.cluster_guid)?;
        }
        Step::Export => {
            let export = migrate::export(store.kv()).await.map_err(failure)?;
            out.write_all(export.render().as_bytes())?;
        }
        Step::Import(export) => {
            let done = migrate::import(store.kv(), &export)
                .await
                .map_err(failure)?;
            writeln!(
                out,
                "Imported {} and {} IPAM keys. The datastore is locked: once felix and the CNI \
                 plugin use it, run `calicoctl datastore migrate unlock` against it.",
                crate::commands::load::plural(done.resources, "resource"),
                done.ipam
            )?;
        }
    }
    Ok(())
}

/// Keeps a store error findable in the chain (for its exit status).
fn failure(e: MigrateError) -> anyhow::Error {
    match e {
        MigrateError::Store(e) => anyhow::Error::new(e),
        MigrateError::Format(e) => Invalid::with_problems(e.summary, e.problems).into(),
        other => anyhow::Error::new(other),
    }
}
