//! The routes felix owns: those of protocol
//! [`ROUTE_PROTOCOL`] in the main table.
//! [`plan`] (pure) turns what the kernel has into what to add, replace and
//! delete; [`RoutesDriver`] reads the table and carries that out. Routes of
//! any other protocol (the kernel's, bgpd's) are never changed: a desired
//! route whose destination another protocol already holds at the same
//! metric is reported as a conflict instead of replacing it.
//!
//! Workload routes are scope link through the interface; blackholes have no
//! device; `Via` routes go through a gateway on a device, `onlink` (the
//! remote VTEP on `vxlan.calico`). A route through a device that does not
//! exist or is down is pending: skipped now, programmed by a later apply.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};

use super::Namespace;
use super::kernel::{self, DataplaneError, Link};
use crate::state::{Desired, Driver, DriverError, ROUTE_PROTOCOL, Route, RouteTarget};

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// The metric our routes get: the kernel's default for the family (IPv4
/// 0, IPv6 1024), which is also what another protocol's route must have
/// to collide with ours.
pub fn default_metric(dst: &IpNet) -> u32 {
    match dst {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1024,
    }
}

/// One of our routes as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub dst: IpNet,
    /// `None` for a route of ours we cannot read back as a [`RouteTarget`]
    /// (say multipath): it is replaced or deleted.
    pub target: Option<RouteTarget>,
    pub metric: u32,
}

/// One change to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp {
    /// A new destination (fails rather than replace anything).
    Add(Route),
    /// Our route to this destination, changed in place.
    Replace(Route),
    /// The current route at this position of [`plan`]'s input.
    Delete(usize),
}

/// Why a desired route is not programmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// Its device is missing or down (retried on the next apply).
    Pending,
    /// Another protocol's route holds its destination.
    Conflict { protocol: u8 },
    /// It cannot be a kernel route (a gateway of the other family, or a
    /// second route to a destination already desired).
    Invalid(&'static str),
}

/// What [`plan`] decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// Deletions first, then replacements, then additions.
    pub ops: Vec<RouteOp>,
    pub skipped: Vec<(Route, Skipped)>,
}

