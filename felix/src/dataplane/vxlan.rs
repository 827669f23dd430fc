//! The `vxlan.calico` device ([`VXLAN_DEVICE`]) from [`Desired::vxlan`]:
//! created with its VNI, UDP port, local underlay address, no learning, its
//! MTU and MAC, the host's VTEP as its only IPv4 address (`/32`), up; and
//! per remote host a permanent ARP entry `vtep → mac` and an FDB entry
//! `mac → underlay`, so the routes through it (from the routes driver,
//! `via VTEP dev vxlan.calico onlink`) need no learning or flooding. Stale
//! entries are removed; `None` removes the device.
//!
//! A changed MTU, MAC, local address or learning flag is changed in place;
//! the kernel cannot change the VNI or port of a device, so a change of
//! either recreates it ([`plan_link`]). The other decisions are pure too
//! ([`plan_addrs`], and [`keyed::diff`] for neighbours
//! and FDB).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::{LinkUnspec, LinkVxlan};

use super::Namespace;
use super::kernel::{self, DataplaneError};
use super::keyed;
use crate::state::{Desired, Driver, DriverError, VXLAN_DEVICE, VxlanDesired, VxlanRemote};

/// A MAC address.
pub type Mac = [u8; 6];

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The device as the kernel has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanLink {
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<IpAddr>,
    pub learning: bool,
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    pub up: bool,
}

