//! Which datastore to use and how to reach it, read from the environment or
//! from Calico's `CalicoAPIConfig` file (`/etc/calico/calicoctl.cfg`), and
//! [`connect`], which opens the configured backend.
//!
//! Environment: `DATASTORE_TYPE` (`sqlite` or `etcdv3`; unset, it is
//! `etcdv3` when `ETCD_ENDPOINTS` is set and `sqlite` otherwise),
//! `DATASTORE_PATH`, `ETCD_ENDPOINTS` (comma list), `ETCD_CA_CERT_FILE`,
//! `ETCD_CERT_FILE`, `ETCD_KEY_FILE`, `ETCD_USERNAME`, `ETCD_PASSWORD`.
//! The file carries the same settings under `spec` (`datastoreType`,
//! `datastorePath`, `etcdEndpoints`, `etcdCACertFile`, ...).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::etcd::EtcdStore;
use crate::kv::KvStore;
use crate::sqlite::SqliteStore;

/// Where the embedded store lives unless configured otherwise.
pub const DEFAULT_SQLITE_PATH: &str = "/var/lib/calico/calico.db";

/// The datastore to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreConfig {
    /// The embedded SQLite file shared by the processes of one host.
    Sqlite { path: PathBuf },
    /// An etcd v3 cluster.
    Etcd(EtcdConfig),
}

/// How to reach an etcd v3 cluster.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port`, at least one.
    pub endpoints: Vec<String>,
    pub ca_cert_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("ca_cert_file", &self.ca_cert_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for DatastoreConfig {
    fn default() -> Self {
        DatastoreConfig::Sqlite {
            path: DEFAULT_SQLITE_PATH.into(),
        }
    }
}

/// The settings, by name in the environment and in the file.
#[derive(Debug, Clone, Copy)]
enum Setting {
    DatastoreType,
    DatastorePath,
    EtcdEndpoints,
    EtcdCaCertFile,
    EtcdCertFile,
    EtcdKeyFile,
    EtcdUsername,
    EtcdPassword,
}

impl Setting {
    const ALL: [Setting; 8] = [
        Setting::DatastoreType,
        Setting::DatastorePath,
        Setting::EtcdEndpoints,
        Setting::EtcdCaCertFile,
        Setting::EtcdCertFile,
        Setting::EtcdKeyFile,
        Setting::EtcdUsername,
        Setting::EtcdPassword,
    ];

    fn env(self) -> &'static str {
        match self {
            Setting::DatastoreType => "DATASTORE_TYPE",
            Setting::DatastorePath => "DATASTORE_PATH",
            Setting::EtcdEndpoints => "ETCD_ENDPOINTS",
            Setting::EtcdCaCertFile => "ETCD_CA_CERT_FILE",
            Setting::EtcdCertFile => "ETCD_CERT_FILE",
            Setting::EtcdKeyFile => "ETCD_KEY_FILE",
            Setting::EtcdUsername => "ETCD_USERNAME",
            Setting::EtcdPassword => "ETCD_PASSWORD",
        }
    }

    /// Its name in a CalicoAPIConfig's spec.
    fn field(self) -> &'static str {
        match self {
            Setting::DatastoreType => "datastoreType",
            Setting::DatastorePath => "datastorePath",
            Setting::EtcdEndpoints => "etcdEndpoints",
            Setting::EtcdCaCertFile => "etcdCACertFile",
            Setting::EtcdCertFile => "etcdCertFile",
            Setting::EtcdKeyFile => "etcdKeyFile",
            Setting::EtcdUsername => "etcdUsername",
            Setting::EtcdPassword => "etcdPassword",
        }
    }
}

/// Every datastore setting as (its environment variable, its name in a
/// CalicoAPIConfig's spec), as [`DatastoreConfig::from_env_lookup`] reads
/// them: what other configuration files (felix's) map onto.
pub fn settings() -> impl Iterator<Item = (&'static str, &'static str)> {
    Setting::ALL.into_iter().map(|s| (s.env(), s.field()))
}

/// Where settings come from, to name them in errors.
enum Origin<'a> {
    Env,
    File(&'a Path),
}

impl Origin<'_> {
    fn name(&self) -> String {
        match self {
            Origin::Env => "environment".into(),
            Origin::File(p) => p.display().to_string(),
        }
    }
    fn field(&self, s: Setting) -> String {
        match self {
            Origin::Env => s.env().into(),
            Origin::File(_) => format!("spec.{}", s.field()),
        }
    }
    fn error(&self, s: Setting, message: impl Into<String>) -> Error {
        Error::Config {
            origin: self.name(),
            field: self.field(s),
            message: message.into(),
        }
    }
}

