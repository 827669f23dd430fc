//! Allocation decisions, pure: which pools a host may use for a request,
//! which addresses are reserved, which unclaimed block a host claims next,
//! and what happens to a block that a release leaves empty.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use api::resources::ippool::AllowedUse;
use api::selector::Selector;
use api::{IPPool, IPReservation};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::IpamError;
use super::block_math;
use super::model::{AllocationBlock, Reuse};

/// What an address is for; a pool's `allowedUses` must include it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpUse {
    #[default]
    Workload,
    Tunnel,
}

impl IpUse {
    fn allowed_use(self) -> AllowedUse {
        match self {
            IpUse::Workload => AllowedUse::Workload,
            IpUse::Tunnel => AllowedUse::Tunnel,
        }
    }
}

/// The parts of an IPPool allocation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolView {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
}

impl PoolView {
    pub fn of(pool: &IPPool) -> Self {
        Self {
            name: pool.metadata.name.clone(),
            cidr: pool.spec.cidr.network(),
            block_size: pool.spec.block_size(),
        }
    }

    /// The block of this pool holding `ip`, if the pool holds it.
    pub fn block_of(&self, ip: IpAddr) -> Option<IpNet> {
        self.cidr
            .contains(&ip)
            .then(|| block_math::block_containing(ip, self.block_size).ok())
            .flatten()
    }
}

/// Who asks for addresses: the host, with its Node's labels if the Node
/// exists, and the workload's namespace with its labels, if known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requester<'a> {
    pub host: &'a str,
    pub node_labels: Option<&'a BTreeMap<String, String>>,
    /// The namespace and its labels (see [`namespace_labels`]).
    pub namespace: Option<(&'a str, &'a BTreeMap<String, String>)>,
}

impl Requester<'_> {
    /// "host h", or "host h for namespace ns", for errors.
    pub fn describe(&self) -> String {
        match self.namespace {
            Some((ns, _)) => format!("host {} for namespace {ns}", self.host),
            None => format!("host {}", self.host),
        }
    }
}

/// The label every namespace carries, its name (as Calico's namespace
/// profiles apply it, `pcns.` aside).
pub const LABEL_NAMESPACE_NAME: &str = "projectcalico.org/name";

/// A namespace's labels, from its profile `kns.<namespace>`'s
/// `labelsToApply` as kube-controllers writes them (`pcns.<key>`, the prefix
/// dropped), with [`LABEL_NAMESPACE_NAME`] always set to its name.
pub fn namespace_labels(
    namespace: &str,
    labels_to_apply: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = labels_to_apply
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.strip_prefix("pcns.")?.to_string(), v.clone())))
        .collect();
    labels.insert(LABEL_NAMESPACE_NAME.into(), namespace.into());
    labels
}

/// Whether `selector` (empty: `all()`) selects `labels`; with no labels to
/// match (no Node, no namespace), only `all()` does.
fn selects(selector: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
    let source = selector.trim();
    let Ok(selector) = Selector::parse(if source.is_empty() { "all()" } else { source }) else {
        return false;
    };
    match labels {
        Some(labels) => selector.matches(labels),
        None => selector.is_all(),
    }
}

/// Whether the requester may use the pool: its `nodeSelector` selects the
/// host and its `namespaceSelector` the namespace.
fn selects_requester(pool: &IPPool, who: &Requester<'_>) -> bool {
    selects(&pool.spec.node_selector, who.node_labels)
        && selects(
            &pool.spec.namespace_selector,
            who.namespace.map(|(_, labels)| labels),
        )
}

/// The pools of `family` that the requester may take new `ip_use`
/// addresses from, restricted to `requested` when given (each requested
/// pool must be usable).
pub fn usable_pools(
    pools: &[IPPool],
    family: u8,
    ip_use: IpUse,
    who: &Requester<'_>,
    requested: Option<&[IpNet]>,
) -> Result<Vec<PoolView>, IpamError> {
    let usable = |p: &IPPool| {
        p.spec.cidr.family() == family
            && !p.spec.disabled
            && (p.spec.allowed_uses.is_empty()
                || p.spec.allowed_uses.contains(&ip_use.allowed_use()))
            && selects_requester(p, who)
    };
    let of_family: Vec<&IPPool> = pools
        .iter()
        .filter(|p| p.spec.cidr.family() == family)
        .collect();
    match requested {
        Some(requested) => requested
            .iter()
            .map(|want| {
                of_family
                    .iter()
                    .find(|p| p.spec.cidr.network() == want.trunc())
                    .filter(|p| usable(p))
                    .map(|p| PoolView::of(p))
                    .ok_or_else(|| IpamError::PoolNotUsable {
                        pool: *want,
                        who: who.describe(),
                        ip_use,
                    })
            })
            .collect(),
        None => {
            let found: Vec<PoolView> = of_family
                .into_iter()
                .filter(|p| usable(p))
                .map(PoolView::of)
                .collect();
            if found.is_empty() {
                return Err(IpamError::NoUsablePool {
                    family,
                    who: who.describe(),
                    ip_use,
                });
            }
            Ok(found)
        }
    }
}

