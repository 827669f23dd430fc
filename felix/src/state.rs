//! The two ends of felix's calculation, shared by every part of the agent:
//! [`Snapshot`], the datastore state it reads (kept current by the syncer),
//! and [`Desired`], the dataplane state the pure calculation decides
//! (applied by the level-triggered drivers, each owning one part of it).
//!
//! ```text
//! datastore ─syncer─▶ Snapshot ─calc::calculate─▶ Desired ─┬─ routes, links, conntrack, vxlan (dataplane)
//!                                                          ├─ policy::Model ─▶ one nftables table
//!                                                          └─ BgpDesired ─▶ bgpd::Speaker (bgp)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use api::Resource;
use datastore::ipam::model::AllocationBlock;
use ipnet::IpNet;

/// The datastore as felix last saw it: every `projectcalico.org/v3`
/// resource by its datastore key, and every IPAM block by its key.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The datastore revision this snapshot is at.
    pub revision: i64,
    pub resources: BTreeMap<String, Resource>,
    pub blocks: BTreeMap<String, AllocationBlock>,
}

/// Everything felix programs on this host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Local workload interfaces (host side of each `cali…` veth), by name.
    pub workloads: BTreeMap<String, WorkloadIface>,
    /// The kernel routes felix owns (protocol [`ROUTE_PROTOCOL`], main table).
    pub routes: BTreeSet<Route>,
    /// The policy compiler's input for this host, with masquerading of
    /// traffic leaving `natOutgoing` pools in `policy.config.nat_outgoing`.
    pub policy: policy::Model,
    /// The BGP speaker's settings; `None` when this host runs no BGP.
    pub bgp: Option<BgpDesired>,
    /// The VXLAN device and its peers; `None` without a `vxlanMode` pool.
    pub vxlan: Option<VxlanDesired>,
}

/// Route protocol number of the routes felix owns (bgpd uses its own).
pub const ROUTE_PROTOCOL: u8 = 80;

/// The host side of a local workload's veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIface {
    /// Interface name (`cali` + 11 hex digits).
    pub name: String,
    /// The WorkloadEndpoint, `namespace/name`.
    pub endpoint: String,
    /// The workload's addresses (`/32`, `/128`).
    pub addrs: Vec<IpNet>,
    /// Its bandwidth limits (`qosControls`).
    pub shaping: Shaping,
}

/// A workload's bandwidth limits: to it (`ingress`, shaped as the host
/// side of its veth sends) and from it (`egress`, shaped on an ifb the
/// veth's incoming traffic is redirected to).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shaping {
    pub ingress: Option<api::resources::qos::Bandwidth>,
    pub egress: Option<api::resources::qos::Bandwidth>,
}

/// One kernel route felix owns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub dst: IpNet,
    pub target: RouteTarget,
}

/// Where a [`Route`] sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteTarget {
    /// Out of a local interface, scope link (a workload's veth).
    Interface(String),
    /// Dropped: a block affine to this host (its used addresses have
    /// more specific routes).
    Blackhole,
    /// Through a gateway on a device, `onlink` (VXLAN: the remote VTEP).
    Via { gateway: IpAddr, dev: String },
}

/// `natOutgoing`: traffic from `masquerade` to destinations outside every
/// pool in `pools` leaves with the host's address; the policy compiler's own
/// type, which the policy driver puts into the ruleset's config.
pub use policy::NatOutgoing;

/// What the in-process BGP speaker should be doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpDesired {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Set on a route reflector (`routeReflectorClusterID`).
    pub cluster_id: Option<Ipv4Addr>,
    pub listen_port: u16,
    /// Graceful restart time peers keep our routes for.
    pub restart_time: Duration,
    /// Peers by address: mesh, global and per-node BGPPeers merged.
    pub peers: BTreeMap<IpAddr, bgpd::speaker::PeerConfig>,
    /// Prefixes to originate: this host's blocks (aggregated), borrowed
    /// workload addresses and the service CIDRs of BGPConfiguration.
    pub announce: BTreeSet<IpNet>,
    /// Communities some of those carry (`prefixAdvertisements`).
    pub tags: BTreeMap<IpNet, PrefixTags>,
}

/// The communities an originated prefix carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrefixTags {
    pub communities: Vec<u32>,
    pub large_communities: Vec<bgpd::LargeCommunity>,
}

/// The `vxlan.calico` device and what it needs to reach other hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanDesired {
    pub vni: u32,
    pub port: u16,
    pub mtu: u32,
    /// This host's VTEP address (on the device, `/32`) and MAC.
    pub vtep: Ipv4Addr,
    pub mac: [u8; 6],
    /// The underlay address VXLAN packets leave from.
    pub underlay: IpAddr,
    /// The other hosts' VTEPs.
    pub remotes: Vec<VxlanRemote>,
}

