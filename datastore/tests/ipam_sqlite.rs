//! The multi-process IPAM cases (`datastore::ipam::suite`) on the SQLite
//! backend, each on a fresh file in a temporary directory.

use std::path::Path;

use datastore::DatastoreConfig;
use datastore::ipam::suite;

const WORKER: &str = env!("CARGO_BIN_EXE_ipam-worker");

fn fresh_store() -> (tempfile::TempDir, DatastoreConfig) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cfg = DatastoreConfig::Sqlite {
        path: dir.path().join("calico.db"),
    };
    (dir, cfg)
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (_dir, cfg) = fresh_store();
            suite::$case(&cfg, Path::new(WORKER)).await;
        }
    )*};
}

cases!(
    concurrent_allocations_from_many_processes_never_collide,
    a_killed_allocator_leaves_only_owned_addresses,
);
