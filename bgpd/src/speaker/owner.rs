//! The owner task: the I/O shell around [`Core`]. It feeds the core the
//! speaker's commands, the sessions' events and its deadlines, and carries
//! out what comes back: session tasks started and stopped, commands passed
//! to them, routes to the FIB task, answers to callers. It decides nothing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::core::{Answer, Core, Input, Output};
use super::{PeerStatus, RouteStatus, SpeakerError};
use crate::fib::FibHandle;
use crate::prefix::AfiSafi;
use crate::rib::PeerId;
use crate::session::{self, SessionCmd, SessionConfig, SessionEvent};
use crate::tcp_md5::{self, Key};

/// How long a new session waits, at most, for the one it replaces to
/// close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What the speaker's handle asks of the owner.
#[derive(Debug)]
pub(crate) enum Command {
    /// An input for the core, answered through the reply.
    Core(Input, Reply),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Routes(oneshot::Sender<Vec<RouteStatus>>),
    /// An inbound connection, from the listener.
    Incoming(TcpStream, SocketAddr),
}

/// Where the [`Answer`] to a [`Command::Core`] goes.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The caller only waits for the command to be done.
    Unit(oneshot::Sender<()>),
    Done(oneshot::Sender<Result<(), SpeakerError>>),
    Refreshed(oneshot::Sender<Result<Vec<AfiSafi>, SpeakerError>>),
    Updated(oneshot::Sender<Result<bool, SpeakerError>>),
}

impl Reply {
    fn send(self, answer: Answer) {
        // A caller that went away does not care.
        let _ = match (self, answer) {
            (Reply::Unit(tx), _) => tx.send(()).map_err(drop),
            (Reply::Done(tx), Answer::Done(r)) => tx.send(r).map_err(drop),
            (Reply::Refreshed(tx), Answer::Refreshed(r)) => tx.send(r).map_err(drop),
            (Reply::Updated(tx), Answer::Updated(r)) => tx.send(r).map_err(drop),
            (reply, answer) => {
                debug_assert!(false, "{answer:?} answers no {reply:?}");
                Ok(())
            }
        };
    }
}

/// A peer's running session task.
#[derive(Debug)]
struct Running {
    addr: IpAddr,
    cmd: mpsc::UnboundedSender<SessionCmd>,
    task: JoinHandle<()>,
    /// Its TCP-MD5 key is set on the listener.
    keyed: bool,
}

#[derive(Debug)]
pub(crate) struct Owner {
    core: Core,
    sessions: HashMap<PeerId, Running>,
    /// The sender of session events, for the sessions it starts.
    events: mpsc::Sender<SessionEvent>,
    /// Shared with the acceptor; TCP-MD5 keys of peers are set on it.
    listener: Option<Arc<TcpListener>>,
    /// Session tasks of removed peers, by address, until they end: a new
    /// session with the same address starts only once the old one has
    /// sent its Cease, or the peer would take the new connection for a
    /// graceful restart (RFC 4724) and never see the Cease.
    closing: HashMap<IpAddr, JoinHandle<()>>,
    fib: Option<FibHandle>,
}

impl Owner {
    pub(crate) fn new(
        core: Core,
        events: mpsc::Sender<SessionEvent>,
        listener: Option<Arc<TcpListener>>,
        fib: Option<FibHandle>,
    ) -> Self {
        Owner {
            core,
            sessions: HashMap::new(),
            events,
            listener,
            closing: HashMap::new(),
            fib,
        }
    }

