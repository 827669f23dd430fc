//! The `bgpd` daemon: runs the speaker from a YAML configuration, installs
//! learned routes into the kernel, and answers status requests on a Unix
//! socket.
//!
//! ```text
//! bgpd run CONFIG.yaml       # the daemon, in the foreground
//! bgpd status SOCKET         # print peers and routes of a running daemon
//! bgpd status --peers SOCKET # only the peers (cheap to poll)
//! ```
//!
//! On the status socket the client sends its request (`all` or `peers`)
//! and closes its side; the daemon answers and closes.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bgpd::config::Config;
use bgpd::fib::{self, Fib};
use bgpd::speaker::{self, Speaker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tracing::{info, warn};

const USAGE: &str = "usage: bgpd run CONFIG.yaml | bgpd status [--peers] SOCKET";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match args.as_slice() {
        [cmd, path] if cmd == "run" => rt.block_on(run(Path::new(path))),
        [cmd, socket] if cmd == "status" => rt.block_on(status(Path::new(socket), "all")),
        [cmd, flag, socket] if cmd == "status" && flag == "--peers" => {
            rt.block_on(status(Path::new(socket), "peers"))
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
    let config = Config::parse(&text).with_context(|| format!("in {}", path.display()))?;
    let listener = match config.listen_addr()? {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?,
        ),
        None => None,
    };
    let fib = match config.fib() {
        Some(fc) => {
            let fib = Fib::open(fc).await.context("opening the kernel table")?;
            info!(
                table = fc.table,
                protocol = fc.protocol,
                existing = fib.installed_len(),
                "kernel table opened"
            );
            Some(fib::spawn(fib).0)
        }
        None => None,
    };
    let speaker = Speaker::start(config.speaker()?, listener, fib);
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
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
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

async fn serve_status(speaker: &Speaker, mut stream: UnixStream) -> Result<()> {
    // The request, up to the client's end of stream; a client that sends
    // nothing gets everything after a second.
    let mut request = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        (&mut stream).take(64).read_to_end(&mut request),
    )
    .await;
    let peers = speaker::render_peers(&speaker.peers().await?);
    let text = if request.trim_ascii() == b"peers" {
        peers
    } else {
        let routes = speaker.routes().await?;
        format!("{peers}\n{}", speaker::render_routes(&routes))
    };
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

async fn status(socket: &Path, request: &str) -> Result<()> {
    let mut stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.write_all(request.as_bytes()).await?;
    stream.shutdown().await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    print!("{text}");
    Ok(())
}