/// What to change to get from `ours` (our routes in the kernel) to
/// `desired`. `foreign` holds the destinations that other protocols' routes
/// hold at [`default_metric`], with their protocol; `usable` says whether a
/// device exists and is up.
pub fn plan(
    ours: &[KernelRoute],
    foreign: &BTreeMap<IpNet, u8>,
    desired: &BTreeSet<Route>,
    usable: impl Fn(&str) -> bool,
) -> RoutePlan {
    let mut out = RoutePlan::default();
    let mut wanted: BTreeMap<IpNet, &Route> = BTreeMap::new();
    for route in desired {
        let skip = if wanted.contains_key(&route.dst) {
            Some(Skipped::Invalid(
                "another route to this destination is desired",
            ))
        } else if let RouteTarget::Via { gateway, .. } = &route.target
            && gateway.is_ipv4() != matches!(route.dst, IpNet::V4(_))
        {
            Some(Skipped::Invalid(
                "the gateway is of the other address family",
            ))
        } else if let Some(&protocol) = foreign.get(&route.dst) {
            Some(Skipped::Conflict { protocol })
        } else {
            match &route.target {
                RouteTarget::Interface(dev) | RouteTarget::Via { dev, .. } if !usable(dev) => {
                    Some(Skipped::Pending)
                }
                _ => None,
            }
        };
        match skip {
            Some(why) => out.skipped.push((route.clone(), why)),
            None => {
                wanted.insert(route.dst, route);
            }
        }
    }
    let at_default = |r: &KernelRoute| r.metric == default_metric(&r.dst);
    // Exact matches first, so that a stray duplicate never displaces one.
    let mut done: BTreeSet<IpNet> = BTreeSet::new();
    let mut exact = BTreeSet::new();
    for (i, r) in ours.iter().enumerate() {
        if at_default(r)
            && r.target.as_ref() == wanted.get(&r.dst).map(|w| &w.target)
            && done.insert(r.dst)
        {
            exact.insert(i);
        }
    }
    let mut replace = Vec::new();
    for (i, r) in ours.iter().enumerate() {
        if exact.contains(&i) {
            continue;
        }
        match wanted.get(&r.dst) {
            Some(w) if at_default(r) && done.insert(r.dst) => {
                replace.push(RouteOp::Replace((*w).clone()))
            }
            _ => out.ops.push(RouteOp::Delete(i)),
        }
    }
    out.ops.extend(replace);
    out.ops.extend(
        wanted
            .iter()
            .filter(|(dst, _)| !done.contains(*dst))
            .map(|(_, r)| RouteOp::Add((*r).clone())),
    );
    out
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A main-table route read from the kernel: its protocol and what we make
/// of it (`None` outside the main table or unparseable).
fn parse(message: &RouteMessage, names: &BTreeMap<u32, &str>) -> Option<(u8, KernelRoute)> {
    let mut table = u32::from(message.header.table);
    let (mut dst, mut gateway, mut oif, mut metric, mut multipath) = (None, None, None, 0, false);
    for a in &message.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = address(d),
            RouteAttribute::Gateway(g) => gateway = address(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::MultiPath(_) => multipath = true,
            _ => {}
        }
    }
    if table != MAIN_TABLE {
        return None;
    }
    let dst = dst.unwrap_or(match message.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    });
    let dst = IpNet::new(dst, message.header.destination_prefix_length).ok()?;
    let dev = oif.and_then(|i| names.get(&i)).map(|n| (*n).to_owned());
    let target = match (message.header.kind, gateway, dev, multipath) {
        (_, _, _, true) => None,
        (RouteType::BlackHole, _, _, _) => Some(RouteTarget::Blackhole),
        (RouteType::Unicast, Some(gateway), Some(dev), _) => {
            Some(RouteTarget::Via { gateway, dev })
        }
        (RouteType::Unicast, None, Some(dev), _) => Some(RouteTarget::Interface(dev)),
        _ => None,
    };
    Some((
        u8::from(message.header.protocol),
        KernelRoute {
            dst,
            target,
            metric,
        },
    ))
}

/// The netlink message that installs `route`.
fn message(route: &Route, links: &BTreeMap<String, Link>) -> Result<RouteMessage, DataplaneError> {
    let invalid = |reason: &str| DataplaneError::Route {
        route: describe(route),
        reason: reason.to_owned(),
    };
    let index = |dev: &str| {
        links
            .get(dev)
            .map(|l| l.index)
            .ok_or_else(|| invalid("its device disappeared"))
    };
    let v4 = matches!(route.dst, IpNet::V4(_));
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(route.dst.addr(), route.dst.prefix_len())
        .map_err(|_| invalid("bad destination"))?
        .table_id(MAIN_TABLE)
        .protocol(RouteProtocol::from(ROUTE_PROTOCOL));
    b = match &route.target {
        RouteTarget::Blackhole => b.kind(RouteType::BlackHole),
        RouteTarget::Interface(dev) => {
            let scope = if v4 {
                RouteScope::Link
            } else {
                RouteScope::Universe
            };
            b.kind(RouteType::Unicast)
                .scope(scope)
                .output_interface(index(dev)?)
        }
        RouteTarget::Via { gateway, dev } => b
            .kind(RouteType::Unicast)
            .gateway(*gateway)
            .map_err(|_| invalid("the gateway is of the other address family"))?
            .output_interface(index(dev)?)
            .onlink(),
    };
    Ok(b.build())
}

/// `dst blackhole`, `dst dev X`, `dst via G dev X`.
pub fn describe(route: &Route) -> String {
    match &route.target {
        RouteTarget::Blackhole => format!("blackhole {}", route.dst),
        RouteTarget::Interface(dev) => format!("{} dev {dev}", route.dst),
        RouteTarget::Via { gateway, dev } => format!("{} via {gateway} dev {dev}", route.dst),
    }
}

