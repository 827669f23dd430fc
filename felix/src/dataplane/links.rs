//! Workload interfaces (the host side of each `cali…` veth): up, with the
//! sysctls Calico's felix sets on them ([`interface_sysctls`]), and the
//! host's forwarding switched on ([`global_sysctls`]). Interfaces that do
//! not exist yet are pending; nothing is done to interfaces that are not
//! desired (the CNI plugin removes them with the workload).
//!
//! Sysctls are read first and written only when they differ, from a thread
//! inside the driver's namespace (`/proc/sys/net` shows the namespace of
//! the thread that opens it).
//!
//! An apply looks only at the interfaces that are new, changed or not yet
//! found since the last apply, asking the kernel for them by name; once
//! every [`CHECK_ALL_EVERY`] it checks them all again (a dump, and every
//! sysctl read), so that a setting changed behind felix's back is put back.
//! Adding the 1,001st workload thus costs this driver what adding the first
//! did, but for that check once a minute.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use tokio::time::Instant;

use super::kernel::{self, DataplaneError};
use super::{CHECK_ALL_EVERY, Namespace};
use crate::state::{Desired, Driver, DriverError, WorkloadIface};

/// One `/proc/sys` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// Under `/proc/sys`, e.g. `net/ipv4/conf/cali0123456789a/proxy_arp`.
    pub path: String,
    pub value: &'static str,
    /// Skipped when the file does not exist (IPv6 disabled).
    pub optional: bool,
}

fn sysctl(path: String, value: &'static str) -> Sysctl {
    Sysctl {
        path,
        value,
        optional: false,
    }
}

/// What Calico's felix sets on a workload interface: for IPv4 strict
/// reverse-path filtering, routing to localhost (for NAT to the host), proxy
/// ARP without delay (the workload's gateway 169.254.1.1 is answered by the
/// host) and forwarding; router advertisements off (always, like Calico,
/// against rogue RAs from a workload); for a workload with an IPv6 address,
/// proxy NDP and IPv6 forwarding.
pub fn interface_sysctls(iface: &WorkloadIface) -> Vec<Sysctl> {
    let name = &iface.name;
    let v4 = |key: &str, value| sysctl(format!("net/ipv4/conf/{name}/{key}"), value);
    let v6 = |key: &str, value| sysctl(format!("net/ipv6/conf/{name}/{key}"), value);
    let mut out = vec![
        v4("rp_filter", "1"),
        v4("route_localnet", "1"),
        v4("proxy_arp", "1"),
        sysctl(format!("net/ipv4/neigh/{name}/proxy_delay"), "0"),
        v4("forwarding", "1"),
        Sysctl {
            optional: true,
            ..v6("accept_ra", "0")
        },
    ];
    if iface.addrs.iter().any(|a| matches!(a, ipnet::IpNet::V6(_))) {
        out.push(v6("proxy_ndp", "1"));
        out.push(v6("forwarding", "1"));
    }
    out
}

/// The host's own: IPv4 forwarding, and IPv6 forwarding when a workload
/// has an IPv6 address.
pub fn global_sysctls(desired: &Desired) -> Vec<Sysctl> {
    let mut out = vec![sysctl("net/ipv4/ip_forward".to_owned(), "1")];
    let v6 = desired
        .workloads
        .values()
        .flat_map(|w| &w.addrs)
        .any(|a| matches!(a, ipnet::IpNet::V6(_)));
    if v6 {
        out.push(sysctl("net/ipv6/conf/all/forwarding".to_owned(), "1"));
    }
    out
}

/// What happened to one sysctl.
#[derive(Debug)]
enum Outcome {
    Unchanged,
    Written,
    /// The file is gone (the interface went away meanwhile, or IPv6 is off).
    Missing,
    Failed(DataplaneError),
}

