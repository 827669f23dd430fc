//! The agent's settings ([`Settings`]) from flags, the environment and a
//! YAML file, in that order of precedence, over the defaults. Pure: the
//! environment and the file's text are handed in, so every rule here is
//! unit-tested; [`Settings::load`] is the thin wrapper reading the real ones.
//!
//! | setting | flag | environment | file | default |
//! |---|---|---|---|---|
//! | datastore | `--datastore-type`, `--datastore-path`, `--etcd-endpoints` | `DATASTORE_TYPE`, `DATASTORE_PATH`, `ETCD_ENDPOINTS`, `ETCD_*` | `datastore.{type,path,etcdEndpoints,etcdCACertFile,etcdCertFile,etcdKeyFile,etcdUsername,etcdPassword}` | sqlite at `/var/lib/calico/calico.db` |
//! | node name | `--node-name` | `NODENAME`, `FELIX_FELIXHOSTNAME` | `nodeName` | the host name |
//! | log level | `--log-level` | `FELIX_LOGSEVERITYSCREEN` | `logLevel` | `info` |
//! | metrics address | `--metrics-addr` | `FELIX_METRICSADDR`, or Calico's `FELIX_PROMETHEUSMETRICSHOST` / `…PORT` | `metricsAddr` | `127.0.0.1:9091` |
//! | health address | `--health-addr` | `FELIX_HEALTHADDR`, or Calico's `FELIX_HEALTHHOST` / `…PORT` | `healthAddr` | `127.0.0.1:9099` |
//! | networking backend | `--backend` | `CALICO_NETWORKING_BACKEND` | `networkingBackend` | `bird` |
//! | IPv4 address | `--ip` | `IP` | `ip` | `autodetect` |
//! | IPv6 address | `--ip6` | `IP6` | `ip6` | `none` |
//! | AS number | `--as` | `AS` | `asNumber` | none (the cluster's) |
//! | BGP status socket | `--bgp-socket` | `FELIX_BGPSOCKET` | `bgpSocket` | `/run/calico/bgp.sock` |
//! | node name file | `--nodename-file` | `CALICO_NODENAME_FILE` | `nodenameFile` | none |
//! | flow API address | `--flows-addr` | `FELIX_FLOWSADDR` | `flowsAddr` | `127.0.0.1:7443`; `none`: no flow logs |
//! | flow log flush interval | `--flow-logs-flush-interval` | `FELIX_FLOWLOGSFLUSHINTERVAL` | `flowLogsFlushInterval` | `15s` |
//! | cluster flow aggregator | `--flow-logs-goldmane-server` | `FELIX_FLOWLOGSGOLDMANESERVER` | `flowLogsGoldmaneServer` | none: this host's flows stay here |
//!
//! The node name file is where felix writes its node name at start, for the
//! CNI plugin's `nodename_file` (Calico's calico-node always writes
//! `/var/lib/calico/nodename`; here it is a setting, which the package's
//! `/etc/calico/felix.yaml` sets to that path, so that felix run by hand or
//! by a test writes nothing outside what it is given).
//!
//! FelixConfiguration resources are read from the datastore by the
//! calculation; these are the settings needed before the datastore is
//! reachable, or that belong to this host alone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use datastore::DatastoreConfig;
use ipnet::IpNet;
use serde::Deserialize;

use crate::state::HostSettings;

/// Prometheus metrics, as Calico's felix (`PrometheusMetricsPort`).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9091";
/// Liveness and readiness, as Calico's felix (`HealthPort`).
pub const DEFAULT_HEALTH_ADDR: &str = "127.0.0.1:9099";
/// The NFLOG group the ruleset logs flows to.
pub const FLOW_LOG_GROUP: u16 = 20;
/// Where the flow API (Goldmane's `Flows` service) listens, as Goldmane.
pub const DEFAULT_FLOWS_ADDR: &str = "127.0.0.1:7443";
/// Where the BGP speaker answers status queries (`calicoctl node status`).
pub const DEFAULT_BGP_SOCKET: &str = "/run/calico/bgp.sock";

/// Everything the agent needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub datastore: DatastoreConfig,
    /// This host's Node name.
    pub node_name: String,
    /// A `tracing` filter (`info`, `debug`, `felix=debug,warn`, ...).
    pub log_level: String,
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
    pub backend: Backend,
    /// This host's IPv4 address and subnet (Node `bgp.ipv4Address`).
    pub ip: IpSetting,
    /// This host's IPv6 address and subnet (Node `bgp.ipv6Address`).
    pub ip6: IpSetting,
    /// This node's AS number (Node `bgp.asNumber`); `None` keeps the cluster's.
    pub as_number: Option<u32>,
    pub bgp_socket: PathBuf,
    /// Where to write the node name at start, if anywhere.
    pub nodename_file: Option<PathBuf>,
    /// Where the flow API listens; `None`: no flow logs at all.
    pub flows_addr: Option<SocketAddr>,
    /// How often connections' counts go into the flow store (Calico's
    /// `flowLogsFlushInterval`; the store aggregates in 15 s buckets), and
    /// how often the rule counters in `/metrics` are read.
    pub flow_logs_flush_interval: Duration,
    /// The cluster's flow aggregator (`goldmane`) each flush is pushed to,
    /// as `host:port` or `unix:PATH` (Calico's `flowLogsGoldmaneServer`).
    pub flow_logs_goldmane_server: Option<String>,
}

