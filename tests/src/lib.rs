//! Test support for kernel-level tests: network namespaces with unique names,
//! veth pairs and addresses inside them, code and commands run inside a
//! namespace, background daemons, and skipping (or, in CI, failing) tests whose
//! requirements are missing.
//!
//! Everything here acts only inside namespaces the test created: links are
//! made with `ip -n NS`, never in the host namespace. Cleanup happens in `Drop`,
//! so it also runs while a failing test unwinds; namespaces left behind by a
//! crashed earlier run are removed by [`remove_stale`] (called once per prefix
//! by [`Netns::new`]).
//!
//! ```no_run
//! use testkit::{Netns, veth_pair};
//! let a = Netns::new("doc").unwrap();
//! let b = Netns::new("doc").unwrap();
//! veth_pair(&a, "eth0", &b, "eth0").unwrap();
//! a.add_addr("eth0", "10.200.9.1/30").unwrap();
//! b.add_addr("eth0", "10.200.9.2/30").unwrap();
//! a.exec("ping", ["-c", "1", "-W", "2", "10.200.9.2"]).unwrap();
//! ```
//!
//! # Layout
//!
//! - [`error`]: the crate's [`Error`] enum.
//! - [`command`]: running an external command and turning failure into an
//!   error that names the command line and its output.
//! - [`name`]: unique namespace and interface names, and reading back the pid
//!   that created a namespace (pure).
//! - [`netns`]: [`Netns`], a named network namespace removed on drop; running
//!   commands and closures inside it; removal of stale namespaces.
//! - [`link`]: veth pairs, addresses, link state, any `ip -n NS` command.
//! - [`process`]: [`Background`], a child process killed on drop, and
//!   [`poll_until`].
//! - [`require`]: [`require_root`] and [`require_programs`]: skip locally,
//!   fail in CI.
//! - [`traffic`]: pings, TCP probes, and long-lived TCP connections to an
//!   echo server, between namespaces.
//! - [`webdriver`]: headless Chromium over WebDriver, and a tiny HTTP
//!   client.
//! - [`goldmane`]: a Python grpcio client generated from Goldmane's
//!   `.proto`.
//! - [`cni`]: a small CNI runtime calling a conflist's plugins as libcni
//!   does, and container sandboxes.
//! - [`binary`]: [`workspace_binary`], another workspace package's binary,
//!   built if needed.
//! - [`bird`]: [`Bird`], BIRD 2 as a BGP peer, read back through `birdc`.
//! - [`container`]: what the runtimes share: [`Containers`] (probes run
//!   inside a container), the busybox root file system, unmounting.
//! - [`podman`]: [`Podman`], the real podman (CNI backend) in a host
//!   namespace with state of its own, containers on a busybox root.
//! - [`containerd`]: [`Containerd`], the real containerd and `ctr run
//!   --cni` likewise, `ctr` in a mount namespace of its own.
//! - [`machine`]: [`Machine`](machine::Machine), a host for one test: a
//!   network namespace and its own layer over this machine's system.
//! - [`mounts`]: mount points below a directory, and unmounting them.
//! - [`debian`]: clean Debian roots ([`debian::Base`]) and throw-away
//!   copies of them ([`debian::Root`]) to install packages into and run
//!   programs in with `chroot`.

pub mod binary;
pub mod bird;
pub mod cni;
pub mod command;
pub mod container;
pub mod containerd;
pub mod debian;
pub mod error;
pub mod goldmane;
pub mod link;
pub mod machine;
pub mod mounts;
pub mod name;
pub mod netns;
pub mod podman;
pub mod process;
pub mod require;
pub mod traffic;
pub mod webdriver;

pub use binary::workspace_binary;
pub use bird::Bird;
pub use command::run_checked;
pub use container::Containers;
pub use containerd::Containerd;
pub use error::Error;
pub use link::veth_pair;
pub use link::without_nhid;
pub use name::ifname;
pub use netns::{Netns, remove_stale};
pub use podman::Podman;
pub use process::{Background, poll_until};
pub use require::{require_programs, require_root};
