//! `calico-ipam`: addresses from the datastore's IPAM for one container,
//! under the handle `<network name>.<containerID>` with the attributes
//! `namespace`, `pod` and `node`. ADD returns the handle's addresses if it
//! already has some (a repeated ADD assigns nothing new); DEL releases by
//! handle and succeeds when there is nothing to release; CHECK verifies the
//! handle still owns the addresses; GC (1.1) releases the handles of
//! containers the runtime no longer lists.

use std::net::IpAddr;
use std::sync::Arc;

use api::{IPPool, Kind, Resource};
use datastore::ipam::model::{
    AllocationBlock, IpamHandle, block_key, handle_key, parse_handle_key,
};
use datastore::ipam::{AutoAssignArgs, IpUse, Ipam, IpamError, block_math};
use datastore::{KvStore, ResourceStore};
use ipnet::IpNet;

use crate::config::NetConf;
use crate::env::CniEnv;
use crate::error::{CniError, Code, Result};
use crate::result::{CniResult, IpConfig};
use crate::workload::{Workload, host_route};

/// The addresses `handle` owns, read from its blocks.
pub async fn addresses_of(kv: &Arc<dyn KvStore>, handle: &str) -> Result<Vec<IpAddr>> {
    let Some(handle_kv) = kv.get(&handle_key(handle)).await? else {
        return Ok(Vec::new());
    };
    let recorded: IpamHandle = serde_json::from_slice(&handle_kv.value).map_err(|e| {
        CniError::new(
            Code::Ipam,
            format!("invalid IPAM handle at {}: {e}", handle_kv.key),
        )
    })?;
    let mut out = Vec::new();
    for (cidr, _, _) in recorded.blocks() {
        let Some(cidr) = cidr else { continue };
        let Some(block_kv) = kv.get(&block_key(cidr)).await? else {
            continue;
        };
        let block: AllocationBlock = serde_json::from_slice(&block_kv.value).map_err(|e| {
            CniError::new(
                Code::Ipam,
                format!("invalid IPAM block at {}: {e}", block_kv.key),
            )
        })?;
        out.extend(
            block
                .ordinals_of(handle)
                .into_iter()
                .filter_map(|o| block_math::address(block.cidr, o)),
        );
    }
    out.sort();
    Ok(out)
}

