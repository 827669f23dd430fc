//! The network configuration on stdin, as Calico's CNI config has it (pure).
//!
//! `name`, `cniVersion` (a [`SpecVersion`]), `type`; the datastore
//! (`datastore_type` `etcdv3` with `etcd_endpoints` and `etcd_key_file`/
//! `etcd_cert_file`/`etcd_ca_cert_file`, or `sqlite` with `datastore_path`),
//! mapped onto [`DatastoreConfig`]; `nodename` / `nodename_file`; `ipam`
//! (`type`, and for `calico-ipam` `ipv4_pools`, `ipv6_pools`, `assign_ipv4`,
//! `assign_ipv6`); `log_level`, `mtu`; what a runtime adds when chaining
//! (`prevResult` in any supported version, `runtimeConfig.portMappings`,
//! `args.cni.labels`, `capabilities`).
//! Unknown fields are refused naming their path: JSON that does not parse is
//! [`Code::Decode`], anything else [`Code::InvalidConfig`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datastore::DatastoreConfig;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, Code, Result};
use crate::result::CniResult;
use crate::version::SpecVersion;

/// Where Calico's node writes the node name.
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/calico/nodename";

/// Our IPAM plugin's name (`ipam.type`).
pub const CALICO_IPAM: &str = "calico-ipam";

/// The network configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub name: String,
    pub cni_version: SpecVersion,
    pub plugin_type: String,
    pub datastore: DatastoreConfig,
    pub nodename: Option<String>,
    pub nodename_file: Option<PathBuf>,
    pub ipam: IpamConf,
    pub log_level: tracing::Level,
    pub mtu: Option<u32>,
    pub prev_result: Option<CniResult>,
    pub port_mappings: Vec<PortMapping>,
    /// `args.cni.labels`, for the workload's labels.
    pub labels: BTreeMap<String, String>,
    /// GC (1.1): `cni.dev/valid-attachments`, the attachments to keep.
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The workload's QoS controls: the pod's `qos.projectcalico.org/*`
    /// (and `kubernetes.io/*-bandwidth`) annotations from
    /// `runtimeConfig["io.kubernetes.cri.pod-annotations"]`, over
    /// `runtimeConfig.bandwidth`.
    pub qos: Option<api::resources::qos::QosControls>,
}

/// One attachment a runtime still uses (GC's `cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The `ipam` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConf {
    pub plugin_type: String,
    /// Pools by CIDR or name (`calico-ipam` only; empty: any usable pool).
    pub ipv4_pools: Vec<String>,
    pub ipv6_pools: Vec<String>,
    pub assign_ipv4: bool,
    pub assign_ipv6: bool,
}

/// One `runtimeConfig.portMappings` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    name: String,
    #[serde(rename = "type")]
    plugin_type: String,
    #[serde(default)]
    datastore_type: Option<String>,
    #[serde(default)]
    datastore_path: Option<String>,
    #[serde(default)]
    etcd_endpoints: Option<String>,
    #[serde(default)]
    etcd_key_file: Option<String>,
    #[serde(default)]
    etcd_cert_file: Option<String>,
    #[serde(default)]
    etcd_ca_cert_file: Option<String>,
    #[serde(default)]
    nodename: Option<String>,
    #[serde(default)]
    nodename_file: Option<String>,
    ipam: RawIpam,
    #[serde(default)]
    log_level: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default, rename = "prevResult")]
    prev_result: Option<Value>,
    #[serde(default, rename = "runtimeConfig")]
    runtime_config: RawRuntimeConfig,
    #[serde(default)]
    args: RawArgs,
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "declares what runtimeConfig may carry; read by the runtime"
    )]
    capabilities: BTreeMap<String, bool>,
    #[serde(default)]
    #[allow(dead_code, reason = "standard CNI field, for the runtime")]
    dns: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Deserialize)]
