//! `calico-lab`: runs containerlab topology files without Docker, each node
//! a network namespace on this host, each link a veth pair.
//!
//! The same file stays valid for containerlab: roles come from what
//! containerlab understands. How each node is realised here:
//!
//! | file | here | under containerlab |
//! |---|---|---|
//! | `kind: linux`, no role | namespace `clab-LAB-NODE`; its `exec` commands run in it (`sh -c`) | a container of its image, `exec` run in it |
//! | `kind: linux`, image `…bird…` or label `calico-rs.role: bird` | the same, running `bird -f -c HOST_CONF -s STATE/NODE/bird.ctl`, `HOST_CONF` the host side of the bind to `/etc/bird/bird.conf`; `STATE/NODE` is `/run/bird` in the node | the image's BIRD reading the bound file |
//! | `kind: linux`, image `…gobgp…` or `calico-rs.role: gobgp` | `gobgpd -f HOST_CONF -t toml\|yaml\|json --api-hosts 127.0.0.1:50051`, `HOST_CONF` bound to `/etc/gobgp/…` | the image's gobgpd |
//! | `kind: linux`, image `…felix…`/`…calico-rs…` or `calico-rs.role: felix` | our `felix run --node-name NODE --bgp-socket STATE/NODE/bgp.sock` with the node's `env`; `DATASTORE_TYPE=sqlite` and `DATASTORE_PATH=STATE/datastore.db` (one per lab) unless `env` sets `DATASTORE_TYPE` | an image holding felix |
//! | `kind: linux`, image `…frr…` or `calico-rs.role: frr` | `/usr/lib/frr/zebra`, then `/usr/lib/frr/bgpd` once zebra's `zserv.api` exists, both `-f` the config at its container path (`/etc/frr/frr.conf`: `frr` may not pass through the host path), as user `frr`, with pid files, zserv and vty sockets in `STATE/NODE`, which is `/run/frr` in the node (plain `vtysh`) | the FRR image, with its `daemons` file |
//! | `kind: bridge` | namespace `clab-LAB-NODE` holding a bridge named NODE; its link ends are its ports | a host bridge NODE (create it first) |
//!
//! A node with binds, and every router, has a mount namespace of its own
//! (see [`mounts`]) where each bind, a router's `startup-config` and its
//! daemon's runtime directory appear at their container paths; nothing is
//! made on the host outside `STATE`. Daemons are still given host paths on
//! their command line, the same files. A router's `startup-config` may stand
//! for the bind (containerlab's `linux` kind ignores it, and so do plain and
//! felix nodes here). `STATE` is `STATE_ROOT/LAB` (`/run/calico-lab/LAB` by default),
//! holding `state.json`, each node's sockets and logs, and felix's datastore.
//! Order of `up`: namespaces, mount namespaces, links (up), `exec` commands, daemons (each
//! started once the previous one's ready file, e.g. its control socket,
//! exists).
//!
//! # Layout
//!
//! - [`expand`](mod@expand): [`expand()`], the file's `${VAR}` expanded as
//!   containerlab does before parsing (pure), lines kept.
//! - [`topology`]: the file's types and [`topology::parse`] (pure), with
//!   lines named in errors.
//! - [`plan`](mod@plan): [`plan::plan`], the namespaces, links, commands and daemons a
//!   topology becomes (pure); defaults and kinds merged.
//! - [`mounts`]: a node's mount namespace planned (pure): the
//!   [`mounts::Step`]s that put its binds at their container paths without
//!   touching the host, and the mount tables read for overlays and `down`.
//! - [`neigh`]: the kernel's neighbour table, one for the whole machine,
//!   sized for the labs up ([`neigh::entries`], [`neigh::thresholds`] pure)
//!   and put back by the last `down`.
//! - [`state`]: [`state::State`], what `up` made, in `STATE/state.json`.
//! - [`run`]: the I/O: [`run::up`], [`run::down`], [`run::exec_command`],
//!   [`run::inspect`] and its [`run::table`].
//! - [`error`]: [`TopologyError`] and [`RunError`].

pub mod error;
pub mod expand;
pub mod mounts;
pub mod neigh;
pub mod plan;
pub mod run;
pub mod state;
pub mod topology;

pub use error::{RunError, TopologyError};
pub use expand::expand;
pub use plan::{Plan, Role, Settings, plan};
pub use state::State;
pub use topology::{Topology, parse};