    /// Feeds the core one input and carries out its outputs; the answer
    /// goes to `reply`, or, if there is none, is logged when it is an error.
    pub(crate) fn feed(&mut self, input: Input, reply: Option<Reply>) {
        let mut reply = reply;
        let outputs = self.core.handle(Instant::now(), input);
        for out in outputs {
            match out {
                Output::Answer(answer) => match reply.take() {
                    Some(r) => r.send(answer),
                    None => {
                        if let Answer::Done(Err(e)) = answer {
                            warn!(error = %e, "peer not started");
                        }
                    }
                },
                Output::StartSession(config) => self.start_session(config),
                Output::StopSession { peer, subcode } => self.stop_session(peer, subcode),
                Output::Session(peer, cmd) => {
                    if let Some(s) = self.sessions.get(&peer) {
                        let _ = s.cmd.send(cmd);
                    }
                }
                Output::Fib(next_hops) => {
                    if let Some(fib) = &self.fib {
                        fib.update(next_hops);
                    }
                }
                Output::ReconcileFib => {
                    // Nothing to repair: the table holds exactly what was sent.
                    if let Some(fib) = self.fib.as_ref().filter(|f| f.needs_reconcile()) {
                        fib.reconcile(self.core.fib_table());
                    }
                }
            }
        }
    }

    /// Starts a peer's session task, after the one closing for the same
    /// address. A peer with a password whose key cannot be set on the
    /// listener stays Idle (with the error as its last error) rather than
    /// accept unsigned connections.
    fn start_session(&mut self, config: SessionConfig) {
        let addr = config.remote.ip();
        let keyed = match (&config.md5, &self.listener) {
            (Some(key), Some(l)) => match protect_listener(l, addr, key) {
                Ok(()) => true,
                Err(error) => {
                    warn!(peer = %addr, %error, "peer not started");
                    let peer = config.peer;
                    self.feed(Input::NotStarted { peer, error }, None);
                    return;
                }
            },
            _ => false,
        };
        info!(peer = %addr, asn = config.fsm.peer_as, "peer added");
        let peer = config.peer;
        let (cmd, commands) = mpsc::unbounded_channel();
        let session = session::run(config, commands, self.events.clone());
        let task = match self.closing.remove(&addr.to_canonical()) {
            Some(previous) => tokio::spawn(async move {
                let _ = tokio::time::timeout(CLOSE_WAIT, previous).await;
                session.await;
            }),
            None => tokio::spawn(session),
        };
        self.sessions.insert(
            peer,
            Running {
                addr,
                cmd,
                task,
                keyed,
            },
        );
    }