struct RawIpam {
    #[serde(rename = "type")]
    plugin_type: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalicoIpam {
    #[serde(default)]
    ipv4_pools: Vec<String>,
    #[serde(default)]
    ipv6_pools: Vec<String>,
    #[serde(default)]
    assign_ipv4: Option<Flag>,
    #[serde(default)]
    assign_ipv6: Option<Flag>,
}

/// Calico writes `assign_ipv4: "true"`; JSON booleans are accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<PortMapping>,
    /// The `bandwidth` capability (kubelet's from `kubernetes.io/*-bandwidth`).
    #[serde(default)]
    bandwidth: Option<RuntimeBandwidth>,
    /// containerd's `io.kubernetes.cri.pod-annotations` capability.
    #[serde(default, rename = "io.kubernetes.cri.pod-annotations")]
    pod_annotations: BTreeMap<String, String>,
}

/// The CNI `bandwidth` capability: rates in bits per second, bursts in bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeBandwidth {
    #[serde(default)]
    pub ingress_rate: u64,
    #[serde(default)]
    pub ingress_burst: u64,
    #[serde(default)]
    pub egress_rate: u64,
    #[serde(default)]
    pub egress_burst: u64,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArgs {
    #[serde(default)]
    cni: RawCniArgs,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCniArgs {
    #[serde(default)]
    labels: Vec<Label>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Label {
    key: String,
    value: String,
}

/// The `cniVersion` of a configuration, if it has one: to answer in the
/// version asked for even when the rest does not parse.
pub fn requested_version(stdin: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(stdin).ok()?;
    value.get("cniVersion")?.as_str().map(str::to_owned)
}

/// Reads a serde value with the failing field's path (after `prefix`) in
/// the error.
pub(crate) fn read<T: for<'de> Deserialize<'de>>(value: Value, prefix: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix, path.as_str()) {
            (p, ".") => p.trim_end_matches('.').to_string(),
            (p, path) => format!("{p}{path}"),
        };
        let field = if field.is_empty() {
            "config".into()
        } else {
            field
        };
        CniError::config(&field, e.into_inner())
    })
}

