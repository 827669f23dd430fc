//! Datastore selection, Calico-style: `--config FILE`, else
//! /etc/calico/calicoctl.cfg when it exists, else the environment
//! (`DATASTORE_TYPE`, `DATASTORE_PATH`, `ETCD_ENDPOINTS`, ...), whose default
//! is etcd when `ETCD_ENDPOINTS` is set and the embedded SQLite store
//! otherwise.

use std::path::Path;

use anyhow::{Context, Result};
use datastore::config::DatastoreConfig;
use datastore::resources::ResourceStore;

use crate::cli::DatastoreArgs;

/// The configuration file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "/etc/calico/calicoctl.cfg";

/// Works out which datastore to use.
pub fn select(args: &DatastoreArgs) -> Result<DatastoreConfig> {
    let default = Path::new(DEFAULT_CONFIG);
    let file = args
        .config
        .as_deref()
        .or_else(|| default.exists().then_some(default));
    match file {
        Some(path) => {
            DatastoreConfig::from_file(path).with_context(|| format!("reading {}", path.display()))
        }
        None => DatastoreConfig::from_env()
            .context("reading the datastore settings from the environment"),
    }
}

/// One line naming the datastore, for `version`.
pub fn describe(config: &DatastoreConfig) -> String {
    match config {
        DatastoreConfig::Sqlite { path } => format!("sqlite ({})", path.display()),
        DatastoreConfig::Etcd(etcd) => format!("etcdv3 ({})", etcd.endpoints.join(",")),
    }
}

/// Connects to the selected datastore.
pub async fn open(args: &DatastoreArgs) -> Result<ResourceStore> {
    let config = select(args)?;
    let kv = datastore::connect(&config)
        .await
        .with_context(|| format!("connecting to the datastore: {}", describe(&config)))?;
    Ok(ResourceStore::new(kv))
}
