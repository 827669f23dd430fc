//! The session task: one tokio task per configured peer, carrying out over
//! real TCP connections what the pure [`PeerFsm`] decides (which holds the
//! [`fsm::Fsm`] of each of up to two connections and resolves their
//! collision). With a TCP-MD5 key ([`SessionConfig::md5`]) our connecting
//! socket is signed (RFC 2385); inbound connections are signed by the
//! listener.
//!
//! ```text
//!  speaker ──SessionCmd──► ┌──────────────┐ ──SessionEvent──► speaker (bounded:
//!  reader task per conn ──►│ PeerFsm      │   a slow speaker slows reading)
//!   (framed messages)      │ ConnIo ×1..2 │ ──bytes──► TCP
//!  timers (deadlines) ───► └──────────────┘
//! ```
//!
//! Outgoing batches carry the epoch of the session they were computed for
//! and are dropped if the session has since restarted.

use std::collections::HashMap;
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
use crate::fsm::{self, Action, DownReason, Event, State, Timer};
use crate::notification::Notification;
use crate::open::{Negotiated, Open};
use crate::peer_fsm::{self, ConnId, Output, PeerFsm, reason_text};
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

/// The I/O of one connection (or attempt at one); its FSM is in the
/// [`PeerFsm`].
#[derive(Debug, Default)]
struct ConnIo {
    /// Ticket of the current stream or connect attempt.
    ticket: Option<u64>,
    writer: Option<OwnedWriteHalf>,
    local_addr: Option<IpAddr>,
    /// Its connect attempt or reader (and writer); aborted with the ConnIo.
    tasks: Vec<Task<()>>,
    timers: [Option<Instant>; 4],
}

