//! The kernel FIB: Loc-RIB best routes installed into one kernel routing
//! table through rtnetlink, tagged with our own route protocol number.
//!
//! The protocol number is [`DEFAULT_PROTOCOL`] (200) unless configured.
//! iproute2 reserves 0–4, 8–18, 42, 99 and 186–192, and FRR's rt_protos.d
//! adds 186–197 (`bgp` is 186, BIRD's `bird` is 12); 200 is in none of
//! them, so `ip route show proto 200` lists exactly bgpd's routes, and
//! another routing daemon in the same table is never touched. Name it for
//! iproute2 with `echo "200 bgpd" > /etc/iproute2/rt_protos.d/bgpd.conf`.
//!
//! A route with several equal-best next hops (the ECMP set of
//! [`crate::rib::Rib::fib_next_hops`]) is installed as one multipath route.
//!
//! The pure part is [`diff`] (what to change to get from one table to
//! another) and [`merge`] (what a batch of updates changes); [`Fib`] is the
//! thin netlink side. On start, [`Fib::open`] reads the routes of our
//! protocol in our table and leaves them in place: a restart drops no
//! route. Updates apply against what is installed (kept compactly, see
//! `installed.rs`); [`Fib::reconcile`] with the full desired table, once
//! the sessions have converged, removes routes left over from before. It
//! is needed only if there were any, or if a change failed
//! ([`FibHandle::needs_reconcile`]); otherwise the table holds exactly the
//! updates sent, and the speaker skips building the desired table.
//!
//! Changes go to the kernel in batches ([`BATCH`] route messages in one
//! `sendmsg` on a netlink socket of their own, only the last asking for an
//! acknowledgement): the kernel answers a failed message with its error
//! and the last one with an ACK, so a whole batch costs one system call
//! each way and no round trip per route.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_core::{
    ErrorMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket, protocols};
use rtnetlink::{RouteMessageBuilder, RouteNextHopBuilder};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, warn};

use crate::prefix::Prefix;

mod installed;
use installed::Installed;

/// Our route protocol number (see the module documentation).
pub const DEFAULT_PROTOCOL: u8 = 200;
/// The main table (RT_TABLE_MAIN).
pub const MAIN_TABLE: u32 = 254;

/// Installed or desired routes: prefix to its next hops, sorted.
pub type FibTable = BTreeMap<Prefix, Vec<IpAddr>>;

/// Which kernel table and protocol number to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FibConfig {
    pub table: u32,
    pub protocol: u8,
}

impl Default for FibConfig {
    fn default() -> Self {
        FibConfig {
            table: MAIN_TABLE,
            protocol: DEFAULT_PROTOCOL,
        }
    }
}

