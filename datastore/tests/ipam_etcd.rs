//! The multi-process IPAM cases (`datastore::ipam::suite`) on the etcd
//! backend, unchanged: each case on an etcd of its own, started on free
//! loopback ports with a temporary data directory and killed afterwards.

use std::path::Path;

use datastore::ipam::suite;
use datastore::testing::EtcdServer;

const WORKER: &str = env!("CARGO_BIN_EXE_ipam-worker");

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let etcd = EtcdServer::start().unwrap_or_else(|e| panic!("starting etcd: {e}"));
            suite::$case(&etcd.datastore_config(), Path::new(WORKER)).await;
        }
    )*};
}

cases!(
    concurrent_allocations_from_many_processes_never_collide,
    a_killed_allocator_leaves_only_owned_addresses,
);