/// What one apply did.
#[derive(Debug, Default)]
pub struct RoutesReport {
    pub added: usize,
    pub replaced: usize,
    pub deleted: usize,
    /// Desired routes whose device is missing or down.
    pub pending: Vec<Route>,
    /// Routes that failed, or conflict with another protocol's, or are
    /// invalid.
    pub failed: Vec<DataplaneError>,
}

impl RoutesReport {
    /// Routes added, replaced or deleted.
    pub fn changes(&self) -> usize {
        self.added + self.replaced + self.deleted
    }
}

/// The routes driver for one namespace.
#[derive(Debug)]
pub struct RoutesDriver {
    handle: rtnetlink::Handle,
    pending: Vec<Route>,
    /// The links as last read: the devices of the desired routes.
    links: BTreeMap<String, Link>,
    /// False at first and after a change failed: the next apply reads
    /// every link again rather than trust `links`.
    links_fresh: bool,
}

impl RoutesDriver {
    /// Opens a netlink connection in `netns` (on the current tokio
    /// runtime). Nothing is read or changed until the first apply.
    pub async fn open(netns: Namespace) -> Result<Self, DataplaneError> {
        Ok(RoutesDriver {
            handle: netns.rtnetlink_strict().await?,
            pending: Vec::new(),
            links: BTreeMap::new(),
            links_fresh: false,
        })
    }

    /// Desired routes the last apply skipped because their device was
    /// missing or down.
    pub fn pending(&self) -> &[Route] {
        &self.pending
    }

