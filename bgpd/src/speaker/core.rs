//! The speaker's pure core: the RIB and what the owner knows of each peer
//! (its state for status, session epoch, End-of-RIB, graceful-restart
//! helper and timer, an initial table held back). [`Core::handle`] takes
//! the time and one [`Input`] and returns the [`Output`]s to carry out; the
//! owner task (`owner.rs`) only routes them. Replayed in `replay.rs`.
//!
//! ```text
//!  Announce, AddPeer, … ─┐                    ┌─► Answer                  ─► the caller
//!  Session(SessionEvent) ─┼─► handle(now, in) ─┼─► Start/StopSession        ─► session tasks
//!  Tick (a deadline due) ─┘                    ├─► Session(peer, SessionCmd)
//!                                              └─► Fib(next hops), ReconcileFib ─► FIB task
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info};

use super::{PeerConfig, PeerStatus, RouteStatus, SpeakerConfig, SpeakerError};
use crate::attr::PathAttrs;
use crate::capability::{Capability, GracefulRestart};
use crate::fib::FibTable;
use crate::filter::PeerPolicy;
use crate::fsm::{self, State};
use crate::graceful_restart::{self as gr, GrConfig};
use crate::notification::cease;
use crate::open::Open;
use crate::prefix::{AfiSafi, Prefix};
use crate::rib::{self, Change, Exporter, PeerId, PeerInfo, Rib, RibConfig, Source};
use crate::session::{SessionCmd, SessionConfig, SessionEvent};

/// What happens to the speaker.
#[derive(Debug)]
pub(crate) enum Input {
    /// Originate a prefix.
    Announce(Prefix, PathAttrs),
    /// Stop originating a prefix.
    Withdraw(Prefix),
    SetPolicy(IpAddr, Box<PeerPolicy>),
    /// Send ROUTE-REFRESH to a peer.
    Refresh(IpAddr),
    AddPeer(Box<PeerConfig>),
    RemovePeer(IpAddr),
    UpdatePeer(Box<PeerConfig>),
    /// A peer's session could not be started (its TCP-MD5 key could not be
    /// set on the listener): it stays Idle with this error.
    NotStarted {
        peer: PeerId,
        error: String,
    },
    /// What a session reported.
    Session(SessionEvent),
    /// A deadline of [`Core::next_deadline`] is due.
    Tick,
}

/// What the owner is to do, in order.
#[derive(Debug)]
pub(crate) enum Output {
    /// The result of the command being handled.
    Answer(Answer),
    /// Start a session task for a new peer.
    StartSession(SessionConfig),
    /// End a removed peer's session with Cease and this subcode (RFC 4486).
    StopSession { peer: PeerId, subcode: u8 },
    /// Pass this to a peer's session.
    Session(PeerId, SessionCmd),
    /// New kernel next hops of these prefixes (none: remove the route).
    Fib(Vec<(Prefix, Vec<IpAddr>)>),
    /// Reconcile the kernel table against [`Core::fib_table`], if the FIB
    /// needs it.
    ReconcileFib,
}

/// A command's result.
#[derive(Debug)]
pub(crate) enum Answer {
    Done(Result<(), SpeakerError>),
    /// The families asked for with ROUTE-REFRESH.
    Refreshed(Result<Vec<AfiSafi>, SpeakerError>),
    /// Whether the update of a peer reset its session.
    Updated(Result<bool, SpeakerError>),
}

/// What the core knows of one configured peer.
#[derive(Debug)]
struct Peer {
    config: PeerConfig,
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
    /// Established sessions that ended.
    flaps: u64,
}

impl Peer {
    /// The epoch to send routes under: established, and its initial table
    /// not held back.
    fn live_epoch(&self) -> Option<u64> {
        self.epoch.filter(|_| !self.initial_pending)
    }
}

