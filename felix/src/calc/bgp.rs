//! BGP: what the in-process speaker should do, from BGPConfiguration
//! `default`, this node's Node resource, the other Nodes (the node-to-node
//! mesh) and the BGPPeers that apply to this node.
//!
//! - Router ID: this node's `bgp.ipv4Address` (no BGP without one).
//! - Settings from BGPConfiguration `default` only (a per-node
//!   `node.<node>` one is a problem).
//! - AS: the node's `bgp.asNumber`, else the configuration's (64512).
//! - Mesh (`nodeToNodeMeshEnabled`, default on): every other Node's BGP
//!   address of a family this node has, at that node's AS.
//! - BGPPeers: global (no `node`, no `nodeSelector`), for this node
//!   (`node`), or selecting it (`nodeSelector`); each peers with `peerIP`
//!   (which may carry a port) at `asNumber` (default: ours), or with the BGP
//!   addresses of the other Nodes `peerSelector` selects, at their AS.
//!   A `peerSelector` peering goes both ways: a node the selector selects
//!   peers with every other node in the BGPPeer's scope (so `nodeSelector:
//!   all()`, `peerSelector: has(rr)` gives the reflectors their clients). A
//!   `peerIP` without a port that is a Node's address uses the listen port.
//!   Where two resolve to one address, a per-node BGPPeer wins over a
//!   global or selected one, which wins over the mesh (as in Calico, an
//!   explicit peer replaces the mesh session); ties go to the first by name.
//! - Route reflection: a node with `routeReflectorClusterID` gets that
//!   cluster ID, and its iBGP peers that are not route reflectors of the
//!   same cluster are its clients (as Calico's BIRD template does).
//! - Next hop (`nextHopMode`): `Auto`, the default, keeps the original
//!   toward iBGP peers and gives eBGP peers ours (as Calico); `Self`
//!   always ours; `Keep` (or the older `keepOriginalNextHop`) never.
//! - `keepaliveTime`: the hold time proposed is three times it, so that
//!   KEEPALIVEs go at that interval. `localASNumber`: the AS this node
//!   presents to the peer (in its OPEN, in front of the paths it sends,
//!   and in deciding iBGP or eBGP), as BIRD's `local as`.
//! - `filters`: the BGPFilters, in order, as the session's import and
//!   export filters (see `bgp_filter`); a missing one keeps the peer out.
//! - Originated: this host's blocks and borrowed addresses, and the
//!   `serviceClusterIPs`, `serviceExternalIPs` and `serviceLoadBalancerIPs`
//!   CIDRs (every node announces them, as Calico's); each carries the
//!   communities of the `prefixAdvertisements` whose `cidr` holds it.
//!   `ignoredInterfaces` changes nothing here: no interface is scanned for
//!   routes to export.
//! - Between two Calico nodes (mesh, `peerSelector`) only the end with the
//!   textually smaller address connects; the other is passive (Calico's
//!   unidirectional mesh, compared as Calico compares, so mixed clusters
//!   agree).
//! - Never a peer with one of this node's own addresses.
//!
//! Passwords from Kubernetes secrets (`secretKeyRef`) cannot be resolved: a
//! BGPPeer with one is not configured (its other end expects the key);
//! a mesh password is ignored (every node lacks it alike). BGPPeer fields
//! the speaker has no setting for are problems, and the peer is configured
//! without them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use api::resources::bgp::{
    DEFAULT_BGP_CONFIGURATION, NextHopMode, SourceAddress, parse_community, parse_peer_ip,
};
use api::selector::Selector;
use api::{BGPConfigurationSpec, BGPPeer, Kind, Node};
use bgpd::speaker::PeerConfig;
use ipnet::IpNet;

use super::inputs::Inputs;
use super::problems::{ProblemKind, Problems, subject};
use crate::state::{BgpDesired, PrefixTags};

/// Which of two peers on one address wins: the lower rank.
const RANK_THIS_NODE: u8 = 0;
const RANK_SELECTED_OR_GLOBAL: u8 = 1;
const RANK_MESH: u8 = 2;

/// Calico's default graceful restart time (`nodeMeshMaxRestartTime`).
pub const DEFAULT_RESTART_TIME: Duration = Duration::from_secs(120);

/// Why a peer is configured, as `calicoctl node status` lists its type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerKind {
    /// The node-to-node mesh: the other node's name.
    Mesh { node: String },
    /// A BGPPeer with neither `node` nor `nodeSelector`.
    Global { peer: String },
    /// A BGPPeer for this node (`node` or `nodeSelector`).
    Node { peer: String },
}

impl PeerKind {
    /// The peer type as Calico's `calicoctl node status` prints it.
    pub fn type_name(&self) -> &'static str {
        match self {
            PeerKind::Mesh { .. } => "node-to-node mesh",
            PeerKind::Global { .. } => "global",
            PeerKind::Node { .. } => "node specific",
        }
    }

    /// A one-line description: the type and the Node or BGPPeer behind it.
    pub fn description(&self) -> String {
        match self {
            PeerKind::Mesh { node } => format!("{} with node {node}", self.type_name()),
            PeerKind::Global { peer } | PeerKind::Node { peer } => {
                format!("{} BGPPeer {peer}", self.type_name())
            }
        }
    }
}

