//! The session task: one tokio task per configured peer, carrying out what
//! the pure [`Fsm`] decides over real TCP connections.
//!
//! The task owns up to two connections to its peer: the primary one, whose
//! FSM lives as long as the session (it connects, or waits for the
//! listener to hand it an inbound connection, and restarts itself after
//! errors), and, while the primary one is between OpenSent and
//! OpenConfirm, a second inbound one with its own FSM. When either reaches
//! OpenConfirm with the other in OpenConfirm too, [`resolve_collision`]
//! picks the survivor (RFC 4271 §6.8) and the loser is fed
//! [`Event::OpenCollisionDump`]; a connection that reaches OpenConfirm
//! while the other is Established loses. An inbound connection while
//! Established is closed.
//!
//! With a TCP-MD5 key ([`SessionConfig::md5`]) our connecting socket is
//! signed (RFC 2385); inbound connections are signed by the listener.
//!
//! Each connection has a reader task that frames bytes with
//! [`wire::Framer`] and passes whole messages back; decoding happens here,
//! where the negotiated parameters are known. Timers are deadlines kept per
//! connection, set and cleared by [`Action::StartTimer`] and
//! [`Action::StopTimer`]; the loop sleeps until the earliest one and feeds
//! its expiry back as an event.
//!
//! To the speaker the task reports state changes, an established session
//! (with a fresh epoch number), decoded UPDATEs, ROUTE-REFRESH requests
//! and the end of the session, over a bounded channel: a slow speaker
//! slows reading from the socket, which TCP turns into backpressure on the
//! peer. The speaker sends back [`SessionCmd`]s over an unbounded channel,
//! so it never waits for a session; outgoing batches carry the epoch they
//! were computed for and are dropped if the session has since restarted.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use task::Task;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::attr::{DecodeContext, EncodeContext};
use crate::fsm::{self, Action, DownReason, Event, Fsm, Keep, State, Timer, resolve_collision};
use crate::notification::Notification;
use crate::open::{Negotiated, Open};
use crate::prefix::AfiSafi;
use crate::rib::{Outgoing, PeerId};
use crate::tcp_md5::{self, Key};
use crate::update::{self, Update};
use crate::wire::{self, MessageType, RouteRefresh};

/// What a session tells the speaker.
#[derive(Debug)]
pub enum SessionEvent {
    /// The primary connection changed state.
    State {
        peer: PeerId,
        state: State,
        last_error: Option<String>,
    },
    /// The session reached Established. Routes for it must carry `epoch`.
    Established {
        peer: PeerId,
        epoch: u64,
        negotiated: Negotiated,
        local_addr: IpAddr,
    },
    /// A validated UPDATE (treat-as-withdraw already applied by
    /// [`Update::withdrawals`]).
    Update { peer: PeerId, update: Box<Update> },
    /// The peer asked for our Adj-RIB-Out again (RFC 2918).
    RouteRefresh { peer: PeerId, family: AfiSafi },
    /// The Established session ended.
    Down { peer: PeerId, reason: DownReason },
}

/// What the speaker tells a session.
#[derive(Debug)]
pub enum SessionCmd {
    /// Send these routes, computed for session `epoch`.
    Send { epoch: u64, out: Outgoing },
    /// The initial table is out: send End-of-RIB for each family (RFC 4724).
    EndOfRib { epoch: u64 },
    /// Send ROUTE-REFRESH (RFC 2918) for each of `families`.
    RouteRefresh { epoch: u64, families: Vec<AfiSafi> },
    /// An inbound connection from this peer, handed over by the listener.
    Incoming(TcpStream),
    /// Close with Cease/Administrative Shutdown and end the task.
    Stop,
    /// Close with Cease and this subcode (RFC 4486) and end the task.
    Cease(u8),
    /// Drop the connections without a NOTIFICATION and end the task: the
    /// peer sees the TCP connection go, as when the process dies, and
    /// keeps our routes while it helps us restart (RFC 4724 §4.2).
    Abandon,
}

/// Per-peer session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub peer: PeerId,
    pub remote: SocketAddr,
    /// Source address for our connections (the kernel picks if `None`).
    pub local: Option<IpAddr>,
    /// TCP-MD5 key set on our connecting socket (RFC 2385).
    pub md5: Option<Key>,
    pub fsm: fsm::Config,
}

