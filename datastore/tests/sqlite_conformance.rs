//! The conformance suite (`datastore::conformance`) on the SQLite backend:
//! each case on a fresh file in a temporary directory.

use datastore::DatastoreConfig;

fn fresh_store() -> (tempfile::TempDir, DatastoreConfig) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cfg = DatastoreConfig::Sqlite {
        path: dir.path().join("calico.db"),
    };
    (dir, cfg)
}

datastore::conformance_tests!(
    fresh_store: fresh_store,
    worker: env!("CARGO_BIN_EXE_datastore-worker"),
);
