//! [`Ipam`]: the I/O layer. Each operation reads what it needs, lets the
//! pure modules decide, and commits one transaction comparing the revision
//! of every key it read and writes; on a conflict it reads again and
//! retries, a bounded number of times with a short random pause.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::{IPAMConfiguration, IPAMConfigurationSpec, IPPool, Kind, ObjectMeta, Resource};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::check::{self, LeakedAddress, Report};
use super::model::{
    ATTR_NODE, AllocationAttribute, AllocationBlock, BLOCKS_PREFIX, BlockAffinity, CONFIG_KEY,
    IPAM_PREFIX, IpamHandle, Reuse, StoredIpamConfig, affinity_key, block_key, blocks_prefix,
    encode, handle_key, host_prefix, parse_affinity_key, parse_block_key, parse_handle_key,
};
use super::select::{
    EmptyBlockFate, IpUse, PoolView, Requester, Reservations, empty_block_fate, namespace_labels,
    pick_unclaimed, usable_pools,
};
use super::{IpamError, NoClaim, Result, block_math};
use crate::error::Error;
use crate::kv::{Check, Compare, KeyValue, KvStore, Op, Txn};
use crate::resources::ResourceStore;

/// Conflicting concurrent updates one operation tolerates before giving up.
pub const MAX_CONFLICTS: usize = 500;

/// IP address management on a shared store.
#[derive(Debug, Clone)]
pub struct Ipam {
    kv: Arc<dyn KvStore>,
    resources: ResourceStore,
}

/// A request for addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoAssignArgs {
    /// Owner of the addresses, e.g. `k8s-pod-network.<containerID>`.
    pub handle: String,
    /// The host the addresses are for.
    pub host: String,
    pub num_v4: usize,
    pub num_v6: usize,
    /// Stored with the allocations (`pod`, `namespace`, ...); `node` is set
    /// to the host unless given.
    pub attrs: BTreeMap<String, String>,
    /// Only these IPv4 pools (by CIDR); all usable ones when `None`.
    pub ipv4_pools: Option<Vec<IpNet>>,
    pub ipv6_pools: Option<Vec<IpNet>>,
    pub ip_use: IpUse,
    /// The workload's namespace, which pools' `namespaceSelector` match;
    /// `None` (not a workload's request): only pools selecting every
    /// namespace.
    pub namespace: Option<String>,
}

/// One assigned address and the block it came from (whose prefix a CNI
/// plugin may hand to the workload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedIp {
    pub ip: IpAddr,
    pub block: IpNet,
}

/// The addresses an [`Ipam::auto_assign`] handed out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assigned {
    pub v4: Vec<AssignedIp>,
    pub v6: Vec<AssignedIp>,
}

/// A change of the IPAM configuration; `None` keeps the current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigUpdate {
    pub strict_affinity: Option<bool>,
    pub max_blocks_per_host: Option<u32>,
    pub auto_allocate_blocks: Option<bool>,
}

/// A pool named by its name or its CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolRef {
    Name(String),
    Cidr(IpNet),
}

/// Usage of one block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockUsage {
    pub cidr: IpNet,
    /// The host the block is affine to.
    pub host: Option<String>,
    pub capacity: usize,
    /// Allocated, reserved or not.
    pub in_use: usize,
    /// Reserved by an IPReservation, allocated or not.
    pub reserved: usize,
    /// Neither allocated nor reserved.
    pub free: usize,
}

/// Usage of one pool and its blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolUsage {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
    pub disabled: bool,
    /// Addresses in the pool (saturating for `::/0`).
    pub size: u128,
    /// Allocated, reserved or not.
    pub in_use: u128,
    /// Reserved by an IPReservation, allocated or not, over the whole pool
    /// (blocks carved or not).
    pub reserved: u128,
    /// Neither allocated nor reserved.
    pub free: u128,
    pub blocks: Vec<BlockUsage>,
}

/// What [`Ipam::scan`] read: the check's report and the guard of a
/// release that must not outrun a workload appearing.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub report: Report,
    pub guard: HandleGuard,
}

/// Each handle's `mod_revision` as a scan read it. A guarded release frees
/// a handle's addresses only while the handle is still at that revision
/// (compared in the release's own transaction), and follows the handle
/// through the releases it makes itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandleGuard {
    revisions: BTreeMap<String, i64>,
}

impl HandleGuard {
    /// The handles of an IPAM listing.
    pub fn of(kvs: &[KeyValue]) -> Self {
        Self {
            revisions: kvs
                .iter()
                .filter_map(|kv| Some((parse_handle_key(&kv.key)?.to_owned(), kv.mod_revision)))
                .collect(),
        }
    }

    /// Whether the compare a release would make on `handle` pins it where
    /// the scan saw it (absent stays absent).
    fn holds(&self, handle: &str, compare: &Compare) -> bool {
        match (&compare.check, self.revisions.get(handle)) {
            (Check::ModRevision(now), Some(seen)) => now == seen,
            (Check::Absent, None) => true,
            _ => false,
        }
    }

    /// Records a handle this guard's own release rewrote (at `revision`)
    /// or deleted (`None`).
    fn moved(&mut self, handle: &str, revision: Option<i64>) {
        match revision {
            Some(r) => {
                self.revisions.insert(handle.to_owned(), r);
            }
            None => {
                self.revisions.remove(handle);
            }
        }
    }
}

/// Usage per pool; blocks no pool holds (their pool was deleted) apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub pools: Vec<PoolUsage>,
    pub orphan_blocks: Vec<BlockUsage>,
}

/// Who owns an address, for `ipam show --ip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpStatus {
    pub ip: IpAddr,
    pub pool: Option<String>,
    pub reserved_by: Option<String>,
    pub block: Option<IpNet>,
    pub block_host: Option<String>,
    pub allocated: bool,
    pub handle: Option<String>,
    pub attrs: BTreeMap<String, String>,
}