/// Events from connection readers and connect attempts, tagged with the
/// ticket of the stream or attempt they belong to.
#[derive(Debug)]
enum Io {
    Connected {
        ticket: u64,
        result: std::io::Result<TcpStream>,
    },
    Message {
        ticket: u64,
        kind: MessageType,
        body: Vec<u8>,
    },
    FramingError {
        ticket: u64,
        notification: Notification,
    },
    Closed {
        ticket: u64,
    },
}

const TIMERS: [Timer; 4] = [
    Timer::ConnectRetry,
    Timer::Hold,
    Timer::Keepalive,
    Timer::IdleHold,
];

fn timer_index(t: Timer) -> usize {
    match t {
        Timer::ConnectRetry => 0,
        Timer::Hold => 1,
        Timer::Keepalive => 2,
        Timer::IdleHold => 3,
    }
}

fn expiry(t: Timer) -> Event {
    match t {
        Timer::ConnectRetry => Event::ConnectRetryTimerExpires,
        Timer::Hold => Event::HoldTimerExpires,
        Timer::Keepalive => Event::KeepaliveTimerExpires,
        Timer::IdleHold => Event::IdleHoldTimerExpires,
    }
}

/// One TCP connection (or attempt at one) and its FSM.
struct Conn {
    fsm: Fsm,
    outbound: bool,
    /// Ticket of the current stream or connect attempt.
    ticket: Option<u64>,
    writer: Option<OwnedWriteHalf>,
    local_addr: Option<IpAddr>,
    /// Its connect attempt or reader (and writer); aborted with the Conn.
    tasks: Vec<Task<()>>,
    timers: [Option<Instant>; 4],
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("state", &self.fsm.state())
            .field("outbound", &self.outbound)
            .field("ticket", &self.ticket)
            .finish()
    }
}

impl Conn {
    fn new(config: &fsm::Config) -> Self {
        Conn {
            fsm: Fsm::new(config.clone()),
            outbound: false,
            ticket: None,
            writer: None,
            local_addr: None,
            tasks: Vec::new(),
            timers: [None; 4],
        }
    }

    fn close(&mut self) {
        self.ticket = None;
        self.writer = None;
        self.local_addr = None;
        self.tasks.clear();
    }
}

/// The session task's state.
struct Session {
    config: SessionConfig,
    start: Instant,
    next_ticket: u64,
    epoch: u64,
    primary: Conn,
    secondary: Option<Conn>,
    io_tx: mpsc::Sender<Io>,
    events: mpsc::Sender<SessionEvent>,
    last_error: Option<String>,
    /// Closed connections still draining (see [`linger`]); a stopped
    /// session ends after them, so that whoever replaces it connects only
    /// once the peer has read our NOTIFICATION and closed.
    lingering: Vec<Task<()>>,
}

/// Which connection an action list belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Primary,
    Secondary,
}

fn reason_text(r: &DownReason) -> String {
    match r {
        DownReason::ManualStop => "stopped".into(),
        DownReason::HoldTimerExpired => "hold timer expired".into(),
        DownReason::NotificationSent(n) => format!("sent {n}"),
        DownReason::NotificationReceived(n) => format!("received {n}"),
        DownReason::ConnectionLost => "connection lost".into(),
        DownReason::UnexpectedEvent => "unexpected event".into(),
    }
}

async fn connect(
    remote: SocketAddr,
    local: Option<IpAddr>,
    md5: Option<Key>,
) -> std::io::Result<TcpStream> {
    let socket = if remote.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(key) = &md5 {
        tcp_md5::set_key(socket.as_fd(), remote.is_ipv6(), remote.ip(), key)?;
    }
    if let Some(local) = local {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    socket.connect(remote).await
}

/// How long a closed connection's reader keeps draining it, at most.
const LINGER: Duration = Duration::from_secs(2);

/// Lets a closed connection's tasks run for [`LINGER`] (a reader drains
/// until the peer closes its side); those still running then are dropped,
/// and so aborted.
fn linger(tasks: Vec<Task<()>>) -> Option<Task<()>> {
    if tasks.is_empty() {
        return None;
    }
    Some(Task::spawn(async move {
        let deadline = Instant::now() + LINGER;
        for mut t in tasks {
            let _ = tokio::time::timeout_at(deadline, &mut t).await;
        }
    }))
}

/// Reads and discards what is left on a connection until the peer closes it.
async fn drain(stream: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut [u8]) {
    while let Ok(1..) = stream.read(buf).await {}
}

async fn read_loop(mut stream: tokio::net::tcp::OwnedReadHalf, ticket: u64, tx: mpsc::Sender<Io>) {
    let mut framer = wire::Framer::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(Io::Closed { ticket }).await;
                return;
            }
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_message() {
                Ok(Some((kind, body))) => {
                    if tx.send(Io::Message { ticket, kind, body }).await.is_err() {
                        // The session is gone: see `linger`.
                        drain(&mut stream, &mut buf).await;
                        return;
                    }
                }
                Ok(None) => break,
                Err(notification) => {
                    let _ = tx
                        .send(Io::FramingError {
                            ticket,
                            notification,
                        })
                        .await;
                    return;
                }
            }
        }
    }
}

