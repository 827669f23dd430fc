//! Workload bandwidth limits (`qosControls`) with tc, as Calico and the CNI
//! bandwidth plugin shape them, over rtnetlink:
//!
//! ```text
//! to the workload (ingress):   host ─▶ cali…  root qdisc tbf (rate, burst, peakrate, minburst)
//! from the workload (egress):  cali… ingress qdisc ─u32 match all, mirred redirect─▶ bwc… (ifb)
//!                                                                     root qdisc tbf
//! ```
//!
//! The ifb of `cali0123456789a` is `bwc0123456789a`. Each apply reads the
//! kernel's qdiscs and links; [`plan`] (pure) says what to set and what to
//! clear: a desired limit not as last set (or gone from the kernel) is set
//! again, a `tbf` root on a `cali…` interface or a `bwc…` ifb that nothing
//! wants is removed. Interfaces that do not exist yet are pending.
//!
//! A TBF is written with its rate as bytes per second (64-bit), its burst
//! in bytes, a queue of 25 ms at the rate plus the burst (the CNI bandwidth
//! plugin's latency), link layer Ethernet (so no rate table is needed),
//! and, with a peak rate, the minimum burst (the interface's MTU when 0).

use std::collections::{BTreeMap, BTreeSet};

use api::resources::qos::Bandwidth;
use futures::TryStreamExt;
use rtnetlink::packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute};
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use tokio::time::Instant;

use super::kernel::{self, DataplaneError, Link};
use super::{CHECK_ALL_EVERY, Namespace};
use crate::state::{Desired, Driver, DriverError, Shaping};

/// The prefix of the ifb devices this driver makes.
pub const IFB_PREFIX: &str = "bwc";
/// The prefix of the workload interfaces it shapes.
const WORKLOAD_PREFIX: &str = "cali";
/// Queue length, as latency at the rate (the CNI bandwidth plugin's 25 ms).
const LATENCY_MS: u64 = 25;

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_PRATE64: u16 = 5;
const TCA_TBF_BURST: u16 = 6;
const TCA_TBF_PBURST: u16 = 7;
const TC_LINKLAYER_ETHERNET: u8 = 1;
const ETH_P_ALL: u16 = 0x0003;

/// The ifb that carries `iface`'s egress shaping.
pub fn ifb_name(iface: &str) -> String {
    // Interface names are at most 15 bytes: the prefix and the last 12.
    let suffix = iface.strip_prefix(WORKLOAD_PREFIX).unwrap_or(iface);
    let start = suffix.len().saturating_sub(12);
    let start = (start..=suffix.len())
        .find(|i| suffix.is_char_boundary(*i))
        .unwrap_or(suffix.len());
    format!("{IFB_PREFIX}{}", &suffix[start..])
}

/// What the kernel holds that this driver owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Interfaces (of any name) with a `tbf` root qdisc.
    pub tbf_roots: BTreeSet<String>,
    /// `bwc…` ifb devices.
    pub ifbs: BTreeSet<String>,
    /// Interfaces that exist.
    pub links: BTreeSet<String>,
}

/// What one apply changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// A TBF on this workload interface.
    pub set_ingress: Vec<(String, Bandwidth)>,
    /// The redirect to an ifb and a TBF on it.
    pub set_egress: Vec<(String, Bandwidth)>,
    /// Remove the TBF root of this workload interface.
    pub clear_ingress: Vec<String>,
    /// Remove this ifb (and the redirect of its workload interface).
    pub clear_egress: Vec<String>,
    /// Desired interfaces that do not exist yet.
    pub pending: Vec<String>,
}

