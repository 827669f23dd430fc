//! IP address management, Calico-style, on any [`KvStore`](crate::KvStore).
//!
//! Pools (IPPool resources) are cut into blocks of `blockSize`, each block
//! affine to one host. A host takes addresses from its own blocks first,
//! claims a free block when they are full (up to `maxBlocksPerHost`), and
//! otherwise borrows from other hosts' blocks unless `strictAffinity` is set.
//! IPReservation ranges are never handed out; disabled pools, pools whose
//! `nodeSelector` does not select the host, and pools whose `allowedUses`
//! lack the request's use are skipped. Every address belongs to a handle
//! (the CNI names them `<network>.<containerID>`), which may own several
//! addresses of both families.
//!
//! Every change is one transaction that compares the revisions of every key
//! it read and writes (block, handle, affinity), retried a bounded number of
//! times on conflict: allocators on many hosts and in many processes never
//! hand out one address twice, and a crash leaves either all of a change or
//! none of it. The data is laid out as Calico's etcdv3 datastore lays it out
//! (see [`model`]).
//!
//! # Layout
//!
//! - [`block_math`]: pure block arithmetic (IPv4 and IPv6), with property tests.
//! - [`model`]: the stored values and keys, and pure operations on a block.
//! - [`select`]: pure decisions: usable pools, reservations, the next block
//!   to claim, the fate of an emptied block.
//! - [`check`]: the pure consistency check behind `ipam check` (blocks, handles,
//!   affinities, Nodes and WorkloadEndpoints) and its [`Report`].
//! - [`leaks`]: the leak collector's pure memory: since when each address
//!   has been leaked, and which are due once the grace period has passed.
//! - [`collector`]: the leak collector felix runs on the lease's holder:
//!   scans, waits out the grace period, releases guarded by the handle.
//! - [`client`]: [`Ipam`], the thin I/O layer: read, decide, transact, retry.
//! - `suite` (feature `testing`): concurrency and crash cases written
//!   against a [`DatastoreConfig`](crate::DatastoreConfig), run by each
//!   backend's tests, and the `ipam-worker` binary's logic.

pub mod block_math;
pub mod check;
pub mod client;
pub mod collector;
pub mod leaks;
pub mod model;
pub mod select;
#[cfg(feature = "testing")]
pub mod suite;

use std::net::IpAddr;

use ipnet::IpNet;

pub use block_math::BlockMathError;
pub use check::{LeakReason, LeakedAddress, Owners, Report, UnallocatedAddress};
pub use client::{
    Assigned, AssignedIp, AutoAssignArgs, BlockUsage, ConfigUpdate, HandleGuard, IpStatus, Ipam,
    PoolRef, PoolUsage, Scan, Usage,
};
pub use select::IpUse;

/// Everything IPAM can fail with; each names what is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error(transparent)]
    Datastore(#[from] crate::Error),
    #[error(transparent)]
    BlockMath(#[from] BlockMathError),
    #[error("invalid {what} {value:?}: must be non-empty and contain no '/'")]
    InvalidName { what: &'static str, value: String },
    /// `who`: "host h", or "host h for namespace ns".
    #[error("no enabled IPv{family} pool may be used by {who} for {ip_use:?} addresses")]
    NoUsablePool {
        family: u8,
        who: String,
        ip_use: IpUse,
    },
    #[error("pool {pool} is not an enabled IP pool that {who} may use for {ip_use:?} addresses")]
    PoolNotUsable {
        pool: IpNet,
        who: String,
        ip_use: IpUse,
    },
    #[error(
        "no free IPv{family} address for host {host} in pools {pools}: its blocks are full, {no_claim}{}",
        if *strict { ", and strictAffinity forbids borrowing" } else { ", and no block has room to borrow from" }
    )]
    Exhausted {
        family: u8,
        host: String,
        pools: String,
        /// Why the host could not claim another block.
        no_claim: NoClaim,
        strict: bool,
    },
    #[error("{ip} is not in any IP pool")]
    NotInPool { ip: IpAddr },
    #[error("{ip} is reserved by IPReservation {reservation}")]
    Reserved { ip: IpAddr, reservation: String },
    #[error("{ip} is already allocated (handle {handle:?})")]
    AlreadyAllocated { ip: IpAddr, handle: Option<String> },
    #[error("handle {handle} not found")]
    HandleNotFound { handle: String },
    /// The handle no longer holds the addresses a workload was given
    /// (released meanwhile: by the leak collector, or a DEL).
    #[error(
        "IPAM handle {handle} no longer holds {addresses:?}: they were released meanwhile (by the \
         leak collector, or a DEL)"
    )]
    HandleMoved {
        handle: String,
        addresses: Vec<IpAddr>,
    },
    #[error("IP pool {0} not found")]
    PoolNotFound(String),
    #[error("gave up on {what} after {attempts} conflicting concurrent updates")]
    TooManyConflicts { what: String, attempts: usize },
    #[error("invalid IPAM data at {key}: {message}")]
    InvalidData { key: String, message: String },
    #[error(
        "IP pool {pool} changed, or a name for the new pools is taken, while splitting it; nothing was written"
    )]
    SplitConflict { pool: String },
    #[error("invalid IPAM configuration: {0}")]
    InvalidConfig(String),
    #[error(
        "{failed}; rolling back the addresses already assigned to handle {handle} also failed: {rollback}"
    )]
    RollbackFailed {
        failed: Box<IpamError>,
        handle: String,
        rollback: Box<IpamError>,
    },
}

/// Why a host whose blocks are full could claim no further block: the
/// limit that was hit, named so that a user knows what to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoClaim {
    /// The IPAMConfiguration's `autoAllocateBlocks` is false.
    AutoAllocateOff,
    /// The host already holds `held` blocks of the family, and the
    /// IPAMConfiguration's `maxBlocksPerHost` is `max`.
    AtMaxBlocks { held: usize, max: u32 },
    /// Every block of the usable pools is claimed or wholly reserved.
    PoolsFull,
}

impl std::fmt::Display for NoClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AutoAllocateOff => {
                f.write_str("and it claims no block: IPAMConfiguration autoAllocateBlocks is false")
            }
            Self::AtMaxBlocks { held, max } => write!(
                f,
                "and it may claim no more: it holds {held}, IPAMConfiguration maxBlocksPerHost is \
                 {max} (calicoctl ipam configure --max-blocks-per-host raises it)"
            ),
            Self::PoolsFull => f.write_str("and no block of the pools is left to claim"),
        }
    }
}

/// Result alias of this module.
pub type Result<T, E = IpamError> = std::result::Result<T, E>;