/// What one attempt on the blocks achieved.
enum Step {
    Assigned(Vec<AssignedIp>),
    Conflict,
    Full,
}

/// Everything an assignment decides from, read once per request.
struct Context {
    config: IPAMConfigurationSpec,
    pools: Vec<IPPool>,
    reservations: Reservations,
    node_labels: Option<BTreeMap<String, String>>,
    /// The request's namespace and its labels.
    namespace: Option<(String, BTreeMap<String, String>)>,
    /// Which released addresses may be handed out again.
    reuse: Reuse,
}

impl Context {
    fn requester<'a>(&'a self, host: &'a str) -> Requester<'a> {
        Requester {
            host,
            node_labels: self.node_labels.as_ref(),
            namespace: self.namespace.as_ref().map(|(ns, l)| (ns.as_str(), l)),
        }
    }
}

fn check_name(what: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value.contains('/') {
        return Err(IpamError::InvalidName {
            what,
            value: value.into(),
        });
    }
    Ok(())
}

fn invalid(kv: &KeyValue, message: impl ToString) -> IpamError {
    IpamError::InvalidData {
        key: kv.key.clone(),
        message: message.to_string(),
    }
}

fn decode_block(kv: &KeyValue) -> Result<AllocationBlock> {
    let block: AllocationBlock = serde_json::from_slice(&kv.value).map_err(|e| invalid(kv, e))?;
    block.check().map_err(|e| invalid(kv, e))?;
    if parse_block_key(&kv.key) != Some(block.cidr) {
        return Err(invalid(kv, format!("holds the block {}", block.cidr)));
    }
    Ok(block)
}

fn decode_handle(kv: &KeyValue) -> Result<IpamHandle> {
    serde_json::from_slice(&kv.value).map_err(|e| invalid(kv, e))
}

/// The compare that holds while the key is as read (`None`: absent).
fn unchanged(key: &str, read: Option<&KeyValue>) -> Compare {
    match read {
        Some(kv) => Compare::mod_revision(key, kv.mod_revision),
        None => Compare::absent(key),
    }
}

fn addresses(block: IpNet, ordinals: &[usize]) -> Vec<AssignedIp> {
    ordinals
        .iter()
        .filter_map(|o| block_math::address(block, *o))
        .map(|ip| AssignedIp { ip, block })
        .collect()
}

/// Counts a conflict and pauses a random moment; fails past [`MAX_CONFLICTS`].
async fn backoff(conflicts: &mut usize, what: impl FnOnce() -> String) -> Result<()> {
    *conflicts += 1;
    if *conflicts > MAX_CONFLICTS {
        return Err(IpamError::TooManyConflicts {
            what: what(),
            attempts: *conflicts,
        });
    }
    let noise = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let cap_us = 1000 * (*conflicts).min(10) as u64;
    tokio::time::sleep(Duration::from_micros(100 + u64::from(noise) % cap_us)).await;
    Ok(())
}

/// The hold on released addresses the configuration asks for, now.
fn reuse_of(config: &IPAMConfigurationSpec) -> Reuse {
    Reuse {
        now: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        min_age: config.min_ip_reclaim_age_seconds,
    }
}

/// The IPAMConfiguration resource's key.
fn v3_config_key() -> String {
    ResourceStore::key(Kind::IPAMConfiguration, None, "default")
}

fn config_from_v2(kv: &KeyValue) -> Result<IPAMConfigurationSpec> {
    let stored: StoredIpamConfig = serde_json::from_slice(&kv.value).map_err(|e| invalid(kv, e))?;
    Ok(IPAMConfigurationSpec {
        strict_affinity: stored.strict_affinity,
        auto_allocate_blocks: stored.auto_allocate_blocks,
        max_blocks_per_host: match stored.max_blocks_per_host {
            0 => IPAMConfigurationSpec::default().max_blocks_per_host,
            n => n,
        },
        min_ip_reclaim_age_seconds: stored.min_ip_reclaim_age_seconds,
    })
}

fn config_from_v3(kv: &KeyValue) -> Result<IPAMConfigurationSpec> {
    let value: serde_json::Value = serde_json::from_slice(&kv.value).map_err(|e| invalid(kv, e))?;
    match Resource::from_value(value).map_err(|e| invalid(kv, e))? {
        Resource::IPAMConfiguration(c) => Ok(c.spec),
        other => Err(invalid(kv, format!("holds a {}", other.kind()))),
    }
}

impl Ipam {
    pub fn new(kv: Arc<dyn KvStore>) -> Self {
        Self {
            resources: ResourceStore::new(kv.clone()),
            kv,
        }
    }

    /// The store underneath.
    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    // ---- configuration -------------------------------------------------

    /// The effective configuration. It may be stored twice: at Calico's IPAM
    /// key `/calico/ipam/v2/config` (what `calicoctl ipam configure` writes)
    /// and as the IPAMConfiguration resource `default` (what `calicoctl
    /// apply` writes); the one written last wins, and the defaults apply
    /// when neither exists.
    pub async fn config(&self) -> Result<IPAMConfigurationSpec> {
        let (v2, v3) = self.config_kvs().await?;
        Self::effective_config(v2.as_ref(), v3.as_ref())
    }

    async fn config_kvs(&self) -> Result<(Option<KeyValue>, Option<KeyValue>)> {
        Ok((
            self.kv.get(CONFIG_KEY).await?,
            self.kv.get(&v3_config_key()).await?,
        ))
    }

    fn effective_config(
        v2: Option<&KeyValue>,
        v3: Option<&KeyValue>,
    ) -> Result<IPAMConfigurationSpec> {
        match (v2, v3) {
            (Some(a), Some(b)) if b.mod_revision > a.mod_revision => config_from_v3(b),
            (Some(a), _) => config_from_v2(a),
            (None, Some(b)) => config_from_v3(b),
            (None, None) => Ok(IPAMConfigurationSpec::default()),
        }
    }

