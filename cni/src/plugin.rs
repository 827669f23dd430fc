//! `calico`: ADD, DEL and CHECK of a container's network.
//!
//! ADD: the IPAM plugin (`ipam.type`, from `CNI_PATH`) hands out the
//! addresses; then the veth pair (host side `cali…`, container side
//! `CNI_IFNAME` with the addresses, routes and neighbour of
//! [`ContainerPlan`]); then the namespace's profile if it is missing, and the
//! WorkloadEndpoint. A failure undoes what was done, in reverse (the
//! endpoint, the veth, the addresses): nothing is left half-written. The
//! profile stays, as kube-controllers would have written it anyway. ADD does
//! not wait for felix: the endpoint carries no traffic until felix has
//! programmed its route and policy.
//!
//! GC hands the configuration to the IPAM plugin.
//!
//! DEL removes the veth, the endpoint and the addresses, each if present;
//! an endpoint that now belongs to another container (a newer sandbox of the
//! same pod) is left alone with its host veth.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use api::{Kind, Resource, WorkloadEndpoint};
use datastore::{KvStore, ResourceStore};
use ipnet::IpNet;

use crate::config::NetConf;
use crate::delegate;
use crate::env::{CniEnv, Command};
use crate::error::{CniError, Code, Result};
use crate::netlink::{self, VethRequest};
use crate::plan::{ContainerPlan, HOST_MAC, mac_text};
use crate::result::{CniResult, Interface, IpConfig, Route};
use crate::workload::{Workload, host_route};

/// What ADD has done so far, to undo on failure.
#[derive(Default)]
struct Undo<'a> {
    ipam: Option<(PathBuf, &'a [u8])>,
    veth: Option<String>,
    endpoint: Option<(String, String)>,
}

impl Undo<'_> {
    async fn run(self, resources: &ResourceStore) {
        if let Some((namespace, name)) = &self.endpoint
            && let Err(e) = resources
                .delete(Kind::WorkloadEndpoint, Some(namespace), name, None)
                .await
        {
            tracing::error!(endpoint = name, error = %e, "rollback: deleting the endpoint failed");
        }
        if let Some(veth) = &self.veth
            && let Err(e) = netlink::delete_link(None, veth)
        {
            tracing::error!(veth, error = %e, "rollback: deleting the veth failed");
        }
        if let Some((plugin, stdin)) = self.ipam
            && let Err(e) = delegate::run(&plugin, Command::Del, stdin)
        {
            tracing::error!(error = %e, "rollback: releasing the addresses failed");
        }
    }
}

fn netlink_error(e: netlink::NetlinkError) -> CniError {
    CniError::new(Code::Netlink, e.to_string())
}

fn netns_of(env: &CniEnv) -> Result<&Path> {
    env.netns
        .as_deref()
        .ok_or_else(|| CniError::env("CNI_NETNS", "is required"))
}

