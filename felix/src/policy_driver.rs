//! [`PolicyDriver`]: the [`Driver`] for felix's nftables table. It compiles
//! [`Desired::policy`] with an incremental [`policy::Compiler`] and converges
//! the kernel through a [`policy::Dataplane`] ([`policy::Netlink`] in felix):
//! one atomic transaction per change, nothing when nothing changed.
//!
//! On start-up the dataplane reads the kernel's table once and converges
//! from it without flushing: sets and maps keep their elements (changed
//! element by element), chains are kept and their rules replaced inside the
//! same transaction (see `policy::dataplane`'s module docs), so traffic the
//! old and new rules both allow is never interrupted by a restart.
//!
//! Compilation and the netlink exchange are blocking; they run on tokio's
//! blocking pool, the compiler moved there and back. Each compilation is
//! logged (debug) and counted with how the compiler made it: the previous
//! ruleset patched, or a full compile and why ([`policy::compile::Outcome`]).

use std::sync::Arc;
use std::time::Instant;

use policy::compile::{Fallback, Outcome};
use policy::{Compiler, Dataplane, converge};

use crate::metrics::Metrics;
use crate::state::{Desired, Driver, DriverError};

/// The dataplane the driver programs (`Netlink` in felix, `Nft` to debug).
pub type SharedDataplane = Arc<dyn Dataplane + Send + Sync>;

/// Compiles and applies the policy model.
pub struct PolicyDriver {
    /// `None` only while an apply runs on the blocking pool (or after it
    /// panicked, when a fresh compiler takes over).
    compiler: Option<Compiler>,
    dataplane: SharedDataplane,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for PolicyDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyDriver")
            .field("compiling", &self.compiler.is_none())
            .finish_non_exhaustive()
    }
}

/// What one apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Whether a transaction was sent (false: the kernel already matched).
    pub changed: bool,
    pub rules: usize,
    pub sets: usize,
}

impl PolicyDriver {
    /// A driver programming `dataplane`.
    pub fn new(dataplane: SharedDataplane) -> Self {
        PolicyDriver {
            compiler: Some(Compiler::new()),
            dataplane,
            metrics: None,
        }
    }

    /// A driver for this process's network namespace through netlink.
    pub fn netlink() -> Self {
        PolicyDriver::new(Arc::new(policy::Netlink::new()))
    }

    /// Reports rule and set counts into `metrics` after each apply.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Compiles `model` and converges the kernel to it.
    pub async fn apply_model(&mut self, model: &policy::Model) -> Result<Applied, DriverError> {
        let mut compiler = self.compiler.take().unwrap_or_default();
        let dataplane = self.dataplane.clone();
        let model = model.clone();
        let (compiler, outcome, result) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            // The compiler lends its ruleset: no copy of it per change.
            let ruleset = compiler.compile_ref(&model);
            let compiled = started.elapsed();
            let result = converge(&*dataplane, ruleset).map(|changes| Applied {
                changed: !changes.is_empty(),
                rules: ruleset.chains.values().map(|c| c.rules.len()).sum(),
                sets: ruleset.sets.len(),
            });
            let outcome = compiler.outcome().map(labels);
            if let Some((path, reason)) = outcome {
                tracing::debug!(
                    ?compiled,
                    total = ?started.elapsed(),
                    path,
                    reason,
                    changed = result.as_ref().is_ok_and(|a| a.changed),
                    "policy compiled and converged"
                );
            }
            (compiler, outcome, result)
        })
        .await?;
        self.compiler = Some(compiler);
        if let (Some(m), Some((path, reason))) = (&self.metrics, outcome) {
            m.policy_compiles.inc(&[path, reason]);
        }
        let applied = result?;
        if let Some(m) = &self.metrics {
            m.rules.set(&[], applied.rules as f64);
            m.sets.set(&[], applied.sets as f64);
        }
        Ok(applied)
    }
}

/// The `path` and `reason` labels of an outcome (no reason for a patch).
fn labels(outcome: Outcome) -> (&'static str, &'static str) {
    (
        outcome.path(),
        outcome.fallback().map_or("", Fallback::as_str),
    )
}

#[async_trait::async_trait]
impl Driver for PolicyDriver {
    fn name(&self) -> &'static str {
        "policy"
    }
    fn stage(&self) -> crate::state::Stage {
        crate::state::Stage::Policy
    }

    async fn apply(&mut self, desired: &Desired) -> Result<(), DriverError> {
        self.apply_model(&desired.policy).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use policy::{Changes, DataplaneError, Model, Ruleset};

    use super::*;

    /// A dataplane that holds what it is given.
    #[derive(Debug, Default)]
    struct Held(Mutex<Ruleset>);

    impl Dataplane for Held {
        fn read(&self) -> Result<Ruleset, DataplaneError> {
            Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
        }
        fn apply(&self, changes: &Changes) -> Result<(), DataplaneError> {
            changes.apply_to(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn each_compilation_is_counted_by_path_and_reason() {
        let metrics = Arc::new(Metrics::new());
        let mut driver = PolicyDriver::new(Arc::new(Held::default())).with_metrics(metrics.clone());
        let mut model = Model::default();
        driver.apply_model(&model).await.unwrap();
        driver.apply_model(&model).await.unwrap();
        model.config.log_prefix = "other".into();
        driver.apply_model(&model).await.unwrap();
        let count = |path, reason| metrics.policy_compiles.get(&[path, reason]);
        assert_eq!(count("full", "first_compile"), 1);
        assert_eq!(count("patched", ""), 1);
        assert_eq!(count("full", "config_changed"), 1);
    }
}
