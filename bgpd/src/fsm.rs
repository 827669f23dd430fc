//! The BGP finite state machine (RFC 4271 §8) as a pure state machine.
//!
//! [`Fsm::handle`] takes the current time and an [`Event`] and returns the
//! [`Action`]s the session task must carry out, in order. Timers are
//! actions too ([`Action::StartTimer`] restarts, [`Action::StopTimer`] is
//! idempotent) and their expiries come back as events. Nothing in here
//! reads a clock, touches a socket or logs; `now` only stamps state changes
//! for uptime reporting.
//!
//! One `Fsm` drives one TCP connection to a peer. When two connections to
//! the same peer collide (RFC 4271 §6.8), the owner compares identifiers
//! with [`resolve_collision`] and feeds [`Event::OpenCollisionDump`] to the
//! loser.
//!
//! Departures from the letter of §8, all optional features there:
//! DelayOpen and peer oscillation damping are not implemented; instead of
//! the optional AutomaticStart events, an FSM that fell to Idle by error
//! (not by ManualStop) restarts itself when the IdleHold timer it started
//! expires, with a back-off doubling per consecutive failure (capped at 32×);
//! the ConnectRetryCounter is kept across automatic restarts so that the
//! back-off grows, and cleared on reaching Established. A passive peer never
//! initiates a connection: in Active, ConnectRetry expiry just restarts the
//! timer.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::notification::{Notification, cease, code, fsm as fsm_sub};
use crate::open::{Negotiated, Open, negotiate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    /// The state's name as RFC 4271 spells it (`OpenSent`, `Established`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    /// Delay before an automatic restart from Idle.
    IdleHold,
}

/// Inputs, with their RFC 4271 §8.1 event numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// (event 1) Start, initiating connections.
    ManualStart,
    /// (event 5) Start, only accepting connections.
    ManualStartPassive,
    /// (event 2)
    ManualStop,
    /// (event 2) with this Cease subcode (RFC 4486) in place of
    /// Administrative Shutdown: Peer De-configured, Other Configuration
    /// Change.
    ManualStopCease(u8),
    /// (event 9)
    ConnectRetryTimerExpires,
    /// (event 10)
    HoldTimerExpires,
    /// (event 11)
    KeepaliveTimerExpires,
    /// The IdleHold timer expired: automatic restart.
    IdleHoldTimerExpires,
    /// (event 16, 17) Our connection attempt succeeded, or we accepted one.
    TcpConnectionConfirmed,
    /// (event 18)
    TcpConnectionFails,
    /// (event 19) A well-formed OPEN arrived.
    BgpOpen(Open),
    /// (event 21, 22, 28) A message failed framing, OPEN or UPDATE checks; the
    /// notification is the one to send.
    MessageError(Notification),
    /// (event 23) This connection lost a collision.
    OpenCollisionDump,
    /// (event 24, 25) A NOTIFICATION arrived (version errors are told apart here).
    NotifMsg(Notification),
    /// (event 26)
    KeepAliveMsg,
    /// (event 27) A valid UPDATE arrived (also after treat-as-withdraw).
    UpdateMsg,
    /// We sent an UPDATE: it counts as a keepalive (RFC 4271 §4.4).
    UpdateSent,
}

impl Event {
    #[cfg(any(test, feature = "testing"))]
    /// One of 16 representative events for a code (taken modulo 16), with
    /// `peer` as the OPEN received: how the fuzz target and the property
    /// tests turn bytes into event sequences.
    #[doc(hidden)]
    pub fn from_code(code: u8, peer: &Open) -> Event {
        match code % 16 {
            0 => Event::ManualStart,
            1 => Event::ManualStartPassive,
            2 => Event::ManualStop,
            3 => Event::ConnectRetryTimerExpires,
            4 => Event::HoldTimerExpires,
            5 => Event::KeepaliveTimerExpires,
            6 => Event::IdleHoldTimerExpires,
            7 => Event::TcpConnectionConfirmed,
            8 => Event::TcpConnectionFails,
            9 => Event::BgpOpen(peer.clone()),
            10 => Event::MessageError(Notification::new(3, 1, [])),
            11 => Event::OpenCollisionDump,
            12 => Event::NotifMsg(Notification::new(6, 4, [])),
            13 => Event::KeepAliveMsg,
            14 => Event::UpdateMsg,
            _ => Event::UpdateSent,
        }
    }
}

