//! [`Aggregator`]: the pure core. Flow logs are summed per [`FlowKey`] into
//! buckets of one interval (15 s by default), aligned to multiples of it;
//! queries sum a key's buckets over a time range. Time is an argument.
//!
//! ```text
//! add(now, log) ─▶ bucket of log.start ─▶ window of its key (counters, labels)
//!                  │ older than history, or past the next bucket: refused
//!                  │ max_flows windows held: the oldest window goes (dropped)
//! roll(now)     ─▶ buckets older than history go; buckets closed one
//!                  interval ago come back, for the streams
//! list / hints  ─▶ windows of buckets starting in [gte, lt), summed per key
//! ```
//!
//! Memory is bounded by `max_flows` windows (a window is one key in one
//! bucket, what a Stream sends as one FlowResult); each key is held once,
//! shared by its windows, and goes with its last window.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::key::{FlowKey, Labels};
use crate::log::{Counters, FlowLog, PolicyKind};
use crate::proto;
use crate::query::{HintField, HintsQuery, ListQuery, SortBy};
use crate::wire::{self, Pushed};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Seconds per bucket.
    pub interval: i64,
    /// Buckets kept, the current one included.
    pub history: i64,
    /// Windows (a key in a bucket) held at most.
    pub max_flows: usize,
}

impl Default for Config {
    /// Goldmane's: 15 s buckets, an hour of them; 100,000 windows.
    fn default() -> Config {
        Config {
            interval: 15,
            history: 240,
            max_flows: 100_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("interval must be 1 to 3600 seconds, not {0}")]
    Interval(i64),
    #[error("history must be 2 to 100000 buckets, not {0}")]
    History(i64),
    #[error("max_flows must be at least 1")]
    MaxFlows,
}

impl Config {
    fn check(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.interval) {
            return Err(ConfigError::Interval(self.interval));
        }
        if !(2..=100_000).contains(&self.history) {
            return Err(ConfigError::History(self.history));
        }
        if self.max_flows == 0 {
            return Err(ConfigError::MaxFlows);
        }
        Ok(())
    }
}

/// What the aggregator has done since it started, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Logs and pushed flows summed in.
    pub received: u64,
    /// Windows dropped because `max_flows` were held (oldest first), and
    /// logs refused for it (when older than every window held).
    pub dropped: u64,
    /// Logs whose start was outside the history or past the next bucket.
    pub refused: u64,
    /// Pushed flows ignored because the same host had pushed them before
    /// (same key, same span: sent again after a reconnection).
    pub duplicates: u64,
    /// Windows held now.
    pub flows: usize,
    /// Distinct keys held now.
    pub keys: usize,
}

/// Why a log was not summed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("start {start} is outside the history held, [{oldest}, {limit})")]
    OutsideHistory { start: i64, oldest: i64, limit: i64 },
    #[error("max_flows windows are held, all newer than this log's")]
    Full,
}

/// A key's sum over one or more buckets, what the API returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Stands for the key while it is held.
    pub id: i64,
    pub key: Arc<FlowKey>,
    /// Start of the first bucket summed.
    pub start: i64,
    /// End of the last bucket summed.
    pub end: i64,
    pub source_labels: Labels,
    pub dest_labels: Labels,
    pub counters: Counters,
}

#[derive(Debug)]
struct Window {
    source_labels: Labels,
    dest_labels: Labels,
    counters: Counters,
    /// The spans of the pushed flows summed in (a host pushes a key once
    /// per span; a few per window), to know a flow sent again.
    pushed: Vec<(i64, i64)>,
}

#[derive(Debug)]
struct Entry {
    key: Arc<FlowKey>,
    windows: usize,
}

#[derive(Debug)]
pub struct Aggregator {
    config: Config,
    /// Buckets by start; each maps key ids (ascending: first seen first)
    /// to that key's window. Only buckets with windows are present.
    buckets: BTreeMap<i64, BTreeMap<i64, Window>>,
    ids: HashMap<Arc<FlowKey>, i64>,
    entries: HashMap<i64, Entry>,
    next_id: i64,
    windows: usize,
    /// Buckets starting before this have gone to the streams.
    streamed_before: i64,
    stats: Stats,
}

impl Aggregator {
    pub fn new(config: Config) -> Result<Aggregator, ConfigError> {
        config.check()?;
        Ok(Aggregator {
            config,
            buckets: BTreeMap::new(),
            ids: HashMap::new(),
            entries: HashMap::new(),
            next_id: 1,
            windows: 0,
            streamed_before: i64::MIN,
            stats: Stats::default(),
        })
    }

    pub fn config(&self) -> Config {
        self.config
    }

    pub fn stats(&self) -> Stats {
        Stats {
            flows: self.windows,
            keys: self.entries.len(),
            ..self.stats
        }
    }

    /// The start of the bucket that holds `t`.
    pub fn bucket_of(&self, t: i64) -> i64 {
        t - t.rem_euclid(self.config.interval)
    }