    /// Makes our routes match `desired`, route by route: a failure is
    /// reported and the others still applied. `Err` only when the table
    /// cannot be read.
    ///
    /// Table main is read whole (both families); the links are not (see
    /// [`kernel::links`] for what a dump costs): the driver keeps the
    /// devices of its routes and asks by name for those of routes to add
    /// or change and for those not up. It reads every link again at first,
    /// after a change failed, and when a route of ours goes through a link
    /// it does not know.
    pub async fn reconcile(&mut self, desired: &Desired) -> Result<RoutesReport, DataplaneError> {
        if !self.links_fresh {
            self.links = kernel::links(&self.handle).await?;
            self.links_fresh = true;
        }
        let mut table = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            // Table main only, every protocol and type: the kernel filters
            // (strict checking), so the local tables' routes (two for each
            // veth's link-local address) are not read and parsed.
            let mut query = RouteMessage::default();
            query.header.address_family = family;
            query.header.table = MAIN_TABLE as u8;
            query.header.protocol = RouteProtocol::Unspec;
            query.header.kind = RouteType::Unspec;
            let mut dump = self.handle.route().get(query).execute();
            while let Some(m) = dump
                .try_next()
                .await
                .map_err(DataplaneError::netlink("reading routes"))?
            {
                table.push(m);
            }
        }
        let known: BTreeSet<u32> = self.links.values().map(|l| l.index).collect();
        let stranger = table.iter().any(|m| {
            u8::from(m.header.protocol) == ROUTE_PROTOCOL
                && m.attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Oif(i) if !known.contains(i)))
        });
        if stranger {
            self.links = kernel::links(&self.handle).await?;
        }
        let names: BTreeMap<u32, &str> = self
            .links
            .iter()
            .map(|(n, l)| (l.index, n.as_str()))
            .collect();
        let mut messages = Vec::new();
        let mut ours = Vec::new();
        let mut foreign = BTreeMap::new();
        for m in table {
            match parse(&m, &names) {
                Some((ROUTE_PROTOCOL, r)) => {
                    ours.push(r);
                    messages.push(m);
                }
                Some((protocol, r)) if r.metric == default_metric(&r.dst) => {
                    foreign.entry(r.dst).or_insert(protocol);
                }
                _ => {}
            }
        }
        drop(names);
        self.refresh_devices(desired, &ours).await?;
        let links = &self.links;
        let plan = plan(&ours, &foreign, &desired.routes, |dev| {
            links.get(dev).is_some_and(|l| l.up)
        });
        let mut report = RoutesReport::default();
        for (route, why) in plan.skipped {
            let reason = match why {
                Skipped::Pending => {
                    report.pending.push(route);
                    continue;
                }
                Skipped::Conflict { protocol } => {
                    format!("a route of protocol {protocol} holds this destination")
                }
                Skipped::Invalid(why) => why.to_owned(),
            };
            report.failed.push(DataplaneError::Route {
                route: describe(&route),
                reason,
            });
        }
        for op in plan.ops {
            let result = match &op {
                RouteOp::Delete(i) => {
                    let r = &ours[*i];
                    match self
                        .handle
                        .route()
                        .del(messages[*i].clone())
                        .execute()
                        .await
                    {
                        Err(e) if !kernel::is_not_found(&e) => Err(DataplaneError::Netlink {
                            what: format!("deleting route {} (metric {})", r.dst, r.metric),
                            source: e,
                        }),
                        _ => Ok(()),
                    }
                }
                RouteOp::Add(route) | RouteOp::Replace(route) => {
                    match message(route, &self.links) {
                        Ok(m) => {
                            let add = self.handle.route().add(m);
                            let add = if matches!(op, RouteOp::Replace(_)) {
                                add.replace()
                            } else {
                                add
                            };
                            add.execute().await.map_err(DataplaneError::netlink(format!(
                                "installing route {}",
                                describe(route)
                            )))
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match (result, &op) {
                (Err(e), _) => {
                    report.failed.push(e);
                    self.links_fresh = false;
                }
                (Ok(()), RouteOp::Add(_)) => report.added += 1,
                (Ok(()), RouteOp::Replace(_)) => report.replaced += 1,
                (Ok(()), RouteOp::Delete(_)) => report.deleted += 1,
            }
        }
        self.pending = report.pending.clone();
        let devices: BTreeSet<&str> = desired.routes.iter().filter_map(device).collect();
        self.links.retain(|name, _| devices.contains(name.as_str()));
        Ok(report)
    }

    /// Reads again, by name, the devices of desired routes that are not in
    /// place (`ours`: the table as read) and those not known up.
    async fn refresh_devices(
        &mut self,
        desired: &Desired,
        ours: &[KernelRoute],
    ) -> Result<(), DataplaneError> {
        let in_place: BTreeSet<(&IpNet, &RouteTarget)> = ours
            .iter()
            .filter_map(|r| Some((&r.dst, r.target.as_ref()?)))
            .collect();
        let ask: BTreeSet<&str> = desired
            .routes
            .iter()
            .filter_map(|r| {
                let dev = device(r)?;
                let up = self.links.get(dev).is_some_and(|l| l.up);
                (!up || !in_place.contains(&(&r.dst, &r.target))).then_some(dev)
            })
            .collect();
        if ask.is_empty() {
            return Ok(());
        }
        let mut found = kernel::links_named(&self.handle, ask.iter().copied()).await?;
        for name in ask {
            match found.remove(name) {
                Some(link) => self.links.insert(name.to_owned(), link),
                None => self.links.remove(name),
            };
        }
        Ok(())
    }
}

/// The device a route goes out of, if any.
fn device(route: &Route) -> Option<&str> {
    match &route.target {
        RouteTarget::Interface(dev) | RouteTarget::Via { dev, .. } => Some(dev),
        RouteTarget::Blackhole => None,
    }
}

#[async_trait::async_trait]
impl Driver for RoutesDriver {
    fn name(&self) -> &'static str {
        "routes"
    }
    fn stage(&self) -> crate::state::Stage {
        crate::state::Stage::Kernel
    }

    async fn apply(&mut self, desired: &Desired) -> Result<(), DriverError> {
        let report = self.reconcile(desired).await?;
        tracing::debug!(
            added = report.added,
            replaced = report.replaced,
            deleted = report.deleted,
            pending = report.pending.len(),
            "routes applied"
        );
        DataplaneError::from_all(report.failed).map_err(Into::into)
    }

    fn pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, target: RouteTarget) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            target,
        }
    }

    fn dev(name: &str) -> RouteTarget {
        RouteTarget::Interface(name.to_owned())
    }

    fn kernel(r: &Route) -> KernelRoute {
        KernelRoute {
            dst: r.dst,
            target: Some(r.target.clone()),
            metric: default_metric(&r.dst),
        }
    }

    #[test]
    fn routes_already_in_place_need_nothing() {
        let desired = BTreeSet::from([
            route("10.0.0.5/32", dev("cali1")),
            route("10.0.1.0/26", RouteTarget::Blackhole),
            route("fd00::5/128", dev("cali1")),
        ]);
        let ours: Vec<_> = desired.iter().map(kernel).collect();
        let p = plan(&ours, &BTreeMap::new(), &desired, |_| true);
        assert_eq!(p, RoutePlan::default());
    }

    #[test]
    fn stale_routes_are_deleted_changed_ones_replaced_and_new_ones_added() {
        let stale = route("10.9.0.0/24", RouteTarget::Blackhole);
        let old = route("10.0.0.5/32", dev("cali1"));
        let new = route("10.0.0.5/32", dev("cali2"));
        let fresh = route("10.0.2.0/26", RouteTarget::Blackhole);
        let desired = BTreeSet::from([new.clone(), fresh.clone()]);
        let p = plan(
            &[kernel(&stale), kernel(&old)],
            &BTreeMap::new(),
            &desired,
            |_| true,
        );
        assert_eq!(
            p.ops,
            vec![
                RouteOp::Delete(0),
                RouteOp::Replace(new),
                RouteOp::Add(fresh)
            ]
        );
    }

    #[test]
    fn a_route_through_a_missing_device_is_pending_and_ours_to_it_is_removed() {
        let missing = route("10.0.0.6/32", dev("cali9"));
        let desired = BTreeSet::from([missing.clone()]);
        let p = plan(&[kernel(&missing)], &BTreeMap::new(), &desired, |d| {
            d != "cali9"
        });
        assert_eq!(p.ops, vec![RouteOp::Delete(0)]);
        assert_eq!(p.skipped, vec![(missing, Skipped::Pending)]);
    }

    #[test]
    fn a_destination_held_by_another_protocol_is_a_conflict_not_a_replacement() {
        let r = route("10.0.3.0/26", RouteTarget::Blackhole);
        let desired = BTreeSet::from([r.clone()]);
        let foreign = BTreeMap::from([(r.dst, 200)]);
        let p = plan(&[], &foreign, &desired, |_| true);
        assert!(p.ops.is_empty());
        assert_eq!(p.skipped, vec![(r, Skipped::Conflict { protocol: 200 })]);
    }

    #[test]
    fn duplicates_other_metrics_and_unreadable_routes_of_ours_go() {
        let r = route("10.0.0.5/32", dev("cali1"));
        let desired = BTreeSet::from([r.clone()]);
        let mut other_metric = kernel(&r);
        other_metric.metric = 100;
        let unreadable = KernelRoute {
            target: None,
            ..kernel(&r)
        };
        let p = plan(
            &[unreadable, kernel(&r), other_metric],
            &BTreeMap::new(),
            &desired,
            |_| true,
        );
        assert_eq!(p.ops, vec![RouteOp::Delete(0), RouteOp::Delete(2)]);
    }

    #[test]
    fn a_second_route_to_one_destination_and_a_cross_family_gateway_are_invalid() {
        // Interface sorts before Blackhole: the first of the two wins.
        let first = route("10.0.0.0/26", dev("cali1"));
        let second = route("10.0.0.0/26", RouteTarget::Blackhole);
        let cross = route(
            "fd00:1::/64",
            RouteTarget::Via {
                gateway: "10.1.1.1".parse().unwrap(),
                dev: "vxlan.calico".into(),
            },
        );
        let desired = BTreeSet::from([first.clone(), second.clone(), cross.clone()]);
        let p = plan(&[], &BTreeMap::new(), &desired, |_| true);
        assert_eq!(p.ops, vec![RouteOp::Add(first)]);
        assert_eq!(p.skipped.len(), 2);
        assert!(
            p.skipped
                .iter()
                .all(|(_, why)| matches!(why, Skipped::Invalid(_)))
        );
    }
}
