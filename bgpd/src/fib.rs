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
//! route. Updates apply against what is installed; [`Fib::reconcile`] with
//! the full desired table, once the sessions have converged, removes
//! routes left over from before.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::{RouteMessageBuilder, RouteNextHopBuilder};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::prefix::Prefix;

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
    let mut last: BTreeMap<Prefix, Vec<IpAddr>> = BTreeMap::new();
    for (prefix, hops) in updates {
        let mut hops = hops.clone();
        hops.sort();
        hops.dedup();
        last.insert(*prefix, hops);
    }
    last.into_iter()
        .filter_map(
            |(prefix, next_hops)| match (current.get(&prefix), next_hops.is_empty()) {
                (None, true) => None,
                (Some(_), true) => Some(FibOp::Delete { prefix }),
                (Some(old), false) if *old == next_hops => None,
                _ => Some(FibOp::Replace { prefix, next_hops }),
            },
        )
        .collect()
}

fn apply_to(table: &mut FibTable, op: &FibOp) {
    match op {
        FibOp::Replace { prefix, next_hops } => {
            table.insert(*prefix, next_hops.clone());
        }
        FibOp::Delete { prefix } => {
            table.remove(prefix);
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

fn is_not_found(e: &rtnetlink::Error) -> bool {
    // ESRCH (3): no such route; ENOENT (2).
    matches!(e, rtnetlink::Error::NetlinkError(m) if matches!(-m.raw_code(), 2 | 3))
}

/// The kernel side: a netlink handle and what we installed.
#[derive(Debug)]
pub struct Fib {
    handle: rtnetlink::Handle,
    config: FibConfig,
    installed: FibTable,
}

impl Fib {
    /// Opens a netlink connection in the current network namespace and
    /// reads the routes already installed with our protocol.
    pub async fn open(config: FibConfig) -> Result<Self, FibError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(FibError::Connect)?;
        tokio::spawn(conn);
        let mut fib = Fib {
            handle,
            config,
            installed: FibTable::new(),
        };
        fib.installed = fib.read().await?;
        Ok(fib)
    }

    pub fn config(&self) -> FibConfig {
        self.config
    }

    /// What we believe is installed.
    pub fn installed(&self) -> &FibTable {
        &self.installed
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

    async fn apply_one(&self, op: &FibOp) -> Result<(), FibError> {
        match op {
            FibOp::Replace { prefix, next_hops } => {
                let family_err = |next_hop| FibError::Family {
                    prefix: *prefix,
                    next_hop,
                };
                let mut b = self.message(prefix).kind(RouteType::Unicast);
                match next_hops.as_slice() {
                    [] => return Ok(()),
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
                self.handle
                    .route()
                    .add(b.build())
                    .replace()
                    .execute()
                    .await
                    .map_err(|source| FibError::Apply {
                        op: "installing",
                        prefix: *prefix,
                        source,
                    })
            }
            FibOp::Delete { prefix } => {
                match self
                    .handle
                    .route()
                    .del(self.message(prefix).build())
                    .execute()
                    .await
                {
                    Err(e) if !is_not_found(&e) => Err(FibError::Apply {
                        op: "removing",
                        prefix: *prefix,
                        source: e,
                    }),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Applies operations one by one; the first failure stops the batch
    /// and is returned, with everything before it applied and recorded.
    pub async fn apply(&mut self, ops: &[FibOp]) -> Result<(), FibError> {
        for op in ops {
            self.apply_one(op).await?;
            apply_to(&mut self.installed, op);
        }
        Ok(())
    }

    /// Applies a batch of updates (see [`merge`]).
    pub async fn update(&mut self, updates: &[(Prefix, Vec<IpAddr>)]) -> Result<(), FibError> {
        let ops = merge(&self.installed, updates);
        self.apply(&ops).await
    }

    /// Makes the table exactly `desired`, removing leftovers.
    pub async fn reconcile(&mut self, desired: &FibTable) -> Result<(), FibError> {
        self.installed = self.read().await?;
        let ops = diff(&self.installed, desired);
        debug!(ops = ops.len(), "reconciling the kernel table");
        self.apply(&ops).await
    }
}

/// Messages to the FIB task.
#[derive(Debug)]
pub enum FibMsg {
    Update(Vec<(Prefix, Vec<IpAddr>)>),
    Reconcile(FibTable),
}

/// The sending side of the FIB task; the task ends when every handle is
/// dropped.
#[derive(Debug, Clone)]
pub struct FibHandle {
    tx: mpsc::UnboundedSender<FibMsg>,
}

impl FibHandle {
    pub fn update(&self, updates: Vec<(Prefix, Vec<IpAddr>)>) {
        if !updates.is_empty() {
            let _ = self.tx.send(FibMsg::Update(updates));
        }
    }

    pub fn reconcile(&self, desired: FibTable) {
        let _ = self.tx.send(FibMsg::Reconcile(desired));
    }
}

/// What queued messages amount to, in order: a reconcile carries the whole
/// table as of when it was sent, so updates before it are dropped and
/// updates after it are folded into its table (applying them before an
/// older table would let the reconcile undo them).
fn coalesce(msgs: impl IntoIterator<Item = FibMsg>) -> FibMsg {
    let mut updates = Vec::new();
    let mut reconcile: Option<FibTable> = None;
    for m in msgs {
        match (m, &mut reconcile) {
            (FibMsg::Reconcile(d), _) => {
                updates.clear();
                reconcile = Some(d);
            }
            (FibMsg::Update(u), Some(desired)) => {
                for op in merge(desired, &u) {
                    apply_to(desired, &op);
                }
            }
            (FibMsg::Update(u), None) => updates.extend(u),
        }
    }
    reconcile.map_or(FibMsg::Update(updates), FibMsg::Reconcile)
}

/// Runs `fib` in its own task. Errors are logged, and the next reconcile
/// repairs what they left.
pub fn spawn(mut fib: Fib) -> (FibHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            // Coalesce what is already queued into one batch.
            let mut queued = vec![msg];
            while let Ok(m) = rx.try_recv() {
                queued.push(m);
            }
            match coalesce(queued) {
                FibMsg::Update(updates) => {
                    if let Err(e) = fib.update(&updates).await {
                        warn!(error = %e, "kernel route update failed");
                    }
                }
                FibMsg::Reconcile(desired) => {
                    if let Err(e) = fib.reconcile(&desired).await {
                        warn!(error = %e, "kernel table reconcile failed");
                    }
                }
            }
        }
    });
    (FibHandle { tx }, task)
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
    fn updates_queued_after_a_reconcile_are_folded_into_its_table() {
        let before = FibMsg::Update(vec![(p("10.9.0.0/24"), vec![a("10.0.0.9")])]);
        let snapshot = table(&[
            ("10.1.0.0/24", &["10.0.0.1"]),
            ("10.2.0.0/24", &["10.0.0.2"]),
        ]);
        let after = FibMsg::Update(vec![
            (p("10.3.0.0/24"), vec![a("10.0.0.3")]),
            (p("10.2.0.0/24"), vec![]),
        ]);
        let FibMsg::Reconcile(desired) = coalesce([before, FibMsg::Reconcile(snapshot), after])
        else {
            panic!("a reconcile was queued");
        };
        assert_eq!(
            desired,
            table(&[
                ("10.1.0.0/24", &["10.0.0.1"]),
                ("10.3.0.0/24", &["10.0.0.3"])
            ])
        );
        let only_updates = coalesce([
            FibMsg::Update(vec![(p("10.1.0.0/24"), vec![a("10.0.0.1")])]),
            FibMsg::Update(vec![(p("10.1.0.0/24"), vec![])]),
        ]);
        assert!(matches!(only_updates, FibMsg::Update(u) if u.len() == 2));
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