/// Pools given by CIDR or by IPPool name, as CIDRs; `None` for none given.
async fn resolve_pools(
    resources: &ResourceStore,
    field: &str,
    pools: &[String],
) -> Result<Option<Vec<IpNet>>> {
    if pools.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (i, pool) in pools.iter().enumerate() {
        if let Ok(net) = pool.parse::<IpNet>() {
            out.push(net);
            continue;
        }
        match resources.get(IPPool::KIND, None, pool).await {
            Ok(Resource::IPPool(p)) => out.push(p.spec.cidr.0),
            Ok(_) => unreachable!("an IPPool key holds an IPPool"),
            Err(datastore::Error::NotFound { .. }) => {
                return Err(CniError::config(
                    &format!("{field}[{i}]"),
                    format!("no IP pool named {pool:?}"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(out))
}

/// The IPAM result for `ips` (host routes, as Calico's IPAM returns them).
fn ipam_result(ips: &[IpAddr]) -> CniResult {
    CniResult {
        ips: ips
            .iter()
            .map(|ip| IpConfig {
                address: host_route(IpNet::from(*ip)),
                gateway: None,
                interface: None,
            })
            .collect(),
        ..CniResult::default()
    }
}

/// ADD: assigns (or finds) the container's addresses.
pub async fn add(
    conf: &NetConf,
    env: &CniEnv,
    node: &str,
    kv: Arc<dyn KvStore>,
) -> Result<CniResult> {
    let handle = Workload::ipam_handle(&conf.name, &env.container_id);
    let existing = addresses_of(&kv, &handle).await?;
    if !existing.is_empty() {
        tracing::info!(
            handle,
            ?existing,
            "handle already holds addresses; returning them"
        );
        return Ok(ipam_result(&existing));
    }
    let resources = ResourceStore::new(kv.clone());
    let workload = Workload::identify(node, env);
    let args = AutoAssignArgs {
        handle: handle.clone(),
        host: node.to_owned(),
        num_v4: usize::from(conf.ipam.assign_ipv4),
        num_v6: usize::from(conf.ipam.assign_ipv6),
        attrs: workload.ipam_attributes(),
        ipv4_pools: resolve_pools(&resources, "ipam.ipv4_pools", &conf.ipam.ipv4_pools).await?,
        ipv6_pools: resolve_pools(&resources, "ipam.ipv6_pools", &conf.ipam.ipv6_pools).await?,
        ip_use: IpUse::default(),
        namespace: Some(workload.namespace.clone()),
    };
    let assigned = Ipam::new(kv).auto_assign(&args).await?;
    let ips: Vec<IpAddr> = assigned
        .v4
        .iter()
        .chain(&assigned.v6)
        .map(|a| a.ip)
        .collect();
    tracing::info!(handle, ?ips, "assigned");
    Ok(ipam_result(&ips))
}

/// DEL: releases the container's addresses; nothing to release is fine.
pub async fn del(conf: &NetConf, env: &CniEnv, kv: Arc<dyn KvStore>) -> Result<()> {
    let handle = Workload::ipam_handle(&conf.name, &env.container_id);
    match Ipam::new(kv).release_by_handle(&handle).await {
        Ok(ips) => {
            tracing::info!(handle, ?ips, "released");
            Ok(())
        }
        Err(IpamError::HandleNotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// CHECK: the handle still owns the addresses of `prevResult` (any, if
/// there is none).
pub async fn check(conf: &NetConf, env: &CniEnv, kv: Arc<dyn KvStore>) -> Result<()> {
    let handle = Workload::ipam_handle(&conf.name, &env.container_id);
    let owned = addresses_of(&kv, &handle).await?;
    if owned.is_empty() {
        return Err(CniError::new(
            Code::CheckFailed,
            format!("IPAM handle {handle} owns no address"),
        ));
    }
    if let Some(prev) = &conf.prev_result {
        for ip in prev.container_ips(&env.ifname) {
            if !owned.contains(&ip.addr()) {
                return Err(CniError::new(
                    Code::CheckFailed,
                    format!("{} is not assigned to IPAM handle {handle}", ip.addr()),
                ));
            }
        }
    }
    Ok(())
}

/// GC (1.1): releases every handle of this network (`<name>.<containerID>`)
/// whose container is not among `cni.dev/valid-attachments`; the released
/// handles.
pub async fn gc(conf: &NetConf, kv: Arc<dyn KvStore>) -> Result<Vec<String>> {
    let valid = conf
        .valid_attachments
        .as_ref()
        .ok_or_else(|| CniError::config("cni.dev/valid-attachments", "is required for GC"))?;
    let prefix = handle_key(&format!("{}.", conf.name));
    let (kvs, _) = kv.list(&prefix).await?;
    let ipam = Ipam::new(kv);
    let mut released = Vec::new();
    for entry in kvs {
        let Some(handle) = parse_handle_key(&entry.key) else {
            continue;
        };
        let container = &handle[conf.name.len() + 1..];
        if valid.iter().any(|a| a.container_id == container) {
            continue;
        }
        match ipam.release_by_handle(handle).await {
            Ok(ips) => tracing::info!(handle, ?ips, "GC released"),
            Err(IpamError::HandleNotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        released.push(handle.to_owned());
    }
    Ok(released)
}

/// STATUS: the datastore answers.
pub async fn reachable(kv: Arc<dyn KvStore>) -> Result<()> {
    ResourceStore::new(kv)
        .list(Kind::IPPool, None)
        .await
        .map(|_| ())
        .map_err(|e| CniError::new(Code::NotAvailable, format!("datastore unreachable: {e}")))
}
