//! The kernel drivers: workload interfaces (`links`), the routes felix owns
//! (`routes`), the flows of removed workloads (`conntrack`) and the VXLAN
//! device (`vxlan`). Each implements [`Driver`]: it
//! reads what the kernel has, computes the difference to the
//! [`Desired`](crate::state::Desired) state with a pure function, and applies
//! only that. Each acts in one network [`Namespace`], so tests run them
//! inside namespaces they made.
//!
//! Apply them in the order [`open_all`] returns: interfaces are up before
//! routes point at them, and the VXLAN device exists before routes through
//! it. A route or interface that does not exist yet (the CNI plugin has not
//! made the veth) is reported as pending, not as an error; the next apply
//! programs it, so the agent should apply again while anything is pending
//! (see each driver's `pending`).
//!
//! # Layout
//!
//! - [`netns`]: [`Namespace`], where a driver acts: its netlink socket and
//!   its `/proc/sys` writes come from a thread inside it.
//! - [`kernel`]: what the drivers read alike (links by name) and
//!   [`DataplaneError`].
//! - [`routes`]: main-table routes of protocol
//!   [`ROUTE_PROTOCOL`](crate::state::ROUTE_PROTOCOL).
//! - [`links`]: workload interfaces up, with Calico's sysctls.
//! - [`conntrack`]: deleting the flows of addresses that left `Desired`.
//! - [`vxlan`]: the `vxlan.calico` device, its address, ARP and FDB entries.
//! - [`qos`]: workload bandwidth limits with tc (TBF, and an ifb for the
//!   workload's own traffic).
//! - [`keyed`]: the diff of two keyed tables that neighbours and FDB share
//!   (pure).

pub mod conntrack;
pub mod kernel;
pub mod keyed;
pub mod links;
pub mod netns;
pub mod qos;
pub mod routes;
pub mod vxlan;

pub use conntrack::ConntrackDriver;
pub use kernel::DataplaneError;
pub use links::LinksDriver;
pub use netns::Namespace;
pub use qos::QosDriver;
pub use routes::RoutesDriver;
pub use vxlan::VxlanDriver;

use std::time::Duration;

use crate::state::Driver;

/// How often a driver that looks only at what changed since its last
/// apply (links, qos) checks everything again, so that what was changed
/// behind felix's back is put back by the next apply after it.
pub const CHECK_ALL_EVERY: Duration = Duration::from_secs(60);

/// Every kernel driver for `netns`, in the order to apply them: links,
/// vxlan, routes, conntrack, qos.
pub async fn open_all(netns: &Namespace) -> Result<Vec<Box<dyn Driver>>, DataplaneError> {
    Ok(vec![
        Box::new(LinksDriver::open(netns.clone()).await?),
        Box::new(VxlanDriver::open(netns.clone()).await?),
        Box::new(RoutesDriver::open(netns.clone()).await?),
        Box::new(ConntrackDriver::new(netns.clone())),
        Box::new(QosDriver::open(netns.clone()).await?),
    ])
}