/// Every reserved range, from the IPReservation resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservations(Vec<(String, IpNet)>);

impl Reservations {
    pub fn of(reservations: &[IPReservation]) -> Self {
        Self(
            reservations
                .iter()
                .flat_map(|r| {
                    r.spec
                        .reserved_cidrs
                        .iter()
                        .map(|c| (r.metadata.name.clone(), c.network()))
                })
                .collect(),
        )
    }

    /// The reservation holding `ip`, if any.
    pub fn reserving(&self, ip: IpAddr) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, net)| net.contains(&ip))
            .map(|(name, _)| name.as_str())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.reserving(ip).is_some()
    }

    /// How many addresses of `net` some reservation holds, each counted once
    /// however many reservations hold it. (Two CIDRs are nested or apart,
    /// so the reserved part of `net` is the disjoint union of the outermost
    /// reservations inside it, or all of it.)
    pub fn reserved_in(&self, net: IpNet) -> u128 {
        let mut inside: Vec<IpNet> = self
            .0
            .iter()
            .filter_map(|(_, r)| {
                if r.contains(&net) {
                    Some(net)
                } else if net.contains(r) {
                    Some(*r)
                } else {
                    None
                }
            })
            .collect();
        inside.sort_by_key(IpNet::prefix_len);
        let mut outermost: Vec<IpNet> = Vec::new();
        for r in inside {
            if !outermost.iter().any(|o| o.contains(&r)) {
                outermost.push(r);
            }
        }
        outermost
            .iter()
            .map(|r| block_math::size(*r).unwrap_or(u128::MAX))
            .fold(0, u128::saturating_add)
    }

    /// Whether one reservation covers all of `net`.
    fn covers(&self, net: IpNet) -> bool {
        self.0.iter().any(|(_, r)| r.contains(&net))
    }
}

/// Where a host starts looking for an unclaimed block: a hash of its name,
/// so hosts claiming at once mostly try different blocks.
fn start_for(host: &str) -> u128 {
    // FNV-1a, 64 bits.
    let hash = host.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    u128::from(hash)
}

/// How many blocks past the existing ones a search for a free block looks
/// at per pool before giving up (only reservations can make it look further).
const SEARCH_SLACK: usize = 4096;

/// The first block of `pools` (in order) that no block in `existing` takes
/// and that has an address not reserved, searching from a host-specific start.
pub fn pick_unclaimed(
    pools: &[PoolView],
    existing: &BTreeSet<IpNet>,
    reservations: &Reservations,
    host: &str,
) -> Option<IpNet> {
    let start = start_for(host);
    pools
        .iter()
        .filter(|p| !reservations.covers(p.cidr))
        .find_map(|p| {
            let blocks = block_math::blocks_from(p.cidr, p.block_size, start).ok()?;
            blocks
                .filter(|b| !existing.contains(b))
                .take(existing.len() + SEARCH_SLACK)
                .find(|b| {
                    !reservations.covers(*b)
                        && AllocationBlock::new(*b, None)
                            .assignable(&|ip| reservations.contains(ip), Reuse::ANY)
                            .next()
                            .is_some()
                })
        })
}

/// What becomes of a block a release leaves empty.
///
/// The rule: an empty block with no affinity is deleted (as Calico does). An
/// empty block affine to a host is deleted together with the host's affinity
/// when the host keeps another affine block in the same pool (the
/// transaction checks that block's affinity is still there, so two releases
/// at once cannot both give up the host's last blocks), or when no pool
/// holds it any more. A host's only block in a pool is kept, so the next
/// workload on the host does not have to claim one again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmptyBlockFate {
    /// Delete the block (and its affinity, if any).
    Delete,
    /// Delete the block and its affinity while the host's affinity to this
    /// other block still exists.
    DeleteKeeping(IpNet),
    /// Keep the block, empty, affine to its host.
    Keep,
}

