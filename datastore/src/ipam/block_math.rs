//! Block arithmetic, pure: how a pool is cut into blocks of a prefix length,
//! which block holds an address, and the ordinal of an address in its block
//! (IPv4 and IPv6 alike, on 128-bit integers).
//!
//! A pool's prefix must be no longer than its block size (`/26` blocks of a
//! `/16`, `/122` blocks of a `/64`); since both are CIDRs, the blocks then tile
//! the pool exactly. A pool smaller than one block is refused, as Calico's
//! validation refuses it ([`BlockMathError::BlockLargerThanPool`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// What block arithmetic refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockMathError {
    #[error("block size /{block_size} is larger than the pool {pool}")]
    BlockLargerThanPool { pool: IpNet, block_size: u8 },
    #[error("block size /{block_size} is not a prefix length of an IPv{family} address")]
    BlockSizeOutOfRange { block_size: u8, family: u8 },
    #[error("pool {pool} has more blocks of /{block_size} than can be counted")]
    TooManyBlocks { pool: IpNet, block_size: u8 },
    #[error("block index {index} is beyond the {count} blocks of {pool}")]
    IndexOutOfRange {
        pool: IpNet,
        index: u128,
        count: u128,
    },
    #[error("{ip} is not in {net}")]
    NotInNetwork { ip: IpAddr, net: IpNet },
    #[error("cannot split {pool} into {parts} pools: {reason}")]
    BadSplit {
        pool: IpNet,
        parts: u128,
        reason: String,
    },
}

type Result<T> = std::result::Result<T, BlockMathError>;

/// Bits in an address of the network's family: 32 or 128.
pub fn width(net: IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 32,
        IpNet::V6(_) => 128,
    }
}