impl Session {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn conn(&mut self, which: Which) -> Option<&mut Conn> {
        match which {
            Which::Primary => Some(&mut self.primary),
            Which::Secondary => self.secondary.as_mut(),
        }
    }

    fn find(&self, ticket: u64) -> Option<Which> {
        if self.primary.ticket == Some(ticket) {
            Some(Which::Primary)
        } else if self.secondary.as_ref().and_then(|c| c.ticket) == Some(ticket) {
            Some(Which::Secondary)
        } else {
            None
        }
    }

    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Attaches a connected stream to a connection and starts its reader.
    fn attach(&mut self, which: Which, stream: TcpStream, outbound: bool) {
        let ticket = self.ticket();
        let tx = self.io_tx.clone();
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok().map(|a| a.ip().to_canonical());
        let (r, w) = stream.into_split();
        let Some(conn) = self.conn(which) else { return };
        conn.close();
        conn.ticket = Some(ticket);
        conn.outbound = outbound;
        conn.writer = Some(w);
        conn.local_addr = local;
        conn.tasks.push(Task::spawn(read_loop(r, ticket, tx)));
    }

    /// Feeds one event to a connection's FSM and carries out its actions.
    async fn feed(&mut self, which: Which, event: Event) {
        let now = self.now();
        let Some(conn) = self.conn(which) else { return };
        let before = conn.fsm.state();
        let actions = conn.fsm.handle(now, event);
        for a in actions {
            self.act(which, a).await;
        }
        let Some(conn) = self.conn(which) else { return };
        let after = conn.fsm.state();
        if before != after {
            debug!(peer = %self.config.remote, ?which, ?before, ?after, "state");
            if after == State::OpenConfirm {
                self.check_collision(which).await;
            }
            // A second connection that reaches Established while the
            // primary is still opening becomes the primary: routes are sent
            // on the primary, and the other one loses its collision later.
            let which = match (which, after, self.secondary.as_mut()) {
                (Which::Secondary, State::Established, Some(second)) => {
                    std::mem::swap(&mut self.primary, second);
                    Which::Primary
                }
                _ => which,
            };
            if which == Which::Primary {
                self.report_state().await;
            }
        }
        self.tidy().await;
    }

    /// Drops a secondary connection that went Idle, and promotes one that
    /// outlived a primary which lost a collision.
    async fn tidy(&mut self) {
        if self
            .secondary
            .as_ref()
            .is_some_and(|c| c.fsm.state() == State::Idle)
        {
            self.secondary = None;
        }
        let primary_lost = matches!(
            self.primary.fsm.last_down(),
            Some(DownReason::NotificationSent(n))
                if n.code == crate::notification::code::CEASE
                    && n.subcode == crate::notification::cease::CONNECTION_COLLISION_RESOLUTION
        ) && self.primary.fsm.state() == State::Idle;
        if primary_lost && let Some(second) = self.secondary.take() {
            self.primary = second;
            self.report_state().await;
        }
    }

    async fn report_state(&mut self) {
        let state = self.primary.fsm.state();
        if let Some(r) = self.primary.fsm.last_down() {
            self.last_error = Some(reason_text(r));
        }
        let _ = self
            .events
            .send(SessionEvent::State {
                peer: self.config.peer,
                state,
                last_error: self.last_error.clone(),
            })
            .await;
    }

