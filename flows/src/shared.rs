//! [`Flows`]: the aggregator and its streams behind one lock, with a clock;
//! what felix feeds and the gRPC server reads. Cheap to clone.
//!
//! The lock (a std `Mutex`) guards the [`Aggregator`] and the [`Hub`]
//! together, so a new stream's history and its live flows neither overlap
//! nor leave a gap. It is held for in-memory work only, never across an
//! `.await`; publishing to streams does not wait (see [`crate::hub`]).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::hub::{Hub, STREAM_CAPACITY, TooManyStreams};
use crate::log::FlowLog;
use crate::proto;
use crate::query::{HintsQuery, InvalidRequest, ListQuery, StreamQuery};
use crate::store::{Aggregator, Config, ConfigError, Refused, Stats};
use crate::wire::{self, Pushed};

/// Seconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    })
}

#[derive(Debug)]
struct State {
    aggregator: Aggregator,
    hub: Hub,
}

#[derive(Clone)]
pub struct Flows {
    state: Arc<Mutex<State>>,
    clock: Clock,
}

impl std::fmt::Debug for Flows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flows")
            .field("stats", &self.stats())
            .finish()
    }
}

/// [`Stats`] and the streams' share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowsStats {
    pub aggregator: Stats,
    /// Flows lost because a stream's client read too slowly.
    pub stream_dropped: u64,
    /// Streams open now.
    pub streams: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error(transparent)]
    TooMany(#[from] TooManyStreams),
}

/// A new stream: its history first, then what the receiver brings.
#[derive(Debug)]
pub struct Subscription {
    pub history: Vec<proto::FlowResult>,
    pub live: mpsc::Receiver<proto::FlowResult>,
}

impl Flows {
    pub fn new(config: Config) -> Result<Flows, ConfigError> {
        Flows::with_clock(config, system_clock())
    }

    pub fn with_clock(config: Config, clock: Clock) -> Result<Flows, ConfigError> {
        let state = State {
            aggregator: Aggregator::new(config)?,
            hub: Hub::default(),
        };
        Ok(Flows {
            state: Arc::new(Mutex::new(state)),
            clock,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between calls (no call panics half way),
        // so a panic elsewhere while holding it leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Sums one log in; a refusal is counted in [`Stats`] too.
    pub fn add(&self, log: &FlowLog) -> Result<(), Refused> {
        let now = self.now();
        self.lock().aggregator.add(now, log)
    }

    /// Sums logs in under one lock; refusals are counted in [`Stats`].
    pub fn add_all<'a>(&self, logs: impl IntoIterator<Item = &'a FlowLog>) {
        let now = self.now();
        let mut state = self.lock();
        for log in logs {
            let _ = state.aggregator.add(now, log);
        }
    }

    pub(crate) fn add_pushed(&self, pushed: Pushed) -> Result<(), Refused> {
        let now = self.now();
        self.lock().aggregator.add_pushed(now, pushed)
    }

    /// Expires old buckets and sends the completed ones to the streams.
    pub fn roll(&self) {
        let now = self.now();
        let mut state = self.lock();
        let ready = state.aggregator.roll(now);
        state.hub.publish(&ready);
    }

    /// Rolls every `period` (a second is plenty: a roll between bucket
    /// boundaries does nothing), until the future is dropped.
    pub async fn roll_every(self, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.roll();
        }
    }

    pub fn stats(&self) -> FlowsStats {
        let state = self.lock();
        FlowsStats {
            aggregator: state.aggregator.stats(),
            stream_dropped: state.hub.dropped(),
            streams: state.hub.streams(),
        }
    }

    pub fn list(
        &self,
        req: &proto::FlowListRequest,
    ) -> Result<proto::FlowListResult, InvalidRequest> {
        let query = ListQuery::from_proto(self.now(), req)?;
        let (flows, meta) = self.lock().aggregator.list(&query);
        Ok(proto::FlowListResult {
            meta: Some(meta),
            flows: flows.iter().map(wire::to_result).collect(),
        })
    }

    pub fn hints(
        &self,
        req: &proto::FilterHintsRequest,
    ) -> Result<proto::FilterHintsResult, InvalidRequest> {
        let query = HintsQuery::from_proto(self.now(), req)?;
        let (values, meta) = self.lock().aggregator.hints(&query);
        Ok(proto::FilterHintsResult {
            meta: Some(meta),
            hints: values
                .into_iter()
                .map(|value| proto::FilterHint { value })
                .collect(),
        })
    }

    pub fn subscribe(&self, req: &proto::FlowStreamRequest) -> Result<Subscription, StreamError> {
        let query = StreamQuery::from_proto(self.now(), req)?;
        let mut state = self.lock();
        let history = match query.since {
            Some(since) => state
                .aggregator
                .streamed_since(since)
                .iter()
                .filter(|f| query.filter.matches(&f.key))
                .map(wire::to_result)
                .collect(),
            None => Vec::new(),
        };
        let live = state.hub.subscribe(query.filter, STREAM_CAPACITY)?;
        Ok(Subscription { history, live })
    }
}