/// Calico's `CALICO_NETWORKING_BACKEND`: how traffic reaches other hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// BGP (Calico runs BIRD; we run bgpd in-process).
    Bird,
    /// VXLAN only, no BGP.
    Vxlan,
    /// Policy only: no BGP, no encapsulation.
    None,
}

/// How the host's address is found (Calico's `IP` / `IP6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpSetting {
    /// The first global address of the interface holding the default route.
    Autodetect,
    /// No address of this family.
    None,
    /// This address and prefix length (a bare address means a host prefix).
    Address(IpNet),
}

/// A setting that could not be read; `origin` is `flag`, `environment` or
/// the file, `field` the flag, variable or YAML path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("felix configuration ({origin}): {field}: {message}")]
pub struct ConfigError {
    pub origin: String,
    pub field: String,
    pub message: String,
}

/// `felix run`'s flags: each overrides the environment and the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct RunArgs {
    /// YAML settings file: nodeName, logLevel, metricsAddr, healthAddr,
    /// networkingBackend, ip, ip6, asNumber, bgpSocket, datastore.{type, path,
    /// etcdEndpoints, etcdCACertFile, etcdCertFile, etcdKeyFile, etcdUsername,
    /// etcdPassword}
    #[arg(long, value_name = "FILE", env = "FELIX_CONFIG_FILE")]
    pub config: Option<PathBuf>,
    /// `sqlite` or `etcdv3` [env: DATASTORE_TYPE]
    #[arg(long)]
    pub datastore_type: Option<String>,
    /// The SQLite file [env: DATASTORE_PATH]
    #[arg(long)]
    pub datastore_path: Option<String>,
    /// Comma-separated etcd endpoints [env: ETCD_ENDPOINTS]
    #[arg(long)]
    pub etcd_endpoints: Option<String>,
    /// This host's Node name [env: NODENAME, FELIX_FELIXHOSTNAME; default: the host name]
    #[arg(long)]
    pub node_name: Option<String>,
    /// Log filter [env: FELIX_LOGSEVERITYSCREEN; default: info]
    #[arg(long)]
    pub log_level: Option<String>,
    /// Prometheus metrics address [env: FELIX_METRICSADDR; default: 127.0.0.1:9091]
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Liveness/readiness address [env: FELIX_HEALTHADDR; default: 127.0.0.1:9099]
    #[arg(long)]
    pub health_addr: Option<String>,
    /// `bird`, `vxlan` or `none` [env: CALICO_NETWORKING_BACKEND; default: bird]
    #[arg(long)]
    pub backend: Option<String>,
    /// IPv4 address/prefix, `autodetect` or `none` [env: IP; default: autodetect]
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address/prefix, `autodetect` or `none` [env: IP6; default: none]
    #[arg(long)]
    pub ip6: Option<String>,
    /// This node's AS number [env: AS]
    #[arg(long = "as")]
    pub as_number: Option<String>,
    /// BGP status socket [env: FELIX_BGPSOCKET; default: /run/calico/bgp.sock]
    #[arg(long)]
    pub bgp_socket: Option<String>,
    /// File to write the node name into at start, for the CNI plugin's
    /// nodename_file [env: CALICO_NODENAME_FILE; default: none]
    #[arg(long)]
    pub nodename_file: Option<String>,
    /// Flow API address, `none` for no flow logs [env: FELIX_FLOWSADDR;
    /// default: 127.0.0.1:7443]
    #[arg(long)]
    pub flows_addr: Option<String>,
    /// How often flows are flushed, `15s` or seconds
    /// [env: FELIX_FLOWLOGSFLUSHINTERVAL; default: 15s]
    #[arg(long)]
    pub flow_logs_flush_interval: Option<String>,
    /// The cluster's flow aggregator to push flows to, `host:port` or
    /// `unix:PATH` [env: FELIX_FLOWLOGSGOLDMANESERVER; default: none]
    #[arg(long)]
    pub flow_logs_goldmane_server: Option<String>,
}

/// The settings file: every field optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileSettings {
    #[serde(default)]
    datastore: FileDatastore,
    node_name: Option<String>,
    log_level: Option<String>,
    metrics_addr: Option<String>,
    health_addr: Option<String>,
    networking_backend: Option<String>,
    ip: Option<String>,
    ip6: Option<String>,
    as_number: Option<serde_yaml::Value>,
    bgp_socket: Option<String>,
    nodename_file: Option<String>,
    flows_addr: Option<String>,
    flow_logs_flush_interval: Option<String>,
    flow_logs_goldmane_server: Option<String>,
}

