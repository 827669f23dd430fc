//! The speaker: the owner task of the RIB. It starts one session task per
//! configured peer and a listener task, applies what sessions learn to the
//! [`Rib`], and fans the resulting Adj-RIB-Out changes back out to the
//! sessions and the Loc-RIB's best routes to the kernel.
//!
//! ```text
//!                 Speaker (handle: announce, withdraw, peers, routes)
//!                    │ mpsc, bounded (Command + oneshot reply)
//!                    ▼
//!  listener ──► ┌──────────┐ ──SessionCmd (unbounded)──► session task ×N ◄──► TCP
//!  (accept,     │  owner   │ ◄──SessionEvent (bounded)──  (Fsm, reader task per
//!  by address)  │  task    │                               connection)
//!   Incoming ──►│ Rib      │ ──FibMsg (unbounded)──► fib task ──► rtnetlink
//!               └──────────┘
//! ```
//!
//! The owner never waits on a session: it sends over unbounded channels,
//! and sessions wait on it (bounded channel), which slows their reading
//! from TCP when the RIB falls behind. Likewise the owner takes no session
//! events while more than [`crate::fib::BACKLOG`] routes wait for the
//! kernel ([`FibHandle::is_behind`]), so that a full table arriving
//! faster than the kernel takes it is not queued whole in memory. Nothing
//! is shared behind a lock; the status answered by [`Speaker::peers`] is
//! kept by the owner from the sessions' state reports.
//!
//! When a session comes up the owner sends it the whole Adj-RIB-Out and an
//! End-of-RIB, stamped with the session's epoch; afterwards each change to
//! the Loc-RIB is exported to every established peer (see
//! [`rib::Exporter`]). A ROUTE-REFRESH gets the whole Adj-RIB-Out again.
//! A session going down drops its Adj-RIB-In, which withdraws its routes
//! from the other peers and from the kernel.
//!
//! A peer with a TCP-MD5 password gets its key on the listener here, at
//! start; if that fails the peer stays Idle with the error as its last
//! error, rather than accept unsigned connections.
//!
//! The kernel table is reconciled against the Loc-RIB (removing routes
//! left by an earlier run) once every peer has sent End-of-RIB, or after
//! [`SpeakerConfig::fib_sync_after`], whichever comes first; if the FIB
//! found no such routes and no change failed, there is nothing to do.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::attr::PathAttrs;
use crate::capability::Capability;
use crate::fib::{FibHandle, FibTable};
use crate::fsm::{self, State};
use crate::open::Open;
use crate::prefix::{AfiSafi, Prefix};
use crate::rib::{self, Change, Exporter, PeerId, PeerInfo, Rib, RibConfig, Source};
use crate::session::{self, SessionCmd, SessionConfig, SessionEvent};
use crate::tcp_md5::{self, Key};

/// The BGP port (RFC 4271 §8.2.1.2).
pub const BGP_PORT: u16 = 179;

/// One configured peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub addr: IpAddr,
    /// The peer's TCP port, 179 unless testing.
    pub port: u16,
    /// Our source address toward the peer (the kernel picks if `None`).
    pub local: Option<IpAddr>,
    pub asn: u32,
    /// Only accept connections from the peer.
    pub passive: bool,
    pub next_hop_self: bool,
    pub route_reflector_client: bool,
    /// Hold time we propose (RFC 4271 §10 suggests 90 s).
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// TCP-MD5 key (RFC 2385), on our connecting socket and, for the
    /// peer's address, on the listener.
    pub password: Option<Key>,
}

impl PeerConfig {
    /// A peer with the usual defaults.
    pub fn new(addr: IpAddr, asn: u32) -> Self {
        PeerConfig {
            addr,
            port: BGP_PORT,
            local: None,
            asn,
            passive: false,
            next_hop_self: false,
            route_reflector_client: false,
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            password: None,
        }
    }
}

/// The speaker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub cluster_id: Option<Ipv4Addr>,
    pub always_compare_med: bool,
    pub peers: Vec<PeerConfig>,
    /// Reconcile the kernel table at the latest this long after start.
    pub fib_sync_after: Duration,
}

