//! `calicoctl policy compile`: the nftables ruleset that felix would program
//! for the policy in files (or in the datastore), as nft text that loads with
//! `nft -f`; with `--diff`, the one incremental transaction that would turn
//! what the kernel holds now into it; with `--staged`, the ruleset as if the
//! staged policies were enforced. `calicoctl policy trace` reads the same
//! resources into the same model and explains one packet (module `trace`).
//! (`policy promote` is in `promote`.)

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use api::{Kind, Resource};
use datastore::ResourceStore;
use policy::Dataplane as _;

use crate::cli::{FileArgs, PolicyCommand};
use crate::errors::Invalid;

use super::load;
use super::trace::TraceRequest;

/// The kinds the compiler reads.
const POLICY_KINDS: [Kind; 14] = [
    Kind::FelixConfiguration,
    Kind::IPPool,
    Kind::Tier,
    Kind::GlobalNetworkPolicy,
    Kind::NetworkPolicy,
    Kind::KubernetesNetworkPolicy,
    Kind::StagedGlobalNetworkPolicy,
    Kind::StagedNetworkPolicy,
    Kind::StagedKubernetesNetworkPolicy,
    Kind::Profile,
    Kind::WorkloadEndpoint,
    Kind::HostEndpoint,
    Kind::NetworkSet,
    Kind::GlobalNetworkSet,
];

/// A parsed `policy compile` command.
#[derive(Debug)]
pub struct Request {
    files: Option<FileArgs>,
    node: Option<String>,
    what: What,
}

/// What a `policy` command does with the model.
#[derive(Debug)]
enum What {
    Compile { diff: bool, staged: bool },
    Trace(TraceRequest),
}

impl Request {
    pub fn from_args(command: PolicyCommand) -> Result<Self, Invalid> {
        let (model, what) = match command {
            PolicyCommand::Compile(args) => {
                let what = What::Compile {
                    diff: args.diff,
                    staged: args.staged,
                };
                (args.model, what)
            }
            PolicyCommand::Trace(args) => {
                let what = What::Trace(TraceRequest::from_args(&args)?);
                (args.model, what)
            }
            PolicyCommand::Promote(_) => {
                return Err(Invalid::new(
                    "policy promote changes the datastore; it reads no model",
                ));
            }
        };
        Ok(Self {
            files: model.filename.map(|filename: PathBuf| FileArgs {
                filename,
                namespace: model.namespace,
            }),
            node: model.node,
            what,
        })
    }

    /// Whether the resources come from the datastore (no `-f`).
    pub fn needs_store(&self) -> bool {
        self.files.is_none()
    }
}

/// Compiles and prints, or traces; `store` is used only when no `-f` was given.
pub async fn run(
    request: Request,
    store: Option<&ResourceStore>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut resources = match (&request.files, store) {
        (Some(files), _) => load::resources(files)?,
        (None, Some(store)) => from_store(store).await?,
        (None, None) => unreachable!("a request without -f is given a store"),
    };
    let config = config_for(&resources, request.node.clone());
    let (diff, staged) = match request.what {
        What::Compile { diff, staged } => (diff, staged),
        What::Trace(trace) => {
            let query = trace.query(&mut resources, request.node.as_deref())?;
            let mut model = model(&resources, config)?;
            if trace.staged {
                model = model.with_staged_enforced();
            }
            return trace.print(&model, &query, out);
        }
    };
    let mut model = model(&resources, config)?;
    if staged {
        model = model.with_staged_enforced();
    }
    let desired = policy::compile(&model);
    if diff {
        let programmed = policy::Nft::new()
            .read()
            .context("reading the programmed table (nft -j list table inet calico)")?;
        let changes = policy::diff(&programmed, &desired);
        if changes.is_empty() {
            writeln!(out, "# no changes: the kernel holds this ruleset")?;
        } else {
            write!(out, "{}", policy::render_changes(&changes))?;
        }
    } else {
        write!(out, "{}", policy::render(&desired))?;
    }
    Ok(())
}

/// The compiler's settings for `node`'s view of `resources` (every
/// endpoint's when `None`), as felix has them.
pub(crate) fn config_for(resources: &[Resource], node: Option<String>) -> policy::Config {
    felix_settings(
        resources,
        policy::Config {
            node,
            nat_outgoing: policy::NatOutgoing::of_pools(resources.iter().filter_map(|r| match r {
                Resource::IPPool(pool) => Some(&pool.spec),
                _ => None,
            })),
            ..policy::Config::default()
        },
    )
}

pub(crate) fn model(
    resources: &[Resource],
    config: policy::Config,
) -> Result<policy::Model, Invalid> {
    policy::Model::from_resources(resources, config)
        .map_err(|e| Invalid::new(format!("cannot compile: {e}")))
}

/// `config` with the settings of the FelixConfigurations among `resources`
/// that apply to its node: `default`, then `node.<node>` over it (Calico's
/// precedence, field by field).
fn felix_settings(resources: &[Resource], mut config: policy::Config) -> policy::Config {
    let mut names = vec!["default".to_string()];
    names.extend(config.node.as_ref().map(|n| format!("node.{n}")));
    for name in names {
        let spec = resources.iter().find_map(|r| match r {
            Resource::FelixConfiguration(f) if f.metadata.name == name => Some(&f.spec),
            _ => None,
        });
        if let Some(spec) = spec {
            config = config.with_felix(spec);
        }
    }
    config
}

pub(crate) async fn from_store(store: &ResourceStore) -> Result<Vec<Resource>> {
    let mut resources = Vec::new();
    for kind in POLICY_KINDS {
        resources.extend(
            store
                .list(kind, None)
                .await
                .with_context(|| format!("listing {}", kind.plural()))?,
        );
    }
    Ok(resources)
}