    /// The oldest bucket start kept at `now`.
    fn oldest(&self, now: i64) -> i64 {
        let span = (self.config.history - 1).saturating_mul(self.config.interval);
        self.bucket_of(now).saturating_sub(span)
    }

    /// Sums `log` into the bucket of its start.
    pub fn add(&mut self, now: i64, log: &FlowLog) -> Result<(), Refused> {
        let labels = (Labels::of(&log.source.labels), Labels::of(&log.dest.labels));
        self.insert(
            now,
            FlowKey::of(log),
            log.start,
            None,
            labels,
            &log.counters,
        )
    }

    /// Sums a flow pushed by another host (FlowCollector), unless the
    /// same flow (key and span) was pushed before: hosts send again what
    /// was in flight when a connection dropped.
    pub fn add_pushed(&mut self, now: i64, pushed: Pushed) -> Result<(), Refused> {
        let labels = (pushed.source_labels, pushed.dest_labels);
        let span = Some((pushed.start, pushed.end));
        self.insert(
            now,
            pushed.key,
            pushed.start,
            span,
            labels,
            &pushed.counters,
        )
    }

    fn insert(
        &mut self,
        now: i64,
        key: FlowKey,
        start: i64,
        pushed: Option<(i64, i64)>,
        (source_labels, dest_labels): (Labels, Labels),
        counters: &Counters,
    ) -> Result<(), Refused> {
        let bucket = self.bucket_of(start);
        // One bucket past the current one, for hosts whose clocks run ahead.
        let (oldest, limit) = (
            self.oldest(now),
            self.bucket_of(now) + 2 * self.config.interval,
        );
        if bucket < oldest || bucket >= limit {
            self.stats.refused += 1;
            return Err(Refused::OutsideHistory {
                start,
                oldest,
                limit,
            });
        }
        let held = self.ids.get(&key).copied();
        if let Some(window) = held.and_then(|id| self.buckets.get_mut(&bucket)?.get_mut(&id)) {
            if let Some(span) = pushed {
                if window.pushed.contains(&span) {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
                window.pushed.push(span);
            }
            window.counters.add(counters);
            window.source_labels = window.source_labels.intersect(&source_labels);
            window.dest_labels = window.dest_labels.intersect(&dest_labels);
            self.stats.received += 1;
            return Ok(());
        }
        if self.windows >= self.config.max_flows && !self.evict_oldest(bucket) {
            self.stats.dropped += 1;
            return Err(Refused::Full);
        }
        // After the eviction, which may have taken this key's last window.
        let id = self.id_of(key);
        let window = Window {
            source_labels,
            dest_labels,
            counters: *counters,
            pushed: pushed.into_iter().collect(),
        };
        self.buckets.entry(bucket).or_default().insert(id, window);
        self.windows += 1;
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.windows += 1;
        }
        self.stats.received += 1;
        Ok(())
    }

    /// The key's id, a new one for a key not held.
    fn id_of(&mut self, key: FlowKey) -> i64 {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.next_id;
        self.next_id += 1;
        let key = Arc::new(key);
        self.ids.insert(Arc::clone(&key), id);
        self.entries.insert(id, Entry { key, windows: 0 });
        id
    }

    /// Forgets a key without windows.
    fn release(&mut self, id: i64) {
        if self.entries.get(&id).is_some_and(|e| e.windows == 0)
            && let Some(entry) = self.entries.remove(&id)
        {
            self.ids.remove(&entry.key);
        }
    }

