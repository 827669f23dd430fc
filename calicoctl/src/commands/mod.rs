//! The subcommands. `run` dispatches; the resource commands share datastore
//! selection (`store`) and the file-reading/validation step (`load`).
//!
//! Every resource command validates all its input before writing anything.

pub mod console;
mod docs;
pub mod flows;
mod get;
mod ipam;
mod load;
mod migrate;
mod node;
mod policy;
mod promote;
mod store;
pub mod trace;
mod update;
mod write;

use std::io::Write as _;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, PolicyCommand};
use crate::errors::Invalid;

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Validate(args) => {
            let resources = load::resources(&args)?;
            writeln!(
                stdout,
                "{}: {} valid",
                args.filename.display(),
                load::plural(resources.len(), "resource")
            )?;
            for r in &resources {
                writeln!(stdout, "  {} {}", r.kind(), r.metadata().display_name())?;
            }
            Ok(())
        }
        Command::Completion(args) => {
            docs::completion(args.shell, &mut stdout);
            Ok(())
        }
        Command::Man(args) => {
            for page in docs::man(args.dir.as_deref(), &mut stdout)? {
                writeln!(stdout, "{}", page.display())?;
            }
            Ok(())
        }
        Command::Node(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let crate::cli::NodeCommand::Status(args) = args.command;
            if args.all {
                return runtime.block_on(async {
                    let store = store::open(&cli.datastore).await?;
                    node::status_all(&store, args.node.as_deref(), &mut stdout).await
                });
            }
            runtime.block_on(node::status(&args.socket, &mut stdout))
        }
        Command::Console(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(console::run(&args, &cli.datastore))
        }
        Command::Flows(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(flows::run(&args, &mut stdout))
        }
        Command::Version => {
            let config = store::select(&cli.datastore)?;
            writeln!(stdout, "Client Version:    v{}", env!("CARGO_PKG_VERSION"))?;
            writeln!(stdout, "Datastore:         {}", store::describe(&config))?;
            Ok(())
        }
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(resource_command(&cli.datastore, command, &mut stdout))
        }
    }
}

async fn resource_command(
    datastore: &crate::cli::DatastoreArgs,
    command: Command,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    // Read and validate input before connecting: bad input never needs a store.
    match command {
        Command::Apply(args) => {
            let resources = load::resources(&args.file)?;
            write::apply(&store::open(datastore).await?, resources, out).await
        }
        Command::Create(args) => {
            let resources = load::resources(&args.file)?;
            write::create(
                &store::open(datastore).await?,
                resources,
                args.skip_exists,
                out,
            )
            .await
        }
        Command::Replace(args) => {
            let resources = load::resources(&args.file)?;
            write::replace(&store::open(datastore).await?, resources, out).await
        }
        Command::Delete(args) => {
            let targets = load::delete_targets(&args)?;
            write::delete(
                &store::open(datastore).await?,
                targets,
                args.skip_not_exists,
                out,
            )
            .await
        }
        Command::Get(args) => {
            let query = get::Query::from_args(&args)?;
            get::run(&store::open(datastore).await?, &query, out).await
        }
        Command::Patch(args) => {
            let patch = update::PatchRequest::from_args(&args)?;
            update::patch(&store::open(datastore).await?, &patch, out).await
        }
        Command::Label(args) => {
            let label = update::LabelRequest::from_args(&args)?;
            update::label(&store::open(datastore).await?, &label, out).await
        }
        Command::Datastore(args) => {
            let crate::cli::DatastoreCommand::Migrate(step) = args.command;
            let step = migrate::Step::from_args(step)?;
            migrate::run(&store::open(datastore).await?, step, out).await
        }
        Command::Ipam(args) => {
            let request = ipam::Request::from_args(args.command)?;
            ipam::run(&store::open(datastore).await?, request, out).await
        }
        Command::Policy(args) => match args.command {
            PolicyCommand::Promote(args) => {
                let target = promote::Target::from_args(&args)?;
                promote::run(&store::open(datastore).await?, &target, out).await
            }
            command => {
                let request = policy::Request::from_args(command)?;
                let store = match request.needs_store() {
                    true => Some(store::open(datastore).await?),
                    false => None,
                };
                policy::run(request, store.as_ref(), out).await
            }
        },
        Command::Version
        | Command::Validate(_)
        | Command::Completion(_)
        | Command::Man(_)
        | Command::Node(_)
        | Command::Console(_)
        | Command::Flows(_) => {
            unreachable!("handled without a datastore in `run`")
        }
    }
}

/// Looks a kind up by any name calicoctl accepts (case-insensitive, plural,
/// short forms); an unknown one is invalid input.
pub(crate) fn kind(name: &str) -> Result<api::Kind, Invalid> {
    api::Kind::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = api::Kind::ALL.iter().map(|k| k.name()).collect();
        Invalid::new(format!(
            "unknown resource kind {name:?}; known kinds: {}",
            known.join(", ")
        ))
    })
}

/// The namespace a namespaced kind's command addresses: `-n`, else "default".
/// Kinds without namespaces get none whatever `-n` says.
pub(crate) fn namespace_for(kind: api::Kind, flag: Option<&str>) -> Option<String> {
    kind.namespaced()
        .then(|| flag.unwrap_or(DEFAULT_NAMESPACE).to_string())
}

/// Namespace of namespaced resources that name none, as in Calico.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

/// `Kind ns/name` or `Kind name`, as messages name a resource.
pub(crate) fn describe(kind: api::Kind, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// "Successfully <verb> 2 'IPPool' resource(s)", naming the kind when all
/// resources share one.
pub(crate) fn success(verb: &str, kinds: &[api::Kind]) -> String {
    match kinds {
        [first, rest @ ..] if rest.iter().all(|k| k == first) => {
            format!("Successfully {verb} {} '{first}' resource(s)", kinds.len())
        }
        _ => format!("Successfully {verb} {} resource(s)", kinds.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::Kind;

    #[test]
    fn kind_names_are_case_insensitive_with_plurals_and_short_forms() {
        for name in ["ippool", "IPPools", "ipp", "POOLS"] {
            assert_eq!(kind(name), Ok(Kind::IPPool), "{name}");
        }
        assert_eq!(kind("gnp"), Ok(Kind::GlobalNetworkPolicy));
        let err = kind("frobs").unwrap_err();
        assert!(
            err.summary.contains("\"frobs\"") && err.summary.contains("IPPool"),
            "{err}"
        );
    }

    #[test]
    fn only_namespaced_kinds_get_a_namespace() {
        assert_eq!(
            namespace_for(Kind::NetworkPolicy, None).as_deref(),
            Some("default")
        );
        assert_eq!(
            namespace_for(Kind::NetworkPolicy, Some("prod")).as_deref(),
            Some("prod")
        );
        assert_eq!(namespace_for(Kind::IPPool, Some("prod")), None);
    }

    #[test]
    fn success_names_the_kind_only_when_all_share_it() {
        assert_eq!(
            success("applied", &[Kind::IPPool, Kind::IPPool]),
            "Successfully applied 2 'IPPool' resource(s)"
        );
        assert_eq!(
            success("applied", &[Kind::IPPool, Kind::Node]),
            "Successfully applied 2 resource(s)"
        );
    }
}
