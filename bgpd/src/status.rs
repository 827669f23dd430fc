//! The status socket: a Unix socket that answers one request per
//! connection about a running [`Speaker`](crate::speaker::Speaker), for
//! `bgpd status`, felix's in-process speaker and `calicoctl node status`.
//!
//! A request is one line, ended by a newline or by the client closing its
//! side ([`Request`]): `status` (also what an empty request means), `peers`,
//! `refresh ADDRESS`, or `json` (the peers as a JSON [`Report`]). The
//! answer is text (`bgpd status` prints it) or JSON, then the server
//! closes; an answer that starts with `error: ` is a failure, as when no
//! speaker runs.
//!
//! [`serve`] takes a [`Source`], a watch of the speaker to report on, so
//! that whoever restarts the speaker (felix on a new AS) keeps one socket.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::warn;

use crate::speaker::{PeerStatus, RouteStatus, SpeakerError, SpeakerHandle};

/// The speaker a socket reports on; `None` while none runs.
pub type Source = watch::Receiver<Option<SpeakerHandle>>;

/// How long the server waits for a request line before taking the
/// silence as `status`.
const REQUEST_WAIT: Duration = Duration::from_secs(1);

/// A request to the status socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Peers and the Loc-RIB as text.
    Status,
    /// Peers only, as text.
    Peers,
    /// Send ROUTE-REFRESH to a peer.
    Refresh(IpAddr),
    /// Peers as a JSON [`Report`].
    Json,
}

impl Request {
    /// Reads a request line; an empty one is [`Request::Status`].
    pub fn parse(line: &str) -> Result<Request, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] | ["status"] => Ok(Request::Status),
            ["peers"] => Ok(Request::Peers),
            ["json"] => Ok(Request::Json),
            ["refresh", peer] => peer
                .parse()
                .map(Request::Refresh)
                .map_err(|_| format!("{peer:?} is not an IP address")),
            _ => Err(format!("unknown request {:?}", line.trim())),
        }
    }

    /// The request line, as [`Request::parse`] reads it.
    pub fn line(&self) -> String {
        match self {
            Request::Status => "status".into(),
            Request::Peers => "peers".into(),
            Request::Json => "json".into(),
            Request::Refresh(addr) => format!("refresh {addr}"),
        }
    }
}

/// The JSON answer: every peer in configuration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub peers: Vec<PeerReport>,
}

/// One peer in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    pub addr: IpAddr,
    pub asn: u32,
    /// What kind of peer (felix: `node-to-node mesh`, `global`, `node specific`).
    pub description: Option<String>,
    /// The RFC 4271 state: `Idle`, `Connect`, `Active`, `OpenSent`,
    /// `OpenConfirm` or `Established`.
    pub state: String,
    /// Seconds in that state.
    pub since_secs: u64,
    pub last_error: Option<String>,
    pub received: usize,
    pub accepted: usize,
    pub advertised: usize,
    /// Established sessions that ended since the peer was configured
    /// (absent from older felix: 0).
    #[serde(default)]
    pub flaps: u64,
}

impl From<&PeerStatus> for PeerReport {
    fn from(p: &PeerStatus) -> Self {
        PeerReport {
            addr: p.addr,
            asn: p.asn,
            description: p.description.clone(),
            state: p.state.to_string(),
            since_secs: p.since.as_secs(),
            last_error: p.last_error.clone(),
            received: p.received,
            accepted: p.accepted,
            advertised: p.advertised,
            flaps: p.flaps,
        }
    }
}

/// Why a session in `state` is not Established, in plain words, from the
/// speaker's `last_error`: what an operator checks first. Empty once
/// Established.
pub fn explain(state: &str, last_error: Option<&str>) -> String {
    if state == "Established" {
        return String::new();
    }
    let error = last_error.unwrap_or_default();
    let e = error.to_lowercase();
    let said = |what: &str| -> String {
        if e.starts_with("received") {
            format!("the peer refused us: {what}")
        } else {
            format!("we refused the peer: {what}")
        }
    };
    if let Some(rest) = e.strip_prefix("tcp connection failed: ") {
        return if rest.contains("refused") {
            "TCP 179 refused: nothing listens for BGP at the peer (is its BGP speaker running?)"
                .into()
        } else if rest.contains("no route") || rest.contains("unreachable") {
            "TCP 179 unreachable: no route to the peer's address".into()
        } else if rest.contains("timed out") {
            "TCP 179 unreachable: the peer does not answer (a firewall, or the wrong address?)"
                .into()
        } else {
            format!(
                "TCP 179 unreachable: {}",
                &error["TCP connection failed: ".len()..]
            )
        };
    }
    if e.contains("bad peer as") {
        return said(
            "AS mismatch (the AS number one side expects is not the other's: check both asNumbers)",
        );
    }
    if e.contains("bad bgp identifier") {
        return said("router ID conflict (both ends have the same BGP identifier)");
    }
    if e.contains("unacceptable hold time") {
        return said("hold time not acceptable");
    }
    if e.contains("hold timer expired") {
        return "hold timer expired: the peer stopped answering (keepalives lost)".into();
    }
    if e.contains("connection rejected") || e.contains("peer de-configured") {
        return "the peer rejected the session: does it have this host's address as a peer (wrong source address?)".into();
    }
    if e.contains("administrative shutdown") {
        return "the peer shut the session down".into();
    }
    if e == "connection lost" {
        return "the TCP connection dropped: the peer went away, or closed it because it does not know this host's address (wrong source address?)".into();
    }
    if !error.is_empty() {
        return error.to_string();
    }
    match state {
        "Idle" => "not started".into(),
        "Connect" | "Active" => "connecting".into(),
        _ => "opening the session".into(),
    }
}

