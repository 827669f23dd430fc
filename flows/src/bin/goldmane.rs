//! `goldmane`: the cluster's flow aggregator. Every felix whose
//! `flowLogsGoldmaneServer` names it pushes its flows here
//! (`FlowCollector.Connect`); clients read the whole cluster's flows with
//! Goldmane's `Flows` API (List, Stream, FilterHints), as from Calico's
//! Goldmane. It listens on TCP (loopback unless told otherwise: the API has
//! no authentication) and, optionally, on a Unix socket for local clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flows::{Config, Flows};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "The cluster's flow aggregator: hosts push their flows to it, clients \
                            read them over Calico Goldmane's Flows API"
)]
struct Args {
    /// TCP address of the API and the collector; `none`: no TCP listener
    #[arg(long, env = "GOLDMANE_LISTEN", default_value = "127.0.0.1:7443")]
    listen: String,
    /// A Unix socket for the same API (created, removed on exit)
    #[arg(long, env = "GOLDMANE_SOCKET")]
    socket: Option<PathBuf>,
    /// Seconds per aggregation bucket
    #[arg(long, default_value_t = Config::default().interval)]
    interval: i64,
    /// Buckets of history kept
    #[arg(long, default_value_t = Config::default().history)]
    history: i64,
    /// Flows (a key in a bucket) held at most; past that the oldest go
    #[arg(long, default_value_t = Config::default().max_flows)]
    max_flows: usize,
    /// Log level (`RUST_LOG` wins)
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("goldmane: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("goldmane: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let config = Config {
        interval: args.interval,
        history: args.history,
        max_flows: args.max_flows,
    };
    let flows = Flows::new(config).map_err(|e| format!("--interval/--history/--max-flows: {e}"))?;
    let tcp = match args.listen.as_str() {
        "none" => None,
        text => {
            let addr: SocketAddr = text
                .parse()
                .map_err(|e| format!("--listen {text:?} is not host:port: {e}"))?;
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "the flow API has no authentication: keep this address off untrusted networks");
            }
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--listen {addr}: {e}"))?;
            Some(listener)
        }
    };
    let unix = match &args.socket {
        None => None,
        Some(path) => {
            // A socket left by an earlier run would refuse the bind.
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                let _ = std::fs::remove_file(path);
            }
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|e| format!("--socket {}: {e}", path.display()))?;
            Some(listener)
        }
    };
    if tcp.is_none() && unix.is_none() {
        return Err("nothing to listen on: --listen none and no --socket".into());
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let roller = tokio::spawn(flows.clone().roll_every(Duration::from_secs(1)));
    let mut servers = tokio::task::JoinSet::new();
    if let Some(listener) = tcp {
        let addr = listener.local_addr().ok();
        tracing::info!(?addr, "listening");
        servers.spawn(flows::serve_aggregator(
            listener,
            flows.clone(),
            stopped(stop_rx.clone()),
        ));
    }
    if let Some(listener) = unix {
        tracing::info!(path = ?args.socket, "listening");
        servers.spawn(flows::serve_aggregator_unix(
            listener,
            flows.clone(),
            stopped(stop_rx.clone()),
        ));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    let result = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
        Some(done) = servers.join_next() => match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("server task: {e}")),
        },
    };
    let _ = stop_tx.send(true);
    while servers.join_next().await.is_some() {}
    roller.abort();
    if let Some(path) = &args.socket {
        let _ = std::fs::remove_file(path);
    }
    let stats = flows.stats();
    tracing::info!(?stats, "stopped");
    result
}
