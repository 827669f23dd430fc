//! SIGTERM stops the daemon's loop and leaves the dataplane as it is: no
//! driver is called on the way out. Alone in its test binary, because it
//! signals its own process (tokio's handler is installed first, so the
//! signal does not kill it).

mod common;

use std::sync::{Arc, Mutex};

use felix::daemon::{self, DaemonConfig};
use felix::metrics::Metrics;
use felix::state::{Calculated, Desired, Driver, DriverError, HostSettings, Snapshot, Stage};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Records the number of workloads each apply saw.
struct Recorder(Arc<Mutex<Vec<usize>>>);

#[async_trait::async_trait]
impl Driver for Recorder {
    fn name(&self) -> &'static str {
        "routes"
    }
    fn stage(&self) -> Stage {
        Stage::Kernel
    }
    async fn apply(&mut self, desired: &Desired) -> Result<(), DriverError> {
        self.0.lock().unwrap().push(desired.workloads.len());
        Ok(())
    }
}

fn calculate(_: &Snapshot, _: &HostSettings) -> Calculated {
    Calculated::default()
}

#[tokio::test]
async fn sigterm_stops_the_loop_without_touching_the_dataplane() {
    // Installs tokio's SIGTERM handler for the process before anything
    // could deliver the signal.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("listening for SIGTERM");
    let (kv, _keep) = common::sqlite();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let metrics = Arc::new(Metrics::new());
    let host = HostSettings {
        node: "n1".into(),
        bgp_enabled: false,
        flow_logs: None,
    };
    let daemon = tokio::spawn(daemon::run(
        DaemonConfig::new(host, None),
        kv,
        calculate,
        vec![Box::new(Recorder(applied.clone()))],
        metrics.clone(),
        daemon::termination(),
    ));
    common::until("the first apply", || metrics.ready()).await;
    kill(Pid::this(), Signal::SIGTERM).unwrap();
    daemon.await.unwrap().unwrap();
    drop(term);
    assert_eq!(
        *applied.lock().unwrap(),
        [0],
        "one apply, none on the way out"
    );
    assert!(!metrics.live());
}