/// Decides an empty block's fate; `host_blocks` are its host's affine blocks.
pub fn empty_block_fate(
    block: IpNet,
    host: Option<&str>,
    pools: &[PoolView],
    host_blocks: &[IpNet],
) -> EmptyBlockFate {
    if host.is_none() {
        return EmptyBlockFate::Delete;
    }
    let Some(pool) = pools.iter().find(|p| p.cidr.contains(&block)) else {
        return EmptyBlockFate::Delete;
    };
    host_blocks
        .iter()
        .find(|b| **b != block && pool.cidr.contains(*b))
        .map_or(EmptyBlockFate::Keep, |b| EmptyBlockFate::DeleteKeeping(*b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{Cidr, IPPoolSpec, ObjectMeta};

    fn pool(name: &str, cidr: &str, edit: impl FnOnce(&mut IPPoolSpec)) -> IPPool {
        let mut spec = IPPoolSpec::new(cidr.parse::<Cidr>().unwrap());
        edit(&mut spec);
        IPPool::new(ObjectMeta::named(name), spec)
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn host(name: &str) -> Requester<'_> {
        Requester {
            host: name,
            ..Requester::default()
        }
    }

    fn names(pools: &[PoolView]) -> Vec<&str> {
        pools.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn disabled_and_other_family_pools_are_not_used() {
        let pools = [
            pool("a", "10.0.0.0/24", |_| {}),
            pool("b", "10.1.0.0/24", |s| s.disabled = true),
            pool("c", "fd00::/64", |_| {}),
        ];
        let got = usable_pools(&pools, 4, IpUse::Workload, &host("h"), None).unwrap();
        assert_eq!(names(&got), ["a"]);
        let got = usable_pools(&pools, 6, IpUse::Workload, &host("h"), None).unwrap();
        assert_eq!(names(&got), ["c"]);
    }

    #[test]
    fn node_selector_needs_the_node_labels_and_a_missing_node_matches_only_all() {
        let pools = [
            pool("all", "10.0.0.0/24", |_| {}),
            pool("rack1", "10.1.0.0/24", |s| {
                s.node_selector = "rack == 'r1'".into()
            }),
            pool("not-rack2", "10.2.0.0/24", |s| {
                s.node_selector = "rack != 'r2'".into()
            }),
        ];
        let r1 = BTreeMap::from([("rack".to_string(), "r1".to_string())]);
        let got = usable_pools(
            &pools,
            4,
            IpUse::Workload,
            &Requester {
                node_labels: Some(&r1),
                ..host("h")
            },
            None,
        )
        .unwrap();
        assert_eq!(names(&got), ["all", "rack1", "not-rack2"]);
        let got = usable_pools(&pools, 4, IpUse::Workload, &host("h"), None).unwrap();
        assert_eq!(names(&got), ["all"]);
    }

    #[test]
    fn namespace_selector_matches_the_namespace_labels_and_no_namespace_only_all() {
        let pools = [
            pool("any", "10.0.0.0/24", |_| {}),
            pool("team-a", "10.1.0.0/24", |s| {
                s.namespace_selector = "team == 'a'".into()
            }),
            pool("shop", "10.2.0.0/24", |s| {
                s.namespace_selector = "projectcalico.org/name == 'shop'".into()
            }),
        ];
        let profile = BTreeMap::from([
            ("pcns.team".to_string(), "a".to_string()),
            ("not-a-namespace-label".to_string(), "x".to_string()),
        ]);
        let shop = namespace_labels("shop", Some(&profile));
        assert_eq!(shop.get("team").map(String::as_str), Some("a"));
        assert!(!shop.contains_key("not-a-namespace-label"));
        let in_ns = |labels| Requester {
            namespace: Some(("shop", labels)),
            ..host("h")
        };
        let got = usable_pools(&pools, 4, IpUse::Workload, &in_ns(&shop), None).unwrap();
        assert_eq!(names(&got), ["any", "team-a", "shop"]);
        let bare = namespace_labels("web", None);
        let got = usable_pools(&pools, 4, IpUse::Workload, &in_ns(&bare), None).unwrap();
        assert_eq!(names(&got), ["any"]);
        let got = usable_pools(&pools, 4, IpUse::Workload, &host("h"), None).unwrap();
        assert_eq!(names(&got), ["any"]);
        let err = usable_pools(&pools[1..], 4, IpUse::Workload, &in_ns(&bare), None).unwrap_err();
        assert!(
            err.to_string().contains("host h for namespace shop"),
            "{err}"
        );
    }

    #[test]
    fn reserved_addresses_are_counted_once_inside_the_net_asked() {
        let reservation = |name: &str, cidrs: &[&str]| {
            IPReservation::new(
                ObjectMeta::named(name),
                api::IPReservationSpec {
                    reserved_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
                },
            )
        };
        let r = Reservations::of(&[
            reservation("a", &["10.0.0.0/30", "10.0.0.1/32", "10.0.1.0/24"]),
            reservation("b", &["10.0.0.0/31", "10.9.0.0/16"]),
        ]);
        assert_eq!(r.reserved_in(net("10.0.0.0/16")), 4 + 256);
        assert_eq!(r.reserved_in(net("10.0.0.0/26")), 4);
        assert_eq!(r.reserved_in(net("10.0.1.64/26")), 64, "all of it");
        assert_eq!(r.reserved_in(net("10.0.2.0/24")), 0);
        assert_eq!(Reservations::default().reserved_in(net("10.0.0.0/8")), 0);
    }

    #[test]
    fn allowed_uses_separate_tunnel_and_workload_pools() {
        let pools = [
            pool("tunnels", "10.0.0.0/24", |s| {
                s.allowed_uses = vec![AllowedUse::Tunnel]
            }),
            pool("pods", "10.1.0.0/24", |s| {
                s.allowed_uses = vec![AllowedUse::Workload]
            }),
        ];
        let got = usable_pools(&pools, 4, IpUse::Tunnel, &host("h"), None).unwrap();
        assert_eq!(names(&got), ["tunnels"]);
        let got = usable_pools(&pools, 4, IpUse::Workload, &host("h"), None).unwrap();
        assert_eq!(names(&got), ["pods"]);
    }

    #[test]
    fn a_requested_pool_that_is_not_usable_is_named() {
        let pools = [pool("a", "10.0.0.0/24", |s| s.disabled = true)];
        let err = usable_pools(
            &pools,
            4,
            IpUse::Workload,
            &host("h"),
            Some(&[net("10.0.0.0/24")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/24"), "{err}");
        let err = usable_pools(&pools, 4, IpUse::Workload, &host("h"), None).unwrap_err();
        assert!(matches!(err, IpamError::NoUsablePool { .. }), "{err}");
    }

    #[test]
    fn unclaimed_blocks_skip_existing_and_fully_reserved_ones() {
        let pools = vec![PoolView::of(&pool("a", "10.0.0.0/24", |_| {}))];
        let reservations = Reservations(vec![("r".into(), net("10.0.0.0/25"))]);
        let mut existing = BTreeSet::new();
        let first = pick_unclaimed(&pools, &existing, &reservations, "h").unwrap();
        assert!(first == net("10.0.0.128/26") || first == net("10.0.0.192/26"));
        existing.insert(first);
        let second = pick_unclaimed(&pools, &existing, &reservations, "h").unwrap();
        assert_ne!(first, second);
        existing.insert(second);
        assert_eq!(pick_unclaimed(&pools, &existing, &reservations, "h"), None);
    }

    #[test]
    fn an_empty_block_goes_only_when_its_host_keeps_another_in_the_pool() {
        let pools = vec![
            PoolView::of(&pool("a", "10.0.0.0/24", |_| {})),
            PoolView::of(&pool("b", "10.1.0.0/24", |_| {})),
        ];
        let b0 = net("10.0.0.0/26");
        let b1 = net("10.0.0.64/26");
        let other_pool = net("10.1.0.0/26");
        assert_eq!(
            empty_block_fate(b0, None, &pools, &[]),
            EmptyBlockFate::Delete
        );
        assert_eq!(
            empty_block_fate(b0, Some("h"), &pools, &[b0, other_pool]),
            EmptyBlockFate::Keep
        );
        assert_eq!(
            empty_block_fate(b0, Some("h"), &pools, &[b0, b1]),
            EmptyBlockFate::DeleteKeeping(b1)
        );
        assert_eq!(
            empty_block_fate(net("10.9.0.0/26"), Some("h"), &pools, &[]),
            EmptyBlockFate::Delete
        );
    }
}
