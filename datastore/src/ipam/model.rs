//! What IPAM stores, as Calico's etcdv3 datastore stores it (libcalico-go's
//! `AllocationBlock`, `BlockAffinity`, `IPAMHandle`, `IPAMConfig`), the keys
//! it stores them under, and the pure operations on a block value:
//!
//! ```text
//! /calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26         AllocationBlock
//! /calico/ipam/v2/assignment/ipv6/block/fd00::-122          AllocationBlock
//! /calico/ipam/v2/host/<host>/ipv4/block/10.0.0.0-26        BlockAffinity
//! /calico/ipam/v2/handle/<handle>                           IPAMHandle
//! /calico/ipam/v2/config                                    IPAMConfig
//! ```
//!
//! A block's `allocations[ordinal]` is the index of the allocation's entry in
//! `attributes` (`null` when free); `unallocated` lists the free ordinals in
//! the order they will be handed out (released ones go to the back, so an
//! address is not reused at once). Attributes are shared by allocations with
//! the same handle and attributes, and dropped once nothing refers to them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::block_math;

/// Root of every IPAM key.
pub const IPAM_PREFIX: &str = "/calico/ipam/v2/";
/// Root of the blocks.
pub const BLOCKS_PREFIX: &str = "/calico/ipam/v2/assignment/";
/// Root of the host affinities.
pub const HOSTS_PREFIX: &str = "/calico/ipam/v2/host/";
/// Root of the handles.
pub const HANDLES_PREFIX: &str = "/calico/ipam/v2/handle/";
/// The IPAM configuration as Calico's IPAM reads it.
pub const CONFIG_KEY: &str = "/calico/ipam/v2/config";

/// Attribute naming the host an allocation was made for (Calico's `node`).
pub const ATTR_NODE: &str = "node";
/// Attribute naming the namespace of the pod an allocation was made for
/// (Calico's `namespace`, set by the CNI plugin with [`ATTR_POD`]).
pub const ATTR_NAMESPACE: &str = "namespace";
/// Attribute naming the pod an allocation was made for (Calico's `pod`).
pub const ATTR_POD: &str = "pod";
/// Affinity prefix of host-affine blocks.
const HOST_AFFINITY: &str = "host:";

/// `10.0.0.0/26` as a key segment: `10.0.0.0-26`.
fn cidr_segment(cidr: IpNet) -> String {
    cidr.to_string().replacen('/', "-", 1)
}

fn parse_segment(segment: &str) -> Option<IpNet> {
    segment.replacen('-', "/", 1).parse().ok()
}

/// The key of a block.
pub fn block_key(cidr: IpNet) -> String {
    format!(
        "{BLOCKS_PREFIX}ipv{}/block/{}",
        block_math::family(cidr),
        cidr_segment(cidr)
    )
}

/// The prefix listing the blocks of one family.
pub fn blocks_prefix(family: u8) -> String {
    format!("{BLOCKS_PREFIX}ipv{family}/block/")
}

/// The block a block key names.
pub fn parse_block_key(key: &str) -> Option<IpNet> {
    let rest = key.strip_prefix(BLOCKS_PREFIX)?;
    let (_, segment) = rest.split_once("/block/")?;
    parse_segment(segment)
}

/// The key of `host`'s affinity to a block.
pub fn affinity_key(host: &str, cidr: IpNet) -> String {
    format!(
        "{HOSTS_PREFIX}{host}/ipv{}/block/{}",
        block_math::family(cidr),
        cidr_segment(cidr)
    )
}

/// The prefix listing `host`'s affinities, of one family or (`None`) all.
pub fn host_prefix(host: &str, family: Option<u8>) -> String {
    match family {
        Some(f) => format!("{HOSTS_PREFIX}{host}/ipv{f}/block/"),
        None => format!("{HOSTS_PREFIX}{host}/"),
    }
}

/// The host and block an affinity key names.
pub fn parse_affinity_key(key: &str) -> Option<(String, IpNet)> {
    let rest = key.strip_prefix(HOSTS_PREFIX)?;
    let (host, rest) = rest.split_once('/')?;
    let (_, segment) = rest.split_once("/block/")?;
    Some((host.to_owned(), parse_segment(segment)?))
}

/// The key of a handle.
pub fn handle_key(handle: &str) -> String {
    format!("{HANDLES_PREFIX}{handle}")
}

/// The handle a handle key names.
pub fn parse_handle_key(key: &str) -> Option<&str> {
    key.strip_prefix(HANDLES_PREFIX).filter(|h| !h.is_empty())
}

