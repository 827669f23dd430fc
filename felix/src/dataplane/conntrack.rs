//! Flows of removed workloads: when an address leaves the workloads of
//! [`Desired`] (its endpoint was removed), the conntrack entries from and
//! to it are deleted, so a later workload given the same address does not
//! inherit its flows. [`removed`] (pure) says which addresses left;
//! [`ConntrackDriver`] runs the `conntrack` tool (Debian's conntrack
//! package) inside the driver's namespace, as Calico does: one deletion per
//! direction, by original and reply source and destination, which also
//! catches NATed flows.
//!
//! The first apply only learns the addresses: after a restart, nothing is
//! known to have been removed. A deletion that fails is retried with the
//! next apply, unless the address has come back.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use super::Namespace;
use super::kernel::DataplaneError;
use crate::state::{Desired, Driver, DriverError};

/// Every workload address in `desired`.
pub fn workload_addrs(desired: &Desired) -> BTreeSet<IpAddr> {
    desired
        .workloads
        .values()
        .flat_map(|w| &w.addrs)
        .map(|a| a.addr())
        .collect()
}

/// The addresses in `before` that are not in `after`.
pub fn removed(before: &BTreeSet<IpAddr>, after: &BTreeSet<IpAddr>) -> BTreeSet<IpAddr> {
    before.difference(after).copied().collect()
}

/// The `conntrack` argument lists that delete every flow of `addr`.
pub fn delete_args(addr: IpAddr) -> Vec<Vec<String>> {
    let family = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
    ["--orig-src", "--orig-dst", "--reply-src", "--reply-dst"]
        .into_iter()
        .map(|filter| {
            ["--family", family, "--delete", filter, &addr.to_string()]
                .map(str::to_owned)
                .to_vec()
        })
        .collect()
}

