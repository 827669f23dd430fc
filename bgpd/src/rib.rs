//! The routing information bases (RFC 4271 §3.2, §9) as a pure data
//! structure: Adj-RIB-In of every peer, the Loc-RIB with best-path
//! selection (§9.1.2), and the Adj-RIB-Out of every peer computed from it
//! (§9.1.3), with iBGP split horizon and route reflection (RFC 4456).
//!
//! # Data layout
//!
//! One table maps each prefix to the paths known for it, from peers and
//! from local origination; a peer's Adj-RIB-In is its paths in that table
//! (as in BIRD, one table with routes tagged by source). The best path is
//! kept at index 0 of each prefix's list, so the Loc-RIB costs nothing
//! extra. Attributes are interned: every path holds an `Arc<RouteAttrs>`
//! shared by all prefixes announced with the same attributes. A prefix with
//! one path costs one 32-byte B-tree entry (IPv4: a 5-byte key and the path
//! inline, no heap allocation of its own); each further path 16 bytes in a
//! vector. `examples/rib_load.rs` measures about 62 bytes of peak RSS per
//! route for a million IPv4 prefixes.
//! The Adj-RIB-Out is not stored: [`Rib::export`] derives it
//! deterministically from the best path and the peer's settings, and the
//! owner of the RIB compares the export of the old and the new best path
//! of each [`Change`] to know what to send.
//!
//! Routes that fail the import checks (AS path loop, our ORIGINATOR_ID, our
//! cluster ID in CLUSTER_LIST) or the peer's import filter stay in the
//! Adj-RIB-In marked rejected, so they count as received but never become
//! best. A path the import filter changed (say, LOCAL_PREF) is stored as
//! changed, with the attributes as received kept aside, so that a new
//! filter ([`Rib::set_policy`]) re-evaluates the Adj-RIB-In without a
//! ROUTE-REFRESH. Export filters, the communities added per peer and the
//! well-known communities (RFC 1997) apply in [`Rib::export_route`].
//!
//! Removing a peer scans the whole table once; every other operation
//! costs in proportion to the prefixes it touches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::attr::{AsPath, NextHop, Origin, PathAttrs};
use crate::filter::{self, PeerPolicy, Route, RouteSource, Verdict};
use crate::prefix::{AfiSafi, Prefix};
use ipnet::{Ipv4Net, Ipv6Net};

/// LOCAL_PREF assumed when a path has none (RFC 4271 §5.1.5 leaves the
/// value to configuration; 100 is what BIRD, FRR and GoBGP use).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// A peer, as the RIB numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u32);

/// A map keyed by peer, looked up for every path compared in a decision:
/// a multiplicative hash of the number, not SipHash (peer numbers are ours,
/// not an attacker's).
type PeerMap<V> = HashMap<PeerId, V, std::hash::BuildHasherDefault<PeerHasher>>;

/// Fibonacci hashing of a peer number (see [`PeerMap`]).
#[derive(Debug, Default, Clone, Copy)]
struct PeerHasher(u64);

impl std::hash::Hasher for PeerHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Where a path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Originated by this speaker (`announce`).
    Local,
    Peer(PeerId),
}

/// The attributes of a route: path attributes and next hop. NEXT_HOP is
/// held in `next_hop` only; `attrs.next_hop` stays `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteAttrs {
    pub attrs: PathAttrs,
    pub next_hop: NextHop,
}

/// The source number of [`Source::Local`] inside a [`Path`]; peer IDs
/// stay below it.
const LOCAL_SOURCE: u32 = u32::MAX;

/// One path to a prefix: 16 bytes (the source packed into a `u32`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    source: u32,
    rejected: bool,
    pub route: Arc<RouteAttrs>,
}

impl Path {
    /// A path from `source`. Peer ID `u32::MAX` is reserved.
    pub fn new(source: Source, rejected: bool, route: Arc<RouteAttrs>) -> Path {
        let source = match source {
            Source::Local => LOCAL_SOURCE,
            Source::Peer(PeerId(id)) => {
                debug_assert!(id != LOCAL_SOURCE, "peer ID u32::MAX is reserved");
                id
            }
        };
        Path {
            source,
            rejected,
            route,
        }
    }

    pub fn source(&self) -> Source {
        match self.source {
            LOCAL_SOURCE => Source::Local,
            id => Source::Peer(PeerId(id)),
        }
    }

    #[cfg(any(test, feature = "testing"))]
    /// Failed an import check: kept in the Adj-RIB-In, never selected.
    pub fn rejected(&self) -> bool {
        self.rejected
    }

    fn is_from(&self, source: Source) -> bool {
        self.source() == source
    }

    /// Same source and the very same interned attributes.
    fn same(&self, other: &Path) -> bool {
        self.source == other.source
            && self.rejected == other.rejected
            && Arc::ptr_eq(&self.route, &other.route)
    }
}

/// The paths of one prefix, without a heap allocation for the usual
/// single path. Index 0 is the best path when any is eligible.
#[derive(Debug, Clone)]
enum Paths {
    One(Path),
    Many(Vec<Path>),
}

impl Paths {
    fn as_slice(&self) -> &[Path] {
        match self {
            Paths::One(p) => std::slice::from_ref(p),
            Paths::Many(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Path] {
        match self {
            Paths::One(p) => std::slice::from_mut(p),
            Paths::Many(v) => v,
        }
    }

    fn push(&mut self, path: Path) {
        match self {
            Paths::Many(v) => v.push(path),
            Paths::One(first) => {
                let first = first.clone();
                *self = Paths::Many(vec![first, path]);
            }
        }
    }

    /// Removes path `i`; with it, whether none is left.
    fn take(&mut self, i: usize) -> (Path, bool) {
        match self {
            Paths::One(p) => (p.clone(), true),
            Paths::Many(v) => {
                let gone = v.swap_remove(i);
                if v.len() == 1
                    && let Some(last) = v.pop()
                {
                    *self = Paths::One(last);
                }
                (gone, false)
            }
        }
    }
}

/// Prefix to paths, one B-tree per family so that an IPv4 entry takes 32
/// bytes (a 5-byte key, the path inline). B-trees rather than hash maps:
/// no rehash doubling the memory at the moment it is largest, ordered
/// iteration, and faster loading of the mostly sorted tables peers send.
#[derive(Debug, Default)]
struct Table {
    v4: BTreeMap<Ipv4Net, Paths>,
    v6: BTreeMap<Ipv6Net, Paths>,
}

impl Table {
    #[cfg(any(test, feature = "testing"))]
    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    fn get(&self, prefix: &Prefix) -> Option<&Paths> {
        match prefix {
            Prefix::V4(n) => self.v4.get(n),
            Prefix::V6(n) => self.v6.get(n),
        }
    }

    fn get_mut(&mut self, prefix: &Prefix) -> Option<&mut Paths> {
        match prefix {
            Prefix::V4(n) => self.v4.get_mut(n),
            Prefix::V6(n) => self.v6.get_mut(n),
        }
    }

    fn insert(&mut self, prefix: Prefix, paths: Paths) {
        match prefix {
            Prefix::V4(n) => self.v4.insert(n, paths),
            Prefix::V6(n) => self.v6.insert(n, paths),
        };
    }

    fn remove(&mut self, prefix: &Prefix) {
        match prefix {
            Prefix::V4(n) => self.v4.remove(n),
            Prefix::V6(n) => self.v6.remove(n),
        };
    }

    fn iter(&self) -> impl Iterator<Item = (Prefix, &[Path])> + '_ {
        let v4 = self.v4.iter().map(|(k, v)| (Prefix::V4(*k), v.as_slice()));
        let v6 = self.v6.iter().map(|(k, v)| (Prefix::V6(*k), v.as_slice()));
        v4.chain(v6)
    }
}

/// Speaker-wide settings that routing depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RibConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// CLUSTER_ID for route reflection (RFC 4456 §7); the router ID if `None`.
    pub cluster_id: Option<Ipv4Addr>,
    /// Compare MED between paths from different neighbour ASes.
    pub always_compare_med: bool,
    /// The most equal-best paths a prefix's ECMP set (its multipath kernel
    /// route) holds, best first: BIRD's `merge paths on limit N`, FRR's
    /// `maximum-paths`. 1 is the best path only; [`ALL_PATHS`] no limit.
    pub max_paths: usize,
}

/// [`RibConfig::max_paths`] without a limit (the default).
pub const ALL_PATHS: usize = usize::MAX;

impl RibConfig {
    fn cluster_id(&self) -> Ipv4Addr {
        self.cluster_id.unwrap_or(self.router_id)
    }
}

/// What the RIB knows about an established peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub addr: IpAddr,
    pub asn: u32,
    /// The BGP Identifier from the peer's OPEN.
    pub router_id: Ipv4Addr,
    /// Our IPv4 address as the peer sees it: the next hop we send.
    pub local_v4: Option<Ipv4Addr>,
    /// Our IPv6 address for IPv6 next hops.
    pub local_v6: Option<Ipv6Addr>,
    /// Families negotiated on the session.
    pub families: Vec<AfiSafi>,
    /// Set ourselves as next hop on iBGP (Calico's node mesh).
    pub next_hop_self: bool,
    /// This iBGP peer is a route-reflector client of ours (RFC 4456).
    pub route_reflector_client: bool,
    /// The AS we present to this peer: the speaker's, or the peer's own
    /// local AS (Calico's `localASNumber`, BIRD's `local as`). The session
    /// is iBGP when the peer's AS equals it.
    pub local_asn: u32,
}

impl PeerInfo {
    /// Whether the session is iBGP.
    pub fn is_ibgp(&self) -> bool {
        self.asn == self.local_asn
    }
}

/// Per-peer Adj-RIB-In counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InCounts {
    /// Prefixes in the peer's Adj-RIB-In.
    pub received: usize,
    /// Of those, the ones that passed the import checks.
    pub accepted: usize,
}

