//! The conformance suite (`datastore::conformance`) on the etcd backend:
//! each case on an etcd of its own (a fresh revision history), started on
//! free loopback ports with a temporary data directory and killed when the
//! case ends.

use datastore::DatastoreConfig;
use datastore::testing::EtcdServer;

fn fresh_store() -> (EtcdServer, DatastoreConfig) {
    let etcd = EtcdServer::start().unwrap_or_else(|e| panic!("starting etcd: {e}"));
    let cfg = etcd.datastore_config();
    (etcd, cfg)
}

datastore::conformance_tests!(
    fresh_store: fresh_store,
    worker: env!("CARGO_BIN_EXE_datastore-worker"),
);