/// Why an established session, or an attempt at one, ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    ManualStop,
    HoldTimerExpired,
    /// We sent this NOTIFICATION.
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    ConnectionLost,
    /// An event the current state does not allow, with no NOTIFICATION
    /// (Connect/Active).
    UnexpectedEvent,
}

/// Outputs, to be carried out in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Initiate a TCP connection to the peer.
    Connect,
    /// Drop the TCP connection.
    CloseConnection,
    SendOpen(Open),
    SendKeepalive,
    SendNotification(Notification),
    /// (Re)start a timer.
    StartTimer(Timer, Duration),
    StopTimer(Timer),
    /// The session reached Established: the RIB may exchange routes.
    SessionEstablished(Negotiated),
    /// An Established session ended: the RIB drops or stales its routes.
    SessionDown(DownReason),
}

/// Per-peer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our OPEN, capabilities and proposed hold time included.
    pub local: Open,
    /// The AS the peer must have.
    pub peer_as: u32,
    /// ConnectRetryTime (RFC 4271 §10 suggests 120 s).
    pub connect_retry: Duration,
    /// Base delay of an automatic restart.
    pub idle_hold: Duration,
    /// Only accept connections, never initiate them.
    pub passive: bool,
}

/// The OpenSent hold time before the peer's OPEN (RFC 4271 §8.2.2: "a large
/// value", 4 minutes suggested).
pub const LARGE_HOLD_TIME: Duration = Duration::from_secs(240);

#[derive(Debug, Clone)]
pub struct Fsm {
    config: Config,
    state: State,
    since: Duration,
    connect_retry_counter: u32,
    negotiated: Option<Negotiated>,
    auto_restart: bool,
    last_down: Option<DownReason>,
    /// How many times it fell to Idle: tells a new `last_down` from an old.
    downs: u64,
}

fn secs(s: u16) -> Duration {
    Duration::from_secs(u64::from(s))
}