    async fn check_collision(&mut self, which: Which) {
        let other = match which {
            Which::Primary => Which::Secondary,
            Which::Secondary => Which::Primary,
        };
        let (Some(me), Some(them)) = (
            self.conn_ref(which).map(|c| (c.fsm.state(), c.outbound)),
            self.conn_ref(other).map(|c| (c.fsm.state(), c.outbound)),
        ) else {
            return;
        };
        let loser = match them.0 {
            State::Established => which,
            State::OpenConfirm => {
                let local = &self.config.fsm.local;
                let Some(n) = self.conn_ref(which).and_then(|c| c.fsm.negotiated()) else {
                    return;
                };
                let keep = resolve_collision(local.bgp_id, local.asn(), n.peer_id, n.peer_as);
                let keep_outbound = keep == Keep::Outbound;
                if me.1 == keep_outbound { other } else { which }
            }
            _ => return,
        };
        info!(peer = %self.config.remote, ?loser, "connection collision");
        Box::pin(self.feed(loser, Event::OpenCollisionDump)).await;
    }

    fn conn_ref(&self, which: Which) -> Option<&Conn> {
        match which {
            Which::Primary => Some(&self.primary),
            Which::Secondary => self.secondary.as_ref(),
        }
    }

    async fn write(&mut self, which: Which, bytes: &[u8]) {
        let remote = self.config.remote;
        let Some(conn) = self.conn(which) else { return };
        let Some(w) = conn.writer.as_mut() else {
            return;
        };
        if let Err(e) = w.write_all(bytes).await {
            // The reader sees the broken connection too and reports it as
            // `Io::Closed`; feeding the failure here, in the middle of an
            // action list, would run the rest of that list in a new state.
            debug!(peer = %remote, error = %e, "write failed");
            conn.writer = None;
        }
    }

    async fn act(&mut self, which: Which, action: Action) {
        match action {
            Action::Connect => {
                let ticket = self.ticket();
                let remote = self.config.remote;
                let local = self.config.local;
                let md5 = self.config.md5.clone();
                let tx = self.io_tx.clone();
                let Some(conn) = self.conn(which) else { return };
                conn.close();
                conn.ticket = Some(ticket);
                conn.tasks.push(Task::spawn(async move {
                    let result = connect(remote, local, md5).await;
                    let _ = tx.send(Io::Connected { ticket, result }).await;
                }));
            }
            Action::CloseConnection => {
                if let Some(conn) = self.conn(which) {
                    if let Some(mut w) = conn.writer.take() {
                        let _ = w.shutdown().await;
                        // Closing a socket with unread data makes the
                        // kernel send RST, which can make the peer lose
                        // the NOTIFICATION just written (and take the loss
                        // for a graceful restart): the reader drains the
                        // connection until the peer closes it, for LINGER
                        // at most.
                        let tasks = std::mem::take(&mut conn.tasks);
                        conn.close();
                        self.lingering.retain(|t| !t.is_finished());
                        self.lingering.extend(linger(tasks));
                    } else {
                        conn.close();
                    }
                }
            }
            Action::SendOpen(open) => self.write(which, &open.encode()).await,
            Action::SendKeepalive => self.write(which, &wire::keepalive()).await,
            Action::SendNotification(n) => {
                warn!(peer = %self.config.remote, notification = %n, "sending NOTIFICATION");
                self.write(which, &n.encode(wire::MAX_MESSAGE_LEN)).await
            }
            Action::StartTimer(t, d) => {
                if let Some(conn) = self.conn(which) {
                    conn.timers[timer_index(t)] = Some(Instant::now() + d);
                }
            }
            Action::StopTimer(t) => {
                if let Some(conn) = self.conn(which) {
                    conn.timers[timer_index(t)] = None;
                }
            }
            Action::SessionEstablished(negotiated) => {
                self.epoch += 1;
                let local_addr = self
                    .conn_ref(which)
                    .and_then(|c| c.local_addr)
                    .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
                info!(peer = %self.config.remote, "established");
                let _ = self
                    .events
                    .send(SessionEvent::Established {
                        peer: self.config.peer,
                        epoch: self.epoch,
                        negotiated,
                        local_addr,
                    })
                    .await;
            }
            Action::SessionDown(reason) => {
                info!(peer = %self.config.remote, reason = %reason_text(&reason), "session down");
                let _ = self
                    .events
                    .send(SessionEvent::Down {
                        peer: self.config.peer,
                        reason,
                    })
                    .await;
            }
        }
    }

