//! The agent's main loop: [`run`].
//!
//! ```text
//! start ─▶ register Node (retried) ─▶ Syncer task ──changed──▶ loop:
//!                                                    calculate(snapshot, host) ─▶ Desired (new generation if it differs)
//!                                                    apply to each driver not yet at that generation, in order
//!                                                    (routes/links/vxlan, then policy, then bgp); a failed driver
//!                                                    waits out its backoff, the others go on
//!          SIGTERM / SIGINT (the `shutdown` future) ─▶ stop; the dataplane stays as it is
//! ```
//!
//! After each change the Node is registered again if the snapshot shows it
//! missing, changed, or without the VTEP a new VXLAN pool calls for
//! ([`node::needs_registration`]).
//!
//! Nothing is calculated before the first complete list of the datastore,
//! so a restart never applies an empty state over a working dataplane; on
//! shutdown nothing is removed. A problem (a skipped datastore entry, a
//! driver error) is logged at `warn` when it first appears and at `debug`
//! while it lasts; a driver's recovery is logged once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use datastore::KvStore;
use futures::FutureExt;
use policy::model::EndpointKind;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::node::{self, Registration};
use crate::state::{Calculate, Desired, Driver, HostSettings, Problem, ProblemKind};
use crate::syncer::{SyncState, Syncer};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub host: HostSettings,
    /// This host's Node as felix registers it; `None` skips registration.
    pub registration: Option<Registration>,
    /// First pause after a failure (a driver's apply, registering the Node),
    /// doubled per consecutive failure up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// The shortest gap between two calculations. A change after a quiet
    /// spell is calculated at once (a new container's endpoint waits for
    /// nothing); changes within `coalesce` of the last calculation wait for
    /// the rest of it and are calculated together, so a burst of datastore
    /// writes costs at most one calculation per `coalesce`.
    pub coalesce: Duration,
    /// How soon a driver with something [pending](Driver::pending) is
    /// applied again.
    pub recheck: Duration,
}