/// This node as a BGP speaker.
struct Us<'a> {
    node: &'a Node,
    asn: u32,
    v4: Ipv4Addr,
    v6: Option<Ipv6Addr>,
    cluster_id: Option<Ipv4Addr>,
}

impl Us<'_> {
    fn is_ours(&self, addr: IpAddr) -> bool {
        addr == IpAddr::V4(self.v4) || self.v6.is_some_and(|v6| addr == IpAddr::V6(v6))
    }

    /// Our address of `addr`'s family.
    fn source_for(&self, addr: IpAddr) -> Option<IpAddr> {
        match addr {
            IpAddr::V4(_) => Some(IpAddr::V4(self.v4)),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        }
    }
}

/// One session to set up.
#[derive(Debug, Clone)]
struct Peer {
    kind: PeerKind,
    addr: IpAddr,
    port: u16,
    asn: u32,
    /// The peer node's route reflector cluster, when the peer is a Node.
    cluster_id: Option<Ipv4Addr>,
    /// `nextHopMode`, or `keepOriginalNextHop` as `Keep`.
    next_hop: NextHopMode,
    /// BGPFilters, in order.
    filters: Vec<String>,
    /// `keepaliveTime`.
    keepalive: Option<Duration>,
    /// `localASNumber`: the AS we present to this peer.
    local_asn: Option<u32>,
    /// Connect from our BGP address of the peer's family.
    from_node_ip: bool,
    /// The peer is a Calico node that peers with us too (mesh or
    /// `peerSelector`): only one end connects (see [`peer_config`]).
    calico_node: bool,
}

/// The speaker's settings, or `None` (a problem says why) when this node
/// cannot run BGP.
pub(super) fn desired(
    inputs: &Inputs<'_>,
    node: &str,
    announce: BTreeSet<IpNet>,
    problems: &mut Problems,
) -> Option<BgpDesired> {
    let Some(me) = inputs.nodes.get(node).copied() else {
        problems.add(
            ProblemKind::Disabled,
            format!("Node {node}"),
            "",
            "not found: BGP needs this node's spec.bgp.ipv4Address; no BGP",
        );
        return None;
    };
    let who = subject(Kind::Node, &me.metadata);
    let config = inputs
        .bgp_configs
        .get(DEFAULT_BGP_CONFIGURATION)
        .map(|c| c.spec.clone())
        .unwrap_or_default();
    let node_config = format!("node.{node}");
    if let Some(c) = inputs.bgp_configs.get(node_config.as_str()) {
        problems.add(
            ProblemKind::Unsupported,
            subject(Kind::BGPConfiguration, &c.metadata),
            "",
            "per-node BGPConfiguration is not read; the default one applies",
        );
    }
    let (v4, v6) = bgp_addrs(me);
    let Some(v4) = v4 else {
        problems.add(
            ProblemKind::Disabled,
            &who,
            "spec.bgp.ipv4Address",
            "no IPv4 BGP address for the router ID; no BGP",
        );
        return None;
    };
    let cluster_id = me
        .spec
        .bgp
        .as_ref()
        .and_then(|b| b.route_reflector_cluster_id.as_deref())
        .and_then(|id| {
            id.parse()
                .map_err(|_| {
                    problems.add(
                        ProblemKind::Disabled,
                        &who,
                        "spec.bgp.routeReflectorClusterID",
                        format!("{id:?} is not a cluster ID in IPv4 form; not a route reflector"),
                    );
                })
                .ok()
        });
    let us = Us {
        node: me,
        asn: node_asn(me, &config),
        v4,
        v6,
        cluster_id,
    };

    let mut candidates: Vec<(u8, Peer)> = explicit_peers(inputs, &us, &config, problems);
    if config.node_to_node_mesh_enabled() {
        if config.node_mesh_password.is_some() {
            problems.add(ProblemKind::Unsupported,
                format!("BGPConfiguration {DEFAULT_BGP_CONFIGURATION}"),
                "spec.nodeMeshPassword",
                "secretKeyRef cannot be resolved (no Kubernetes secrets); the mesh runs without a password",
            );
        }
        candidates.extend(
            mesh_peers(inputs, &us, &config)
                .into_iter()
                .map(|p| (RANK_MESH, p)),
        );
    }
    let services = service_cidrs(&config);
    candidates.sort_by_key(|(rank, _)| *rank);
    let mut peers: BTreeMap<IpAddr, (PeerKind, PeerConfig)> = BTreeMap::new();
    for (rank, peer) in candidates {
        if us.is_ours(peer.addr) {
            continue;
        }
        let mut config = peer_config(&peer, &us);
        if !peer.filters.is_empty() {
            let who = peer_subject(&peer.kind);
            let ebgp = peer.asn != peer.local_asn(&us);
            match super::bgp_filter::policy(
                &peer.filters,
                &inputs.bgp_filters,
                ebgp,
                &who,
                problems,
            ) {
                Ok(policy) => config.policy = policy,
                Err(()) => continue,
            }
        }
        match peers.get(&peer.addr) {
            None => {
                peers.insert(peer.addr, (peer.kind, config));
            }
            Some((first, existing)) if rank < RANK_MESH && *existing != config => problems.add(
                ProblemKind::Skipped,
                peer_subject(&peer.kind),
                "spec.peerIP",
                format!(
                    "{} is already a peer ({}); ignored",
                    peer.addr,
                    first.description()
                ),
            ),
            Some(_) => {}
        }
    }
    Some(BgpDesired {
        asn: us.asn,
        router_id: v4,
        cluster_id,
        listen_port: config.listen_port(),
        restart_time: config
            .node_mesh_max_restart_time
            .map_or(DEFAULT_RESTART_TIME, |d| d.0),
        peers: peers.into_iter().map(|(a, (_, c))| (a, c)).collect(),
        tags: prefix_tags(&config, announce.iter().chain(&services)),
        announce: announce.into_iter().chain(services).collect(),
    })
}