    /// Handles one framed message on a connection.
    async fn message(&mut self, which: Which, kind: MessageType, body: Vec<u8>) {
        let Some(conn) = self.conn_ref(which) else {
            return;
        };
        let negotiated = conn.fsm.negotiated().cloned();
        let established = conn.fsm.state() == State::Established;
        let event = match kind {
            MessageType::Open => match Open::decode(&body) {
                Ok(open) => Event::BgpOpen(open),
                Err(n) => Event::MessageError(n),
            },
            MessageType::Keepalive => Event::KeepAliveMsg,
            MessageType::Notification => {
                let n = Notification::decode(&body)
                    .unwrap_or_else(|_| Notification::new(0, 0, body.clone()));
                warn!(peer = %self.config.remote, notification = %n, "received NOTIFICATION");
                Event::NotifMsg(n)
            }
            MessageType::RouteRefresh => match RouteRefresh::decode(&body) {
                Ok(rr) if established => {
                    let _ = self
                        .events
                        .send(SessionEvent::RouteRefresh {
                            peer: self.config.peer,
                            family: rr.family,
                        })
                        .await;
                    return;
                }
                Ok(_) => Event::UpdateMsg, // outside Established: an FSM error
                Err(n) => Event::MessageError(n),
            },
            MessageType::Update => {
                let Some(n) = negotiated.filter(|_| established) else {
                    // UPDATE before Established: FSM error (RFC 6608).
                    self.feed(which, Event::UpdateMsg).await;
                    return;
                };
                let ctx = DecodeContext {
                    four_octet_as: n.four_octet_as,
                    ibgp: n.is_ibgp(),
                    families: n.families.clone(),
                };
                match Update::decode(&body, &ctx) {
                    Ok(u) => {
                        for e in &u.errors {
                            warn!(peer = %self.config.remote, attr = e.type_code,
                                  action = ?e.action, notification = %e.notification,
                                  "malformed attribute");
                        }
                        self.feed(which, Event::UpdateMsg).await;
                        let _ = self
                            .events
                            .send(SessionEvent::Update {
                                peer: self.config.peer,
                                update: Box::new(u),
                            })
                            .await;
                        return;
                    }
                    Err(n) => Event::MessageError(n),
                }
            }
        };
        self.feed(which, event).await;
    }

    async fn io(&mut self, io: Io) {
        match io {
            Io::Connected { ticket, result } => {
                let Some(which) = self.find(ticket) else {
                    return;
                };
                match result {
                    Ok(stream) => {
                        self.attach(which, stream, true);
                        self.feed(which, Event::TcpConnectionConfirmed).await;
                    }
                    Err(e) => {
                        debug!(peer = %self.config.remote, error = %e, "connect failed");
                        if let Some(c) = self.conn(which) {
                            c.close();
                        }
                        self.feed(which, Event::TcpConnectionFails).await;
                    }
                }
            }
            Io::Message { ticket, kind, body } => {
                if let Some(which) = self.find(ticket) {
                    self.message(which, kind, body).await;
                }
            }
            Io::FramingError {
                ticket,
                notification,
            } => {
                if let Some(which) = self.find(ticket) {
                    self.feed(which, Event::MessageError(notification)).await;
                }
            }
            Io::Closed { ticket } => {
                if let Some(which) = self.find(ticket) {
                    if let Some(c) = self.conn(which) {
                        c.writer = None;
                    }
                    self.feed(which, Event::TcpConnectionFails).await;
                }
            }
        }
    }

    async fn incoming(&mut self, stream: TcpStream) {
        match self.primary.fsm.state() {
            State::Idle | State::Connect | State::Active => {
                // An inbound connection replaces a pending attempt.
                if self.primary.fsm.state() == State::Idle {
                    self.feed(Which::Primary, Event::ManualStartPassive).await;
                }
                self.attach(Which::Primary, stream, false);
                self.feed(Which::Primary, Event::TcpConnectionConfirmed)
                    .await;
            }
            State::OpenSent | State::OpenConfirm if self.secondary.is_none() => {
                let mut conn = Conn::new(&self.config.fsm);
                conn.fsm.handle(self.now(), Event::ManualStartPassive);
                self.secondary = Some(conn);
                self.attach(Which::Secondary, stream, false);
                self.feed(Which::Secondary, Event::TcpConnectionConfirmed)
                    .await;
            }
            _ => debug!(peer = %self.config.remote, "inbound connection refused"),
        }
    }