    /// Ends a removed peer's session with Cease / `subcode` and takes its
    /// key off the listener.
    fn stop_session(&mut self, peer: PeerId, subcode: u8) {
        let Some(s) = self.sessions.remove(&peer) else {
            return;
        };
        let _ = s.cmd.send(SessionCmd::Cease(subcode));
        self.closing.retain(|_, t| !t.is_finished());
        self.closing.insert(s.addr.to_canonical(), s.task);
        if let (true, Some(l)) = (s.keyed, &self.listener) {
            let v6 = l.local_addr().is_ok_and(|a| a.is_ipv6());
            if let Err(e) = tcp_md5::delete_key(l.as_fd(), v6, s.addr) {
                warn!(peer = %s.addr, error = %e, "TCP-MD5: removing the key from the listener");
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Core(input, reply) => self.feed(input, Some(reply)),
            Command::Peers(reply) => {
                let _ = reply.send(self.core.status(Instant::now()));
            }
            Command::Routes(reply) => {
                let _ = reply.send(self.core.routes());
            }
            Command::Incoming(stream, from) => {
                match self
                    .core
                    .peer_at(from.ip())
                    .ok()
                    .and_then(|id| self.sessions.get(&id))
                {
                    Some(s) => {
                        let _ = s.cmd.send(SessionCmd::Incoming(stream));
                    }
                    None => debug!(%from, "connection from an unknown address closed"),
                }
            }
        }
    }

    /// Runs until the speaker's handle goes: then every session stops,
    /// with a Cease, or, if the speaker was abandoned, without one.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<SessionEvent>,
        mut abandoned: watch::Receiver<bool>,
    ) {
        let fib = self.fib.clone();
        loop {
            let deadline = self.core.next_deadline();
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
                Some(ev) = events.recv(), if !behind => self.feed(Input::Session(ev), None),
                () = async { if let Some(f) = &fib { f.applied().await } }, if behind => {}
                () = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => self.feed(Input::Tick, None),
            }
        }
        for s in self.sessions.values() {
            let _ = s.cmd.send(SessionCmd::Stop);
        }
    }

    /// Tells every session to drop its connections without a NOTIFICATION.
    fn abandon(&mut self) {
        info!(
            peers = self.sessions.len(),
            "closing every session without NOTIFICATION, for a restart"
        );
        for s in self.sessions.values() {
            let _ = s.cmd.send(SessionCmd::Abandon);
        }
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
pub(crate) async fn accept(listener: Arc<TcpListener>, owner: mpsc::WeakSender<Command>) {
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::attr::{AsPath, Origin, PathAttrs};
    use crate::capability::{GrFamily, GracefulRestart};
    use crate::fsm::DownReason;
    use crate::open::Negotiated;
    use crate::speaker::{PeerConfig, SpeakerConfig};
    use crate::update::Update;

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    async fn routes(tx: &mpsc::Sender<Command>) -> Vec<RouteStatus> {
        let (reply, rx) = oneshot::channel();
        tx.send(Command::Routes(reply)).await.unwrap();
        rx.await.unwrap()
    }

    /// The owner task with one passive peer (its session waits for a
    /// connection that never comes); session events are fed by the test.
    fn owner(
        config: SpeakerConfig,
    ) -> (
        mpsc::Sender<Command>,
        mpsc::Sender<SessionEvent>,
        watch::Sender<bool>,
    ) {
        let (tx, rx) = mpsc::channel(8);
        let (ev_tx, ev_rx) = mpsc::channel(8);
        let mut owner = Owner::new(
            Core::new(&config, Instant::now(), false),
            ev_tx.clone(),
            None,
            None,
        );
        let peer = PeerConfig {
            passive: true,
            ..PeerConfig::new(PEER, 65002)
        };
        owner.feed(Input::AddPeer(Box::new(peer)), None);
        let (abandon, abandoned) = watch::channel(false);
        tokio::spawn(owner.run(rx, ev_rx, abandoned));
        (tx, ev_tx, abandon)
    }

    #[tokio::test(start_paused = true)]
    async fn the_owner_task_drops_a_lost_peers_stale_routes_when_its_restart_time_is_up() {
        let (tx, events, _abandon) = owner(SpeakerConfig::new(65001, Ipv4Addr::new(1, 1, 1, 1)));
        let peer = PeerId(0);
        let negotiated = Negotiated {
            local_as: 65001,
            peer_as: 65002,
            peer_id: Ipv4Addr::new(2, 2, 2, 2),
            four_octet_as: true,
            families: vec![AfiSafi::IPV4_UNICAST],
            hold_time: 90,
            keepalive_time: 30,
            route_refresh: true,
            enhanced_route_refresh: false,
            extended_message: false,
            peer_graceful_restart: Some(GracefulRestart {
                restarting: false,
                notification: false,
                restart_time: 60,
                families: vec![GrFamily {
                    family: AfiSafi::IPV4_UNICAST,
                    forwarding_preserved: true,
                }],
            }),
            peer_fqdn: None,
        };
        let update = Update {
            announced: vec!["10.2.0.0/24".parse().unwrap()],
            attrs: PathAttrs {
                next_hop: Some(Ipv4Addr::new(127, 0, 0, 2)),
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::sequence([65002])),
                ..PathAttrs::default()
            },
            ..Update::default()
        };
        for ev in [
            SessionEvent::Established {
                peer,
                epoch: 1,
                negotiated,
                local_addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            },
            SessionEvent::Update {
                peer,
                update: Box::new(update),
            },
            SessionEvent::Down {
                peer,
                reason: DownReason::ConnectionLost,
            },
        ] {
            events.send(ev).await.unwrap();
        }
        // The owner takes commands and events in no set order: wait (not
        // in time, which is paused) for it to have taken the events.
        for _ in 0..1000 {
            if routes(&tx).await.len() == 1 && events.capacity() == events.max_capacity() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(routes(&tx).await.len(), 1, "kept, stale, while it restarts");
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(routes(&tx).await.len(), 1, "59 s of its 60 s");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(routes(&tx).await, vec![], "its restart time is up");
    }
}