/// `CalicoAPIConfig` as Calico writes it (only the datastores this build knows).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiConfigFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "accepted as Calico writes it; carries nothing we use"
    )]
    metadata: Option<serde_yaml::Value>,
    #[serde(default)]
    spec: ApiConfigSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiConfigSpec {
    datastore_type: Option<String>,
    datastore_path: Option<String>,
    etcd_endpoints: Option<String>,
    #[serde(rename = "etcdCACertFile")]
    etcd_ca_cert_file: Option<String>,
    etcd_cert_file: Option<String>,
    etcd_key_file: Option<String>,
    etcd_username: Option<String>,
    etcd_password: Option<String>,
}

impl ApiConfigSpec {
    fn get(&self, s: Setting) -> Option<String> {
        match s {
            Setting::DatastoreType => &self.datastore_type,
            Setting::DatastorePath => &self.datastore_path,
            Setting::EtcdEndpoints => &self.etcd_endpoints,
            Setting::EtcdCaCertFile => &self.etcd_ca_cert_file,
            Setting::EtcdCertFile => &self.etcd_cert_file,
            Setting::EtcdKeyFile => &self.etcd_key_file,
            Setting::EtcdUsername => &self.etcd_username,
            Setting::EtcdPassword => &self.etcd_password,
        }
        .clone()
    }
}

impl DatastoreConfig {
    /// Reads the process environment (see the module docs).
    pub fn from_env() -> Result<Self> {
        Self::from_env_lookup(|name| std::env::var(name).ok())
    }

    /// As [`DatastoreConfig::from_env`], with `lookup` standing in for the
    /// environment.
    pub fn from_env_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        build(&Origin::Env, |s| lookup(s.env()))
    }

    /// Reads a `CalicoAPIConfig` YAML file. Unknown fields are rejected with
    /// the field named.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            origin: path.display().to_string(),
            field: "file".into(),
            message: e.to_string(),
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses `CalicoAPIConfig` text; `path` only names it in errors.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self> {
        let origin = Origin::File(path);
        let file: ApiConfigFile = serde_yaml::from_str(text).map_err(|e| Error::Config {
            origin: origin.name(),
            field: e.location().map_or("document".into(), |l| {
                format!("line {} column {}", l.line(), l.column())
            }),
            message: e.to_string(),
        })?;
        let bad = |field: &str, message: String| Error::Config {
            origin: origin.name(),
            field: field.into(),
            message,
        };
        if file.api_version != "projectcalico.org/v3" {
            return Err(bad(
                "apiVersion",
                format!("expected projectcalico.org/v3, got {:?}", file.api_version),
            ));
        }
        if file.kind != "CalicoAPIConfig" {
            return Err(bad(
                "kind",
                format!("expected CalicoAPIConfig, got {:?}", file.kind),
            ));
        }
        build(&origin, |s| file.spec.get(s))
    }

    /// The environment under which [`DatastoreConfig::from_env`] yields this
    /// configuration again (to hand a datastore to a child process).
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let path_str = |p: &Path| p.display().to_string();
        match self {
            DatastoreConfig::Sqlite { path } => vec![
                (Setting::DatastoreType.env(), "sqlite".into()),
                (Setting::DatastorePath.env(), path_str(path)),
            ],
            DatastoreConfig::Etcd(etcd) => {
                let mut env = vec![
                    (Setting::DatastoreType.env(), "etcdv3".into()),
                    (Setting::EtcdEndpoints.env(), etcd.endpoints.join(",")),
                ];
                let optional = [
                    (
                        Setting::EtcdCaCertFile,
                        etcd.ca_cert_file.as_deref().map(path_str),
                    ),
                    (
                        Setting::EtcdCertFile,
                        etcd.cert_file.as_deref().map(path_str),
                    ),
                    (Setting::EtcdKeyFile, etcd.key_file.as_deref().map(path_str)),
                    (Setting::EtcdUsername, etcd.username.clone()),
                    (Setting::EtcdPassword, etcd.password.clone()),
                ];
                env.extend(
                    optional
                        .into_iter()
                        .filter_map(|(s, v)| v.map(|v| (s.env(), v))),
                );
                env
            }
        }
    }
}