/// The best path of a prefix changed (or its ECMP set may have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub prefix: Prefix,
    pub old: Option<Path>,
    pub new: Option<Path>,
}

impl Change {
    /// Whether the best path changed (otherwise only the ECMP set did,
    /// which the kernel cares about and no peer does).
    pub fn best_changed(&self) -> bool {
        match (&self.old, &self.new) {
            (Some(a), Some(b)) => !a.same(b),
            (None, None) => false,
            _ => true,
        }
    }
}

#[derive(Debug, Default)]
struct Interner {
    set: HashSet<Arc<RouteAttrs>>,
    /// Size after the last sweep: sweep when the set doubles.
    swept_at: usize,
}

impl Interner {
    fn intern(&mut self, route: RouteAttrs) -> Arc<RouteAttrs> {
        if let Some(a) = self.set.get(&route) {
            return a.clone();
        }
        if self.set.len() >= 2 * self.swept_at.max(512) {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.swept_at = self.set.len();
        }
        let a = Arc::new(route);
        self.set.insert(a.clone());
        a
    }
}

/// Adj-RIBs-In, Loc-RIB and the export rules.
#[derive(Debug)]
pub struct Rib {
    config: RibConfig,
    peers: PeerMap<PeerInfo>,
    counts: PeerMap<InCounts>,
    table: Table,
    interner: Interner,
    /// Import/export policy per peer, kept across sessions.
    policies: PeerMap<Arc<PeerPolicy>>,
    /// The attributes as received of the paths an import filter changed.
    originals: HashMap<(PeerId, Prefix), Arc<RouteAttrs>>,
}

fn local_pref(r: &RouteAttrs) -> u32 {
    r.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
}

fn as_path_len(r: &RouteAttrs) -> usize {
    r.attrs.as_path.as_ref().map_or(0, |p| p.length())
}

fn origin(r: &RouteAttrs) -> Origin {
    r.attrs.origin.unwrap_or(Origin::Incomplete)
}

/// Keeps the candidates for which `key` is minimal.
fn keep_min<K: Ord>(paths: &[Path], cand: &mut Vec<usize>, key: impl Fn(&Path) -> K) {
    if cand.len() < 2 {
        return;
    }
    // Each key once: some are map lookups.
    let keys: Vec<K> = cand.iter().map(|&i| key(&paths[i])).collect();
    if let Some(min) = keys.iter().min() {
        let mut k = keys.iter();
        cand.retain(|_| k.next() == Some(min));
    }
}

/// Step d's survivors: of `(group, MED, index)` triples, the indices whose
/// MED is the lowest of their group, in index order. Sorted by group and
/// MED, each group's first MED is that lowest: k log k for k paths, where
/// comparing every pair would cost k².
fn lowest_med_of_each_group(mut keyed: Vec<(u32, u32, usize)>) -> Vec<usize> {
    keyed.sort_unstable();
    let mut out = Vec::with_capacity(keyed.len());
    let mut lowest = None;
    for (group, med, i) in keyed {
        match lowest {
            Some((g, m)) if g == group => {
                if med == m {
                    out.push(i);
                }
            }
            _ => {
                lowest = Some((group, med));
                out.push(i);
            }
        }
    }
    out.sort_unstable();
    out
}