impl NetConf {
    /// Parses and validates the configuration bytes.
    pub fn parse(stdin: &[u8]) -> Result<NetConf> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::with_details(Code::Decode, "network configuration is not valid JSON", e)
        })?;
        if !value.is_object() {
            return Err(CniError::new(
                Code::Decode,
                "network configuration must be a JSON object",
            ));
        }
        let raw: Raw = read(value, "")?;
        let cni_version = SpecVersion::parse("cniVersion", &raw.cni_version)?;
        if raw.name.trim().is_empty() {
            return Err(CniError::config("name", "must not be empty"));
        }
        let datastore = datastore_config(&raw)?;
        let ipam = ipam_config(raw.ipam)?;
        let log_level = match raw.log_level.as_deref().map(str::to_ascii_lowercase) {
            None => tracing::Level::INFO,
            Some(level) => match level.as_str() {
                "trace" => tracing::Level::TRACE,
                "debug" => tracing::Level::DEBUG,
                "info" => tracing::Level::INFO,
                "warn" | "warning" => tracing::Level::WARN,
                "error" | "fatal" | "panic" => tracing::Level::ERROR,
                other => {
                    return Err(CniError::config(
                        "log_level",
                        format!("{other:?} is not one of trace, debug, info, warning, error"),
                    ));
                }
            },
        };
        if let Some(mtu) = raw.mtu
            && !(68..=65535).contains(&mtu)
        {
            return Err(CniError::config(
                "mtu",
                format!("{mtu} is outside 68-65535"),
            ));
        }
        let prev_result = raw
            .prev_result
            .map(|v| SpecVersion::read_result(v, "prevResult", cni_version))
            .transpose()?;
        let mut labels = BTreeMap::new();
        for (i, Label { key, value }) in raw.args.cni.labels.into_iter().enumerate() {
            if key.is_empty() {
                return Err(CniError::config(
                    &format!("args.cni.labels[{i}].key"),
                    "must not be empty",
                ));
            }
            labels.insert(key, value);
        }
        for (i, m) in raw.runtime_config.port_mappings.iter().enumerate() {
            if m.host_port == 0 || m.container_port == 0 {
                return Err(CniError::config(
                    &format!("runtimeConfig.portMappings[{i}]"),
                    "ports must be 1-65535",
                ));
            }
        }
        let qos = qos_of(&raw.runtime_config)?;
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        Ok(NetConf {
            name: raw.name,
            cni_version,
            plugin_type: raw.plugin_type,
            datastore,
            nodename: nonempty(raw.nodename),
            nodename_file: nonempty(raw.nodename_file).map(PathBuf::from),
            ipam,
            log_level,
            mtu: raw.mtu,
            prev_result,
            port_mappings: raw.runtime_config.port_mappings,
            labels,
            valid_attachments: raw.valid_attachments,
            qos,
        })
    }

    /// The node name: `nodename`, else the contents of `nodename_file`
    /// (default [`DEFAULT_NODENAME_FILE`]) if it can be read, else the
    /// hostname `hostname` gives. `read` stands in for the file system.
    pub fn resolve_nodename(
        &self,
        read: impl Fn(&Path) -> Option<String>,
        hostname: impl FnOnce() -> Option<String>,
    ) -> Result<String> {
        if let Some(name) = &self.nodename {
            return Ok(name.clone());
        }
        let file = self
            .nodename_file
            .clone()
            .unwrap_or_else(|| DEFAULT_NODENAME_FILE.into());
        read(&file)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| {
                hostname()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
            .ok_or_else(|| {
                CniError::config(
                    "nodename",
                    format!(
                        "not set, {} is unreadable and the hostname is empty",
                        file.display()
                    ),
                )
            })
    }

    /// Whether the embedded store's file is there: the plugin uses felix's
    /// store and never makes one (a wrong `datastore_path` would otherwise
    /// get an empty store of its own, and the container an address no one
    /// routes). `exists` stands in for the file system.
    pub fn check_store(&self, exists: impl Fn(&Path) -> bool) -> Result<()> {
        match &self.datastore {
            DatastoreConfig::Sqlite { path } if !exists(path) => Err(CniError::config(
                "datastore_path",
                format!(
                    "{} does not exist: felix makes the embedded store; give the file felix \
                     uses (its datastore.path)",
                    path.display()
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The datastore settings; errors name the CNI config field (the lowercase
/// of the variable `DatastoreConfig` knows).
fn datastore_config(raw: &Raw) -> Result<DatastoreConfig> {
    let settings = [
        ("DATASTORE_TYPE", &raw.datastore_type),
        ("DATASTORE_PATH", &raw.datastore_path),
        ("ETCD_ENDPOINTS", &raw.etcd_endpoints),
        ("ETCD_KEY_FILE", &raw.etcd_key_file),
        ("ETCD_CERT_FILE", &raw.etcd_cert_file),
        ("ETCD_CA_CERT_FILE", &raw.etcd_ca_cert_file),
    ];
    DatastoreConfig::from_env_lookup(|var| {
        settings
            .iter()
            .find(|(name, _)| *name == var)
            .and_then(|(_, v)| (*v).clone())
    })
    .map_err(|e| match e {
        datastore::Error::Config { field, message, .. } => {
            CniError::config(&field.to_ascii_lowercase(), message)
        }
        other => CniError::config("datastore_type", other),
    })
    .and_then(|config| match &config {
        // A runtime runs the plugin in a directory of its choosing.
        DatastoreConfig::Sqlite { path } if path.is_relative() => Err(CniError::config(
            "datastore_path",
            format!("{:?} is not an absolute path", path.display().to_string()),
        )),
        _ => Ok(config),
    })
}

fn ipam_config(raw: RawIpam) -> Result<IpamConf> {
    if raw.plugin_type.trim().is_empty() {
        return Err(CniError::config("ipam.type", "must not be empty"));
    }
    if raw.plugin_type.contains('/') {
        return Err(CniError::config(
            "ipam.type",
            format!("{:?} must be a plugin name, not a path", raw.plugin_type),
        ));
    }
    let mut conf = IpamConf {
        plugin_type: raw.plugin_type,
        ipv4_pools: Vec::new(),
        ipv6_pools: Vec::new(),
        assign_ipv4: true,
        assign_ipv6: false,
    };
    // Another IPAM plugin's settings are its own business.
    if conf.plugin_type != CALICO_IPAM {
        return Ok(conf);
    }
    let calico: CalicoIpam = read(Value::Object(raw.rest), "ipam.")?;
    let flag = |field: &str, v: Option<Flag>, default: bool| match v {
        None => Ok(default),
        Some(Flag::Bool(b)) => Ok(b),
        Some(Flag::Text(t)) => match t.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(CniError::config(
                field,
                format!("{t:?} is neither \"true\" nor \"false\""),
            )),
        },
    };
    conf.assign_ipv4 = flag("ipam.assign_ipv4", calico.assign_ipv4, true)?;
    conf.assign_ipv6 = flag("ipam.assign_ipv6", calico.assign_ipv6, false)?;
    if !conf.assign_ipv4 && !conf.assign_ipv6 {
        return Err(CniError::config(
            "ipam.assign_ipv4",
            "assign_ipv4 and assign_ipv6 are both false: nothing to assign",
        ));
    }
    for (field, pools, v4) in [
        ("ipam.ipv4_pools", &calico.ipv4_pools, true),
        ("ipam.ipv6_pools", &calico.ipv6_pools, false),
    ] {
        for (i, pool) in pools.iter().enumerate() {
            if let Ok(net) = pool.parse::<ipnet::IpNet>() {
                if matches!(net, ipnet::IpNet::V4(_)) != v4 {
                    return Err(CniError::config(
                        &format!("{field}[{i}]"),
                        format!("{pool} is not an IPv{} CIDR", if v4 { 4 } else { 6 }),
                    ));
                }
            } else if pool.is_empty() || pool.contains('/') {
                return Err(CniError::config(
                    &format!("{field}[{i}]"),
                    format!("{pool:?} is neither a CIDR nor a pool name"),
                ));
            }
        }
    }
    conf.ipv4_pools = calico.ipv4_pools;
    conf.ipv6_pools = calico.ipv6_pools;
    Ok(conf)
}

/// The QoS controls the runtime passes: the `bandwidth` capability, then
/// the pod's annotations over it (Calico's win, as in Calico). A bad
/// annotation is a configuration error naming it.
fn qos_of(rc: &RawRuntimeConfig) -> Result<Option<api::resources::qos::QosControls>> {
    use api::resources::qos::{QosControls, from_annotations};
    let from_bandwidth = rc
        .bandwidth
        .filter(|b| *b != RuntimeBandwidth::default())
        .map(|b| QosControls {
            ingress_bandwidth: b.ingress_rate,
            ingress_burst: b.ingress_burst,
            egress_bandwidth: b.egress_rate,
            egress_burst: b.egress_burst,
            ..QosControls::default()
        });
    let annotated = from_annotations(&rc.pod_annotations).map_err(|problems| {
        CniError::config(
            "runtimeConfig.io.kubernetes.cri.pod-annotations",
            problems.join("; "),
        )
    })?;
    let qos = match (from_bandwidth, annotated) {
        (None, a) => a,
        (Some(b), None) => Some(b),
        (Some(b), Some(mut a)) => {
            if a.ingress_bandwidth == 0 {
                (a.ingress_bandwidth, a.ingress_burst) = (b.ingress_bandwidth, b.ingress_burst);
            }
            if a.egress_bandwidth == 0 {
                (a.egress_bandwidth, a.egress_burst) = (b.egress_bandwidth, b.egress_burst);
            }
            Some(a)
        }
    };
    if let Some(problems) = qos
        .as_ref()
        .map(QosControls::problems)
        .filter(|p| !p.is_empty())
    {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(CniError::config(
            "runtimeConfig.io.kubernetes.cri.pod-annotations",
            text.join("; "),
        ));
    }
    Ok(qos)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn base() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "type": "calico",
            "datastore_type": "sqlite",
            "datastore_path": "/tmp/c.db",
            "nodename": "node-1",
            "ipam": {"type": "calico-ipam", "ipv4_pools": ["10.65.0.0/16"], "assign_ipv6": "false"}
        })
    }

    #[test]
    fn a_relative_or_missing_store_path_is_refused_naming_datastore_path() {
        let mut v = base();
        v["datastore_path"] = json!("calico.db");
        let e = parse(&v).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.starts_with("datastore_path: "), "{}", e.msg);
        let conf = parse(&base()).unwrap();
        let e = conf.check_store(|_| false).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(
            e.msg
                .starts_with("datastore_path: /tmp/c.db does not exist"),
            "{}",
            e.msg
        );
        assert!(conf.check_store(|p| p == Path::new("/tmp/c.db")).is_ok());
    }

    fn parse(v: &Value) -> Result<NetConf> {
        NetConf::parse(v.to_string().as_bytes())
    }

    fn message(v: Value) -> (u32, String) {
        let e = parse(&v).unwrap_err();
        (e.code, e.msg)
    }

    #[test]
    fn the_packaged_conflist_chains_loopback_calico_and_portmap_on_the_embedded_store() {
        let list: Value =
            serde_json::from_str(include_str!("../../packaging/deb/10-calico.conflist")).unwrap();
        let types: Vec<&str> = list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["loopback", "calico", "portmap"]);
        assert_eq!(list["cniVersion"], "0.3.1");
        // The calico plugin's configuration, as libcni hands it over.
        let mut plugin = list["plugins"][1].clone();
        plugin["name"] = list["name"].clone();
        plugin["cniVersion"] = list["cniVersion"].clone();
        let conf = parse(&plugin).unwrap();
        assert_eq!(conf.datastore, DatastoreConfig::default());
        assert_eq!(
            conf.nodename_file.as_deref(),
            Some(Path::new(DEFAULT_NODENAME_FILE))
        );
        assert_eq!(conf.ipam.plugin_type, CALICO_IPAM);
        assert!(conf.ipam.assign_ipv4 && !conf.ipam.assign_ipv6);
        assert_eq!(conf.mtu, Some(1500));
        assert_eq!(conf.log_level, tracing::Level::INFO);
    }

    #[test]
    fn calico_config_with_sqlite_is_read() {
        let conf = parse(&base()).unwrap();
        assert_eq!(
            conf.datastore,
            DatastoreConfig::Sqlite {
                path: "/tmp/c.db".into()
            }
        );
        assert_eq!(conf.ipam.ipv4_pools, ["10.65.0.0/16"]);
        assert!(conf.ipam.assign_ipv4 && !conf.ipam.assign_ipv6);
        assert_eq!(conf.log_level, tracing::Level::INFO);
    }

    #[test]
    fn etcd_settings_map_onto_the_datastore_config() {
        let mut v = base();
        v["datastore_type"] = json!("etcdv3");
        v["etcd_endpoints"] = json!("https://127.0.0.1:2379");
        v["etcd_cert_file"] = json!("/c.pem");
        v["etcd_key_file"] = json!("/k.pem");
        v["etcd_ca_cert_file"] = json!("/ca.pem");
        let DatastoreConfig::Etcd(etcd) = parse(&v).unwrap().datastore else {
            panic!("expected etcd");
        };
        assert_eq!(etcd.endpoints, ["https://127.0.0.1:2379"]);
        assert_eq!(etcd.ca_cert_file, Some("/ca.pem".into()));
    }

    #[test]
    fn etcd_errors_name_the_cni_field() {
        let mut v = base();
        v["datastore_type"] = json!("etcdv3");
        v["etcd_endpoints"] = json!("https://127.0.0.1:2379");
        v["etcd_cert_file"] = json!("/c.pem");
        let (code, msg) = message(v);
        assert_eq!(code, 7);
        assert!(msg.starts_with("etcd_key_file:"), "{msg}");
    }

    #[test]
    fn unknown_field_is_a_config_error_naming_it() {
        let mut v = base();
        v["ipam"]["assign_ipv9"] = json!(true);
        let (code, msg) = message(v);
        assert_eq!(code, 7);
        assert!(msg.contains("assign_ipv9"), "{msg}");
        let mut v = base();
        v["etcd_endpoint"] = json!("x");
        assert!(message(v).1.contains("etcd_endpoint"));
    }

    #[test]
    fn bad_value_names_its_path() {
        let mut v = base();
        v["ipam"]["ipv4_pools"] = json!(["10.65.0.0/16", "fd00::/64"]);
        let (code, msg) = message(v);
        assert_eq!(code, 7);
        assert!(msg.starts_with("ipam.ipv4_pools[1]"), "{msg}");
        let mut v = base();
        v["mtu"] = json!("big");
        assert!(message(v).1.starts_with("mtu"));
        let mut v = base();
        v["ipam"]["assign_ipv4"] = json!("yes");
        assert!(message(v).1.starts_with("ipam.assign_ipv4"));
    }

    #[test]
    fn qos_comes_from_the_bandwidth_capability_and_pod_annotations() {
        let mut v = base();
        v["runtimeConfig"] = json!({
            "bandwidth": {"ingressRate": 5_000_000, "ingressBurst": 8000, "egressRate": 7_000_000},
            "io.kubernetes.cri.pod-annotations": {"qos.projectcalico.org/egressBandwidth": "100M"},
        });
        let q = NetConf::parse(v.to_string().as_bytes())
            .unwrap()
            .qos
            .unwrap();
        assert_eq!((q.ingress_bandwidth, q.ingress_burst), (5_000_000, 8000));
        assert_eq!(q.egress_bandwidth, 100_000_000, "the annotation wins");
        assert_eq!(
            NetConf::parse(base().to_string().as_bytes()).unwrap().qos,
            None
        );
        let mut v = base();
        v["runtimeConfig"] = json!({
            "io.kubernetes.cri.pod-annotations": {"qos.projectcalico.org/ingressBandwidth": "lots"},
        });
        let (code, msg) = message(v);
        assert_eq!(code, 7);
        assert!(
            msg.contains("qos.projectcalico.org/ingressBandwidth"),
            "{msg}"
        );
        let mut v = base();
        v["runtimeConfig"] = json!({
            "io.kubernetes.cri.pod-annotations": {"qos.projectcalico.org/dscp": "EX"},
        });
        let (code, msg) = message(v);
        assert_eq!(code, 7);
        assert!(msg.contains("dscp: \"EX\" is not a DSCP value"), "{msg}");
        let mut v = base();
        v["runtimeConfig"] = json!({
            "io.kubernetes.cri.pod-annotations": {"qos.projectcalico.org/ingressPacketRate": "20000"},
        });
        assert!(
            message(v)
                .1
                .contains("ingressPacketRate: 20000 is outside 1 to 10000")
        );
    }

    #[test]
    fn not_json_is_a_decode_error_and_old_versions_are_incompatible() {
        assert_eq!(NetConf::parse(b"{nope").unwrap_err().code, 6);
        let mut v = base();
        v["cniVersion"] = json!("0.2.0");
        assert_eq!(message(v).0, 1);
    }

    #[test]
    fn other_ipam_plugins_keep_their_own_fields() {
        let mut v = base();
        v["ipam"] = json!({"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/24"}]]});
        assert_eq!(parse(&v).unwrap().ipam.plugin_type, "host-local");
    }

    #[test]
    fn chained_fields_are_read() {
        let mut v = base();
        v["runtimeConfig"] =
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
        v["capabilities"] = json!({"portMappings": true});
        v["args"] = json!({"cni": {"labels": [{"key": "app", "value": "web"}]}});
        v["prevResult"] = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "lo", "sandbox": "/run/netns/x"}], "ips": [{"address": "127.0.0.1/8", "interface": 0}]});
        let conf = parse(&v).unwrap();
        assert_eq!(conf.port_mappings[0].host_port, 8080);
        assert_eq!(conf.labels["app"], "web");
        assert_eq!(conf.prev_result.unwrap().interfaces[0].name, "lo");
    }

    #[test]
    fn nodename_falls_back_to_the_file_then_the_hostname() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("nodename");
        let conf = parse(&v).unwrap();
        let from_file = conf
            .resolve_nodename(
                |p| (p == Path::new(DEFAULT_NODENAME_FILE)).then(|| "n2\n".into()),
                || None,
            )
            .unwrap();
        assert_eq!(from_file, "n2");
        let from_host = conf
            .resolve_nodename(|_| None, || Some("h1".into()))
            .unwrap();
        assert_eq!(from_host, "h1");
    }
}
