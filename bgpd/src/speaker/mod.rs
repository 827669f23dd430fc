//! The speaker: the owner task of the RIB, the session task of each peer
//! and the listener, behind the [`Speaker`] handle. What the owner decides
//! is in [`core`], pure; [`owner`] carries it out.
//!
//! ```text
//!                 Speaker (handle: announce, withdraw, peers, routes)
//!                    │ mpsc, bounded (Command + oneshot reply)
//!                    ▼
//!  listener ──► ┌────────────┐ ──SessionCmd (unbounded)──► session task ×N ◄──► TCP
//!  (accept)     │ owner task │ ◄──SessionEvent (bounded)──  (Fsm, reader task per
//!   Incoming    │  └─ Core   │                               connection)
//!   Command ──► │     (Rib)  │ ──FibMsg (unbounded)──► fib task ──► rtnetlink
//!               └────────────┘
//! ```

mod core;
mod owner;
#[cfg(test)]
mod replay;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use task::Task;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use self::core::{Core, Input};
use self::owner::{Command, Owner, Reply};
use crate::attr::PathAttrs;
use crate::fib::FibHandle;
use crate::filter::PeerPolicy;
use crate::fsm::State;
use crate::graceful_restart::GrConfig;
use crate::prefix::{AfiSafi, Prefix};
use crate::tcp_md5::Key;

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
    /// The AS we present to this peer instead of the speaker's (Calico's
    /// `localASNumber`, BIRD's `local as`).
    pub local_asn: Option<u32>,
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
            local_asn: None,
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
    /// The most paths in a prefix's kernel route ([`RibConfig::max_paths`](crate::rib::RibConfig::max_paths)).
    pub max_paths: usize,
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
            max_paths: crate::rib::ALL_PATHS,
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
    /// Established sessions that ended (session flaps), since the peer
    /// was added.
    pub flaps: u64,
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
        let core = Core::new(&config, Instant::now(), fib.is_some());
        let mut owner = Owner::new(core, ev_tx, listener.clone(), fib);
        for pc in &config.peers {
            owner.feed(Input::AddPeer(Box::new(pc.clone())), None);
        }
        let (abandon, abandoned) = watch::channel(false);
        tokio::spawn(owner.run(rx, ev_rx, abandoned));
        let listener = listener.map(|l| Task::spawn(owner::accept(l, tx.downgrade())));
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
        self.ask(|r| Command::Core(Input::Announce(prefix, attrs), Reply::Unit(r)))
            .await
    }

    /// Stops originating `prefix`.
    pub async fn withdraw(&self, prefix: Prefix) -> Result<(), SpeakerError> {
        self.ask(|r| Command::Core(Input::Withdraw(prefix), Reply::Unit(r)))
            .await
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
        self.ask(|r| Command::Core(Input::SetPolicy(peer, Box::new(policy)), Reply::Done(r)))
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
        self.ask(|r| Command::Core(Input::AddPeer(Box::new(peer)), Reply::Done(r)))
            .await?
    }

    /// Removes a peer: its session closes with Cease / Peer De-configured
    /// (RFC 4486), and its routes leave the Loc-RIB, the kernel and the
    /// other peers.
    pub async fn remove_peer(&self, peer: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|r| Command::Core(Input::RemovePeer(peer), Reply::Done(r)))
            .await?
    }

    /// Replaces the configuration of the peer at `peer.addr`. If a session
    /// parameter changed ([`PeerConfig::session_differs`]) only that
    /// peer's session is reset (Cease / Other Configuration Change) and
    /// `true` returned; a change of policy alone goes through
    /// [`Speaker::set_policy`], without a reset.
    pub async fn update_peer(&self, peer: PeerConfig) -> Result<bool, SpeakerError> {
        self.ask(|r| Command::Core(Input::UpdatePeer(Box::new(peer)), Reply::Updated(r)))
            .await?
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
        self.ask(|r| Command::Core(Input::Refresh(peer), Reply::Refreshed(r)))
            .await?
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

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