/// The endpoint, if it exists.
async fn find_endpoint(
    resources: &ResourceStore,
    w: &Workload,
) -> Result<Option<WorkloadEndpoint>> {
    match resources
        .get(Kind::WorkloadEndpoint, Some(&w.namespace), &w.endpoint_name)
        .await
    {
        Ok(Resource::WorkloadEndpoint(wep)) => Ok(Some(wep)),
        Ok(_) => unreachable!("a WorkloadEndpoint key holds a WorkloadEndpoint"),
        Err(datastore::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// ADD. `stdin` is handed to the IPAM plugin as is.
pub async fn add(
    conf: &NetConf,
    env: &CniEnv,
    stdin: &[u8],
    node: &str,
    kv: Arc<dyn KvStore>,
) -> Result<CniResult> {
    let netns = netns_of(env)?;
    let w = Workload::identify(node, env);
    let resources = ResourceStore::new(kv);
    if let Some(wep) = find_endpoint(&resources, &w).await? {
        return Err(CniError::new(
            Code::AlreadyAdded,
            format!(
                "WorkloadEndpoint {}/{} already exists (container {}); DEL it first",
                w.namespace, w.endpoint_name, wep.spec.container_id
            ),
        ));
    }
    let plugin = delegate::find_plugin(&conf.ipam.plugin_type, &env.path)?;
    let ipam = delegate::add(&plugin, stdin, conf.cni_version)?;
    let mut undo = Undo {
        ipam: Some((plugin, stdin)),
        ..Undo::default()
    };
    match add_after_ipam(conf, env, netns, &w, &resources, &ipam, &mut undo).await {
        Ok(result) => Ok(result),
        Err(e) => {
            tracing::warn!(error = %e, "ADD failed; rolling back");
            undo.run(&resources).await;
            Err(e)
        }
    }
}

async fn add_after_ipam(
    conf: &NetConf,
    env: &CniEnv,
    netns: &Path,
    w: &Workload,
    resources: &ResourceStore,
    ipam: &CniResult,
    undo: &mut Undo<'_>,
) -> Result<CniResult> {
    let addresses: Vec<IpNet> = ipam.ips.iter().map(|ip| host_route(ip.address)).collect();
    if addresses.is_empty() {
        return Err(CniError::new(
            Code::Ipam,
            format!("IPAM plugin {} returned no address", conf.ipam.plugin_type),
        ));
    }
    let plan = ContainerPlan::new(&addresses);
    // No endpoint names this veth (checked before IPAM): one left over from
    // an earlier sandbox of the same pod is stale, as Calico treats it, and
    // is replaced.
    let veth = netlink::create_workload_veth(
        VethRequest {
            host: &w.host_veth,
            container: &env.ifname,
            netns,
            mtu: conf.mtu,
        },
        &plan,
    )
    .map_err(netlink_error)?;
    if veth.replaced_stale {
        tracing::warn!(veth = w.host_veth, "deleted a stale host veth");
    }
    let container_mac = veth.mac;
    undo.veth = Some(w.host_veth.clone());
    ensure_profile(resources, w).await?;
    let endpoint = w.endpoint(&addresses, &container_mac, &conf.labels, conf.qos.as_ref());
    let handle = (conf.ipam.plugin_type == crate::config::CALICO_IPAM)
        .then(|| Workload::ipam_handle(&conf.name, &env.container_id));
    create_endpoint(resources, endpoint, handle.as_deref(), &addresses)
        .await
        .map_err(|e| CniError {
            msg: format!(
                "writing WorkloadEndpoint {}/{}: {}",
                w.namespace, w.endpoint_name, e.msg
            ),
            ..e
        })?;
    undo.endpoint = Some((w.namespace.clone(), w.endpoint_name.clone()));
    tracing::info!(
        endpoint = w.endpoint_name,
        veth = w.host_veth,
        ?addresses,
        "added"
    );
    Ok(result(conf, w, netns, &container_mac, &addresses))
}

/// Creates the WorkloadEndpoint; with calico-ipam, on condition that
/// its addresses' handle still holds them
/// ([`Ipam::create_holding`](datastore::ipam::Ipam::create_holding)), so
/// that the leak collector and this ADD never both win.
async fn create_endpoint(
    resources: &ResourceStore,
    endpoint: WorkloadEndpoint,
    handle: Option<&str>,
    addresses: &[IpNet],
) -> Result<()> {
    let datastore_error = |e: datastore::Error| CniError::new(Code::Datastore, e.to_string());
    let Some(handle) = handle else {
        return resources
            .create(endpoint.into())
            .await
            .map(drop)
            .map_err(datastore_error);
    };
    let (key, value) = datastore::resources::encode(endpoint.into()).map_err(datastore_error)?;
    let ips: Vec<std::net::IpAddr> = addresses.iter().map(IpNet::addr).collect();
    datastore::ipam::Ipam::new(resources.kv().clone())
        .create_holding(handle, &ips, &key, value)
        .await
        .map_err(|e| match e {
            datastore::ipam::IpamError::HandleMoved { .. } => {
                CniError::new(Code::Ipam, format!("{e}; retry the ADD"))
            }
            other => CniError::from(other),
        })
}

/// Creates the namespace's profile unless it exists; never overwrites. It
/// is read first: it is there for all but a namespace's first container,
/// and a read takes no write lock (whatever the read fails on, the create
/// decides as before).
async fn ensure_profile(resources: &ResourceStore, w: &Workload) -> Result<()> {
    if resources
        .get(Kind::Profile, None, &w.profile_name())
        .await
        .is_ok()
    {
        return Ok(());
    }
    match resources.create(w.namespace_profile().into()).await {
        Ok(_) | Err(datastore::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(CniError::new(
            Code::Datastore,
            format!("creating Profile {}: {e}", w.profile_name()),
        )),
    }
}

/// The ADD result, after the chain's result so far.
fn result(conf: &NetConf, w: &Workload, netns: &Path, mac: &str, addresses: &[IpNet]) -> CniResult {
    let mut routes = Vec::new();
    for (v4, dst) in [(true, "0.0.0.0/0"), (false, "::/0")] {
        if addresses.iter().any(|a| a.addr().is_ipv4() == v4) {
            routes.push(Route {
                dst: dst.parse().expect("valid"),
                gw: None,
                extra: Default::default(),
            });
        }
    }
    let ours = CniResult {
        interfaces: vec![
            Interface {
                name: w.host_veth.clone(),
                mac: Some(mac_text(&HOST_MAC)),
                mtu: conf.mtu,
                sandbox: None,
            },
            Interface {
                name: w.ifname.clone(),
                mac: Some(mac.to_owned()),
                mtu: conf.mtu,
                sandbox: Some(netns.display().to_string()),
            },
        ],
        ips: addresses
            .iter()
            .map(|a| IpConfig {
                address: *a,
                gateway: None,
                interface: Some(1),
            })
            .collect(),
        routes,
        dns: None,
    };
    ours.after(conf.prev_result.as_ref())
}

/// DEL: everything ADD made, whatever is still there.
pub async fn del(
    conf: &NetConf,
    env: &CniEnv,
    stdin: &[u8],
    node: &str,
    kv: Arc<dyn KvStore>,
) -> Result<()> {
    let w = Workload::identify(node, env);
    let resources = ResourceStore::new(kv);
    let mut first_error = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            tracing::warn!(error = %e, "DEL step failed; carrying on");
            first_error.get_or_insert(e);
        }
    };
    if let Some(netns) = &env.netns {
        note(
            netlink::delete_link(Some(netns), &env.ifname)
                .map(|_| ())
                .map_err(netlink_error),
        );
    }
    match find_endpoint(&resources, &w).await {
        Ok(Some(wep)) if wep.spec.container_id != env.container_id => {
            tracing::info!(
                endpoint = w.endpoint_name,
                owner = wep.spec.container_id,
                "the endpoint belongs to another container; leaving it and its veth"
            );
        }
        Ok(found) => {
            note(
                netlink::delete_link(None, &w.host_veth)
                    .map(|_| ())
                    .map_err(netlink_error),
            );
            if found.is_some() {
                note(
                    match resources
                        .delete(
                            Kind::WorkloadEndpoint,
                            Some(&w.namespace),
                            &w.endpoint_name,
                            None,
                        )
                        .await
                    {
                        Ok(_) | Err(datastore::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(e.into()),
                    },
                );
            }
        }
        // Whose the host veth is cannot be told: leave it for the retry.
        Err(e) => note(Err(e)),
    }
    note(
        delegate::find_plugin(&conf.ipam.plugin_type, &env.path)
            .and_then(|plugin| delegate::run(&plugin, Command::Del, stdin)),
    );
    first_error.map_or(Ok(()), Err)
}

/// CHECK: the veth, the container side as planned for `prevResult`'s
/// addresses, the endpoint, and the IPAM plugin's own CHECK.
pub async fn check(
    conf: &NetConf,
    env: &CniEnv,
    stdin: &[u8],
    node: &str,
    kv: Arc<dyn KvStore>,
) -> Result<()> {
    let netns = netns_of(env)?;
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::config("prevResult", "is required for CHECK"))?;
    let addresses = prev.container_ips(&env.ifname);
    if addresses.is_empty() {
        return Err(CniError::config(
            "prevResult",
            format!("has no address for interface {} in a sandbox", env.ifname),
        ));
    }
    let w = Workload::identify(node, env);
    let failed = |problems: Vec<String>| CniError::new(Code::CheckFailed, problems.join("; "));
    let wep = find_endpoint(&ResourceStore::new(kv), &w)
        .await?
        .ok_or_else(|| {
            failed(vec![format!(
                "WorkloadEndpoint {}/{} is missing",
                w.namespace, w.endpoint_name
            )])
        })?;
    let mut problems = Vec::new();
    let want: Vec<IpNet> = addresses.iter().map(|a| host_route(*a)).collect();
    let mut have: Vec<IpNet> = wep.spec.ip_networks.iter().map(|c| c.0).collect();
    have.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    if have != want_sorted {
        problems.push(format!(
            "WorkloadEndpoint ipNetworks {have:?} differ from {want_sorted:?}"
        ));
    }
    if wep.spec.container_id != env.container_id {
        problems.push(format!(
            "WorkloadEndpoint belongs to container {}",
            wep.spec.container_id
        ));
    }
    if wep.spec.interface_name != w.host_veth {
        problems.push(format!(
            "WorkloadEndpoint interfaceName is {}, expected {}",
            wep.spec.interface_name, w.host_veth
        ));
    }
    let host = netlink::observe_host(&w.host_veth).map_err(netlink_error)?;
    let container = netlink::observe_container(netns, &env.ifname).map_err(netlink_error)?;
    match (host, container) {
        (Some(host), Some(container)) => {
            problems.extend(ContainerPlan::new(&want).check(
                &env.ifname,
                &w.host_veth,
                &container,
                &host,
            ));
            if wep.spec.mac.as_deref() != Some(container.mac.as_str()) {
                problems.push(format!(
                    "{} has MAC {}, the endpoint says {:?}",
                    env.ifname, container.mac, wep.spec.mac
                ));
            }
        }
        (None, _) => problems.push(format!("host veth {} is missing", w.host_veth)),
        (_, None) => problems.push(format!("{} is missing in {}", env.ifname, netns.display())),
    }
    if !problems.is_empty() {
        return Err(failed(problems));
    }
    let plugin = delegate::find_plugin(&conf.ipam.plugin_type, &env.path)?;
    delegate::run(&plugin, Command::Check, stdin)
}

/// GC (1.1): the addresses are the IPAM plugin's to collect.
pub fn gc(conf: &NetConf, env: &CniEnv, stdin: &[u8]) -> Result<()> {
    let plugin = delegate::find_plugin(&conf.ipam.plugin_type, &env.path)?;
    delegate::run(&plugin, Command::Gc, stdin)
}
