//! The CNI plugins `calico` and `calico-ipam`: how a container runtime asks
//! for a workload's interface, addresses and WorkloadEndpoint, with Calico's
//! network configuration, naming and container-side plumbing.
//!
//! They speak CNI spec 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0 (the
//! `cniVersion` of the configuration): ADD and DEL in all, CHECK from 0.4.0
//! on, STATUS and GC in 1.1.0; results are written in the configuration's
//! version and `prevResult` is read in any of them.
//!
//! The design places the plugin in felix; it is a crate of its own so that
//! the two binaries, run once per container, stay small and start fast,
//! without the BGP speaker and the policy compiler linked in.
//!
//! # Layout
//!
//! - [`error`]: [`CniError`] with the spec's error codes and ours, and its
//!   JSON form.
//! - [`version`]: the supported spec versions, the commands each has, and
//!   the result's format in each (pure).
//! - [`config`]: the network configuration on stdin, validated (pure).
//! - [`env`](mod@env): the `CNI_*` environment and `CNI_ARGS` (pure).
//! - [`result`]: the CNI result as the plugins hold it, read from
//!   `prevResult` and IPAM and written on ADD (pure).
//! - [`workload`]: Calico's names (veth, endpoint, IPAM handle), the
//!   WorkloadEndpoint and the namespace profile (pure).
//! - [`plan`]: what the container side holds, and CHECK's comparison (pure).
//! - [`netlink`]: the veth pair and the container side through rtnetlink,
//!   inside the container's namespace from a thread that entered it.
//! - [`delegate`]: running the IPAM plugin from `CNI_PATH`.
//! - [`ipam`]: `calico-ipam` on the datastore's IPAM.
//! - [`plugin`]: `calico`'s ADD (with rollback), DEL and CHECK.
//! - [`run`]: the binaries' stdin/env/stdout/exit code glue.

pub mod config;
pub mod delegate;
pub mod env;
pub mod error;
pub mod ipam;
pub mod netlink;
pub mod plan;
pub mod plugin;
pub mod result;
pub mod run;
pub mod version;
pub mod workload;

pub use config::NetConf;
pub use env::{CniEnv, Command};
pub use error::{CniError, Code};
pub use result::CniResult;
pub use run::Plugin;
pub use version::SpecVersion;