impl SpeakerConfig {
    pub fn new(asn: u32, router_id: Ipv4Addr) -> Self {
        SpeakerConfig {
            asn,
            router_id,
            cluster_id: None,
            always_compare_med: false,
            peers: Vec::new(),
            fib_sync_after: Duration::from_secs(30),
        }
    }
}

/// A peer's status, as `birdc show protocols` would list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub addr: IpAddr,
    pub asn: u32,
    pub state: State,
    /// Time in the current state.
    pub since: Duration,
    pub last_error: Option<String>,
    /// Prefixes in the Adj-RIB-In.
    pub received: usize,
    /// Of those, the ones that passed import checks.
    pub accepted: usize,
    /// Prefixes in the Adj-RIB-Out.
    pub advertised: usize,
}

/// One Loc-RIB entry, for introspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStatus {
    pub prefix: Prefix,
    /// The peer the best path came from; `None` for our own.
    pub from: Option<IpAddr>,
    pub as_path: Vec<u32>,
    /// Next hops the kernel gets (the ECMP set).
    pub next_hops: Vec<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("the speaker task has stopped")]
    Stopped,
}

#[derive(Debug)]
enum Command {
    Announce(Prefix, PathAttrs, oneshot::Sender<()>),
    Withdraw(Prefix, oneshot::Sender<()>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Routes(oneshot::Sender<Vec<RouteStatus>>),
}

/// The handle to a running speaker. Dropping it stops the speaker, its
/// sessions (with a Cease NOTIFICATION) and its listener.
#[derive(Debug)]
pub struct Speaker {
    tx: mpsc::Sender<Command>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Speaker {
    fn drop(&mut self) {
        // The owner task ends when `tx` closes and stops its sessions;
        // the listener does not see that, so it is aborted here.
        if let Some(listener) = self.tasks.get(1) {
            listener.abort();
        }
    }
}

impl Speaker {
    /// Starts the speaker: its owner task, one session per peer, and, with
    /// `listener`, the acceptor of inbound connections. With `fib`, best
    /// routes go into the kernel.
    pub fn start(
        config: SpeakerConfig,
        listener: Option<TcpListener>,
        fib: Option<FibHandle>,
    ) -> Speaker {
        let (tx, rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(256);
        let mut peers = Vec::new();
        let mut by_addr = HashMap::new();
        for (i, pc) in config.peers.iter().enumerate() {
            let id = PeerId(i as u32);
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let local = Open::new(
                config.asn,
                pc.hold_time,
                config.router_id,
                vec![
                    Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
                    Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
                    Capability::RouteRefresh,
                ],
            );
            let sc = SessionConfig {
                peer: id,
                remote: SocketAddr::new(pc.addr, pc.port),
                local: pc.local,
                md5: pc.password.clone(),
                fsm: fsm::Config {
                    local,
                    peer_as: pc.asn,
                    connect_retry: pc.connect_retry,
                    idle_hold: Duration::from_secs(1),
                    passive: pc.passive,
                },
            };
            // Without its key on the listener, a peer with a password
            // could connect in unsigned: such a peer is left Idle.
            let listener_key = match (&pc.password, &listener) {
                (Some(key), Some(l)) => protect_listener(l, pc.addr, key).err(),
                _ => None,
            };
            if let Some(e) = &listener_key {
                warn!(peer = %pc.addr, error = %e, "peer not started");
            } else {
                tokio::spawn(session::run(sc, cmd_rx, ev_tx.clone()));
                by_addr.insert(pc.addr.to_canonical(), cmd_tx.clone());
            }
            peers.push(Slot {
                config: pc.clone(),
                cmd: cmd_tx,
                state: State::Idle,
                since: Instant::now(),
                last_error: listener_key,
                epoch: None,
                advertised: 0,
                eor: false,
            });
        }
        let rib = Rib::new(RibConfig {
            asn: config.asn,
            router_id: config.router_id,
            cluster_id: config.cluster_id,
            always_compare_med: config.always_compare_med,
        });
        let owner = Owner {
            rib,
            peers,
            fib,
            fib_synced: false,
        };
        let mut tasks = vec![tokio::spawn(owner.run(rx, ev_rx, config.fib_sync_after))];
        if let Some(listener) = listener {
            tasks.push(tokio::spawn(accept(listener, by_addr)));
        }
        Speaker { tx, tasks }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SpeakerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| SpeakerError::Stopped)?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// Originates `prefix` with `attrs` (ORIGIN defaults to IGP; next hop
    /// is ours toward each peer).
    pub async fn announce(&self, prefix: Prefix, attrs: PathAttrs) -> Result<(), SpeakerError> {
        self.ask(|r| Command::Announce(prefix, attrs, r)).await
    }

    /// Stops originating `prefix`.
    pub async fn withdraw(&self, prefix: Prefix) -> Result<(), SpeakerError> {
        self.ask(|r| Command::Withdraw(prefix, r)).await
    }

    /// Every peer's status, in configuration order.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, SpeakerError> {
        self.ask(Command::Peers).await
    }