/// The metadata of one or more allocations (Calico's `AllocationAttribute`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationAttribute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, String>,
}

/// One block of a pool and every allocation in it (Calico's `AllocationBlock`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationBlock {
    pub cidr: IpNet,
    /// `host:<name>` when affine to a host.
    pub affinity: Option<String>,
    pub allocations: Vec<Option<usize>>,
    pub unallocated: Vec<usize>,
    pub attributes: Vec<AllocationAttribute>,
    /// Bumped on every write.
    #[serde(default, rename = "sequenceNumber")]
    pub sequence_number: u64,
    /// Ordinal (as a string) to the sequence number it was allocated at.
    #[serde(default, rename = "sequenceNumberForAllocation")]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    #[serde(default)]
    pub deleted: bool,
    /// Free ordinals (as strings) released while `minIPReclaimAgeSeconds`
    /// was set, with when (Unix seconds): held back until that age.
    #[serde(
        default,
        rename = "releasedAt",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub released_at: BTreeMap<String, u64>,
}

/// When a released address may be handed out again: not before it has
/// been free for `min_age` seconds at `now` (Unix seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reuse {
    pub now: u64,
    pub min_age: u64,
}

impl Reuse {
    /// Every free address may be handed out.
    pub const ANY: Reuse = Reuse { now: 0, min_age: 0 };
}

/// One allocation of a block, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation<'a> {
    pub ordinal: usize,
    pub ip: IpAddr,
    pub handle: Option<&'a str>,
    pub attrs: &'a BTreeMap<String, String>,
}

impl AllocationBlock {
    /// An empty block, affine to `host` if given.
    pub fn new(cidr: IpNet, host: Option<&str>) -> Self {
        let n = block_math::addresses_in_block(cidr);
        Self {
            cidr,
            affinity: host.map(|h| format!("{HOST_AFFINITY}{h}")),
            allocations: vec![None; n],
            unallocated: (0..n).collect(),
            attributes: Vec::new(),
            sequence_number: 0,
            sequence_number_for_allocation: BTreeMap::new(),
            deleted: false,
            released_at: BTreeMap::new(),
        }
    }

    /// Whether the free ordinal is still held back.
    fn held(&self, ordinal: usize, reuse: Reuse) -> bool {
        reuse.min_age > 0
            && self
                .released_at
                .get(&ordinal.to_string())
                .is_some_and(|t| reuse.now < t.saturating_add(reuse.min_age))
    }