/// Reads a link message as a VXLAN device; `None` for another kind.
pub fn read_link(message: &LinkMessage) -> Option<VxlanLink> {
    let mut link = VxlanLink {
        up: message.header.flags.contains(LinkFlags::Up),
        // The kernel's default, reported only when set.
        learning: false,
        ..VxlanLink::default()
    };
    let mut is_vxlan = false;
    for a in &message.attributes {
        match a {
            LinkAttribute::Mtu(m) => link.mtu = Some(*m),
            LinkAttribute::Address(a) => link.mac = a.as_slice().try_into().ok(),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Vxlan) => is_vxlan = true,
                        LinkInfo::Data(InfoData::Vxlan(data)) => {
                            for d in data {
                                match d {
                                    InfoVxlan::Id(v) => link.vni = Some(*v),
                                    InfoVxlan::Port(p) => link.port = Some(*p),
                                    InfoVxlan::Local(a) => link.local = Some(IpAddr::V4(*a)),
                                    InfoVxlan::Local6(a) => link.local = Some(IpAddr::V6(*a)),
                                    InfoVxlan::Learning(l) => link.learning = *l,
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    is_vxlan.then_some(link)
}

/// What to change on the device, in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChanges {
    /// Local address or learning flag (a VXLAN `changelink`).
    pub vxlan: bool,
    pub mtu: bool,
    pub mac: bool,
    pub up: bool,
}

/// What to do with the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkPlan {
    Create,
    /// Delete and create again, for this reason.
    Recreate(&'static str),
    Update(LinkChanges),
}

/// `current` is `None` when no link has the device's name, `Some(None)`
/// when one of another kind has it.
pub fn plan_link(current: Option<Option<&VxlanLink>>, desired: &VxlanDesired) -> LinkPlan {
    let link = match current {
        None => return LinkPlan::Create,
        Some(None) => return LinkPlan::Recreate("a link of another kind has its name"),
        Some(Some(link)) => link,
    };
    if link.vni != Some(desired.vni) {
        return LinkPlan::Recreate("the VNI changed");
    }
    if link.port != Some(desired.port) {
        return LinkPlan::Recreate("the UDP port changed");
    }
    if link
        .local
        .is_some_and(|l| l.is_ipv4() != desired.underlay.is_ipv4())
    {
        return LinkPlan::Recreate("the underlay address family changed");
    }
    LinkPlan::Update(LinkChanges {
        vxlan: link.local != Some(desired.underlay) || link.learning,
        mtu: link.mtu != Some(desired.mtu),
        mac: link.mac != Some(desired.mac),
        up: !link.up,
    })
}

/// The VTEP address to add (if missing) and the device's other IPv4
/// addresses, to delete.
pub fn plan_addrs(current: &[Ipv4Net], vtep: Ipv4Addr) -> (Option<Ipv4Net>, Vec<Ipv4Net>) {
    let want = Ipv4Net::from(vtep);
    let add = (!current.contains(&want)).then_some(want);
    (
        add,
        current.iter().filter(|a| **a != want).copied().collect(),
    )
}

/// An ARP entry: its MAC (if resolved) and whether it is permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub mac: Option<Mac>,
    pub permanent: bool,
}

/// The ARP entries the remotes need: each VTEP at its MAC, permanent.
pub fn desired_neighbours(remotes: &[VxlanRemote]) -> BTreeMap<Ipv4Addr, Neighbour> {
    let mut out = BTreeMap::new();
    for r in remotes {
        out.entry(r.vtep).or_insert(Neighbour {
            mac: Some(r.mac),
            permanent: true,
        });
    }
    out
}

/// The FDB entries the remotes need: each VTEP's MAC to its underlay.
pub fn desired_fdb(remotes: &[VxlanRemote]) -> BTreeMap<Mac, IpAddr> {
    let mut out = BTreeMap::new();
    for r in remotes {
        out.entry(r.mac).or_insert(r.underlay);
    }
    out
}

/// What one apply did.
#[derive(Debug, Default)]
pub struct VxlanReport {
    /// `None` when the device was left as it was.
    pub link: Option<String>,
    /// Addresses, ARP and FDB entries added, replaced or deleted.
    pub entries: usize,
    pub failed: Vec<DataplaneError>,
}

impl VxlanReport {
    pub fn changes(&self) -> usize {
        self.entries + usize::from(self.link.is_some())
    }
}

/// The VXLAN driver for one namespace.
#[derive(Debug)]
pub struct VxlanDriver {
    handle: rtnetlink::Handle,
}

impl VxlanDriver {
    /// Opens a netlink connection in `netns` (on the current tokio
    /// runtime). Nothing is read or changed until the first apply.
    pub async fn open(netns: Namespace) -> Result<Self, DataplaneError> {
        Ok(VxlanDriver {
            handle: netns.rtnetlink().await?,
        })
    }

    /// Makes the device and its entries match `desired.vxlan`. Entries are
    /// applied one by one, failures reported; `Err` when the device itself
    /// cannot be read, made or changed.
    pub async fn reconcile(&mut self, desired: &Desired) -> Result<VxlanReport, DataplaneError> {
        let mut report = VxlanReport::default();
        let existing = kernel::link(&self.handle, VXLAN_DEVICE).await?;
        let existing = existing.as_ref();
        let Some(want) = &desired.vxlan else {
            if let Some(link) = existing {
                self.delete(link.index).await?;
                report.link = Some("deleted".to_owned());
            }
            return Ok(report);
        };
        let current = existing.map(|l| read_link(&l.message));
        match plan_link(current.as_ref().map(Option::as_ref), want) {
            LinkPlan::Create => {
                self.create(want).await?;
                report.link = Some("created".to_owned());
            }
            LinkPlan::Recreate(why) => {
                if let Some(link) = existing {
                    self.delete(link.index).await?;
                }
                self.create(want).await?;
                report.link = Some(format!("recreated: {why}"));
            }
            LinkPlan::Update(changes) => {
                let index = existing.map(|l| l.index).unwrap_or_default();
                if changes != LinkChanges::default() {
                    self.update(index, want, &changes).await?;
                    report.link = Some(format!("updated: {changes:?}"));
                }
            }
        }
        let index = match kernel::link(&self.handle, VXLAN_DEVICE).await? {
            Some(l) => l.index,
            None => {
                return Err(DataplaneError::Device {
                    device: VXLAN_DEVICE.to_owned(),
                    reason: "the device vanished right after it was made".to_owned(),
                });
            }
        };
        self.sync_addrs(index, want.vtep, &mut report).await?;
        self.sync_neighbours(index, &want.remotes, &mut report)
            .await?;
        self.sync_fdb(index, &want.remotes, &mut report).await?;
        Ok(report)
    }

    async fn delete(&self, index: u32) -> Result<(), DataplaneError> {
        match self.handle.link().del(index).execute().await {
            Err(e) if !kernel::is_not_found(&e) => Err(DataplaneError::Netlink {
                what: format!("deleting {VXLAN_DEVICE}"),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn with_local(
        b: rtnetlink::LinkMessageBuilder<LinkVxlan>,
        underlay: IpAddr,
    ) -> rtnetlink::LinkMessageBuilder<LinkVxlan> {
        match underlay {
            IpAddr::V4(a) => b.local(a),
            IpAddr::V6(a) => b.local6(a),
        }
    }

    async fn create(&self, want: &VxlanDesired) -> Result<(), DataplaneError> {
        let b = LinkVxlan::new(VXLAN_DEVICE, want.vni)
            .port(want.port)
            .learning(false);
        let message = Self::with_local(b, want.underlay)
            .mtu(want.mtu)
            .address(want.mac.to_vec())
            .up()
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(DataplaneError::netlink(format!(
                "creating {VXLAN_DEVICE} (VNI {}, port {}, local {})",
                want.vni, want.port, want.underlay
            )))
    }

    async fn update(
        &self,
        index: u32,
        want: &VxlanDesired,
        changes: &LinkChanges,
    ) -> Result<(), DataplaneError> {
        if changes.vxlan {
            let b = LinkVxlan::new(VXLAN_DEVICE, want.vni).learning(false);
            let message = Self::with_local(b, want.underlay).index(index).build();
            self.handle
                .link()
                .change(message)
                .execute()
                .await
                .map_err(DataplaneError::netlink(format!(
                    "setting {VXLAN_DEVICE}'s local address to {} without learning",
                    want.underlay
                )))?;
        }
        if changes.mtu || changes.mac || changes.up {
            let message = LinkUnspec::new_with_index(index)
                .mtu(want.mtu)
                .address(want.mac.to_vec())
                .up()
                .build();
            self.handle
                .link()
                .set(message)
                .execute()
                .await
                .map_err(DataplaneError::netlink(format!(
                    "setting {VXLAN_DEVICE}'s MTU {}, MAC {} and up",
                    want.mtu,
                    format_mac(&want.mac)
                )))?;
        }
        Ok(())
    }

    async fn sync_addrs(
        &self,
        index: u32,
        vtep: Ipv4Addr,
        report: &mut VxlanReport,
    ) -> Result<(), DataplaneError> {
        let mut dump = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut current: Vec<(Ipv4Net, AddressMessage)> = Vec::new();
        while let Some(m) = dump
            .try_next()
            .await
            .map_err(DataplaneError::netlink(format!(
                "reading {VXLAN_DEVICE}'s addresses"
            )))?
        {
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(v4)) => Some(*v4),
                _ => None,
            });
            if let Some(net) = addr.and_then(|a| Ipv4Net::new(a, m.header.prefix_len).ok()) {
                current.push((net, m));
            }
        }
        let nets: Vec<Ipv4Net> = current.iter().map(|(n, _)| *n).collect();
        let (add, delete) = plan_addrs(&nets, vtep);
        for (net, m) in current.into_iter().filter(|(n, _)| delete.contains(n)) {
            let result = self.handle.address().del(m).execute().await;
            record(report, result, || {
                format!("deleting {net} from {VXLAN_DEVICE}")
            });
        }
        if let Some(net) = add {
            let result = self
                .handle
                .address()
                .add(index, IpAddr::V4(net.addr()), net.prefix_len())
                .execute()
                .await;
            record(report, result, || format!("adding {net} to {VXLAN_DEVICE}"));
        }
        Ok(())
    }

    /// The device's entries of `family` (raw, for deleting them).
    async fn dump_neighbours(
        &self,
        index: u32,
        family: AddressFamily,
    ) -> Result<Vec<NeighbourMessage>, DataplaneError> {
        let mut dump = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute();
        let mut out = Vec::new();
        while let Some(m) = dump
            .try_next()
            .await
            .map_err(DataplaneError::netlink(format!(
                "reading {VXLAN_DEVICE}'s {family:?} neighbours"
            )))?
        {
            if m.header.ifindex == index {
                out.push(m);
            }
        }
        Ok(out)
    }

    async fn sync_neighbours(
        &self,
        index: u32,
        remotes: &[VxlanRemote],
        report: &mut VxlanReport,
    ) -> Result<(), DataplaneError> {
        let desired = desired_neighbours(remotes);
        let raw: Vec<(Ipv4Addr, Neighbour, NeighbourMessage)> = self
            .dump_neighbours(index, AddressFamily::Inet)
            .await?
            .into_iter()
            .filter_map(|m| {
                let (ip, mac) = neighbour_fields(&m);
                let IpAddr::V4(ip) = ip? else { return None };
                let n = Neighbour {
                    mac: mac.and_then(|m| m.try_into().ok()),
                    permanent: m.header.state == NeighbourState::Permanent,
                };
                // Entries the kernel made on its own for other addresses
                // are its business.
                (n.permanent || desired.contains_key(&ip)).then_some((ip, n, m))
            })
            .collect();
        let current: Vec<(Ipv4Addr, Neighbour)> = raw.iter().map(|(ip, n, _)| (*ip, *n)).collect();
        let plan = keyed::diff(&current, &desired);
        for i in plan.delete {
            let (ip, _, m) = &raw[i];
            let result = self.handle.neighbours().del(m.clone()).execute().await;
            record(report, result, || {
                format!("deleting ARP entry {ip} on {VXLAN_DEVICE}")
            });
        }
        for (ip, n) in plan.set {
            let mac = n.mac.unwrap_or_default();
            let result = self
                .handle
                .neighbours()
                .add(index, IpAddr::V4(ip))
                .link_layer_address(&mac)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await;
            record(report, result, || {
                format!(
                    "setting ARP entry {ip} → {} on {VXLAN_DEVICE}",
                    format_mac(&mac)
                )
            });
        }
        Ok(())
    }

    async fn sync_fdb(
        &self,
        index: u32,
        remotes: &[VxlanRemote],
        report: &mut VxlanReport,
    ) -> Result<(), DataplaneError> {
        let desired = desired_fdb(remotes);
        // Entries without a destination are the device's own unicast and
        // multicast addresses, which the kernel lists here too.
        let raw: Vec<(Mac, IpAddr, NeighbourMessage)> = self
            .dump_neighbours(index, AddressFamily::Bridge)
            .await?
            .into_iter()
            .filter_map(|m| {
                let (dst, mac) = neighbour_fields(&m);
                Some((mac?.try_into().ok()?, dst?, m))
            })
            .collect();
        let current: Vec<(Mac, IpAddr)> = raw.iter().map(|(m, d, _)| (*m, *d)).collect();
        let plan = keyed::diff(&current, &desired);
        for i in plan.delete {
            let (mac, _, m) = &raw[i];
            let result = self.handle.neighbours().del(m.clone()).execute().await;
            record(report, result, || {
                format!("deleting FDB entry {} on {VXLAN_DEVICE}", format_mac(mac))
            });
        }
        for (mac, dst) in plan.set {
            let result = self
                .handle
                .neighbours()
                .add_bridge(index, &mac)
                .destination(dst)
                .flags(NeighbourFlags::Own)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await;
            record(report, result, || {
                format!(
                    "setting FDB entry {} → {dst} on {VXLAN_DEVICE}",
                    format_mac(&mac)
                )
            });
        }
        Ok(())
    }
}

/// A neighbour message's destination and link-layer address.
fn neighbour_fields(m: &NeighbourMessage) -> (Option<IpAddr>, Option<Vec<u8>>) {
    let mut dst = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                dst = Some(IpAddr::V4(*v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                dst = Some(IpAddr::V6(*v6))
            }
            // FDB entries (family bridge) carry their destination as bytes.
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                dst = match b.len() {
                    4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                    _ => None,
                }
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac = Some(l.clone()),
            _ => {}
        }
    }
    (dst, mac)
}

/// Counts a change or records its failure (a deletion of something already
/// gone counts as done).
fn record(
    report: &mut VxlanReport,
    result: Result<(), rtnetlink::Error>,
    what: impl FnOnce() -> String,
) {
    match result {
        Ok(()) => report.entries += 1,
        Err(e) if kernel::is_not_found(&e) => report.entries += 1,
        Err(source) => report.failed.push(DataplaneError::Netlink {
            what: what(),
            source,
        }),
    }
}

#[async_trait::async_trait]
impl Driver for VxlanDriver {
    fn name(&self) -> &'static str {
        "vxlan"
    }
    fn stage(&self) -> crate::state::Stage {
        crate::state::Stage::Kernel
    }

    async fn apply(&mut self, desired: &Desired) -> Result<(), DriverError> {
        let report = self.reconcile(desired).await?;
        if let Some(link) = &report.link {
            tracing::info!(device = VXLAN_DEVICE, "{link}");
        }
        DataplaneError::from_all(report.failed).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> VxlanDesired {
        VxlanDesired {
            vni: 4096,
            port: 4789,
            mtu: 1450,
            vtep: "10.65.1.0".parse().unwrap(),
            mac: [0x66, 0, 0, 0, 0, 1],
            underlay: "192.0.2.1".parse().unwrap(),
            remotes: Vec::new(),
        }
    }

    fn as_is(d: &VxlanDesired) -> VxlanLink {
        VxlanLink {
            vni: Some(d.vni),
            port: Some(d.port),
            local: Some(d.underlay),
            learning: false,
            mtu: Some(d.mtu),
            mac: Some(d.mac),
            up: true,
        }
    }

    #[test]
    fn a_device_as_desired_needs_no_change() {
        let d = desired();
        assert_eq!(
            plan_link(Some(Some(&as_is(&d))), &d),
            LinkPlan::Update(LinkChanges::default())
        );
        assert_eq!(plan_link(None, &d), LinkPlan::Create);
    }

    #[test]
    fn the_vni_and_port_need_a_new_device_but_mtu_mac_and_local_change_in_place() {
        let d = desired();
        let mut other_vni = as_is(&d);
        other_vni.vni = Some(1);
        assert!(matches!(
            plan_link(Some(Some(&other_vni)), &d),
            LinkPlan::Recreate(_)
        ));
        let mut other_port = as_is(&d);
        other_port.port = Some(8472);
        assert!(matches!(
            plan_link(Some(Some(&other_port)), &d),
            LinkPlan::Recreate(_)
        ));
        assert!(matches!(plan_link(Some(None), &d), LinkPlan::Recreate(_)));
        let mut drifted = as_is(&d);
        drifted.mtu = Some(1500);
        drifted.mac = Some([2, 0, 0, 0, 0, 2]);
        drifted.local = Some("192.0.2.9".parse().unwrap());
        drifted.up = false;
        assert_eq!(
            plan_link(Some(Some(&drifted)), &d),
            LinkPlan::Update(LinkChanges {
                vxlan: true,
                mtu: true,
                mac: true,
                up: true
            })
        );
    }

    #[test]
    fn the_vtep_is_the_only_address() {
        let vtep: Ipv4Addr = "10.65.1.0".parse().unwrap();
        let stray: Ipv4Net = "10.1.1.1/24".parse().unwrap();
        assert_eq!(
            plan_addrs(&[stray], vtep),
            (Some(Ipv4Net::from(vtep)), vec![stray])
        );
        assert_eq!(plan_addrs(&[Ipv4Net::from(vtep)], vtep), (None, vec![]));
    }

    #[test]
    fn each_remote_gets_a_permanent_arp_entry_and_an_fdb_entry() {
        let r = VxlanRemote {
            node: "b".into(),
            vtep: "10.65.2.0".parse().unwrap(),
            mac: [0x66, 0, 0, 0, 0, 2],
            underlay: "192.0.2.2".parse().unwrap(),
        };
        let n = desired_neighbours(std::slice::from_ref(&r));
        assert_eq!(
            n[&r.vtep],
            Neighbour {
                mac: Some(r.mac),
                permanent: true
            }
        );
        assert_eq!(desired_fdb(std::slice::from_ref(&r))[&r.mac], r.underlay);
    }
}