    /// The Loc-RIB, sorted by prefix.
    pub async fn routes(&self) -> Result<Vec<RouteStatus>, SpeakerError> {
        self.ask(Command::Routes).await
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Idle => "Idle",
        State::Connect => "Connect",
        State::Active => "Active",
        State::OpenSent => "OpenSent",
        State::OpenConfirm => "OpenConfirm",
        State::Established => "Established",
    }
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
            state_name(p.state),
            format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
            p.received,
            p.accepted,
            p.advertised,
            p.last_error.as_deref().unwrap_or("")
        ));
    }
    out
}

/// The Loc-RIB in the manner of `birdc show route`.
pub fn render_routes(routes: &[RouteStatus]) -> String {
    let mut out = String::new();
    for r in routes {
        let from = r.from.map_or("local".to_string(), |a| a.to_string());
        let path: Vec<String> = r.as_path.iter().map(u32::to_string).collect();
        let hops: Vec<String> = r.next_hops.iter().map(IpAddr::to_string).collect();
        out.push_str(&format!(
            "{:<43} from {:<39} as_path [{}] via [{}]\n",
            r.prefix.to_string(),
            from,
            path.join(" "),
            hops.join(", ")
        ));
    }
    out
}

/// Sets `peer`'s TCP-MD5 key on the listening socket, naming what failed.
fn protect_listener(listener: &TcpListener, peer: IpAddr, key: &Key) -> Result<(), String> {
    let v6 = listener
        .local_addr()
        .map_err(|e| format!("TCP-MD5: reading the listener's address: {e}"))?
        .is_ipv6();
    tcp_md5::set_key(listener.as_fd(), v6, peer, key)
        .map_err(|e| format!("TCP-MD5: setting the key on the listener: {e}"))
}

