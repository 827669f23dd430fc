//! Test helper for the IPAM suite's multi-process cases: runs
//! `datastore::ipam::suite::worker` against the store named by the
//! environment (`DATASTORE_TYPE`, `DATASTORE_PATH`, `ETCD_*`).
//!
//! Usage: `ipam-worker allocate <host> <handle-prefix> <tasks> <per-task>`

use std::process::ExitCode;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match datastore::ipam::suite::worker::main(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipam-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