/// The next hops of an ECMP set, in its order, each once.
fn hops_of(set: &[&Path]) -> Vec<IpAddr> {
    let all = set.iter().map(|p| p.route.next_hop.addr());
    if set.len() <= 8 {
        let mut out: Vec<IpAddr> = Vec::with_capacity(set.len());
        for a in all {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        return out;
    }
    // Many: sorted to find the repeats, each kept where it first came.
    let mut order: Vec<(IpAddr, usize)> = all.zip(0..).collect();
    order.sort_unstable();
    order.dedup_by_key(|(a, _)| *a);
    order.sort_unstable_by_key(|(_, i)| *i);
    order.into_iter().map(|(a, _)| a).collect()
}

impl Rib {
    pub fn new(config: RibConfig) -> Self {
        Rib {
            config,
            peers: PeerMap::default(),
            counts: PeerMap::default(),
            table: Table::default(),
            interner: Interner::default(),
            policies: PeerMap::default(),
            originals: HashMap::new(),
        }
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn config(&self) -> &RibConfig {
        &self.config
    }

    pub fn peer(&self, id: PeerId) -> Option<&PeerInfo> {
        self.peers.get(&id)
    }

    #[cfg(any(test, feature = "testing"))]
    /// The number of prefixes with at least one path.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    #[cfg(any(test, feature = "testing"))]
    /// The number of distinct interned attribute sets (for introspection).
    pub fn interned_attrs(&self) -> usize {
        self.interner.set.len()
    }

    pub fn counts(&self, id: PeerId) -> InCounts {
        self.counts.get(&id).copied().unwrap_or_default()
    }

    fn is_ibgp(&self, source: Source) -> bool {
        match source {
            Source::Local => false,
            Source::Peer(p) => self.peers.get(&p).is_some_and(PeerInfo::is_ibgp),
        }
    }

    /// The neighbour AS of a path for MED comparison (RFC 4271 §9.1.2.2 c):
    /// the first AS of the path, or our own for a path with none.
    fn neighbour_as(&self, path: &Path) -> u32 {
        path.route
            .attrs
            .as_path
            .as_ref()
            .and_then(|p| p.asns().next())
            .unwrap_or(self.config.asn)
    }

    /// The identifier compared in step f (RFC 4456 §9: ORIGINATOR_ID
    /// stands in for the router ID of a reflected path).
    fn router_id_of(&self, path: &Path) -> u32 {
        let id = match path.source() {
            Source::Local => self.config.router_id,
            Source::Peer(p) => path
                .route
                .attrs
                .originator_id
                .or_else(|| self.peers.get(&p).map(|i| i.router_id))
                .unwrap_or(Ipv4Addr::BROADCAST),
        };
        u32::from(id)
    }

    fn peer_addr_of(&self, path: &Path) -> IpAddr {
        match path.source() {
            Source::Local => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Source::Peer(p) => self
                .peers
                .get(&p)
                .map_or(IpAddr::V4(Ipv4Addr::BROADCAST), |i| i.addr),
        }
    }

    /// Steps a to e of RFC 4271 §9.1.2.2: the paths equal for routing
    /// purposes, from which the ECMP set is drawn. Indices into `paths`.
    fn equal_best(&self, paths: &[Path]) -> Vec<usize> {
        let mut cand: Vec<usize> = (0..paths.len()).filter(|&i| !paths[i].rejected).collect();
        // a. highest LOCAL_PREF (the degree of preference, §9.1.1).
        keep_min(paths, &mut cand, |p| {
            std::cmp::Reverse(local_pref(&p.route))
        });
        // b. shortest AS_PATH.
        keep_min(paths, &mut cand, |p| as_path_len(&p.route));
        // c. lowest ORIGIN.
        keep_min(paths, &mut cand, |p| origin(&p.route));
        // d. MED, between paths from the same neighbour AS unless
        //    always-compare; a missing MED is 0. Done as the RFC says, by
        //    removing every path beaten by another (MED is not a total order).
        //    A path is beaten exactly when its MED is above the lowest of
        //    its group (its neighbour AS, or all).
        if cand.len() > 1 {
            let keyed: Vec<(u32, u32, usize)> = cand
                .iter()
                .map(|&i| {
                    let p = &paths[i];
                    let group = if self.config.always_compare_med {
                        0
                    } else {
                        self.neighbour_as(p)
                    };
                    (group, p.route.attrs.med.unwrap_or(0), i)
                })
                .collect();
            cand = lowest_med_of_each_group(keyed);
        }
        // e. eBGP (and local) over iBGP.
        keep_min(paths, &mut cand, |p| self.is_ibgp(p.source()));
        cand
    }

    /// The full decision (RFC 4271 §9.1.2.2 f, g with RFC 4456 §9):
    /// lowest router ID or ORIGINATOR_ID, shortest CLUSTER_LIST, lowest
    /// peer address.
    fn decide(&self, paths: &[Path]) -> Option<usize> {
        // The usual single path: no candidate lists to build.
        if let [only] = paths {
            return (!only.rejected).then_some(0);
        }
        let mut cand = self.equal_best(paths);
        keep_min(paths, &mut cand, |p| self.router_id_of(p));
        keep_min(paths, &mut cand, |p| p.route.attrs.cluster_list.len());
        keep_min(paths, &mut cand, |p| self.peer_addr_of(p));
        cand.first().copied()
    }

    /// Re-runs the decision for `prefix` after its paths changed and
    /// reports a change if its best path did.
    fn reselect(&mut self, prefix: Prefix, old: Option<Path>, out: &mut Vec<Change>) {
        let winner = self
            .table
            .get(&prefix)
            .and_then(|paths| self.decide(paths.as_slice()));
        if let (Some(i), Some(paths)) = (winner, self.table.get_mut(&prefix)) {
            paths.as_mut_slice().swap(0, i);
        }
        let new = self.best_of(&prefix);
        let change = Change { prefix, old, new };
        // A new or lost equal path changes the ECMP set, not the best one;
        // with the best path only, nothing changed for anyone.
        let multipath = self.config.max_paths > 1;
        if change.best_changed() || (multipath && change.new.is_some()) {
            out.push(change);
        }
    }

    fn best_of(&self, prefix: &Prefix) -> Option<Path> {
        self.best(prefix).cloned()
    }

    /// Puts `path` in place of the path of its source (or adds it).
    fn put(&mut self, prefix: Prefix, path: Path, out: &mut Vec<Change>) {
        let old = self.best_of(&prefix);
        let source = path.source();
        let rejected = path.rejected;
        let previous = match self.table.get_mut(&prefix) {
            None => {
                self.table.insert(prefix, Paths::One(path));
                None
            }
            Some(paths) => match paths.as_mut_slice().iter_mut().find(|p| p.is_from(source)) {
                Some(slot) => Some(std::mem::replace(slot, path)),
                None => {
                    paths.push(path);
                    None
                }
            },
        };
        if let Source::Peer(id) = source {
            let c = self.counts.entry(id).or_default();
            match previous {
                None => c.received += 1,
                Some(ref p) if !p.rejected => c.accepted -= 1,
                Some(_) => {}
            }
            if !rejected {
                c.accepted += 1;
            }
        }
        self.reselect(prefix, old, out);
    }

    /// Removes the path of `source` for `prefix`, if any.
    fn remove(&mut self, prefix: Prefix, source: Source, out: &mut Vec<Change>) {
        let old = self.best_of(&prefix);
        let Some(paths) = self.table.get_mut(&prefix) else {
            return;
        };
        let Some(i) = paths.as_slice().iter().position(|p| p.is_from(source)) else {
            return;
        };
        let (gone, empty) = paths.take(i);
        if empty {
            self.table.remove(&prefix);
        }
        if let Source::Peer(id) = source {
            if !self.originals.is_empty() {
                self.originals.remove(&(id, prefix));
            }
            let c = self.counts.entry(id).or_default();
            c.received -= 1;
            if !gone.rejected {
                c.accepted -= 1;
            }
        }
        self.reselect(prefix, old, out);
    }

    /// Why a path from `peer` fails import, if it does: AS path loop on
    /// eBGP (RFC 4271 §9.1.2), our ORIGINATOR_ID or CLUSTER_ID on iBGP
    /// (RFC 4456 §8).
    fn import_rejects(&self, peer: &PeerInfo, attrs: &PathAttrs) -> bool {
        if !peer.is_ibgp() {
            // Our AS, and the one we present to this peer, if another.
            attrs
                .as_path
                .as_ref()
                .is_some_and(|p| p.asns().any(|a| a == self.config.asn || a == peer.local_asn))
        } else {
            attrs.originator_id == Some(self.config.router_id)
                || attrs.cluster_list.contains(&self.config.cluster_id())
        }
    }

    /// A peer reached Established. Paths it left behind (kept as stale by
    /// graceful restart) stay, with their counts.
    pub fn peer_up(&mut self, id: PeerId, info: PeerInfo) {
        self.peers.insert(id, info);
        self.counts.entry(id).or_default();
    }

    /// A peer's session ended: its Adj-RIB-In is dropped.
    pub fn peer_down(&mut self, id: PeerId) -> Vec<Change> {
        let mut out = Vec::new();
        let prefixes: Vec<Prefix> = self
            .table
            .iter()
            .filter(|(_, paths)| paths.iter().any(|p| p.is_from(Source::Peer(id))))
            .map(|(k, _)| k)
            .collect();
        for prefix in prefixes {
            self.remove(prefix, Source::Peer(id), &mut out);
        }
        self.peers.remove(&id);
        self.counts.remove(&id);
        out
    }

    /// A peer was de-configured: as [`Rib::peer_down`], and its policy is
    /// forgotten too.
    pub fn remove_peer(&mut self, id: PeerId) -> Vec<Change> {
        let out = self.peer_down(id);
        self.policies.remove(&id);
        out
    }

    /// Applies an UPDATE from `peer`: `announced` prefixes with their next
    /// hops share `attrs`; `withdrawn` prefixes are removed. Announcements
    /// from a peer that is not up are ignored.
    pub fn update(
        &mut self,
        peer: PeerId,
        attrs: &PathAttrs,
        announced: &[(Prefix, NextHop)],
        withdrawn: &[Prefix],
    ) -> Vec<Change> {
        let mut out = Vec::new();
        for p in withdrawn {
            self.remove(*p, Source::Peer(peer), &mut out);
        }
        let Some(info) = self.peers.get(&peer) else {
            return out;
        };
        let looped = self.import_rejects(info, attrs);
        let peer_as = info.asn;
        let policy = self.policies.get(&peer).cloned();
        let mut memo = HashMap::new();
        let mut base = attrs.clone();
        base.next_hop = None;
        // Interned once per distinct next hop in this UPDATE.
        let mut routes: Vec<Arc<RouteAttrs>> = Vec::new();
        for (prefix, next_hop) in announced {
            let route = match routes.iter().find(|r| r.next_hop == *next_hop) {
                Some(r) => r.clone(),
                None => {
                    let r = self.interner.intern(RouteAttrs {
                        attrs: base.clone(),
                        next_hop: *next_hop,
                    });
                    routes.push(r.clone());
                    r
                }
            };
            let (imported, rejected) = self.import_route(
                *prefix,
                &route,
                looped,
                policy.as_deref(),
                peer_as,
                &mut memo,
            );
            self.put(
                *prefix,
                Path::new(Source::Peer(peer), rejected, imported.clone()),
                &mut out,
            );
            self.keep_original(peer, *prefix, route, &imported);
        }
        out
    }

    /// Runs `policy`'s import filter on a path as received: the path to
    /// store and whether it is rejected. Changed attributes are interned
    /// once per (attributes, deciding rule) through `memo`.
    fn import_route(
        &mut self,
        prefix: Prefix,
        received: &Arc<RouteAttrs>,
        looped: bool,
        policy: Option<&PeerPolicy>,
        peer_as: u32,
        memo: &mut HashMap<(*const RouteAttrs, Verdict), Arc<RouteAttrs>>,
    ) -> (Arc<RouteAttrs>, bool) {
        let Some(filter) = policy.map(|p| &p.import).filter(|f| !f.is_accept_all()) else {
            return (received.clone(), looped);
        };
        if looped {
            return (received.clone(), true);
        }
        let verdict = filter.evaluate(&Route {
            prefix,
            attrs: &received.attrs,
            source: RouteSource::Peer,
        });
        if !verdict.modifies(filter) {
            return (received.clone(), !verdict.accept);
        }
        let key = (Arc::as_ptr(received), verdict);
        if let Some(r) = memo.get(&key) {
            return (r.clone(), false);
        }
        let mut changed = (**received).clone();
        filter.apply(verdict, &mut changed.attrs, peer_as, true);
        let r = self.interner.intern(changed);
        memo.insert(key, r.clone());
        (r, false)
    }

    /// Remembers the attributes as received of a path the import filter
    /// changed (and forgets them when it did not).
    fn keep_original(
        &mut self,
        peer: PeerId,
        prefix: Prefix,
        received: Arc<RouteAttrs>,
        stored: &Arc<RouteAttrs>,
    ) {
        if !Arc::ptr_eq(&received, stored) {
            self.originals.insert((peer, prefix), received);
        } else if !self.originals.is_empty() {
            self.originals.remove(&(peer, prefix));
        }
    }

    /// Sets `peer`'s import and export policy. A changed import filter is
    /// run again over the peer's Adj-RIB-In (paths as received), so paths
    /// it now rejects leave the Loc-RIB and paths it now accepts enter it;
    /// the changes to the Loc-RIB are returned. What a changed export
    /// policy means for the peer is for the caller to send: compare
    /// [`Rib::adj_rib_out`] before and after ([`Outgoing::changes_from`]).
    pub fn set_policy(&mut self, peer: PeerId, policy: PeerPolicy) -> Vec<Change> {
        let policy = Arc::new(policy);
        let old = self.policies.insert(peer, policy.clone());
        let mut out = Vec::new();
        if old
            .as_deref()
            .map_or(policy.import.is_accept_all(), |o| o.import == policy.import)
        {
            return out;
        }
        let Some(info) = self.peers.get(&peer) else {
            return out;
        };
        let peer_as = info.asn;
        let paths: Vec<(Prefix, Arc<RouteAttrs>, Path)> = self
            .adj_rib_in(peer)
            .map(|(prefix, path)| {
                let received = self
                    .originals
                    .get(&(peer, prefix))
                    .unwrap_or(&path.route)
                    .clone();
                (prefix, received, path.clone())
            })
            .collect();
        let mut memo = HashMap::new();
        for (prefix, received, current) in paths {
            let looped = self
                .peers
                .get(&peer)
                .is_some_and(|info| self.import_rejects(info, &received.attrs));
            let (route, rejected) =
                self.import_route(prefix, &received, looped, Some(&policy), peer_as, &mut memo);
            if Arc::ptr_eq(&route, &current.route) && rejected == current.rejected {
                continue;
            }
            self.put(
                prefix,
                Path::new(Source::Peer(peer), rejected, route.clone()),
                &mut out,
            );
            self.keep_original(peer, prefix, received, &route);
        }
        out
    }

    /// Originates `prefix` with `attrs` (ORIGIN, communities, MED...). The
    /// next hop is ours on every export. Replaces an earlier origination.
    pub fn originate(&mut self, prefix: Prefix, attrs: PathAttrs) -> Vec<Change> {
        let next_hop = match prefix {
            Prefix::V4(_) => NextHop::V4(Ipv4Addr::UNSPECIFIED),
            Prefix::V6(_) => NextHop::V6 {
                global: Ipv6Addr::UNSPECIFIED,
                link_local: None,
            },
        };
        let mut attrs = attrs;
        attrs.next_hop = None;
        if attrs.origin.is_none() {
            attrs.origin = Some(Origin::Igp);
        }
        let route = self.interner.intern(RouteAttrs { attrs, next_hop });
        let mut out = Vec::new();
        self.put(prefix, Path::new(Source::Local, false, route), &mut out);
        out
    }

    /// Stops originating `prefix`.
    pub fn withdraw_local(&mut self, prefix: Prefix) -> Vec<Change> {
        let mut out = Vec::new();
        self.remove(prefix, Source::Local, &mut out);
        out
    }

    /// The Loc-RIB entry of `prefix`.
    pub fn best(&self, prefix: &Prefix) -> Option<&Path> {
        self.table
            .get(prefix)
            .and_then(|v| v.as_slice().first())
            .filter(|p| !p.rejected)
    }

    /// The equal-best paths of `prefix` that the kernel may share traffic
    /// over: the paths tied with the best one through step e of §9.1.2.2
    /// (multipath), best first, at most [`RibConfig::max_paths`]. Empty when
    /// the best path is local.
    pub fn ecmp(&self, prefix: &Prefix) -> Vec<&Path> {
        let Some(paths) = self.table.get(prefix).map(Paths::as_slice) else {
            return Vec::new();
        };
        let max = self.config.max_paths.max(1);
        let equal = if paths.len() > 1 && max > 1 {
            self.equal_best(paths)
        } else {
            vec![0]
        };
        let mut set = Self::ecmp_of(paths, &equal);
        set.truncate(max);
        set
    }

    /// [`Rib::ecmp`] of `paths` (best first), given their equal-best set.
    fn ecmp_of<'p>(paths: &'p [Path], equal: &[usize]) -> Vec<&'p Path> {
        if paths
            .first()
            .is_none_or(|p| p.rejected || p.is_from(Source::Local))
        {
            return Vec::new();
        }
        if let [only] = paths {
            return vec![only];
        }
        let mut set: Vec<&Path> = equal
            .iter()
            .map(|&i| &paths[i])
            .filter(|p| !p.is_from(Source::Local))
            .collect();
        set.sort_by_key(|p| !std::ptr::eq(*p, &paths[0]));
        set
    }

    /// The next hops the kernel should use for `prefix` (the ECMP set's,
    /// deduplicated), empty when there is no learned best path.
    pub fn fib_next_hops(&self, prefix: &Prefix) -> Vec<IpAddr> {
        hops_of(&self.ecmp(prefix))
    }

    /// Every Loc-RIB entry, unordered.
    pub fn loc_rib(&self) -> impl Iterator<Item = (Prefix, &Path)> + '_ {
        self.table
            .iter()
            .filter_map(|(k, v)| v.first().filter(|p| !p.rejected).map(|p| (k, p)))
    }

    /// A peer's Adj-RIB-In, unordered.
    pub fn adj_rib_in(&self, id: PeerId) -> impl Iterator<Item = (Prefix, &Path)> + '_ {
        self.table.iter().filter_map(move |(k, v)| {
            v.iter()
                .find(|p| p.is_from(Source::Peer(id)))
                .map(|p| (k, p))
        })
    }

    /// What we advertise to `to` for a Loc-RIB path, or `None` (RFC 4271
    /// §9.1.3, RFC 4456 §6):
    /// - never back to the peer it came from, nor in a family the session
    ///   did not negotiate, nor without a next hop of that family;
    /// - iBGP to iBGP only by reflection: from a client to anyone, from a
    ///   non-client to clients; a reflected path gets ORIGINATOR_ID (if
    ///   unset) and our CLUSTER_ID prepended to CLUSTER_LIST;
    /// - to eBGP: our AS prepended, next hop ours, LOCAL_PREF, MED of
    ///   learned paths (§5.1.4), ORIGINATOR_ID and CLUSTER_LIST dropped;
    /// - to iBGP: LOCAL_PREF set, next hop kept unless the path is local
    ///   or the peer is configured next-hop-self.
    pub fn export_path(&self, to: PeerId, path: &Path) -> Option<RouteAttrs> {
        let peer = self.peers.get(&to)?;
        if path.rejected || path.is_from(Source::Peer(to)) {
            return None;
        }
        let family = match path.route.next_hop {
            NextHop::V4(_) => AfiSafi::IPV4_UNICAST,
            NextHop::V6 { .. } => AfiSafi::IPV6_UNICAST,
        };
        if !peer.families.contains(&family) {
            return None;
        }
        let to_ibgp = peer.is_ibgp();
        let from_ibgp = self.is_ibgp(path.source());
        let source_peer = match path.source() {
            Source::Peer(p) => self.peers.get(&p),
            Source::Local => None,
        };
        let mut attrs = path.route.attrs.clone();
        let local = path.is_from(Source::Local);
        let mut self_next_hop = local || !to_ibgp || peer.next_hop_self;
        if to_ibgp {
            if from_ibgp {
                let from_client = source_peer.is_some_and(|s| s.route_reflector_client);
                if !from_client && !peer.route_reflector_client {
                    return None;
                }
                if attrs.originator_id.is_none() {
                    attrs.originator_id = source_peer.map(|s| s.router_id);
                }
                attrs.cluster_list.insert(0, self.config.cluster_id());
                // RFC 4456 §10: a reflector does not change the next hop.
                self_next_hop = false;
            }
            attrs.local_pref = Some(local_pref(&path.route));
        } else {
            attrs.local_pref = None;
            attrs.originator_id = None;
            attrs.cluster_list.clear();
            if !local {
                attrs.med = None;
            }
            let mut as_path = attrs.as_path.take().unwrap_or_default();
            as_path.prepend(peer.local_asn);
            attrs.as_path = Some(as_path);
        }
        if to_ibgp && attrs.as_path.is_none() {
            attrs.as_path = Some(Default::default());
        }
        let next_hop = if self_next_hop {
            match family {
                AfiSafi::IPV4_UNICAST => NextHop::V4(peer.local_v4?),
                _ => NextHop::V6 {
                    global: peer.local_v6?,
                    link_local: None,
                },
            }
        } else {
            path.route.next_hop
        };
        Some(RouteAttrs { attrs, next_hop })
    }

    /// [`Rib::export_path`] under `to`'s policy: nothing if the path
    /// carries NO_ADVERTISE, or NO_EXPORT / NO_EXPORT_SUBCONFED toward an
    /// eBGP peer (RFC 1997), or if the export filter rejects it; else the
    /// filter's modifications applied to what we send (a prepend goes
    /// behind our own AS, as in BIRD) and the peer's communities and large
    /// communities added.
    pub fn export_route(&self, to: PeerId, prefix: Prefix, path: &Path) -> Option<RouteAttrs> {
        let peer = self.peers.get(&to)?;
        let (to_ibgp, our_as) = (peer.is_ibgp(), peer.local_asn);
        if !filter::communities_allow_export(&path.route.attrs.communities, to_ibgp) {
            return None;
        }
        let mut out = self.export_path(to, path)?;
        let Some(policy) = self.policies.get(&to) else {
            return Some(out);
        };
        if !policy.export.is_accept_all() {
            let verdict = policy.export.evaluate(&Route {
                prefix,
                attrs: &path.route.attrs,
                source: match path.source() {
                    Source::Local => RouteSource::Local,
                    Source::Peer(_) => RouteSource::Peer,
                },
            });
            if !verdict.accept {
                return None;
            }
            // The filter sees the path before our own AS goes in front
            // toward eBGP, as BIRD's export filters do: what it prepends
            // comes after our AS.
            let own = if to_ibgp {
                None
            } else {
                out.attrs.as_path.as_mut().and_then(AsPath::pop_first)
            };
            policy
                .export
                .apply(verdict, &mut out.attrs, our_as, to_ibgp);
            if let Some(asn) = own {
                out.attrs
                    .as_path
                    .get_or_insert_with(Default::default)
                    .prepend(asn);
            }
        }
        filter::add_all(&mut out.attrs.communities, &policy.communities);
        filter::add_all(&mut out.attrs.large_communities, &policy.large_communities);
        Some(out)
    }

    #[cfg(any(test, feature = "testing"))]
    /// The Adj-RIB-Out entry of `prefix` for `to`.
    pub fn export(&self, to: PeerId, prefix: &Prefix) -> Option<RouteAttrs> {
        self.best(prefix)
            .and_then(|p| self.export_route(to, *prefix, p))
    }

    /// The whole Adj-RIB-Out of `to`, grouped by attributes for packing:
    /// what a new session or a ROUTE-REFRESH gets.
    pub fn adj_rib_out(&self, to: PeerId) -> Outgoing {
        let mut exporter = Exporter::new(self, to);
        for (prefix, path) in self.loc_rib() {
            exporter.add(prefix, Some(path));
        }
        exporter.finish()
    }
}