    /// Changes the configuration, writing both places it lives in one
    /// transaction. Returns the new configuration.
    pub async fn configure(&self, update: ConfigUpdate) -> Result<IPAMConfigurationSpec> {
        let mut conflicts = 0;
        loop {
            let (v2, v3) = self.config_kvs().await?;
            let mut spec = Self::effective_config(v2.as_ref(), v3.as_ref())?;
            spec.strict_affinity = update.strict_affinity.unwrap_or(spec.strict_affinity);
            spec.max_blocks_per_host = update
                .max_blocks_per_host
                .unwrap_or(spec.max_blocks_per_host);
            spec.auto_allocate_blocks = update
                .auto_allocate_blocks
                .unwrap_or(spec.auto_allocate_blocks);
            let resource = IPAMConfiguration::new(ObjectMeta::named("default"), spec.clone());
            resource.validate().map_err(|errs| {
                IpamError::InvalidConfig(
                    errs.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
            let stored = StoredIpamConfig {
                strict_affinity: spec.strict_affinity,
                auto_allocate_blocks: spec.auto_allocate_blocks,
                max_blocks_per_host: spec.max_blocks_per_host,
                min_ip_reclaim_age_seconds: spec.min_ip_reclaim_age_seconds,
            };
            let v3_key = v3_config_key();
            let v3_value = serde_json::to_vec(&Resource::from(resource).to_value())
                .map_err(|e| IpamError::InvalidConfig(e.to_string()))?;
            let txn = Txn::new()
                .when([
                    unchanged(CONFIG_KEY, v2.as_ref()),
                    unchanged(&v3_key, v3.as_ref()),
                ])
                .and_then([
                    Op::put(CONFIG_KEY, encode(&stored)),
                    Op::put(v3_key, v3_value),
                ]);
            if self.kv.txn(txn).await?.succeeded {
                return Ok(spec);
            }
            backoff(&mut conflicts, || "the IPAM configuration".into()).await?;
        }
    }

    // ---- reading -------------------------------------------------------

    async fn pools(&self) -> Result<Vec<IPPool>> {
        Ok(self
            .resources
            .list(Kind::IPPool, None)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Resource::IPPool(p) => Some(p),
                _ => None,
            })
            .collect())
    }

    async fn pool_views(&self) -> Result<Vec<PoolView>> {
        Ok(self.pools().await?.iter().map(PoolView::of).collect())
    }

    async fn reservations(&self) -> Result<Reservations> {
        let list: Vec<_> = self
            .resources
            .list(Kind::IPReservation, None)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Resource::IPReservation(r) => Some(r),
                _ => None,
            })
            .collect();
        Ok(Reservations::of(&list))
    }

    async fn node_labels(&self, host: &str) -> Result<Option<BTreeMap<String, String>>> {
        match self.resources.get(Kind::Node, None, host).await {
            Ok(node) => Ok(Some(node.metadata().labels.clone())),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A namespace's labels, from its profile `kns.<namespace>` if any.
    async fn namespace_labels(&self, namespace: &str) -> Result<BTreeMap<String, String>> {
        let profile = format!("kns.{namespace}");
        let labels = match self.resources.get(Kind::Profile, None, &profile).await {
            Ok(Resource::Profile(p)) => Some(p.spec.labels_to_apply),
            Ok(_) | Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(namespace_labels(namespace, labels.as_ref()))
    }

    async fn context(&self, host: &str, namespace: Option<&str>) -> Result<Context> {
        let namespace = match namespace {
            Some(ns) => Some((ns.to_string(), self.namespace_labels(ns).await?)),
            None => None,
        };
        let config = self.config().await?;
        Ok(Context {
            reuse: reuse_of(&config),
            config,
            pools: self.pools().await?,
            reservations: self.reservations().await?,
            node_labels: self.node_labels(host).await?,
            namespace,
        })
    }

    /// Blocks affine to `host`, of one family or (`None`) both.
    async fn affine_blocks(&self, host: &str, family: Option<u8>) -> Result<Vec<IpNet>> {
        let (kvs, _) = self.kv.list(&host_prefix(host, family)).await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| parse_affinity_key(&kv.key))
            .map(|(_, cidr)| cidr)
            .collect())
    }

    /// The blocks `host` has an affinity to.
    pub async fn host_blocks(&self, host: &str) -> Result<Vec<IpNet>> {
        check_name("host", host)?;
        self.affine_blocks(host, None).await
    }

    /// Every block under `prefix`.
    async fn blocks_under(&self, prefix: &str) -> Result<Vec<AllocationBlock>> {
        let (kvs, _) = self.kv.list(prefix).await?;
        kvs.iter().map(decode_block).collect()
    }

    /// Every stored block of a family (by key), and those that decode; a
    /// block that does not decode is logged and left alone (it still counts
    /// as taken, and `ipam check` reports it).
    async fn readable_blocks(&self, family: u8) -> Result<(BTreeSet<IpNet>, Vec<AllocationBlock>)> {
        let (kvs, _) = self.kv.list(&blocks_prefix(family)).await?;
        let existing = kvs
            .iter()
            .filter_map(|kv| parse_block_key(&kv.key))
            .collect();
        let blocks = kvs
            .iter()
            .filter_map(|kv| {
                decode_block(kv)
                    .inspect_err(|e| tracing::warn!(error = %e, "skipping unreadable block"))
                    .ok()
            })
            .collect();
        Ok((existing, blocks))
    }

    async fn handle_kv(&self, handle: &str) -> Result<Option<KeyValue>> {
        Ok(self.kv.get(&handle_key(handle)).await?)
    }

    /// The compare on the handle as read and the write that applies `change` to it.
    async fn handle_change(
        &self,
        handle: &str,
        change: impl FnOnce(&mut IpamHandle),
    ) -> Result<(Compare, Op)> {
        let key = handle_key(handle);
        let read = self.handle_kv(handle).await?;
        let mut value = read
            .as_ref()
            .map(decode_handle)
            .transpose()?
            .unwrap_or_default();
        change(&mut value);
        let op = if value.is_empty() {
            Op::delete(&key)
        } else {
            Op::put(&key, encode(&value))
        };
        Ok((unchanged(&key, read.as_ref()), op))
    }

    // ---- assignment ----------------------------------------------------

    /// Assigns `num_v4` IPv4 and `num_v6` IPv6 addresses to the handle for
    /// the host. All or nothing: on failure the addresses already assigned
    /// by this call are released again.
    pub async fn auto_assign(&self, args: &AutoAssignArgs) -> Result<Assigned> {
        check_name("handle", &args.handle)?;
        check_name("host", &args.host)?;
        let ctx = self.context(&args.host, args.namespace.as_deref()).await?;
        let mut secondary = args.attrs.clone();
        secondary
            .entry(ATTR_NODE.into())
            .or_insert_with(|| args.host.clone());
        let attr = AllocationAttribute {
            handle_id: Some(args.handle.clone()),
            secondary,
        };
        let mut out = Assigned::default();
        let families = [
            (4, args.num_v4, args.ipv4_pools.as_deref()),
            (6, args.num_v6, args.ipv6_pools.as_deref()),
        ];
        for (family, num, requested) in families {
            if num == 0 {
                continue;
            }
            let mut got = Vec::new();
            let result = match usable_pools(
                &ctx.pools,
                family,
                args.ip_use,
                &ctx.requester(&args.host),
                requested,
            ) {
                Ok(pools) => {
                    self.assign_family(&ctx, &pools, family, num, args, &attr, &mut got)
                        .await
                }
                Err(e) => Err(e),
            };
            if family == 4 {
                out.v4 = got;
            } else {
                out.v6 = got;
            }
            if let Err(failed) = result {
                let all: Vec<IpAddr> = out.v4.iter().chain(&out.v6).map(|a| a.ip).collect();
                if let Err(rollback) = self.release_ips(&all).await {
                    return Err(IpamError::RollbackFailed {
                        failed: Box::new(failed),
                        handle: args.handle.clone(),
                        rollback: Box::new(rollback),
                    });
                }
                return Err(failed);
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn assign_family(
        &self,
        ctx: &Context,
        pools: &[PoolView],
        family: u8,
        num: usize,
        args: &AutoAssignArgs,
        attr: &AllocationAttribute,
        got: &mut Vec<AssignedIp>,
    ) -> Result<()> {
        let host = args.host.as_str();
        let in_pools = |b: &IpNet| pools.iter().any(|p| p.cidr.contains(b));
        let mut conflicts = 0;
        let what = || format!("assigning IPv{family} addresses to {}", args.handle);
        while got.len() < num {
            let want = num - got.len();
            // 1. The host's own blocks.
            let affine = self.affine_blocks(host, Some(family)).await?;
            let own: Vec<IpNet> = affine.iter().copied().filter(in_pools).collect();
            match self
                .assign_in_blocks(&own, want, &args.handle, attr, ctx)
                .await?
            {
                Step::Assigned(ips) => {
                    got.extend(ips);
                    continue;
                }
                Step::Conflict => {
                    backoff(&mut conflicts, what).await?;
                    continue;
                }
                Step::Full => {}
            }
            // 2. Claim a free block.
            let (existing, blocks) = self.readable_blocks(family).await?;
            let max = ctx.config.max_blocks_per_host;
            let claim = if !ctx.config.auto_allocate_blocks {
                Err(NoClaim::AutoAllocateOff)
            } else if affine.len() >= max as usize {
                Err(NoClaim::AtMaxBlocks {
                    held: affine.len(),
                    max,
                })
            } else {
                pick_unclaimed(pools, &existing, &ctx.reservations, host).ok_or(NoClaim::PoolsFull)
            };
            let no_claim = match claim {
                Ok(cidr) => {
                    match self
                        .claim_and_assign(cidr, want, host, &args.handle, attr, &ctx.reservations)
                        .await?
                    {
                        Step::Assigned(ips) => got.extend(ips),
                        Step::Conflict | Step::Full => backoff(&mut conflicts, what).await?,
                    }
                    continue;
                }
                Err(why) => why,
            };
            // 3. Borrow from blocks affine to other hosts (or to none).
            let strict = ctx.config.strict_affinity;
            let reserved = |ip: IpAddr| ctx.reservations.contains(ip);
            let others: Vec<IpNet> = if strict {
                Vec::new()
            } else {
                blocks
                    .iter()
                    .filter(|b| b.host() != Some(host) && in_pools(&b.cidr))
                    .filter(|b| b.assignable(&reserved, ctx.reuse).next().is_some())
                    .map(|b| b.cidr)
                    .collect()
            };
            match self
                .assign_in_blocks(&others, want, &args.handle, attr, ctx)
                .await?
            {
                Step::Assigned(ips) => got.extend(ips),
                Step::Conflict => backoff(&mut conflicts, what).await?,
                Step::Full => {
                    return Err(IpamError::Exhausted {
                        family,
                        host: host.into(),
                        pools: pools
                            .iter()
                            .map(|p| p.cidr.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        no_claim,
                        strict,
                    });
                }
            }
        }
        Ok(())
    }

    /// Takes up to `want` addresses from the first of `cidrs` with room.
    async fn assign_in_blocks(
        &self,
        cidrs: &[IpNet],
        want: usize,
        handle: &str,
        attr: &AllocationAttribute,
        ctx: &Context,
    ) -> Result<Step> {
        let reserved = |ip: IpAddr| ctx.reservations.contains(ip);
        for cidr in cidrs {
            let key = block_key(*cidr);
            let Some(kv) = self.kv.get(&key).await? else {
                continue;
            };
            let mut block = decode_block(&kv)?;
            let ordinals = block.assign(want, attr, &reserved, ctx.reuse);
            if ordinals.is_empty() {
                continue;
            }
            let (handle_cmp, handle_op) = self
                .handle_change(handle, |h| h.add(*cidr, ordinals.len()))
                .await?;
            let txn = Txn::new()
                .when([Compare::mod_revision(&key, kv.mod_revision), handle_cmp])
                .and_then([Op::put(&key, encode(&block)), handle_op]);
            return Ok(if self.kv.txn(txn).await?.succeeded {
                Step::Assigned(addresses(*cidr, &ordinals))
            } else {
                Step::Conflict
            });
        }
        Ok(Step::Full)
    }

    /// Creates the block affine to `host`, with its affinity and the first
    /// `want` addresses, in one transaction that fails if the block exists.
    async fn claim_and_assign(
        &self,
        cidr: IpNet,
        want: usize,
        host: &str,
        handle: &str,
        attr: &AllocationAttribute,
        reservations: &Reservations,
    ) -> Result<Step> {
        let mut block = AllocationBlock::new(cidr, Some(host));
        // A new block has released nothing.
        let ordinals = block.assign(want, attr, &|ip| reservations.contains(ip), Reuse::ANY);
        if ordinals.is_empty() {
            return Ok(Step::Full);
        }
        let (handle_cmp, handle_op) = self
            .handle_change(handle, |h| h.add(cidr, ordinals.len()))
            .await?;
        let key = block_key(cidr);
        let txn = Txn::new()
            .when([Compare::absent(&key), handle_cmp])
            .and_then([
                Op::put(&key, encode(&block)),
                Op::put(
                    affinity_key(host, cidr),
                    encode(&BlockAffinity::confirmed()),
                ),
                handle_op,
            ]);
        Ok(if self.kv.txn(txn).await?.succeeded {
            tracing::debug!(%cidr, host, "claimed block");
            Step::Assigned(addresses(cidr, &ordinals))
        } else {
            Step::Conflict
        })
    }

    /// Assigns one given address to the handle. If its block does not exist
    /// yet, it is created affine to `host`.
    pub async fn assign_ip(
        &self,
        ip: IpAddr,
        handle: &str,
        attrs: &BTreeMap<String, String>,
        host: &str,
    ) -> Result<AssignedIp> {
        check_name("handle", handle)?;
        check_name("host", host)?;
        if let Some(reservation) = self.reservations().await?.reserving(ip) {
            return Err(IpamError::Reserved {
                ip,
                reservation: reservation.into(),
            });
        }
        let cidr = self
            .pool_views()
            .await?
            .iter()
            .find_map(|p| p.block_of(ip))
            .ok_or(IpamError::NotInPool { ip })?;
        let ordinal = block_math::ordinal(cidr, ip).expect("the block holds the address");
        let mut secondary = attrs.clone();
        secondary
            .entry(ATTR_NODE.into())
            .or_insert_with(|| host.into());
        let attr = AllocationAttribute {
            handle_id: Some(handle.into()),
            secondary,
        };
        let key = block_key(cidr);
        let mut conflicts = 0;
        loop {
            let read = self.kv.get(&key).await?;
            let (mut block, mut ops) = match &read {
                Some(kv) => (decode_block(kv)?, Vec::new()),
                None => (
                    AllocationBlock::new(cidr, Some(host)),
                    vec![Op::put(
                        affinity_key(host, cidr),
                        encode(&BlockAffinity::confirmed()),
                    )],
                ),
            };
            if !block.assign_ordinal(ordinal, &attr) {
                return Err(IpamError::AlreadyAllocated {
                    ip,
                    handle: block
                        .allocation(ip)
                        .and_then(|a| a.handle.map(str::to_owned)),
                });
            }
            let (handle_cmp, handle_op) = self.handle_change(handle, |h| h.add(cidr, 1)).await?;
            ops.push(Op::put(&key, encode(&block)));
            ops.push(handle_op);
            let txn = Txn::new()
                .when([unchanged(&key, read.as_ref()), handle_cmp])
                .and_then(ops);
            if self.kv.txn(txn).await?.succeeded {
                return Ok(AssignedIp { ip, block: cidr });
            }
            backoff(&mut conflicts, || format!("assigning {ip}")).await?;
        }
    }

    // ---- release -------------------------------------------------------

    /// The block holding `ip`: from the pools, else (its pool deleted) from
    /// the stored blocks.
    async fn block_for(
        &self,
        ip: IpAddr,
        pools: &[PoolView],
        stored: &mut Option<Vec<IpNet>>,
    ) -> Result<Option<IpNet>> {
        if let Some(cidr) = pools.iter().find_map(|p| p.block_of(ip)) {
            return Ok(Some(cidr));
        }
        if stored.is_none() {
            let (kvs, _) = self.kv.list(BLOCKS_PREFIX).await?;
            *stored = Some(
                kvs.iter()
                    .filter_map(|kv| parse_block_key(&kv.key))
                    .collect(),
            );
        }
        Ok(stored
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|b| b.contains(&ip))
            .copied())
    }

    /// Creates `key` (a workload's WorkloadEndpoint) with `value`, in one
    /// transaction with a rewrite of `handle` as it is, on condition that
    /// the handle still holds exactly `addresses` as read. The leak
    /// collector's guarded releases compare the handle's revision too
    /// ([`HandleGuard`]), so one of the two loses: either the addresses
    /// were released first and this fails with
    /// [`IpamError::HandleMoved`], or the key exists first and the
    /// collector finds the handle moved and leaves the addresses.
    pub async fn create_holding(
        &self,
        handle: &str,
        addresses: &[IpAddr],
        key: &str,
        value: Vec<u8>,
    ) -> Result<()> {
        check_name("handle", handle)?;
        let moved = || IpamError::HandleMoved {
            handle: handle.into(),
            addresses: addresses.to_vec(),
        };
        let read = self.handle_kv(handle).await?.ok_or_else(moved)?;
        let recorded = decode_handle(&read)?;
        let counted: usize = recorded.blocks().map(|(_, _, n)| n).sum();
        let covered = addresses.iter().all(|ip| {
            recorded
                .blocks()
                .any(|(b, _, n)| n > 0 && b.is_some_and(|b| b.contains(ip)))
        });
        if counted != addresses.len() || !covered {
            return Err(moved());
        }
        let txn = Txn::new()
            .when([
                Compare::absent(key),
                Compare::mod_revision(&read.key, read.mod_revision),
            ])
            .and_then([Op::put(key, value), Op::put(&read.key, read.value.clone())]);
        if self.kv.txn(txn).await?.succeeded {
            return Ok(());
        }
        match self.kv.get(key).await? {
            Some(_) => Err(Error::AlreadyExists { key: key.into() }.into()),
            None => Err(moved()),
        }
    }

    /// Releases the addresses; returns those that were not allocated.
    pub async fn release_ips(&self, ips: &[IpAddr]) -> Result<Vec<IpAddr>> {
        let pools = self.pool_views().await?;
        let reuse = reuse_of(&self.config().await?);
        let mut stored = None;
        let mut by_block: BTreeMap<IpNet, Vec<IpAddr>> = BTreeMap::new();
        let mut unallocated = Vec::new();
        for ip in ips {
            match self.block_for(*ip, &pools, &mut stored).await? {
                Some(cidr) => by_block.entry(cidr).or_default().push(*ip),
                None => unallocated.push(*ip),
            }
        }
        for (cidr, wanted) in by_block {
            let released = self
                .release_in_block(
                    cidr,
                    &pools,
                    reuse,
                    |b| {
                        wanted
                            .iter()
                            .filter_map(|ip| b.allocation(*ip))
                            .map(|a| a.ordinal)
                            .collect()
                    },
                    None,
                )
                .await?;
            unallocated.extend(wanted.into_iter().filter(|ip| !released.contains(ip)));
        }
        Ok(unallocated)
    }

    /// Releases every address of the handle (and the handle); returns them.
    pub async fn release_by_handle(&self, handle: &str) -> Result<Vec<IpAddr>> {
        check_name("handle", handle)?;
        let kv = self
            .handle_kv(handle)
            .await?
            .ok_or_else(|| IpamError::HandleNotFound {
                handle: handle.into(),
            })?;
        let recorded = decode_handle(&kv)?;
        let pools = self.pool_views().await?;
        let reuse = reuse_of(&self.config().await?);
        let mut released = Vec::new();
        for (cidr, text, _) in recorded.blocks() {
            let cidr = cidr.ok_or_else(|| invalid(&kv, format!("block {text:?} is not a CIDR")))?;
            released.extend(
                self.release_in_block(cidr, &pools, reuse, |b| b.ordinals_of(handle), None)
                    .await?,
            );
        }
        self.delete_handle_if_unused(handle).await?;
        Ok(released)
    }

    /// Deletes the handle if no block it names holds an address for it
    /// (a handle whose counts went wrong); `true` if it was deleted.
    pub async fn delete_handle_if_unused(&self, handle: &str) -> Result<bool> {
        check_name("handle", handle)?;
        let mut conflicts = 0;
        loop {
            let Some(kv) = self.handle_kv(handle).await? else {
                return Ok(false);
            };
            let recorded = decode_handle(&kv)?;
            let mut compares = vec![Compare::mod_revision(&kv.key, kv.mod_revision)];
            for (cidr, _, _) in recorded.blocks() {
                let Some(cidr) = cidr else { continue };
                let key = block_key(cidr);
                let read = self.kv.get(&key).await?;
                if let Some(block_kv) = &read
                    && !decode_block(block_kv)?.ordinals_of(handle).is_empty()
                {
                    return Ok(false);
                }
                compares.push(unchanged(&key, read.as_ref()));
            }
            let txn = Txn::new().when(compares).and_then([Op::delete(&kv.key)]);
            if self.kv.txn(txn).await?.succeeded {
                return Ok(true);
            }
            backoff(&mut conflicts, || format!("deleting handle {handle}")).await?;
        }
    }

    /// Frees the ordinals `pick` chooses in the block (held back as
    /// `reuse` says), updates their handles, and deals with the block if
    /// it is left empty
    /// ([`empty_block_fate`]); one transaction, retried on conflict.
    async fn release_in_block(
        &self,
        cidr: IpNet,
        pools: &[PoolView],
        reuse: Reuse,
        pick: impl Fn(&AllocationBlock) -> Vec<usize>,
        mut guard: Option<&mut HandleGuard>,
    ) -> Result<Vec<IpAddr>> {
        let key = block_key(cidr);
        let mut conflicts = 0;
        // Handles the guard found changed: their addresses stay.
        let mut spared: BTreeSet<String> = BTreeSet::new();
        'attempt: loop {
            let Some(kv) = self.kv.get(&key).await? else {
                return Ok(Vec::new());
            };
            let mut block = decode_block(&kv)?;
            let picked: Vec<usize> = pick(&block)
                .into_iter()
                .filter(|o| {
                    let handle = block.allocations().find(|a| a.ordinal == *o);
                    !handle
                        .and_then(|a| a.handle)
                        .is_some_and(|h| spared.contains(h))
                })
                .collect();
            let freed = block.release(&picked, reuse);
            if freed.is_empty() {
                return Ok(Vec::new());
            }
            let mut per_handle: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, handle) in &freed {
                if let Some(h) = handle {
                    *per_handle.entry(h).or_default() += 1;
                }
            }
            let mut compares = vec![Compare::mod_revision(&key, kv.mod_revision)];
            let mut ops = Vec::new();
            let mut touched = Vec::new();
            for (handle, n) in per_handle {
                let (cmp, op) = self.handle_change(handle, |h| h.remove(cidr, n)).await?;
                if let Some(g) = guard.as_deref()
                    && !g.holds(handle, &cmp)
                {
                    spared.insert(handle.to_owned());
                    continue 'attempt;
                }
                touched.push((handle.to_owned(), matches!(op, Op::Put { .. })));
                compares.push(cmp);
                ops.push(op);
            }
            if block.is_empty() {
                let host = block.host().map(str::to_owned);
                let host_blocks = match &host {
                    Some(h) => {
                        self.affine_blocks(h, Some(block_math::family(cidr)))
                            .await?
                    }
                    None => Vec::new(),
                };
                match (
                    empty_block_fate(cidr, host.as_deref(), pools, &host_blocks),
                    &host,
                ) {
                    (EmptyBlockFate::Keep, _) => ops.push(Op::put(&key, encode(&block))),
                    (fate, host) => {
                        if let (EmptyBlockFate::DeleteKeeping(other), Some(h)) = (&fate, host) {
                            compares.push(Compare::present(affinity_key(h, *other)));
                        }
                        ops.push(Op::delete(&key));
                        if let Some(h) = host {
                            ops.push(Op::delete(affinity_key(h, cidr)));
                        }
                    }
                }
            } else {
                ops.push(Op::put(&key, encode(&block)));
            }
            let resp = self.kv.txn(Txn::new().when(compares).and_then(ops)).await?;
            if resp.succeeded {
                if let Some(g) = guard.as_deref_mut() {
                    for (handle, kept) in touched {
                        g.moved(&handle, kept.then_some(resp.revision));
                    }
                }
                return Ok(freed
                    .iter()
                    .filter_map(|(o, _)| block_math::address(cidr, *o))
                    .collect());
            }
            backoff(&mut conflicts, || {
                format!("releasing addresses of block {cidr}")
            })
            .await?;
        }
    }

    /// Releases the leaked addresses of a report that are still allocated
    /// as the report saw them (same handle, or still none); returns them.
    pub async fn release_leaked(&self, leaked: &[LeakedAddress]) -> Result<Vec<IpAddr>> {
        self.release_reported(leaked, None).await
    }

    /// As [`release_leaked`](Self::release_leaked), and only addresses
    /// whose handle is as the scan saw it: a handle written since (a CNI
    /// ADD finishing: it rewrites the handle with its WorkloadEndpoint)
    /// keeps its addresses. The check is part of each release's
    /// transaction, so a workload that appears at the same instant is
    /// never robbed of its address.
    pub async fn release_leaked_guarded(
        &self,
        leaked: &[LeakedAddress],
        guard: &mut HandleGuard,
    ) -> Result<Vec<IpAddr>> {
        self.release_reported(leaked, Some(guard)).await
    }

    async fn release_reported(
        &self,
        leaked: &[LeakedAddress],
        mut guard: Option<&mut HandleGuard>,
    ) -> Result<Vec<IpAddr>> {
        let pools = self.pool_views().await?;
        let reuse = reuse_of(&self.config().await?);
        let mut by_block: BTreeMap<IpNet, Vec<&LeakedAddress>> = BTreeMap::new();
        for l in leaked {
            by_block.entry(l.block).or_default().push(l);
        }
        let mut released = Vec::new();
        for (cidr, entries) in by_block {
            let pick = |b: &AllocationBlock| {
                entries
                    .iter()
                    .filter_map(|l| {
                        b.allocation(l.ip)
                            .filter(|a| a.handle == l.handle.as_deref())
                            .map(|a| a.ordinal)
                    })
                    .collect()
            };
            released.extend(
                self.release_in_block(cidr, &pools, reuse, pick, guard.as_deref_mut())
                    .await?,
            );
        }
        Ok(released)
    }

    /// Gives up every affinity of `host`: empty blocks are deleted, blocks
    /// still holding addresses stay without affinity. Returns the blocks.
    pub async fn release_host_affinities(&self, host: &str) -> Result<Vec<IpNet>> {
        check_name("host", host)?;
        let mut done = Vec::new();
        for cidr in self.affine_blocks(host, None).await? {
            let key = block_key(cidr);
            let aff_key = affinity_key(host, cidr);
            let mut conflicts = 0;
            loop {
                let read = self.kv.get(&key).await?;
                let mut ops = vec![Op::delete(&aff_key)];
                if let Some(kv) = &read {
                    let mut block = decode_block(kv)?;
                    if block.host() == Some(host) {
                        if block.is_empty() {
                            ops.push(Op::delete(&key));
                        } else {
                            block.affinity = None;
                            ops.push(Op::put(&key, encode(&block)));
                        }
                    }
                }
                let txn = Txn::new()
                    .when([unchanged(&key, read.as_ref())])
                    .and_then(ops);
                if self.kv.txn(txn).await?.succeeded {
                    break;
                }
                backoff(&mut conflicts, || {
                    format!("releasing {host}'s affinity to {cidr}")
                })
                .await?;
            }
            done.push(cidr);
        }
        Ok(done)
    }

    // ---- reports -------------------------------------------------------

    /// Usage per pool and per block.
    pub async fn usage(&self) -> Result<Usage> {
        let pools = self.pools().await?;
        let blocks = self.blocks_under(BLOCKS_PREFIX).await?;
        let reservations = self.reservations().await?;
        let usage_of = |b: &AllocationBlock| {
            let capacity = b.capacity();
            let reserved = usize::try_from(reservations.reserved_in(b.cidr)).unwrap_or(capacity);
            // Allocated addresses a reservation also holds (reserved after
            // they were handed out), so free counts each address once.
            let both = b
                .allocations()
                .filter(|a| reservations.contains(a.ip))
                .count();
            BlockUsage {
                cidr: b.cidr,
                host: b.host().map(str::to_owned),
                capacity,
                in_use: b.in_use(),
                reserved,
                free: (capacity + both).saturating_sub(b.in_use() + reserved),
            }
        };
        let mut out = Usage::default();
        for p in &pools {
            let view = PoolView::of(p);
            let mine: Vec<BlockUsage> = blocks
                .iter()
                .filter(|b| view.cidr.contains(&b.cidr))
                .map(usage_of)
                .collect();
            let size = block_math::size(view.cidr).unwrap_or(u128::MAX);
            let sum = |f: fn(&BlockUsage) -> usize| mine.iter().map(|b| f(b) as u128).sum::<u128>();
            let reserved = reservations.reserved_in(view.cidr);
            // Outside its blocks a pool holds no allocation: what is not
            // reserved there is free.
            let unblocked_free = size
                .saturating_sub(sum(|b| b.capacity))
                .saturating_sub(reserved.saturating_sub(sum(|b| b.reserved)));
            out.pools.push(PoolUsage {
                name: view.name,
                cidr: view.cidr,
                block_size: view.block_size,
                disabled: p.spec.disabled,
                size,
                in_use: sum(|b| b.in_use),
                reserved,
                free: sum(|b| b.free).saturating_add(unblocked_free),
                blocks: mine,
            });
        }
        out.orphan_blocks = blocks
            .iter()
            .filter(|b| !out.pools.iter().any(|p| p.cidr.contains(&b.cidr)))
            .map(usage_of)
            .collect();
        Ok(out)
    }

    /// Who owns `ip`, with the pool, block and reservation it falls in.
    pub async fn ip_status(&self, ip: IpAddr) -> Result<IpStatus> {
        let pools = self.pool_views().await?;
        let mut stored = None;
        let mut status = IpStatus {
            ip,
            pool: pools
                .iter()
                .find(|p| p.cidr.contains(&ip))
                .map(|p| p.name.clone()),
            reserved_by: self.reservations().await?.reserving(ip).map(Into::into),
            block: None,
            block_host: None,
            allocated: false,
            handle: None,
            attrs: BTreeMap::new(),
        };
        let Some(cidr) = self.block_for(ip, &pools, &mut stored).await? else {
            return Ok(status);
        };
        let Some(kv) = self.kv.get(&block_key(cidr)).await? else {
            return Ok(status);
        };
        let block = decode_block(&kv)?;
        status.block = Some(cidr);
        status.block_host = block.host().map(Into::into);
        if let Some(a) = block.allocation(ip) {
            status.allocated = true;
            status.handle = a.handle.map(Into::into);
            status.attrs = a.attrs.clone();
        }
        Ok(status)
    }

    /// The consistency report of all IPAM data, read at one revision and
    /// held against the Nodes, WorkloadEndpoints and enabled pools read just
    /// after it. A pod set up or torn down meanwhile can show as a leak or an
    /// unallocated address: check again before releasing what it reports.
    pub async fn check(&self) -> Result<Report> {
        Ok(self.scan().await?.report)
    }

    /// [`check`](Self::check), with each handle's revision as read: the
    /// guard of [`release_leaked_guarded`](Self::release_leaked_guarded).
    pub async fn scan(&self) -> Result<Scan> {
        let (kvs, revision) = self.kv.list(IPAM_PREFIX).await?;
        let guard = HandleGuard::of(&kvs);
        let mut owners = check::Owners::default();
        for resource in self.resources.list(Kind::Node, None).await? {
            owners.nodes.insert(resource.metadata().name.clone());
        }
        for resource in self.resources.list(Kind::WorkloadEndpoint, None).await? {
            if let Resource::WorkloadEndpoint(wep) = resource {
                owners.endpoints.push(wep);
            }
        }
        let pools = self.pools().await?;
        owners.pools = pools
            .iter()
            .filter(|p| !p.spec.disabled)
            .map(|p| p.spec.cidr.network())
            .collect();
        let mut report = check::check(&kvs, revision, &owners);
        report.pool_overlaps = check::pool_overlaps(&pools);
        Ok(Scan { report, guard })
    }

    // ---- pools ---------------------------------------------------------

    /// Replaces a pool by `parts` pools of equal size (a power of two),
    /// named `<name>-<i>`, with the same settings, in one transaction that
    /// fails if the pool changed meanwhile. Existing blocks stay valid: each
    /// lies wholly in one of the new pools.
    pub async fn split_pool(&self, pool: &PoolRef, parts: u32) -> Result<Vec<IPPool>> {
        let pools = self.pools().await?;
        let original = pools
            .iter()
            .find(|p| match pool {
                PoolRef::Name(n) => p.metadata.name == *n,
                PoolRef::Cidr(c) => p.spec.cidr.network() == c.trunc(),
            })
            .ok_or_else(|| {
                IpamError::PoolNotFound(match pool {
                    PoolRef::Name(n) => n.clone(),
                    PoolRef::Cidr(c) => c.to_string(),
                })
            })?;
        let cidrs = block_math::split(
            original.spec.cidr.network(),
            u128::from(parts),
            original.spec.block_size(),
        )?;
        let name = &original.metadata.name;
        let mut children = Vec::new();
        for (i, cidr) in cidrs.into_iter().enumerate() {
            let mut spec = original.spec.clone();
            spec.cidr = cidr.into();
            let metadata = ObjectMeta {
                name: format!("{name}-{i}"),
                labels: original.metadata.labels.clone(),
                annotations: original.metadata.annotations.clone(),
                ..ObjectMeta::default()
            };
            let child = IPPool::new(metadata, spec).with_defaults();
            child.validate().map_err(|errs| {
                IpamError::InvalidConfig(format!(
                    "pool {}: {}",
                    child.metadata.name,
                    errs.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })?;
            children.push(child);
        }
        let old_key = ResourceStore::key(Kind::IPPool, None, name);
        let version = original
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut compares = vec![Compare::mod_revision(&old_key, version)];
        let mut ops = vec![Op::delete(&old_key)];
        for child in &children {
            let key = ResourceStore::key(Kind::IPPool, None, &child.metadata.name);
            compares.push(Compare::absent(&key));
            let value = serde_json::to_vec(&Resource::from(child.clone()).to_value())
                .map_err(|e| IpamError::InvalidConfig(e.to_string()))?;
            ops.push(Op::put(key, value));
        }
        let resp = self.kv.txn(Txn::new().when(compares).and_then(ops)).await?;
        if !resp.succeeded {
            return Err(IpamError::SplitConflict { pool: name.clone() });
        }
        Ok(children)
    }
}
