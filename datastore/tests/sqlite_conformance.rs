//! The conformance suite (`datastore::conformance`) on the SQLite backend:
//! each case on a fresh file in a temporary directory.

use std::path::Path;

use datastore::DatastoreConfig;
use datastore::conformance;

const WORKER: &str = env!("CARGO_BIN_EXE_datastore-worker");

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
            conformance::$case(&cfg).await;
        }
    )*};
}

macro_rules! process_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (_dir, cfg) = fresh_store();
            conformance::$case(&cfg, Path::new(WORKER)).await;
        }
    )*};
}

cases!(
    create_fails_if_the_key_exists,
    update_with_a_stale_revision_conflicts,
    delete_with_and_without_cas,
    list_returns_sorted_keys_under_the_prefix_only,
    revisions_increase_by_one_per_write_and_are_shared_within_a_txn,
    failed_txn_compare_changes_nothing,
    txn_writing_a_key_twice_is_refused,
    recreated_key_restarts_its_create_revision_and_version,
    watch_delivers_many_writes_in_revision_order,
    watch_from_an_old_revision_replays_history,
    watch_sees_deletes_with_the_previous_value,
    watch_behind_compaction_must_resync,
    dropping_a_watch_stops_it,
    concurrent_cas_increments_from_two_handles_are_all_counted,
);

process_cases!(
    concurrent_cas_increments_from_two_processes_are_all_counted,
    a_write_from_another_process_reaches_a_watcher_quickly,
);