/// The changes from what the kernel holds (`observed`) and what was last
/// set (`applied`) to `desired`.
pub fn plan(
    desired: &BTreeMap<String, Shaping>,
    observed: &Observed,
    applied: &BTreeMap<String, Shaping>,
) -> Plan {
    let mut out = Plan::default();
    for (iface, want) in desired {
        if !observed.links.contains(iface) {
            out.pending.push(iface.clone());
            continue;
        }
        let had = applied.get(iface).copied().unwrap_or_default();
        if let Some(b) = want.ingress
            && (had.ingress != Some(b) || !observed.tbf_roots.contains(iface))
        {
            out.set_ingress.push((iface.clone(), b));
        }
        let ifb = ifb_name(iface);
        if let Some(b) = want.egress
            && (had.egress != Some(b)
                || !observed.ifbs.contains(&ifb)
                || !observed.tbf_roots.contains(&ifb))
        {
            out.set_egress.push((iface.clone(), b));
        }
    }
    let wants = |iface: &str, egress: bool| {
        desired.get(iface).is_some_and(|s| {
            if egress {
                s.egress.is_some()
            } else {
                s.ingress.is_some()
            }
        })
    };
    for iface in &observed.tbf_roots {
        if iface.starts_with(WORKLOAD_PREFIX) && !wants(iface, false) {
            out.clear_ingress.push(iface.clone());
        }
    }
    let egress_owners: BTreeMap<String, &String> = desired
        .keys()
        .filter(|i| wants(i, true))
        .map(|i| (ifb_name(i), i))
        .collect();
    for ifb in &observed.ifbs {
        if !egress_owners.contains_key(ifb) {
            out.clear_egress.push(ifb.clone());
        }
    }
    out
}

/// `tc_ratespec` (12 bytes): link layer Ethernet, rate in bytes per second
/// (saturated; the 64-bit attribute carries the real one).
fn ratespec(bytes_per_second: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[1] = TC_LINKLAYER_ETHERNET;
    let rate = u32::try_from(bytes_per_second).unwrap_or(u32::MAX);
    b[8..12].copy_from_slice(&rate.to_ne_bytes());
    b
}

/// The TBF options of `bw` on an interface of `mtu`.
pub fn tbf_options(bw: &Bandwidth, mtu: u32) -> Vec<TcOption> {
    let rate = bw.rate / 8;
    let burst = u32::try_from(bw.burst.div_ceil(8))
        .unwrap_or(u32::MAX)
        .max(mtu);
    let limit = rate
        .saturating_mul(LATENCY_MS)
        .checked_div(1000)
        .unwrap_or(0)
        .saturating_add(u64::from(burst));
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    let peak = bw.peakrate / 8;
    let mut qopt = Vec::with_capacity(36);
    qopt.extend_from_slice(&ratespec(rate));
    qopt.extend_from_slice(&if peak > 0 { ratespec(peak) } else { [0; 12] });
    qopt.extend_from_slice(&limit.to_ne_bytes());
    // buffer and mtu in ticks; the kernel computes them from the bursts.
    qopt.extend_from_slice(&0u32.to_ne_bytes());
    qopt.extend_from_slice(&0u32.to_ne_bytes());
    let nla = |kind, value: Vec<u8>| TcOption::Other(DefaultNla::new(kind, value));
    let mut out = vec![
        nla(TCA_TBF_PARMS, qopt),
        nla(TCA_TBF_RATE64, rate.to_ne_bytes().to_vec()),
        nla(TCA_TBF_BURST, burst.to_ne_bytes().to_vec()),
    ];
    if peak > 0 {
        let minburst = if bw.minburst == 0 {
            mtu
        } else {
            u32::try_from(bw.minburst).unwrap_or(u32::MAX)
        };
        out.push(nla(TCA_TBF_PRATE64, peak.to_ne_bytes().to_vec()));
        out.push(nla(TCA_TBF_PBURST, minburst.to_ne_bytes().to_vec()));
    }
    out
}

fn mtu_of(link: &Link) -> u32 {
    link.message
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(1500)
}

/// The bandwidth driver for one namespace.
#[derive(Debug)]
pub struct QosDriver {
    handle: rtnetlink::Handle,
    /// What was last set, per workload interface.
    applied: BTreeMap<String, Shaping>,
    pending: Vec<String>,
    /// The limits of the last apply that left nothing failed or pending,
    /// and when it read the kernel: an apply wanting the same limits
    /// within [`CHECK_ALL_EVERY`] reads nothing (a link dump costs as the
    /// square of the workloads, see [`kernel::links`]).
    settled: Option<(BTreeMap<String, Shaping>, Instant)>,
}

impl QosDriver {
    /// Opens a netlink connection in `netns`.
    pub async fn open(netns: Namespace) -> Result<Self, DataplaneError> {
        Ok(QosDriver {
            handle: netns.rtnetlink().await?,
            applied: BTreeMap::new(),
            pending: Vec::new(),
            settled: None,
        })
    }