/// The settings file's `datastore:` mapping: `type` and `path`, and the
/// etcd settings under their CalicoAPIConfig names ([`datastore::settings`]).
type FileDatastore = BTreeMap<String, String>;

/// The name in felix's settings file of a datastore setting, by its
/// CalicoAPIConfig name.
fn file_name(field: &'static str) -> &'static str {
    match field {
        "datastoreType" => "type",
        "datastorePath" => "path",
        other => other,
    }
}

/// The file's datastore settings by the environment variable they stand
/// for, as (file field, value); a name felix does not know is refused.
fn file_by_env(
    file: &FileDatastore,
    layers: &Layers<'_>,
) -> Result<BTreeMap<&'static str, (String, String)>, ConfigError> {
    let known: BTreeMap<&str, &'static str> = datastore::settings()
        .map(|(env, field)| (file_name(field), env))
        .collect();
    file.iter()
        .map(|(name, value)| match known.get(name.as_str()) {
            Some(&env) => Ok((env, (format!("datastore.{name}"), value.clone()))),
            None => Err(layers.error(
                &Source::File(format!("datastore.{name}")),
                format!(
                    "unknown datastore setting; expected one of {}",
                    known.keys().copied().collect::<Vec<_>>().join(", ")
                ),
            )),
        })
        .collect()
}