/// Builds the configuration from settings; empty values count as unset.
fn build(origin: &Origin<'_>, get: impl Fn(Setting) -> Option<String>) -> Result<DatastoreConfig> {
    let get = |s: Setting| {
        get(s)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    // Unset: etcd when its endpoints are given (as a Calico user would
    // expect), else the embedded store.
    let kind = get(Setting::DatastoreType).unwrap_or_else(|| {
        if get(Setting::EtcdEndpoints).is_some() {
            "etcdv3".into()
        } else {
            "sqlite".into()
        }
    });
    match kind.as_str() {
        "sqlite" => {
            let etcd_only = Setting::ALL[2..].iter().find(|s| get(**s).is_some());
            if let Some(s) = etcd_only {
                tracing::debug!(
                    setting = origin.field(*s),
                    "ignored: datastore type is sqlite"
                );
            }
            Ok(DatastoreConfig::Sqlite {
                path: get(Setting::DatastorePath)
                    .unwrap_or_else(|| DEFAULT_SQLITE_PATH.into())
                    .into(),
            })
        }
        "etcdv3" => {
            let raw = get(Setting::EtcdEndpoints).ok_or_else(|| {
                origin.error(
                    Setting::EtcdEndpoints,
                    "required when the datastore type is etcdv3",
                )
            })?;
            let endpoints = raw
                .split(',')
                .map(str::trim)
                .map(|e| {
                    if e.starts_with("http://") || e.starts_with("https://") {
                        Ok(e.to_owned())
                    } else {
                        Err(origin.error(
                            Setting::EtcdEndpoints,
                            format!("endpoint {e:?} must start with http:// or https://"),
                        ))
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let cert_file = get(Setting::EtcdCertFile).map(PathBuf::from);
            let key_file = get(Setting::EtcdKeyFile).map(PathBuf::from);
            if cert_file.is_some() != key_file.is_some() {
                let missing = if cert_file.is_none() {
                    Setting::EtcdCertFile
                } else {
                    Setting::EtcdKeyFile
                };
                return Err(origin.error(
                    missing,
                    "a client certificate and its key must be given together",
                ));
            }
            Ok(DatastoreConfig::Etcd(EtcdConfig {
                endpoints,
                ca_cert_file: get(Setting::EtcdCaCertFile).map(PathBuf::from),
                cert_file,
                key_file,
                username: get(Setting::EtcdUsername),
                password: get(Setting::EtcdPassword),
            }))
        }
        other => Err(origin.error(
            Setting::DatastoreType,
            format!("unknown datastore type {other:?}; expected sqlite or etcdv3"),
        )),
    }
}

/// Opens the configured datastore.
pub async fn connect(cfg: &DatastoreConfig) -> Result<Arc<dyn KvStore>> {
    match cfg {
        DatastoreConfig::Sqlite { path } => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(path))
                .await
                .map_err(|e| Error::Backend(format!("opening the sqlite store: {e}")))??;
            Ok(Arc::new(store))
        }
        DatastoreConfig::Etcd(etcd) => Ok(Arc::new(EtcdStore::connect(etcd).await?)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from_vars(vars: &[(&str, &str)]) -> Result<DatastoreConfig> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DatastoreConfig::from_env_lookup(|k| vars.get(k).cloned())
    }

    fn field_of(err: Error) -> String {
        match err {
            Error::Config { field, .. } => field,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn empty_environment_means_sqlite_at_the_default_path() {
        assert_eq!(
            from_vars(&[]).unwrap(),
            DatastoreConfig::Sqlite {
                path: "/var/lib/calico/calico.db".into()
            }
        );
    }

    #[test]
    fn datastore_path_overrides_the_default() {
        assert_eq!(
            from_vars(&[("DATASTORE_PATH", "/tmp/x.db")]).unwrap(),
            DatastoreConfig::Sqlite {
                path: "/tmp/x.db".into()
            }
        );
    }

    #[test]
    fn etcd_settings_are_read_from_the_environment_and_round_trip() {
        let cfg = from_vars(&[
            ("DATASTORE_TYPE", "etcdv3"),
            (
                "ETCD_ENDPOINTS",
                "http://127.0.0.1:2379, https://127.0.0.2:2379",
            ),
            ("ETCD_CERT_FILE", "/c.pem"),
            ("ETCD_KEY_FILE", "/k.pem"),
            ("ETCD_USERNAME", "root"),
            ("ETCD_PASSWORD", "secret"),
        ])
        .unwrap();
        let DatastoreConfig::Etcd(etcd) = &cfg else {
            panic!("expected etcd, got {cfg:?}")
        };
        assert_eq!(
            etcd.endpoints,
            ["http://127.0.0.1:2379", "https://127.0.0.2:2379"]
        );
        assert_eq!(etcd.key_file.as_deref(), Some(Path::new("/k.pem")));
        assert!(!format!("{cfg:?}").contains("secret"));
        let env: Vec<(&str, String)> = cfg.to_env();
        let back = from_vars(
            &env.iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        );
        assert_eq!(back.unwrap(), cfg);
    }

    #[test]
    fn etcd_endpoints_without_a_type_mean_etcd() {
        let cfg = from_vars(&[("ETCD_ENDPOINTS", "http://127.0.0.1:2379")]).unwrap();
        let DatastoreConfig::Etcd(etcd) = cfg else {
            panic!("expected etcd, got {cfg:?}");
        };
        assert_eq!(etcd.endpoints, ["http://127.0.0.1:2379"]);
        let explicit = from_vars(&[
            ("DATASTORE_TYPE", "sqlite"),
            ("ETCD_ENDPOINTS", "http://127.0.0.1:2379"),
        ])
        .unwrap();
        assert!(
            matches!(explicit, DatastoreConfig::Sqlite { .. }),
            "{explicit:?}"
        );
    }

    #[test]
    fn etcd_without_endpoints_names_the_variable() {
        let err = from_vars(&[("DATASTORE_TYPE", "etcdv3")]).unwrap_err();
        assert_eq!(field_of(err), "ETCD_ENDPOINTS");
    }

    #[test]
    fn endpoint_without_scheme_is_refused() {
        let err = from_vars(&[
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_ENDPOINTS", "127.0.0.1:2379"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("127.0.0.1:2379"), "{err}");
    }

    #[test]
    fn certificate_without_key_names_the_missing_key() {
        let err = from_vars(&[
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_ENDPOINTS", "http://127.0.0.1:2379"),
            ("ETCD_CERT_FILE", "/c.pem"),
        ])
        .unwrap_err();
        assert_eq!(field_of(err), "ETCD_KEY_FILE");
    }

    #[test]
    fn unknown_datastore_type_is_refused() {
        let err = from_vars(&[("DATASTORE_TYPE", "kubernetes")]).unwrap_err();
        assert_eq!(field_of(err), "DATASTORE_TYPE");
    }

    const CALICOCTL_CFG: &str = "\
apiVersion: projectcalico.org/v3
kind: CalicoAPIConfig
metadata: {}
spec:
  datastoreType: etcdv3
  etcdEndpoints: http://127.0.0.1:2379,http://127.0.0.1:22379
  etcdCACertFile: /etc/calico/ca.pem
";

    #[test]
    fn calico_api_config_file_is_read() {
        let cfg = DatastoreConfig::from_yaml(CALICOCTL_CFG, Path::new("calicoctl.cfg")).unwrap();
        assert_eq!(
            cfg,
            DatastoreConfig::Etcd(EtcdConfig {
                endpoints: vec![
                    "http://127.0.0.1:2379".into(),
                    "http://127.0.0.1:22379".into()
                ],
                ca_cert_file: Some("/etc/calico/ca.pem".into()),
                ..EtcdConfig::default()
            })
        );
    }

    #[test]
    fn sqlite_config_file_with_a_path() {
        let text = "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  datastoreType: sqlite\n  datastorePath: /srv/c.db\n";
        assert_eq!(
            DatastoreConfig::from_yaml(text, Path::new("c.cfg")).unwrap(),
            DatastoreConfig::Sqlite {
                path: "/srv/c.db".into()
            }
        );
    }

    #[test]
    fn the_packaged_calicoctl_cfg_names_the_embedded_store_and_its_examples_parse() {
        let text = include_str!("../../packaging/deb/calicoctl.cfg");
        let path = Path::new("/etc/calico/calicoctl.cfg");
        assert_eq!(
            DatastoreConfig::from_yaml(text, path).unwrap(),
            DatastoreConfig::default()
        );
        // The commented-out etcd settings, made active, are what they say.
        let etcd: String = text
            .lines()
            .map(|l| l.replacen("  #etcd", "  etcd", 1) + "\n")
            .collect::<String>()
            .replace("datastoreType: sqlite", "datastoreType: etcdv3");
        let DatastoreConfig::Etcd(etcd) = DatastoreConfig::from_yaml(&etcd, path).unwrap() else {
            panic!("an etcd configuration")
        };
        assert_eq!(etcd.endpoints, ["https://10.0.0.1:2379"]);
        assert_eq!(etcd.key_file, Some("/etc/calico/etcd-key.pem".into()));
        assert_eq!(etcd.password.as_deref(), Some("secret"));
    }

    #[test]
    fn unknown_field_in_the_file_is_named() {
        let text = CALICOCTL_CFG.replace("etcdCACertFile", "etcdCaCertFile");
        let err = DatastoreConfig::from_yaml(&text, Path::new("c.cfg")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("etcdCaCertFile"), "{message}");
        assert!(message.contains("spec"), "{message}");
    }

    #[test]
    fn wrong_kind_in_the_file_is_named() {
        let text = CALICOCTL_CFG.replace("kind: CalicoAPIConfig", "kind: IPPool");
        let err = DatastoreConfig::from_yaml(&text, Path::new("c.cfg")).unwrap_err();
        assert_eq!(field_of(err), "kind");
    }

    #[test]
    fn file_errors_name_the_spec_field() {
        let text = CALICOCTL_CFG.replace("etcdv3", "kubernetes");
        let err = DatastoreConfig::from_yaml(&text, Path::new("c.cfg")).unwrap_err();
        assert_eq!(field_of(err), "spec.datastoreType");
    }
}