/// Why a query to the status socket failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("connecting to the status socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the status socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server answered with `error: …`.
    #[error("{0}")]
    Refused(String),
    #[error("the status socket's JSON answer: {0}")]
    Json(#[from] serde_json::Error),
}

/// Binds the status socket at `path`, replacing a stale one.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path)
}

/// Answers requests on `listener` about the speaker `source` holds, each
/// connection in its own task; returns only if accepting fails for good.
pub async fn serve(listener: UnixListener, source: Source) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let speaker = source.borrow().clone();
                tokio::spawn(async move {
                    if let Err(e) = reply(speaker, stream).await {
                        warn!(error = %e, "status request failed");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "status socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn reply(speaker: Option<SpeakerHandle>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // A client that sends nothing gets the status, as before requests.
    let _ = tokio::time::timeout(REQUEST_WAIT, BufReader::new(read).read_line(&mut line)).await;
    let text = match (Request::parse(&line), speaker) {
        (Err(e), _) => format!("error: {e}\n"),
        (Ok(_), None) => "error: BGP is not running\n".to_owned(),
        (Ok(request), Some(speaker)) => answer(&speaker, &request)
            .await
            .unwrap_or_else(|e| format!("error: {e}\n")),
    };
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

/// The answer to `request` about `speaker`.
pub async fn answer(speaker: &SpeakerHandle, request: &Request) -> Result<String, SpeakerError> {
    Ok(match request {
        Request::Peers => render_peers(&speaker.peers().await?),
        Request::Status => {
            let peers = speaker.peers().await?;
            let routes = speaker.routes().await?;
            format!("{}\n{}", render_peers(&peers), render_routes(&routes))
        }
        Request::Refresh(addr) => {
            let families = speaker.refresh(*addr).await?;
            let names: Vec<String> = families.iter().map(ToString::to_string).collect();
            format!("ROUTE-REFRESH sent to {addr} for {}\n", names.join(", "))
        }
        Request::Json => {
            let peers = speaker.peers().await?;
            let report = Report {
                peers: peers.iter().map(PeerReport::from).collect(),
            };
            // Plain data: serialising it cannot fail.
            let mut text = serde_json::to_string(&report).unwrap_or_default();
            text.push('\n');
            text
        }
    })
}

/// Sends `request` to the status socket at `path` and returns the answer
/// (an `error: …` answer as [`QueryError::Refused`]).
pub async fn query(path: &Path, request: &Request) -> Result<String, QueryError> {
    let io = |source| QueryError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|source| QueryError::Connect {
            path: path.to_owned(),
            source,
        })?;
    stream
        .write_all(format!("{}\n", request.line()).as_bytes())
        .await
        .map_err(io)?;
    stream.shutdown().await.map_err(io)?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.map_err(io)?;
    match text.strip_prefix("error: ") {
        Some(e) => Err(QueryError::Refused(e.trim_end().to_owned())),
        None => Ok(text),
    }
}

/// The peers' [`Report`] from the status socket at `path`.
pub async fn query_report(path: &Path) -> Result<Report, QueryError> {
    let text = query(path, &Request::Json).await?;
    Ok(serde_json::from_str(&text)?)
}

/// Peers as a table in the manner of `birdc show protocols`.
pub fn render_peers(peers: &[PeerStatus]) -> String {
    let mut out = format!(
        "{:<40} {:<10} {:<12} {:>9} {:>9} {:>9} {:>10}  {}\n",
        "Peer", "AS", "State", "Since", "Received", "Accepted", "Advertised", "Info"
    );
    for p in peers {
        let s = p.since.as_secs();
        out.push_str(&format!(
            "{:<40} {:<10} {:<12} {:>9} {:>9} {:>9} {:>10}  {}\n",
            p.addr.to_string(),
            p.asn,
            p.state.as_str(),
            format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
            p.received,
            p.accepted,
            p.advertised,
            p.last_error.as_deref().unwrap_or("")
        ));
    }
    out
}

/// The Loc-RIB in the manner of `birdc show route`; a reflected route
/// also shows its ORIGINATOR_ID and CLUSTER_LIST.
pub fn render_routes(routes: &[RouteStatus]) -> String {
    let mut out = String::new();
    for r in routes {
        let from = r.from.map_or("local".to_string(), |a| a.to_string());
        let path: Vec<String> = r.as_path.iter().map(u32::to_string).collect();
        let hops: Vec<String> = r.next_hops.iter().map(IpAddr::to_string).collect();
        out.push_str(&format!(
            "{:<43} from {:<39} as_path [{}] via [{}]",
            r.prefix.to_string(),
            from,
            path.join(" "),
            hops.join(", ")
        ));
        if let Some(id) = r.originator_id {
            out.push_str(&format!(" originator {id}"));
        }
        if !r.cluster_list.is_empty() {
            let ids: Vec<String> = r.cluster_list.iter().map(Ipv4Addr::to_string).collect();
            out.push_str(&format!(" cluster_list [{}]", ids.join(" ")));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_down_is_explained_in_plain_words() {
        let cases = [
            (
                "Active",
                Some("TCP connection failed: Connection refused (os error 111)"),
                "TCP 179 refused",
            ),
            (
                "Connect",
                Some("TCP connection failed: No route to host (os error 113)"),
                "TCP 179 unreachable: no route",
            ),
            (
                "Idle",
                Some("received OPEN Message Error / Bad Peer AS (2/2)"),
                "the peer refused us: AS mismatch",
            ),
            (
                "Idle",
                Some("sent OPEN Message Error / Bad Peer AS (2/2)"),
                "we refused the peer: AS mismatch",
            ),
            ("Idle", Some("hold timer expired"), "hold timer expired"),
            ("Idle", Some("connection lost"), "wrong source address?"),
            (
                "Idle",
                Some("received Cease / Connection Rejected (6/5)"),
                "wrong source address?",
            ),
            ("Active", None, "connecting"),
        ];
        for (state, error, words) in cases {
            let why = explain(state, error);
            assert!(why.contains(words), "{state} {error:?}: {why}");
        }
        assert_eq!(explain("Established", Some("hold timer expired")), "");
    }

    #[test]
    fn request_lines_parse_back_to_the_request() {
        let addr: IpAddr = "10.0.0.2".parse().unwrap();
        for r in [
            Request::Status,
            Request::Peers,
            Request::Json,
            Request::Refresh(addr),
        ] {
            assert_eq!(Request::parse(&r.line()), Ok(r));
        }
        assert_eq!(Request::parse(" \n"), Ok(Request::Status));
        assert_eq!(
            Request::parse("refresh bogus"),
            Err("\"bogus\" is not an IP address".into())
        );
        assert_eq!(
            Request::parse("reboot now\n"),
            Err("unknown request \"reboot now\"".into())
        );
    }

    #[tokio::test]
    async fn a_socket_without_a_speaker_answers_that_bgp_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bgp.sock");
        let (_tx, rx) = watch::channel(None);
        tokio::spawn(serve(bind(&path).unwrap(), rx));
        let e = query_report(&path).await.unwrap_err();
        assert!(
            matches!(&e, QueryError::Refused(m) if m == "BGP is not running"),
            "{e}"
        );
        let e = query(&dir.path().join("missing.sock"), &Request::Peers)
            .await
            .unwrap_err();
        assert!(matches!(e, QueryError::Connect { .. }), "{e}");
    }

    #[test]
    fn peer_table_lists_state_uptime_counts_and_last_error() {
        let text = render_peers(&[PeerStatus {
            addr: "127.0.0.2".parse().unwrap(),
            asn: 65002,
            description: None,
            state: crate::fsm::State::Active,
            since: Duration::from_secs(3725),
            last_error: Some("received Cease".into()),
            received: 3,
            accepted: 2,
            advertised: 1,
            flaps: 0,
        }]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Peer "));
        let fields: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            fields,
            [
                "127.0.0.2",
                "65002",
                "Active",
                "01:02:05",
                "3",
                "2",
                "1",
                "received",
                "Cease"
            ]
        );
    }
}
