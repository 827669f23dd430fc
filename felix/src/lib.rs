//! felix: the per-host agent. It keeps a [`Snapshot`](state::Snapshot) of
//! the datastore, calculates from it (purely) what this host's dataplane
//! should be, a [`Desired`](state::Desired), and hands that to
//! level-triggered drivers: kernel routes and workload interfaces, the
//! nftables ruleset, VXLAN, and the in-process BGP speaker.
//!
//! # Layout
//!
//! - [`state`]: `Snapshot` (input) and `Desired` (output) of the
//!   calculation, and the [`Driver`](state::Driver) trait.
//! - [`calc`] (pure): `Snapshot` → `Desired`.
//! - [`config`]: the agent's settings from file, environment, flags and
//!   FelixConfiguration resources.
//! - [`syncer`]: the datastore watch that keeps the `Snapshot` current,
//!   with a full resync at start and after any watch error.
//! - [`node`]: registering this host's Node resource (addresses, AS, VTEP).
//! - [`node_status`]: this host's CalicoNodeStatus (its BGP sessions) in the
//!   datastore, bounded writes.
//! - [`neigh_table`]: the kernel's neighbour tables watched, a full one
//!   named in a log line and in the node's status.
//! - [`ipam_gc`]: the IPAM leak collector's task (on the felix holding its
//!   lease), with its logs and metrics.
//! - [`dataplane`]: the kernel drivers (routes, workload interfaces,
//!   conntrack, VXLAN).
//! - [`policy_driver`]: the nftables driver (incremental compiler + netlink).
//! - [`rule_metrics`]: per-rule packet and byte counters into `/metrics`.
//! - [`bgp`]: the BGP driver around an in-process `bgpd::Speaker`.
//! - [`flowlog`]: flow logs from NFLOG and conntrack, into the flow API.
//! - [`memory`]: freed heap memory given back to the kernel once a minute.
//! - [`metrics`]: Prometheus metrics and the `/metrics`, `/liveness` and
//!   `/readiness` HTTP endpoints.
//! - [`daemon`]: the agent's main loop tying the above together.
//! - [`cli`]: `felix run`, wiring settings, datastore, servers, drivers and
//!   the daemon (`src/main.rs` hands it `calc::calculate`).

pub mod bgp;
pub mod calc;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod flowlog;
pub mod ipam_gc;
pub mod memory;
pub mod metrics;
pub mod neigh_table;
pub mod node;
pub mod node_status;
pub mod policy_driver;
pub mod rule_metrics;
pub mod state;
pub mod syncer;
