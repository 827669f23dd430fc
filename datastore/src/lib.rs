//! The datastore: a revisioned key-value store with watch and etcd v3
//! semantics, its embedded SQLite backend, typed access to `projectcalico.org/v3`
//! resources under Calico's etcdv3 key layout, and datastore configuration.
//! IPAM (`/calico/ipam/v2/...`) builds on the same trait.
//!
//! # Layout
//!
//! - [`kv`]: the [`KvStore`] trait (get, list, If/Then/Else transactions,
//!   watch from a revision, compaction) and its value types; `create`,
//!   `update`, `put` and `delete` are built on `txn` once for every backend.
//! - [`sqlite`]: [`SqliteStore`], one SQLite file (WAL) shared by several
//!   processes; an event log table serves watches from old revisions and a
//!   thread woken by inotify on the WAL carries other processes' commits to
//!   watchers.
//! - [`etcd`]: [`EtcdStore`], the same trait on an etcd v3 cluster (several
//!   endpoints, TLS, user and password); watches survive etcd restarts.
//! - [`resources`]: [`ResourceStore`], typed `projectcalico.org/v3`
//!   resources under Calico's etcdv3 keys, `resourceVersion` = `mod_revision`;
//!   batch writes in one transaction that name every resource refused, and
//!   [`Change`]s (applies and deletes) committed together or not at all.
//! - [`config`]: [`DatastoreConfig`] from the environment or a
//!   `CalicoAPIConfig` file, and [`connect`].
//! - `conformance` (feature `testing`): the backend conformance suite,
//!   written once against the trait and run by each backend's tests.
//! - [`error`]: the crate's [`Error`].
//! - [`ipam`]: Calico-style IP address management (blocks affine to hosts,
//!   handles, reservations) on any [`KvStore`], under `/calico/ipam/v2/`.
//! - [`lease`]: a leader lease under `/calico/leases/`, Kubernetes-style
//!   (renewed by its holder, taken over once it stood still too long).
//! - [`migrate`]: moving a whole store to another (export, import, the
//!   migration lock), in Calico's `datastore migrate` file format.
//! - `testing` (feature `testing`): a real etcd server for tests, on free
//!   loopback ports with a temporary data directory, optionally with TLS.

pub mod config;
#[cfg(feature = "testing")]
pub mod conformance;
pub mod error;
pub mod etcd;
pub mod ipam;
pub mod kv;
pub mod lease;
pub mod migrate;
pub mod resources;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{DatastoreConfig, EtcdConfig, connect, settings};
pub use error::{Error, Result};
pub use etcd::EtcdStore;
pub use kv::{
    Check, Compare, KeyRange, KeyValue, KvStore, Op, OpResult, Revision, Txn, TxnResponse, Watch,
    WatchEvent,
};
pub use resources::{Batch, BatchWrite, Change, Refusal, ResourceStore};
pub use sqlite::{SqliteOptions, SqliteStore};
