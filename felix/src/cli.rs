//! The `felix` command line: `felix run [--config FILE] [flags]` wires
//! settings → datastore → metrics/health servers → drivers → daemon (which
//! registers the Node, syncs, calculates and applies). `src/main.rs` calls
//! [`main`] with `calc::calculate`; the calculation is a parameter so this
//! wiring is built and checked on its own.
//!
//! Exit codes: 0 after SIGTERM/SIGINT (the dataplane is left as it is), 2
//! for bad settings, 1 for anything else that stops the agent.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipnet::IpNet;
use task::Task;
use tokio::net::TcpListener;

use crate::bgp::{BgpDriver, BgpOptions, PeerMetrics};
use crate::config::{Backend, ConfigError, FLOW_LOG_GROUP, IpSetting, RunArgs, Settings};
use crate::daemon::{self, DaemonConfig, DaemonError};
use crate::flowlog::{self, run::FlowLogDriver, run::SharedLookup};
use crate::metrics::{self, Metrics};
use crate::node::{self, NodeError, Registration};
use crate::policy_driver::PolicyDriver;
use crate::state::{Calculate, Driver};

/// felix: the per-host agent (routes, workload interfaces, policy, BGP).
#[derive(Debug, Parser)]
#[command(name = "felix", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent until SIGTERM or SIGINT.
    Run(RunArgs),
}