impl Fsm {
    pub fn new(config: Config) -> Self {
        Fsm {
            config,
            state: State::Idle,
            since: Duration::ZERO,
            connect_retry_counter: 0,
            negotiated: None,
            auto_restart: false,
            last_down: None,
            downs: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    #[cfg(any(test, feature = "testing"))]
    /// When the current state was entered (the `now` of that event).
    pub fn since(&self) -> Duration {
        self.since
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    /// Session parameters, from OpenConfirm on.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Why the FSM last fell back to Idle.
    /// How many times it fell to Idle (a new [`last_down`](Self::last_down)
    /// each time).
    pub fn downs(&self) -> u64 {
        self.downs
    }

    pub fn last_down(&self) -> Option<&DownReason> {
        self.last_down.as_ref()
    }

    /// Whether UPDATEs may be sent (RFC 4271 §8.2.2: only in Established).
    pub fn can_send_updates(&self) -> bool {
        self.state == State::Established
    }

    fn enter(&mut self, state: State, now: Duration) {
        if self.state != state {
            self.state = state;
            self.since = now;
        }
    }

    fn idle_hold_time(&self) -> Duration {
        self.config.idle_hold * (1u32 << self.connect_retry_counter.saturating_sub(1).min(5))
    }

    /// Starts from Idle: counter cleared by a manual start only.
    fn start(&mut self, now: Duration, passive: bool, out: &mut Vec<Action>) {
        self.auto_restart = true;
        out.push(Action::StopTimer(Timer::IdleHold));
        out.push(Action::StartTimer(
            Timer::ConnectRetry,
            self.config.connect_retry,
        ));
        if passive {
            self.enter(State::Active, now);
        } else {
            out.push(Action::Connect);
            self.enter(State::Connect, now);
        }
    }

    /// Drops to Idle: optional NOTIFICATION, close, stop every timer,
    /// report the session down if it was up, schedule an automatic restart.
    fn fall_to_idle(
        &mut self,
        now: Duration,
        reason: DownReason,
        count_failure: bool,
        out: &mut Vec<Action>,
    ) {
        if let DownReason::NotificationSent(n) = &reason {
            out.push(Action::SendNotification(n.clone()));
        }
        out.push(Action::CloseConnection);
        for t in [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive] {
            out.push(Action::StopTimer(t));
        }
        if self.state == State::Established {
            out.push(Action::SessionDown(reason.clone()));
        }
        if reason == DownReason::ManualStop {
            self.auto_restart = false;
            self.connect_retry_counter = 0;
        } else if count_failure {
            self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
        }
        if self.auto_restart {
            out.push(Action::StartTimer(Timer::IdleHold, self.idle_hold_time()));
        }
        self.negotiated = None;
        self.last_down = Some(reason);
        self.downs += 1;
        self.enter(State::Idle, now);
    }

    /// The FSM Error NOTIFICATION for an unexpected event (RFC 6608).
    fn fsm_error(&self) -> Notification {
        let sub = match self.state {
            State::OpenSent => fsm_sub::UNEXPECTED_IN_OPEN_SENT,
            State::OpenConfirm => fsm_sub::UNEXPECTED_IN_OPEN_CONFIRM,
            State::Established => fsm_sub::UNEXPECTED_IN_ESTABLISHED,
            _ => fsm_sub::UNSPECIFIED,
        };
        Notification::new(code::FSM, sub, [])
    }

    fn restart_hold(&self, out: &mut Vec<Action>) {
        if let Some(n) = self.negotiated.as_ref().filter(|n| n.hold_time > 0) {
            out.push(Action::StartTimer(Timer::Hold, secs(n.hold_time)));
        }
    }

    fn restart_keepalive(&self, out: &mut Vec<Action>) {
        if let Some(n) = self.negotiated.as_ref().filter(|n| n.keepalive_time > 0) {
            out.push(Action::StartTimer(Timer::Keepalive, secs(n.keepalive_time)));
        }
    }

    /// Feeds one event; returns what to do.
    pub fn handle(&mut self, now: Duration, event: Event) -> Vec<Action> {
        use Event as E;
        use State as S;
        let mut out = Vec::new();
        let admin_shutdown = || Notification::new(code::CEASE, cease::ADMINISTRATIVE_SHUTDOWN, []);
        match (self.state, event) {
            (S::Idle, E::ManualStart) => {
                self.connect_retry_counter = 0;
                self.start(now, self.config.passive, &mut out);
            }
            (S::Idle, E::ManualStartPassive) => {
                self.connect_retry_counter = 0;
                self.start(now, true, &mut out);
            }
            (S::Idle, E::IdleHoldTimerExpires) if self.auto_restart => {
                self.start(now, self.config.passive, &mut out)
            }
            (S::Idle, _) => {}

            // Starting twice changes nothing (RFC 4271 §8.2.2).
            (_, E::ManualStart | E::ManualStartPassive) => {}

            (S::Connect | S::Active, E::ManualStop | E::ManualStopCease(_)) => {
                self.fall_to_idle(now, DownReason::ManualStop, false, &mut out)
            }
            (S::OpenSent | S::OpenConfirm | S::Established, E::ManualStop) => {
                let n = admin_shutdown();
                out.push(Action::SendNotification(n));
                self.fall_to_idle(now, DownReason::ManualStop, false, &mut out);
            }
            (S::OpenSent | S::OpenConfirm | S::Established, E::ManualStopCease(subcode)) => {
                let n = Notification::new(code::CEASE, subcode, []);
                out.push(Action::SendNotification(n));
                self.fall_to_idle(now, DownReason::ManualStop, false, &mut out);
            }

            (S::Connect, E::ConnectRetryTimerExpires) => {
                out.push(Action::CloseConnection);
                out.push(Action::StartTimer(
                    Timer::ConnectRetry,
                    self.config.connect_retry,
                ));
                out.push(Action::Connect);
            }
            (S::Active, E::ConnectRetryTimerExpires) => {
                out.push(Action::StartTimer(
                    Timer::ConnectRetry,
                    self.config.connect_retry,
                ));
                if !self.config.passive {
                    out.push(Action::Connect);
                    self.enter(S::Connect, now);
                }
            }
            (S::Connect | S::Active, E::TcpConnectionConfirmed) => {
                out.push(Action::StopTimer(Timer::ConnectRetry));
                out.push(Action::SendOpen(self.config.local.clone()));
                out.push(Action::StartTimer(Timer::Hold, LARGE_HOLD_TIME));
                self.enter(S::OpenSent, now);
            }
            // Stale local events (a timer that fired as it was stopped, an
            // UPDATE sent as the session went down) change nothing.
            (_, E::IdleHoldTimerExpires)
            | (S::Connect | S::Active | S::OpenSent | S::OpenConfirm, E::UpdateSent) => {}

            (S::Connect | S::Active, E::TcpConnectionFails) => {
                self.fall_to_idle(now, DownReason::ConnectionLost, true, &mut out)
            }
            (S::Connect | S::Active, _) => {
                self.fall_to_idle(now, DownReason::UnexpectedEvent, true, &mut out)
            }

            // A second connection may be coming up; collision handling
            // decides, not this FSM (RFC 4271 §8.2.2, OpenSent).
            (S::OpenSent | S::OpenConfirm | S::Established, E::TcpConnectionConfirmed) => {}

            (S::OpenSent | S::OpenConfirm | S::Established, E::HoldTimerExpires) => {
                out.push(Action::SendNotification(Notification::new(
                    code::HOLD_TIMER_EXPIRED,
                    0,
                    [],
                )));
                self.fall_to_idle(now, DownReason::HoldTimerExpired, true, &mut out);
            }
            (S::OpenSent, E::TcpConnectionFails) => {
                // RFC 4271 §8.2.2: back to Active, keep listening.
                out.push(Action::CloseConnection);
                out.push(Action::StopTimer(Timer::Hold));
                out.push(Action::StartTimer(
                    Timer::ConnectRetry,
                    self.config.connect_retry,
                ));
                self.enter(S::Active, now);
            }
            (S::OpenConfirm | S::Established, E::TcpConnectionFails) => {
                self.fall_to_idle(now, DownReason::ConnectionLost, true, &mut out)
            }
            (S::OpenSent | S::OpenConfirm | S::Established, E::NotifMsg(n)) => {
                // A version error is expected during version negotiation
                // and does not count as a failure (events 24 vs 25).
                let version_error = n.code == code::OPEN_MESSAGE
                    && n.subcode == crate::notification::open::UNSUPPORTED_VERSION;
                self.fall_to_idle(
                    now,
                    DownReason::NotificationReceived(n),
                    !version_error,
                    &mut out,
                );
            }
            (S::OpenSent | S::OpenConfirm | S::Established, E::MessageError(n)) => {
                self.fall_to_idle(now, DownReason::NotificationSent(n), true, &mut out)
            }
            (S::OpenSent | S::OpenConfirm, E::OpenCollisionDump) => {
                let n = Notification::new(code::CEASE, cease::CONNECTION_COLLISION_RESOLUTION, []);
                self.fall_to_idle(now, DownReason::NotificationSent(n), true, &mut out);
            }

            (S::OpenSent, E::BgpOpen(open)) => {
                match negotiate(&self.config.local, &open, self.config.peer_as) {
                    Ok(n) => {
                        out.push(Action::StopTimer(Timer::ConnectRetry));
                        out.push(Action::SendKeepalive);
                        self.negotiated = Some(n);
                        if self.negotiated.as_ref().is_some_and(|n| n.hold_time == 0) {
                            // RFC 4271 §8.2.2: no Hold and Keepalive timers.
                            out.push(Action::StopTimer(Timer::Hold));
                        } else {
                            self.restart_keepalive(&mut out);
                            self.restart_hold(&mut out);
                        }
                        self.enter(S::OpenConfirm, now);
                    }
                    Err(n) => {
                        self.fall_to_idle(now, DownReason::NotificationSent(n), true, &mut out)
                    }
                }
            }

            (S::OpenConfirm | S::Established, E::KeepaliveTimerExpires) => {
                out.push(Action::SendKeepalive);
                self.restart_keepalive(&mut out);
            }
            (S::OpenConfirm, E::KeepAliveMsg) => {
                self.restart_hold(&mut out);
                self.connect_retry_counter = 0;
                self.enter(S::Established, now);
                if let Some(n) = &self.negotiated {
                    out.push(Action::SessionEstablished(n.clone()));
                }
            }

            (S::Established, E::KeepAliveMsg | E::UpdateMsg) => self.restart_hold(&mut out),
            (S::Established, E::UpdateSent) => self.restart_keepalive(&mut out),

            // Everything else is a Finite State Machine Error (RFC 6608).
            (S::OpenSent | S::OpenConfirm | S::Established, _) => {
                let n = self.fsm_error();
                self.fall_to_idle(now, DownReason::NotificationSent(n), true, &mut out);
            }
        }
        out
    }
}

/// Which of two colliding connections survives (RFC 4271 §6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The connection we initiated.
    Outbound,
    /// The connection the peer initiated.
    Inbound,
}

/// RFC 4271 §6.8: the connection initiated by the speaker with the higher
/// BGP Identifier survives. RFC 6286 §2.3: with equal identifiers (possible
/// between ASes), the one initiated by the speaker with the larger AS.
pub fn resolve_collision(
    local_id: Ipv4Addr,
    local_as: u32,
    remote_id: Ipv4Addr,
    remote_as: u32,
) -> Keep {
    let local_wins = match u32::from(local_id).cmp(&u32::from(remote_id)) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => local_as > remote_as,
    };
    if local_wins {
        Keep::Outbound
    } else {
        Keep::Inbound
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capability;
    use crate::prefix::AfiSafi;

    const T0: Duration = Duration::ZERO;

    fn open(asn: u32, hold: u16, id: [u8; 4]) -> Open {
        Open::new(
            asn,
            hold,
            Ipv4Addr::from(id),
            vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST)],
        )
    }