/// The speaker's state: see the module doc.
#[derive(Debug)]
pub(crate) struct Core {
    rib: Rib,
    /// Peers by the ID their session and the RIB know them by; IDs are
    /// never reused, so events of a removed peer's session find no peer.
    peers: BTreeMap<PeerId, Peer>,
    next_id: u32,
    asn: u32,
    router_id: Ipv4Addr,
    gr: GrConfig,
    /// Best routes go to a kernel table.
    fib: bool,
    fib_synced: bool,
    /// We restarted and hold back initial tables until the peers' End-of-RIB.
    deferring: bool,
    /// When the kernel table is reconciled (and held-back tables sent) at
    /// the latest.
    sync_at: Instant,
    out: Vec<Output>,
}

impl Core {
    /// A core started at `now`, with `config`'s peers not yet added (feed
    /// [`Input::AddPeer`]); `fib`: best routes go to a kernel table.
    pub(crate) fn new(config: &SpeakerConfig, now: Instant, fib: bool) -> Self {
        Core {
            rib: Rib::new(RibConfig {
                asn: config.asn,
                router_id: config.router_id,
                cluster_id: config.cluster_id,
                always_compare_med: config.always_compare_med,
                max_paths: config.max_paths,
            }),
            peers: BTreeMap::new(),
            next_id: 0,
            asn: config.asn,
            router_id: config.router_id,
            gr: config.graceful_restart.clone(),
            fib,
            fib_synced: false,
            deferring: config.graceful_restart.enabled && config.graceful_restart.restarting,
            sync_at: now + config.fib_sync_after,
            out: Vec::new(),
        }
    }