/// What stopped `felix run`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("connecting to the datastore: {0}")]
    Datastore(#[from] datastore::Error),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "no IPv{family} address found on the default route's interface; set IP/IP6 (or --ip/--ip6) explicitly"
    )]
    NoAddress { family: u8 },
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("starting the BGP driver: {0}")]
    Bgp(#[from] crate::bgp::BgpError),
    #[error("opening the kernel dataplane: {0}")]
    Dataplane(#[from] crate::dataplane::DataplaneError),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("writing the node name to {}: {source}", path.display())]
    NodenameFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Parses the command line and runs it; the process's exit code.
pub fn main(calculate: Calculate) -> ExitCode {
    let cli = Cli::parse();
    let Command::Run(args) = cli.command;
    let settings = match Settings::load(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("felix: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %CliError::Runtime(e), "felix stopped");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings, calculate, daemon::termination())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "felix stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// The host's address of one family as configured or found.
async fn host_address(
    setting: IpSetting,
    family: u8,
    required: bool,
) -> Result<Option<IpNet>, CliError> {
    match setting {
        IpSetting::None => Ok(None),
        IpSetting::Address(net) => Ok(Some(net)),
        IpSetting::Autodetect => match node::autodetect(family).await? {
            Some(net) => {
                tracing::info!(%net, "autodetected this host's IPv{family} address");
                Ok(Some(net))
            }
            None if required => Err(CliError::NoAddress { family }),
            None => {
                tracing::warn!("no IPv{family} address found to register");
                Ok(None)
            }
        },
    }
}

/// Writes the node name into `path` (its directory made if missing), for
/// the CNI plugin's `nodename_file`: into a temporary file renamed over
/// `path`, so that a plugin never reads half a name.
fn write_nodename(path: &Path, node: &str) -> Result<(), CliError> {
    let failed = |source| CliError::NodenameFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, node).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)?;
    tracing::info!(path = %path.display(), "wrote the node name");
    Ok(())
}

/// The flow store, its API on `addr` and the reader of `lookup`'s model,
/// pushing to the cluster's aggregator at `goldmane` if set: the tasks to
/// hold.
async fn start_flow_logs(
    addr: SocketAddr,
    interval: Duration,
    goldmane: Option<&str>,
    lookup: SharedLookup,
    metrics: Arc<Metrics>,
) -> Result<Vec<Task<()>>, CliError> {
    let what = "the flow API";
    let flows = flows::Flows::new(flows::Config::default()).map_err(|e| CliError::Bind {
        what,
        addr,
        source: std::io::Error::other(e.to_string()),
    })?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Bind { what, addr, source })?;
    tracing::info!(%addr, "flow API listening");
    let pusher = goldmane
        .map(|server| flows::push::Pusher::spawn(server, flows::push::DEFAULT_CAPACITY))
        .transpose()
        .map_err(|e| CliError::Bind {
            what: "the flow aggregator",
            addr,
            source: std::io::Error::other(e.to_string()),
        })?;
    let api = flows.clone();
    let tasks = vec![
        Task::spawn(async move {
            if let Err(e) = flows::serve(listener, api, std::future::pending()).await {
                tracing::error!(error = %e, "flow API stopped");
            }
        }),
        Task::spawn(flows.clone().roll_every(Duration::from_secs(1))),
        Task::spawn(flowlog::run::run(
            lookup,
            flows,
            pusher,
            FLOW_LOG_GROUP,
            interval,
            metrics,
        )),
    ];
    Ok(tasks)
}

/// Binds `addr` and serves metrics and health on it.
async fn serve(
    what: &'static str,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<Task<()>, CliError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Bind { what, addr, source })?;
    tracing::info!(%addr, "serving {what}");
    Ok(Task::spawn(metrics::serve(listener, metrics)))
}

/// `felix run` with resolved settings, until `shutdown`.
pub async fn run(
    settings: Settings,
    calculate: Calculate,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CliError> {
    tracing::info!(node = settings.node_name, backend = ?settings.backend, "felix starting");
    let bgp = settings.backend == Backend::Bird;
    let registration = Registration {
        node: settings.node_name.clone(),
        ipv4: host_address(settings.ip, 4, bgp).await?,
        ipv6: host_address(settings.ip6, 6, false).await?,
        as_number: settings.as_number,
    };
    if let Some(path) = &settings.nodename_file {
        write_nodename(path, &settings.node_name)?;
    }
    let store = datastore::connect(&settings.datastore).await?;
    let metrics = Arc::new(Metrics::new());
    // The servers and the status poller; dropped (aborted) once the daemon ends.
    let mut servers = vec![serve("metrics", settings.metrics_addr, metrics.clone()).await?];
    servers.push(Task::spawn(crate::memory::trim_every(
        crate::memory::TRIM_EVERY,
    )));
    if settings.health_addr != settings.metrics_addr {
        servers.push(serve("health", settings.health_addr, metrics.clone()).await?);
    }

    // The IPAM leak collector, active on whichever felix holds its lease.
    servers.push(Task::spawn(crate::ipam_gc::run(
        store.clone(),
        settings.node_name.clone(),
        metrics.clone(),
    )));

    // Drivers; the daemon applies them by their `Stage` each pass.
    let mut drivers: Vec<Box<dyn Driver>> =
        crate::dataplane::open_all(&crate::dataplane::Namespace::Current).await?;
    drivers.push(Box::new(
        PolicyDriver::netlink().with_metrics(metrics.clone()),
    ));
    if bgp {
        let driver = BgpDriver::new(BgpOptions {
            status_socket: Some(settings.bgp_socket.clone()),
            ..BgpOptions::default()
        })?;
        let (peers, task) = PeerMetrics::spawn(driver.status_source(), Duration::from_secs(5));
        metrics.set_bgp_status(peers);
        servers.push(task);
        servers.push(Task::spawn(crate::node_status::run(
            store.clone(),
            settings.node_name.clone(),
            driver.status_source(),
        )));
        drivers.push(Box::new(driver));
    }

    // The model's chains, for rule counters and flow logs.
    let lookup = SharedLookup::default();
    drivers.push(Box::new(FlowLogDriver::new(lookup.clone())));
    servers.push(crate::rule_metrics::spawn(
        lookup.clone(),
        metrics.clone(),
        settings.flow_logs_flush_interval,
    ));
    if let Some(addr) = settings.flows_addr {
        let interval = settings.flow_logs_flush_interval;
        let goldmane = settings.flow_logs_goldmane_server.as_deref();
        servers.extend(start_flow_logs(addr, interval, goldmane, lookup, metrics.clone()).await?);
    }

    let config = DaemonConfig::new(settings.host(), Some(registration));
    let result = daemon::run(config, store, calculate, drivers, metrics, shutdown).await;
    drop(servers);
    result.map_err(CliError::from)
}