/// Where a value came from, to name it in errors.
#[derive(Debug, Clone)]
enum Source {
    Flag(&'static str),
    Env(&'static str),
    File(String),
    Default,
}

/// One setting's value with its source.
struct Value {
    text: String,
    source: Source,
}

/// The three layers, consulted flags first.
struct Layers<'a> {
    file_path: Option<&'a Path>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Layers<'_> {
    /// The first non-empty value among the flag, the variables and the file.
    fn pick(
        &self,
        flag: (&'static str, &Option<String>),
        envs: &[&'static str],
        file: (&str, &Option<String>),
    ) -> Option<Value> {
        let non_empty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        if let Some(text) = non_empty(flag.1) {
            return Some(Value {
                text,
                source: Source::Flag(flag.0),
            });
        }
        for env in envs {
            if let Some(text) = non_empty(&(self.env)(env)) {
                return Some(Value {
                    text,
                    source: Source::Env(env),
                });
            }
        }
        non_empty(file.1).map(|text| Value {
            text,
            source: Source::File(file.0.into()),
        })
    }

    fn error(&self, source: &Source, message: impl Into<String>) -> ConfigError {
        let (origin, field) = match source {
            Source::Flag(f) => ("flag".to_string(), format!("--{f}")),
            Source::Env(e) => ("environment".to_string(), (*e).to_string()),
            Source::File(f) => (
                self.file_path
                    .map_or("file".into(), |p| p.display().to_string()),
                f.clone(),
            ),
            Source::Default => ("default".to_string(), "value".to_string()),
        };
        ConfigError {
            origin,
            field,
            message: message.into(),
        }
    }

    /// Parses a picked value (or the default) with `parse`.
    fn parse<T>(
        &self,
        value: Option<Value>,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let value = value.unwrap_or_else(|| Value {
            text: default.to_owned(),
            source: Source::Default,
        });
        parse(&value.text).map_err(|m| self.error(&value.source, m))
    }
}

impl Layers<'_> {
    /// A listen address: the flag, the `addr` variable, Calico's separate
    /// host and port variables (either one over the default's other half),
    /// the file, the default.
    fn addr(
        &self,
        flag: (&'static str, &Option<String>),
        env: &'static str,
        (host_env, port_env): (&'static str, &'static str),
        file: (&'static str, &Option<String>),
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let default_addr = parse_addr(default).map_err(|m| self.error(&Source::Default, m))?;
        if let Some(v) = self.pick(flag, &[env], ("", &None)) {
            return self.parse(Some(v), default, parse_addr);
        }
        let get = |name: &str| {
            (self.env)(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let (host, port) = (get(host_env), get(port_env));
        if host.is_none() && port.is_none() {
            return self.parse(self.pick(("", &None), &[], file), default, parse_addr);
        }
        let ip = match host {
            Some(h) => h.parse().map_err(|_| {
                self.error(
                    &Source::Env(host_env),
                    format!("{h:?} is not an IP address"),
                )
            })?,
            None => default_addr.ip(),
        };
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| self.error(&Source::Env(port_env), format!("{p:?} is not a port")))?,
            None => default_addr.port(),
        };
        Ok(SocketAddr::new(ip, port))
    }
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an address:port such as 127.0.0.1:9091"))
}

fn parse_backend(text: &str) -> Result<Backend, String> {
    match text {
        "bird" => Ok(Backend::Bird),
        "vxlan" => Ok(Backend::Vxlan),
        "none" => Ok(Backend::None),
        other => Err(format!(
            "unknown networking backend {other:?}; expected bird, vxlan or none"
        )),
    }
}

fn parse_ip(family: u8) -> impl Fn(&str) -> Result<IpSetting, String> {
    move |text| {
        let net = match text {
            "autodetect" => return Ok(IpSetting::Autodetect),
            "none" => return Ok(IpSetting::None),
            t => t
                .parse::<IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("{t:?} is not an address, address/prefix, autodetect or none")
                })?,
        };
        let got = if net.addr().is_ipv4() { 4 } else { 6 };
        if got != family {
            return Err(format!("{net} is not an IPv{family} address"));
        }
        Ok(IpSetting::Address(net))
    }
}

fn parse_asn(text: &str) -> Result<Option<u32>, String> {
    // Calico also writes 4-byte AS numbers as `high.low` (asdot).
    let asn = match text.split_once('.') {
        Some((hi, lo)) => hi
            .parse::<u16>()
            .ok()
            .zip(lo.parse::<u16>().ok())
            .map(|(hi, lo)| (u32::from(hi) << 16) | u32::from(lo)),
        None => text.parse::<u32>().ok(),
    };
    match asn {
        Some(0) | None => Err(format!(
            "{text:?} is not an AS number (1-4294967295 or asdot)"
        )),
        Some(n) => Ok(Some(n)),
    }
}

impl Settings {
    /// Resolves the settings from `flags`, the environment (`env` looks a
    /// variable up), the settings file (its path and text, if any) and the
    /// defaults; `hostname` is the node name's default.
    pub fn resolve(
        flags: &RunArgs,
        env: &dyn Fn(&str) -> Option<String>,
        file: Option<(&Path, &str)>,
        hostname: &dyn Fn() -> String,
    ) -> Result<Settings, ConfigError> {
        let file_settings = match file {
            Some((path, text)) if !text.trim().is_empty() => {
                serde_yaml::from_str::<FileSettings>(text).map_err(|e| ConfigError {
                    origin: path.display().to_string(),
                    field: e.location().map_or("document".into(), |l| {
                        format!("line {} column {}", l.line(), l.column())
                    }),
                    message: e.to_string(),
                })?
            }
            _ => FileSettings::default(),
        };
        let layers = Layers {
            file_path: file.map(|(p, _)| p),
            env,
        };
        let f = &file_settings;

        let datastore = datastore_config(flags, &f.datastore, &layers)?;
        let node_name = layers
            .pick(
                ("node-name", &flags.node_name),
                &["NODENAME", "FELIX_FELIXHOSTNAME"],
                ("nodeName", &f.node_name),
            )
            .map_or_else(
                || Ok(hostname()),
                |v| {
                    if v.text.contains('/') {
                        Err(layers.error(&v.source, format!("{:?} contains '/'", v.text)))
                    } else {
                        Ok(v.text)
                    }
                },
            )?;
        if node_name.is_empty() {
            return Err(ConfigError {
                origin: "host name".into(),
                field: "NODENAME".into(),
                message: "no node name is set and the host name is empty".into(),
            });
        }
        let log_level = layers
            .pick(
                ("log-level", &flags.log_level),
                &["FELIX_LOGSEVERITYSCREEN"],
                ("logLevel", &f.log_level),
            )
            .map_or_else(|| "info".to_owned(), |v| v.text.to_lowercase());
        let metrics_addr = layers.addr(
            ("metrics-addr", &flags.metrics_addr),
            "FELIX_METRICSADDR",
            ("FELIX_PROMETHEUSMETRICSHOST", "FELIX_PROMETHEUSMETRICSPORT"),
            ("metricsAddr", &f.metrics_addr),
            DEFAULT_METRICS_ADDR,
        )?;
        let health_addr = layers.addr(
            ("health-addr", &flags.health_addr),
            "FELIX_HEALTHADDR",
            ("FELIX_HEALTHHOST", "FELIX_HEALTHPORT"),
            ("healthAddr", &f.health_addr),
            DEFAULT_HEALTH_ADDR,
        )?;
        let backend = layers.parse(
            layers.pick(
                ("backend", &flags.backend),
                &["CALICO_NETWORKING_BACKEND"],
                ("networkingBackend", &f.networking_backend),
            ),
            "bird",
            parse_backend,
        )?;
        let ip = layers.parse(
            layers.pick(("ip", &flags.ip), &["IP"], ("ip", &f.ip)),
            "autodetect",
            parse_ip(4),
        )?;
        let ip6 = layers.parse(
            layers.pick(("ip6", &flags.ip6), &["IP6"], ("ip6", &f.ip6)),
            "none",
            parse_ip(6),
        )?;
        // YAML may carry the AS as a number or a string.
        let file_as = f.as_number.as_ref().map(|v| match v {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            other => format!("{other:?}"),
        });
        let as_number = match layers.pick(("as", &flags.as_number), &["AS"], ("asNumber", &file_as))
        {
            None => None,
            Some(v) => layers.parse(Some(v), "", parse_asn)?,
        };
        let bgp_socket = layers
            .pick(
                ("bgp-socket", &flags.bgp_socket),
                &["FELIX_BGPSOCKET"],
                ("bgpSocket", &f.bgp_socket),
            )
            .map_or_else(|| DEFAULT_BGP_SOCKET.into(), |v| PathBuf::from(v.text));
        let nodename_file = layers
            .pick(
                ("nodename-file", &flags.nodename_file),
                &["CALICO_NODENAME_FILE"],
                ("nodenameFile", &f.nodename_file),
            )
            .map(|v| PathBuf::from(v.text));
        let flows_addr = layers.parse(
            layers.pick(
                ("flows-addr", &flags.flows_addr),
                &["FELIX_FLOWSADDR"],
                ("flowsAddr", &f.flows_addr),
            ),
            DEFAULT_FLOWS_ADDR,
            |v| match v {
                "none" => Ok(None),
                v => parse_addr(v).map(Some),
            },
        )?;
        let flow_logs_flush_interval = layers.parse(
            layers.pick(
                ("flow-logs-flush-interval", &flags.flow_logs_flush_interval),
                &["FELIX_FLOWLOGSFLUSHINTERVAL"],
                ("flowLogsFlushInterval", &f.flow_logs_flush_interval),
            ),
            "15s",
            parse_seconds,
        )?;
        let flow_logs_goldmane_server = layers.parse(
            layers.pick(
                (
                    "flow-logs-goldmane-server",
                    &flags.flow_logs_goldmane_server,
                ),
                &["FELIX_FLOWLOGSGOLDMANESERVER"],
                ("flowLogsGoldmaneServer", &f.flow_logs_goldmane_server),
            ),
            "",
            |v| match v {
                "" | "none" => Ok(None),
                v => flows::push::endpoint(v)
                    .map(|_| Some(v.to_string()))
                    .map_err(|e| e.to_string()),
            },
        )?;
        Ok(Settings {
            datastore,
            node_name,
            log_level,
            metrics_addr,
            health_addr,
            backend,
            ip,
            ip6,
            as_number,
            bgp_socket,
            nodename_file,
            flows_addr,
            flow_logs_flush_interval,
            flow_logs_goldmane_server,
        })
    }

    /// [`Settings::resolve`] on the process's environment, the file named
    /// by `--config` (if any) and the kernel's host name.
    pub fn load(flags: &RunArgs) -> Result<Settings, ConfigError> {
        let text = match &flags.config {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| ConfigError {
                origin: path.display().to_string(),
                field: "file".into(),
                message: e.to_string(),
            })?),
            None => None,
        };
        let file = flags.config.as_deref().zip(text.as_deref());
        Settings::resolve(flags, &|name| std::env::var(name).ok(), file, &hostname)
    }

    /// What the calculation needs to know about this host.
    pub fn host(&self) -> HostSettings {
        HostSettings {
            node: self.node_name.clone(),
            bgp_enabled: self.backend == Backend::Bird,
            flow_logs: self.flows_addr.map(|_| policy::flowlog::FlowLogs {
                group: FLOW_LOG_GROUP,
            }),
        }
    }
}

/// A whole number of seconds, at least 1, as `15s` or `15`.
fn parse_seconds(v: &str) -> Result<Duration, String> {
    let n = v.strip_suffix('s').unwrap_or(v);
    match n.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "{v:?} is not a whole number of seconds above 0 (as 15s)"
        )),
    }
}