    /// The host the block is affine to.
    pub fn host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix(HOST_AFFINITY)
    }

    /// Checks the value hangs together (sizes, indices, free list); `what`
    /// names the problem.
    pub fn check(&self) -> Result<(), String> {
        let n = block_math::addresses_in_block(self.cidr);
        if self.allocations.len() != n {
            return Err(format!(
                "allocations has {} entries, the block {} has {n} addresses",
                self.allocations.len(),
                self.cidr
            ));
        }
        if let Some((o, a)) = self
            .allocations
            .iter()
            .enumerate()
            .find_map(|(o, a)| a.filter(|a| *a >= self.attributes.len()).map(|a| (o, a)))
        {
            return Err(format!(
                "allocations[{o}] refers to attributes[{a}], beyond its {} entries",
                self.attributes.len()
            ));
        }
        if let Some(o) = self
            .unallocated
            .iter()
            .find(|o| self.allocations.get(**o).is_none_or(Option::is_some))
        {
            return Err(format!(
                "unallocated lists ordinal {o}, which is allocated or out of range"
            ));
        }
        Ok(())
    }

    /// Number of allocated addresses.
    pub fn in_use(&self) -> usize {
        self.allocations.iter().filter(|a| a.is_some()).count()
    }

    /// Number of addresses of the block.
    pub fn capacity(&self) -> usize {
        self.allocations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.allocations.iter().all(Option::is_none)
    }

    /// Free ordinals that may be handed out (not reserved, not held back
    /// by `reuse`), in hand-out order.
    pub fn assignable(
        &self,
        reserved: &dyn Fn(IpAddr) -> bool,
        reuse: Reuse,
    ) -> impl Iterator<Item = usize> {
        self.unallocated.iter().copied().filter(move |o| {
            !self.held(*o, reuse)
                && block_math::address(self.cidr, *o).is_some_and(|ip| !reserved(ip))
        })
    }

    /// Every allocation, in ordinal order.
    pub fn allocations(&self) -> impl Iterator<Item = Allocation<'_>> {
        self.allocations.iter().enumerate().filter_map(|(o, a)| {
            let attr = self.attributes.get((*a)?)?;
            Some(Allocation {
                ordinal: o,
                ip: block_math::address(self.cidr, o)?,
                handle: attr.handle_id.as_deref(),
                attrs: &attr.secondary,
            })
        })
    }

    /// The allocation of `ip`, if allocated.
    pub fn allocation(&self, ip: IpAddr) -> Option<Allocation<'_>> {
        let o = block_math::ordinal(self.cidr, ip)?;
        self.allocations().find(|a| a.ordinal == o)
    }

    /// Ordinals allocated to `handle`.
    pub fn ordinals_of(&self, handle: &str) -> Vec<usize> {
        self.allocations()
            .filter(|a| a.handle == Some(handle))
            .map(|a| a.ordinal)
            .collect()
    }

    /// Allocates up to `n` free, unreserved addresses to `attr`; returns
    /// their ordinals (fewer than `n` when the block runs out).
    pub fn assign(
        &mut self,
        n: usize,
        attr: &AllocationAttribute,
        reserved: &dyn Fn(IpAddr) -> bool,
        reuse: Reuse,
    ) -> Vec<usize> {
        let picked: Vec<usize> = self.assignable(reserved, reuse).take(n).collect();
        if !picked.is_empty() {
            self.unallocated.retain(|o| !picked.contains(o));
            self.mark_allocated(&picked, attr);
        }
        picked
    }

    /// Allocates the free address at `ordinal`; `false` if it is taken or
    /// out of range.
    pub fn assign_ordinal(&mut self, ordinal: usize, attr: &AllocationAttribute) -> bool {
        if self.allocations.get(ordinal).is_none_or(Option::is_some) {
            return false;
        }
        self.unallocated.retain(|o| *o != ordinal);
        self.mark_allocated(&[ordinal], attr);
        true
    }

    fn mark_allocated(&mut self, ordinals: &[usize], attr: &AllocationAttribute) {
        let index = match self.attributes.iter().position(|a| a == attr) {
            Some(i) => i,
            None => {
                self.attributes.push(attr.clone());
                self.attributes.len() - 1
            }
        };
        self.sequence_number += 1;
        for o in ordinals {
            self.allocations[*o] = Some(index);
            self.sequence_number_for_allocation
                .insert(o.to_string(), self.sequence_number);
            self.released_at.remove(&o.to_string());
        }
    }

    /// Frees the given ordinals (those not allocated are skipped); returns
    /// each freed ordinal with the handle it had. With a `reuse` age, each
    /// is stamped with `reuse.now` and held back that long; stamps older
    /// than the age are dropped.
    pub fn release(&mut self, ordinals: &[usize], reuse: Reuse) -> Vec<(usize, Option<String>)> {
        self.released_at
            .retain(|_, t| reuse.min_age > 0 && reuse.now < t.saturating_add(reuse.min_age));
        let mut freed = Vec::new();
        for o in ordinals {
            let Some(Some(index)) = self.allocations.get(*o).copied() else {
                continue;
            };
            let handle = self.attributes.get(index).and_then(|a| a.handle_id.clone());
            self.allocations[*o] = None;
            self.unallocated.push(*o);
            self.sequence_number_for_allocation.remove(&o.to_string());
            if reuse.min_age > 0 {
                self.released_at.insert(o.to_string(), reuse.now);
            }
            freed.push((*o, handle));
        }
        if !freed.is_empty() {
            self.sequence_number += 1;
            self.drop_unused_attributes();
        }
        freed
    }

    /// Removes attributes no allocation refers to and renumbers the rest.
    fn drop_unused_attributes(&mut self) {
        let mut used = vec![false; self.attributes.len()];
        for a in self.allocations.iter().flatten() {
            if let Some(u) = used.get_mut(*a) {
                *u = true;
            }
        }
        let mut renumber = vec![None; self.attributes.len()];
        let mut next = 0;
        for (i, u) in used.iter().enumerate() {
            if *u {
                renumber[i] = Some(next);
                next += 1;
            }
        }
        let mut i = 0;
        self.attributes.retain(|_| {
            i += 1;
            used[i - 1]
        });
        for a in self.allocations.iter_mut().flatten() {
            *a = renumber[*a].expect("every referenced attribute is kept");
        }
    }
}

