//! The `bgpd` daemon: runs the speaker from a YAML configuration, installs
//! learned routes into the kernel, and answers status requests on a Unix
//! socket.
//!
//! ```text
//! bgpd run CONFIG.yaml       # the daemon, in the foreground
//! bgpd status SOCKET         # print peers and routes of a running daemon
//! bgpd status --peers SOCKET # only the peers (cheap to poll)
//! bgpd refresh SOCKET PEER   # send ROUTE-REFRESH to PEER (RFC 2918)
//! ```
//!
//! The status socket takes one request line (ended by a newline or by the
//! client closing its side): `status` (also what an empty request means),
//! `peers`, or `refresh ADDRESS`; it answers in text and closes. An answer
//! that starts with `error:` is a failure. On SIGHUP the daemon reads its
//! configuration again and adds, removes and updates peers (a changed
//! filter or export community does not reset the session); other changes
//! need a restart.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bgpd::config::Config;
use bgpd::fib::{self, Fib};
use bgpd::speaker::{self, Speaker};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tracing::{info, warn};

const USAGE: &str =
    "usage: bgpd run CONFIG.yaml | bgpd status [--peers] SOCKET | bgpd refresh SOCKET PEER";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match args.as_slice() {
        [cmd, path] if cmd == "run" => rt.block_on(run(Path::new(path))),
        [cmd, socket] if cmd == "status" => rt.block_on(request(Path::new(socket), "status")),
        [cmd, flag, socket] if cmd == "status" && flag == "--peers" => {
            rt.block_on(request(Path::new(socket), "peers"))
        }
        [cmd, socket, peer] if cmd == "refresh" => {
            let peer: IpAddr = peer
                .parse()
                .with_context(|| format!("{peer:?} is not an IP address"))?;
            rt.block_on(request(Path::new(socket), &format!("refresh {peer}")))
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
    let status_socket = match &config.status_socket {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            Some(
                UnixListener::bind(path)
                    .with_context(|| format!("binding status socket {}", path.display()))?,
            )
        }
        None => None,
    };
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
            conn = async {
                match &status_socket {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => match conn {
                Ok((stream, _)) => {
                    if let Err(e) = serve_status(&speaker, stream).await {
                        warn!(error = %e, "status request failed");
                    }
                }
                Err(e) => warn!(error = %e, "status socket accept failed"),
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

async fn serve_status(speaker: &Speaker, stream: UnixStream) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // A client that sends nothing gets the status, as before requests.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        BufReader::new(read).read_line(&mut line),
    )
    .await;
    let words: Vec<&str> = line.split_whitespace().collect();
    let text = match words.as_slice() {
        ["peers"] => speaker::render_peers(&speaker.peers().await?),
        [] | ["status"] => {
            let peers = speaker.peers().await?;
            let routes = speaker.routes().await?;
            format!(
                "{}\n{}",
                speaker::render_peers(&peers),
                speaker::render_routes(&routes)
            )
        }
        ["refresh", peer] => match peer.parse::<IpAddr>() {
            Ok(addr) => match speaker.refresh(addr).await {
                Ok(families) => {
                    let names: Vec<String> = families.iter().map(ToString::to_string).collect();
                    format!("ROUTE-REFRESH sent to {addr} for {}\n", names.join(", "))
                }
                Err(e) => format!("error: {e}\n"),
            },
            Err(_) => format!("error: {peer:?} is not an IP address\n"),
        },
        _ => format!("error: unknown request {:?}\n", line.trim()),
    };
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await?;
    Ok(())
}

/// Sends one request line to the status socket and prints the answer.
async fn request(socket: &Path, line: &str) -> Result<()> {
    let mut stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.write_all(format!("{line}\n").as_bytes()).await?;
    stream.shutdown().await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    if let Some(e) = text.strip_prefix("error: ") {
        bail!("{}", e.trim_end());
    }
    print!("{text}");
    Ok(())
}