/// Another host's VTEP: an ARP entry `vtep → mac` and an FDB entry
/// `mac → underlay` on the device (its blocks' routes are in
/// [`Desired::routes`], via `vtep`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VxlanRemote {
    pub node: String,
    pub vtep: Ipv4Addr,
    pub mac: [u8; 6],
    pub underlay: IpAddr,
}

/// Name of the VXLAN device (Calico's).
pub const VXLAN_DEVICE: &str = "vxlan.calico";

/// A dataplane driver: holds no desired state of its own beyond the last
/// [`Desired`] it was given, reads what the kernel has, and applies the
/// difference (level-triggered: applying the same `Desired` twice is a no-op;
/// a failed apply is retried with the next one).
#[async_trait::async_trait]
pub trait Driver: Send {
    /// Short name for logs and metrics (`routes`, `policy`, `bgp`, …).
    fn name(&self) -> &'static str;
    /// Where the driver goes in each pass.
    fn stage(&self) -> Stage;
    /// Makes the part of the dataplane this driver owns match `desired`.
    async fn apply(&mut self, desired: &Desired) -> Result<(), DriverError>;
    /// Whether the last apply left something waiting on the world outside
    /// felix (a workload's veth the CNI plugin has not created yet): the
    /// daemon applies the same `Desired` again shortly, with no change.
    fn pending(&self) -> bool {
        false
    }
}

/// The order drivers apply in, each pass: kernel routes and links first (a
/// workload's interface exists before its rules name it), then policy, then
/// BGP (routes are announced once they can be reached). Drivers of one
/// stage keep the order they were given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// What watches the dataplane rather than programs it (flow logs take
    /// the model first, to resolve what the ruleset about to be applied
    /// logs).
    Observe,
    /// Links, routes, conntrack, VXLAN.
    Kernel,
    /// The nftables ruleset.
    Policy,
    /// The BGP speaker.
    Bgp,
}

/// Whatever stopped a driver; the loop logs it and retries.
pub type DriverError = Box<dyn std::error::Error + Send + Sync>;

/// What the calculation knows about this host besides the datastore
/// (from the agent's own configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// This host's Node name.
    pub node: String,
    /// Run the BGP speaker (Calico's `CALICO_NETWORKING_BACKEND=bird`);
    /// `false` for VXLAN-only or policy-only hosts.
    pub bgp_enabled: bool,
    /// The ruleset logs each new connection's deciding rules to this
    /// NFLOG group (the `flowlog` module); `None`: no flow logs.
    pub flow_logs: Option<policy::flowlog::FlowLogs>,
}

/// The calculation's result: what to program, and what in the datastore it
/// could not use as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calculated {
    pub desired: Desired,
    pub problems: Vec<Problem>,
}

/// Something in the datastore the calculation could not use as written.
/// Displayed as `<resource>: <field>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The resource at fault: `Kind name` or `Kind namespace/name`
    /// (`WorkloadEndpoint default/pod-a`).
    pub resource: String,
    /// The field at fault (`spec.peerIP`), or empty for the whole resource.
    pub field: String,
    pub message: String,
}

/// What a [`Problem`] costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemKind {
    /// The resource, or a part of it (a peer, an address), is not used.
    Skipped,
    /// A field this project does not support; the rest is used without it.
    Unsupported,
    /// A value is used in a nearby way (a pool's host bits dropped,
    /// `CrossSubnet` as `Always`).
    Approximated,
    /// A feature is off on this host for want of something (its Node, an
    /// address, a VTEP): no BGP, no VXLAN, no policy.
    Disabled,
}

impl ProblemKind {
    /// The name metrics and listings use: `skipped`, `unsupported`, …
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Skipped => "skipped",
            ProblemKind::Unsupported => "unsupported",
            ProblemKind::Approximated => "approximated",
            ProblemKind::Disabled => "disabled",
        }
    }

    /// Every kind, in order.
    pub const ALL: [ProblemKind; 4] = [
        ProblemKind::Skipped,
        ProblemKind::Unsupported,
        ProblemKind::Approximated,
        ProblemKind::Disabled,
    ];
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.resource, self.message)
        } else {
            write!(f, "{}: {}: {}", self.resource, self.field, self.message)
        }
    }
}

/// The calculation's signature (`calc::calculate`), as the daemon takes it.
pub type Calculate = fn(&Snapshot, &HostSettings) -> Calculated;