/// State of a host's claim on a block (Calico's `BlockAffinityState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AffinityState {
    #[serde(rename = "confirmed")]
    Confirmed,
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "pendingDeletion")]
    PendingDeletion,
}

/// A host's claim on a block (Calico's `BlockAffinity`). Claims here are
/// written `confirmed` in the same transaction as the block itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAffinity {
    pub state: AffinityState,
    #[serde(default)]
    pub deleted: bool,
}

impl BlockAffinity {
    pub fn confirmed() -> Self {
        Self {
            state: AffinityState::Confirmed,
            deleted: false,
        }
    }
}

/// Which addresses a handle owns: a count per block (Calico's `IPAMHandle`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamHandle {
    #[serde(default)]
    pub block: BTreeMap<String, usize>,
    #[serde(default)]
    pub deleted: bool,
}

impl IpamHandle {
    /// Counts `n` more addresses in `block`.
    pub fn add(&mut self, block: IpNet, n: usize) {
        *self.block.entry(block.to_string()).or_default() += n;
    }

    /// Counts `n` fewer addresses in `block` (never below zero).
    pub fn remove(&mut self, block: IpNet, n: usize) {
        let key = block.to_string();
        if let Some(count) = self.block.get_mut(&key) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                self.block.remove(&key);
            }
        }
    }

    /// The blocks the handle has addresses in.
    pub fn blocks(&self) -> impl Iterator<Item = (Option<IpNet>, &str, usize)> {
        self.block
            .iter()
            .map(|(k, n)| (k.parse().ok(), k.as_str(), *n))
    }

    pub fn is_empty(&self) -> bool {
        self.block.values().all(|n| *n == 0)
    }
}