    /// Handles one input at `now`.
    pub(crate) fn handle(&mut self, now: Instant, input: Input) -> Vec<Output> {
        match input {
            Input::Announce(prefix, attrs) => {
                let changes = self.rib.originate(prefix, attrs);
                self.fan_out(&changes);
                self.answer(Answer::Done(Ok(())));
            }
            Input::Withdraw(prefix) => {
                let changes = self.rib.withdraw_local(prefix);
                self.fan_out(&changes);
                self.answer(Answer::Done(Ok(())));
            }
            Input::SetPolicy(addr, policy) => {
                let result = self.set_policy(addr, *policy);
                self.answer(Answer::Done(result));
            }
            Input::Refresh(addr) => {
                let result = self.refresh(addr);
                self.answer(Answer::Refreshed(result));
            }
            Input::AddPeer(config) => {
                let result = self.add_peer(now, *config);
                self.answer(Answer::Done(result));
            }
            Input::RemovePeer(addr) => {
                let result = self
                    .peer_at(addr)
                    .map(|id| self.remove_peer(id, cease::PEER_DECONFIGURED));
                self.answer(Answer::Done(result));
            }
            Input::UpdatePeer(config) => {
                let result = self.update_peer(now, *config);
                self.answer(Answer::Updated(result));
            }
            Input::NotStarted { peer, error } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.last_error = Some(error);
                }
            }
            Input::Session(event) => self.session_event(now, event),
            Input::Tick => self.tick(now),
        }
        std::mem::take(&mut self.out)
    }

    /// The earliest time [`Input::Tick`] has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let sync = (!self.fib_synced || self.deferring).then_some(self.sync_at);
        self.peers
            .values()
            .filter_map(|p| p.gr_timer)
            .chain(sync)
            .min()
    }

    /// The peer configured at `addr`.
    pub(crate) fn peer_at(&self, addr: IpAddr) -> Result<PeerId, SpeakerError> {
        self.peers
            .iter()
            .find(|(_, p)| p.config.addr.to_canonical() == addr.to_canonical())
            .map(|(&id, _)| id)
            .ok_or(SpeakerError::UnknownPeer(addr))
    }

    /// Every peer's status at `now`, in the order they were added.
    pub(crate) fn status(&self, now: Instant) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|(&id, p)| {
                let counts = self.rib.counts(id);
                PeerStatus {
                    addr: p.config.addr,
                    asn: p.config.asn,
                    description: p.config.description.clone(),
                    state: p.state,
                    since: now.saturating_duration_since(p.since),
                    last_error: p.last_error.clone(),
                    received: counts.received,
                    accepted: counts.accepted,
                    advertised: p.advertised,
                    flaps: p.flaps,
                }
            })
            .collect()
    }

    /// The Loc-RIB, sorted by prefix.
    pub(crate) fn routes(&self) -> Vec<RouteStatus> {
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

    /// What the kernel table should hold: every Loc-RIB prefix with next
    /// hops, sorted.
    pub(crate) fn fib_table(&self) -> FibTable {
        self.rib
            .loc_rib()
            .map(|(p, _)| (p, self.rib.fib_next_hops(&p)))
            .filter(|(_, hops)| !hops.is_empty())
            .map(|(p, mut hops)| {
                hops.sort();
                (p, hops)
            })
            .collect()
    }

    fn answer(&mut self, answer: Answer) {
        self.out.push(Output::Answer(answer));
    }

    fn send(&mut self, peer: PeerId, cmd: SessionCmd) {
        self.out.push(Output::Session(peer, cmd));
    }

    /// Adds `pc` under a new peer ID and has its session started.
    fn add_peer(&mut self, now: Instant, pc: PeerConfig) -> Result<(), SpeakerError> {
        if self.peer_at(pc.addr).is_ok() {
            return Err(SpeakerError::DuplicatePeer(pc.addr));
        }
        let id = PeerId(self.next_id);
        self.next_id += 1;
        let families = [AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST];
        let mut capabilities: Vec<Capability> = families.map(Capability::Multiprotocol).to_vec();
        capabilities.push(Capability::RouteRefresh);
        capabilities.extend(self.gr.capability(&families));
        let my_as = pc.local_asn.unwrap_or(self.asn);
        let local = Open::new(my_as, pc.hold_time, self.router_id, capabilities);
        self.out.push(Output::StartSession(SessionConfig {
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
        }));
        self.rib.set_policy(id, pc.policy.clone());
        self.peers.insert(
            id,
            Peer {
                config: pc,
                state: State::Idle,
                since: now,
                last_error: None,
                epoch: None,
                advertised: 0,
                eor: false,
                route_refresh: false,
                peer_gr: None,
                families: Vec::new(),
                gr: gr::Helper::default(),
                gr_timer: None,
                initial_pending: false,
                flaps: 0,
            },
        );
        Ok(())
    }

    /// Stops the session of `id` with Cease / `subcode`, drops its routes
    /// (stale ones too) everywhere, and forgets the peer.
    fn remove_peer(&mut self, id: PeerId, subcode: u8) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        info!(peer = %peer.config.addr, "peer removed");
        self.out.push(Output::StopSession { peer: id, subcode });
        let changes = self.rib.remove_peer(id);
        self.fan_out(&changes);
        // Its End-of-RIB may have been the one still awaited.
        self.check_converged();
    }

    /// Applies a new configuration to an existing peer: a new session if a
    /// session parameter changed, else only the policy (and description).
    fn update_peer(&mut self, now: Instant, pc: PeerConfig) -> Result<bool, SpeakerError> {
        let id = self.peer_at(pc.addr)?;
        let peer = self
            .peers
            .get_mut(&id)
            .ok_or(SpeakerError::UnknownPeer(pc.addr))?;
        if peer.config.session_differs(&pc) {
            self.remove_peer(id, cease::OTHER_CONFIGURATION_CHANGE);
            self.add_peer(now, pc)?;
            return Ok(true);
        }
        peer.config.description = pc.description.clone();
        if peer.config.policy != pc.policy {
            self.set_policy(pc.addr, pc.policy)?;
        }
        Ok(false)
    }

    fn set_policy(&mut self, addr: IpAddr, policy: PeerPolicy) -> Result<(), SpeakerError> {
        let id = self.peer_at(addr)?;
        // A peer whose initial table is held back (our graceful restart)
        // gets the whole table, with this policy, when it is released.
        let before = self.peers[&id]
            .live_epoch()
            .map(|_| self.rib.adj_rib_out(id));
        let changes = self.rib.set_policy(id, policy.clone());
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.config.policy = policy;
        }
        self.fan_out_except(&changes, Some(id));
        let epoch = self.peers[&id].live_epoch();
        if let (Some(before), Some(epoch)) = (before, epoch) {
            let after = self.rib.adj_rib_out(id);
            let Some(peer) = self.peers.get_mut(&id) else {
                return Ok(());
            };
            peer.advertised = after.added;
            let out = after.changes_from(&before);
            info!(peer = %addr, announce = out.announce.iter().map(|(_, v)| v.len()).sum::<usize>(), withdraw = out.withdraw.len(), "policy changed");
            if !out.is_empty() {
                self.send(id, SessionCmd::Send { epoch, out });
            }
        }
        Ok(())
    }

    fn refresh(&mut self, addr: IpAddr) -> Result<Vec<AfiSafi>, SpeakerError> {
        let id = self.peer_at(addr)?;
        let peer = &self.peers[&id];
        let epoch = peer.epoch.ok_or(SpeakerError::NotEstablished(addr))?;
        if !peer.route_refresh {
            return Err(SpeakerError::NoRouteRefresh(addr));
        }
        let families = peer.families.clone();
        info!(peer = %addr, ?families, "sending ROUTE-REFRESH");
        self.send(
            id,
            SessionCmd::RouteRefresh {
                epoch,
                families: families.clone(),
            },
        );
        Ok(families)
    }

    /// Fires the graceful-restart timers due at `now`, and the deadline of
    /// the kernel table's reconciliation (and of our restart's deferral).
    fn tick(&mut self, now: Instant) {
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.gr_timer.is_some_and(|at| at <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.gr_timer = None;
            let actions = peer.gr.timer_expired();
            info!(peer = %peer.config.addr, "graceful restart timer expired");
            self.apply_gr(now, id, actions);
        }
        if self.sync_at <= now && (!self.fib_synced || self.deferring) {
            self.release_initial_tables();
            self.sync_fib();
        }
    }

    fn session_event(&mut self, now: Instant, event: SessionEvent) {
        match event {
            SessionEvent::State {
                peer,
                state,
                last_error,
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if p.state != state {
                        p.since = now;
                    }
                    p.state = state;
                    p.last_error = last_error;
                }
            }
            SessionEvent::Established {
                peer,
                epoch,
                negotiated,
                local_addr,
            } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                let info = PeerInfo {
                    addr: p.config.addr,
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
                    next_hop_self: p.config.next_hop_self,
                    route_reflector_client: p.config.route_reflector_client,
                    local_asn: p.config.local_asn.unwrap_or(self.asn),
                };
                p.epoch = Some(epoch);
                p.route_refresh = negotiated.route_refresh;
                p.state = State::Established;
                p.since = now;
                p.peer_gr = negotiated.peer_graceful_restart.clone();
                p.families = negotiated.families.clone();
                let actions =
                    p.gr.session_up(p.peer_gr.as_ref(), &p.families, self.gr.stale_time);
                if !gr::waits_for(p.peer_gr.as_ref()) {
                    p.eor = true;
                }
                self.rib.peer_up(peer, info);
                self.apply_gr(now, peer, actions);
                if self.deferring {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.initial_pending = true;
                    }
                    self.check_converged();
                } else {
                    self.send_initial_table(peer);
                }
            }
            SessionEvent::Update { peer, update } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                if let Some(family) = update.eor {
                    debug!(peer = peer.0, %family, "End-of-RIB");
                    p.eor = true;
                    let actions = p.gr.end_of_rib(family);
                    self.apply_gr(now, peer, actions);
                    self.check_converged();
                    return;
                }
                let announced = update.announcements();
                let withdrawn = update.withdrawals();
                p.gr.refreshed(announced.iter().map(|(p, _)| p).chain(&withdrawn));
                let changes = self.rib.update(peer, &update.attrs, &announced, &withdrawn);
                self.fan_out(&changes);
            }
            SessionEvent::RouteRefresh { peer, family } => {
                let Some(epoch) = self.peers.get(&peer).and_then(|p| p.epoch) else {
                    return;
                };
                let mut out = self.rib.adj_rib_out(peer);
                for (_, prefixes) in &mut out.announce {
                    prefixes.retain(|p| AfiSafi::of(p) == family);
                }
                out.announce.retain(|(_, v)| !v.is_empty());
                out.added = 0;
                self.send(peer, SessionCmd::Send { epoch, out });
            }
            SessionEvent::Down { peer, reason } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                p.epoch = None;
                p.advertised = 0;
                p.flaps += 1;
                p.initial_pending = false;
                let routes = self.rib.adj_rib_in(peer).map(|(p, _)| p);
                let actions = p.gr.session_down(
                    self.gr.enabled,
                    &reason,
                    p.peer_gr.as_ref(),
                    &p.families,
                    routes,
                );
                if p.gr.phase() == gr::Phase::Restarting {
                    info!(peer = %p.config.addr, stale = p.gr.stale_count(),
                          "session lost: keeping its routes as stale (graceful restart)");
                }
                self.apply_gr(now, peer, actions);
            }
        }
    }

    /// Carries out what a peer's graceful-restart helper decided.
    fn apply_gr(&mut self, now: Instant, peer: PeerId, actions: Vec<gr::Action>) {
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
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.gr_timer = Some(now + after);
                    }
                }
                gr::Action::StopTimer => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.gr_timer = None;
                    }
                }
            }
        }
    }

    /// Sends an established peer the whole Adj-RIB-Out and End-of-RIB.
    fn send_initial_table(&mut self, id: PeerId) {
        let out = self.rib.adj_rib_out(id);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(epoch) = peer.epoch else { return };
        peer.initial_pending = false;
        peer.advertised = out.added;
        info!(peer = %peer.config.addr, prefixes = out.added, "sending the initial table");
        self.send(id, SessionCmd::Send { epoch, out });
        self.send(id, SessionCmd::EndOfRib { epoch });
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
            .filter(|(_, p)| p.initial_pending)
            .map(|(&id, _)| id)
            .collect();
        for id in pending {
            self.send_initial_table(id);
        }
    }

    /// Once the peers' End-of-RIBs are in: initial tables out (after our
    /// restart), kernel table reconciled.
    fn check_converged(&mut self) {
        if self.peers.values().all(|p| p.eor) {
            self.release_initial_tables();
            self.sync_fib();
        }
    }

    /// Sends each established peer its Adj-RIB-Out changes, and the kernel
    /// its new next hops.
    fn fan_out(&mut self, changes: &[Change]) {
        self.fan_out_except(changes, None);
    }

    /// [`Core::fan_out`] to every peer but `skip`.
    fn fan_out_except(&mut self, changes: &[Change], skip: Option<PeerId>) {
        if changes.is_empty() {
            return;
        }
        // Peers get the best path only: a change of the ECMP set alone
        // (another equal path from one more peer) exports nothing, and
        // skipping it here spares every peer's exporter a look at it.
        let exported: Vec<&Change> = changes.iter().filter(|c| c.best_changed()).collect();
        for (&id, peer) in self.peers.iter_mut() {
            if exported.is_empty() {
                break;
            }
            let Some(epoch) = peer.live_epoch().filter(|_| skip != Some(id)) else {
                continue;
            };
            let mut e = Exporter::new(&self.rib, id);
            for c in &exported {
                e.add_change(c);
            }
            let out: rib::Outgoing = e.finish();
            if out.is_empty() {
                continue;
            }
            peer.advertised = (peer.advertised + out.added).saturating_sub(out.withdraw.len());
            self.out
                .push(Output::Session(id, SessionCmd::Send { epoch, out }));
        }
        if self.fib {
            let hops = changes
                .iter()
                .map(|c| (c.prefix, self.rib.fib_next_hops(&c.prefix)))
                .collect();
            self.out.push(Output::Fib(hops));
        }
    }

    fn sync_fib(&mut self) {
        if self.fib_synced {
            return;
        }
        self.fib_synced = true;
        if self.fib {
            self.out.push(Output::ReconcileFib);
        }
    }
}