/// What to send one peer for a batch of changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// Announcements grouped by identical attributes and next hop.
    pub announce: Vec<(RouteAttrs, Vec<Prefix>)>,
    pub withdraw: Vec<Prefix>,
    /// How many announced prefixes were not advertised before (the rest
    /// replace an earlier advertisement).
    pub added: usize,
}

impl Outgoing {
    pub fn is_empty(&self) -> bool {
        self.announce.is_empty() && self.withdraw.is_empty()
    }

    /// What to send a peer whose whole Adj-RIB-Out was `old` and is now
    /// `self`: the prefixes whose export changed, withdrawals of those no
    /// longer exported; `added` counts the newly exported.
    pub fn changes_from(self, old: &Outgoing) -> Outgoing {
        let before: HashMap<Prefix, &RouteAttrs> = old
            .announce
            .iter()
            .flat_map(|(a, ps)| ps.iter().map(move |p| (*p, a)))
            .collect();
        let mut now = HashSet::new();
        let mut out = Outgoing::default();
        for (attrs, prefixes) in self.announce {
            now.extend(prefixes.iter().copied());
            out.added += prefixes.iter().filter(|p| !before.contains_key(p)).count();
            let changed: Vec<Prefix> = prefixes
                .into_iter()
                .filter(|p| before.get(p) != Some(&&attrs))
                .collect();
            if !changed.is_empty() {
                out.announce.push((attrs, changed));
            }
        }
        out.withdraw = old
            .announce
            .iter()
            .flat_map(|(_, ps)| ps.iter().copied())
            .filter(|p| !now.contains(p))
            .collect();
        out
    }
}

/// Turns Loc-RIB paths into one peer's Adj-RIB-Out entries, computing the
/// export of each interned attribute set once per batch.
#[derive(Debug)]
pub struct Exporter<'a> {
    rib: &'a Rib,
    to: PeerId,
    /// Export groups by (attributes, source), and by prefix too when the
    /// peer's export filter looks at prefixes.
    memo: HashMap<(*const RouteAttrs, u32, Option<Prefix>), Option<usize>>,
    by_prefix: bool,
    out: Outgoing,
}

