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
//!  (accept)     │  owner   │ ◄──SessionEvent (bounded)──  (Fsm, reader task per
//!   Incoming    │  task    │                               connection)
//!   Command ──► │ Rib      │ ──FibMsg (unbounded)──► fib task ──► rtnetlink
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
//! Each peer's [`PeerPolicy`] (import/export filters, communities added on
//! export) lives in the RIB. [`Speaker::set_policy`] replaces it while
//! running: the RIB re-evaluates the peer's Adj-RIB-In, the other peers get
//! the resulting changes, and the peer itself the difference between its
//! Adj-RIB-Out before and after. [`Speaker::refresh`] asks a peer for its
//! routes again with ROUTE-REFRESH (RFC 2918).
//!
//! Peers come and go while running ([`Speaker::add_peer`],
//! [`Speaker::remove_peer`], [`Speaker::update_peer`]), each under a new
//! [`PeerId`] that is never reused, so that late events of a removed
//! peer's session find nothing; the other sessions are not touched. The
//! listener hands every connection to the owner, which passes it to the
//! session of the peer it comes from.
//!
//! A peer with a TCP-MD5 password gets its key on the listener when it is
//! added; if that fails the peer stays Idle with the error as its last
//! error, rather than accept unsigned connections.
//!
//! The kernel table is reconciled against the Loc-RIB (removing routes
//! left by an earlier run) once every peer has sent End-of-RIB, or after
//! [`SpeakerConfig::fib_sync_after`], whichever comes first; if the FIB
//! found no such routes and no change failed, there is nothing to do.
//!
//! Graceful restart (RFC 4724, see [`crate::graceful_restart`]): a peer
//! whose session is lost without a NOTIFICATION keeps its routes, as
//! stale, for as long as each peer's [`gr::Helper`] says; the owner keeps
//! one GR timer per peer. After our own restart
//! ([`GrConfig::restarting`]) the initial table and End-of-RIB to each peer
//! wait until every peer not itself restarting has sent End-of-RIB, or
//! until `fib_sync_after`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use task::Task;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::attr::PathAttrs;
use crate::capability::{Capability, GracefulRestart};
use crate::fib::{FibHandle, FibTable};
use crate::filter::PeerPolicy;
use crate::fsm::{self, State};
use crate::graceful_restart::{self as gr, GrConfig};
use crate::notification::cease;
use crate::open::Open;
use crate::prefix::{AfiSafi, Prefix};
use crate::rib::{self, Change, Exporter, PeerId, PeerInfo, Rib, RibConfig, Source};
use crate::session::{self, SessionCmd, SessionConfig, SessionEvent};
use crate::tcp_md5::{self, Key};

/// The BGP port (RFC 4271 §8.2.1.2).
pub const BGP_PORT: u16 = 179;

/// How long a new session waits, at most, for the one it replaces to
/// close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

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
    /// Import/export filters and communities added on export.
    pub policy: PeerPolicy,
    /// What kind of peer this is, for status (felix: "node-to-node mesh",
    /// "global", "node specific").
    pub description: Option<String>,
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
            policy: PeerPolicy::default(),
            description: None,
        }
    }

    /// Whether `other` differs from `self` in anything the session was
    /// set up with (everything but the policy and the description), so
    /// that going from one to the other needs a new session.
    pub fn session_differs(&self, other: &PeerConfig) -> bool {
        let plain = |c: &PeerConfig| PeerConfig {
            policy: PeerPolicy::default(),
            description: None,
            ..c.clone()
        };
        plain(self) != plain(other)
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
    /// Reconcile the kernel table at the latest this long after start
    /// (and, after a graceful restart, send the initial tables).
    pub fib_sync_after: Duration,
    /// Graceful restart (RFC 4724), both roles.
    pub graceful_restart: GrConfig,
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
            graceful_restart: GrConfig::default(),
        }
    }
}