/// 4 or 6.
pub fn family(net: IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

/// The address as an integer.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address `n` of the family of `like` (truncated to 32 bits for IPv4).
fn from_u128(like: IpNet, n: u128) -> IpAddr {
    match like {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

fn net(addr: IpAddr, prefix: u8) -> IpNet {
    IpNet::new(addr, prefix)
        .expect("prefix lengths are checked against the family")
        .trunc()
}

/// `2^bits`, if it fits.
fn pow2(bits: u8) -> Option<u128> {
    1u128.checked_shl(u32::from(bits))
}

fn check_block_size(pool: IpNet, block_size: u8) -> Result<()> {
    if block_size > width(pool) {
        return Err(BlockMathError::BlockSizeOutOfRange {
            block_size,
            family: family(pool),
        });
    }
    if block_size < pool.prefix_len() {
        return Err(BlockMathError::BlockLargerThanPool { pool, block_size });
    }
    Ok(())
}

/// Number of addresses in a network (`None` for `::/0`, which has 2^128).
pub fn size(net: IpNet) -> Option<u128> {
    pow2(width(net) - net.prefix_len())
}

/// Number of blocks of `/block_size` in `pool`.
pub fn block_count(pool: IpNet, block_size: u8) -> Result<u128> {
    check_block_size(pool, block_size)?;
    pow2(block_size - pool.prefix_len()).ok_or(BlockMathError::TooManyBlocks { pool, block_size })
}

/// The `index`th block of `pool` (0 is the block at the pool's start).
pub fn block_at(pool: IpNet, block_size: u8, index: u128) -> Result<IpNet> {
    let count = block_count(pool, block_size)?;
    if index >= count {
        return Err(BlockMathError::IndexOutOfRange { pool, index, count });
    }
    let step = pow2(width(pool) - block_size).unwrap_or(0);
    let start = to_u128(pool.trunc().network()) + index * step;
    Ok(net(from_u128(pool, start), block_size))
}

/// The block of `/block_size` holding `ip` (whatever the pool).
pub fn block_containing(ip: IpAddr, block_size: u8) -> Result<IpNet> {
    let w = if ip.is_ipv4() { 32 } else { 128 };
    if block_size > w {
        return Err(BlockMathError::BlockSizeOutOfRange {
            block_size,
            family: if ip.is_ipv4() { 4 } else { 6 },
        });
    }
    Ok(net(ip, block_size))
}

/// Index in `pool` of the block holding `ip`.
pub fn block_index(pool: IpNet, block_size: u8, ip: IpAddr) -> Result<u128> {
    check_block_size(pool, block_size)?;
    if !pool.contains(&ip) {
        return Err(BlockMathError::NotInNetwork { ip, net: pool });
    }
    let offset = to_u128(ip) - to_u128(pool.trunc().network());
    Ok(offset >> (width(pool) - block_size))
}

/// Every block of `pool`, in address order, lazily (a `/64` has 2^58 of `/122`).
pub fn blocks(pool: IpNet, block_size: u8) -> Result<impl Iterator<Item = IpNet>> {
    blocks_from(pool, block_size, 0)
}

/// Every block of `pool` once, starting at index `start % count` and
/// wrapping around: hosts that start at different places contend less.
pub fn blocks_from(
    pool: IpNet,
    block_size: u8,
    start: u128,
) -> Result<impl Iterator<Item = IpNet>> {
    let count = block_count(pool, block_size)?;
    let first = start % count;
    Ok((0..count).map(move |i| {
        let index = first.wrapping_add(i) % count;
        block_at(pool, block_size, index).expect("index below the block count")
    }))
}

/// Number of addresses of a block, as an ordinal bound.
pub fn addresses_in_block(block: IpNet) -> usize {
    size(block)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(usize::MAX)
}

/// How far into `block` the address lies; `None` if outside.
pub fn ordinal(block: IpNet, ip: IpAddr) -> Option<usize> {
    if !block.contains(&ip) {
        return None;
    }
    usize::try_from(to_u128(ip) - to_u128(block.network())).ok()
}

/// The address at `ordinal` in `block`; `None` past its end.
pub fn address(block: IpNet, ordinal: usize) -> Option<IpAddr> {
    let ord = u128::try_from(ordinal).ok()?;
    if size(block).is_some_and(|n| ord >= n) {
        return None;
    }
    Some(from_u128(block, to_u128(block.network()) + ord))
}

/// `pool` cut into `parts` equal pools (a power of two), each still at least
/// one block of `/block_size`.
pub fn split(pool: IpNet, parts: u128, block_size: u8) -> Result<Vec<IpNet>> {
    let bad = |reason: String| BlockMathError::BadSplit {
        pool,
        parts,
        reason,
    };
    if parts == 0 || !parts.is_power_of_two() {
        return Err(bad("the number of pools must be a power of two".into()));
    }
    let extra = parts.trailing_zeros() as u8;
    let prefix = pool.prefix_len() + extra;
    if prefix > block_size {
        return Err(bad(format!(
            "each would be a /{prefix}, smaller than one /{block_size} block"
        )));
    }
    (0..parts).map(|i| block_at(pool, prefix, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_slash_16_holds_1024_blocks_of_slash_26() {
        let pool = n("10.1.0.0/16");
        assert_eq!(block_count(pool, 26), Ok(1024));
        assert_eq!(block_at(pool, 26, 0), Ok(n("10.1.0.0/26")));
        assert_eq!(block_at(pool, 26, 5), Ok(n("10.1.1.64/26")));
        assert_eq!(block_at(pool, 26, 1023), Ok(n("10.1.255.192/26")));
        assert!(block_at(pool, 26, 1024).is_err());
    }

    #[test]
    fn a_slash_64_holds_2_to_the_58_blocks_of_slash_122() {
        let pool = n("fd00:1:2:3::/64");
        assert_eq!(block_count(pool, 122), Ok(1 << 58));
        assert_eq!(block_at(pool, 122, 1), Ok(n("fd00:1:2:3::40/122")));
        assert_eq!(
            block_at(pool, 122, (1 << 58) - 1),
            Ok(n("fd00:1:2:3:ffff:ffff:ffff:ffc0/122"))
        );
        let ip: IpAddr = "fd00:1:2:3::1:7".parse().unwrap();
        let block = block_containing(ip, 122).unwrap();
        assert_eq!(block, n("fd00:1:2:3::1:0/122"));
        assert_eq!(ordinal(block, ip), Some(7));
    }

    #[test]
    fn a_pool_smaller_than_a_block_is_refused() {
        assert_eq!(
            block_count(n("10.0.0.0/27"), 26),
            Err(BlockMathError::BlockLargerThanPool {
                pool: n("10.0.0.0/27"),
                block_size: 26
            })
        );
        assert!(block_count(n("10.0.0.0/24"), 33).is_err());
    }

    #[test]
    fn splitting_needs_a_power_of_two_and_whole_blocks() {
        assert_eq!(
            split(n("10.0.0.0/24"), 4, 26),
            Ok(vec![
                n("10.0.0.0/26"),
                n("10.0.0.64/26"),
                n("10.0.0.128/26"),
                n("10.0.0.192/26")
            ])
        );
        assert!(split(n("10.0.0.0/24"), 3, 26).is_err());
        assert!(split(n("10.0.0.0/24"), 8, 26).is_err());
        assert!(split(n("10.0.0.0/24"), 0, 26).is_err());
    }

    #[test]
    fn iteration_from_a_start_wraps_around_once() {
        let pool = n("10.0.0.0/24");
        let got: Vec<IpNet> = blocks_from(pool, 26, 6).unwrap().collect();
        assert_eq!(
            got,
            vec![
                n("10.0.0.128/26"),
                n("10.0.0.192/26"),
                n("10.0.0.0/26"),
                n("10.0.0.64/26")
            ]
        );
    }

    /// A pool (v4 or v6) and a block size no shorter than its prefix, small
    /// enough to enumerate every block.
    fn pool_and_block() -> impl Strategy<Value = (IpNet, u8)> {
        let v4 = (any::<u32>(), 16u8..=32, 0u8..=8).prop_map(|(addr, prefix, extra)| {
            let pool = net(IpAddr::V4(Ipv4Addr::from(addr)), prefix);
            (pool, (prefix + extra).min(32))
        });
        let v6 = (any::<u128>(), 56u8..=128, 0u8..=8).prop_map(|(addr, prefix, extra)| {
            let pool = net(IpAddr::V6(Ipv6Addr::from(addr)), prefix);
            (pool, (prefix + extra).min(128))
        });
        prop_oneof![v4, v6]
    }

    /// A pool and a block size as pools really have them (IPv4 /20-/32,
    /// IPv6 /116-/128), with pools of any size above that.
    fn pool_and_real_block() -> impl Strategy<Value = (IpNet, u8)> {
        let v4 = (any::<u32>(), 8u8..=32, 20u8..=32).prop_map(|(addr, prefix, block)| {
            (
                net(IpAddr::V4(Ipv4Addr::from(addr)), prefix.min(block)),
                block,
            )
        });
        let v6 = (any::<u128>(), 0u8..=128, 116u8..=128).prop_map(|(addr, prefix, block)| {
            (
                net(IpAddr::V6(Ipv6Addr::from(addr)), prefix.max(10).min(block)),
                block,
            )
        });
        prop_oneof![v4, v6]
    }

    proptest! {
        #[test]
        fn blocks_tile_the_pool_exactly_without_overlap((pool, bs) in pool_and_block()) {
            let all: Vec<IpNet> = blocks(pool, bs).unwrap().collect();
            prop_assert_eq!(all.len() as u128, block_count(pool, bs).unwrap());
            let mut covered: u128 = 0;
            for (i, b) in all.iter().enumerate() {
                prop_assert_eq!(b.prefix_len(), bs);
                prop_assert!(pool.contains(b), "{} outside {}", b, pool);
                if i > 0 {
                    // Consecutive and disjoint: each starts right after the previous ends.
                    prop_assert_eq!(to_u128(all[i - 1].broadcast()) + 1, to_u128(b.network()));
                }
                covered += size(*b).unwrap();
            }
            prop_assert_eq!(to_u128(all[0].network()), to_u128(pool.network()));
            prop_assert_eq!(to_u128(all[all.len() - 1].broadcast()), to_u128(pool.broadcast()));
            prop_assert_eq!(Some(covered), size(pool));
        }

        #[test]
        fn every_address_maps_back_to_its_block_and_ordinal(
            (pool, bs) in pool_and_real_block(),
            pick in any::<u128>(),
        ) {
            let count = block_count(pool, bs).unwrap();
            let index = pick % count;
            let block = block_at(pool, bs, index).unwrap();
            let per_block = size(block).unwrap();
            for ord in [0, pick % per_block, per_block - 1] {
                let ip = address(block, ord as usize).unwrap();
                prop_assert_eq!(block_containing(ip, bs).unwrap(), block);
                prop_assert_eq!(block_index(pool, bs, ip).unwrap(), index);
                prop_assert_eq!(ordinal(block, ip), Some(ord as usize));
            }
            prop_assert_eq!(address(block, per_block as usize), None);
        }

        #[test]
        fn ordinals_round_trip_in_large_ipv6_pools(addr in any::<u128>(), bs in 116u8..=128) {
            let ip = IpAddr::V6(Ipv6Addr::from(addr));
            let pool = net(ip, 64);
            let block = block_containing(ip, bs).unwrap();
            prop_assert!(pool.contains(&block));
            let ord = ordinal(block, ip).unwrap();
            prop_assert_eq!(address(block, ord), Some(ip));
            prop_assert_eq!(block_at(pool, bs, block_index(pool, bs, ip).unwrap()).unwrap(), block);
        }

        #[test]
        fn split_pools_tile_the_original((pool, bs) in pool_and_block(), bits in 0u8..=4) {
            let parts = 1u128 << bits;
            match split(pool, parts, bs) {
                Ok(children) => {
                    prop_assert_eq!(children.len() as u128, parts);
                    let total: u128 = children.iter().map(|c| size(*c).unwrap()).sum();
                    prop_assert_eq!(Some(total), size(pool));
                    for c in &children {
                        prop_assert!(pool.contains(c));
                        prop_assert!(c.prefix_len() <= bs);
                    }
                }
                Err(_) => prop_assert!(pool.prefix_len() + bits > bs),
            }
        }
    }
}
