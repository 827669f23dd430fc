//! The pure per-peer FSM over up to two connections, each with its own
//! [`Fsm`]: connection collision (RFC 4271 §6.8) and which connection is
//! the session. [`PeerFsm::handle`] takes the time and one [`Input`] and
//! returns the [`Output`]s the session task (`session.rs`) carries out.
//!
//! ```text
//!  primary ─── lives as long as the session: connects, or takes an inbound
//!     │        connection, and restarts itself after errors
//!  secondary ─ an inbound connection while the primary is OpenSent/OpenConfirm
//!     └─ both OpenConfirm: the loser gets OpenCollisionDump; Established
//!        first: it becomes the primary, the other loses later
//! ```

#[cfg(test)]
mod replay;

use std::time::Duration;

use crate::fsm::{self, Action, DownReason, Event, Fsm, Keep, State, resolve_collision};
use crate::notification::{cease, code};

/// A connection, by a number never reused within the session: it stays
/// with its FSM when the primary and secondary swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConnId(pub(crate) u64);

/// What happens to the peer's connections.
#[derive(Debug)]
pub(crate) enum Input {
    /// Start the session (initiating connections unless passive).
    Start,
    /// An inbound connection from the peer arrived.
    Incoming,
    /// Our connection attempt for this connection succeeded.
    Connected(ConnId),
    /// Our connection attempt for this connection failed, with the error
    /// (the kernel's: refused, unreachable, timed out), which the next
    /// state report carries as `last_error`.
    ConnectFailed(ConnId, String),
    /// An event for one connection: a timer, a message, a failure.
    Event(ConnId, Event),
    /// Stop both connections with this event (ManualStop, ManualStopCease).
    Stop(Event),
}

/// What the session task is to do, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// Carry out an FSM action on a connection.
    Act(ConnId, Action),
    /// Give the inbound connection being handled to this connection.
    Attach(ConnId),
    /// No connection takes the inbound connection being handled: close it.
    Refuse,
    /// This connection is gone: drop what is left of its I/O.
    Release(ConnId),
    /// The session's state (its primary connection's) changed.
    State {
        state: State,
        last_error: Option<String>,
    },
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    fsm: Fsm,
    /// We initiated it.
    outbound: bool,
}

/// Which of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Primary,
    Secondary,
}

/// One peer's connections: see the module doc.
#[derive(Debug)]
pub(crate) struct PeerFsm {
    config: fsm::Config,
    primary: Conn,
    secondary: Option<Conn>,
    next_id: u64,
    last_error: Option<String>,
    /// The primary's falls to Idle already reported as `last_error`.
    reported_downs: (ConnId, u64),
}

/// How a session's end reads in status.
pub(crate) fn reason_text(r: &DownReason) -> String {
    match r {
        DownReason::ManualStop => "stopped".into(),
        DownReason::HoldTimerExpired => "hold timer expired".into(),
        DownReason::NotificationSent(n) => format!("sent {n}"),
        DownReason::NotificationReceived(n) => format!("received {n}"),
        DownReason::ConnectionLost => "connection lost".into(),
        DownReason::UnexpectedEvent => "unexpected event".into(),
    }
}

impl PeerFsm {
    pub(crate) fn new(config: fsm::Config) -> Self {
        let primary = Conn {
            id: ConnId(1),
            fsm: Fsm::new(config.clone()),
            outbound: false,
        };
        PeerFsm {
            config,
            primary,
            secondary: None,
            next_id: 2,
            last_error: None,
            reported_downs: (ConnId(1), 0),
        }
    }

    /// The session's connection: routes go on it.
    pub(crate) fn primary(&self) -> (ConnId, &Fsm) {
        (self.primary.id, &self.primary.fsm)
    }

    /// The FSM of a connection, if it is still one of the two.
    pub(crate) fn fsm(&self, id: ConnId) -> Option<&Fsm> {
        self.find(id).and_then(|w| self.conn(w)).map(|c| &c.fsm)
    }