/// Reads `s` under `root` and writes it if it differs.
fn sync(root: &Path, s: &Sysctl) -> Outcome {
    let file = root.join(&s.path);
    let fail = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            Outcome::Missing
        } else {
            Outcome::Failed(DataplaneError::Sysctl {
                path: s.path.replace('/', "."),
                source,
            })
        }
    };
    match std::fs::read_to_string(&file) {
        Ok(v) if v.trim() == s.value => Outcome::Unchanged,
        Ok(_) => match std::fs::write(&file, s.value) {
            Ok(()) => Outcome::Written,
            Err(e) => fail(e),
        },
        Err(e) => fail(e),
    }
}

/// What one apply did.
#[derive(Debug, Default)]
pub struct LinksReport {
    /// Interfaces that were down and were set up.
    pub set_up: Vec<String>,
    /// Sysctls written (those already right are left alone).
    pub sysctls_written: usize,
    /// Desired interfaces that do not exist (yet).
    pub pending: Vec<String>,
    pub failed: Vec<DataplaneError>,
}

/// The workload-interface driver for one namespace.
#[derive(Debug)]
pub struct LinksDriver {
    netns: Namespace,
    handle: rtnetlink::Handle,
    pending: Vec<String>,
    /// The interfaces found up with their sysctls right, as they were
    /// desired then: the next apply leaves them alone unless they changed.
    verified: BTreeMap<String, WorkloadIface>,
    /// When an apply last checked every desired interface.
    checked_all: Option<Instant>,
}

impl LinksDriver {
    /// Opens a netlink connection in `netns` (on the current tokio
    /// runtime). Nothing is read or changed until the first apply.
    pub async fn open(netns: Namespace) -> Result<Self, DataplaneError> {
        Ok(LinksDriver {
            handle: netns.rtnetlink().await?,
            netns,
            pending: Vec::new(),
            verified: BTreeMap::new(),
            checked_all: None,
        })
    }

    /// Desired interfaces the last apply did not find.
    pub fn pending(&self) -> &[String] {
        &self.pending
    }

    /// Sets every existing desired interface up and its sysctls, and the
    /// global ones: those not verified by an earlier apply as desired now,
    /// or all of them once every [`CHECK_ALL_EVERY`]. `Err` only when the
    /// links cannot be read.
    pub async fn reconcile(&mut self, desired: &Desired) -> Result<LinksReport, DataplaneError> {
        let now = Instant::now();
        let check_all = self
            .checked_all
            .is_none_or(|at| now.duration_since(at) >= CHECK_ALL_EVERY);
        self.verified
            .retain(|name, was| desired.workloads.get(name) == Some(&*was));
        let todo: Vec<&WorkloadIface> = desired
            .workloads
            .values()
            .filter(|w| check_all || !self.verified.contains_key(&w.name))
            .collect();
        let links = kernel::links_named(&self.handle, todo.iter().map(|w| w.name.as_str())).await?;
        let mut report = LinksReport::default();
        let mut sysctls = global_sysctls(desired);
        // Per sysctl, the interface it belongs to (none for global ones).
        let mut owners: Vec<Option<String>> = vec![None; sysctls.len()];
        // Interfaces that could not be set up or given a sysctl.
        let mut unsettled = BTreeSet::new();
        for &iface in &todo {
            let Some(link) = links.get(&iface.name) else {
                report.pending.push(iface.name.clone());
                continue;
            };
            if !link.up {
                match kernel::set_up(&self.handle, link.index, &iface.name).await {
                    Ok(()) => report.set_up.push(iface.name.clone()),
                    Err(e) => {
                        report.failed.push(e);
                        unsettled.insert(iface.name.clone());
                    }
                }
            }
            for s in interface_sysctls(iface) {
                sysctls.push(s);
                owners.push(Some(iface.name.clone()));
            }
        }
        let outcomes = self
            .netns
            .run(move || {
                let root = Path::new("/proc/sys");
                sysctls
                    .iter()
                    .map(|s| (sync(root, s), s.optional, s.path.replace('/', ".")))
                    .collect::<Vec<_>>()
            })
            .await?;
        let mut vanished = BTreeSet::new();
        for ((outcome, optional, path), owner) in outcomes.into_iter().zip(owners) {
            match (outcome, owner) {
                (Outcome::Unchanged, _) => {}
                (Outcome::Written, _) => report.sysctls_written += 1,
                (Outcome::Missing, _) if optional => {}
                // The interface went away between reading and writing.
                (Outcome::Missing, Some(name)) => {
                    vanished.insert(name);
                }
                (Outcome::Missing, None) => report.failed.push(DataplaneError::Sysctl {
                    path,
                    source: io::ErrorKind::NotFound.into(),
                }),
                (Outcome::Failed(e), owner) => {
                    report.failed.push(e);
                    unsettled.extend(owner);
                }
            }
        }
        for iface in todo {
            let settled = links.contains_key(&iface.name)
                && !vanished.contains(&iface.name)
                && !unsettled.contains(&iface.name);
            if settled {
                self.verified.insert(iface.name.clone(), iface.clone());
            } else {
                self.verified.remove(&iface.name);
            }
        }
        if check_all {
            self.checked_all = Some(now);
        }
        report.pending.extend(vanished);
        self.pending = report.pending.clone();
        Ok(report)
    }
}