impl<'a> Exporter<'a> {
    pub fn new(rib: &'a Rib, to: PeerId) -> Self {
        Exporter {
            rib,
            to,
            memo: HashMap::new(),
            by_prefix: rib
                .policies
                .get(&to)
                .is_some_and(|p| p.export.uses_prefix()),
            out: Outgoing::default(),
        }
    }

    fn group(&mut self, prefix: Prefix, path: &Path) -> Option<usize> {
        let key = (
            Arc::as_ptr(&path.route),
            path.source,
            self.by_prefix.then_some(prefix),
        );
        if let Some(g) = self.memo.get(&key) {
            return *g;
        }
        let g = self.rib.export_route(self.to, prefix, path).map(|attrs| {
            match self.out.announce.iter().position(|(a, _)| *a == attrs) {
                Some(i) => i,
                None => {
                    self.out.announce.push((attrs, Vec::new()));
                    self.out.announce.len() - 1
                }
            }
        });
        self.memo.insert(key, g);
        g
    }

    /// Adds the current export of `prefix` given its best path.
    pub fn add(&mut self, prefix: Prefix, best: Option<&Path>) {
        if let Some(g) = best.and_then(|p| self.group(prefix, p)) {
            self.out.announce[g].1.push(prefix);
            self.out.added += 1;
        }
    }

    /// Adds one change: an announcement if the new export differs from the
    /// old one, a withdrawal if the prefix is no longer exported.
    pub fn add_change(&mut self, change: &Change) {
        let old = change
            .old
            .as_ref()
            .and_then(|p| self.group(change.prefix, p));
        let new = change
            .new
            .as_ref()
            .and_then(|p| self.group(change.prefix, p));
        match (old, new) {
            (_, Some(g)) if old != new => {
                self.out.announce[g].1.push(change.prefix);
                if old.is_none() {
                    self.out.added += 1;
                }
            }
            (Some(_), None) => self.out.withdraw.push(change.prefix),
            _ => {}
        }
    }

    pub fn finish(mut self) -> Outgoing {
        self.out.announce.retain(|(_, v)| !v.is_empty());
        self.out
    }
}

#[cfg(test)]
mod med_tests {
    use proptest::prelude::*;