/// The service CIDRs BGPConfiguration `default` has every node advertise
/// (`serviceClusterIPs`, `serviceExternalIPs`, `serviceLoadBalancerIPs`).
fn service_cidrs(config: &BGPConfigurationSpec) -> BTreeSet<IpNet> {
    config
        .service_cluster_ips
        .iter()
        .chain(&config.service_external_ips)
        .chain(&config.service_load_balancer_ips)
        .map(|s| s.cidr.0.trunc())
        .collect()
}

/// The communities each originated prefix carries: those of every
/// `prefixAdvertisements` entry whose `cidr` holds it (as BIRD's
/// `net ~ cidr`), by name from `communities` or as written.
fn prefix_tags<'a>(
    config: &BGPConfigurationSpec,
    prefixes: impl Iterator<Item = &'a IpNet>,
) -> BTreeMap<IpNet, PrefixTags> {
    let value_of = |c: &str| {
        config
            .communities
            .iter()
            .find(|d| d.name == c)
            .map_or(c, |d| d.value.as_str())
            .to_owned()
    };
    let mut out = BTreeMap::new();
    for prefix in prefixes {
        let mut tags = PrefixTags::default();
        for adv in config
            .prefix_advertisements
            .iter()
            .filter(|a| a.cidr.0.contains(prefix))
        {
            for c in &adv.communities {
                match parse_community(&value_of(c)).as_deref() {
                    Ok([a, b]) => bgpd::filter::add_all(&mut tags.communities, &[(a << 16) | b]),
                    Ok([global, local1, local2]) => bgpd::filter::add_all(
                        &mut tags.large_communities,
                        &[bgpd::LargeCommunity {
                            global: *global,
                            local1: *local1,
                            local2: *local2,
                        }],
                    ),
                    _ => {}
                }
            }
        }
        if tags != PrefixTags::default() {
            out.insert(*prefix, tags);
        }
    }
    out
}

impl Peer {
    /// The AS we present to this peer.
    fn local_asn(&self, us: &Us<'_>) -> u32 {
        self.local_asn.unwrap_or(us.asn)
    }
}

/// The one place a [`Peer`] becomes the speaker's [`PeerConfig`].
fn peer_config(peer: &Peer, us: &Us<'_>) -> PeerConfig {
    let ibgp = peer.asn == peer.local_asn(us);
    let mut c = PeerConfig::new(peer.addr, peer.asn);
    c.local_asn = peer.local_asn.filter(|a| *a != us.asn);
    c.port = peer.port;
    c.local = peer
        .from_node_ip
        .then(|| us.source_for(peer.addr))
        .flatten();
    c.next_hop_self = match peer.next_hop {
        NextHopMode::Auto => !ibgp,
        NextHopMode::NextHopSelf => true,
        NextHopMode::Keep => false,
    };
    if let Some(k) = peer.keepalive {
        // The speaker sends KEEPALIVEs every third of the hold time.
        c.hold_time = u16::try_from(k.as_secs().saturating_mul(3)).unwrap_or(u16::MAX);
    }
    c.route_reflector_client = ibgp && us.cluster_id.is_some() && peer.cluster_id != us.cluster_id;
    // Between two Calico nodes only the one with the (textually) smaller
    // address connects, as Calico's BIRD configuration makes the mesh
    // unidirectional: both ends decide alike, so exactly one is passive.
    c.passive = peer.calico_node
        && us
            .source_for(peer.addr)
            .is_some_and(|ours| peer.addr.to_string() > ours.to_string());
    // `calicoctl node status` shows it as the PEER TYPE, as Calico does.
    c.description = Some(peer.kind.type_name().to_string());
    c
}

/// `BGPPeer name` or `Node name`, for problems.
fn peer_subject(kind: &PeerKind) -> String {
    match kind {
        PeerKind::Mesh { node } => format!("Node {node}"),
        PeerKind::Global { peer } | PeerKind::Node { peer } => format!("BGPPeer {peer}"),
    }
}