impl DaemonConfig {
    /// Defaults: backoff 250 ms to 30 s, at most one calculation per 5 ms,
    /// pending work rechecked every second.
    pub fn new(host: HostSettings, registration: Option<Registration>) -> Self {
        DaemonConfig {
            host,
            registration,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            coalesce: Duration::from_millis(5),
            recheck: Duration::from_secs(1),
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// One driver and where it stands.
struct TrackedDriver {
    driver: Box<dyn Driver>,
    /// The generation it last applied successfully.
    applied: Option<u64>,
    failures: u32,
    retry_at: Option<Instant>,
    /// Set while the driver reports something [pending](Driver::pending):
    /// when to apply the same generation again.
    recheck_at: Option<Instant>,
    last_error: Option<String>,
}

impl TrackedDriver {
    fn due(&self, generation: u64, now: Instant) -> bool {
        (self.applied != Some(generation) && self.retry_at.is_none_or(|t| t <= now))
            || self.recheck_at.is_some_and(|t| t <= now)
    }

    /// The next time this driver wants a pass with no change.
    fn wake_at(&self, generation: u64) -> Option<Instant> {
        let retry = self.retry_at.filter(|_| self.applied != Some(generation));
        match (retry, self.recheck_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The loop's state between passes.
struct Reconciler {
    config: DaemonConfig,
    store: Arc<dyn KvStore>,
    /// The last registration problem logged (logged again only when it changes).
    registration_error: Option<String>,
    calculate: Calculate,
    metrics: Arc<Metrics>,
    drivers: Vec<TrackedDriver>,
    desired: Option<Desired>,
    generation: u64,
    problems: BTreeSet<Problem>,
    /// Every driver has applied some generation successfully.
    applied_once: bool,
    /// The snapshot changed since the last calculation.
    changed: bool,
    /// When the last calculation started (see [`DaemonConfig::coalesce`]).
    calculated_at: Option<Instant>,
}

impl Reconciler {
    /// Calculates from the snapshot (on the blocking pool: the calculation
    /// may take a while on a large datastore); a new generation if the
    /// result differs.
    async fn recalculate(&mut self, sync: &SyncState) {
        let snapshot = sync.snapshot();
        let (calculate, host) = (self.calculate, self.config.host.clone());
        self.metrics.set_busy(true);
        let calculated = tokio::task::spawn_blocking(move || calculate(&snapshot, &host)).await;
        self.metrics.set_busy(false);
        let calculated = match calculated {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the calculation panicked; keeping the last result");
                return;
            }
        };
        let now: BTreeSet<Problem> = calculated.problems.into_iter().collect();
        for p in now.difference(&self.problems) {
            tracing::warn!(kind = p.kind.as_str(), problem = %p, "datastore entry not used as written");
        }
        self.problems = now;
        for kind in ProblemKind::ALL {
            let n = self.problems.iter().filter(|p| p.kind == kind).count();
            self.metrics.calc_problems.set(&[kind.as_str()], n as f64);
        }
        if self.desired.as_ref() != Some(&calculated.desired) {
            self.generation += 1;
            self.record(&calculated.desired);
            self.desired = Some(calculated.desired);
            tracing::debug!(generation = self.generation, "new desired state");
        }
    }

    fn record(&self, desired: &Desired) {
        let m = &self.metrics;
        let model = &desired.policy;
        let hosts = model
            .endpoints
            .iter()
            .filter(|e| e.kind == EndpointKind::Host && model.is_local(e))
            .count();
        m.endpoints
            .set(&["workload"], desired.workloads.len() as f64);
        m.endpoints.set(&["host"], hosts as f64);
        let policies: usize = model.tiers.iter().map(|t| t.policies.len()).sum();
        m.policies.set(&[], policies as f64);
    }

    /// Applies the current generation to every driver that is due.
    async fn apply_due(&mut self) {
        let Some(desired) = &self.desired else {
            return;
        };
        let generation = self.generation;
        for tracked in &mut self.drivers {
            if !tracked.due(generation, Instant::now()) {
                continue;
            }
            let name = tracked.driver.name();
            let started = Instant::now();
            self.metrics.set_busy(true);
            let result = tracked.driver.apply(desired).await;
            self.metrics.set_busy(false);
            self.metrics
                .apply_seconds
                .observe(&[name], started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    if tracked.last_error.take().is_some() {
                        tracing::info!(driver = name, "driver recovered");
                    }
                    tracked.applied = Some(generation);
                    tracked.failures = 0;
                    tracked.retry_at = None;
                    tracked.recheck_at = tracked
                        .driver
                        .pending()
                        .then(|| Instant::now() + self.config.recheck);
                }
                Err(error) => {
                    let error = error.to_string();
                    tracked.failures += 1;
                    let pause = self.config.backoff(tracked.failures);
                    tracked.retry_at = Some(Instant::now() + pause);
                    self.metrics.apply_errors.inc(&[name]);
                    if tracked.last_error.as_deref() == Some(&error) {
                        tracing::debug!(driver = name, %error, retry_in = ?pause, "apply failed again");
                    } else {
                        tracing::warn!(driver = name, %error, retry_in = ?pause, "apply failed; retrying");
                        tracked.last_error = Some(error);
                    }
                }
            }
        }
        if !self.applied_once && self.drivers.iter().all(|s| s.applied.is_some()) {
            tracing::info!(generation, "dataplane programmed");
            self.applied_once = true;
        }
    }

    /// Registers the Node again when the snapshot shows it missing, changed
    /// or lacking a VTEP a new VXLAN pool calls for; the write comes back as
    /// a change. A failure is retried at the next change.
    async fn reconcile_node(&mut self, sync: &SyncState) {
        let Some(reg) = &self.config.registration else {
            return;
        };
        if !node::needs_registration(&sync.snapshot(), reg) {
            return;
        }
        let problem = match node::register(self.store.clone(), reg).await {
            Ok(registered) => registered.vtep_error.map(|e| e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if problem.is_some() && problem != self.registration_error {
            tracing::warn!(error = problem.as_deref(), "updating the Node failed");
        }
        self.registration_error = problem;
    }

    /// When the next calculation is due: none without a change; at once
    /// after a quiet spell; else `coalesce` after the last one.
    fn calculation_due(&self) -> Option<Instant> {
        self.changed.then(|| match self.calculated_at {
            Some(at) => at + self.config.coalesce,
            None => Instant::now(),
        })
    }

    /// When the earliest driver waiting for a retry or a recheck is due.
    fn next_retry(&self) -> Option<Instant> {
        self.drivers
            .iter()
            .filter_map(|s| s.wake_at(self.generation))
            .min()
    }
}

/// Why the daemon stopped before its shutdown.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the datastore syncer stopped: {0}")]
    Syncer(String),
}

/// Runs the agent until `shutdown` completes: registers the Node, follows
/// the datastore, calculates and applies (see the module docs). Returns
/// without touching the dataplane.
pub async fn run(
    config: DaemonConfig,
    store: Arc<dyn KvStore>,
    calculate: Calculate,
    drivers: Vec<Box<dyn Driver>>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let mut shutdown = std::pin::pin!(shutdown.fuse());
    metrics.set_live(true);
    let result = async {
        if let Some(reg) = &config.registration
            && !register(&config, store.clone(), reg, &mut shutdown).await
        {
            return Ok(());
        }
        // The syncer's task ends with the loop (dropped, it is aborted).
        let (sync, mut task) = Syncer::new(store.clone(), metrics.clone()).spawn();
        let mut drivers = drivers;
        drivers.sort_by_key(|d| d.stage());
        let mut state = Reconciler {
            config,
            store,
            registration_error: None,
            calculate,
            metrics: metrics.clone(),
            drivers: drivers
                .into_iter()
                .map(|driver| TrackedDriver {
                    driver,
                    applied: None,
                    failures: 0,
                    retry_at: None,
                    recheck_at: None,
                    last_error: None,
                })
                .collect(),
            desired: None,
            generation: 0,
            problems: BTreeSet::new(),
            applied_once: false,
            changed: false,
            calculated_at: None,
        };
        loop {
            let retry = match state.next_retry() {
                Some(at) => tokio::time::sleep_until(at).boxed(),
                None => std::future::pending().boxed(),
            };
            let calculate = match state.calculation_due() {
                Some(at) => tokio::time::sleep_until(at).boxed(),
                None => std::future::pending().boxed(),
            };
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                joined = &mut task => {
                    return Err(DaemonError::Syncer(match joined {
                        Ok(()) => "it returned".into(),
                        Err(e) => e.to_string(),
                    }));
                }
                () = calculate => {
                    state.changed = false;
                    state.calculated_at = Some(Instant::now());
                    // Before the first complete list the snapshot is empty:
                    // calculating from it would tear the dataplane down.
                    if sync.in_sync() || state.desired.is_some() {
                        state.recalculate(&sync).await;
                        state.reconcile_node(&sync).await;
                    }
                }
                // After `calculate`: a stream of changes must not starve it.
                () = sync.changed() => {
                    state.changed = true;
                    continue;
                }
                () = retry => {}
            }
            state.apply_due().await;
            metrics.set_ready(state.applied_once && sync.in_sync());
        }
    }
    .await;
    metrics.set_ready(false);
    metrics.set_live(false);
    result
}

/// Registers the Node, retrying with backoff; false if `shutdown` came first.
async fn register(
    config: &DaemonConfig,
    store: Arc<dyn KvStore>,
    reg: &Registration,
    shutdown: &mut (impl Unpin + futures::future::FusedFuture<Output = ()>),
) -> bool {
    let mut failures = 0;
    let mut last = None;
    loop {
        let attempt = tokio::select! {
            biased;
            () = &mut *shutdown => return false,
            r = node::register(store.clone(), reg) => r,
        };
        match attempt {
            Ok(registered) => {
                if let Some(error) = registered.vtep_error {
                    tracing::warn!(%error, "registered the Node without a VTEP");
                }
                return true;
            }
            Err(error) => {
                failures += 1;
                let pause = config.backoff(failures);
                let error = error.to_string();
                if last.as_ref() != Some(&error) {
                    tracing::warn!(%error, retry_in = ?pause, "registering the Node failed");
                    last = Some(error);
                }
                tokio::select! {
                    biased;
                    () = &mut *shutdown => return false,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Completes on SIGTERM or SIGINT (the daemon's `shutdown`).
pub async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping, dataplane left as it is"),
                _ = int.recv() => tracing::info!("SIGINT: stopping, dataplane left as it is"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for signals; stopping only when killed");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use api::{Cidr, IPPool, IPPoolSpec, Kind, ObjectMeta, Resource};
    use datastore::{ResourceStore, SqliteStore};

    use super::*;
    use crate::state::{Calculated, DriverError, Route, RouteTarget, Snapshot, Stage};

    /// A blackhole route per pool; pools named `bad-…` are skipped as
    /// problems; other resources are ignored.
    fn calculate(snapshot: &Snapshot, _host: &HostSettings) -> Calculated {
        let mut out = Calculated::default();
        for r in snapshot.resources.values() {
            if let Resource::IPPool(p) = r {
                if p.metadata.name.starts_with("bad-") {
                    out.problems.push(Problem {
                        kind: ProblemKind::Skipped,
                        resource: format!("IPPool {}", p.metadata.name),
                        field: String::new(),
                        message: "bad".into(),
                    });
                } else {
                    out.desired.routes.insert(Route {
                        dst: p.spec.cidr.network(),
                        target: RouteTarget::Blackhole,
                    });
                }
            }
        }
        out
    }

    /// (driver, number of routes) per successful apply, in order.
    type Log = Arc<Mutex<Vec<(&'static str, usize)>>>;

    struct Fake {
        name: &'static str,
        log: Log,
        /// Applies that fail before one succeeds.
        failures: Arc<AtomicU32>,
        /// Successful applies after which something is still pending.
        pending: Arc<AtomicU32>,
        is_pending: bool,
    }

    #[async_trait::async_trait]
    impl Driver for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn stage(&self) -> Stage {
            match self.name {
                "bgp" => Stage::Bgp,
                "policy" => Stage::Policy,
                _ => Stage::Kernel,
            }
        }
        async fn apply(&mut self, desired: &Desired) -> Result<(), DriverError> {
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(format!("{} is down", self.name).into());
            }
            self.log
                .lock()
                .unwrap()
                .push((self.name, desired.routes.len()));
            self.is_pending = self
                .pending
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            Ok(())
        }
        fn pending(&self) -> bool {
            self.is_pending
        }
    }

    struct Harness {
        _dir: tempfile::TempDir,
        kv: Arc<dyn KvStore>,
        log: Log,
        failing: Arc<AtomicU32>,
        metrics: Arc<Metrics>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        daemon: tokio::task::JoinHandle<Result<(), DaemonError>>,
    }

    impl Harness {
        /// Starts the daemon with drivers bgp, policy (failing `policy_failures`
        /// times first) and routes, in that (wrong) order, on a store holding
        /// `pools` (name, CIDR).
        async fn start(policy_failures: u32, pools: &[(&str, &str)]) -> Harness {
            Harness::start_pending(policy_failures, 0, pools).await
        }

        /// As `start`, with the routes driver reporting something pending
        /// after its first `routes_pending` applies.
        async fn start_pending(
            policy_failures: u32,
            routes_pending: u32,
            pools: &[(&str, &str)],
        ) -> Harness {
            Harness::launch(policy_failures, routes_pending, pools, None).await
        }

        /// As `start_pending`, with `coalesce` as the gap between
        /// calculations when given.
        async fn launch(
            policy_failures: u32,
            routes_pending: u32,
            pools: &[(&str, &str)],
            coalesce: Option<Duration>,
        ) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let kv: Arc<dyn KvStore> = Arc::new(SqliteStore::open(dir.path().join("db")).unwrap());
            for (name, cidr) in pools {
                write_pool(&kv, name, cidr).await;
            }
            let log = Log::default();
            let failing = Arc::new(AtomicU32::new(policy_failures));
            let fake = |name, failures, pending: u32| {
                Box::new(Fake {
                    name,
                    log: log.clone(),
                    failures,
                    pending: Arc::new(AtomicU32::new(pending)),
                    is_pending: false,
                }) as Box<dyn Driver>
            };
            let drivers = vec![
                fake("bgp", Arc::default(), 0),
                fake("policy", failing.clone(), 0),
                fake("routes", Arc::default(), routes_pending),
            ];
            let host = HostSettings {
                node: "n1".into(),
                bgp_enabled: true,
                flow_logs: None,
            };
            let registration = Registration {
                node: "n1".into(),
                ipv4: Some("10.0.0.5/24".parse().unwrap()),
                ipv6: None,
                as_number: Some(64512),
            };
            let mut config = DaemonConfig::new(host, Some(registration));
            config.backoff = Duration::from_millis(20);
            config.recheck = Duration::from_millis(20);
            if let Some(coalesce) = coalesce {
                config.coalesce = coalesce;
            }
            let metrics = Arc::new(Metrics::new());
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let daemon = tokio::spawn(run(
                config,
                kv.clone(),
                calculate,
                drivers,
                metrics.clone(),
                async {
                    let _ = stopped.await;
                },
            ));
            Harness {
                _dir: dir,
                kv,
                log,
                failing,
                metrics,
                stop: Some(stop),
                daemon,
            }
        }

        async fn pool(&self, name: &str, cidr: &str) {
            write_pool(&self.kv, name, cidr).await;
        }

        fn applied(&self) -> Vec<(&'static str, usize)> {
            self.log.lock().unwrap().clone()
        }

        /// Waits until every driver's last apply saw `routes` routes.
        async fn until_all_applied(&self, routes: usize) {
            until(|| {
                ["routes", "policy", "bgp"].iter().all(|d| {
                    self.applied()
                        .iter()
                        .rev()
                        .find(|(n, _)| n == d)
                        .map(|(_, r)| *r)
                        == Some(routes)
                })
            })
            .await;
        }

        async fn stop(mut self) -> Vec<(&'static str, usize)> {
            self.stop.take().unwrap().send(()).unwrap();
            (&mut self.daemon).await.unwrap().unwrap();
            self.applied()
        }
    }

    async fn write_pool(kv: &Arc<dyn KvStore>, name: &str, cidr: &str) {
        let pool = IPPool::new(
            ObjectMeta::named(name),
            IPPoolSpec::new(Cidr(cidr.parse().unwrap())),
        );
        ResourceStore::new(kv.clone())
            .apply(Resource::IPPool(pool))
            .await
            .unwrap();
    }

    /// Polls `check` every 10 ms for up to 20 s.
    async fn until(mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check() {
            assert!(Instant::now() < deadline, "condition not met within 20 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn drivers_apply_in_order_and_again_on_each_change() {
        let h = Harness::start(0, &[("a", "10.1.0.0/16")]).await;
        h.until_all_applied(1).await;
        until(|| h.metrics.ready()).await;
        assert!(h.metrics.live());
        h.pool("b", "10.2.0.0/16").await;
        h.until_all_applied(2).await;
        let log = h.stop().await;
        // Each generation reaches routes, then policy, then bgp.
        let names: Vec<_> = log.iter().map(|(n, _)| *n).collect();
        for chunk in names.chunks(3) {
            assert_eq!(chunk, ["routes", "policy", "bgp"], "{log:?}");
        }
    }

    #[tokio::test]
    async fn a_change_after_a_quiet_spell_is_calculated_at_once_and_one_right_after_waits() {
        // An hour between calculations: the first (the initial list) must
        // not wait for it, the next change must.
        let hour = Duration::from_secs(3600);
        let h = Harness::launch(0, 0, &[("a", "10.1.0.0/16")], Some(hour)).await;
        h.until_all_applied(1).await;
        let before = h.applied().len();
        h.pool("b", "10.2.0.0/16").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(h.applied().len(), before, "{:?}", h.applied());
        h.stop().await;
    }

    #[tokio::test]
    async fn a_driver_with_something_pending_is_applied_again_without_a_change() {
        let h = Harness::start_pending(0, 2, &[("a", "10.1.0.0/16")]).await;
        h.until_all_applied(1).await;
        until(|| h.applied().iter().filter(|(n, _)| *n == "routes").count() == 3).await;
        // Nothing pending any more: no fourth apply, and the others were
        // applied once.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = h.stop().await;
        let count = |d: &str| log.iter().filter(|(n, _)| *n == d).count();
        assert_eq!(
            (count("routes"), count("policy"), count("bgp")),
            (3, 1, 1),
            "{log:?}"
        );
    }

    #[tokio::test]
    async fn the_node_is_registered_before_anything_is_applied() {
        let h = Harness::start(0, &[("a", "10.1.0.0/16")]).await;
        h.until_all_applied(1).await;
        let node = ResourceStore::new(h.kv.clone())
            .get(Kind::Node, None, "n1")
            .await
            .unwrap();
        let Resource::Node(node) = node else {
            panic!("{node:?}")
        };
        let bgp = node.spec.bgp.unwrap();
        assert_eq!(bgp.as_number, Some(api::AsNumber(64512)));
        assert_eq!(bgp.ipv4_address.unwrap().to_string(), "10.0.0.5/24");
        h.stop().await;
    }

    #[tokio::test]
    async fn a_vxlan_pool_created_later_gets_the_running_node_a_vtep() {
        let h = Harness::start(0, &[("a", "10.1.0.0/16")]).await;
        h.until_all_applied(1).await;
        let mut spec = IPPoolSpec::new(Cidr("10.244.0.0/16".parse().unwrap()));
        spec.vxlan_mode = api::resources::ippool::EncapMode::Always;
        let store = ResourceStore::new(h.kv.clone());
        store
            .apply(Resource::IPPool(IPPool::new(ObjectMeta::named("vx"), spec)))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let Resource::Node(node) = store.get(Kind::Node, None, "n1").await.unwrap() else {
                panic!("not a Node")
            };
            if let Some(vtep) = node.spec.ipv4_vxlan_tunnel_addr {
                assert!(vtep.octets()[..2] == [10, 244], "{vtep}");
                assert!(node.spec.vxlan_tunnel_mac_addr.is_some());
                break;
            }
            assert!(Instant::now() < deadline, "no VTEP within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        h.stop().await;
    }

    #[tokio::test]
    async fn a_failing_driver_is_retried_without_holding_back_the_others() {
        let h = Harness::start(3, &[("a", "10.1.0.0/16")]).await;
        until(|| {
            // Readiness waits for every driver: read it before the log.
            let ready = h.metrics.ready();
            let log = h.applied();
            assert!(!ready || log.contains(&("policy", 1)), "{log:?}");
            log.contains(&("routes", 1)) && log.contains(&("bgp", 1))
        })
        .await;
        h.until_all_applied(1).await;
        until(|| h.metrics.ready()).await;
        assert_eq!(h.failing.load(Ordering::SeqCst), 0);
        assert_eq!(h.metrics.apply_errors.get(&["policy"]), 3);
        assert_eq!(h.metrics.apply_errors.get(&["routes"]), 0);
        let log = h.stop().await;
        let policy: Vec<_> = log.iter().filter(|(n, _)| *n == "policy").collect();
        assert_eq!(policy, [&("policy", 1)], "one success after the failures");
    }

    #[tokio::test]
    async fn an_unchanged_calculation_is_not_applied_again() {
        let h = Harness::start(0, &[("a", "10.1.0.0/16")]).await;
        h.until_all_applied(1).await;
        // A bad pool changes the datastore but not the desired state...
        h.pool("bad-x", "10.9.0.0/16").await;
        until(|| h.metrics.calc_problems.get(&["skipped"]) == 1.0).await;
        // ... and the next real change is applied once more, not twice.
        h.pool("b", "10.2.0.0/16").await;
        h.until_all_applied(2).await;
        let log = h.stop().await;
        assert_eq!(log.len(), 6, "{log:?}");
    }

    #[tokio::test]
    async fn shutdown_stops_the_loop_and_leaves_the_dataplane_alone() {
        let h = Harness::start(0, &[("a", "10.1.0.0/16")]).await;
        h.until_all_applied(1).await;
        let metrics = h.metrics.clone();
        let log = h.stop().await;
        assert_eq!(log.len(), 3, "nothing applied on the way out: {log:?}");
        assert!(!metrics.live() && !metrics.ready());
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let host = HostSettings {
            node: "n".into(),
            bgp_enabled: false,
            flow_logs: None,
        };
        let c = DaemonConfig::new(host, None);
        assert_eq!(c.backoff(1), Duration::from_millis(250));
        assert_eq!(c.backoff(3), Duration::from_secs(1));
        assert_eq!(c.backoff(40), Duration::from_secs(30));
    }
}