/// The IPAM configuration at [`CONFIG_KEY`] (Calico's `IPAMConfig`).
/// Written with every field; read as Calico reads it (a missing flag is
/// false), except that a missing or zero `maxBlocksPerHost` means the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredIpamConfig {
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default)]
    pub auto_allocate_blocks: bool,
    #[serde(default, rename = "maxBlocksPerHost")]
    pub max_blocks_per_host: u32,
    #[serde(
        default,
        rename = "minIPReclaimAgeSeconds",
        skip_serializing_if = "is_zero"
    )]
    pub min_ip_reclaim_age_seconds: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Encodes a stored value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("IPAM values serialise: all map keys are strings")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(handle: &str) -> AllocationAttribute {
        AllocationAttribute {
            handle_id: Some(handle.into()),
            secondary: BTreeMap::from([("node".into(), "n1".into())]),
        }
    }

    fn none(_: IpAddr) -> bool {
        false
    }

    #[test]
    fn keys_follow_calicos_layout_for_both_families() {
        let v4: IpNet = "10.0.0.64/26".parse().unwrap();
        let v6: IpNet = "fd00::40/122".parse().unwrap();
        assert_eq!(
            block_key(v4),
            "/calico/ipam/v2/assignment/ipv4/block/10.0.0.64-26"
        );
        assert_eq!(
            block_key(v6),
            "/calico/ipam/v2/assignment/ipv6/block/fd00::40-122"
        );
        assert_eq!(
            affinity_key("node1", v4),
            "/calico/ipam/v2/host/node1/ipv4/block/10.0.0.64-26"
        );
        assert_eq!(parse_block_key(&block_key(v6)), Some(v6));
        assert_eq!(
            parse_affinity_key(&affinity_key("n", v6)),
            Some(("n".into(), v6))
        );
        assert_eq!(
            parse_handle_key(&handle_key("k8s-pod-network.ab")),
            Some("k8s-pod-network.ab")
        );
    }

    #[test]
    fn block_json_has_calicos_field_names() {
        let mut b = AllocationBlock::new("10.0.0.0/30".parse().unwrap(), Some("node1"));
        b.assign(1, &attr("k8s-pod-network.abc"), &none, Reuse::ANY);
        let v: serde_json::Value = serde_json::from_slice(&encode(&b)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "cidr": "10.0.0.0/30",
                "affinity": "host:node1",
                "allocations": [0, null, null, null],
                "unallocated": [1, 2, 3],
                "attributes": [{"handle_id": "k8s-pod-network.abc", "secondary": {"node": "n1"}}],
                "sequenceNumber": 1,
                "sequenceNumberForAllocation": {"0": 1},
                "deleted": false
            })
        );
        let back: AllocationBlock = serde_json::from_value(v).unwrap();
        assert_eq!(back, b);
        let aff = serde_json::to_value(BlockAffinity::confirmed()).unwrap();
        assert_eq!(
            aff,
            serde_json::json!({"state": "confirmed", "deleted": false})
        );
    }

    #[test]
    fn assignment_shares_attributes_and_release_drops_unused_ones() {
        let mut b = AllocationBlock::new("10.0.0.0/29".parse().unwrap(), None);
        assert_eq!(b.assign(2, &attr("a"), &none, Reuse::ANY), vec![0, 1]);
        assert_eq!(b.assign(1, &attr("b"), &none, Reuse::ANY), vec![2]);
        assert_eq!(b.assign(1, &attr("a"), &none, Reuse::ANY), vec![3]);
        assert_eq!(b.attributes.len(), 2);
        assert_eq!(b.allocations[3], Some(0));
        let freed = b.release(&[0, 1, 3, 5], Reuse::ANY);
        assert_eq!(
            freed,
            vec![
                (0, Some("a".into())),
                (1, Some("a".into())),
                (3, Some("a".into()))
            ]
        );
        assert_eq!(b.attributes, vec![attr("b")]);
        assert_eq!(b.allocations[2], Some(0));
        assert_eq!(b.ordinals_of("b"), vec![2]);
        assert_eq!(b.unallocated, vec![4, 5, 6, 7, 0, 1, 3]);
        b.check().unwrap();
    }

    #[test]
    fn reserved_addresses_are_skipped_and_stay_free() {
        let mut b = AllocationBlock::new("10.0.0.0/30".parse().unwrap(), None);
        let reserved = |ip: IpAddr| ip == "10.0.0.0".parse::<IpAddr>().unwrap();
        assert_eq!(
            b.assign(5, &attr("a"), &reserved, Reuse::ANY),
            vec![1, 2, 3]
        );
        assert_eq!(b.unallocated, vec![0]);
        assert!(b.assign(1, &attr("a"), &reserved, Reuse::ANY).is_empty());
    }

    #[test]
    fn a_taken_ordinal_cannot_be_assigned_again() {
        let mut b = AllocationBlock::new("10.0.0.0/30".parse().unwrap(), None);
        assert!(b.assign_ordinal(2, &attr("a")));
        assert!(!b.assign_ordinal(2, &attr("b")));
        assert!(!b.assign_ordinal(9, &attr("b")));
        assert_eq!(b.assign(9, &attr("c"), &none, Reuse::ANY), vec![0, 1, 3]);
    }

    #[test]
    fn inconsistent_blocks_are_named() {
        let mut b = AllocationBlock::new("10.0.0.0/30".parse().unwrap(), None);
        b.allocations[1] = Some(3);
        assert!(b.check().unwrap_err().contains("allocations[1]"));
        let mut b = AllocationBlock::new("10.0.0.0/30".parse().unwrap(), None);
        b.allocations.pop();
        assert!(b.check().unwrap_err().contains("3 entries"));
    }

    #[test]
    fn handle_counts_never_go_negative() {
        let block: IpNet = "10.0.0.0/26".parse().unwrap();
        let mut h = IpamHandle::default();
        h.add(block, 2);
        assert_eq!(
            serde_json::to_value(&h).unwrap(),
            serde_json::json!({"block": {"10.0.0.0/26": 2}, "deleted": false})
        );
        h.remove(block, 5);
        assert!(h.is_empty());
        assert!(h.block.is_empty());
    }

    #[test]
    fn a_released_address_is_held_back_for_the_reclaim_age() {
        let mut b = AllocationBlock::new("10.0.0.0/30".parse().unwrap(), Some("h"));
        let none = |_: IpAddr| false;
        let at = |now| Reuse { now, min_age: 60 };
        assert_eq!(b.assign(4, &attr("a"), &none, at(100)), vec![0, 1, 2, 3]);
        b.release(&[2], at(100));
        assert_eq!(b.released_at.get("2"), Some(&100));
        assert!(
            b.assign(1, &attr("b"), &none, at(159)).is_empty(),
            "held back"
        );
        assert_eq!(
            b.assignable(&none, Reuse::ANY).collect::<Vec<_>>(),
            vec![2],
            "free all the same"
        );
        assert_eq!(b.assign(1, &attr("b"), &none, at(160)), vec![2]);
        assert!(b.released_at.is_empty(), "handed out: no longer held");
        // Without an age nothing is stamped, and old stamps are dropped.
        b.release(&[1], Reuse::ANY);
        assert!(b.released_at.is_empty());
        assert!(b.check().is_ok());
    }
}