    /// Handles one input at `now` (time since the session started).
    pub(crate) fn handle(&mut self, now: Duration, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.feed(now, Which::Primary, Event::ManualStart, &mut out),
            Input::Incoming => self.incoming(now, &mut out),
            Input::Connected(id) => {
                if let Some(which) = self.find(id) {
                    if let Some(c) = self.conn_mut(which) {
                        c.outbound = true;
                    }
                    self.feed(now, which, Event::TcpConnectionConfirmed, &mut out);
                }
            }
            Input::ConnectFailed(id, error) => {
                if let Some(which) = self.find(id) {
                    self.feed(now, which, Event::TcpConnectionFails, &mut out);
                    // The FSM calls it a lost connection; the kernel's
                    // words say more.
                    if which == Which::Primary {
                        self.reported_downs = (self.primary.id, self.primary.fsm.downs());
                        self.last_error = Some(format!("TCP connection failed: {error}"));
                        for o in &mut out {
                            if let Output::State { last_error, .. } = o {
                                last_error.clone_from(&self.last_error);
                            }
                        }
                    }
                }
            }
            Input::Event(id, event) => {
                if let Some(which) = self.find(id) {
                    self.feed(now, which, event, &mut out);
                }
            }
            Input::Stop(event) => {
                self.feed(now, Which::Primary, event.clone(), &mut out);
                if self.secondary.is_some() {
                    self.feed(now, Which::Secondary, event, &mut out);
                }
            }
        }
        out
    }

    fn find(&self, id: ConnId) -> Option<Which> {
        if self.primary.id == id {
            Some(Which::Primary)
        } else if self.secondary.as_ref().is_some_and(|c| c.id == id) {
            Some(Which::Secondary)
        } else {
            None
        }
    }

    fn conn(&self, which: Which) -> Option<&Conn> {
        match which {
            Which::Primary => Some(&self.primary),
            Which::Secondary => self.secondary.as_ref(),
        }
    }

    fn conn_mut(&mut self, which: Which) -> Option<&mut Conn> {
        match which {
            Which::Primary => Some(&mut self.primary),
            Which::Secondary => self.secondary.as_mut(),
        }
    }

    /// Feeds one event to a connection's FSM: its actions, then what its
    /// change of state means for the two connections.
    fn feed(&mut self, now: Duration, which: Which, event: Event, out: &mut Vec<Output>) {
        let Some(conn) = self.conn_mut(which) else {
            return;
        };
        let id = conn.id;
        let before = conn.fsm.state();
        out.extend(
            conn.fsm
                .handle(now, event)
                .into_iter()
                .map(|a| Output::Act(id, a)),
        );
        let after = conn.fsm.state();
        if before != after {
            if after == State::OpenConfirm {
                self.check_collision(now, which, out);
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
                self.report_state(out);
            }
        }
        self.tidy(out);
    }

    /// Drops a secondary connection that went Idle, and promotes one that
    /// outlived a primary which lost a collision.
    fn tidy(&mut self, out: &mut Vec<Output>) {
        if let Some(second) = self.secondary.take_if(|c| c.fsm.state() == State::Idle) {
            out.push(Output::Release(second.id));
        }
        let primary_lost = matches!(
            self.primary.fsm.last_down(),
            Some(DownReason::NotificationSent(n))
                if n.code == code::CEASE && n.subcode == cease::CONNECTION_COLLISION_RESOLUTION
        ) && self.primary.fsm.state() == State::Idle;
        if primary_lost && let Some(second) = self.secondary.take() {
            let lost = std::mem::replace(&mut self.primary, second);
            out.push(Output::Release(lost.id));
            self.report_state(out);
        }
    }

    fn report_state(&mut self, out: &mut Vec<Output>) {
        let downs = (self.primary.id, self.primary.fsm.downs());
        if downs != self.reported_downs {
            self.reported_downs = downs;
            if let Some(r) = self.primary.fsm.last_down() {
                self.last_error = Some(reason_text(r));
            }
        }
        out.push(Output::State {
            state: self.primary.fsm.state(),
            last_error: self.last_error.clone(),
        });
    }

    /// `which` reached OpenConfirm: if the other connection is
    /// OpenConfirm too, RFC 4271 §6.8 picks the survivor; if it is
    /// Established, `which` loses.
    fn check_collision(&mut self, now: Duration, which: Which, out: &mut Vec<Output>) {
        let other = match which {
            Which::Primary => Which::Secondary,
            Which::Secondary => Which::Primary,
        };
        let (Some(me), Some(them)) = (self.conn(which), self.conn(other)) else {
            return;
        };
        let loser = match them.fsm.state() {
            State::Established => which,
            State::OpenConfirm => {
                let local = &self.config.local;
                let Some(n) = me.fsm.negotiated() else {
                    return;
                };
                let keep = resolve_collision(local.bgp_id, local.asn(), n.peer_id, n.peer_as);
                if me.outbound == (keep == Keep::Outbound) {
                    other
                } else {
                    which
                }
            }
            _ => return,
        };
        tracing::info!(?loser, "connection collision");
        self.feed(now, loser, Event::OpenCollisionDump, out);
    }

    /// An inbound connection replaces a pending attempt of the primary,
    /// becomes the secondary while the primary is opening, or is refused.
    fn incoming(&mut self, now: Duration, out: &mut Vec<Output>) {
        match self.primary.fsm.state() {
            State::Idle | State::Connect | State::Active => {
                if self.primary.fsm.state() == State::Idle {
                    self.feed(now, Which::Primary, Event::ManualStartPassive, out);
                }
                self.primary.outbound = false;
                out.push(Output::Attach(self.primary.id));
                self.feed(now, Which::Primary, Event::TcpConnectionConfirmed, out);
            }
            State::OpenSent | State::OpenConfirm if self.secondary.is_none() => {
                let id = ConnId(self.next_id);
                self.next_id += 1;
                let mut fsm = Fsm::new(self.config.clone());
                // It only waits for this connection: no timers of its own.
                let _ = fsm.handle(now, Event::ManualStartPassive);
                self.secondary = Some(Conn {
                    id,
                    fsm,
                    outbound: false,
                });
                out.push(Output::Attach(id));
                self.feed(now, Which::Secondary, Event::TcpConnectionConfirmed, out);
            }
            _ => out.push(Output::Refuse),
        }
    }
}