/// Hands inbound connections to the session of the peer they come from.
async fn accept(
    listener: TcpListener,
    by_addr: HashMap<IpAddr, mpsc::UnboundedSender<SessionCmd>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => match by_addr.get(&from.ip().to_canonical()) {
                Some(tx) => {
                    let _ = tx.send(SessionCmd::Incoming(stream));
                }
                None => debug!(%from, "connection from an unknown address closed"),
            },
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[derive(Debug)]
struct Slot {
    config: PeerConfig,
    cmd: mpsc::UnboundedSender<SessionCmd>,
    state: State,
    since: Instant,
    last_error: Option<String>,
    /// The epoch of the established session.
    epoch: Option<u64>,
    advertised: usize,
    /// End-of-RIB received (or the peer has been up without GR long enough).
    eor: bool,
}

#[derive(Debug)]
struct Owner {
    rib: Rib,
    peers: Vec<Slot>,
    fib: Option<FibHandle>,
    fib_synced: bool,
}

impl Owner {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<SessionEvent>,
        fib_sync_after: Duration,
    ) {
        let sync_at = tokio::time::sleep(fib_sync_after);
        tokio::pin!(sync_at);
        let fib = self.fib.clone();
        loop {
            // Session events wait while the kernel is far behind.
            let behind = fib.as_ref().is_some_and(FibHandle::is_behind);
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                Some(ev) = events.recv(), if !behind => self.event(ev),
                () = async { if let Some(f) = &fib { f.applied().await } }, if behind => {}
                () = &mut sync_at, if !self.fib_synced => self.sync_fib(),
            }
        }
        for slot in &self.peers {
            let _ = slot.cmd.send(SessionCmd::Stop);
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Announce(prefix, attrs, reply) => {
                let changes = self.rib.originate(prefix, attrs);
                self.fan_out(&changes);
                let _ = reply.send(());
            }
            Command::Withdraw(prefix, reply) => {
                let changes = self.rib.withdraw_local(prefix);
                self.fan_out(&changes);
                let _ = reply.send(());
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Routes(reply) => {
                let _ = reply.send(self.routes());
            }
        }
    }

    fn status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let counts = self.rib.counts(PeerId(i as u32));
                PeerStatus {
                    addr: s.config.addr,
                    asn: s.config.asn,
                    state: s.state,
                    since: s.since.elapsed(),
                    last_error: s.last_error.clone(),
                    received: counts.received,
                    accepted: counts.accepted,
                    advertised: s.advertised,
                }
            })
            .collect()
    }

    fn routes(&self) -> Vec<RouteStatus> {
        let mut out: Vec<RouteStatus> = self
            .rib
            .loc_rib()
            .map(|(prefix, path)| RouteStatus {
                prefix,
                from: match path.source() {
                    Source::Local => None,
                    Source::Peer(p) => self.rib.peer(p).map(|i| i.addr),
                },
                as_path: path
                    .route
                    .attrs
                    .as_path
                    .as_ref()
                    .map(|a| a.asns().collect())
                    .unwrap_or_default(),
                next_hops: self.rib.fib_next_hops(&prefix),
            })
            .collect();
        out.sort_by_key(|r| r.prefix);
        out
    }

    fn event(&mut self, ev: SessionEvent) {
        match ev {
            SessionEvent::State {
                peer,
                state,
                last_error,
            } => {
                if let Some(s) = self.peers.get_mut(peer.0 as usize) {
                    if s.state != state {
                        s.since = Instant::now();
                    }
                    s.state = state;
                    s.last_error = last_error;
                }
            }
            SessionEvent::Established {
                peer,
                epoch,
                negotiated,
                local_addr,
            } => {
                let Some(slot) = self.peers.get_mut(peer.0 as usize) else {
                    return;
                };
                let info = PeerInfo {
                    addr: slot.config.addr,
                    asn: negotiated.peer_as,
                    router_id: negotiated.peer_id,
                    local_v4: match local_addr {
                        IpAddr::V4(a) => Some(a),
                        IpAddr::V6(_) => None,
                    },
                    local_v6: match local_addr {
                        IpAddr::V6(a) => Some(a),
                        IpAddr::V4(_) => None,
                    },
                    families: negotiated.families.clone(),
                    next_hop_self: slot.config.next_hop_self,
                    route_reflector_client: slot.config.route_reflector_client,
                };
                slot.epoch = Some(epoch);
                slot.state = State::Established;
                slot.since = Instant::now();
                self.rib.peer_up(peer, info);
                let out = self.rib.adj_rib_out(peer);
                let slot = &mut self.peers[peer.0 as usize];
                slot.advertised = out.added;
                info!(peer = %slot.config.addr, prefixes = out.added, "sending the initial table");
                let _ = slot.cmd.send(SessionCmd::Send { epoch, out });
                let _ = slot.cmd.send(SessionCmd::EndOfRib { epoch });
            }
            SessionEvent::Update { peer, update } => {
                if let Some(family) = update.eor {
                    debug!(peer = peer.0, %family, "End-of-RIB");
                    if let Some(s) = self.peers.get_mut(peer.0 as usize) {
                        s.eor = true;
                    }
                    if self.peers.iter().all(|s| s.eor) {
                        self.sync_fib();
                    }
                    return;
                }
                let changes = self.rib.update(
                    peer,
                    &update.attrs,
                    &update.announcements(),
                    &update.withdrawals(),
                );
                self.fan_out(&changes);
            }
            SessionEvent::RouteRefresh { peer, family } => {
                let Some(epoch) = self.peers.get(peer.0 as usize).and_then(|s| s.epoch) else {
                    return;
                };
                let mut out = self.rib.adj_rib_out(peer);
                for (_, prefixes) in &mut out.announce {
                    prefixes.retain(|p| AfiSafi::of(p) == family);
                }
                out.announce.retain(|(_, v)| !v.is_empty());
                out.added = 0;
                let _ = self.peers[peer.0 as usize]
                    .cmd
                    .send(SessionCmd::Send { epoch, out });
            }
            SessionEvent::Down { peer, .. } => {
                if let Some(s) = self.peers.get_mut(peer.0 as usize) {
                    s.epoch = None;
                    s.advertised = 0;
                }
                let changes = self.rib.peer_down(peer);
                self.fan_out(&changes);
            }
        }
    }

    /// Sends each established peer its Adj-RIB-Out changes, and the kernel
    /// its new next hops.
    fn fan_out(&mut self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        for (i, slot) in self.peers.iter_mut().enumerate() {
            let Some(epoch) = slot.epoch else { continue };
            let mut e = Exporter::new(&self.rib, PeerId(i as u32));
            for c in changes {
                e.add_change(c);
            }
            let out: rib::Outgoing = e.finish();
            if out.is_empty() {
                continue;
            }
            slot.advertised = (slot.advertised + out.added).saturating_sub(out.withdraw.len());
            let _ = slot.cmd.send(SessionCmd::Send { epoch, out });
        }
        if let Some(fib) = &self.fib {
            fib.update(
                changes
                    .iter()
                    .map(|c| (c.prefix, self.rib.fib_next_hops(&c.prefix)))
                    .collect(),
            );
        }
    }

    fn sync_fib(&mut self) {
        if self.fib_synced {
            return;
        }
        self.fib_synced = true;
        // Nothing to repair: the table holds exactly what was sent.
        if let Some(fib) = self.fib.as_ref().filter(|f| f.needs_reconcile()) {
            let desired: FibTable = self
                .rib
                .loc_rib()
                .map(|(p, _)| (p, self.rib.fib_next_hops(&p)))
                .filter(|(_, hops)| !hops.is_empty())
                .map(|(p, mut hops)| {
                    hops.sort();
                    (p, hops)
                })
                .collect();
            fib.reconcile(desired);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::{AsPath, Origin};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    async fn listen(addr: IpAddr) -> (TcpListener, u16) {
        let l = TcpListener::bind(SocketAddr::new(addr, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    fn peer(addr: IpAddr, port: u16, local: IpAddr, asn: u32) -> PeerConfig {
        PeerConfig {
            port,
            local: Some(local),
            connect_retry: Duration::from_millis(300),
            ..PeerConfig::new(addr, asn)
        }
    }

    /// Polls `check` every 20 ms for up to 10 s.
    async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        for _ in 0..500 {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn route(s: &Speaker, prefix: &str) -> Option<RouteStatus> {
        s.routes()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.prefix == p(prefix))
    }

    #[test]
    fn peer_table_lists_state_uptime_counts_and_last_error() {
        let text = render_peers(&[PeerStatus {
            addr: B,
            asn: 65002,
            state: State::Active,
            since: Duration::from_secs(3725),
            last_error: Some("received Cease".into()),
            received: 3,
            accepted: 2,
            advertised: 1,
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

    #[tokio::test]
    async fn two_speakers_exchange_announce_and_withdraw_over_ebgp() {
        let (la, pa) = listen(A).await;
        let (lb, pb) = listen(B).await;
        let mut ca = SpeakerConfig::new(65001, Ipv4Addr::new(1, 1, 1, 1));
        ca.peers.push(peer(B, pb, A, 65002));
        let mut cb = SpeakerConfig::new(65002, Ipv4Addr::new(2, 2, 2, 2));
        cb.peers.push(peer(A, pa, B, 65001));
        // Both sides connect: the collision is resolved on the way up.
        let a = Speaker::start(ca, Some(la), None);
        let b = Speaker::start(cb, Some(lb), None);
        a.announce(
            p("10.1.0.0/24"),
            PathAttrs {
                origin: Some(Origin::Igp),
                communities: vec![(65001 << 16) | 5],
                ..PathAttrs::default()
            },
        )
        .await
        .unwrap();
        let r = eventually("B to learn 10.1.0.0/24", async || {
            route(&b, "10.1.0.0/24").await
        })
        .await;
        assert_eq!(r.from, Some(A));
        assert_eq!(r.as_path, vec![65001]);
        assert_eq!(r.next_hops, vec![A]);
        let status = b.peers().await.unwrap();
        assert_eq!(status[0].state, State::Established);
        assert_eq!((status[0].received, status[0].accepted), (1, 1));
        assert_eq!(a.peers().await.unwrap()[0].advertised, 1);

        // B's own route goes to A with B's AS prepended; A's is not sent back.
        b.announce(p("10.2.0.0/24"), PathAttrs::default())
            .await
            .unwrap();
        let r = eventually("A to learn 10.2.0.0/24", async || {
            route(&a, "10.2.0.0/24").await
        })
        .await;
        assert_eq!((r.from, r.as_path), (Some(B), vec![65002]));
        assert_eq!(a.peers().await.unwrap()[0].received, 1);

        a.withdraw(p("10.1.0.0/24")).await.unwrap();
        eventually("B to drop 10.1.0.0/24", async || {
            route(&b, "10.1.0.0/24").await.is_none().then_some(())
        })
        .await;
        assert_eq!(a.peers().await.unwrap()[0].advertised, 0);

        // A stops: B loses the session and A's routes.
        a.announce(p("10.3.0.0/24"), PathAttrs::default())
            .await
            .unwrap();
        eventually("B to learn 10.3.0.0/24", async || {
            route(&b, "10.3.0.0/24").await
        })
        .await;
        drop(a);
        eventually("B to drop A's routes", async || {
            route(&b, "10.3.0.0/24").await.is_none().then_some(())
        })
        .await;
        let status = b.peers().await.unwrap();
        assert_ne!(status[0].state, State::Established);
        assert!(
            status[0]
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("Cease"),
            "{:?}",
            status[0].last_error
        );
    }

    #[tokio::test]
    async fn route_reflector_passes_a_client_route_to_a_non_client_with_reflection_attributes() {
        // B reflects: A is its client, C is not. All in AS 65000.
        let (la, pa) = listen(A).await;
        let (lb, pb) = listen(B).await;
        let (lc, pc) = listen(C).await;
        let mut ca = SpeakerConfig::new(65000, Ipv4Addr::new(1, 1, 1, 1));
        ca.peers.push(peer(B, pb, A, 65000));
        let mut cb = SpeakerConfig::new(65000, Ipv4Addr::new(2, 2, 2, 2));
        cb.peers.push(PeerConfig {
            route_reflector_client: true,
            ..peer(A, pa, B, 65000)
        });
        cb.peers.push(peer(C, pc, B, 65000));
        let mut cc = SpeakerConfig::new(65000, Ipv4Addr::new(3, 3, 3, 3));
        cc.peers.push(peer(B, pb, C, 65000));
        let a = Speaker::start(ca, Some(la), None);
        let b = Speaker::start(cb, Some(lb), None);
        let c = Speaker::start(cc, Some(lc), None);
        a.announce(
            p("10.7.0.0/24"),
            PathAttrs {
                as_path: Some(AsPath::default()),
                ..PathAttrs::default()
            },
        )
        .await
        .unwrap();
        let r = eventually("C to learn A's route via B", async || {
            route(&c, "10.7.0.0/24").await
        })
        .await;
        assert_eq!(r.from, Some(B));
        // The reflector keeps A's next hop (RFC 4456 §10).
        assert_eq!(r.next_hops, vec![A]);
        // C announces: B reflects to its client A, not back to C.
        c.announce(p("10.8.0.0/24"), PathAttrs::default())
            .await
            .unwrap();
        let r = eventually("A to learn C's route via B", async || {
            route(&a, "10.8.0.0/24").await
        })
        .await;
        assert_eq!(r.next_hops, vec![C]);
        let status = b.peers().await.unwrap();
        assert_eq!((status[0].advertised, status[1].advertised), (1, 1));
    }
}
