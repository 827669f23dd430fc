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
//! Where the kernel has nexthop objects (Linux 5.3), routes name one
//! (`RTA_NH_ID`) instead of carrying their gateways: an object per gateway,
//! a group object per ECMP set, shared by every route with that set and
//! removed with the last of them (`nexthop.rs`). Routes whose gateway has
//! no device the kernel can name, and every route on an older kernel, go
//! in with their gateways as before. `ip route` shows such a route as
//! `P nhid N via GW dev D proto 200`.
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

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_core::{
    ErrorMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
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
mod nexthop;
use installed::Installed;
use nexthop::{Create, Objects};

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
    merge_owned(current, updates.to_vec())
}

/// [`merge_with`], consuming the updates (no copy of their next hops).
fn merge_owned<'a>(
    current: impl Fn(&Prefix) -> Option<&'a [IpAddr]>,
    mut updates: Vec<(Prefix, Vec<IpAddr>)>,
) -> Vec<FibOp> {
    // Stable: of a prefix's updates, the last stays last.
    updates.sort_by_key(|u| u.0);
    let mut ops = Vec::with_capacity(updates.len());
    let mut updates = updates.into_iter().peekable();
    while let Some((prefix, mut next_hops)) = updates.next() {
        if updates.peek().is_some_and(|(p, _)| *p == prefix) {
            continue;
        }
        next_hops.sort();
        next_hops.dedup();
        match (current(&prefix), next_hops.is_empty()) {
            (None, true) => {}
            (Some(_), true) => ops.push(FibOp::Delete { prefix }),
            (Some(old), false) if old == next_hops => {}
            _ => ops.push(FibOp::Replace { prefix, next_hops }),
        }
    }
    ops
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
fn parse_route(
    msg: &RouteMessage,
    config: FibConfig,
    objects: &HashMap<u32, Vec<IpAddr>>,
) -> Option<(Prefix, Vec<IpAddr>)> {
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
    let mut over = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(d) => dest = route_address(d),
            RouteAttribute::Gateway(g) => hops.extend(route_address(g)),
            // A route over a nexthop object: that object's gateways (the
            // kernel also lists them as the route's, unless
            // `nexthop_compat_mode` is off).
            RouteAttribute::NhId(id) => over = objects.get(id),
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
    if let Some(object) = over {
        hops.clone_from(object);
    }
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

    /// Appends `request` to the buffer, numbered next, with `flags` added.
    fn push(&mut self, request: Request, flags: u16) {
        self.seq = self.seq.wrapping_add(1);
        let Request {
            kind,
            flags: own,
            body,
        } = request;
        // `struct nlmsghdr`: length, type, flags, sequence, port.
        let len = 16 + body.len() as u32;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf
            .extend_from_slice(&(NLM_F_REQUEST | own | flags).to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&body);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
    }

    /// Sends `messages` in one `sendmsg`, the last one asking for an ACK,
    /// and reads the answers up to that ACK. Each message's failure, if
    /// any, by index.
    async fn send(
        &mut self,
        messages: Vec<Request>,
    ) -> Result<Vec<Option<ErrorMessage>>, FibError> {
        let count = messages.len();
        let first = self.seq.wrapping_add(1);
        self.buf.clear();
        for (i, message) in messages.into_iter().enumerate() {
            self.push(message, if i + 1 == count { NLM_F_ACK } else { 0 });
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

    /// Dumps `kind` (an `RTM_GET…` with `body`): each answer's body.
    async fn dump(&mut self, kind: u16, body: Vec<u8>) -> std::io::Result<Vec<Vec<u8>>> {
        self.buf.clear();
        self.push(
            Request {
                kind,
                flags: NLM_F_DUMP,
                body,
            },
            0,
        );
        let seq = self.seq;
        self.socket.send(&self.buf).await?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().await?;
            let mut at = 0;
            while at + 16 <= data.len() {
                let word =
                    |i: usize| u32::from_ne_bytes(data[at + i..at + i + 4].try_into().unwrap());
                let len = word(0) as usize;
                let kind = u16::from_ne_bytes([data[at + 4], data[at + 5]]);
                if len < 16 || at + len > data.len() {
                    return Err(std::io::Error::other("a truncated netlink answer"));
                }
                if word(8) == seq {
                    match kind {
                        // NLMSG_DONE
                        3 => return Ok(out),
                        // NLMSG_ERROR
                        2 => {
                            let code =
                                i32::from_ne_bytes(data[at + 16..at + 20].try_into().unwrap());
                            return Err(std::io::Error::from_raw_os_error(-code));
                        }
                        _ => out.push(data[at + 16..at + len].to_vec()),
                    }
                }
                at += len.next_multiple_of(4);
            }
        }
    }
}

/// One message of a batch: its type, its own flags and its body.
#[derive(Debug)]
struct Request {
    kind: u16,
    flags: u16,
    body: Vec<u8>,
}

/// The kernel side: a netlink handle and what we installed.
#[derive(Debug)]
pub struct Fib {
    handle: rtnetlink::Handle,
    batcher: Batcher,
    config: FibConfig,
    installed: Installed,
    /// Our nexthop objects; `None` on a kernel without them (routes then
    /// carry their gateways).
    objects: Option<Objects>,
    /// Set while the table may differ from what we applied: routes of an
    /// earlier run found at open, or a failed change.
    unsynced: Arc<AtomicBool>,
}

/// Why a message of a batch was sent.
#[derive(Debug, Clone, Copy)]
enum Purpose<'a> {
    Op(&'a FibOp),
    Create(u32),
}

impl Fib {
    /// Opens a netlink connection in the current network namespace and
    /// reads the routes already installed with our protocol, and our
    /// nexthop objects.
    pub async fn open(config: FibConfig) -> Result<Self, FibError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(FibError::Connect)?;
        tokio::spawn(conn);
        let mut fib = Fib {
            handle,
            batcher: Batcher::open().map_err(FibError::Connect)?,
            config,
            installed: Installed::default(),
            objects: None,
            unsynced: Arc::new(AtomicBool::new(false)),
        };
        let objects = match fib.nexthops().await {
            Ok(found) => {
                fib.objects = Some(Objects::from_found(config.protocol, &found));
                found
            }
            Err(e) => {
                debug!(error = %e, "no nexthop objects: routes carry their gateways");
                Vec::new()
            }
        };
        let routes = fib.read_over(&objects).await?;
        fib.installed = Installed::from_table(&routes);
        fib.unsynced.store(!routes.is_empty(), Ordering::Relaxed);
        Ok(fib)
    }

    pub fn config(&self) -> FibConfig {
        self.config
    }

    /// Whether routes go in over nexthop objects (the kernel has them).
    pub fn uses_nexthop_objects(&self) -> bool {
        self.objects.is_some()
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

    /// Every nexthop object in the namespace (anyone's).
    async fn nexthops(&mut self) -> std::io::Result<Vec<nexthop::Found>> {
        let bodies = self
            .batcher
            .dump(nexthop::RTM_GETNEXTHOP, vec![0; 8])
            .await?;
        Ok(bodies.iter().filter_map(|b| nexthop::parse(b)).collect())
    }

    /// Reads the routes of our protocol in our table from the kernel; a
    /// route over a nexthop object reads as that object's gateways.
    pub async fn read(&mut self) -> Result<FibTable, FibError> {
        let found = match self.objects {
            Some(_) => self.nexthops().await.map_err(FibError::Netlink)?,
            None => Vec::new(),
        };
        self.read_over(&found).await
    }

    /// [`Fib::read`] with the nexthop objects already dumped.
    async fn read_over(&self, found: &[nexthop::Found]) -> Result<FibTable, FibError> {
        let objects = nexthop::hops_by_id(found);
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
                if let Some((prefix, hops)) = parse_route(&m, self.config, &objects) {
                    out.insert(prefix, hops);
                }
            }
        }
        Ok(out)
    }

    /// The device the kernel reaches `gateway` through, if any.
    async fn device_of(&self, gateway: IpAddr) -> Option<u32> {
        let msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(gateway, if gateway.is_ipv4() { 32 } else { 128 })
            .ok()?
            .build();
        let mut answers = self.handle.route().get(msg).execute();
        let route = answers.try_next().await.ok().flatten()?;
        route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        })
    }

    /// Looks up the devices of the gateways in `ops` not seen before.
    async fn resolve(&mut self, ops: &[FibOp]) {
        let Some(objects) = &self.objects else {
            return;
        };
        let mut new: Vec<IpAddr> = ops
            .iter()
            .filter_map(|op| match op {
                FibOp::Replace { next_hops, .. } => Some(next_hops),
                FibOp::Delete { .. } => None,
            })
            .flat_map(|hops| objects.unresolved(hops))
            .collect();
        new.sort();
        new.dedup();
        for gateway in new {
            let oif = self.device_of(gateway).await;
            if let Some(objects) = &mut self.objects {
                objects.oifs.insert(gateway, oif);
            }
        }
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

    /// The netlink request for `op` and, before it, the nexthop objects it
    /// needs created (into `creates`); `None` for a route without next
    /// hops, which is not installed.
    fn request(
        &mut self,
        op: &FibOp,
        creates: &mut Vec<Create>,
    ) -> Result<Option<Request>, FibError> {
        let (table, protocol) = (self.config.table, self.config.protocol);
        match op {
            FibOp::Replace { prefix, next_hops } => {
                if next_hops.is_empty() {
                    return Ok(None);
                }
                let family_err = |next_hop| FibError::Family {
                    prefix: *prefix,
                    next_hop,
                };
                if let Some(&hop) = next_hops
                    .iter()
                    .find(|h| h.is_ipv4() != prefix.addr().is_ipv4())
                {
                    return Err(family_err(hop));
                }
                if let Some(id) = self
                    .objects
                    .as_mut()
                    .and_then(|o| o.ensure(next_hops, creates))
                {
                    return Ok(Some(Request {
                        kind: nexthop::RTM_NEWROUTE,
                        flags: NLM_F_CREATE | NLM_F_REPLACE,
                        body: nexthop::encode_route(prefix, table, protocol, Some(id)),
                    }));
                }
                let mut b = self.message(prefix).kind(RouteType::Unicast);
                match next_hops.as_slice() {
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
                Ok(Some(Request {
                    kind: nexthop::RTM_NEWROUTE,
                    flags: NLM_F_CREATE | NLM_F_REPLACE,
                    body: emit(&RouteNetlinkMessage::NewRoute(b.build())),
                }))
            }
            FibOp::Delete { prefix } => Ok(Some(Request {
                kind: nexthop::RTM_DELROUTE,
                flags: 0,
                body: nexthop::encode_route(prefix, table, protocol, None),
            })),
        }
    }

    /// Applies operations in batches of [`BATCH`], in order. A failure
    /// stops it after its batch: the operations that succeeded are
    /// recorded and the first failure is returned. Removing a route that
    /// is not there succeeds. Nexthop objects no route uses any more go
    /// afterwards.
    pub async fn apply(&mut self, ops: &[FibOp]) -> Result<(), FibError> {
        let result = self.apply_routes(ops).await;
        self.collect_objects().await;
        result
    }

    async fn apply_routes(&mut self, ops: &[FibOp]) -> Result<(), FibError> {
        self.resolve(ops).await;
        for chunk in ops.chunks(BATCH) {
            let mut sent = Vec::with_capacity(chunk.len());
            let mut messages = Vec::with_capacity(chunk.len());
            let mut creates = Vec::new();
            let mut unbuildable = None;
            for op in chunk {
                match self.request(op, &mut creates) {
                    Ok(Some(m)) => {
                        for c in creates.drain(..) {
                            sent.push(Purpose::Create(c.id()));
                            messages.push(Request {
                                kind: nexthop::RTM_NEWNEXTHOP,
                                flags: NLM_F_CREATE | NLM_F_EXCL,
                                body: c.encode(self.config.protocol),
                            });
                        }
                        messages.push(m);
                        sent.push(Purpose::Op(op));
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
            for (purpose, answer) in sent.into_iter().zip(answers) {
                let op = match purpose {
                    Purpose::Create(id) => {
                        if let Some(e) = answer {
                            warn!(id, error = %e, "creating a nexthop object failed");
                            if let Some(o) = &mut self.objects {
                                o.forget(id);
                            }
                        }
                        continue;
                    }
                    Purpose::Op(op) => op,
                };
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

    /// Deletes the nexthop objects no route of ours uses any more.
    async fn collect_objects(&mut self) {
        let Some(objects) = &mut self.objects else {
            return;
        };
        let installed = &self.installed;
        let idle = objects.garbage(|hops| installed.uses(hops));
        for chunk in idle.chunks(BATCH) {
            let messages = chunk
                .iter()
                .map(|&id| Request {
                    kind: nexthop::RTM_DELNEXTHOP,
                    flags: 0,
                    body: nexthop::encode_delete(id),
                })
                .collect();
            match self.batcher.send(messages).await {
                Ok(answers) => {
                    for (id, e) in chunk.iter().zip(answers) {
                        if let Some(e) = e.filter(|e| !is_not_found(e)) {
                            warn!(id, error = %e, "removing a nexthop object failed");
                        }
                    }
                }
                Err(e) => warn!(error = %e, "removing nexthop objects failed"),
            }
        }
    }

    /// Applies a batch of updates (see [`merge`]).
    pub async fn update(&mut self, updates: &[(Prefix, Vec<IpAddr>)]) -> Result<(), FibError> {
        self.update_owned(updates.to_vec()).await
    }

    /// [`Fib::update`], consuming the updates.
    async fn update_owned(&mut self, updates: Vec<(Prefix, Vec<IpAddr>)>) -> Result<(), FibError> {
        let installed = &self.installed;
        let ops = merge_owned(|p| installed.get(p), updates);
        self.apply(&ops).await
    }

    /// Makes the table exactly `desired`, removing leftovers (and nexthop
    /// objects of ours no route uses).
    pub async fn reconcile(&mut self, desired: &FibTable) -> Result<(), FibError> {
        // Our objects as the kernel has them: a failed batch may have left
        // some recorded here that were never made.
        let mut found = Vec::new();
        if self.objects.is_some() {
            found = self.nexthops().await.map_err(FibError::Netlink)?;
            self.objects = Some(Objects::from_found(self.config.protocol, &found));
        }
        let current = self.read_over(&found).await?;
        let ops = diff(&current, desired);
        self.installed = Installed::from_table(&current);
        debug!(ops = ops.len(), "reconciling the kernel table");
        self.unsynced.store(false, Ordering::Relaxed);
        self.apply(&ops).await
    }
}

/// A route message's body as the kernel reads it.
fn emit(message: &RouteNetlinkMessage) -> Vec<u8> {
    use rtnetlink::packet_core::NetlinkSerializable;
    let mut body = vec![0; message.buffer_len()];
    message.serialize(&mut body);
    body
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
            let count = updates.len();
            if let Err(e) = fib.update_owned(updates).await {
                warn!(error = %e, "kernel route update failed");
            }
            progress.queued.fetch_sub(count, Ordering::Relaxed);
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