/// A node's BGP addresses, each only if of the right family.
fn bgp_addrs(n: &Node) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let Some(bgp) = &n.spec.bgp else {
        return (None, None);
    };
    let v4 = bgp.ipv4_address.and_then(|c| match c.0.addr() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    });
    let v6 = bgp.ipv6_address.and_then(|c| match c.0.addr() {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    });
    (v4, v6)
}

/// A node's BGP addresses of the families `us` has.
fn peer_addrs(n: &Node, us: &Us<'_>) -> Vec<IpAddr> {
    let (v4, v6) = bgp_addrs(n);
    let v6 = v6.filter(|_| us.v6.is_some());
    v4.map(IpAddr::V4)
        .into_iter()
        .chain(v6.map(IpAddr::V6))
        .collect()
}

fn node_asn(n: &Node, config: &BGPConfigurationSpec) -> u32 {
    n.spec
        .bgp
        .as_ref()
        .and_then(|b| b.as_number)
        .unwrap_or(config.as_number())
        .0
}

fn node_cluster_id(n: &Node) -> Option<Ipv4Addr> {
    n.spec
        .bgp
        .as_ref()?
        .route_reflector_cluster_id
        .as_deref()?
        .parse()
        .ok()
}

/// Every other node with a BGP address, as mesh peers.
fn mesh_peers(inputs: &Inputs<'_>, us: &Us<'_>, config: &BGPConfigurationSpec) -> Vec<Peer> {
    let mut peers = Vec::new();
    for (name, n) in &inputs.nodes {
        if *name == us.node.metadata.name {
            continue;
        }
        for addr in peer_addrs(n, us) {
            peers.push(Peer {
                kind: PeerKind::Mesh {
                    node: name.to_string(),
                },
                addr,
                port: config.listen_port(),
                asn: node_asn(n, config),
                cluster_id: node_cluster_id(n),
                next_hop: NextHopMode::Auto,
                filters: Vec::new(),
                keepalive: None,
                local_asn: None,
                from_node_ip: true,
                calico_node: true,
            });
        }
    }
    peers
}

/// The BGPPeers that apply to this node, ranked. A BGPPeer with a
/// `peerSelector` peers the nodes in its scope with the nodes it selects in
/// both directions (as Calico does: `nodeSelector: all()`, `peerSelector:
/// rr == 'true'` gives the route reflectors their clients too).
fn explicit_peers(
    inputs: &Inputs<'_>,
    us: &Us<'_>,
    config: &BGPConfigurationSpec,
    problems: &mut Problems,
) -> Vec<(u8, Peer)> {
    let mut out = Vec::new();
    for p in &inputs.bgp_peers {
        let who = subject(Kind::BGPPeer, &p.metadata);
        let s = &p.spec;
        let name = p.metadata.name.clone();
        let scope = match Scope::read(p) {
            Ok(scope) => scope,
            Err(e) => {
                problems.add(
                    ProblemKind::Skipped,
                    &who,
                    "spec.nodeSelector",
                    format!("{e}; peer not configured"),
                );
                continue;
            }
        };
        let peer_selector = if s.peer_ip.is_empty() && !s.peer_selector.is_empty() {
            match Selector::parse(&s.peer_selector) {
                Ok(sel) => Some(sel),
                Err(e) => {
                    problems.add(
                        ProblemKind::Skipped,
                        &who,
                        "spec.peerSelector",
                        format!("{e}; peer not configured"),
                    );
                    continue;
                }
            }
        } else {
            None
        };
        let forward = scope.includes(us.node);
        let reverse = peer_selector
            .as_ref()
            .is_some_and(|sel| sel.matches(&us.node.metadata.labels));
        if !forward && !reverse {
            continue;
        }
        if s.password.is_some() {
            problems.add(
                ProblemKind::Unsupported,
                &who,
                "spec.password",
                "secretKeyRef cannot be resolved (no Kubernetes secrets); peer not configured",
            );
            continue;
        }
        note_unsupported(p, &who, problems);
        let (rank, kind) = match scope {
            Scope::Node(_) if forward => (RANK_THIS_NODE, PeerKind::Node { peer: name }),
            Scope::Global => (RANK_SELECTED_OR_GLOBAL, PeerKind::Global { peer: name }),
            _ => (RANK_SELECTED_OR_GLOBAL, PeerKind::Node { peer: name }),
        };
        let template = Peer {
            kind,
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: config.listen_port(),
            asn: s.as_number.map_or(us.asn, |a| a.0),
            cluster_id: None,
            next_hop: match (s.next_hop_mode, s.keep_original_next_hop) {
                (Some(mode), _) => mode,
                (None, true) => NextHopMode::Keep,
                (None, false) => NextHopMode::Auto,
            },
            filters: s.filters.clone(),
            keepalive: s.keepalive_time.map(|d| d.0),
            local_asn: s.local_as_number.map(|a| a.0),
            from_node_ip: s.source_address != Some(SourceAddress::None),
            calico_node: false,
        };
        if let Some(sel) = &peer_selector {
            // The nodes the selector selects (forward) and the nodes in
            // the BGPPeer's scope (reverse).
            let is_peer = |n: &Node| {
                (forward && sel.matches(&n.metadata.labels)) || (reverse && scope.includes(n))
            };
            for (name, n) in &inputs.nodes {
                if *name == us.node.metadata.name || !is_peer(n) {
                    continue;
                }
                for addr in peer_addrs(n, us) {
                    let peer = Peer {
                        addr,
                        asn: node_asn(n, config),
                        cluster_id: node_cluster_id(n),
                        calico_node: true,
                        ..template.clone()
                    };
                    out.push((rank, peer));
                }
            }
        } else if s.peer_ip.is_empty() {
            problems.add(
                ProblemKind::Skipped,
                &who,
                "spec.peerIP",
                "either peerIP or peerSelector is required; peer not configured",
            );
        } else {
            match parse_peer_ip(&s.peer_ip) {
                Ok((addr, port)) => {
                    // A Calico node listens on the configured port.
                    let node = node_with_addr(inputs, addr);
                    let port = port.unwrap_or(match node {
                        Some(_) => config.listen_port(),
                        None => api::resources::bgp::DEFAULT_LISTEN_PORT,
                    });
                    let cluster_id = node.and_then(node_cluster_id);
                    out.push((
                        rank,
                        Peer {
                            addr,
                            port,
                            cluster_id,
                            ..template
                        },
                    ));
                }
                Err(e) => problems.add(
                    ProblemKind::Skipped,
                    &who,
                    "spec.peerIP",
                    format!("{e}; peer not configured"),
                ),
            }
        }
    }
    out
}

