//! Moving a whole datastore to another (SQLite ↔ etcd), as Calico's
//! `calicoctl datastore migrate` does, IPAM state included:
//!
//! ```text
//! source: lock ─▶ export > FILE          target: import -f FILE ─▶ (felix moves) ─▶ unlock
//!   ClusterInformation "default"            refuses a target that holds anything;
//!   datastoreReady: false                   writes every key, or removes what it wrote;
//!                                           leaves the target locked
//! ```
//!
//! The lock is Calico's: `datastoreReady: false` on the `default`
//! ClusterInformation. While it holds, felix writes nothing to the store
//! and the CNI plugin refuses to add or delete workloads
//! ([`check_unlocked`]), so an export is a still picture. The file format
//! is in [`format`]; [`dump`] is every key and value, what a lossless move
//! keeps.

pub mod format;

use std::collections::BTreeMap;
use std::sync::Arc;

use api::resources::clusterinfo::CLUSTER_INFORMATION_NAME;
use api::{ClusterInformation, ClusterInformationSpec, Kind, ObjectMeta, Resource};

pub use format::{Export, FormatError, IpamExport, KvPair};

use crate::error::{Error, Result};
use crate::ipam::model::IPAM_PREFIX;
use crate::kv::{Compare, KeyValue, KvStore, Op, Txn};
use crate::lease::LEASES_PREFIX;
use crate::resources::{RESOURCES_PREFIX, ResourceStore};

/// Everything this project stores lives under this prefix.
pub const CALICO_PREFIX: &str = "/calico/";

/// The most keys one import transaction writes (etcd refuses more than
/// 128 operations in one by default).
const KEYS_PER_TXN: usize = 100;
/// The most value bytes one import transaction writes (etcd's default
/// request limit is 1.5 MiB).
const BYTES_PER_TXN: usize = 1 << 20;

/// What a migration step can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file is not an export, or part of it does not validate.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Export needs the source locked, so nothing changes meanwhile.
    #[error(
        "the datastore is not locked: run `calicoctl datastore migrate lock` first, so that \
         nothing changes while it is exported"
    )]
    NotLocked,
    /// Import writes only into an empty store.
    #[error(
        "the target datastore is not empty ({count} key(s) under {CALICO_PREFIX}, the first \
         {first}); import only into an empty datastore"
    )]
    NotEmpty { count: usize, first: String },
    /// A stored key or value that an export cannot carry.
    #[error("cannot export {key}: {message}")]
    Unexportable { key: String, message: String },
    /// Writing the target failed; what the import had written is removed.
    #[error("importing failed, every key it wrote was removed again: {0}")]
    RolledBack(Error),
    #[error(transparent)]
    Store(#[from] Error),
}