/// The kernel's host name (`/proc/sys/kernel/hostname`); empty if unreadable.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// The datastore settings: flags, then the environment, then the file, each
/// by the variable [`DatastoreConfig::from_env_lookup`] reads; errors name
/// the flag, variable or file field that supplied the bad value.
fn datastore_config(
    flags: &RunArgs,
    file: &FileDatastore,
    layers: &Layers<'_>,
) -> Result<DatastoreConfig, ConfigError> {
    let flag_values: BTreeMap<&str, (&'static str, &Option<String>)> = [
        ("DATASTORE_TYPE", ("datastore-type", &flags.datastore_type)),
        ("DATASTORE_PATH", ("datastore-path", &flags.datastore_path)),
        ("ETCD_ENDPOINTS", ("etcd-endpoints", &flags.etcd_endpoints)),
    ]
    .into_iter()
    .collect();
    let file_values = file_by_env(file, layers)?;
    let sources = std::cell::RefCell::new(BTreeMap::<String, Source>::new());
    let lookup = |name: &str| -> Option<String> {
        let empty = None;
        let flag = flag_values.get(name).map_or(("", &empty), |f| (f.0, f.1));
        let file_value = file_values.get(name).map(|(_, v)| v.clone());
        let file_field = file_values.get(name).map_or("", |(f, _)| f.as_str());
        // The variable under its `'static` name, if it is one we read.
        let envs: Vec<&'static str> = datastore::settings()
            .map(|(env, _)| env)
            .filter(|e| *e == name)
            .collect();
        let picked = layers.pick(flag, &envs, (file_field, &file_value))?;
        sources.borrow_mut().insert(name.to_owned(), picked.source);
        Some(picked.text)
    };
    DatastoreConfig::from_env_lookup(lookup).map_err(|e| match e {
        datastore::Error::Config { field, message, .. } => {
            let source = sources.borrow().get(&field).cloned();
            match source {
                Some(source) => layers.error(&source, message),
                None => ConfigError {
                    origin: "datastore".into(),
                    field,
                    message,
                },
            }
        }
        other => ConfigError {
            origin: "datastore".into(),
            field: "datastore".into(),
            message: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(
        flags: &RunArgs,
        env: &[(&str, &str)],
        file: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve(
            flags,
            &|k| env.get(k).cloned(),
            file.map(|t| (Path::new("/etc/felix.yaml"), t)),
            &|| "host-a".to_owned(),
        )
    }

    #[test]
    fn nothing_set_gives_calicos_defaults_and_the_host_name() {
        let s = resolve(&RunArgs::default(), &[], None).unwrap();
        assert_eq!(s.node_name, "host-a");
        assert_eq!(s.metrics_addr, "127.0.0.1:9091".parse().unwrap());
        assert_eq!(s.health_addr, "127.0.0.1:9099".parse().unwrap());
        assert_eq!(s.backend, Backend::Bird);
        assert_eq!(s.ip, IpSetting::Autodetect);
        assert_eq!(s.ip6, IpSetting::None);
        assert_eq!(s.as_number, None);
        assert_eq!(s.log_level, "info");
        assert_eq!(s.bgp_socket, Path::new("/run/calico/bgp.sock"));
        assert_eq!(s.nodename_file, None, "nothing written unless asked");
        assert_eq!(s.datastore, DatastoreConfig::default());
        assert!(s.host().bgp_enabled);
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let file =
            "nodeName: from-file\nlogLevel: warn\nip: 10.0.0.3/24\nnetworkingBackend: none\n";
        let env = [("NODENAME", "from-env"), ("IP", "10.0.0.2/24")];
        let flags = RunArgs {
            ip: Some("10.0.0.1/24".into()),
            ..RunArgs::default()
        };
        let s = resolve(&flags, &env, Some(file)).unwrap();
        assert_eq!(s.ip, IpSetting::Address("10.0.0.1/24".parse().unwrap()));
        assert_eq!(s.node_name, "from-env");
        assert_eq!(s.log_level, "warn");
        assert_eq!(s.backend, Backend::None);
        assert!(!s.host().bgp_enabled);
    }

    #[test]
    fn the_nodename_file_is_a_flag_a_variable_or_a_file_field() {
        let file = Some("nodenameFile: /var/lib/calico/nodename\n");
        let s = resolve(&RunArgs::default(), &[], file).unwrap();
        assert_eq!(
            s.nodename_file.as_deref(),
            Some(Path::new("/var/lib/calico/nodename"))
        );
        let env = [("CALICO_NODENAME_FILE", "/run/n")];
        let s = resolve(&RunArgs::default(), &env, file).unwrap();
        assert_eq!(s.nodename_file.as_deref(), Some(Path::new("/run/n")));
        let flags = RunArgs {
            nodename_file: Some("/tmp/n".into()),
            ..RunArgs::default()
        };
        let s = resolve(&flags, &env, file).unwrap();
        assert_eq!(s.nodename_file.as_deref(), Some(Path::new("/tmp/n")));
    }

    #[test]
    fn calico_environment_names_are_read() {
        let env = [
            ("CALICO_NETWORKING_BACKEND", "vxlan"),
            ("AS", "64512"),
            ("IP6", "fd00::5/64"),
            ("FELIX_LOGSEVERITYSCREEN", "Debug"),
            ("FELIX_FELIXHOSTNAME", "felix-name"),
        ];
        let s = resolve(&RunArgs::default(), &env, None).unwrap();
        assert_eq!(s.backend, Backend::Vxlan);
        assert_eq!(s.as_number, Some(64512));
        assert_eq!(s.ip6, IpSetting::Address("fd00::5/64".parse().unwrap()));
        assert_eq!(s.log_level, "debug");
        assert_eq!(s.node_name, "felix-name");
    }

    #[test]
    fn datastore_settings_layer_flags_over_environment_over_file() {
        let file = "datastore:\n  type: etcdv3\n  etcdEndpoints: http://10.0.0.9:2379\n  etcdUsername: u\n";
        let s = resolve(&RunArgs::default(), &[], Some(file)).unwrap();
        let DatastoreConfig::Etcd(etcd) = &s.datastore else {
            panic!("{:?}", s.datastore)
        };
        assert_eq!(etcd.endpoints, ["http://10.0.0.9:2379"]);
        assert_eq!(etcd.username.as_deref(), Some("u"));

        let env = [("ETCD_ENDPOINTS", "http://127.0.0.1:2379")];
        let s = resolve(&RunArgs::default(), &env, Some(file)).unwrap();
        let DatastoreConfig::Etcd(etcd) = &s.datastore else {
            panic!("{:?}", s.datastore)
        };
        assert_eq!(etcd.endpoints, ["http://127.0.0.1:2379"]);

        let flags = RunArgs {
            datastore_type: Some("sqlite".into()),
            datastore_path: Some("/tmp/f.db".into()),
            ..RunArgs::default()
        };
        let s = resolve(&flags, &env, Some(file)).unwrap();
        assert_eq!(
            s.datastore,
            DatastoreConfig::Sqlite {
                path: "/tmp/f.db".into()
            }
        );
    }

    #[test]
    fn flow_logs_are_on_at_7443_unless_the_address_is_none_and_flush_every_15_s() {
        let s = resolve(&RunArgs::default(), &[], None).unwrap();
        assert_eq!(s.flows_addr, Some("127.0.0.1:7443".parse().unwrap()));
        assert_eq!(s.flow_logs_flush_interval, Duration::from_secs(15));
        assert!(s.host().flow_logs.is_some());
        let s = resolve(
            &RunArgs::default(),
            &[
                ("FELIX_FLOWSADDR", "none"),
                ("FELIX_FLOWLOGSFLUSHINTERVAL", "2"),
            ],
            None,
        )
        .unwrap();
        assert_eq!((s.flows_addr, s.host().flow_logs), (None, None));
        assert_eq!(s.flow_logs_flush_interval, Duration::from_secs(2));
        let err = resolve(
            &RunArgs::default(),
            &[],
            Some("flowLogsFlushInterval: 0s\n"),
        )
        .unwrap_err();
        assert_eq!(err.field, "flowLogsFlushInterval");
    }

    #[test]
    fn flows_are_pushed_to_the_goldmane_server_only_when_one_is_named() {
        let s = resolve(&RunArgs::default(), &[], None).unwrap();
        assert_eq!(s.flow_logs_goldmane_server, None);
        let env = [("FELIX_FLOWLOGSGOLDMANESERVER", "10.0.0.2:7443")];
        let s = resolve(&RunArgs::default(), &env, None).unwrap();
        assert_eq!(
            s.flow_logs_goldmane_server.as_deref(),
            Some("10.0.0.2:7443")
        );
        let file = "flowLogsGoldmaneServer: unix:/run/goldmane.sock\n";
        let s = resolve(&RunArgs::default(), &[], Some(file)).unwrap();
        assert_eq!(
            s.flow_logs_goldmane_server.as_deref(),
            Some("unix:/run/goldmane.sock")
        );
        let env = [("FELIX_FLOWLOGSGOLDMANESERVER", "no such host")];
        let err = resolve(&RunArgs::default(), &env, None).unwrap_err();
        assert_eq!(err.field, "FELIX_FLOWLOGSGOLDMANESERVER");
    }

    #[test]
    fn an_unknown_datastore_setting_in_the_file_is_refused_by_name() {
        // CalicoAPIConfig's name for the path is not felix's.
        let file = "datastore:\n  datastorePath: /tmp/x.db\n";
        let err = resolve(&RunArgs::default(), &[], Some(file)).unwrap_err();
        assert_eq!(err.origin, "/etc/felix.yaml");
        assert_eq!(err.field, "datastore.datastorePath");
        assert!(err.message.contains("expected one of"), "{}", err.message);
        assert!(err.message.contains("path"), "{}", err.message);
    }

    #[test]
    fn a_bad_datastore_value_names_where_it_came_from() {
        let file = "datastore:\n  etcdEndpoints: 10.0.0.9:2379\n";
        let err = resolve(&RunArgs::default(), &[], Some(file)).unwrap_err();
        assert_eq!(err.origin, "/etc/felix.yaml");
        assert_eq!(err.field, "datastore.etcdEndpoints");
        let err = resolve(&RunArgs::default(), &[("DATASTORE_TYPE", "etcdv3")], None).unwrap_err();
        assert_eq!(err.field, "ETCD_ENDPOINTS");
        let flags = RunArgs {
            datastore_type: Some("kubernetes".into()),
            ..RunArgs::default()
        };
        let err = resolve(&flags, &[], None).unwrap_err();
        assert_eq!(
            (err.origin.as_str(), err.field.as_str()),
            ("flag", "--datastore-type")
        );
    }

    #[test]
    fn an_unknown_file_field_is_refused_by_name() {
        let err = resolve(&RunArgs::default(), &[], Some("nodename: x\n")).unwrap_err();
        assert!(err.to_string().contains("nodename"), "{err}");
        let err = resolve(&RunArgs::default(), &[], Some("datastore:\n  kind: x\n")).unwrap_err();
        assert!(err.to_string().contains("kind"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field_that_carried_them() {
        // (environment, file, the field the error names)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str);
        let cases: [Case<'_>; 6] = [
            (&[("IP", "10.0.0.300")], None, "IP"),
            (&[("IP", "fd00::1/64")], None, "IP"),
            (&[("AS", "0")], None, "AS"),
            (
                &[("CALICO_NETWORKING_BACKEND", "gobgp")],
                None,
                "CALICO_NETWORKING_BACKEND",
            ),
            (&[], Some("metricsAddr: localhost\n"), "metricsAddr"),
            (&[], Some("asNumber: [1]\n"), "asNumber"),
        ];
        for (env, file, field) in cases {
            let err = resolve(&RunArgs::default(), env, file).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        let flags = RunArgs {
            health_addr: Some("9099".into()),
            ..RunArgs::default()
        };
        assert_eq!(
            resolve(&flags, &[], None).unwrap_err().field,
            "--health-addr"
        );
    }

    #[test]
    fn calicos_host_and_port_variables_fill_in_the_default_address() {
        let env = [
            ("FELIX_PROMETHEUSMETRICSPORT", "9191"),
            ("FELIX_HEALTHHOST", "0.0.0.0"),
        ];
        let s = resolve(&RunArgs::default(), &env, Some("healthAddr: 127.0.0.2:1\n")).unwrap();
        assert_eq!(s.metrics_addr, "127.0.0.1:9191".parse().unwrap());
        assert_eq!(s.health_addr, "0.0.0.0:9099".parse().unwrap());
        let env = [
            ("FELIX_METRICSADDR", "127.0.0.3:1"),
            ("FELIX_PROMETHEUSMETRICSPORT", "x"),
        ];
        let s = resolve(&RunArgs::default(), &env, None).unwrap();
        assert_eq!(s.metrics_addr, "127.0.0.3:1".parse().unwrap());
        let err = resolve(&RunArgs::default(), &[("FELIX_HEALTHPORT", "99999")], None).unwrap_err();
        assert_eq!(err.field, "FELIX_HEALTHPORT");
    }

    #[test]
    fn as_numbers_are_read_plain_asdot_and_as_yaml_numbers() {
        assert_eq!(parse_asn("65000.1"), Ok(Some((65000 << 16) | 1)));
        let s = resolve(&RunArgs::default(), &[], Some("asNumber: 64513\n")).unwrap();
        assert_eq!(s.as_number, Some(64513));
    }

    #[test]
    fn a_bare_address_is_a_host_prefix_and_none_disables_the_family() {
        let s = resolve(
            &RunArgs::default(),
            &[("IP", "10.1.2.3"), ("IP6", "none")],
            None,
        )
        .unwrap();
        assert_eq!(s.ip, IpSetting::Address("10.1.2.3/32".parse().unwrap()));
        assert_eq!(s.ip6, IpSetting::None);
    }

    #[test]
    fn no_node_name_and_no_host_name_is_an_error_naming_nodename() {
        let err =
            Settings::resolve(&RunArgs::default(), &|_| None, None, &String::new).unwrap_err();
        assert_eq!(err.field, "NODENAME");
    }

    /// `packaging/deb/felix.yaml` with its commented-out settings
    /// (`#key: value`) made active.
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|line| {
                let body = line.trim_start();
                let indent = &line[..line.len() - body.len()];
                match body.strip_prefix('#') {
                    Some(setting)
                        if setting.split_once(':').is_some_and(|(key, _)| {
                            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric())
                        }) =>
                    {
                        format!("{indent}{setting}\n")
                    }
                    _ => format!("{line}\n"),
                }
            })
            .collect()
    }

    #[test]
    fn the_packaged_settings_file_parses_and_changes_only_the_nodename_file() {
        let text = include_str!("../../packaging/deb/felix.yaml");
        let defaults = resolve(&RunArgs::default(), &[], None).unwrap();
        assert_eq!(
            resolve(&RunArgs::default(), &[], Some(text)).unwrap(),
            Settings {
                nodename_file: Some("/var/lib/calico/nodename".into()),
                ..defaults
            }
        );
        // Its commented-out examples are valid settings too.
        let all = uncommented(text);
        let s = resolve(&RunArgs::default(), &[], Some(&all)).unwrap();
        assert_eq!(s.node_name, "host-1");
        assert_eq!(s.as_number, Some(64513));
        let etcd = all.replace("type: sqlite", "type: etcdv3");
        let s = resolve(&RunArgs::default(), &[], Some(&etcd)).unwrap();
        let DatastoreConfig::Etcd(etcd) = &s.datastore else {
            panic!("{:?}", s.datastore)
        };
        assert_eq!(etcd.endpoints, ["https://10.0.0.1:2379"]);
        assert!(etcd.ca_cert_file.is_some() && etcd.cert_file.is_some() && etcd.key_file.is_some());
        assert_eq!(etcd.username.as_deref(), Some("felix"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = resolve(&RunArgs::default(), &[("NODENAME", "  ")], Some("")).unwrap();
        assert_eq!(s.node_name, "host-a");
    }
}