    fn config(passive: bool) -> Config {
        Config {
            local: open(65001, 90, [10, 0, 0, 1]),
            peer_as: 65002,
            connect_retry: Duration::from_secs(5),
            idle_hold: Duration::from_secs(1),
            passive,
        }
    }

    fn peer_open() -> Open {
        open(65002, 30, [10, 0, 0, 2])
    }

    fn fsm_in(state: State) -> Fsm {
        let mut f = Fsm::new(config(false));
        let path: &[Event] = match state {
            State::Idle => &[],
            State::Connect => &[Event::ManualStart],
            State::Active => &[Event::ManualStartPassive],
            State::OpenSent => &[Event::ManualStart, Event::TcpConnectionConfirmed],
            State::OpenConfirm => &[
                Event::ManualStart,
                Event::TcpConnectionConfirmed,
                Event::BgpOpen(peer_open()),
            ],
            State::Established => &[
                Event::ManualStart,
                Event::TcpConnectionConfirmed,
                Event::BgpOpen(peer_open()),
                Event::KeepAliveMsg,
            ],
        };
        for e in path {
            f.handle(T0, e.clone());
        }
        assert_eq!(f.state(), state);
        f
    }

    fn sent_notification(actions: &[Action]) -> Option<(u8, u8)> {
        actions.iter().find_map(|a| match a {
            Action::SendNotification(n) => Some((n.code, n.subcode)),
            _ => None,
        })
    }