/// A peer's status, as `birdc show protocols` would list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub addr: IpAddr,
    pub asn: u32,
    /// [`PeerConfig::description`].
    pub description: Option<String>,
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
    /// Route reflection (RFC 4456): the originator and the clusters the
    /// route has been reflected through, nearest first.
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("the speaker task has stopped")]
    Stopped,
    #[error("{0} is not a configured peer")]
    UnknownPeer(IpAddr),
    #[error("{0} is already a configured peer")]
    DuplicatePeer(IpAddr),
    #[error("the session with {0} is not established")]
    NotEstablished(IpAddr),
    #[error("{0} did not advertise the route refresh capability")]
    NoRouteRefresh(IpAddr),
}

#[derive(Debug)]
enum Command {
    Announce(Prefix, PathAttrs, oneshot::Sender<()>),
    Withdraw(Prefix, oneshot::Sender<()>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Routes(oneshot::Sender<Vec<RouteStatus>>),
    SetPolicy(
        IpAddr,
        Box<PeerPolicy>,
        oneshot::Sender<Result<(), SpeakerError>>,
    ),
    Refresh(IpAddr, oneshot::Sender<Result<Vec<AfiSafi>, SpeakerError>>),
    AddPeer(Box<PeerConfig>, oneshot::Sender<Result<(), SpeakerError>>),
    RemovePeer(IpAddr, oneshot::Sender<Result<(), SpeakerError>>),
    UpdatePeer(Box<PeerConfig>, oneshot::Sender<Result<bool, SpeakerError>>),
    /// An inbound connection, from the listener.
    Incoming(TcpStream, SocketAddr),
}

/// The handle to a running speaker. Dropping it stops the speaker, its
/// sessions (with a Cease NOTIFICATION) and its listener;
/// [`Speaker::abandon`] stops it without NOTIFICATION, for a restart.
#[derive(Debug)]
pub struct Speaker {
    /// Its owner task ends by itself once this closes, after stopping its
    /// sessions with a Cease; so it is not held here.
    tx: mpsc::Sender<Command>,
    /// Set by [`Speaker::abandon`].
    abandon: watch::Sender<bool>,
    /// The acceptor of inbound connections, which does not see `tx` close:
    /// aborted with the speaker.
    _listener: Option<Task<()>>,
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
        let listener = listener.map(Arc::new);
        let mut owner = Owner {
            rib: Rib::new(RibConfig {
                asn: config.asn,
                router_id: config.router_id,
                cluster_id: config.cluster_id,
                always_compare_med: config.always_compare_med,
            }),
            peers: BTreeMap::new(),
            next_id: 0,
            asn: config.asn,
            router_id: config.router_id,
            events: ev_tx,
            listener: listener.clone(),
            closing: HashMap::new(),
            fib,
            fib_synced: false,
            deferring: config.graceful_restart.enabled && config.graceful_restart.restarting,
            gr: config.graceful_restart.clone(),
        };
        for pc in &config.peers {
            if let Err(e) = owner.add_peer(pc.clone()) {
                warn!(peer = %pc.addr, error = %e, "peer not started");
            }
        }
        let (abandon, abandoned) = watch::channel(false);
        tokio::spawn(owner.run(rx, ev_rx, abandoned, config.fib_sync_after));
        let listener = listener.map(|l| Task::spawn(accept(l, tx.downgrade())));
        Speaker {
            tx,
            abandon,
            _listener: listener,
        }
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

    /// Stops the speaker for a restart: every session drops its connection
    /// without a NOTIFICATION, as if the process had died, so peers that
    /// help us restart (RFC 4724) keep our routes until we are back; the
    /// kernel routes stay. Dropping the speaker instead sends a Cease.
    pub fn abandon(self) {
        self.abandon.send_replace(true);
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

    /// Replaces the policy of the peer at `peer`: its Adj-RIB-In is
    /// filtered again (no ROUTE-REFRESH needed) and what it is sent is
    /// brought in line with the new export filter and communities.
    pub async fn set_policy(&self, peer: IpAddr, policy: PeerPolicy) -> Result<(), SpeakerError> {
        self.ask(|r| Command::SetPolicy(peer, Box::new(policy), r))
            .await?
    }

    /// Sends ROUTE-REFRESH (RFC 2918) to `peer` for every negotiated
    /// family, which are returned; the peer then sends its routes again.
    pub async fn refresh(&self, peer: IpAddr) -> Result<Vec<AfiSafi>, SpeakerError> {
        self.handle().refresh(peer).await
    }

    /// Adds a peer while running: its session starts, and the listener
    /// accepts its connections (with its TCP-MD5 key, if any). The other
    /// sessions are not touched.
    pub async fn add_peer(&self, peer: PeerConfig) -> Result<(), SpeakerError> {
        self.ask(|r| Command::AddPeer(Box::new(peer), r)).await?
    }

    /// Removes a peer: its session closes with Cease / Peer De-configured
    /// (RFC 4486), and its routes leave the Loc-RIB, the kernel and the
    /// other peers.
    pub async fn remove_peer(&self, peer: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|r| Command::RemovePeer(peer, r)).await?
    }