impl ConnIo {
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
    fsm: PeerFsm,
    conns: HashMap<ConnId, ConnIo>,
    io_tx: mpsc::Sender<Io>,
    events: mpsc::Sender<SessionEvent>,
    /// Closed connections still draining (see [`linger`]); a stopped
    /// session ends after them, so that whoever replaces it connects only
    /// once the peer has read our NOTIFICATION and closed.
    lingering: Vec<Task<()>>,
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
async fn drain(stream: &mut tokio::net::tcp::OwnedReadHalf) {
    let mut buf = vec![0; 4096];
    while let Ok(1..) = stream.read(&mut buf).await {}
}

/// Waits until the connection has bytes and hands them to the framer. The
/// read goes through a buffer on the stack that no await outlives, so a
/// reader task waiting for its peer holds no read buffer. False once the
/// connection is closed or broken.
async fn read_some(stream: &mut tokio::net::tcp::OwnedReadHalf, framer: &mut wire::Framer) -> bool {
    loop {
        if stream.readable().await.is_err() {
            return false;
        }
        let mut chunk = [0u8; wire::READ_CHUNK];
        match stream.try_read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                framer.push(&chunk[..n]);
                return true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
}

async fn read_loop(mut stream: tokio::net::tcp::OwnedReadHalf, ticket: u64, tx: mpsc::Sender<Io>) {
    let mut framer = wire::Framer::new();
    loop {
        if !read_some(&mut stream, &mut framer).await {
            let _ = tx.send(Io::Closed { ticket }).await;
            return;
        }
        loop {
            match framer.next_message() {
                Ok(Some((kind, body))) => {
                    if tx.send(Io::Message { ticket, kind, body }).await.is_err() {
                        // The session is gone: see `linger`.
                        drain(&mut stream).await;
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

    fn find(&self, ticket: u64) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|(_, c)| c.ticket == Some(ticket))
            .map(|(&id, _)| id)
    }

    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Attaches a connected stream to a connection and starts its reader.
    fn attach(&mut self, id: ConnId, stream: TcpStream) {
        let ticket = self.ticket();
        let tx = self.io_tx.clone();
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok().map(|a| a.ip().to_canonical());
        let (r, w) = stream.into_split();
        let conn = self.conns.entry(id).or_default();
        conn.close();
        conn.ticket = Some(ticket);
        conn.writer = Some(w);
        conn.local_addr = local;
        conn.tasks.push(Task::spawn(read_loop(r, ticket, tx)));
    }

    /// Feeds one input to the [`PeerFsm`] and carries out its outputs;
    /// `stream` is the inbound connection of an [`peer_fsm::Input::Incoming`].
    async fn handle(&mut self, input: peer_fsm::Input, mut stream: Option<TcpStream>) {
        let now = self.now();
        for output in self.fsm.handle(now, input) {
            match output {
                Output::Act(id, action) => self.act(id, action).await,
                Output::Attach(id) => {
                    if let Some(stream) = stream.take() {
                        self.attach(id, stream);
                    }
                }
                Output::Refuse => debug!(peer = %self.config.remote, "inbound connection refused"),
                Output::Release(id) => {
                    self.conns.remove(&id);
                }
                Output::State { state, last_error } => {
                    debug!(peer = %self.config.remote, %state, "state");
                    let _ = self
                        .events
                        .send(SessionEvent::State {
                            peer: self.config.peer,
                            state,
                            last_error,
                        })
                        .await;
                }
            }
        }
    }

    /// Feeds one event to a connection's FSM.
    async fn feed(&mut self, id: ConnId, event: Event) {
        self.handle(peer_fsm::Input::Event(id, event), None).await;
    }

    async fn write(&mut self, id: ConnId, bytes: &[u8]) {
        let remote = self.config.remote;
        let Some(w) = self.conns.get_mut(&id).and_then(|c| c.writer.as_mut()) else {
            return;
        };
        if let Err(e) = w.write_all(bytes).await {
            // The reader sees the broken connection too and reports it as
            // `Io::Closed`; feeding the failure here, in the middle of an
            // action list, would run the rest of that list in a new state.
            debug!(peer = %remote, error = %e, "write failed");
            if let Some(c) = self.conns.get_mut(&id) {
                c.writer = None;
            }
        }
    }

    async fn act(&mut self, id: ConnId, action: Action) {
        match action {
            Action::Connect => {
                let ticket = self.ticket();
                let remote = self.config.remote;
                let local = self.config.local;
                let md5 = self.config.md5.clone();
                let tx = self.io_tx.clone();
                let conn = self.conns.entry(id).or_default();
                conn.close();
                conn.ticket = Some(ticket);
                conn.tasks.push(Task::spawn(async move {
                    let result = connect(remote, local, md5).await;
                    let _ = tx.send(Io::Connected { ticket, result }).await;
                }));
            }
            Action::CloseConnection => {
                if let Some(conn) = self.conns.get_mut(&id) {
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
            Action::SendOpen(open) => self.write(id, &open.encode()).await,
            Action::SendKeepalive => self.write(id, &wire::keepalive()).await,
            Action::SendNotification(n) => {
                warn!(peer = %self.config.remote, notification = %n, "sending NOTIFICATION");
                self.write(id, &n.encode(wire::MAX_MESSAGE_LEN)).await
            }
            Action::StartTimer(t, d) => {
                self.conns.entry(id).or_default().timers[timer_index(t)] = Some(Instant::now() + d);
            }
            Action::StopTimer(t) => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.timers[timer_index(t)] = None;
                }
            }
            Action::SessionEstablished(negotiated) => {
                self.epoch += 1;
                let local_addr = self
                    .conns
                    .get(&id)
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
    async fn message(&mut self, id: ConnId, kind: MessageType, body: Vec<u8>) {
        let Some(fsm) = self.fsm.fsm(id) else {
            return;
        };
        let negotiated = fsm.negotiated().cloned();
        let established = fsm.state() == State::Established;
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
                    self.feed(id, Event::UpdateMsg).await;
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
                        self.feed(id, Event::UpdateMsg).await;
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
        self.feed(id, event).await;
    }

    async fn io(&mut self, io: Io) {
        match io {
            Io::Connected { ticket, result } => {
                let Some(id) = self.find(ticket) else {
                    return;
                };
                match result {
                    Ok(stream) => {
                        self.attach(id, stream);
                        self.handle(peer_fsm::Input::Connected(id), None).await;
                    }
                    Err(e) => {
                        debug!(peer = %self.config.remote, error = %e, "connect failed");
                        if let Some(c) = self.conns.get_mut(&id) {
                            c.close();
                        }
                        let failed = peer_fsm::Input::ConnectFailed(id, e.to_string());
                        self.handle(failed, None).await;
                    }
                }
            }
            Io::Message { ticket, kind, body } => {
                if let Some(id) = self.find(ticket) {
                    self.message(id, kind, body).await;
                }
            }
            Io::FramingError {
                ticket,
                notification,
            } => {
                if let Some(id) = self.find(ticket) {
                    self.feed(id, Event::MessageError(notification)).await;
                }
            }
            Io::Closed { ticket } => {
                if let Some(id) = self.find(ticket) {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.writer = None;
                    }
                    self.feed(id, Event::TcpConnectionFails).await;
                }
            }
        }
    }

    async fn send(&mut self, out: Outgoing) {
        let (primary, fsm) = self.fsm.primary();
        let Some(n) = fsm.negotiated().cloned() else {
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
            self.write(primary, &bytes).await;
            self.feed(primary, Event::UpdateSent).await;
        }
    }

    /// The earliest timer of any connection.
    fn next_deadline(&self) -> Option<(ConnId, Timer, Instant)> {
        let mut best: Option<(ConnId, Timer, Instant)> = None;
        for (&id, conn) in &self.conns {
            for t in TIMERS {
                if let Some(at) = conn.timers[timer_index(t)]
                    && best.is_none_or(|(_, _, b)| at < b)
                {
                    best = Some((id, t, at));
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
    let mut s = Session {
        fsm: PeerFsm::new(config.fsm.clone()),
        config,
        start: Instant::now(),
        next_ticket: 0,
        epoch: 0,
        conns: HashMap::new(),
        io_tx,
        events,
        lingering: Vec::new(),
    };
    // The session's handlers run boxed, one at a time: the task then holds
    // the session's state between events, not room for the largest
    // handler's (a few KiB per peer, with hundreds of peers).
    Box::pin(s.handle(peer_fsm::Input::Start, None)).await;
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
                    Box::pin(s.handle(peer_fsm::Input::Stop(stop), None)).await;
                    for t in s.lingering.drain(..) {
                        let _ = t.await;
                    }
                    return;
                }
                Some(SessionCmd::Incoming(stream)) => {
                    Box::pin(s.handle(peer_fsm::Input::Incoming, Some(stream))).await;
                }
                Some(SessionCmd::Send { epoch, out }) => {
                    if epoch == s.epoch && s.fsm.primary().1.can_send_updates() {
                        Box::pin(s.send(out)).await;
                    }
                }
                Some(SessionCmd::RouteRefresh { epoch, families }) => {
                    let (primary, fsm) = s.fsm.primary();
                    if epoch == s.epoch && fsm.can_send_updates() {
                        let bytes: Vec<u8> = families.into_iter().flat_map(|family| RouteRefresh { family }.encode()).collect();
                        s.write(primary, &bytes).await;
                    }
                }
                Some(SessionCmd::EndOfRib { epoch }) => {
                    let (primary, fsm) = s.fsm.primary();
                    if epoch == s.epoch && fsm.can_send_updates() {
                        let families = fsm.negotiated().map(|n| n.families.clone()).unwrap_or_default();
                        let bytes: Vec<u8> = families.into_iter().flat_map(update::end_of_rib).collect();
                        s.write(primary, &bytes).await;
                    }
                }
            },
            Some(io) = io_rx.recv() => Box::pin(s.io(io)).await,
            () = async {
                match deadline {
                    Some((_, _, at)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some((id, t, _)) = deadline {
                    if let Some(c) = s.conns.get_mut(&id) {
                        c.timers[timer_index(t)] = None;
                    }
                    Box::pin(s.feed(id, expiry(t))).await;
                }
            }
        }
    }
}
