//! The kernel side (thin I/O, rtnetlink): the workload's veth pair, the
//! container side's addresses, routes and neighbour, their removal, and
//! reading them back for CHECK.
//!
//! Work inside the container's namespace runs on a thread of its own that
//! entered the namespace (`setns`) before opening its netlink socket, so the
//! socket, and all it does, belongs to that namespace; the calling thread
//! never changes namespace. Deleting what is not there succeeds.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use ipnet::IpNet;
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteScope,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::plan::{
    ContainerObserved, ContainerPlan, HOST_MAC, HostObserved, PlannedRoute, mac_text,
};

/// A kernel operation that failed, naming what it was for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action}: {message}")]
pub struct NetlinkError {
    pub action: String,
    pub message: String,
}

fn fail(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let action = action.into();
    move |e| NetlinkError {
        action,
        message: e.to_string(),
    }
}

type Result<T, E = NetlinkError> = std::result::Result<T, E>;

/// The veth to create.
#[derive(Debug, Clone, Copy)]
pub struct VethRequest<'a> {
    pub host: &'a str,
    pub container: &'a str,
    pub netns: &'a Path,
    pub mtu: Option<u32>,
}

/// Runs `make(handle)` on a new thread with a netlink connection opened in
/// `netns` (the caller's namespace when `None`).
fn in_netns<T, F, Fut>(netns: Option<&Path>, make: F) -> Result<T>
where
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T>>,
    T: Send,
{
    let file = netns
        .map(|p| {
            File::open(p).map_err(|e| NetlinkError {
                action: format!("opening network namespace {}", p.display()),
                message: e.to_string(),
            })
        })
        .transpose()?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                if let (Some(file), Some(path)) = (&file, netns) {
                    setns(file, CloneFlags::CLONE_NEWNET).map_err(|e| NetlinkError {
                        action: format!("entering network namespace {}", path.display()),
                        message: e.to_string(),
                    })?;
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| NetlinkError {
                        action: "starting a runtime for netlink".into(),
                        message: e.to_string(),
                    })?;
                runtime.block_on(async move {
                    let (connection, handle, _) =
                        rtnetlink::new_connection().map_err(|e| NetlinkError {
                            action: "opening a netlink socket".into(),
                            message: e.to_string(),
                        })?;
                    // The connection's task lives as long as `make` needs it.
                    let _connection = task::Task::spawn(connection);
                    make(handle).await
                })
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.is_some_and(|c| c.get() == -errno))
}

/// The link called `name`, if there is one.
async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    match handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(e) if is_errno(&e, Errno::ENODEV as i32) => Ok(None),
        Err(e) => Err(fail(format!("looking up link {name}"))(e)),
    }
}

fn link_mac(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(mac_text(mac)),
            _ => None,
        })
        .unwrap_or_default()
}

/// What [`create_workload_veth`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedVeth {
    /// The container side's MAC.
    pub mac: String,
    /// A stale link called `req.host` was there and has been deleted.
    pub replaced_stale: bool,
}

/// Creates the veth pair, host side `req.host` (MAC [`HOST_MAC`], up) in
/// this namespace, container side `req.container` in `req.netns`, and
/// configures the container side as `plan` says. A link already called
/// `req.host` here is stale (the caller has checked that no endpoint names
/// it) and is deleted first, on the same netlink connection. On failure
/// nothing is left: the pair is deleted again.
pub fn create_workload_veth(req: VethRequest<'_>, plan: &ContainerPlan) -> Result<CreatedVeth> {
    let netns = File::open(req.netns).map_err(|e| NetlinkError {
        action: format!("opening network namespace {}", req.netns.display()),
        message: e.to_string(),
    })?;
    let replaced_stale = in_netns(None, |handle| async move {
        let replaced_stale = delete_by_name(&handle, req.host).await?;
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(req.container)
            .setns_by_fd(netns.as_raw_fd());
        let mut host = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(req.host)
            .address(HOST_MAC.to_vec());
        if let Some(mtu) = req.mtu {
            peer = peer.mtu(mtu);
            host = host.mtu(mtu);
        }
        let message = host
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .up()
            .build();
        handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(fail(format!(
                "creating veth {} with peer {} in {}",
                req.host,
                req.container,
                req.netns.display()
            )))?;
        Ok(replaced_stale)
    })?;
    let configured = in_netns(Some(req.netns), |handle| {
        configure_container(handle, req.container, plan)
    });
    if configured.is_err()
        && let Err(e) = delete_link(None, req.host)
    {
        tracing::error!(veth = req.host, error = %e, "rolling back the veth failed");
    }
    configured.map(|mac| CreatedVeth {
        mac,
        replaced_stale,
    })
}

async fn configure_container(handle: Handle, ifname: &str, plan: &ContainerPlan) -> Result<String> {
    let link = link_by_name(&handle, ifname)
        .await?
        .ok_or_else(|| NetlinkError {
            action: format!("configuring {ifname}"),
            message: "the container side of the veth is missing".into(),
        })?;
    let index = link.header.index;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(fail(format!("setting {ifname} up")))?;
    for addr in &plan.addresses {
        let mut req = handle.address().add(index, addr.addr(), addr.prefix_len());
        if addr.addr().is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .map_err(fail(format!("adding address {addr} to {ifname}")))?;
    }
    for ip in &plan.neighbours {
        handle
            .neighbours()
            .add(index, *ip)
            .link_layer_address(&HOST_MAC)
            .state(NeighbourState::Permanent)
            .execute()
            .await
            .map_err(fail(format!("adding neighbour {ip} on {ifname}")))?;
    }
    for route in &plan.routes {
        handle
            .route()
            .add(route_message(index, route))
            .execute()
            .await
            .map_err(fail(format!("adding route {} on {ifname}", route.dst)))?;
    }
    Ok(link_mac(&link))
}