    /// Replaces the configuration of the peer at `peer.addr`. If a session
    /// parameter changed ([`PeerConfig::session_differs`]) only that
    /// peer's session is reset (Cease / Other Configuration Change) and
    /// `true` returned; a change of policy alone goes through
    /// [`Speaker::set_policy`], without a reset.
    pub async fn update_peer(&self, peer: PeerConfig) -> Result<bool, SpeakerError> {
        self.ask(|r| Command::UpdatePeer(Box::new(peer), r)).await?
    }

    /// A cloneable handle for status and ROUTE-REFRESH requests (what the
    /// status socket serves); it does not keep the speaker running.
    pub fn handle(&self) -> SpeakerHandle {
        SpeakerHandle(self.tx.downgrade())
    }
}

/// A weak handle to a running [`Speaker`]: its requests fail with
/// [`SpeakerError::Stopped`] once the speaker is dropped.
#[derive(Debug, Clone)]
pub struct SpeakerHandle(mpsc::WeakSender<Command>);

impl SpeakerHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SpeakerError> {
        let tx = self.0.upgrade().ok_or(SpeakerError::Stopped)?;
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply))
            .await
            .map_err(|_| SpeakerError::Stopped)?;
        drop(tx);
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// [`Speaker::peers`].
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, SpeakerError> {
        self.ask(Command::Peers).await
    }

    /// [`Speaker::routes`].
    pub async fn routes(&self) -> Result<Vec<RouteStatus>, SpeakerError> {
        self.ask(Command::Routes).await
    }

    /// [`Speaker::refresh`].
    pub async fn refresh(&self, peer: IpAddr) -> Result<Vec<AfiSafi>, SpeakerError> {
        self.ask(|r| Command::Refresh(peer, r)).await?
    }
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

/// Hands inbound connections to the owner, which passes each to the
/// session of the peer it comes from (peers come and go while running).
async fn accept(listener: Arc<TcpListener>, owner: mpsc::WeakSender<Command>) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let Some(tx) = owner.upgrade() else { return };
                if tx.send(Command::Incoming(stream, from)).await.is_err() {
                    return;
                }
            }
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
    /// Its session task; `None` if its TCP-MD5 key could not be set.
    task: Option<JoinHandle<()>>,
    state: State,
    since: Instant,
    last_error: Option<String>,
    /// The epoch of the established session.
    epoch: Option<u64>,
    advertised: usize,
    /// End-of-RIB received (or the peer has been up without GR long enough).
    eor: bool,
    /// The peer sent the route refresh capability (RFC 2918).
    route_refresh: bool,
    /// The peer's Graceful Restart capability and the families negotiated
    /// on its last established session (those a ROUTE-REFRESH asks for).
    peer_gr: Option<GracefulRestart>,
    families: Vec<AfiSafi>,
    /// Which of its routes are stale (we help it restart).
    gr: gr::Helper,
    /// When the restart or stale timer of `gr` fires.
    gr_timer: Option<Instant>,
    /// Established while we defer our initial tables (our own restart).
    initial_pending: bool,
}