/// One change to the kernel table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FibOp {
    /// Add the route or replace its next hops.
    Replace {
        prefix: Prefix,
        next_hops: Vec<IpAddr>,
    },
    Delete {
        prefix: Prefix,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FibError {
    #[error("opening a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("reading routes of table {table}: {source}")]
    Read {
        table: u32,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{op} {prefix}: {source}")]
    Apply {
        op: &'static str,
        prefix: Prefix,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("route {prefix} via {next_hop}: address families differ")]
    Family { prefix: Prefix, next_hop: IpAddr },
    #[error("sending routes to the kernel: {0}")]
    Netlink(#[source] std::io::Error),
    #[error("the kernel's answer to a route batch: {0}")]
    Answer(String),
}

/// The operations that turn `current` into `desired`, deletions first.
pub fn diff(current: &FibTable, desired: &FibTable) -> Vec<FibOp> {
    let mut ops: Vec<FibOp> = current
        .keys()
        .filter(|p| !desired.contains_key(p))
        .map(|&prefix| FibOp::Delete { prefix })
        .collect();
    ops.extend(
        desired
            .iter()
            .filter(|(p, hops)| current.get(p) != Some(hops))
            .map(|(&prefix, hops)| FibOp::Replace {
                prefix,
                next_hops: hops.clone(),
            }),
    );
    ops
}

/// The operations a batch of updates makes on `current`: a prefix with next
/// hops is set to them, one with none is removed. Later updates of the same
/// prefix win; updates that change nothing give no operation.
pub fn merge(current: &FibTable, updates: &[(Prefix, Vec<IpAddr>)]) -> Vec<FibOp> {
    merge_with(|p| current.get(p).map(Vec::as_slice), updates)
}

/// [`merge`] against a table given by its lookup.
fn merge_with<'a>(
    current: impl Fn(&Prefix) -> Option<&'a [IpAddr]>,
    updates: &[(Prefix, Vec<IpAddr>)],
) -> Vec<FibOp> {
    let mut last: BTreeMap<Prefix, Vec<IpAddr>> = BTreeMap::new();
    for (prefix, hops) in updates {
        let mut hops = hops.clone();
        hops.sort();
        hops.dedup();
        last.insert(*prefix, hops);
    }
    last.into_iter()
        .filter_map(
            |(prefix, next_hops)| match (current(&prefix), next_hops.is_empty()) {
                (None, true) => None,
                (Some(_), true) => Some(FibOp::Delete { prefix }),
                (Some(old), false) if old == next_hops => None,
                _ => Some(FibOp::Replace { prefix, next_hops }),
            },
        )
        .collect()
}

impl Installed {
    fn apply(&mut self, op: &FibOp) {
        match op {
            FibOp::Replace { prefix, next_hops } => self.insert(*prefix, next_hops),
            FibOp::Delete { prefix } => self.remove(prefix),
        }
    }
}

fn route_address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Parses a kernel route into our form, if it is in `config`'s table and
/// protocol.
fn parse_route(msg: &RouteMessage, config: FibConfig) -> Option<(Prefix, Vec<IpAddr>)> {
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table));
    if table != config.table || u8::from(msg.header.protocol) != config.protocol {
        return None;
    }
    let mut dest = None;
    let mut hops = Vec::new();
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(d) => dest = route_address(d),
            RouteAttribute::Gateway(g) => hops.extend(route_address(g)),
            RouteAttribute::MultiPath(nhs) => {
                for nh in nhs {
                    for na in &nh.attributes {
                        if let RouteAttribute::Gateway(g) = na {
                            hops.extend(route_address(g));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let dest = dest.unwrap_or(match msg.header.address_family {
        rtnetlink::packet_route::AddressFamily::Inet6 => {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        }
        _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    });
    let prefix = Prefix::new(dest, msg.header.destination_prefix_length).ok()?;
    hops.sort();
    Some((prefix, hops))
}

fn is_not_found(e: &ErrorMessage) -> bool {
    // ESRCH (3): no such route; ENOENT (2).
    matches!(-e.raw_code(), 2 | 3)
}

/// Route messages per `sendmsg` (see the module documentation). The
/// kernel queues an answer per failed message on our socket: 256 of them
/// fit its default receive buffer.
pub const BATCH: usize = 256;

/// The socket batches go through.
struct Batcher {
    socket: TokioSocket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("seq", &self.seq).finish()
    }
}

impl Batcher {
    fn open() -> std::io::Result<Self> {
        let mut socket = TokioSocket::new(protocols::NETLINK_ROUTE)?;
        let s = socket.socket_mut();
        s.bind_auto()?;
        s.connect(&SocketAddr::new(0, 0))?;
        // Failed messages are answered with their header only.
        s.set_cap_ack(true)?;
        s.set_rx_buf_sz(1 << 20)?;
        Ok(Batcher {
            socket,
            seq: 0,
            buf: Vec::new(),
        })
    }

    /// Sends `messages` (request flags each) in one `sendmsg`, the last
    /// one asking for an ACK, and reads the answers up to that ACK. Each
    /// message's failure, if any, by index.
    async fn send(
        &mut self,
        messages: Vec<(RouteNetlinkMessage, u16)>,
    ) -> Result<Vec<Option<ErrorMessage>>, FibError> {
        let count = messages.len();
        let first = self.seq.wrapping_add(1);
        self.buf.clear();
        for (i, (message, flags)) in messages.into_iter().enumerate() {
            self.seq = self.seq.wrapping_add(1);
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | flags | if i + 1 == count { NLM_F_ACK } else { 0 };
            header.sequence_number = self.seq;
            let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
            m.finalize();
            let at = self.buf.len();
            self.buf.resize(at + m.buffer_len(), 0);
            m.serialize(&mut self.buf[at..]);
        }
        let mut failed = vec![None; count];
        if count == 0 {
            return Ok(failed);
        }
        self.socket
            .send(&self.buf)
            .await
            .map_err(FibError::Netlink)?;
        let last = self.seq;
        loop {
            let (data, _) = self
                .socket
                .recv_from_full()
                .await
                .map_err(FibError::Netlink)?;
            let mut at = 0;
            while at < data.len() {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[at..])
                    .map_err(|e| FibError::Answer(e.to_string()))?;
                let len = m.header.length as usize;
                let seq = m.header.sequence_number;
                if let NetlinkPayload::Error(e) = m.payload {
                    let i = seq.wrapping_sub(first) as usize;
                    if e.code.is_some()
                        && let Some(slot) = failed.get_mut(i)
                    {
                        *slot = Some(e);
                    }
                }
                if seq == last {
                    return Ok(failed);
                }
                if len == 0 {
                    break;
                }
                at += len.next_multiple_of(4);
            }
        }
    }
}

/// The kernel side: a netlink handle and what we installed.
#[derive(Debug)]
pub struct Fib {
    handle: rtnetlink::Handle,
    batcher: Batcher,
    config: FibConfig,
    installed: Installed,
    /// Set while the table may differ from what we applied: routes of an
    /// earlier run found at open, or a failed change.
    unsynced: Arc<AtomicBool>,
}

impl Fib {
    /// Opens a netlink connection in the current network namespace and
    /// reads the routes already installed with our protocol.
    pub async fn open(config: FibConfig) -> Result<Self, FibError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(FibError::Connect)?;
        tokio::spawn(conn);
        let mut fib = Fib {
            handle,
            batcher: Batcher::open().map_err(FibError::Connect)?,
            config,
            installed: Installed::default(),
            unsynced: Arc::new(AtomicBool::new(false)),
        };
        let found = fib.read().await?;
        fib.installed = Installed::from_table(&found);
        fib.unsynced.store(!found.is_empty(), Ordering::Relaxed);
        Ok(fib)
    }

    pub fn config(&self) -> FibConfig {
        self.config
    }

    /// Whether a [`Fib::reconcile`] has anything to repair: routes of an
    /// earlier run were found at open, or a change failed, since the last
    /// one. Otherwise the table holds exactly the updates applied.
    pub fn needs_reconcile(&self) -> bool {
        self.unsynced.load(Ordering::Relaxed)
    }

    /// What we believe is installed (a copy, built on demand).
    pub fn installed(&self) -> FibTable {
        self.installed.to_table()
    }

    /// The number of routes we believe are installed.
    pub fn installed_len(&self) -> usize {
        self.installed.len()
    }

    /// Reads the routes of our protocol in our table from the kernel.
    pub async fn read(&self) -> Result<FibTable, FibError> {
        let mut out = FibTable::new();
        let read_err = |source| FibError::Read {
            table: self.config.table,
            source,
        };
        for msg in [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let mut routes = self.handle.route().get(msg).execute();
            while let Some(m) = routes.try_next().await.map_err(read_err)? {
                if let Some((prefix, hops)) = parse_route(&m, self.config) {
                    out.insert(prefix, hops);
                }
            }
        }
        Ok(out)
    }

    fn message(&self, prefix: &Prefix) -> RouteMessageBuilder<IpAddr> {
        // `destination_prefix` only fails on a family mismatch, which a
        // `Prefix` cannot have.
        RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(prefix.network(), prefix.prefix_len())
            .unwrap_or_default()
            .table_id(self.config.table)
            .protocol(RouteProtocol::from(self.config.protocol))
    }

    /// The netlink request for `op` and its flags; `None` for a route
    /// without next hops, which is not installed.
    fn request(&self, op: &FibOp) -> Result<Option<(RouteNetlinkMessage, u16)>, FibError> {
        match op {
            FibOp::Replace { prefix, next_hops } => {
                let family_err = |next_hop| FibError::Family {
                    prefix: *prefix,
                    next_hop,
                };
                let mut b = self.message(prefix).kind(RouteType::Unicast);
                match next_hops.as_slice() {
                    [] => return Ok(None),
                    [one] => b = b.gateway(*one).map_err(|_| family_err(*one))?,
                    many => {
                        let mut nhs = Vec::new();
                        for hop in many {
                            let nb = if prefix.addr().is_ipv4() {
                                RouteNextHopBuilder::new_ipv4()
                            } else {
                                RouteNextHopBuilder::new_ipv6()
                            };
                            nhs.push(nb.via(*hop).map_err(|_| family_err(*hop))?.build());
                        }
                        b = b.multipath(nhs);
                    }
                }
                Ok(Some((
                    RouteNetlinkMessage::NewRoute(b.build()),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )))
            }
            FibOp::Delete { prefix } => Ok(Some((
                RouteNetlinkMessage::DelRoute(self.message(prefix).build()),
                0,
            ))),
        }
    }

    /// Applies operations in batches of [`BATCH`], in order. A failure
    /// stops it after its batch: the operations that succeeded are
    /// recorded and the first failure is returned. Removing a route that
    /// is not there succeeds.
    pub async fn apply(&mut self, ops: &[FibOp]) -> Result<(), FibError> {
        for chunk in ops.chunks(BATCH) {
            let mut sent = Vec::with_capacity(chunk.len());
            let mut messages = Vec::with_capacity(chunk.len());
            let mut unbuildable = None;
            for op in chunk {
                match self.request(op) {
                    Ok(Some(m)) => {
                        messages.push(m);
                        sent.push(op);
                    }
                    Ok(None) => self.installed.apply(op),
                    Err(e) => {
                        unbuildable = Some(e);
                        break;
                    }
                }
            }
            let answers = match self.batcher.send(messages).await {
                Ok(a) => a,
                Err(e) => {
                    self.unsynced.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            };
            let mut failed = None;
            for (op, answer) in sent.into_iter().zip(answers) {
                match (op, answer) {
                    (FibOp::Delete { .. }, Some(e)) if is_not_found(&e) => self.installed.apply(op),
                    (_, Some(e)) => {
                        let (name, prefix) = match op {
                            FibOp::Replace { prefix, .. } => ("installing", *prefix),
                            FibOp::Delete { prefix } => ("removing", *prefix),
                        };
                        failed.get_or_insert(FibError::Apply {
                            op: name,
                            prefix,
                            source: rtnetlink::Error::NetlinkError(e),
                        });
                    }
                    (_, None) => self.installed.apply(op),
                }
            }
            if let Some(e) = failed.or(unbuildable) {
                self.unsynced.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Applies a batch of updates (see [`merge`]).
    pub async fn update(&mut self, updates: &[(Prefix, Vec<IpAddr>)]) -> Result<(), FibError> {
        let installed = &self.installed;
        let ops = merge_with(|p| installed.get(p), updates);
        self.apply(&ops).await
    }

    /// Makes the table exactly `desired`, removing leftovers.
    pub async fn reconcile(&mut self, desired: &FibTable) -> Result<(), FibError> {
        let current = self.read().await?;
        let ops = diff(&current, desired);
        self.installed = Installed::from_table(&current);
        debug!(ops = ops.len(), "reconciling the kernel table");
        self.unsynced.store(false, Ordering::Relaxed);
        self.apply(&ops).await
    }
}

/// A batch of updates as the FIB task's queue holds it while the kernel is
/// behind: 10 bytes an IPv4 route with at most one IPv4 next hop, and no
/// allocation of its own; other routes (IPv6, ECMP) aside, by position.
#[derive(Debug, Default)]
struct Queued {
    v4: Vec<(Ipv4Net, Option<Ipv4Addr>)>,
    /// Position in `v4` (which holds a placeholder there) and the update.
    other: Vec<(usize, Prefix, Vec<IpAddr>)>,
}

impl Queued {
    fn new(updates: Vec<(Prefix, Vec<IpAddr>)>) -> Self {
        let mut q = Queued {
            v4: Vec::with_capacity(updates.len()),
            other: Vec::new(),
        };
        for (prefix, hops) in updates {
            match (prefix, hops.as_slice()) {
                (Prefix::V4(net), []) => q.v4.push((net, None)),
                (Prefix::V4(net), [IpAddr::V4(hop)]) => q.v4.push((net, Some(*hop))),
                _ => {
                    q.other.push((q.v4.len(), prefix, hops));
                    q.v4.push((Ipv4Net::default(), None));
                }
            }
        }
        q
    }

    /// The updates again, in their order, appended to `out`.
    fn unpack(self, out: &mut Vec<(Prefix, Vec<IpAddr>)>) {
        let mut other = self.other.into_iter().peekable();
        for (i, (net, hop)) in self.v4.into_iter().enumerate() {
            match other.next_if(|(at, _, _)| *at == i) {
                Some((_, prefix, hops)) => out.push((prefix, hops)),
                None => out.push((Prefix::V4(net), hop.map(IpAddr::V4).into_iter().collect())),
            }
        }
    }
}

/// Messages to the FIB task.
#[derive(Debug)]
enum FibMsg {
    Update(Queued),
    Reconcile(FibTable),
}

/// The sending side of the FIB task; the task ends when every handle is
/// dropped.
#[derive(Debug, Clone)]
pub struct FibHandle {
    tx: mpsc::UnboundedSender<FibMsg>,
    unsynced: Arc<AtomicBool>,
    backlog: Arc<Backlog>,
}

/// Routes the speaker may queue for the FIB task before it waits for the
/// kernel (see [`FibHandle::is_behind`]): under a second of kernel work,
/// 640 KiB of queue.
pub const BACKLOG: usize = 64 * 1024;

/// Routes queued for the FIB task, and a signal for each batch applied.
#[derive(Debug, Default)]
struct Backlog {
    queued: AtomicUsize,
    applied: Notify,
}

impl FibHandle {
    pub fn update(&self, updates: Vec<(Prefix, Vec<IpAddr>)>) {
        if !updates.is_empty() {
            self.backlog
                .queued
                .fetch_add(updates.len(), Ordering::Relaxed);
            let _ = self.tx.send(FibMsg::Update(Queued::new(updates)));
        }
    }

    /// Whether more than [`BACKLOG`] routes wait for the kernel. The
    /// speaker then takes no new UPDATEs (they wait in its channel, then
    /// in TCP) until the FIB task catches up: memory stays bounded, and the
    /// Loc-RIB runs at most that far ahead of the kernel.
    pub fn is_behind(&self) -> bool {
        self.backlog.queued.load(Ordering::Relaxed) > BACKLOG && !self.tx.is_closed()
    }

    /// Returns once the FIB task has applied another batch (or has ended).
    pub async fn applied(&self) {
        tokio::select! {
            () = self.backlog.applied.notified() => {}
            () = self.tx.closed() => {}
        }
    }

    /// See [`Fib::needs_reconcile`]: without it, building the desired
    /// table for [`FibHandle::reconcile`] can be skipped.
    pub fn needs_reconcile(&self) -> bool {
        self.unsynced.load(Ordering::Relaxed)
    }

    pub fn reconcile(&self, desired: FibTable) {
        let _ = self.tx.send(FibMsg::Reconcile(desired));
    }
}

/// Updates the FIB task takes from its queue at once (coalesced by
/// [`merge`]): enough for full batches, few enough to bound the memory a
/// backlog costs while it is applied.
const TAKE: usize = 16 * BATCH;

/// Runs `fib` in its own task. Errors are logged, and the next reconcile
/// repairs what they left.
pub fn spawn(mut fib: Fib) -> (FibHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let unsynced = fib.unsynced.clone();
    let backlog = Arc::new(Backlog::default());
    let progress = backlog.clone();
    let task = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            // Coalesce what is already queued, up to TAKE, into one batch;
            // a reconcile ends it (later updates come after it).
            let mut updates = Vec::new();
            let mut reconcile = None;
            let mut next = Some(msg);
            while let Some(m) = next.take() {
                match m {
                    FibMsg::Update(u) => u.unpack(&mut updates),
                    FibMsg::Reconcile(d) => reconcile = Some(d),
                }
                if updates.len() < TAKE && reconcile.is_none() {
                    next = rx.try_recv().ok();
                }
            }
            if let Err(e) = fib.update(&updates).await {
                warn!(error = %e, "kernel route update failed");
            }
            progress.queued.fetch_sub(updates.len(), Ordering::Relaxed);
            // Stored if the speaker is not waiting yet: it will not miss it.
            progress.applied.notify_one();
            if let Some(desired) = reconcile
                && let Err(e) = fib.reconcile(&desired).await
            {
                warn!(error = %e, "kernel table reconcile failed");
            }
        }
    });
    (
        FibHandle {
            tx,
            unsynced,
            backlog,
        },
        task,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table(entries: &[(&str, &[&str])]) -> FibTable {
        entries
            .iter()
            .map(|(k, v)| (p(k), v.iter().map(|x| a(x)).collect()))
            .collect()
    }

    #[test]
    fn diff_deletes_what_is_unwanted_and_replaces_what_differs() {
        let current = table(&[
            ("10.1.0.0/24", &["10.0.0.1"]),
            ("10.2.0.0/24", &["10.0.0.1"]),
            ("10.3.0.0/24", &["10.0.0.1"]),
        ]);
        let desired = table(&[
            ("10.2.0.0/24", &["10.0.0.1"]),
            ("10.3.0.0/24", &["10.0.0.1", "10.0.0.2"]),
            ("10.4.0.0/24", &["10.0.0.2"]),
        ]);
        assert_eq!(
            diff(&current, &desired),
            vec![
                FibOp::Delete {
                    prefix: p("10.1.0.0/24")
                },
                FibOp::Replace {
                    prefix: p("10.3.0.0/24"),
                    next_hops: vec![a("10.0.0.1"), a("10.0.0.2")]
                },
                FibOp::Replace {
                    prefix: p("10.4.0.0/24"),
                    next_hops: vec![a("10.0.0.2")]
                },
            ]
        );
    }

    #[test]
    fn diff_of_equal_tables_is_empty() {
        let t = table(&[("10.1.0.0/24", &["10.0.0.1"])]);
        assert!(diff(&t, &t).is_empty());
    }

    #[test]
    fn queued_updates_unpack_in_order_with_their_ecmp_sets() {
        let updates = vec![
            (p("10.1.0.0/24"), vec![a("10.0.0.1")]),
            (p("10.2.0.0/24"), vec![a("10.0.0.1"), a("10.0.0.2")]),
            (p("10.3.0.0/24"), vec![]),
            (p("2001:db8::/32"), vec![a("fe80::1"), a("fe80::2")]),
            (p("2001:db8:1::/48"), vec![a("fe80::1")]),
            (p("10.4.0.0/24"), vec![a("fe80::1")]),
            (p("10.1.0.0/24"), vec![]),
        ];
        let mut out = vec![(p("10.9.0.0/24"), vec![])];
        Queued::new(updates.clone()).unpack(&mut out);
        assert_eq!(out[0], (p("10.9.0.0/24"), vec![]));
        assert_eq!(out[1..], updates);
    }

    #[test]
    fn merge_keeps_the_last_update_of_a_prefix_and_skips_no_ops() {
        let current = table(&[
            ("10.1.0.0/24", &["10.0.0.1"]),
            ("10.2.0.0/24", &["10.0.0.1"]),
        ]);
        let updates = vec![
            (p("10.1.0.0/24"), vec![a("10.0.0.2")]),
            (p("10.1.0.0/24"), vec![a("10.0.0.1")]),
            (p("10.2.0.0/24"), vec![]),
            (p("10.9.0.0/24"), vec![]),
            (
                p("10.3.0.0/24"),
                vec![a("10.0.0.3"), a("10.0.0.2"), a("10.0.0.3")],
            ),
        ];
        assert_eq!(
            merge(&current, &updates),
            vec![
                FibOp::Delete {
                    prefix: p("10.2.0.0/24")
                },
                FibOp::Replace {
                    prefix: p("10.3.0.0/24"),
                    next_hops: vec![a("10.0.0.2"), a("10.0.0.3")]
                },
            ]
        );
    }
}
