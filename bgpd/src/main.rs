//! The `bgpd` daemon: runs the speaker from a YAML configuration, installs
//! learned routes into the kernel, and answers status requests on a Unix
//! socket.
//!
//! ```text
//! bgpd run CONFIG.yaml       # the daemon, in the foreground
//! bgpd status SOCKET         # print peers and routes of a running daemon
//! bgpd status --peers SOCKET # only the peers (cheap to poll)
//! bgpd status --json SOCKET  # the peers as JSON
//! bgpd refresh SOCKET PEER   # send ROUTE-REFRESH to PEER (RFC 2918)
//! ```
//!
//! The status socket is `bgpd::status` (one request line per connection;
//! text or JSON answers). On SIGHUP the daemon reads its
//! configuration again and adds, removes and updates peers (a changed
//! filter or export community does not reset the session); other changes
//! need a restart.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bgpd::config::Config;
use bgpd::fib::{self, Fib};
use bgpd::speaker::Speaker;
use bgpd::status::{self, Request};
use tokio::net::TcpListener;
use tracing::{info, warn};

const USAGE: &str =
    "usage: bgpd run CONFIG.yaml | bgpd status [--peers|--json] SOCKET | bgpd refresh SOCKET PEER";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match args.as_slice() {
        [cmd, path] if cmd == "run" => rt.block_on(run(Path::new(path))),
        [cmd, socket] if cmd == "status" => {
            rt.block_on(request(Path::new(socket), Request::Status))
        }
        [cmd, flag, socket] if cmd == "status" && flag == "--peers" => {
            rt.block_on(request(Path::new(socket), Request::Peers))
        }
        [cmd, flag, socket] if cmd == "status" && flag == "--json" => {
            rt.block_on(request(Path::new(socket), Request::Json))
        }
        [cmd, socket, peer] if cmd == "refresh" => {
            let peer: IpAddr = peer
                .parse()
                .with_context(|| format!("{peer:?} is not an IP address"))?;
            rt.block_on(request(Path::new(socket), Request::Refresh(peer)))
        }
        _ => bail!("{USAGE}"),
    }
}

async fn run(path: &Path) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config = Config::parse(&text).with_context(|| format!("in {}", path.display()))?;
    let listener = match config.listen_addr()? {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?,
        ),
        None => None,
    };
    let mut speaker_config = config.speaker()?;
    let fib = match config.fib() {
        Some(fc) => {
            let fib = Fib::open(fc).await.context("opening the kernel table")?;
            info!(
                table = fc.table,
                protocol = fc.protocol,
                existing = fib.installed_len(),
                "kernel table opened"
            );
            // Routes of ours left in the table: an earlier bgpd ended
            // without cleaning up, and they still forward. That is a
            // graceful restart with forwarding state preserved.
            let gr = &mut speaker_config.graceful_restart;
            gr.restarting = gr.enabled && fib.installed_len() > 0;
            if gr.restarting {
                info!("restarting gracefully: R and F bits set, initial tables deferred");
            }
            Some(fib::spawn(fib).0)
        }
        None => None,
    };
    let speaker = Speaker::start(speaker_config, listener, fib);
    for prefix in &config.announce {
        speaker
            .announce(*prefix, Default::default())
            .await
            .context("announcing")?;
    }
    // The server task ends with the runtime; the watch sender lives as
    // long as the speaker.
    let (_status_tx, status_rx) = tokio::sync::watch::channel(Some(speaker.handle()));
    if let Some(path) = &config.status_socket {
        let listener = status::bind(path)
            .with_context(|| format!("binding status socket {}", path.display()))?;
        tokio::spawn(status::serve(listener, status_rx));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => match reload_peers(&speaker, &config, path).await {
                Ok(new) => config = new,
                Err(e) => warn!(error = format!("{e:#}"), "configuration not reloaded"),
            },
        }
    }
    info!("stopping");
    drop(speaker);
    // Let the sessions send their Cease NOTIFICATION.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some(path) = &config.status_socket {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Reads the configuration at `path` again and applies what changed in
/// its peers: new ones are added, missing ones removed, changed ones
/// updated (a session reset only for a changed session parameter, a new
/// policy otherwise). Returns the new configuration; other changes (AS,
/// router ID, listen address, announcements) need a restart.
async fn reload_peers(speaker: &Speaker, old: &Config, path: &Path) -> Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let new = Config::parse(&text).with_context(|| format!("in {}", path.display()))?;
    let (before, after) = (old.speaker()?.peers, new.speaker()?.peers);
    for gone in before
        .iter()
        .filter(|b| !after.iter().any(|a| a.addr == b.addr))
    {
        speaker.remove_peer(gone.addr).await?;
        info!(peer = %gone.addr, "peer removed");
    }
    for peer in after {
        match before.iter().find(|b| b.addr == peer.addr) {
            None => {
                let addr = peer.addr;
                speaker.add_peer(peer).await?;
                info!(peer = %addr, "peer added");
            }
            Some(b) if *b != peer => {
                let addr = peer.addr;
                let reset = speaker.update_peer(peer).await?;
                info!(peer = %addr, reset, "peer updated");
            }
            Some(_) => {}
        }
    }
    Ok(new)
}

/// Sends one request to the status socket and prints the answer.
async fn request(socket: &Path, request: Request) -> Result<()> {
    print!("{}", status::query(socket, &request).await?);
    Ok(())
}