#[async_trait::async_trait]
impl Driver for LinksDriver {
    fn name(&self) -> &'static str {
        "links"
    }
    fn stage(&self) -> crate::state::Stage {
        crate::state::Stage::Kernel
    }

    async fn apply(&mut self, desired: &Desired) -> Result<(), DriverError> {
        let report = self.reconcile(desired).await?;
        tracing::debug!(
            set_up = report.set_up.len(),
            sysctls = report.sysctls_written,
            pending = report.pending.len(),
            "workload interfaces applied"
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

    fn iface(addrs: &[&str]) -> WorkloadIface {
        WorkloadIface {
            name: "cali0123456789a".into(),
            endpoint: "ns/pod".into(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            shaping: Default::default(),
        }
    }

    fn settings(list: &[Sysctl]) -> Vec<(&str, &str)> {
        list.iter().map(|s| (s.path.as_str(), s.value)).collect()
    }

    #[test]
    fn an_ipv4_workload_gets_proxy_arp_without_delay_forwarding_and_no_router_advertisements() {
        assert_eq!(
            settings(&interface_sysctls(&iface(&["10.0.0.5/32"]))),
            vec![
                ("net/ipv4/conf/cali0123456789a/rp_filter", "1"),
                ("net/ipv4/conf/cali0123456789a/route_localnet", "1"),
                ("net/ipv4/conf/cali0123456789a/proxy_arp", "1"),
                ("net/ipv4/neigh/cali0123456789a/proxy_delay", "0"),
                ("net/ipv4/conf/cali0123456789a/forwarding", "1"),
                ("net/ipv6/conf/cali0123456789a/accept_ra", "0"),
            ]
        );
    }

    #[test]
    fn an_ipv6_workload_also_gets_proxy_ndp_and_ipv6_forwarding_here_and_globally() {
        let w = iface(&["10.0.0.5/32", "fd00::5/128"]);
        let list = interface_sysctls(&w);
        let s = settings(&list);
        assert!(s.contains(&("net/ipv6/conf/cali0123456789a/proxy_ndp", "1")));
        assert!(s.contains(&("net/ipv6/conf/cali0123456789a/forwarding", "1")));
        let mut desired = Desired::default();
        assert_eq!(
            settings(&global_sysctls(&desired)),
            vec![("net/ipv4/ip_forward", "1")]
        );
        desired.workloads.insert(w.name.clone(), w);
        assert_eq!(
            settings(&global_sysctls(&desired)),
            vec![
                ("net/ipv4/ip_forward", "1"),
                ("net/ipv6/conf/all/forwarding", "1")
            ]
        );
    }
}