fn route_message(index: u32, route: &PlannedRoute) -> RouteMessage {
    match (route.dst, route.gateway) {
        (IpNet::V4(dst), gateway) => {
            let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dst.addr(), dst.prefix_len())
                .output_interface(index);
            match gateway {
                Some(IpAddr::V4(gw)) => b = b.gateway(gw),
                _ => b = b.scope(RouteScope::Link),
            }
            if route.onlink {
                b = b.onlink();
            }
            b.build()
        }
        (IpNet::V6(dst), gateway) => {
            let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(dst.addr(), dst.prefix_len())
                .output_interface(index);
            match gateway {
                Some(IpAddr::V6(gw)) => b = b.gateway(gw),
                _ => b = b.scope(RouteScope::Link),
            }
            if route.onlink {
                b = b.onlink();
            }
            b.build()
        }
    }
}

/// Deletes link `name` in `netns` (here when `None`); `Ok(false)` if it or
/// the namespace is not there.
pub fn delete_link(netns: Option<&Path>, name: &str) -> Result<bool> {
    if netns.is_some_and(|p| !p.exists()) {
        return Ok(false);
    }
    in_netns(netns, |handle| async move {
        delete_by_name(&handle, name).await
    })
}

/// Deletes link `name` on `handle`'s namespace; `Ok(false)` if it is not there.
async fn delete_by_name(handle: &Handle, name: &str) -> Result<bool> {
    let Some(link) = link_by_name(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(link.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if is_errno(&e, Errno::ENODEV as i32) => Ok(false),
        Err(e) => Err(fail(format!("deleting link {name}"))(e)),
    }
}

/// The host side of the veth, if present.
pub fn observe_host(name: &str) -> Result<Option<HostObserved>> {
    in_netns(None, |handle| async move {
        Ok(link_by_name(&handle, name).await?.map(|link| HostObserved {
            up: link.header.flags.contains(LinkFlags::Up),
            mac: link_mac(&link),
        }))
    })
}

/// The container side of the veth in `netns`, if present.
pub fn observe_container(netns: &Path, ifname: &str) -> Result<Option<ContainerObserved>> {
    if !netns.exists() {
        return Ok(None);
    }
    in_netns(Some(netns), |handle| async move {
        let Some(link) = link_by_name(&handle, ifname).await? else {
            return Ok(None);
        };
        let index = link.header.index;
        let mut found = ContainerObserved {
            up: link.header.flags.contains(LinkFlags::Up),
            mac: link_mac(&link),
            ..ContainerObserved::default()
        };
        let mut addrs = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = addrs.try_next().await.map_err(fail("listing addresses"))? {
            let ip = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(net) = ip.and_then(|ip| IpNet::new(ip, msg.header.prefix_len).ok()) {
                found.addresses.push(net);
            }
        }
        for dump in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut routes = handle.route().get(dump).execute();
            while let Some(msg) = routes.try_next().await.map_err(fail("listing routes"))? {
                if let Some(route) = observed_route(&msg, index) {
                    found.routes.push(route);
                }
            }
        }
        let mut neighbours = handle.neighbours().get().execute();
        while let Some(msg) = neighbours
            .try_next()
            .await
            .map_err(fail("listing neighbours"))?
        {
            if msg.header.ifindex != index || msg.header.state != NeighbourState::Permanent {
                continue;
            }
            let mut ip = None;
            let mut mac = String::new();
            for a in &msg.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                        ip = Some(IpAddr::V4(*v4))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                        ip = Some(IpAddr::V6(*v6))
                    }
                    NeighbourAttribute::LinkLayerAddress(l) => mac = mac_text(l),
                    _ => {}
                }
            }
            if let Some(ip) = ip {
                found.neighbours.push((ip, mac));
            }
        }
        Ok(Some(found))
    })
}

/// A main-table route out of `index`, in plan terms.
fn observed_route(msg: &RouteMessage, index: u32) -> Option<PlannedRoute> {
    if msg.header.table != RouteHeader::RT_TABLE_MAIN {
        return None;
    }
    let mut oif = None;
    let mut dst = None;
    let mut gateway = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Destination(RouteAddress::Inet(v4)) => dst = Some(IpAddr::V4(*v4)),
            RouteAttribute::Destination(RouteAddress::Inet6(v6)) => dst = Some(IpAddr::V6(*v6)),
            RouteAttribute::Gateway(RouteAddress::Inet(v4)) => gateway = Some(IpAddr::V4(*v4)),
            RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => gateway = Some(IpAddr::V6(*v6)),
            _ => {}
        }
    }
    if oif != Some(index) {
        return None;
    }
    let len = msg.header.destination_prefix_length;
    let dst = match (dst, msg.header.address_family) {
        (Some(ip), _) => IpNet::new(ip, len).ok()?,
        (None, rtnetlink::packet_route::AddressFamily::Inet) => {
            IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0).ok()?
        }
        (None, rtnetlink::packet_route::AddressFamily::Inet6) => {
            IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0).ok()?
        }
        _ => return None,
    };
    Some(PlannedRoute {
        dst,
        gateway,
        onlink: msg.header.flags.contains(RouteFlags::Onlink),
    })
}