/// How many entries a `conntrack --delete` run deleted, from its success
/// and its message (`N flow entries have been deleted.`, on standard
/// error; it exits 1 when N is 0, which is no error).
pub fn deleted_count(success: bool, stderr: &str) -> Option<u64> {
    let n = stderr
        .split("flow entries have been deleted")
        .next()
        .filter(|_| stderr.contains("flow entries have been deleted"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()?;
    (success || n == 0).then_some(n)
}

/// What one apply did.
#[derive(Debug, Default)]
pub struct ConntrackReport {
    /// Addresses whose flows were deleted.
    pub flushed: Vec<IpAddr>,
    /// Entries deleted.
    pub entries: u64,
    pub failed: Vec<DataplaneError>,
}

/// The conntrack driver for one namespace.
#[derive(Debug)]
pub struct ConntrackDriver {
    netns: Namespace,
    program: PathBuf,
    /// The workload addresses of the last apply (`None` before the first).
    known: Option<BTreeSet<IpAddr>>,
    /// Removed addresses whose flows are still to be deleted.
    to_flush: BTreeSet<IpAddr>,
}

impl ConntrackDriver {
    /// A driver for `netns` running `conntrack` from `PATH`.
    pub fn new(netns: Namespace) -> Self {
        Self::with_program(netns, "conntrack")
    }

    /// A driver running `program` as the conntrack tool.
    pub fn with_program(netns: Namespace, program: impl Into<PathBuf>) -> Self {
        ConntrackDriver {
            netns,
            program: program.into(),
            known: None,
            to_flush: BTreeSet::new(),
        }
    }

    /// Removed addresses whose flows are still to be deleted.
    pub fn pending(&self) -> &BTreeSet<IpAddr> {
        &self.to_flush
    }

    /// Deletes the flows of addresses removed since the last apply (and of
    /// those whose deletion failed before). `Err` only when no thread
    /// could be started in the namespace.
    pub async fn reconcile(
        &mut self,
        desired: &Desired,
    ) -> Result<ConntrackReport, DataplaneError> {
        let now = workload_addrs(desired);
        if let Some(known) = &self.known {
            self.to_flush.extend(removed(known, &now));
        }
        self.to_flush.retain(|a| !now.contains(a));
        self.known = Some(now);
        let mut report = ConntrackReport::default();
        if self.to_flush.is_empty() {
            return Ok(report);
        }
        let program = self.program.clone();
        let addrs: Vec<IpAddr> = self.to_flush.iter().copied().collect();
        let results = self
            .netns
            .run(move || {
                addrs
                    .into_iter()
                    .map(|addr| (addr, flush(&program, addr)))
                    .collect::<Vec<_>>()
            })
            .await?;
        for (addr, result) in results {
            match result {
                Ok(n) => {
                    self.to_flush.remove(&addr);
                    report.flushed.push(addr);
                    report.entries += n;
                }
                Err(e) => report.failed.push(e),
            }
        }
        Ok(report)
    }
}

/// Deletes every flow of `addr` (in the calling thread's namespace).
fn flush(program: &PathBuf, addr: IpAddr) -> Result<u64, DataplaneError> {
    let mut total = 0;
    for args in delete_args(addr) {
        let command = format!("{} {}", program.display(), args.join(" "));
        let out =
            Command::new(program)
                .args(&args)
                .output()
                .map_err(|e| DataplaneError::Conntrack {
                    command: command.clone(),
                    detail: e.to_string(),
                })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        total += deleted_count(out.status.success(), &stderr).ok_or_else(|| {
            DataplaneError::Conntrack {
                command,
                detail: format!("{}: {}", out.status, stderr.trim()),
            }
        })?;
    }
    Ok(total)
}

#[async_trait::async_trait]
impl Driver for ConntrackDriver {
    fn name(&self) -> &'static str {
        "conntrack"
    }
    fn stage(&self) -> crate::state::Stage {
        crate::state::Stage::Kernel
    }

    async fn apply(&mut self, desired: &Desired) -> Result<(), DriverError> {
        let report = self.reconcile(desired).await?;
        if !report.flushed.is_empty() {
            tracing::info!(addrs = ?report.flushed, entries = report.entries, "deleted flows of removed workloads");
        }
        DataplaneError::from_all(report.failed).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::WorkloadIface;

    fn desired(addrs: &[&str]) -> Desired {
        let mut d = Desired::default();
        for (i, a) in addrs.iter().enumerate() {
            let name = format!("cali{i}");
            d.workloads.insert(
                name.clone(),
                WorkloadIface {
                    name,
                    endpoint: format!("ns/pod{i}"),
                    addrs: vec![a.parse().unwrap()],
                    shaping: Default::default(),
                },
            );
        }
        d
    }

    #[test]
    fn the_addresses_that_left_the_workloads_are_removed() {
        let before = workload_addrs(&desired(&["10.0.0.5/32", "fd00::5/128", "10.0.0.6/32"]));
        let after = workload_addrs(&desired(&["10.0.0.6/32"]));
        let gone: Vec<String> = removed(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(gone, ["10.0.0.5", "fd00::5"]);
    }

    #[test]
    fn flows_are_deleted_in_both_directions_of_the_right_family() {
        let args = delete_args("fd00::5".parse().unwrap());
        assert_eq!(args.len(), 4);
        assert_eq!(
            args[0],
            ["--family", "ipv6", "--delete", "--orig-src", "fd00::5"]
        );
        assert_eq!(args[3][3], "--reply-dst");
    }

    #[test]
    fn no_entry_to_delete_is_not_an_error_but_a_failure_is() {
        let msg = "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n";
        assert_eq!(deleted_count(false, msg), Some(0));
        let msg = "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n";
        assert_eq!(deleted_count(true, msg), Some(3));
        assert_eq!(deleted_count(false, msg), None);
        assert_eq!(
            deleted_count(false, "conntrack v1.4.7: Operation failed: ..."),
            None
        );
    }
}
