//! Test helper for the conformance suite's multi-process cases: runs
//! `datastore::conformance::worker` against the store named by the
//! environment (`DATASTORE_TYPE`, `DATASTORE_PATH`, `ETCD_*`).
//!
//! Usage: `datastore-worker increment <key> <times>` |
//! `datastore-worker put-now <key> <times> <interval-ms>`

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match datastore::conformance::worker::main(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("datastore-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