    fn forget_window(&mut self, id: i64) {
        self.windows -= 1;
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.windows -= 1;
        }
        self.release(id);
    }

    /// Drops the oldest window (oldest bucket, then first-seen key), unless
    /// every window is in a bucket newer than `bucket`.
    fn evict_oldest(&mut self, bucket: i64) -> bool {
        let Some(mut oldest) = self.buckets.first_entry() else {
            return false;
        };
        if *oldest.key() > bucket {
            return false;
        }
        let Some((id, _)) = oldest.get_mut().pop_first() else {
            return false;
        };
        if oldest.get().is_empty() {
            oldest.remove();
        }
        self.stats.dropped += 1;
        self.forget_window(id);
        true
    }

    /// Moves time to `now`: buckets older than the history go; the buckets
    /// that closed at least one interval ago and were not streamed yet come
    /// back, oldest first, each key summed over its bucket alone.
    pub fn roll(&mut self, now: i64) -> Vec<Flow> {
        let oldest = self.oldest(now);
        while let Some(first) = self.buckets.first_entry() {
            if *first.key() >= oldest {
                break;
            }
            let ids: Vec<i64> = first.remove().into_keys().collect();
            for id in ids {
                self.forget_window(id);
            }
        }
        let before = self.bucket_of(now) - self.config.interval;
        if before <= self.streamed_before {
            return Vec::new();
        }
        let ready = self.buckets_in(self.streamed_before, before);
        self.streamed_before = before;
        ready
    }

    /// The buckets starting in `[from, before)` that have gone to the
    /// streams: a new stream's history.
    pub fn streamed_since(&self, from: i64) -> Vec<Flow> {
        self.buckets_in(from, self.streamed_before)
    }

    fn buckets_in(&self, from: i64, before: i64) -> Vec<Flow> {
        self.buckets
            .range(from..before.max(from))
            .flat_map(|(&start, windows)| {
                windows
                    .iter()
                    .filter_map(move |(id, w)| self.flow(*id, start, w))
            })
            .collect()
    }

    fn flow(&self, id: i64, start: i64, w: &Window) -> Option<Flow> {
        Some(Flow {
            id,
            key: Arc::clone(&self.entries.get(&id)?.key),
            start,
            end: start + self.config.interval,
            source_labels: w.source_labels.clone(),
            dest_labels: w.dest_labels.clone(),
            counters: w.counters,
        })
    }

    /// Each key's sum over the buckets in the query's range, filtered.
    fn summed(
        &self,
        query_range: crate::query::TimeRange,
        filter: &crate::filter::Filter,
    ) -> Vec<Flow> {
        let mut sums: HashMap<i64, Flow> = HashMap::new();
        let mut passes: HashMap<i64, bool> = HashMap::new();
        let range = query_range.gte..query_range.lt;
        for (&start, windows) in self.buckets.range(range) {
            for (&id, w) in windows {
                let Some(entry) = self.entries.get(&id) else {
                    continue;
                };
                if !*passes
                    .entry(id)
                    .or_insert_with(|| filter.matches(&entry.key))
                {
                    continue;
                }
                match sums.get_mut(&id) {
                    Some(sum) => {
                        sum.end = start + self.config.interval;
                        sum.counters.add(&w.counters);
                        sum.source_labels = sum.source_labels.intersect(&w.source_labels);
                        sum.dest_labels = sum.dest_labels.intersect(&w.dest_labels);
                    }
                    None => {
                        if let Some(flow) = self.flow(id, start, w) {
                            sums.insert(id, flow);
                        }
                    }
                }
            }
        }
        sums.into_values().collect()
    }

    /// Goldmane's List: summed, filtered, sorted, paged.
    pub fn list(&self, query: &ListQuery) -> (Vec<Flow>, proto::ListMetadata) {
        let mut flows = self.summed(query.range, &query.filter);
        sort(&mut flows, query.sort);
        query.page.cut(flows)
    }

    /// Goldmane's FilterHints: the distinct non-empty values of a field in
    /// the flows that pass the filter, sorted, paged.
    pub fn hints(&self, query: &HintsQuery) -> (Vec<String>, proto::ListMetadata) {
        let flows = self.summed(query.range, &query.filter);
        let mut values: Vec<String> = flows
            .iter()
            .flat_map(|f| hint_values(&f.key, query.field))
            .filter(|v| !v.is_empty())
            .collect();
        values.sort();
        values.dedup();
        query.page.cut(values)
    }
}

fn sort(flows: &mut [Flow], by: SortBy) {
    let kind = |k: crate::log::EndpointKind| k as u8;
    flows.sort_by(|a, b| {
        let (ka, kb) = (&a.key, &b.key);
        let first = match by {
            SortBy::Time => b.start.cmp(&a.start),
            SortBy::DestName => ka.dest.name.cmp(&kb.dest.name),
            SortBy::DestNamespace => ka.dest.namespace.cmp(&kb.dest.namespace),
            SortBy::DestType => kind(ka.dest.kind).cmp(&kind(kb.dest.kind)),
            SortBy::SourceName => ka.source.name.cmp(&kb.source.name),
            SortBy::SourceNamespace => ka.source.namespace.cmp(&kb.source.namespace),
            SortBy::SourceType => kind(ka.source.kind).cmp(&kind(kb.source.kind)),
        };
        first.then(a.id.cmp(&b.id))
    });
}

/// A key's values for a hint field. For policies: every enforced and
/// pending hit but profiles (not a policy a user wrote), an end of tier by
/// the policy that triggered it, as Goldmane does.
fn hint_values(key: &FlowKey, field: HintField) -> Vec<String> {
    let policy = |get: fn(&crate::log::PolicyHit) -> String| -> Vec<String> {
        let trace = &key.policies;
        trace
            .enforced
            .iter()
            .chain(&trace.pending)
            .filter(|h| h.kind != PolicyKind::Profile)
            .map(|h| get(h.trigger.as_deref().unwrap_or(h)))
            .collect()
    };
    match field {
        HintField::DestName => vec![key.dest.name.clone()],
        HintField::SourceName => vec![key.source.name.clone()],
        HintField::DestNamespace => vec![key.dest.namespace.clone()],
        HintField::SourceNamespace => vec![key.source.namespace.clone()],
        HintField::PolicyTier => policy(|h| h.tier.clone()),
        HintField::PolicyName => policy(|h| h.name.clone()),
        HintField::PolicyNamespace => policy(|h| h.namespace.clone()),
        HintField::PolicyKind => policy(|h| wire::to_policy_kind(h.kind).as_str_name().to_owned()),
    }
}