    proptest! {
        /// The sorted MED step keeps exactly the paths no path of their
        /// group beats, as RFC 4271's pairwise wording says.
        #[test]
        fn the_lowest_med_of_each_group_is_the_pairwise_rule(
            keys in proptest::collection::vec((0u32..4, 0u32..5), 0..40)
        ) {
            let keyed: Vec<(u32, u32, usize)> =
                keys.iter().enumerate().map(|(i, &(g, m))| (g, m, i)).collect();
            let pairwise: Vec<usize> = keyed
                .iter()
                .filter(|(g, m, _)| !keyed.iter().any(|(h, n, _)| h == g && n < m))
                .map(|&(_, _, i)| i)
                .collect();
            prop_assert_eq!(super::lowest_med_of_each_group(keyed), pairwise);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AsPath;

    const US: u32 = 65000;

    fn config() -> RibConfig {
        RibConfig {
            asn: US,
            router_id: Ipv4Addr::new(10, 0, 0, 100),
            cluster_id: None,
            always_compare_med: false,
            max_paths: ALL_PATHS,
        }
    }

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn nh(s: &str) -> NextHop {
        NextHop::V4(v4(s))
    }

    fn peer(n: u8, asn: u32) -> PeerInfo {
        PeerInfo {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)),
            asn,
            router_id: Ipv4Addr::new(192, 0, 2, n),
            local_v4: Some(v4("10.0.0.100")),
            local_v6: Some("2001:db8::100".parse().unwrap()),
            families: vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST],
            next_hop_self: false,
            route_reflector_client: false,
            local_asn: US,
        }
    }

    fn attrs(path: &[u32]) -> PathAttrs {
        PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(path.to_vec())),
            ..PathAttrs::default()
        }
    }

    fn rib_with(peers: &[(u32, PeerInfo)]) -> Rib {
        let mut rib = Rib::new(config());
        for (id, info) in peers {
            rib.peer_up(PeerId(*id), info.clone());
        }
        rib
    }

    fn announce(rib: &mut Rib, id: u32, a: PathAttrs, prefix: &str, hop: &str) -> Vec<Change> {
        rib.update(PeerId(id), &a, &[(p(prefix), nh(hop))], &[])
    }

    fn best_source(rib: &Rib, prefix: &str) -> Option<Source> {
        rib.best(&p(prefix)).map(|x| x.source())
    }

    #[test]
    fn higher_local_pref_wins_over_a_shorter_as_path() {
        let mut rib = rib_with(&[(1, peer(1, US)), (2, peer(2, US))]);
        let mut long = attrs(&[65001, 65002, 65003]);
        long.local_pref = Some(200);
        announce(&mut rib, 1, attrs(&[65001]), "10.1.0.0/24", "10.0.0.1");
        announce(&mut rib, 2, long, "10.1.0.0/24", "10.0.0.2");
        assert_eq!(
            best_source(&rib, "10.1.0.0/24"),
            Some(Source::Peer(PeerId(2)))
        );
    }

    #[test]
    fn shorter_as_path_wins_when_local_pref_ties() {
        let mut rib = rib_with(&[(1, peer(1, 65001)), (2, peer(2, 65002))]);
        announce(
            &mut rib,
            1,
            attrs(&[65001, 65009]),
            "10.1.0.0/24",
            "10.0.0.1",
        );
        announce(&mut rib, 2, attrs(&[65002]), "10.1.0.0/24", "10.0.0.2");
        assert_eq!(
            best_source(&rib, "10.1.0.0/24"),
            Some(Source::Peer(PeerId(2)))
        );
    }

    #[test]
    fn lower_origin_wins_when_paths_are_equally_long() {
        let mut rib = rib_with(&[(1, peer(1, 65001)), (2, peer(2, 65002))]);
        let mut incomplete = attrs(&[65001]);
        incomplete.origin = Some(Origin::Incomplete);
        announce(&mut rib, 1, incomplete, "10.1.0.0/24", "10.0.0.1");
        let mut egp = attrs(&[65002]);
        egp.origin = Some(Origin::Egp);
        announce(&mut rib, 2, egp, "10.1.0.0/24", "10.0.0.2");
        assert_eq!(
            best_source(&rib, "10.1.0.0/24"),
            Some(Source::Peer(PeerId(2)))
        );
    }

    #[test]
    fn med_is_compared_only_between_paths_from_the_same_neighbour_as() {
        // Peers 1 and 2 in AS 65001 with MED 50 and 10; peer 3 in 65003,
        // MED 0 but lowest router ID last: 2 beats 1 by MED, and 3 is not
        // compared by MED, so router ID decides between 2 and 3.
        let mut rib = rib_with(&[
            (1, peer(1, 65001)),
            (2, peer(2, 65001)),
            (3, peer(3, 65003)),
        ]);
        let with_med = |path: &[u32], med| PathAttrs {
            med: Some(med),
            ..attrs(path)
        };
        announce(
            &mut rib,
            1,
            with_med(&[65001], 50),
            "10.1.0.0/24",
            "10.0.0.1",
        );
        announce(
            &mut rib,
            2,
            with_med(&[65001], 10),
            "10.1.0.0/24",
            "10.0.0.2",
        );
        announce(
            &mut rib,
            3,
            with_med(&[65003], 90),
            "10.1.0.0/24",
            "10.0.0.3",
        );
        assert_eq!(
            best_source(&rib, "10.1.0.0/24"),
            Some(Source::Peer(PeerId(2)))
        );
        // Peer 1 (router ID .1) would win on router ID but lost on MED.
        rib.update(PeerId(2), &PathAttrs::default(), &[], &[p("10.1.0.0/24")]);
        assert_eq!(
            best_source(&rib, "10.1.0.0/24"),
            Some(Source::Peer(PeerId(1)))
        );
    }

    #[test]
    fn always_compare_med_compares_across_neighbour_ases() {
        let mut rib = Rib::new(RibConfig {
            always_compare_med: true,
            ..config()
        });
        rib.peer_up(PeerId(1), peer(1, 65001));
        rib.peer_up(PeerId(3), peer(3, 65003));
        let with_med = |path: &[u32], med| PathAttrs {
            med: Some(med),
            ..attrs(path)
        };
        announce(
            &mut rib,
            1,
            with_med(&[65001], 50),
            "10.1.0.0/24",
            "10.0.0.1",
        );
        announce(
            &mut rib,
            3,
            with_med(&[65003], 10),
            "10.1.0.0/24",
            "10.0.0.3",
        );
        assert_eq!(
            best_source(&rib, "10.1.0.0/24"),
            Some(Source::Peer(PeerId(3)))
        );
    }

    #[test]
    fn ebgp_path_wins_over_an_otherwise_equal_ibgp_path() {
        let mut rib = rib_with(&[(1, peer(1, US)), (2, peer(2, 65002))]);
        announce(&mut rib, 1, attrs(&[65002]), "10.1.0.0/24", "10.0.0.1");
        announce(&mut rib, 2, attrs(&[65002]), "10.1.0.0/24", "10.0.0.2");
        assert_eq!(
            best_source(&rib, "10.1.0.0/24"),
            Some(Source::Peer(PeerId(2)))
        );
    }

    #[test]
    fn originator_id_stands_in_for_the_router_id_of_a_reflected_path() {
        let mut rib = rib_with(&[(1, peer(1, US)), (2, peer(2, US))]);
        let mut reflected = attrs(&[65009]);
        reflected.originator_id = Some(v4("192.0.2.200"));
        announce(&mut rib, 1, reflected, "10.1.0.0/24", "10.0.0.1");
        announce(&mut rib, 2, attrs(&[65009]), "10.1.0.0/24", "10.0.0.2");
        // Peer 1's router ID (.1) is lower, but its path's originator is .200.
        assert_eq!(
            best_source(&rib, "10.1.0.0/24"),
            Some(Source::Peer(PeerId(2)))
        );
    }

    #[test]
    fn shorter_cluster_list_then_lower_peer_address_break_the_last_ties() {
        let mut a = peer(1, US);
        let mut b = peer(2, US);
        a.router_id = v4("192.0.2.9");
        b.router_id = v4("192.0.2.9");
        let mut rib = rib_with(&[(1, a), (2, b)]);
        let mut long = attrs(&[65009]);
        long.cluster_list = vec![v4("1.1.1.1"), v4("2.2.2.2")];
        announce(&mut rib, 1, long, "10.1.0.0/24", "10.0.0.1");
        announce(&mut rib, 2, attrs(&[65009]), "10.1.0.0/24", "10.0.0.2");
        assert_eq!(
            best_source(&rib, "10.1.0.0/24"),
            Some(Source::Peer(PeerId(2)))
        );
        announce(
            &mut rib,
            2,
            PathAttrs {
                cluster_list: vec![v4("3.3.3.3"), v4("4.4.4.4")],
                ..attrs(&[65009])
            },
            "10.1.0.0/24",
            "10.0.0.2",
        );
        assert_eq!(
            best_source(&rib, "10.1.0.0/24"),
            Some(Source::Peer(PeerId(1)))
        );
    }

    #[test]
    fn equal_paths_from_different_peers_form_the_ecmp_set() {
        let mut rib = rib_with(&[
            (1, peer(1, 65001)),
            (2, peer(2, 65002)),
            (3, peer(3, 65003)),
        ]);
        announce(&mut rib, 2, attrs(&[65002]), "10.1.0.0/24", "10.0.0.2");
        announce(&mut rib, 1, attrs(&[65001]), "10.1.0.0/24", "10.0.0.1");
        announce(
            &mut rib,
            3,
            attrs(&[65003, 65004]),
            "10.1.0.0/24",
            "10.0.0.3",
        );
        let hops = rib.fib_next_hops(&p("10.1.0.0/24"));
        // Best (router ID .1) first; the longer path is not in the set.
        assert_eq!(
            hops,
            vec![IpAddr::V4(v4("10.0.0.1")), IpAddr::V4(v4("10.0.0.2"))]
        );
    }

    #[test]
    fn max_paths_limits_the_ecmp_set_and_one_keeps_equal_paths_out_of_the_changes() {
        let peers: Vec<(u32, PeerInfo)> = (1..=4).map(|n| (n, peer(n as u8, 65000 + n))).collect();
        let with_max = |max: usize| {
            let mut rib = rib_with(&peers);
            rib.config.max_paths = max;
            let changes: Vec<usize> = (1..=4u32)
                .map(|n| {
                    let hop = format!("10.0.0.{n}");
                    announce(&mut rib, n, attrs(&[65000 + n]), "10.1.0.0/24", &hop).len()
                })
                .collect();
            (rib.fib_next_hops(&p("10.1.0.0/24")), changes)
        };
        let hop = |n: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 0, n));
        // All four equal: each new one changes the set (not the best).
        let (all, changes) = with_max(ALL_PATHS);
        assert_eq!(all, [hop(1), hop(2), hop(3), hop(4)]);
        assert_eq!(changes, [1, 1, 1, 1]);
        let (two, _) = with_max(2);
        assert_eq!(two, [hop(1), hop(2)]);
        // The best path only: the first path is the best, and the three
        // equal ones after it (higher router IDs) change nothing.
        let (one, changes) = with_max(1);
        assert_eq!(one, [hop(1)]);
        assert_eq!(changes, [1, 0, 0, 0]);
    }

    #[test]
    fn a_wide_ecmp_set_lists_each_next_hop_once_best_first() {
        // Twelve equal paths from twelve peers over four next hops.
        let peers: Vec<(u32, PeerInfo)> = (1..=12).map(|n| (n, peer(n as u8, 65000 + n))).collect();
        let mut rib = rib_with(&peers);
        for n in 1..=12u32 {
            let hop = format!("10.0.0.{}", 200 + n % 4);
            announce(&mut rib, n, attrs(&[65000 + n]), "10.1.0.0/24", &hop);
        }
        let hops = rib.fib_next_hops(&p("10.1.0.0/24"));
        // Best: peer 1 (lowest router ID), via .201.
        assert_eq!(hops[0], IpAddr::V4(v4("10.0.0.201")));
        let mut sorted = hops.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert_eq!(hops.len(), 4);
    }

    #[test]
    fn ebgp_path_containing_our_as_is_kept_but_rejected() {
        let mut rib = rib_with(&[(1, peer(1, 65001))]);
        let changes = announce(
            &mut rib,
            1,
            attrs(&[65001, US, 65005]),
            "10.1.0.0/24",
            "10.0.0.1",
        );
        assert!(changes.is_empty());
        assert_eq!(rib.best(&p("10.1.0.0/24")), None);
        assert_eq!(
            rib.counts(PeerId(1)),
            InCounts {
                received: 1,
                accepted: 0
            }
        );
        assert_eq!(rib.adj_rib_in(PeerId(1)).count(), 1);
    }

    #[test]
    fn ibgp_path_with_our_originator_id_or_cluster_id_is_rejected() {
        let mut rib = rib_with(&[(1, peer(1, US))]);
        let mut mine = attrs(&[]);
        mine.originator_id = Some(config().router_id);
        announce(&mut rib, 1, mine, "10.1.0.0/24", "10.0.0.1");
        let mut looped = attrs(&[]);
        looped.cluster_list = vec![v4("9.9.9.9"), config().router_id];
        announce(&mut rib, 1, looped, "10.2.0.0/24", "10.0.0.1");
        assert!(rib.loc_rib().next().is_none());
        assert_eq!(rib.counts(PeerId(1)).received, 2);
    }

    #[test]
    fn prefixes_announced_with_the_same_attributes_share_one_allocation() {
        let mut rib = rib_with(&[(1, peer(1, 65001))]);
        let prefixes: Vec<(Prefix, NextHop)> = (0..100u32)
            .map(|i| {
                (
                    Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap(),
                    nh("10.0.0.1"),
                )
            })
            .collect();
        rib.update(PeerId(1), &attrs(&[65001]), &prefixes[..50], &[]);
        rib.update(PeerId(1), &attrs(&[65001]), &prefixes[50..], &[]);
        assert_eq!(rib.interned_attrs(), 1);
        let a = rib.best(&prefixes[0].0).unwrap();
        let b = rib.best(&prefixes[99].0).unwrap();
        assert!(Arc::ptr_eq(&a.route, &b.route));
        assert_eq!(std::mem::size_of::<Path>(), 16);
        assert_eq!(std::mem::size_of::<(Ipv4Net, Paths)>(), 32);
    }

    #[test]
    fn withdrawal_falls_back_to_the_next_best_path() {
        let mut rib = rib_with(&[(1, peer(1, 65001)), (2, peer(2, 65002))]);
        announce(&mut rib, 1, attrs(&[65001]), "10.1.0.0/24", "10.0.0.1");
        announce(
            &mut rib,
            2,
            attrs(&[65002, 65003]),
            "10.1.0.0/24",
            "10.0.0.2",
        );
        let changes = rib.update(PeerId(1), &PathAttrs::default(), &[], &[p("10.1.0.0/24")]);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].old.as_ref().unwrap().source(),
            Source::Peer(PeerId(1))
        );
        assert_eq!(
            changes[0].new.as_ref().unwrap().source(),
            Source::Peer(PeerId(2))
        );
    }

    #[test]
    fn peer_down_removes_its_adj_rib_in_and_reports_every_lost_prefix() {
        let mut rib = rib_with(&[(1, peer(1, 65001))]);
        announce(&mut rib, 1, attrs(&[65001]), "10.1.0.0/24", "10.0.0.1");
        announce(&mut rib, 1, attrs(&[65001]), "10.2.0.0/24", "10.0.0.1");
        let mut gone: Vec<Prefix> = rib.peer_down(PeerId(1)).iter().map(|c| c.prefix).collect();
        gone.sort();
        assert_eq!(gone, vec![p("10.1.0.0/24"), p("10.2.0.0/24")]);
        assert!(rib.is_empty());
    }

    #[test]
    fn ebgp_export_prepends_our_as_rewrites_the_next_hop_and_drops_ibgp_attributes() {
        let mut rib = rib_with(&[(1, peer(1, US)), (2, peer(2, 65002))]);
        let mut a = attrs(&[65009]);
        a.local_pref = Some(300);
        a.med = Some(7);
        a.originator_id = Some(v4("192.0.2.50"));
        a.cluster_list = vec![v4("192.0.2.60")];
        announce(&mut rib, 1, a, "10.1.0.0/24", "10.0.0.1");
        let out = rib.export(PeerId(2), &p("10.1.0.0/24")).unwrap();
        assert_eq!(out.next_hop, nh("10.0.0.100"));
        assert_eq!(out.attrs.as_path, Some(AsPath::sequence(vec![US, 65009])));
        assert_eq!(
            (out.attrs.local_pref, out.attrs.med, out.attrs.originator_id),
            (None, None, None)
        );
        assert!(out.attrs.cluster_list.is_empty());
    }

    #[test]
    fn ibgp_export_keeps_the_next_hop_and_sets_local_pref() {
        let mut rib = rib_with(&[(1, peer(1, 65001)), (2, peer(2, US))]);
        announce(&mut rib, 1, attrs(&[65001]), "10.1.0.0/24", "10.0.0.1");
        let out = rib.export(PeerId(2), &p("10.1.0.0/24")).unwrap();
        assert_eq!(out.next_hop, nh("10.0.0.1"));
        assert_eq!(out.attrs.local_pref, Some(DEFAULT_LOCAL_PREF));
        assert_eq!(out.attrs.as_path, Some(AsPath::sequence(vec![65001])));
    }

    #[test]
    fn next_hop_self_rewrites_the_next_hop_for_an_ibgp_peer() {
        let mut mesh = peer(2, US);
        mesh.next_hop_self = true;
        let mut rib = rib_with(&[(1, peer(1, 65001)), (2, mesh)]);
        announce(&mut rib, 1, attrs(&[65001]), "10.1.0.0/24", "10.0.0.1");
        assert_eq!(
            rib.export(PeerId(2), &p("10.1.0.0/24")).unwrap().next_hop,
            nh("10.0.0.100")
        );
    }

    #[test]
    fn ibgp_path_is_not_sent_to_another_ibgp_peer_without_reflection() {
        let mut rib = rib_with(&[(1, peer(1, US)), (2, peer(2, US))]);
        announce(&mut rib, 1, attrs(&[]), "10.1.0.0/24", "10.0.0.1");
        assert_eq!(rib.export(PeerId(2), &p("10.1.0.0/24")), None);
    }

    #[test]
    fn path_is_never_sent_back_to_the_peer_it_came_from() {
        let mut rib = rib_with(&[(1, peer(1, 65001))]);
        announce(&mut rib, 1, attrs(&[65001]), "10.1.0.0/24", "10.0.0.1");
        assert_eq!(rib.export(PeerId(1), &p("10.1.0.0/24")), None);
    }

    #[test]
    fn reflector_sends_client_paths_to_everyone_and_non_client_paths_to_clients() {
        let mut client = peer(1, US);
        client.route_reflector_client = true;
        let mut client2 = peer(3, US);
        client2.route_reflector_client = true;
        let mut rib = rib_with(&[
            (1, client),
            (2, peer(2, US)),
            (3, client2),
            (4, peer(4, US)),
        ]);
        announce(&mut rib, 1, attrs(&[]), "10.1.0.0/24", "10.0.0.1");
        announce(&mut rib, 2, attrs(&[]), "10.2.0.0/24", "10.0.0.2");
        // From client 1: to non-client 2 and client 3.
        let to_2 = rib.export(PeerId(2), &p("10.1.0.0/24")).unwrap();
        assert_eq!(to_2.attrs.originator_id, Some(v4("192.0.2.1")));
        assert_eq!(to_2.attrs.cluster_list, vec![config().router_id]);
        assert_eq!(to_2.next_hop, nh("10.0.0.1"));
        assert!(rib.export(PeerId(3), &p("10.1.0.0/24")).is_some());
        // From non-client 2: to client 3, not to non-client 4.
        assert!(rib.export(PeerId(3), &p("10.2.0.0/24")).is_some());
        assert_eq!(rib.export(PeerId(4), &p("10.2.0.0/24")), None);
    }

    #[test]
    fn reflected_path_keeps_an_existing_originator_id() {
        let mut client = peer(1, US);
        client.route_reflector_client = true;
        let mut rib = rib_with(&[(1, client), (2, peer(2, US))]);
        let mut a = attrs(&[]);
        a.originator_id = Some(v4("192.0.2.77"));
        a.cluster_list = vec![v4("192.0.2.88")];
        announce(&mut rib, 1, a, "10.1.0.0/24", "10.0.0.1");
        let out = rib.export(PeerId(2), &p("10.1.0.0/24")).unwrap();
        assert_eq!(out.attrs.originator_id, Some(v4("192.0.2.77")));
        assert_eq!(
            out.attrs.cluster_list,
            vec![config().router_id, v4("192.0.2.88")]
        );
    }

    #[test]
    fn local_route_goes_to_every_peer_with_our_next_hop() {
        let mut rib = rib_with(&[(1, peer(1, US)), (2, peer(2, 65002))]);
        rib.originate(p("10.9.0.0/24"), PathAttrs::default());
        let ibgp = rib.export(PeerId(1), &p("10.9.0.0/24")).unwrap();
        assert_eq!(ibgp.next_hop, nh("10.0.0.100"));
        assert_eq!(ibgp.attrs.as_path, Some(AsPath::default()));
        assert_eq!(ibgp.attrs.origin, Some(Origin::Igp));
        let ebgp = rib.export(PeerId(2), &p("10.9.0.0/24")).unwrap();
        assert_eq!(ebgp.attrs.as_path, Some(AsPath::sequence(vec![US])));
        assert!(rib.fib_next_hops(&p("10.9.0.0/24")).is_empty());
    }

    #[test]
    fn ipv6_route_is_not_exported_to_a_peer_without_the_family() {
        let mut v4_only = peer(2, 65002);
        v4_only.families = vec![AfiSafi::IPV4_UNICAST];
        let mut rib = rib_with(&[(2, v4_only)]);
        rib.originate(p("2001:db8:9::/48"), PathAttrs::default());
        assert_eq!(rib.export(PeerId(2), &p("2001:db8:9::/48")), None);
    }

    #[test]
    fn exporter_turns_changes_into_grouped_announcements_and_withdrawals() {
        let mut rib = rib_with(&[(1, peer(1, 65001)), (2, peer(2, 65002))]);
        let mut changes = Vec::new();
        let long = attrs(&[65001, 65005]);
        changes.extend(announce(
            &mut rib,
            1,
            long.clone(),
            "10.1.0.0/24",
            "10.0.0.1",
        ));
        changes.extend(announce(&mut rib, 1, long, "10.2.0.0/24", "10.0.0.1"));
        let mut e = Exporter::new(&rib, PeerId(2));
        for c in &changes {
            e.add_change(c);
        }
        let out = e.finish();
        assert_eq!(out.announce.len(), 1);
        assert_eq!(out.announce[0].1, vec![p("10.1.0.0/24"), p("10.2.0.0/24")]);
        // Peer 2's own better path: peer 2 must now get a withdrawal.
        let changes = announce(&mut rib, 2, attrs(&[65002]), "10.1.0.0/24", "10.0.0.2");
        let mut e = Exporter::new(&rib, PeerId(2));
        changes.iter().for_each(|c| e.add_change(c));
        assert_eq!(e.finish().withdraw, vec![p("10.1.0.0/24")]);
        // Peer 1 learns peer 2's path instead.
        let mut e = Exporter::new(&rib, PeerId(1));
        changes.iter().for_each(|c| e.add_change(c));
        let out = e.finish();
        assert_eq!(out.announce[0].1, vec![p("10.1.0.0/24")]);
        assert!(out.withdraw.is_empty());
    }

    #[test]
    fn adj_rib_out_lists_every_exportable_best_path() {
        let mut rib = rib_with(&[(1, peer(1, 65001)), (2, peer(2, 65002))]);
        announce(&mut rib, 1, attrs(&[65001]), "10.1.0.0/24", "10.0.0.1");
        announce(&mut rib, 2, attrs(&[65002]), "10.2.0.0/24", "10.0.0.2");
        rib.originate(p("10.9.0.0/24"), PathAttrs::default());
        let out = rib.adj_rib_out(PeerId(2));
        assert_eq!(out.added, 2);
        let mut all: Vec<Prefix> = out.announce.into_iter().flat_map(|(_, v)| v).collect();
        all.sort();
        assert_eq!(all, vec![p("10.1.0.0/24"), p("10.9.0.0/24")]);
    }

    mod policy {
        use super::*;
        use crate::filter::{
            Action, Community, Filter, Match, Modification, NO_ADVERTISE, NO_EXPORT, PrefixMatch,
            Rule,
        };

        fn c(s: &str) -> u32 {
            s.parse::<Community>().unwrap().0
        }

        fn within(net: &str, ge: u8, le: u8) -> Match {
            Match::Prefix(PrefixMatch::new(p(net), Some(ge), Some(le)).unwrap())
        }

        fn rejecting(matches: Vec<Match>) -> Filter {
            Filter {
                rules: vec![Rule::new(matches, Action::Reject)],
                default: Action::Accept,
            }
        }

        fn with_communities(path: &[u32], cs: &[&str]) -> PathAttrs {
            PathAttrs {
                communities: cs.iter().map(|s| c(s)).collect(),
                ..attrs(path)
            }
        }

        fn exported(rib: &Rib, to: u32) -> Vec<Prefix> {
            let mut all: Vec<Prefix> = rib
                .adj_rib_out(PeerId(to))
                .announce
                .into_iter()
                .flat_map(|(_, v)| v)
                .collect();
            all.sort();
            all
        }

        #[test]
        fn import_filter_keeps_rejected_paths_in_the_adj_rib_in_only() {
            let mut rib = rib_with(&[(1, peer(1, 65001))]);
            rib.set_policy(
                PeerId(1),
                PeerPolicy {
                    import: Filter {
                        rules: vec![
                            Rule::new(vec![within("10.20.0.0/16", 24, 32)], Action::Reject),
                            Rule::new(
                                vec![Match::CommunityAny(vec![c("65001:666")])],
                                Action::Reject,
                            ),
                        ],
                        default: Action::Accept,
                    },
                    ..PeerPolicy::default()
                },
            );
            let plain = attrs(&[65001]);
            let changes = rib.update(
                PeerId(1),
                &plain,
                &[
                    (p("10.20.1.0/24"), nh("10.0.0.1")),
                    (p("10.20.0.0/16"), nh("10.0.0.1")),
                ],
                &[],
            );
            assert_eq!(changes.len(), 1, "only the /16 enters the Loc-RIB");
            announce(
                &mut rib,
                1,
                with_communities(&[65001], &["65001:666"]),
                "10.30.0.0/24",
                "10.0.0.1",
            );
            let loc: Vec<Prefix> = rib.loc_rib().map(|(k, _)| k).collect();
            assert_eq!(loc, vec![p("10.20.0.0/16")]);
            assert_eq!(
                rib.counts(PeerId(1)),
                InCounts {
                    received: 3,
                    accepted: 1
                }
            );
            assert!(rib.fib_next_hops(&p("10.20.1.0/24")).is_empty());
        }

        #[test]
        fn import_modification_changes_the_best_path_and_a_new_filter_restores_it() {
            let mut rib = rib_with(&[(1, peer(1, US)), (2, peer(2, US))]);
            let prefer = PeerPolicy {
                import: Filter {
                    rules: vec![Rule {
                        modifications: vec![Modification::SetLocalPref(300)],
                        ..Rule::new(vec![Match::OriginAs(65009)], Action::Accept)
                    }],
                    default: Action::Accept,
                },
                ..PeerPolicy::default()
            };
            rib.set_policy(PeerId(2), prefer);
            announce(&mut rib, 1, attrs(&[65009]), "10.1.0.0/24", "10.0.0.1");
            announce(
                &mut rib,
                2,
                attrs(&[65008, 65009]),
                "10.1.0.0/24",
                "10.0.0.2",
            );
            let best = rib.best(&p("10.1.0.0/24")).unwrap();
            assert_eq!(best.source(), Source::Peer(PeerId(2)));
            assert_eq!(best.route.attrs.local_pref, Some(300));
            // Back to no filter: the path as received (no LOCAL_PREF) loses
            // on AS path length, without the peer sending it again.
            let changes = rib.set_policy(PeerId(2), PeerPolicy::default());
            assert_eq!(changes.len(), 1);
            let best = rib.best(&p("10.1.0.0/24")).unwrap();
            assert_eq!(best.source(), Source::Peer(PeerId(1)));
            let from_2 = rib.adj_rib_in(PeerId(2)).next().unwrap().1;
            assert_eq!(from_2.route.attrs.local_pref, None);
            assert!(rib.originals.is_empty());
        }

        #[test]
        fn new_import_filter_re_evaluates_the_adj_rib_in_both_ways() {
            let mut rib = rib_with(&[(1, peer(1, 65001)), (2, peer(2, 65002))]);
            announce(&mut rib, 1, attrs(&[65001]), "10.1.0.0/24", "10.0.0.1");
            announce(&mut rib, 1, attrs(&[65001]), "10.2.0.0/24", "10.0.0.1");
            let reject_1 = PeerPolicy {
                import: rejecting(vec![within("10.1.0.0/16", 16, 32)]),
                ..PeerPolicy::default()
            };
            let changes = rib.set_policy(PeerId(1), reject_1);
            assert_eq!(changes.len(), 1);
            assert_eq!(
                (changes[0].prefix, changes[0].new.is_none()),
                (p("10.1.0.0/24"), true)
            );
            assert_eq!(rib.counts(PeerId(1)).accepted, 1);
            // Peer 2 is told to withdraw it.
            let mut e = Exporter::new(&rib, PeerId(2));
            changes.iter().for_each(|c| e.add_change(c));
            assert_eq!(e.finish().withdraw, vec![p("10.1.0.0/24")]);
            // A looped path stays rejected whatever the filter says.
            announce(&mut rib, 1, attrs(&[65001, US]), "10.3.0.0/24", "10.0.0.1");
            let changes = rib.set_policy(PeerId(1), PeerPolicy::default());
            assert_eq!(changes.len(), 1);
            assert!(rib.best(&p("10.1.0.0/24")).is_some());
            assert_eq!(
                rib.counts(PeerId(1)),
                InCounts {
                    received: 3,
                    accepted: 2
                }
            );
        }

        #[test]
        fn export_filter_and_peer_communities_shape_what_a_peer_gets() {
            let mut rib = rib_with(&[(1, peer(1, 65001)), (2, peer(2, 65002))]);
            announce(&mut rib, 1, attrs(&[65001]), "10.1.0.0/24", "10.0.0.1");
            rib.originate(p("10.9.0.0/24"), PathAttrs::default());
            rib.originate(p("10.8.0.0/24"), PathAttrs::default());
            let before = rib.adj_rib_out(PeerId(2));
            rib.set_policy(
                PeerId(2),
                PeerPolicy {
                    export: Filter {
                        rules: vec![
                            Rule::new(
                                vec![Match::Prefix(
                                    PrefixMatch::new(p("10.8.0.0/24"), None, None).unwrap(),
                                )],
                                Action::Reject,
                            ),
                            Rule {
                                modifications: vec![
                                    Modification::Prepend {
                                        asn: None,
                                        times: 2,
                                    },
                                    Modification::SetMed(20),
                                ],
                                ..Rule::new(vec![Match::AsPathContains(65001)], Action::Accept)
                            },
                        ],
                        default: Action::Accept,
                    },
                    communities: vec![c("65000:100"), c("no-export")],
                    large_communities: vec!["65000:1:2".parse().unwrap()],
                    ..PeerPolicy::default()
                },
            );
            assert_eq!(exported(&rib, 2), vec![p("10.1.0.0/24"), p("10.9.0.0/24")]);
            let learned = rib.export(PeerId(2), &p("10.1.0.0/24")).unwrap();
            assert_eq!(
                learned.attrs.as_path,
                Some(AsPath::sequence(vec![US, US, US, 65001]))
            );
            assert_eq!(learned.attrs.med, Some(20));
            assert_eq!(learned.attrs.communities, vec![c("65000:100"), NO_EXPORT]);
            assert_eq!(learned.attrs.large_communities.len(), 1);
            let ours = rib.export(PeerId(2), &p("10.9.0.0/24")).unwrap();
            assert_eq!(ours.attrs.as_path, Some(AsPath::sequence(vec![US])));
            // The change to send: one withdrawal, two new attribute sets.
            let diff = rib.adj_rib_out(PeerId(2)).changes_from(&before);
            assert_eq!(diff.withdraw, vec![p("10.8.0.0/24")]);
            assert_eq!(diff.added, 0);
            let mut sent: Vec<Prefix> = diff.announce.into_iter().flat_map(|(_, v)| v).collect();
            sent.sort();
            assert_eq!(sent, vec![p("10.1.0.0/24"), p("10.9.0.0/24")]);
            // Peer 1 has no policy: unchanged.
            assert_eq!(exported(&rib, 1), vec![p("10.8.0.0/24"), p("10.9.0.0/24")]);
        }

        #[test]
        fn exporter_groups_by_prefix_when_the_export_filter_looks_at_prefixes() {
            let mut rib = rib_with(&[(1, peer(1, 65001)), (2, peer(2, 65002))]);
            rib.set_policy(
                PeerId(2),
                PeerPolicy {
                    export: rejecting(vec![within("10.1.0.0/16", 24, 24)]),
                    ..PeerPolicy::default()
                },
            );
            let prefixes = [p("10.1.1.0/24"), p("10.2.1.0/24"), p("10.1.2.0/24")];
            let announced: Vec<(Prefix, NextHop)> =
                prefixes.iter().map(|x| (*x, nh("10.0.0.1"))).collect();
            let changes = rib.update(PeerId(1), &attrs(&[65001]), &announced, &[]);
            let mut e = Exporter::new(&rib, PeerId(2));
            changes.iter().for_each(|c| e.add_change(c));
            let out = e.finish();
            assert_eq!(out.announce.len(), 1);
            assert_eq!(out.announce[0].1, vec![p("10.2.1.0/24")]);
        }

        #[test]
        fn no_export_from_ibgp_goes_to_ibgp_peers_only_and_no_advertise_to_nobody() {
            let mut client = peer(1, US);
            client.route_reflector_client = true;
            let mut rib = rib_with(&[(1, client), (2, peer(2, US)), (3, peer(3, 65003))]);
            announce(
                &mut rib,
                1,
                with_communities(&[], &["no-export"]),
                "10.1.0.0/24",
                "10.0.0.1",
            );
            announce(
                &mut rib,
                1,
                with_communities(&[], &["no-export-subconfed"]),
                "10.2.0.0/24",
                "10.0.0.1",
            );
            announce(
                &mut rib,
                1,
                PathAttrs {
                    communities: vec![NO_ADVERTISE],
                    ..attrs(&[])
                },
                "10.3.0.0/24",
                "10.0.0.1",
            );
            assert_eq!(rib.loc_rib().count(), 3, "all three are used locally");
            assert_eq!(exported(&rib, 2), vec![p("10.1.0.0/24"), p("10.2.0.0/24")]);
            assert_eq!(exported(&rib, 3), Vec::<Prefix>::new());
            // Our own route with NO_EXPORT stays in the AS too.
            rib.originate(p("10.9.0.0/24"), with_communities(&[], &["no-export"]));
            assert_eq!(exported(&rib, 3), Vec::<Prefix>::new());
            assert!(rib.export(PeerId(2), &p("10.9.0.0/24")).is_some());
        }
    }

    #[test]
    fn a_peer_with_its_own_local_as_is_ebgp_by_it_and_gets_it_prepended() {
        let mut rib = Rib::new(RibConfig {
            asn: US,
            router_id: v4("192.0.2.100"),
            cluster_id: None,
            always_compare_med: false,
            max_paths: ALL_PATHS,
        });
        // Peer 1 has our AS, but we present 64999 to it: eBGP.
        let one = PeerInfo {
            local_asn: 64999,
            ..peer(1, US)
        };
        assert!(!one.is_ibgp());
        rib.peer_up(PeerId(1), one);
        rib.peer_up(PeerId(2), peer(2, 65002));
        let prefix: Prefix = "10.7.0.0/24".parse().unwrap();
        rib.update(PeerId(2), &attrs(&[65002]), &[(prefix, nh("10.0.0.2"))], &[]);
        let out = rib.export(PeerId(1), &prefix).expect("exported");
        assert_eq!(
            out.attrs.as_path,
            Some(AsPath::sequence(vec![64999, 65002])),
            "the local AS goes in front"
        );
        // A path holding the AS we present to peer 1 is a loop from it.
        let looped: Prefix = "10.8.0.0/24".parse().unwrap();
        rib.update(PeerId(1), &attrs(&[65010, 64999]), &[(looped, nh("10.0.0.1"))], &[]);
        assert!(rib.best(&looped).is_none());
    }

}