    /// What the kernel holds, and its links.
    async fn observe(&self) -> Result<(Observed, BTreeMap<String, Link>), DataplaneError> {
        let links = kernel::links(&self.handle).await?;
        let by_index: BTreeMap<u32, &String> = links.iter().map(|(n, l)| (l.index, n)).collect();
        let mut observed = Observed {
            links: links.keys().cloned().collect(),
            ..Observed::default()
        };
        for (name, link) in &links {
            let ifb = link.message.attributes.iter().any(|a| {
                matches!(a, LinkAttribute::LinkInfo(infos)
                    if infos.iter().any(|i| matches!(i, rtnetlink::packet_route::link::LinkInfo::Kind(InfoKind::Ifb))))
            });
            if ifb && name.starts_with(IFB_PREFIX) {
                observed.ifbs.insert(name.clone());
            }
        }
        let mut dump = self.handle.qdisc().get().execute();
        while let Some(m) = dump
            .try_next()
            .await
            .map_err(DataplaneError::netlink("reading qdiscs"))?
        {
            let tbf = m
                .attributes
                .iter()
                .any(|a| matches!(a, TcAttribute::Kind(k) if k == "tbf"));
            let root = m.header.parent == TcHandle::ROOT;
            if let (true, true, Some(name)) = (tbf, root, by_index.get(&(m.header.index as u32))) {
                observed.tbf_roots.insert((*name).clone());
            }
        }
        Ok((observed, links))
    }