    #[test]
    fn manual_start_connects_and_starts_connect_retry_timer() {
        let mut f = Fsm::new(config(false));
        let a = f.handle(T0, Event::ManualStart);
        assert_eq!(f.state(), State::Connect);
        assert!(a.contains(&Action::Connect));
        assert!(a.contains(&Action::StartTimer(
            Timer::ConnectRetry,
            Duration::from_secs(5)
        )));
    }

    #[test]
    fn passive_start_waits_in_active_without_connecting() {
        let mut f = Fsm::new(config(true));
        let a = f.handle(T0, Event::ManualStart);
        assert_eq!(f.state(), State::Active);
        assert!(!a.contains(&Action::Connect));
        let a = f.handle(T0, Event::ConnectRetryTimerExpires);
        assert_eq!(f.state(), State::Active);
        assert!(!a.contains(&Action::Connect));
    }

    #[test]
    fn active_peer_in_active_state_retries_by_connecting_when_the_timer_expires() {
        let mut f = fsm_in(State::Active);
        let a = f.handle(T0, Event::ConnectRetryTimerExpires);
        assert_eq!(f.state(), State::Connect);
        assert!(a.contains(&Action::Connect));
    }

    #[test]
    fn connect_retry_expiry_in_connect_retries_the_connection() {
        let mut f = fsm_in(State::Connect);
        let a = f.handle(T0, Event::ConnectRetryTimerExpires);
        assert_eq!(f.state(), State::Connect);
        assert_eq!(
            a,
            vec![
                Action::CloseConnection,
                Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(5)),
                Action::Connect
            ]
        );
    }

    #[test]
    fn tcp_connection_sends_open_and_arms_the_large_hold_timer() {
        for from in [State::Connect, State::Active] {
            let mut f = fsm_in(from);
            let a = f.handle(T0, Event::TcpConnectionConfirmed);
            assert_eq!(f.state(), State::OpenSent, "from {from:?}");
            assert!(a.contains(&Action::SendOpen(config(false).local)));
            assert!(a.contains(&Action::StartTimer(Timer::Hold, LARGE_HOLD_TIME)));
            assert!(a.contains(&Action::StopTimer(Timer::ConnectRetry)));
        }
    }

    #[test]
    fn tcp_failure_in_connect_falls_to_idle_and_schedules_a_restart() {
        let mut f = fsm_in(State::Connect);
        let a = f.handle(T0, Event::TcpConnectionFails);
        assert_eq!(f.state(), State::Idle);
        assert_eq!(f.connect_retry_counter(), 1);
        assert!(a.contains(&Action::StartTimer(Timer::IdleHold, Duration::from_secs(1))));
        f.handle(T0, Event::IdleHoldTimerExpires);
        assert_eq!(f.state(), State::Connect);
    }

    #[test]
    fn restart_back_off_doubles_with_each_consecutive_failure() {
        let mut f = fsm_in(State::Connect);
        let mut delays = Vec::new();
        for _ in 0..8 {
            let a = f.handle(T0, Event::TcpConnectionFails);
            delays.extend(a.iter().filter_map(|x| match x {
                Action::StartTimer(Timer::IdleHold, d) => Some(d.as_secs()),
                _ => None,
            }));
            f.handle(T0, Event::IdleHoldTimerExpires);
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 32, 32]);
    }

    #[test]
    fn idle_ignores_everything_but_start() {
        let mut f = Fsm::new(config(false));
        for e in [
            Event::KeepAliveMsg,
            Event::TcpConnectionConfirmed,
            Event::HoldTimerExpires,
            Event::IdleHoldTimerExpires,
        ] {
            assert_eq!(f.handle(T0, e), vec![]);
            assert_eq!(f.state(), State::Idle);
        }
    }

    #[test]
    fn valid_open_in_open_sent_sends_keepalive_and_uses_the_negotiated_hold_time() {
        let mut f = fsm_in(State::OpenSent);
        let a = f.handle(T0, Event::BgpOpen(peer_open()));
        assert_eq!(f.state(), State::OpenConfirm);
        assert!(a.contains(&Action::SendKeepalive));
        assert!(a.contains(&Action::StartTimer(Timer::Hold, Duration::from_secs(30))));
        assert!(a.contains(&Action::StartTimer(
            Timer::Keepalive,
            Duration::from_secs(10)
        )));
        assert_eq!(f.negotiated().unwrap().peer_as, 65002);
    }

    #[test]
    fn zero_hold_time_runs_no_hold_or_keepalive_timer() {
        let mut f = fsm_in(State::OpenSent);
        let a = f.handle(T0, Event::BgpOpen(open(65002, 0, [10, 0, 0, 2])));
        assert_eq!(f.state(), State::OpenConfirm);
        assert!(a.contains(&Action::StopTimer(Timer::Hold)));
        assert!(
            !a.iter()
                .any(|x| matches!(x, Action::StartTimer(Timer::Hold | Timer::Keepalive, _)))
        );
        let a = f.handle(T0, Event::KeepAliveMsg);
        assert!(!a.iter().any(|x| matches!(x, Action::StartTimer(..))));
    }

    #[test]
    fn open_from_the_wrong_as_is_refused_with_bad_peer_as() {
        let mut f = fsm_in(State::OpenSent);
        let a = f.handle(T0, Event::BgpOpen(open(65099, 90, [10, 0, 0, 2])));
        assert_eq!(f.state(), State::Idle);
        assert_eq!(sent_notification(&a), Some((2, 2)));
        assert!(a.contains(&Action::CloseConnection));
    }

    #[test]
    fn keepalive_in_open_confirm_establishes_the_session() {
        let mut f = fsm_in(State::OpenConfirm);
        let a = f.handle(Duration::from_secs(7), Event::KeepAliveMsg);
        assert_eq!(f.state(), State::Established);
        assert_eq!(f.since(), Duration::from_secs(7));
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::SessionEstablished(n) if n.hold_time == 30))
        );
        assert!(f.can_send_updates());
    }

    #[test]
    fn hold_timer_expiry_sends_hold_timer_expired_and_reports_the_session_down() {
        let mut f = fsm_in(State::Established);
        let a = f.handle(T0, Event::HoldTimerExpires);
        assert_eq!(f.state(), State::Idle);
        assert_eq!(sent_notification(&a), Some((4, 0)));
        assert!(a.contains(&Action::SessionDown(DownReason::HoldTimerExpired)));
        assert_eq!(f.last_down(), Some(&DownReason::HoldTimerExpired));
    }

    #[test]
    fn hold_timer_expiry_in_open_sent_does_not_report_a_session_that_never_came_up() {
        let mut f = fsm_in(State::OpenSent);
        let a = f.handle(T0, Event::HoldTimerExpires);
        assert_eq!(sent_notification(&a), Some((4, 0)));
        assert!(!a.iter().any(|x| matches!(x, Action::SessionDown(_))));
    }

    #[test]
    fn keepalive_timer_sends_keepalive_and_rearms() {
        let mut f = fsm_in(State::Established);
        assert_eq!(
            f.handle(T0, Event::KeepaliveTimerExpires),
            vec![
                Action::SendKeepalive,
                Action::StartTimer(Timer::Keepalive, Duration::from_secs(10))
            ]
        );
    }

    #[test]
    fn received_keepalive_or_update_restarts_the_hold_timer() {
        let mut f = fsm_in(State::Established);
        for e in [Event::KeepAliveMsg, Event::UpdateMsg] {
            assert_eq!(
                f.handle(T0, e),
                vec![Action::StartTimer(Timer::Hold, Duration::from_secs(30))]
            );
        }
        assert_eq!(
            f.handle(T0, Event::UpdateSent),
            vec![Action::StartTimer(
                Timer::Keepalive,
                Duration::from_secs(10)
            )]
        );
    }

    #[test]
    fn update_error_sends_its_notification_and_tears_the_session_down() {
        let mut f = fsm_in(State::Established);
        let n = Notification::new(3, 1, []);
        let a = f.handle(T0, Event::MessageError(n.clone()));
        assert_eq!(a[0], Action::SendNotification(n.clone()));
        assert!(a.contains(&Action::SessionDown(DownReason::NotificationSent(n))));
        assert_eq!(f.state(), State::Idle);
    }

    #[test]
    fn notification_from_the_peer_drops_the_session_without_replying() {
        let mut f = fsm_in(State::Established);
        let n = Notification::new(6, 2, []);
        let a = f.handle(T0, Event::NotifMsg(n.clone()));
        assert_eq!(sent_notification(&a), None);
        assert!(a.contains(&Action::SessionDown(DownReason::NotificationReceived(n))));
        assert_eq!(f.connect_retry_counter(), 1);
    }

    #[test]
    fn version_error_notification_does_not_count_as_a_failure() {
        let mut f = fsm_in(State::OpenSent);
        f.handle(T0, Event::NotifMsg(Notification::new(2, 1, [0, 4])));
        assert_eq!((f.state(), f.connect_retry_counter()), (State::Idle, 0));
    }

    #[test]
    fn manual_stop_sends_administrative_shutdown_and_stays_down() {
        let mut f = fsm_in(State::Established);
        let a = f.handle(T0, Event::ManualStop);
        assert_eq!(sent_notification(&a), Some((6, 2)));
        assert!(a.contains(&Action::SessionDown(DownReason::ManualStop)));
        assert!(
            !a.iter()
                .any(|x| matches!(x, Action::StartTimer(Timer::IdleHold, _)))
        );
        assert_eq!(f.handle(T0, Event::IdleHoldTimerExpires), vec![]);
        assert_eq!(f.state(), State::Idle);
    }

    #[test]
    fn deconfiguring_a_peer_sends_cease_peer_deconfigured_and_stays_down() {
        let mut f = fsm_in(State::Established);
        let a = f.handle(T0, Event::ManualStopCease(cease::PEER_DECONFIGURED));
        assert_eq!(sent_notification(&a), Some((6, 3)));
        assert!(a.contains(&Action::SessionDown(DownReason::ManualStop)));
        assert_eq!(f.handle(T0, Event::IdleHoldTimerExpires), vec![]);
        assert_eq!(f.state(), State::Idle);
    }

    #[test]
    fn manual_stop_before_open_closes_without_notification() {
        let mut f = fsm_in(State::Connect);
        let a = f.handle(T0, Event::ManualStop);
        assert_eq!(sent_notification(&a), None);
        assert_eq!(f.state(), State::Idle);
    }

    #[test]
    fn unexpected_messages_are_fsm_errors_naming_the_state() {
        let cases = [
            (State::OpenSent, Event::KeepAliveMsg, 1),
            (State::OpenSent, Event::UpdateMsg, 1),
            (State::OpenConfirm, Event::UpdateMsg, 2),
            (State::OpenConfirm, Event::BgpOpen(peer_open()), 2),
            (State::Established, Event::BgpOpen(peer_open()), 3),
            (State::Established, Event::ConnectRetryTimerExpires, 3),
        ];
        for (state, event, sub) in cases {
            let mut f = fsm_in(state);
            let a = f.handle(T0, event.clone());
            assert_eq!(
                sent_notification(&a),
                Some((5, sub)),
                "{state:?} + {event:?}"
            );
            assert_eq!(f.state(), State::Idle);
        }
    }

    #[test]
    fn bgp_messages_before_open_sent_drop_the_connection_silently() {
        let mut f = fsm_in(State::Connect);
        let a = f.handle(T0, Event::KeepAliveMsg);
        assert_eq!(sent_notification(&a), None);
        assert_eq!(f.state(), State::Idle);
        assert_eq!(f.last_down(), Some(&DownReason::UnexpectedEvent));
    }

    #[test]
    fn tcp_failure_in_open_sent_returns_to_active_to_listen() {
        let mut f = fsm_in(State::OpenSent);
        let a = f.handle(T0, Event::TcpConnectionFails);
        assert_eq!(f.state(), State::Active);
        assert!(a.contains(&Action::StartTimer(
            Timer::ConnectRetry,
            Duration::from_secs(5)
        )));
    }

    #[test]
    fn tcp_failure_in_open_confirm_or_established_falls_to_idle() {
        for s in [State::OpenConfirm, State::Established] {
            let mut f = fsm_in(s);
            let a = f.handle(T0, Event::TcpConnectionFails);
            assert_eq!(f.state(), State::Idle);
            assert_eq!(
                a.iter()
                    .any(|x| matches!(x, Action::SessionDown(DownReason::ConnectionLost))),
                s == State::Established
            );
        }
    }

    #[test]
    fn losing_a_collision_sends_cease_connection_collision_resolution() {
        for s in [State::OpenSent, State::OpenConfirm] {
            let mut f = fsm_in(s);
            let a = f.handle(T0, Event::OpenCollisionDump);
            assert_eq!(sent_notification(&a), Some((6, 7)));
            assert_eq!(f.state(), State::Idle);
        }
    }

    #[test]
    fn stale_idle_hold_expiry_or_update_sent_outside_their_state_is_ignored() {
        for s in [State::Connect, State::OpenSent, State::Established] {
            let mut f = fsm_in(s);
            assert_eq!(f.handle(T0, Event::IdleHoldTimerExpires), vec![]);
            assert_eq!(f.state(), s);
        }
        let mut f = fsm_in(State::OpenConfirm);
        assert_eq!(f.handle(T0, Event::UpdateSent), vec![]);
        assert_eq!(f.state(), State::OpenConfirm);
    }

    #[test]
    fn second_tcp_connection_does_not_disturb_an_open_session() {
        let mut f = fsm_in(State::OpenConfirm);
        assert_eq!(f.handle(T0, Event::TcpConnectionConfirmed), vec![]);
        assert_eq!(f.state(), State::OpenConfirm);
    }

    #[test]
    fn establishing_clears_the_failure_counter() {
        let mut f = fsm_in(State::Connect);
        f.handle(T0, Event::TcpConnectionFails);
        f.handle(T0, Event::IdleHoldTimerExpires);
        f.handle(T0, Event::TcpConnectionConfirmed);
        f.handle(T0, Event::BgpOpen(peer_open()));
        assert_eq!(f.connect_retry_counter(), 1);
        f.handle(T0, Event::KeepAliveMsg);
        assert_eq!(f.connect_retry_counter(), 0);
    }

    #[test]
    fn collision_keeps_the_connection_of_the_higher_identifier() {
        let low = Ipv4Addr::new(10, 0, 0, 1);
        let high = Ipv4Addr::new(10, 0, 0, 2);
        assert_eq!(resolve_collision(high, 65001, low, 65002), Keep::Outbound);
        assert_eq!(resolve_collision(low, 65001, high, 65002), Keep::Inbound);
    }

    #[test]
    fn collision_with_equal_identifiers_keeps_the_connection_of_the_larger_as() {
        let id = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(resolve_collision(id, 65002, id, 65001), Keep::Outbound);
        assert_eq!(resolve_collision(id, 65001, id, 65002), Keep::Inbound);
    }
}