/// The nodes a BGPPeer applies to.
enum Scope {
    /// No `node` and no `nodeSelector`: every node.
    Global,
    /// `node`.
    Node(String),
    /// `nodeSelector`.
    Selected(Selector),
}

impl Scope {
    fn read(p: &BGPPeer) -> Result<Scope, api::selector::SelectorError> {
        let s = &p.spec;
        Ok(if !s.node.is_empty() {
            Scope::Node(s.node.clone())
        } else if !s.node_selector.is_empty() {
            Scope::Selected(Selector::parse(&s.node_selector)?)
        } else {
            Scope::Global
        })
    }

    fn includes(&self, n: &Node) -> bool {
        match self {
            Scope::Global => true,
            Scope::Node(name) => n.metadata.name == *name,
            Scope::Selected(sel) => sel.matches(&n.metadata.labels),
        }
    }
}

/// The Node whose BGP address is `addr`.
fn node_with_addr<'a>(inputs: &Inputs<'a>, addr: IpAddr) -> Option<&'a Node> {
    inputs.nodes.values().copied().find(|n| {
        let (v4, v6) = bgp_addrs(n);
        v4.map(IpAddr::V4) == Some(addr) || v6.map(IpAddr::V6) == Some(addr)
    })
}

/// Problems for the BGPPeer fields the speaker has no setting for.
fn note_unsupported(p: &BGPPeer, who: &str, problems: &mut Problems) {
    let s = &p.spec;
    for (field, set) in [
        ("spec.maxRestartTime", s.max_restart_time.is_some()),
        (
            "spec.numAllowedLocalASNumbers",
            s.num_allowed_local_as_numbers.is_some(),
        ),
        ("spec.ttlSecurity", s.ttl_security.is_some()),
    ] {
        if set {
            problems.add(
                ProblemKind::Unsupported,
                who,
                field,
                "not supported; the peer is configured without it",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calc::fixtures::{node, snapshot, snapshot_unvalidated};
    use crate::state::Snapshot;

    fn run(snap: &Snapshot) -> (Option<BgpDesired>, Vec<String>) {
        let mut problems = Problems::default();
        let announce = BTreeSet::from(["10.0.0.0/26".parse().unwrap()]);
        let out = desired(&Inputs::read(snap), "host-a", announce, &mut problems);
        (out, problems.into_lines())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn bgp_peer(name: &str, spec: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n---\n"
        )
    }

    fn bgp_config(spec: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{{spec}}}\n---\n"
        )
    }

    /// host-a and host-b dual-stack, host-c IPv4 only.
    fn mesh_nodes() -> String {
        [
            node("host-a", "192.168.0.1/24", "    ipv6Address: fd00::1/64\n"),
            node("host-b", "192.168.0.2/24", "    ipv6Address: fd00::2/64\n"),
            node("host-c", "192.168.0.3/24", ""),
        ]
        .concat()
    }

    #[test]
    fn the_mesh_peers_with_every_other_node_per_family_with_calicos_defaults() {
        let (d, problems) = run(&snapshot(&mesh_nodes()));
        assert!(problems.is_empty(), "{problems:?}");
        let d = d.expect("BGP");
        assert_eq!(d.asn, 64512);
        assert_eq!(d.router_id, Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(
            (d.listen_port, d.restart_time, d.cluster_id),
            (179, DEFAULT_RESTART_TIME, None)
        );
        assert_eq!(d.announce.len(), 1);
        assert_eq!(
            d.peers.keys().copied().collect::<Vec<_>>(),
            [ip("192.168.0.2"), ip("192.168.0.3"), ip("fd00::2")]
        );
        let mut expected = PeerConfig::new(ip("fd00::2"), 64512);
        expected.local = Some(ip("fd00::1"));
        expected.passive = true; // "fd00::2" > "fd00::1": host-b connects to us.
        expected.description = Some("node-to-node mesh".into());
        assert_eq!(d.peers[&ip("fd00::2")], expected);
        assert_eq!(d.peers[&ip("192.168.0.3")].local, Some(ip("192.168.0.1")));
    }

    #[test]
    fn bgp_configuration_and_the_node_set_as_port_restart_time_and_mesh() {
        let yaml = [
            bgp_config("asNumber: 65000, listenPort: 1790, nodeMeshMaxRestartTime: 300s"),
            node("host-a", "192.168.0.1/24", "    asNumber: 65001\n"),
            node("host-b", "192.168.0.2/24", ""),
        ]
        .concat();
        let d = run(&snapshot(&yaml)).0.expect("BGP");
        assert_eq!((d.asn, d.listen_port), (65001, 1790));
        assert_eq!(d.restart_time, Duration::from_secs(300));
        // host-b is at the cluster's AS: eBGP from our 65001, to its port.
        let b = &d.peers[&ip("192.168.0.2")];
        assert_eq!((b.asn, b.port, b.next_hop_self), (65000, 1790, true));

        let off = bgp_config("nodeToNodeMeshEnabled: false") + &mesh_nodes();
        assert!(run(&snapshot(&off)).0.expect("BGP").peers.is_empty());
    }

    #[test]
    fn bgp_peers_apply_globally_per_node_and_by_node_selector() {
        let yaml = [
            bgp_config("nodeToNodeMeshEnabled: false"),
            mesh_nodes(),
            // (name, spec): which apply to host-a is in `expected` below.
            bgp_peer("global-tor", "peerIP: \"10.9.0.1:1790\", asNumber: 65100"),
            bgp_peer("mine", "node: host-a, peerIP: \"[fd00::9]:1791\", asNumber: 64512"),
            bgp_peer("theirs", "node: host-b, peerIP: 10.9.0.2, asNumber: 65100"),
            bgp_peer("selected", "nodeSelector: name == 'host-a', peerIP: 10.9.0.3, asNumber: 65100, keepOriginalNextHop: true"),
            bgp_peer("not-selected", "nodeSelector: name == 'host-b', peerIP: 10.9.0.4, asNumber: 65100"),
            bgp_peer("to-c", "peerSelector: \"name in {'host-a', 'host-c'}\""),
            bgp_peer("to-self", "peerIP: 192.168.0.1, asNumber: 64512"),
            bgp_peer("no-source", "peerIP: 10.9.0.5, asNumber: 65100, sourceAddress: None"),
        ]
        .concat();
        let (d, problems) = run(&snapshot(&yaml));
        assert!(problems.is_empty(), "{problems:?}");
        let d = d.expect("BGP");
        // (address, port, AS, next-hop-self, local address, passive)
        let v4 = Some(ip("192.168.0.1"));
        let expected: Vec<(IpAddr, u16, u32, bool, Option<IpAddr>, bool)> = vec![
            (ip("10.9.0.1"), 1790, 65100, true, v4, false),
            (ip("10.9.0.3"), 179, 65100, false, v4, false),
            (ip("10.9.0.5"), 179, 65100, true, None, false),
            // to-c selects host-a too, and is global: every node peers
            // with host-a, so host-a peers with every node.
            (ip("192.168.0.2"), 179, 64512, false, v4, true),
            (ip("192.168.0.3"), 179, 64512, false, v4, true),
            (ip("fd00::2"), 179, 64512, false, Some(ip("fd00::1")), true),
            (
                ip("fd00::9"),
                1791,
                64512,
                false,
                Some(ip("fd00::1")),
                false,
            ),
        ];
        let got: Vec<_> = d
            .peers
            .values()
            .map(|p| (p.addr, p.port, p.asn, p.next_hop_self, p.local, p.passive))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn an_explicit_peer_replaces_the_mesh_session_to_the_same_address() {
        let yaml =
            mesh_nodes() + &bgp_peer("b-over", "peerIP: \"192.168.0.2:1790\", asNumber: 64512");
        let (d, problems) = run(&snapshot(&yaml));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(d.expect("BGP").peers[&ip("192.168.0.2")].port, 1790);
    }

    #[test]
    fn two_explicit_peers_on_one_address_keep_the_per_node_one_and_report_the_other() {
        let yaml = mesh_nodes()
            + &bgp_peer("a-global", "peerIP: 10.9.0.1, asNumber: 65100")
            + &bgp_peer("z-node", "node: host-a, peerIP: 10.9.0.1, asNumber: 65200");
        let (d, problems) = run(&snapshot(&yaml));
        assert_eq!(d.expect("BGP").peers[&ip("10.9.0.1")].asn, 65200);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("BGPPeer a-global: spec.peerIP: 10.9.0.1 is already a peer (node specific BGPPeer z-node)"));
    }

    #[test]
    fn a_route_reflector_takes_ibgp_peers_outside_its_cluster_as_clients() {
        let yaml = [
            node(
                "host-a",
                "192.168.0.1/24",
                "    routeReflectorClusterID: 1.0.0.1\n",
            ),
            node("host-b", "192.168.0.2/24", ""),
            node(
                "host-c",
                "192.168.0.3/24",
                "    routeReflectorClusterID: 1.0.0.1\n",
            ),
            node(
                "host-d",
                "192.168.0.4/24",
                "    routeReflectorClusterID: 2.0.0.2\n",
            ),
            bgp_peer("tor", "peerIP: 10.9.0.1, asNumber: 65100"),
            bgp_peer("ibgp-box", "peerIP: 10.9.0.2, asNumber: 64512"),
        ]
        .concat();
        let d = run(&snapshot(&yaml)).0.expect("BGP");
        assert_eq!(d.cluster_id, Some(Ipv4Addr::new(1, 0, 0, 1)));
        let clients: Vec<(IpAddr, bool)> = d
            .peers
            .values()
            .map(|p| (p.addr, p.route_reflector_client))
            .collect();
        assert_eq!(
            clients,
            [
                (ip("10.9.0.1"), false),
                (ip("10.9.0.2"), true),
                (ip("192.168.0.2"), true),
                (ip("192.168.0.3"), false),
                (ip("192.168.0.4"), true),
            ]
        );
    }

    #[test]
    fn what_bgp_cannot_use_is_a_problem() {
        // (case, documents, whether BGP still runs, problem text)
        let cases = [
            ("no node", node("host-b", "192.168.0.2/24", ""), false, "Node host-a: not found"),
            (
                "no IPv4 address",
                "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: host-a}\nspec:\n  bgp: {ipv6Address: fd00::1/64}\n".into(),
                false,
                "Node host-a: spec.bgp.ipv4Address: no IPv4 BGP address",
            ),
            (
                "bad cluster ID",
                node("host-a", "192.168.0.1/24", "    routeReflectorClusterID: nope\n"),
                true,
                "spec.bgp.routeReflectorClusterID: \"nope\" is not a cluster ID",
            ),
            (
                "password",
                mesh_nodes() + &bgp_peer("secret", "peerIP: 10.9.0.1, asNumber: 65100, password: {secretKeyRef: {name: s, key: k}}"),
                true,
                "BGPPeer secret: spec.password: secretKeyRef cannot be resolved",
            ),
            (
                "mesh password",
                mesh_nodes() + &bgp_config("nodeMeshPassword: {secretKeyRef: {name: s, key: k}}"),
                true,
                "spec.nodeMeshPassword: secretKeyRef cannot be resolved",
            ),
            (
                "bad selector",
                mesh_nodes() + &bgp_peer("broken", "nodeSelector: \"a ==\", peerIP: 10.9.0.1, asNumber: 65100"),
                true,
                "BGPPeer broken: spec.nodeSelector:",
            ),
            (
                "bad peer IP",
                mesh_nodes() + &bgp_peer("broken", "peerIP: not-an-ip, asNumber: 65100"),
                true,
                "BGPPeer broken: spec.peerIP:",
            ),
            (
                "per-node configuration",
                mesh_nodes()
                    + "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: node.host-a}\nspec: {listenPort: 1790}\n",
                true,
                "BGPConfiguration node.host-a: per-node BGPConfiguration is not read",
            ),
            (
                "missing filter",
                mesh_nodes() + &bgp_peer("filtered", "peerIP: 10.9.0.1, asNumber: 65100, filters: [f]"),
                true,
                "BGPPeer filtered: spec.filters: BGPFilter \"f\" does not exist; peer not configured",
            ),
        ];
        for (case, yaml, runs, text) in cases {
            let (d, problems) = run(&snapshot_unvalidated(&yaml));
            assert_eq!(d.is_some(), runs, "{case}");
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(text) || p.contains(text)),
                "{case}: {problems:?}"
            );
            if case == "password" || case == "missing filter" {
                assert!(!d.unwrap().peers.contains_key(&ip("10.9.0.1")), "{case}");
            }
        }
    }

    #[test]
    fn a_peer_ip_without_a_port_uses_the_listen_port_when_it_is_a_calico_node() {
        let yaml = [
            bgp_config("nodeToNodeMeshEnabled: false, listenPort: 1790"),
            mesh_nodes(),
            bgp_peer("to-b", "peerIP: 192.168.0.2, asNumber: 64512"),
            bgp_peer("tor", "peerIP: 10.9.0.1, asNumber: 65100"),
        ]
        .concat();
        let d = run(&snapshot(&yaml)).0.expect("BGP");
        assert_eq!(d.peers[&ip("192.168.0.2")].port, 1790);
        assert_eq!(d.peers[&ip("10.9.0.1")].port, 179);
    }

    #[test]
    fn a_peer_selector_peers_both_ways_so_reflectors_get_their_clients() {
        let yaml = [
            bgp_config("nodeToNodeMeshEnabled: false"),
            node(
                "host-a",
                "192.168.0.1/24",
                "    routeReflectorClusterID: 1.0.0.1\n",
            ),
            node("host-b", "192.168.0.2/24", ""),
            node("host-c", "192.168.0.3/24", ""),
            bgp_peer("to-rr", "nodeSelector: all(), peerSelector: has(rr)"),
        ]
        .concat()
        .replace("labels: {name: host-a}", "labels: {name: host-a, rr: \"\"}");
        let snap = snapshot(&yaml);
        // (this node, its peers as (address, route reflector client))
        let cases: [(&str, &[(&str, bool)]); 2] = [
            ("host-a", &[("192.168.0.2", true), ("192.168.0.3", true)]),
            ("host-b", &[("192.168.0.1", false)]),
        ];
        for (this, expected) in cases {
            let mut problems = Problems::default();
            let d =
                desired(&Inputs::read(&snap), this, BTreeSet::new(), &mut problems).expect("BGP");
            let got: Vec<(IpAddr, bool)> = d
                .peers
                .values()
                .map(|p| (p.addr, p.route_reflector_client))
                .collect();
            let expected: Vec<(IpAddr, bool)> = expected.iter().map(|(a, c)| (ip(a), *c)).collect();
            assert_eq!(got, expected, "{this}");
        }
    }

    #[test]
    fn between_calico_nodes_the_textually_smaller_address_connects() {
        // (our address, the other node's, whether we wait for it)
        let cases = [
            ("10.0.0.1", "10.0.0.2", true),
            ("10.0.0.2", "10.0.0.1", false),
            // Textual, as Calico compares: "10.0.0.5" > "10.0.0.10".
            ("10.0.0.10", "10.0.0.5", true),
            ("10.0.0.5", "10.0.0.10", false),
        ];
        for (ours, theirs, passive) in cases {
            let yaml = node("host-a", ours, "") + &node("host-b", theirs, "");
            let d = run(&snapshot(&yaml)).0.expect("BGP");
            assert_eq!(d.peers[&ip(theirs)].passive, passive, "{ours} vs {theirs}");
        }
        // An explicit peer always connects.
        let yaml =
            node("host-a", "10.0.0.1", "") + &bgp_peer("tor", "peerIP: 10.0.0.9, asNumber: 65100");
        let d = run(&snapshot(&yaml)).0.expect("BGP");
        assert!(!d.peers[&ip("10.0.0.9")].passive);
    }

    #[test]
    fn peer_kinds_describe_themselves_as_calicoctl_lists_them() {
        let cases = [
            (
                PeerKind::Mesh { node: "b".into() },
                "node-to-node mesh",
                "node-to-node mesh with node b",
            ),
            (
                PeerKind::Global { peer: "tor".into() },
                "global",
                "global BGPPeer tor",
            ),
            (
                PeerKind::Node { peer: "rr".into() },
                "node specific",
                "node specific BGPPeer rr",
            ),
        ];
        for (kind, type_name, description) in cases {
            assert_eq!(
                (kind.type_name(), kind.description().as_str()),
                (type_name, description)
            );
        }
    }

    #[test]
    fn next_hop_mode_keepalive_services_and_their_communities() {
        let yaml = mesh_nodes()
            + &bgp_peer(
                "keep",
                "peerIP: 10.9.0.1, asNumber: 65100, nextHopMode: Keep, keepaliveTime: 20s",
            )
            + &bgp_peer(
                "self",
                "peerIP: 10.9.0.2, asNumber: 64512, nextHopMode: Self",
            )
            + &bgp_peer("auto", "peerIP: 10.9.0.3, asNumber: 65100")
            + &bgp_config(
                "serviceClusterIPs: [{cidr: 10.96.0.0/12}], serviceExternalIPs: [{cidr: 192.0.2.0/24}], \
                 communities: [{name: svc, value: '65000:96'}], \
                 prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [svc, '65000:1:2']}]",
            );
        let (d, problems) = run(&snapshot(&yaml));
        assert!(problems.is_empty(), "{problems:?}");
        let d = d.unwrap();
        let peer = |a: &str| &d.peers[&ip(a)];
        assert!(!peer("10.9.0.1").next_hop_self, "Keep toward eBGP");
        assert_eq!(peer("10.9.0.1").hold_time, 60);
        assert!(peer("10.9.0.2").next_hop_self, "Self toward iBGP");
        assert!(peer("10.9.0.3").next_hop_self && peer("10.9.0.3").hold_time == 90);
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        for p in ["10.0.0.0/26", "10.96.0.0/12", "192.0.2.0/24"] {
            assert!(d.announce.contains(&net(p)), "{p}: {:?}", d.announce);
        }
        // The block and the cluster IPs are in 10.0.0.0/8; 192.0.2.0/24 not.
        let tags = &d.tags[&net("10.96.0.0/12")];
        assert_eq!(tags.communities, vec![(65000 << 16) | 96]);
        assert_eq!(tags.large_communities.len(), 1);
        assert_eq!(d.tags[&net("10.0.0.0/26")], *tags);
        assert!(!d.tags.contains_key(&net("192.0.2.0/24")));
    }
}