    /// Sends one qdisc message (replace, or create when `create`).
    async fn qdisc(&self, message: TcMessage, what: String) -> Result<(), DataplaneError> {
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(message));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        let mut handle = self.handle.clone();
        let mut response = handle
            .request(req)
            .map_err(DataplaneError::netlink(what.clone()))?;
        while let Some(m) = futures::StreamExt::next(&mut response).await {
            if let NetlinkPayload::Error(e) = m.payload
                && e.code.is_some()
            {
                return Err(DataplaneError::Netlink {
                    what,
                    source: rtnetlink::Error::NetlinkError(e),
                });
            }
        }
        Ok(())
    }

    /// A TBF root on link `index`.
    async fn set_tbf(
        &self,
        index: u32,
        name: &str,
        bw: &Bandwidth,
        mtu: u32,
    ) -> Result<(), DataplaneError> {
        let mut m = TcMessage::with_index(index as i32);
        m.header.parent = TcHandle::ROOT;
        m.header.handle = TcHandle { major: 1, minor: 0 };
        m.attributes.push(TcAttribute::Kind("tbf".into()));
        m.attributes
            .push(TcAttribute::Options(tbf_options(bw, mtu)));
        self.qdisc(m, format!("tbf on {name}")).await
    }

    /// Removes the root qdisc (or ingress qdisc) of link `index`; gone is fine.
    async fn del_qdisc(
        &self,
        index: u32,
        ingress: bool,
        what: String,
    ) -> Result<(), DataplaneError> {
        let mut req = self.handle.qdisc().del(index as i32);
        let m = req.message_mut();
        if ingress {
            m.header.parent = TcHandle::INGRESS;
            m.header.handle = TcHandle::from(0xffff_0000);
        } else {
            m.header.parent = TcHandle::ROOT;
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if kernel::is_not_found(&e) || kernel::errno(&e) == Some(libc::EINVAL) => Ok(()),
            Err(e) => Err(DataplaneError::Netlink { what, source: e }),
        }
    }

    /// The redirect of `iface`'s traffic to its ifb (made if missing from
    /// `links`, the links as read this apply) and the TBF on the ifb.
    async fn set_egress(
        &self,
        iface: &Link,
        name: &str,
        bw: &Bandwidth,
        links: &BTreeMap<String, Link>,
    ) -> Result<(), DataplaneError> {
        let ifb = ifb_name(name);
        let created;
        let mut links = links;
        if !links.contains_key(&ifb) {
            let message =
                rtnetlink::LinkMessageBuilder::<rtnetlink::LinkUnspec>::new_with_info_kind(
                    InfoKind::Ifb,
                )
                .name(ifb.clone())
                .up()
                .build();
            self.handle
                .link()
                .add(message)
                .execute()
                .await
                .map_err(DataplaneError::netlink(format!("creating ifb {ifb}")))?;
            created = kernel::links(&self.handle).await?;
            links = &created;
        }
        let Some(dev) = links.get(&ifb) else {
            return Err(DataplaneError::Device {
                device: ifb,
                reason: "created but not found".into(),
            });
        };
        if !dev.up {
            kernel::set_up(&self.handle, dev.index, &ifb).await?;
        }
        self.set_tbf(dev.index, &ifb, bw, mtu_of(iface)).await?;
        // The redirect: a fresh ingress qdisc (its filters go with it).
        self.del_qdisc(iface.index, true, format!("ingress qdisc of {name}"))
            .await?;
        self.handle
            .qdisc()
            .add(iface.index as i32)
            .ingress()
            .execute()
            .await
            .map_err(DataplaneError::netlink(format!("ingress qdisc on {name}")))?;
        self.handle
            .traffic_filter(iface.index as i32)
            .add()
            .parent(0xffff_0000)
            .protocol(ETH_P_ALL.to_be())
            .redirect(dev.index)
            .map_err(DataplaneError::netlink(format!("redirect of {name}")))?
            .execute()
            .await
            .map_err(DataplaneError::netlink(format!(
                "redirecting {name} to {ifb}"
            )))
    }

    async fn clear_egress(
        &self,
        ifb: &str,
        links: &BTreeMap<String, Link>,
    ) -> Result<(), DataplaneError> {
        let iface = format!("{WORKLOAD_PREFIX}{}", &ifb[IFB_PREFIX.len()..]);
        if let Some(l) = links.get(&iface) {
            self.del_qdisc(l.index, true, format!("ingress qdisc of {iface}"))
                .await?;
        }
        if let Some(l) = links.get(ifb) {
            match self.handle.link().del(l.index).execute().await {
                Ok(()) => {}
                Err(e) if kernel::is_not_found(&e) => {}
                Err(e) => {
                    return Err(DataplaneError::Netlink {
                        what: format!("deleting ifb {ifb}"),
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }

    /// Brings the kernel to `desired`'s limits. `Err` only when the kernel
    /// cannot be read; failures of single interfaces are collected.
    pub async fn reconcile(
        &mut self,
        desired: &Desired,
    ) -> Result<Vec<DataplaneError>, DataplaneError> {
        let wanted: BTreeMap<String, Shaping> = desired
            .workloads
            .values()
            .filter(|w| w.shaping != Shaping::default())
            .map(|w| (w.name.clone(), w.shaping))
            .collect();
        let now = Instant::now();
        if let Some((limits, at)) = &self.settled
            && *limits == wanted
            && now.duration_since(*at) < CHECK_ALL_EVERY
        {
            return Ok(Vec::new());
        }
        self.settled = None;
        let (observed, links) = self.observe().await?;
        let plan = plan(&wanted, &observed, &self.applied);
        let mut failed = Vec::new();
        for iface in &plan.clear_ingress {
            if let Some(l) = links.get(iface)
                && let Err(e) = self
                    .del_qdisc(l.index, false, format!("tbf of {iface}"))
                    .await
            {
                failed.push(e);
            }
            if let Some(s) = self.applied.get_mut(iface) {
                s.ingress = None;
            }
        }
        for ifb in &plan.clear_egress {
            match self.clear_egress(ifb, &links).await {
                Ok(()) => {
                    let iface = format!("{WORKLOAD_PREFIX}{}", &ifb[IFB_PREFIX.len()..]);
                    if let Some(s) = self.applied.get_mut(&iface) {
                        s.egress = None;
                    }
                }
                Err(e) => failed.push(e),
            }
        }
        for (iface, bw) in &plan.set_ingress {
            let Some(l) = links.get(iface) else { continue };
            match self.set_tbf(l.index, iface, bw, mtu_of(l)).await {
                Ok(()) => self.applied.entry(iface.clone()).or_default().ingress = Some(*bw),
                Err(e) => failed.push(e),
            }
        }
        for (iface, bw) in &plan.set_egress {
            let Some(l) = links.get(iface) else { continue };
            match self.set_egress(l, iface, bw, &links).await {
                Ok(()) => self.applied.entry(iface.clone()).or_default().egress = Some(*bw),
                Err(e) => failed.push(e),
            }
        }
        self.applied
            .retain(|i, s| wanted.contains_key(i) && *s != Shaping::default());
        self.pending = plan.pending;
        if failed.is_empty() && self.pending.is_empty() {
            self.settled = Some((wanted, now));
        }
        Ok(failed)
    }
}

#[async_trait::async_trait]
impl Driver for QosDriver {
    fn name(&self) -> &'static str {
        "qos"
    }
    fn stage(&self) -> crate::state::Stage {
        crate::state::Stage::Kernel
    }

    async fn apply(&mut self, desired: &Desired) -> Result<(), DriverError> {
        let failed = self.reconcile(desired).await?;
        DataplaneError::from_all(failed).map_err(Into::into)
    }

    fn pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bw(rate: u64) -> Bandwidth {
        Bandwidth {
            rate,
            burst: 1_000_000,
            peakrate: 0,
            minburst: 0,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ifbs_are_named_after_their_workload_interface() {
        assert_eq!(ifb_name("cali0123456789a"), "bwc0123456789a");
        assert!(ifb_name("tap-long-name-x").len() <= 15);
    }

    #[test]
    fn limits_are_set_when_new_changed_or_gone_and_cleared_when_unwanted() {
        let shaping = |i, e| Shaping {
            ingress: i,
            egress: e,
        };
        let desired = BTreeMap::from([
            ("cali1".to_string(), shaping(Some(bw(10_000_000)), None)),
            ("cali2".to_string(), shaping(None, Some(bw(20_000_000)))),
            ("cali3".to_string(), shaping(Some(bw(1_000_000)), None)),
        ]);
        let observed = Observed {
            tbf_roots: set(&["cali1", "cali9", "bwc2", "eth0"]),
            ifbs: set(&["bwc2", "bwc8"]),
            links: set(&["cali1", "cali2", "cali9", "bwc2", "bwc8", "eth0"]),
        };
        // cali1 as last set; cali2's egress set before at another rate.
        let applied = BTreeMap::from([
            ("cali1".to_string(), shaping(Some(bw(10_000_000)), None)),
            ("cali2".to_string(), shaping(None, Some(bw(5_000_000)))),
        ]);
        let p = plan(&desired, &observed, &applied);
        assert_eq!(p.set_ingress, vec![]);
        assert_eq!(p.set_egress, vec![("cali2".to_string(), bw(20_000_000))]);
        assert_eq!(
            p.clear_ingress,
            vec!["cali9".to_string()],
            "eth0's is not ours"
        );
        assert_eq!(p.clear_egress, vec!["bwc8".to_string()]);
        assert_eq!(p.pending, vec!["cali3".to_string()]);
        // The TBF gone from the kernel: set again.
        let gone = Observed {
            tbf_roots: set(&[]),
            ..observed
        };
        let p = plan(&desired, &gone, &applied);
        assert_eq!(p.set_ingress.len(), 1);
    }

    #[test]
    fn tbf_carries_rate_burst_queue_and_peak_in_bytes() {
        let b = Bandwidth {
            rate: 100_000_000,
            burst: 800_000,
            peakrate: 200_000_000,
            minburst: 0,
        };
        let opts = tbf_options(&b, 1500);
        assert_eq!(opts.len(), 5);
        let value = |o: &TcOption| match o {
            TcOption::Other(n) => {
                use rtnetlink::packet_core::Nla;
                let mut buf = vec![0; n.value_len()];
                n.emit_value(&mut buf);
                buf
            }
            _ => unreachable!(),
        };
        let parms = value(&opts[0]);
        assert_eq!(parms.len(), 36);
        assert_eq!(parms[1], TC_LINKLAYER_ETHERNET);
        assert_eq!(
            u32::from_ne_bytes(parms[8..12].try_into().unwrap()),
            12_500_000
        );
        // 25 ms at 12.5 MB/s plus the 100 kB burst.
        assert_eq!(
            u32::from_ne_bytes(parms[24..28].try_into().unwrap()),
            312_500 + 100_000
        );
        assert_eq!(value(&opts[2]), 100_000u32.to_ne_bytes());
        assert_eq!(value(&opts[4]), 1500u32.to_ne_bytes(), "minburst: the MTU");
    }
}