#[derive(Debug)]
struct Owner {
    rib: Rib,
    /// Peers by the ID their session and the RIB know them by; IDs are
    /// never reused, so events of a removed peer's session find no slot.
    peers: BTreeMap<PeerId, Slot>,
    next_id: u32,
    asn: u32,
    router_id: Ipv4Addr,
    /// The sender of session events, for sessions of peers added later.
    events: mpsc::Sender<SessionEvent>,
    /// Shared with the acceptor; TCP-MD5 keys of peers are set on it.
    listener: Option<Arc<TcpListener>>,
    /// Session tasks of removed peers, by address, until they end: a new
    /// session with the same address starts only once the old one has
    /// sent its Cease, or the peer would take the new connection for a
    /// graceful restart (RFC 4724) and never see the Cease.
    closing: HashMap<IpAddr, JoinHandle<()>>,
    fib: Option<FibHandle>,
    fib_synced: bool,
    /// We restarted and hold back initial tables until the peers' End-of-RIB.
    deferring: bool,
    gr: GrConfig,
}

impl Owner {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<SessionEvent>,
        mut abandoned: watch::Receiver<bool>,
        fib_sync_after: Duration,
    ) {
        let sync_at = tokio::time::sleep(fib_sync_after);
        tokio::pin!(sync_at);
        let fib = self.fib.clone();
        loop {
            let gr_timer = self
                .peers
                .iter()
                .filter_map(|(&id, s)| s.gr_timer.map(|at| (at, id)))
                .min();
            // Session events wait while the kernel is far behind.
            let behind = fib.as_ref().is_some_and(FibHandle::is_behind);
            tokio::select! {
                // A dropped sender (the speaker gone without abandoning)
                // is an error here, and the branch waits for nothing.
                Ok(()) = abandoned.changed() => if *abandoned.borrow() {
                    self.abandon();
                    break;
                },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => {
                        // `abandon` sets the flag before the handle goes.
                        if *abandoned.borrow() {
                            self.abandon();
                        }
                        break;
                    }
                },
                Some(ev) = events.recv(), if !behind => self.event(ev),
                () = async { if let Some(f) = &fib { f.applied().await } }, if behind => {}
                () = &mut sync_at, if !self.fib_synced || self.deferring => {
                    self.release_initial_tables();
                    self.sync_fib();
                }
                () = async {
                    match gr_timer {
                        Some((at, _)) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => if let Some((id, slot)) = gr_timer.and_then(|(_, id)| Some((id, self.peers.get_mut(&id)?))) {
                    slot.gr_timer = None;
                    let actions = slot.gr.timer_expired();
                    info!(peer = %slot.config.addr, "graceful restart timer expired");
                    self.apply_gr(id, actions);
                },
            }
        }
        for slot in self.peers.values() {
            let _ = slot.cmd.send(SessionCmd::Stop);
        }
    }

    /// Tells every session to drop its connections without a NOTIFICATION.
    fn abandon(&mut self) {
        info!(
            peers = self.peers.len(),
            "closing every session without NOTIFICATION, for a restart"
        );
        for slot in self.peers.values() {
            let _ = slot.cmd.send(SessionCmd::Abandon);
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
            Command::SetPolicy(addr, policy, reply) => {
                let _ = reply.send(self.set_policy(addr, *policy));
            }
            Command::Refresh(addr, reply) => {
                let _ = reply.send(self.refresh(addr));
            }
            Command::AddPeer(config, reply) => {
                let _ = reply.send(self.add_peer(*config));
            }
            Command::RemovePeer(addr, reply) => {
                let _ = reply.send(
                    self.slot_of(addr)
                        .map(|id| self.remove_peer(id, cease::PEER_DECONFIGURED)),
                );
            }
            Command::UpdatePeer(config, reply) => {
                let _ = reply.send(self.update_peer(*config));
            }
            Command::Incoming(stream, from) => {
                match self.slot_of(from.ip()).map(|id| &self.peers[&id]) {
                    Ok(slot) if slot.task.is_some() => {
                        let _ = slot.cmd.send(SessionCmd::Incoming(stream));
                    }
                    _ => debug!(%from, "connection from an unknown address closed"),
                }
            }
        }
    }

    fn slot_of(&self, addr: IpAddr) -> Result<PeerId, SpeakerError> {
        self.peers
            .iter()
            .find(|(_, s)| s.config.addr.to_canonical() == addr.to_canonical())
            .map(|(&id, _)| id)
            .ok_or(SpeakerError::UnknownPeer(addr))
    }

    /// Starts a session for `pc` under a new peer ID. A peer with a
    /// password whose key cannot be set on the listener stays Idle (with
    /// the error as its last error) rather than accept unsigned
    /// connections.
    fn add_peer(&mut self, pc: PeerConfig) -> Result<(), SpeakerError> {
        if self.slot_of(pc.addr).is_ok() {
            return Err(SpeakerError::DuplicatePeer(pc.addr));
        }
        let mut slot_task = None;
        let id = PeerId(self.next_id);
        self.next_id += 1;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let families = [AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST];
        let mut capabilities: Vec<Capability> = families.map(Capability::Multiprotocol).to_vec();
        capabilities.push(Capability::RouteRefresh);
        capabilities.extend(self.gr.capability(&families));
        let local = Open::new(self.asn, pc.hold_time, self.router_id, capabilities);
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
        let listener_key = match (&pc.password, &self.listener) {
            (Some(key), Some(l)) => protect_listener(l, pc.addr, key).err(),
            _ => None,
        };
        if let Some(e) = &listener_key {
            warn!(peer = %pc.addr, error = %e, "peer not started");
        } else {
            info!(peer = %pc.addr, asn = pc.asn, "peer added");
            let session = session::run(sc, cmd_rx, self.events.clone());
            let task = match self.closing.remove(&pc.addr.to_canonical()) {
                Some(previous) => tokio::spawn(async move {
                    let _ = tokio::time::timeout(CLOSE_WAIT, previous).await;
                    session.await;
                }),
                None => tokio::spawn(session),
            };
            slot_task = Some(task);
        }
        self.rib.set_policy(id, pc.policy.clone());
        self.peers.insert(
            id,
            Slot {
                config: pc,
                cmd: cmd_tx,
                task: slot_task,
                state: State::Idle,
                since: Instant::now(),
                last_error: listener_key,
                epoch: None,
                advertised: 0,
                eor: false,
                route_refresh: false,
                peer_gr: None,
                families: Vec::new(),
                gr: gr::Helper::default(),
                gr_timer: None,
                initial_pending: false,
            },
        );
        Ok(())
    }

    /// Stops the session of `id` with Cease / `subcode`, drops its routes
    /// (stale ones too) everywhere, and forgets the peer.
    fn remove_peer(&mut self, id: PeerId, subcode: u8) {
        let Some(slot) = self.peers.remove(&id) else {
            return;
        };
        info!(peer = %slot.config.addr, "peer removed");
        let _ = slot.cmd.send(SessionCmd::Cease(subcode));
        self.closing.retain(|_, t| !t.is_finished());
        if let Some(task) = slot.task {
            self.closing.insert(slot.config.addr.to_canonical(), task);
        }
        if let (Some(_), Some(l)) = (&slot.config.password, &self.listener) {
            let v6 = l.local_addr().is_ok_and(|a| a.is_ipv6());
            if let Err(e) = tcp_md5::delete_key(l.as_fd(), v6, slot.config.addr) {
                warn!(peer = %slot.config.addr, error = %e, "TCP-MD5: removing the key from the listener");
            }
        }
        let changes = self.rib.remove_peer(id);
        self.fan_out(&changes);
        // Its End-of-RIB may have been the one still awaited.
        self.check_converged();
    }

    /// Applies a new configuration to an existing peer: a new session if a
    /// session parameter changed, else only the policy (and description).
    fn update_peer(&mut self, pc: PeerConfig) -> Result<bool, SpeakerError> {
        let id = self.slot_of(pc.addr)?;
        let slot = self
            .peers
            .get_mut(&id)
            .ok_or(SpeakerError::UnknownPeer(pc.addr))?;
        if slot.config.session_differs(&pc) {
            self.remove_peer(id, cease::OTHER_CONFIGURATION_CHANGE);
            self.add_peer(pc)?;
            return Ok(true);
        }
        slot.config.description = pc.description.clone();
        if slot.config.policy != pc.policy {
            self.set_policy(pc.addr, pc.policy)?;
        }
        Ok(false)
    }

    fn set_policy(&mut self, addr: IpAddr, policy: PeerPolicy) -> Result<(), SpeakerError> {
        let id = self.slot_of(addr)?;
        // A peer whose initial table is held back (our graceful restart)
        // gets the whole table, with this policy, when it is released.
        let live = |slot: &Slot| slot.epoch.filter(|_| !slot.initial_pending);
        let before = live(&self.peers[&id]).map(|_| self.rib.adj_rib_out(id));
        let changes = self.rib.set_policy(id, policy.clone());
        if let Some(slot) = self.peers.get_mut(&id) {
            slot.config.policy = policy;
        }
        self.fan_out_except(&changes, Some(id));
        if let (Some(before), Some(epoch)) = (before, live(&self.peers[&id])) {
            let after = self.rib.adj_rib_out(id);
            let Some(slot) = self.peers.get_mut(&id) else {
                return Ok(());
            };
            slot.advertised = after.added;
            let out = after.changes_from(&before);
            info!(peer = %addr, announce = out.announce.iter().map(|(_, v)| v.len()).sum::<usize>(), withdraw = out.withdraw.len(), "policy changed");
            if !out.is_empty() {
                let _ = slot.cmd.send(SessionCmd::Send { epoch, out });
            }
        }
        Ok(())
    }

    fn refresh(&mut self, addr: IpAddr) -> Result<Vec<AfiSafi>, SpeakerError> {
        let slot = &self.peers[&self.slot_of(addr)?];
        let epoch = slot.epoch.ok_or(SpeakerError::NotEstablished(addr))?;
        if !slot.route_refresh {
            return Err(SpeakerError::NoRouteRefresh(addr));
        }
        let families = slot.families.clone();
        info!(peer = %addr, ?families, "sending ROUTE-REFRESH");
        let _ = slot.cmd.send(SessionCmd::RouteRefresh {
            epoch,
            families: families.clone(),
        });
        Ok(families)
    }

    fn status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|(&id, s)| {
                let counts = self.rib.counts(id);
                PeerStatus {
                    addr: s.config.addr,
                    asn: s.config.asn,
                    description: s.config.description.clone(),
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
                originator_id: path.route.attrs.originator_id,
                cluster_list: path.route.attrs.cluster_list.clone(),
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
                if let Some(s) = self.peers.get_mut(&peer) {
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
                let Some(slot) = self.peers.get_mut(&peer) else {
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
                slot.route_refresh = negotiated.route_refresh;
                slot.state = State::Established;
                slot.since = Instant::now();
                slot.peer_gr = negotiated.peer_graceful_restart.clone();
                slot.families = negotiated.families.clone();
                let actions =
                    slot.gr
                        .session_up(slot.peer_gr.as_ref(), &slot.families, self.gr.stale_time);
                if !gr::waits_for(slot.peer_gr.as_ref()) {
                    slot.eor = true;
                }
                self.rib.peer_up(peer, info);
                self.apply_gr(peer, actions);
                if self.deferring {
                    if let Some(slot) = self.peers.get_mut(&peer) {
                        slot.initial_pending = true;
                    }
                    self.check_converged();
                } else {
                    self.send_initial_table(peer);
                }
            }
            SessionEvent::Update { peer, update } => {
                let Some(slot) = self.peers.get_mut(&peer) else {
                    return;
                };
                if let Some(family) = update.eor {
                    debug!(peer = peer.0, %family, "End-of-RIB");
                    slot.eor = true;
                    let actions = slot.gr.end_of_rib(family);
                    self.apply_gr(peer, actions);
                    self.check_converged();
                    return;
                }
                let announced = update.announcements();
                let withdrawn = update.withdrawals();
                slot.gr
                    .refreshed(announced.iter().map(|(p, _)| p).chain(&withdrawn));
                let changes = self.rib.update(peer, &update.attrs, &announced, &withdrawn);
                self.fan_out(&changes);
            }
            SessionEvent::RouteRefresh { peer, family } => {
                let Some(epoch) = self.peers.get(&peer).and_then(|s| s.epoch) else {
                    return;
                };
                let mut out = self.rib.adj_rib_out(peer);
                for (_, prefixes) in &mut out.announce {
                    prefixes.retain(|p| AfiSafi::of(p) == family);
                }
                out.announce.retain(|(_, v)| !v.is_empty());
                out.added = 0;
                let _ = self.peers[&peer].cmd.send(SessionCmd::Send { epoch, out });
            }
            SessionEvent::Down { peer, reason } => {
                let Some(s) = self.peers.get_mut(&peer) else {
                    return;
                };
                s.epoch = None;
                s.advertised = 0;
                s.initial_pending = false;
                let routes = self.rib.adj_rib_in(peer).map(|(p, _)| p);
                let actions = s.gr.session_down(
                    self.gr.enabled,
                    &reason,
                    s.peer_gr.as_ref(),
                    &s.families,
                    routes,
                );
                if s.gr.phase() == gr::Phase::Restarting {
                    info!(peer = %s.config.addr, stale = s.gr.stale_count(),
                          "session lost: keeping its routes as stale (graceful restart)");
                }
                self.apply_gr(peer, actions);
            }
        }
    }

    /// Carries out what a peer's graceful-restart helper decided.
    fn apply_gr(&mut self, peer: PeerId, actions: Vec<gr::Action>) {
        for action in actions {
            match action {
                gr::Action::Flush => {
                    let changes = self.rib.peer_down(peer);
                    self.fan_out(&changes);
                }
                gr::Action::Remove(prefixes) => {
                    info!(
                        peer = peer.0,
                        prefixes = prefixes.len(),
                        "removing stale routes"
                    );
                    let changes = self.rib.update(peer, &PathAttrs::default(), &[], &prefixes);
                    self.fan_out(&changes);
                }
                gr::Action::StartTimer(after) => {
                    if let Some(slot) = self.peers.get_mut(&peer) {
                        slot.gr_timer = Some(Instant::now() + after);
                    }
                }
                gr::Action::StopTimer => {
                    if let Some(slot) = self.peers.get_mut(&peer) {
                        slot.gr_timer = None;
                    }
                }
            }
        }
    }

    /// Sends an established peer the whole Adj-RIB-Out and End-of-RIB.
    fn send_initial_table(&mut self, peer: PeerId) {
        let out = self.rib.adj_rib_out(peer);
        let Some(slot) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(epoch) = slot.epoch else { return };
        slot.initial_pending = false;
        slot.advertised = out.added;
        info!(peer = %slot.config.addr, prefixes = out.added, "sending the initial table");
        let _ = slot.cmd.send(SessionCmd::Send { epoch, out });
        let _ = slot.cmd.send(SessionCmd::EndOfRib { epoch });
    }

    /// Ends the deferral of a restart: the initial tables go out.
    fn release_initial_tables(&mut self) {
        if !self.deferring {
            return;
        }
        self.deferring = false;
        info!("graceful restart: route selection done, sending initial tables");
        let pending: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| s.initial_pending)
            .map(|(&id, _)| id)
            .collect();
        for id in pending {
            self.send_initial_table(id);
        }
    }

    /// Once the peers' End-of-RIBs are in: initial tables out (after our
    /// restart), kernel table reconciled.
    fn check_converged(&mut self) {
        if self.peers.values().all(|s| s.eor) {
            self.release_initial_tables();
            self.sync_fib();
        }
    }

    /// Sends each established peer its Adj-RIB-Out changes, and the kernel
    /// its new next hops.
    fn fan_out(&mut self, changes: &[Change]) {
        self.fan_out_except(changes, None);
    }

    /// [`Owner::fan_out`] to every peer but `skip`.
    fn fan_out_except(&mut self, changes: &[Change], skip: Option<PeerId>) {
        if changes.is_empty() {
            return;
        }
        for (&id, slot) in self.peers.iter_mut() {
            let Some(epoch) = slot
                .epoch
                .filter(|_| skip != Some(id) && !slot.initial_pending)
            else {
                continue;
            };
            let mut e = Exporter::new(&self.rib, id);
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
        assert_eq!(r.originator_id, Some(Ipv4Addr::new(1, 1, 1, 1)));
        assert_eq!(r.cluster_list, vec![Ipv4Addr::new(2, 2, 2, 2)]);
        assert!(
            crate::status::render_routes(&[r])
                .ends_with("originator 1.1.1.1 cluster_list [2.2.2.2]\n"),
            "reflection attributes shown"
        );
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