    async fn send(&mut self, out: Outgoing) {
        let Some(n) = self.primary.fsm.negotiated().cloned() else {
            return;
        };
        let ctx = EncodeContext {
            four_octet_as: n.four_octet_as,
            max_message_len: n.max_message_len(),
        };
        let mut bytes = Vec::new();
        match update::pack_withdrawals(&out.withdraw, &ctx) {
            Ok(msgs) => msgs.into_iter().for_each(|m| bytes.extend(m)),
            Err(e) => warn!(peer = %self.config.remote, error = %e, "cannot encode withdrawals"),
        }
        for (route, prefixes) in &out.announce {
            match update::pack_announcements(&route.attrs, route.next_hop, prefixes, &ctx) {
                Ok(msgs) => msgs.into_iter().for_each(|m| bytes.extend(m)),
                Err(e) => warn!(peer = %self.config.remote, error = %e, "cannot encode UPDATE"),
            }
        }
        if !bytes.is_empty() {
            self.write(Which::Primary, &bytes).await;
            self.feed(Which::Primary, Event::UpdateSent).await;
        }
    }

    fn next_deadline(&self) -> Option<(Which, Timer, Instant)> {
        let mut best: Option<(Which, Timer, Instant)> = None;
        let conns = [
            (Which::Primary, Some(&self.primary)),
            (Which::Secondary, self.secondary.as_ref()),
        ];
        for (which, conn) in conns {
            let Some(conn) = conn else { continue };
            for t in TIMERS {
                if let Some(at) = conn.timers[timer_index(t)]
                    && best.is_none_or(|(_, _, b)| at < b)
                {
                    best = Some((which, t, at));
                }
            }
        }
        best
    }
}

/// Runs one peer's session until [`SessionCmd::Stop`] or until the
/// speaker goes away.
pub async fn run(
    config: SessionConfig,
    mut commands: mpsc::UnboundedReceiver<SessionCmd>,
    events: mpsc::Sender<SessionEvent>,
) {
    let (io_tx, mut io_rx) = mpsc::channel(64);
    let primary = Conn::new(&config.fsm);
    let mut s = Session {
        config,
        start: Instant::now(),
        next_ticket: 0,
        epoch: 0,
        primary,
        secondary: None,
        io_tx,
        events,
        last_error: None,
        lingering: Vec::new(),
    };
    s.feed(Which::Primary, Event::ManualStart).await;
    loop {
        let deadline = s.next_deadline();
        tokio::select! {
            cmd = commands.recv() => match cmd {
                // Returning drops the connections (and aborts their tasks).
                Some(SessionCmd::Abandon) => return,
                None | Some(SessionCmd::Stop | SessionCmd::Cease(_)) => {
                    let stop = match cmd {
                        Some(SessionCmd::Cease(subcode)) => Event::ManualStopCease(subcode),
                        _ => Event::ManualStop,
                    };
                    s.feed(Which::Primary, stop.clone()).await;
                    if s.secondary.is_some() {
                        s.feed(Which::Secondary, stop).await;
                    }
                    for t in s.lingering.drain(..) {
                        let _ = t.await;
                    }
                    return;
                }
                Some(SessionCmd::Incoming(stream)) => s.incoming(stream).await,
                Some(SessionCmd::Send { epoch, out }) => {
                    if epoch == s.epoch && s.primary.fsm.can_send_updates() {
                        s.send(out).await;
                    }
                }
                Some(SessionCmd::RouteRefresh { epoch, families }) => {
                    if epoch == s.epoch && s.primary.fsm.can_send_updates() {
                        let bytes: Vec<u8> = families.into_iter().flat_map(|family| RouteRefresh { family }.encode()).collect();
                        s.write(Which::Primary, &bytes).await;
                    }
                }
                Some(SessionCmd::EndOfRib { epoch }) => {
                    if epoch == s.epoch && s.primary.fsm.can_send_updates() {
                        let families = s.primary.fsm.negotiated().map(|n| n.families.clone()).unwrap_or_default();
                        let bytes: Vec<u8> = families.into_iter().flat_map(update::end_of_rib).collect();
                        s.write(Which::Primary, &bytes).await;
                    }
                }
            },
            Some(io) = io_rx.recv() => s.io(io).await,
            () = async {
                match deadline {
                    Some((_, _, at)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some((which, t, _)) = deadline {
                    if let Some(c) = s.conn(which) {
                        c.timers[timer_index(t)] = None;
                    }
                    s.feed(which, expiry(t)).await;
                }
            }
        }
    }
}