/// The `default` ClusterInformation, if the store has one.
pub async fn cluster_info(store: &ResourceStore) -> Result<Option<ClusterInformation>> {
    match store
        .get(Kind::ClusterInformation, None, CLUSTER_INFORMATION_NAME)
        .await
    {
        Ok(Resource::ClusterInformation(ci)) => Ok(Some(ci)),
        Ok(_) => Ok(None),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`Error::Locked`] while the store is locked for a migration; what
/// every writer of felix and the CNI plugin asks before writing.
pub async fn check_unlocked(kv: &Arc<dyn KvStore>) -> Result<()> {
    match cluster_info(&ResourceStore::new(kv.clone())).await? {
        Some(ci) if !ci.spec.ready() => Err(Error::Locked),
        _ => Ok(()),
    }
}

/// Locks (`ready` false) or unlocks the store, creating the
/// ClusterInformation (a fresh cluster GUID) if there is none. Returns
/// it as written.
pub async fn set_ready(store: &ResourceStore, ready: bool) -> Result<ClusterInformation> {
    for _ in 0..5 {
        let existing = cluster_info(store).await?;
        let mut ci = match &existing {
            Some(ci) => ci.clone(),
            None => fresh_cluster_info()?,
        };
        ci.spec.datastore_ready = Some(ready);
        let written = match existing {
            Some(_) => store.replace(Resource::ClusterInformation(ci)).await,
            None => store.create(Resource::ClusterInformation(ci)).await,
        };
        match written {
            Ok(Resource::ClusterInformation(ci)) => return Ok(ci),
            Ok(other) => unreachable!("wrote a ClusterInformation, got {}", other.kind()),
            Err(Error::Conflict { .. } | Error::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Backend(
        "the ClusterInformation kept changing under the lock; try again".into(),
    ))
}

/// A new ClusterInformation as Calico's initialisation writes it.
fn fresh_cluster_info() -> Result<ClusterInformation> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| Error::Backend(format!("reading /dev/urandom for a cluster GUID: {e}")))?;
    Ok(ClusterInformation::new(
        ObjectMeta::named(CLUSTER_INFORMATION_NAME),
        ClusterInformationSpec {
            cluster_guid: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            calico_version: concat!("v", env!("CARGO_PKG_VERSION")).into(),
            datastore_ready: Some(true),
            variant: "Calico".into(),
            ..ClusterInformationSpec::default()
        },
    ))
}

/// Every key under [`CALICO_PREFIX`] with its value as JSON, leases aside:
/// what a lossless move keeps (revisions aside too, which each store
/// numbers itself).
pub async fn dump(kv: &Arc<dyn KvStore>) -> Result<BTreeMap<String, serde_json::Value>> {
    kvs_to_move(kv)
        .await?
        .into_iter()
        .map(|kv| {
            let value = serde_json::from_slice(&kv.value).map_err(|e| Error::InvalidValue {
                key: kv.key.clone(),
                message: format!("not JSON: {e}"),
            })?;
            Ok((kv.key, value))
        })
        .collect()
}

/// Every key a move carries, read at one revision: all under
/// [`CALICO_PREFIX`] but the leases (who leads is not data; the target's
/// own candidates elect theirs).
async fn kvs_to_move(kv: &Arc<dyn KvStore>) -> Result<Vec<KeyValue>> {
    let (mut kvs, _) = kv.list(CALICO_PREFIX).await?;
    kvs.retain(|e| !e.key.starts_with(LEASES_PREFIX));
    Ok(kvs)
}

/// Reads the whole (locked) store at one revision into an export.
pub async fn export(kv: &Arc<dyn KvStore>) -> Result<Export, MigrateError> {
    let kvs = kvs_to_move(kv).await?;
    let mut export = Export {
        resources: Vec::new(),
        cluster_info: None,
        ipam: IpamExport::default(),
    };
    for entry in kvs {
        let unexportable = |message: String| MigrateError::Unexportable {
            key: entry.key.clone(),
            message,
        };
        let value: serde_json::Value = serde_json::from_slice(&entry.value)
            .map_err(|e| unexportable(format!("not JSON: {e}")))?;
        if entry.key.starts_with(RESOURCES_PREFIX) {
            match Resource::from_value(value).map_err(|e| unexportable(e.to_string()))? {
                Resource::ClusterInformation(ci) => export.cluster_info = Some(ci),
                r => export.resources.push(r),
            }
        } else if entry.key.starts_with(IPAM_PREFIX) {
            let pair = KvPair {
                key: entry.key.clone(),
                value,
                ttl: 0,
            };
            export.ipam.add(pair).map_err(unexportable)?;
        } else {
            return Err(unexportable("not a resource nor an IPAM key".into()));
        }
    }
    match &export.cluster_info {
        Some(ci) if !ci.spec.ready() => Ok(export),
        _ => Err(MigrateError::NotLocked),
    }
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub resources: usize,
    pub ipam: usize,
}

/// Writes an export into an empty store, which it leaves locked, with the
/// source's cluster GUID. Every key is created (none may exist), in
/// transactions of at most [`KEYS_PER_TXN`] keys; if one fails, the keys
/// of those before are deleted again and the ClusterInformation is put
/// back as it was: the target is left as it was found.
pub async fn import(kv: &Arc<dyn KvStore>, export: &Export) -> Result<Imported, MigrateError> {
    let existing = kvs_to_move(kv).await?;
    let ci_key = ResourceStore::key(Kind::ClusterInformation, None, CLUSTER_INFORMATION_NAME);
    let others: Vec<&KeyValue> = existing.iter().filter(|e| e.key != ci_key).collect();
    if let Some(first) = others.first() {
        return Err(MigrateError::NotEmpty {
            count: others.len(),
            first: first.key.clone(),
        });
    }
    let store = ResourceStore::new(kv.clone());
    let before = existing.iter().find(|e| e.key == ci_key).cloned();
    let mut ci = match &export.cluster_info {
        Some(ci) => ci.clone(),
        None => fresh_cluster_info()?,
    };
    ci.spec.datastore_ready = Some(false);
    ci.metadata.resource_version = before.as_ref().map(|b| b.mod_revision.to_string());
    match before {
        Some(_) => store.replace(Resource::ClusterInformation(ci)).await?,
        None => store.create(Resource::ClusterInformation(ci)).await?,
    };
    let mut writes = Vec::new();
    for r in &export.resources {
        writes.push(crate::resources::encode(r.clone())?);
    }
    let resources = writes.len();
    for pair in export.ipam.pairs() {
        writes.push((
            pair.key.clone(),
            serde_json::to_vec(&pair.value).expect("JSON"),
        ));
    }
    let mut written: Vec<String> = Vec::new();
    for chunk in chunks(&writes) {
        let txn = Txn::new()
            .when(chunk.iter().map(|(k, _)| Compare::absent(k)))
            .and_then(chunk.iter().map(|(k, v)| Op::put(k, v.clone())));
        let failure = match kv.txn(txn).await {
            Ok(resp) if resp.succeeded => None,
            Ok(_) => Some(Error::AlreadyExists {
                key: format!("one of {}..{}", chunk[0].0, chunk[chunk.len() - 1].0),
            }),
            Err(e) => Some(e),
        };
        match failure {
            None => written.extend(chunk.iter().map(|(k, _)| k.clone())),
            Some(e) => {
                roll_back(kv, &written, &ci_key, before).await;
                return Err(MigrateError::RolledBack(e));
            }
        }
    }
    Ok(Imported {
        resources,
        ipam: writes.len() - resources,
    })
}

/// Splits writes into transactions etcd accepts.
fn chunks(writes: &[(String, Vec<u8>)]) -> Vec<&[(String, Vec<u8>)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (k, v)) in writes.iter().enumerate() {
        let size = k.len() + v.len();
        if i > start && (i - start == KEYS_PER_TXN || bytes + size > BYTES_PER_TXN) {
            out.push(&writes[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < writes.len() {
        out.push(&writes[start..]);
    }
    out
}

/// Deletes what a failed import wrote and puts the ClusterInformation
/// back as it was (absent, or its old value), so the target is as before.
async fn roll_back(
    kv: &Arc<dyn KvStore>,
    written: &[String],
    ci_key: &str,
    before: Option<KeyValue>,
) {
    let restore = match before {
        Some(b) => Op::put(ci_key, b.value),
        None => Op::delete(ci_key),
    };
    let batches = written
        .chunks(KEYS_PER_TXN)
        .map(|c| c.iter().map(Op::delete).collect());
    for ops in batches.chain([vec![restore]]) {
        let ops: Vec<Op> = ops;
        let first = ops[0].key().to_string();
        if let Err(e) = kv.txn(Txn::new().and_then(ops)).await {
            tracing::error!(error = %e, first, "undoing a failed import");
        }
    }
}
