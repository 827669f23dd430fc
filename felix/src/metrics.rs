//! Prometheus metrics and the health endpoints.
//!
//! [`Metrics`] holds every metric felix exports (a small registry of
//! labelled counters, gauges and histograms, written as the Prometheus text
//! exposition format 0.0.4), the health flags, and an optional
//! [`BgpStatus`] source asked at each scrape. [`serve`] is a tiny HTTP/1.1
//! server (one request per connection) on a listener the caller bound:
//!
//! | path | answer |
//! |---|---|
//! | `/metrics` | the exposition, `text/plain; version=0.0.4` |
//! | `/liveness` | 200 while the daemon's loop runs and no single apply or calculation has taken longer than [`STUCK_AFTER`], else 503 |
//! | `/readiness` | 200 once every driver applied the first calculation and the datastore is in sync, else 503 |
//!
//! Calico serves metrics on 9091 and health on 9099; felix binds both to
//! localhost by default (see [`config`](crate::config)) and serves every
//! path on each listener.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Label values, in the order of the metric's label names.
type Labels = Vec<String>;

/// One metric family: a name, help, label names and a value per label set.
/// The map is guarded by a short `std::sync::Mutex`, never held across an
/// `.await`.
#[derive(Debug)]
struct Family<V> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Labels, V>>,
}

impl<V: Default + Clone> Family<V> {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Family {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn with<R>(&self, labels: &[&str], f: impl FnOnce(&mut V) -> R) -> R {
        debug_assert_eq!(labels.len(), self.labels.len(), "{}", self.name);
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        f(values
            .entry(labels.iter().map(|l| (*l).to_owned()).collect())
            .or_default())
    }

    fn replace_all(&self, values: impl IntoIterator<Item = (Labels, V)>) {
        *self.values.lock().unwrap_or_else(|e| e.into_inner()) = values.into_iter().collect();
    }

    fn snapshot(&self) -> BTreeMap<Labels, V> {
        self.values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn header(&self, out: &mut String, kind: &str) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
    }

    /// `{a="x",b="y"}` (with `extra` appended), or nothing without labels.
    fn label_text(&self, values: &[String], extra: Option<(&str, &str)>) -> String {
        let mut pairs: Vec<String> = self
            .labels
            .iter()
            .zip(values)
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        pairs.extend(extra.map(|(k, v)| format!("{k}=\"{v}\"")));
        if pairs.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", pairs.join(","))
        }
    }
}

impl<V: Default + Clone + std::fmt::Display> Family<V> {
    /// The exposition of a one-value-per-label-set metric (counter, gauge):
    /// `0` for an unlabelled metric never set.
    fn render_values(&self, out: &mut String, kind: &str) {
        self.header(out, kind);
        let values = self.snapshot();
        if values.is_empty() && self.labels.is_empty() {
            let _ = writeln!(out, "{} 0", self.name);
        }
        for (labels, v) in values {
            let _ = writeln!(out, "{}{} {v}", self.name, self.label_text(&labels, None));
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// A monotonic counter per label set.
#[derive(Debug)]
pub struct Counter(Family<u64>);

impl Counter {
    pub fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Counter(Family::new(name, help, labels))
    }
    /// Adds one.
    pub fn inc(&self, labels: &[&str]) {
        self.0.with(labels, |v| *v += 1);
    }
    pub fn get(&self, labels: &[&str]) -> u64 {
        self.0.with(labels, |v| *v)
    }
    /// Replaces every label set at once, for counts kept elsewhere (a BGP
    /// peer's flaps, counted by the speaker).
    pub fn replace_all(&self, values: impl IntoIterator<Item = (Vec<String>, u64)>) {
        self.0.replace_all(values);
    }
    fn render(&self, out: &mut String) {
        self.0.render_values(out, "counter");
    }
}

/// A value that goes up and down, per label set.
#[derive(Debug)]
pub struct Gauge(Family<f64>);

impl Gauge {
    pub fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Gauge(Family::new(name, help, labels))
    }
    pub fn set(&self, labels: &[&str], value: f64) {
        self.0.with(labels, |v| *v = value);
    }
    pub fn get(&self, labels: &[&str]) -> f64 {
        self.0.with(labels, |v| *v)
    }
    /// Replaces every label set at once (for values read whole, such as
    /// peers by state: states no longer present disappear).
    pub fn replace_all(&self, values: impl IntoIterator<Item = (Vec<String>, f64)>) {
        self.0.replace_all(values);
    }
    fn render(&self, out: &mut String) {
        self.0.render_values(out, "gauge");
    }
}

/// Cumulative buckets, a sum and a count per label set.
#[derive(Debug, Clone, Default)]
struct HistogramValue {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A histogram with fixed upper bounds (seconds, for latencies).
#[derive(Debug)]
pub struct Histogram {
    family: Family<HistogramValue>,
    bounds: &'static [f64],
}

/// Bounds of the apply-latency histogram, in seconds: 1 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Histogram {
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        Histogram {
            family: Family::new(name, help, labels),
            bounds,
        }
    }
    pub fn observe(&self, labels: &[&str], value: f64) {
        let bounds = self.bounds;
        self.family.with(labels, |h| {
            h.buckets.resize(bounds.len(), 0);
            for (b, bound) in h.buckets.iter_mut().zip(bounds) {
                if value <= *bound {
                    *b += 1;
                }
            }
            h.sum += value;
            h.count += 1;
        });
    }
    /// Observations so far for the label set.
    pub fn count(&self, labels: &[&str]) -> u64 {
        self.family.with(labels, |h| h.count)
    }
    fn render(&self, out: &mut String) {
        let f = &self.family;
        f.header(out, "histogram");
        for (labels, h) in f.snapshot() {
            for (i, bound) in self.bounds.iter().enumerate() {
                let n = h.buckets.get(i).copied().unwrap_or(0);
                let le = bound.to_string();
                let _ = writeln!(
                    out,
                    "{}_bucket{} {n}",
                    f.name,
                    f.label_text(&labels, Some(("le", &le)))
                );
            }
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                f.name,
                f.label_text(&labels, Some(("le", "+Inf"))),
                h.count
            );
            let _ = writeln!(
                out,
                "{}_sum{} {}",
                f.name,
                f.label_text(&labels, None),
                h.sum
            );
            let _ = writeln!(
                out,
                "{}_count{} {}",
                f.name,
                f.label_text(&labels, None),
                h.count
            );
        }
    }
}

/// One BGP peer as the status source reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub address: std::net::IpAddr,
    /// The FSM state as Calico shows it (`Established`, `Active`, ...).
    pub state: String,
    /// Prefixes received from the peer and accepted.
    pub prefixes: u64,
    /// Prefixes advertised to the peer.
    pub advertised: u64,
    /// Established sessions that ended since the peer was configured.
    pub flaps: u64,
    /// Why the session last failed, if it did.
    pub last_error: Option<String>,
}

/// Something that knows the BGP peers (the BGP driver implements it).
pub trait BgpStatus: Send + Sync + std::fmt::Debug {
    fn peers(&self) -> Vec<PeerStatus>;
}

/// Every metric felix exports, and its health.
#[derive(Debug)]
pub struct Metrics {
    /// Local endpoints felix programs, by `kind` (`workload`, `host`).
    pub endpoints: Gauge,
    /// Policies in the policy model.
    pub policies: Gauge,
    /// Rules and sets in the compiled ruleset.
    pub rules: Gauge,
    pub sets: Gauge,
    /// Latency of each successful or failed apply, by `driver`.
    pub apply_seconds: Histogram,
    /// Failed applies, by `driver`.
    pub apply_errors: Counter,
    /// Full resyncs after a watch error (the first list is not counted).
    pub resyncs: Counter,
    /// Problems the calculation reported on its last run.
    pub calc_problems: Gauge,
    /// What the flow-log reader saw, by `event`: packets `logged`, `lost`
    /// (NFLOG sequence gaps), socket `overrun`s, `malformed` messages,
    /// `unresolved` prefixes, connections `evicted` from a full table,
    /// flows `dropped` by the store's bound, and `stream_dropped` (a slow
    /// API client's).
    pub flowlog_events: Counter,
    /// Packets and bytes each policy and profile rule counted, by `tier`,
    /// `kind`, `namespace`, `policy`, `rule`, `direction` (the busiest
    /// rules only: see `rule_metrics`).
    pub rule_packets: Counter,
    pub rule_bytes: Counter,
    /// Rules left out of those two by the cardinality guard.
    pub rule_series_left_out: Gauge,
    /// Policy compilations, by `path` (`patched`: the previous ruleset
    /// patched; `full`: compiled again) and, for a full one, the `reason` a
    /// patch could not do ([`policy::compile::Fallback::as_str`]; empty for
    /// `patched`).
    pub policy_compiles: Counter,
    /// Leaked addresses the collector released, by `reason`
    /// (`ipam::check::LeakReason`, camelCase).
    pub ipam_leaks_released: Counter,
    /// Leaked addresses the collector's last scan found (leader only).
    pub ipam_leaks_seen: Gauge,
    /// 1 while this felix holds the leak collector's lease.
    pub ipam_gc_leader: Gauge,
    bgp_peers: Gauge,
    bgp_peer_state: Gauge,
    bgp_prefixes: Gauge,
    bgp_advertised: Gauge,
    bgp_flaps: Counter,
    bgp_last_error: Gauge,
    bgp: Mutex<Option<Arc<dyn BgpStatus>>>,
    live: AtomicBool,
    ready: AtomicBool,
    /// When the loop's current step (an apply, a calculation) began.
    busy_since: Mutex<Option<Instant>>,
    /// How long one step may take before liveness fails, in milliseconds.
    stuck_after_ms: AtomicU64,
}

/// The labels of a rule's counters.
const RULE_LABELS: &[&str] = &["tier", "kind", "namespace", "policy", "rule", "direction"];

/// How long one step of the loop may take before `/liveness` fails (as
/// Calico's felix gives its dataplane 90 s).
pub const STUCK_AFTER: Duration = Duration::from_secs(90);

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            endpoints: Gauge::new(
                "felix_active_local_endpoints",
                "Local endpoints felix programs.",
                &["kind"],
            ),
            policies: Gauge::new(
                "felix_active_policies",
                "Policies in this host's policy model.",
                &[],
            ),
            rules: Gauge::new("felix_nft_rules", "Rules in felix's nftables table.", &[]),
            sets: Gauge::new("felix_nft_sets", "Sets in felix's nftables table.", &[]),
            apply_seconds: Histogram::new(
                "felix_dataplane_apply_seconds",
                "Time to apply a calculated state, per driver.",
                &["driver"],
                LATENCY_BUCKETS,
            ),
            apply_errors: Counter::new(
                "felix_dataplane_apply_errors_total",
                "Failed applies, per driver.",
                &["driver"],
            ),
            resyncs: Counter::new(
                "felix_resyncs_total",
                "Full datastore resyncs after a watch error.",
                &[],
            ),
            calc_problems: Gauge::new(
                "felix_calc_problems",
                "What the last calculation could not use as written, by kind (skipped, unsupported, approximated, disabled).",
                &["kind"],
            ),
            policy_compiles: Counter::new(
                "felix_policy_compiles_total",
                "Policy compilations, by path (patched, full) and the reason for a full one (first_compile, config_changed, tiers_changed, ...).",
                &["path", "reason"],
            ),
            flowlog_events: Counter::new(
                "felix_flowlog_events_total",
                "What the flow-log reader saw: packets logged, lost, overruns, malformed messages, unresolved prefixes, evicted connections, dropped flows; flows pushed to the cluster aggregator, sent again, dropped.",
                &["event"],
            ),
            rule_packets: Counter::new(
                "felix_policy_rule_packets_total",
                "Packets each policy and profile rule counted (the busiest rules).",
                RULE_LABELS,
            ),
            rule_bytes: Counter::new(
                "felix_policy_rule_bytes_total",
                "Bytes each policy and profile rule counted (the busiest rules).",
                RULE_LABELS,
            ),
            rule_series_left_out: Gauge::new(
                "felix_policy_rule_series_left_out",
                "Counted rules left out of the rule counters by the cardinality guard.",
                &[],
            ),
            ipam_leaks_released: Counter::new(
                "felix_ipam_leaked_addresses_released_total",
                "Leaked IPAM addresses the leak collector released, by reason.",
                &["reason"],
            ),
            ipam_leaks_seen: Gauge::new(
                "felix_ipam_leaked_addresses",
                "Leaked IPAM addresses the leak collector's last scan found (on its leader).",
                &[],
            ),
            ipam_gc_leader: Gauge::new(
                "felix_ipam_gc_leader",
                "1 while this felix is the elected leak collector.",
                &[],
            ),
            bgp_peers: Gauge::new("felix_bgp_peers", "BGP peers by session state.", &["state"]),
            bgp_peer_state: Gauge::new(
                "felix_bgp_peer_state",
                "Each BGP peer's session state (1 for the current one).",
                &["peer", "state"],
            ),
            bgp_prefixes: Gauge::new(
                "felix_bgp_prefixes_received",
                "Prefixes accepted from each BGP peer.",
                &["peer"],
            ),
            bgp_advertised: Gauge::new(
                "felix_bgp_prefixes_advertised",
                "Prefixes advertised to each BGP peer.",
                &["peer"],
            ),
            bgp_flaps: Counter::new(
                "felix_bgp_session_flaps_total",
                "Established sessions with each BGP peer that ended.",
                &["peer"],
            ),
            bgp_last_error: Gauge::new(
                "felix_bgp_peer_last_error",
                "Why each BGP peer's session last failed (1 for the error; no series without one).",
                &["peer", "error"],
            ),
            bgp: Mutex::new(None),
            live: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            busy_since: Mutex::new(None),
            stuck_after_ms: AtomicU64::new(STUCK_AFTER.as_millis() as u64),
        }
    }

    /// Where BGP peer figures come from at each scrape.
    pub fn set_bgp_status(&self, source: Arc<dyn BgpStatus>) {
        *self.bgp.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
    /// Marks the start (`true`) or end of one step of the loop.
    pub fn set_busy(&self, busy: bool) {
        *self.busy_since.lock().unwrap_or_else(|e| e.into_inner()) = busy.then(Instant::now);
    }
    /// Changes how long one step may take (default [`STUCK_AFTER`]).
    pub fn set_stuck_after(&self, limit: Duration) {
        self.stuck_after_ms
            .store(limit.as_millis() as u64, Ordering::Release);
    }
    /// The loop runs and is not stuck in one step.
    pub fn live(&self) -> bool {
        let limit = Duration::from_millis(self.stuck_after_ms.load(Ordering::Acquire));
        let busy = *self.busy_since.lock().unwrap_or_else(|e| e.into_inner());
        self.live.load(Ordering::Acquire) && busy.is_none_or(|since| since.elapsed() <= limit)
    }
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let source = self.bgp.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(source) = source {
            let peers = source.peers();
            let mut by_state: BTreeMap<String, f64> = BTreeMap::new();
            for p in &peers {
                *by_state.entry(p.state.clone()).or_default() += 1.0;
            }
            self.bgp_peers
                .replace_all(by_state.into_iter().map(|(s, n)| (vec![s], n)));
            let per_peer = |value: fn(&PeerStatus) -> f64| {
                peers
                    .iter()
                    .map(move |p| (vec![p.address.to_string()], value(p)))
            };
            self.bgp_prefixes
                .replace_all(per_peer(|p| p.prefixes as f64));
            self.bgp_advertised
                .replace_all(per_peer(|p| p.advertised as f64));
            self.bgp_flaps
                .replace_all(peers.iter().map(|p| (vec![p.address.to_string()], p.flaps)));
            self.bgp_peer_state.replace_all(
                peers
                    .iter()
                    .map(|p| (vec![p.address.to_string(), p.state.clone()], 1.0)),
            );
            self.bgp_last_error
                .replace_all(peers.iter().filter_map(|p| {
                    let error = p.last_error.clone()?;
                    Some((vec![p.address.to_string(), error], 1.0))
                }));
        }
        let mut out = String::new();
        self.endpoints.render(&mut out);
        self.policies.render(&mut out);
        self.rules.render(&mut out);
        self.sets.render(&mut out);
        self.apply_seconds.render(&mut out);
        self.apply_errors.render(&mut out);
        self.resyncs.render(&mut out);
        self.calc_problems.render(&mut out);
        self.flowlog_events.render(&mut out);
        self.rule_packets.render(&mut out);
        self.rule_bytes.render(&mut out);
        self.rule_series_left_out.render(&mut out);
        self.policy_compiles.render(&mut out);
        self.ipam_leaks_released.render(&mut out);
        self.ipam_leaks_seen.render(&mut out);
        self.ipam_gc_leader.render(&mut out);
        self.bgp_peers.render(&mut out);
        self.bgp_peer_state.render(&mut out);
        self.bgp_prefixes.render(&mut out);
        self.bgp_advertised.render(&mut out);
        self.bgp_flaps.render(&mut out);
        self.bgp_last_error.render(&mut out);
        out
    }

    /// The response to `GET path`: status code, content type and body.
    pub fn respond(&self, path: &str) -> (u16, &'static str, String) {
        let health = |ok: bool| {
            if ok {
                (200, "text/plain", "ok\n".to_string())
            } else {
                (503, "text/plain", "not ready\n".to_string())
            }
        };
        match path {
            "/metrics" => (200, "text/plain; version=0.0.4", self.render()),
            "/liveness" => health(self.live()),
            "/readiness" => health(self.ready()),
            _ => (404, "text/plain", "not found\n".to_string()),
        }
    }
}

/// Longest request head accepted.
const MAX_REQUEST: usize = 8192;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics`, `/liveness` and `/readiness` on `listener` until the
/// task is dropped; each connection is one request, answered and closed.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(%error, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(error) = answer(stream, &metrics).await {
                tracing::debug!(%error, "metrics connection");
            }
        });
    }
}

/// Reads one request head and writes the response.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let head = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok::<_, std::io::Error>(Some(end));
            }
            if buf.len() > MAX_REQUEST {
                return Ok(None);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or(Ok(None))?;
    let (status, content_type, body) = match head {
        None => (400, "text/plain", "bad request\n".to_string()),
        Some(end) => {
            let text = String::from_utf8_lossy(&buf[..end]);
            let mut parts = text.lines().next().unwrap_or_default().split(' ');
            match (parts.next(), parts.next()) {
                (Some("GET"), Some(target)) => {
                    metrics.respond(target.split('?').next().unwrap_or(target))
                }
                (Some(_), Some(_)) => (405, "text/plain", "only GET\n".to_string()),
                _ => (400, "text/plain", "bad request\n".to_string()),
            }
        }
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Peers(Vec<PeerStatus>);
    impl BgpStatus for Peers {
        fn peers(&self) -> Vec<PeerStatus> {
            self.0.clone()
        }
    }

    #[test]
    fn the_exposition_has_help_type_and_labelled_samples() {
        let m = Metrics::new();
        m.endpoints.set(&["workload"], 3.0);
        m.apply_errors.inc(&["policy"]);
        m.apply_errors.inc(&["policy"]);
        m.apply_seconds.observe(&["routes"], 0.003);
        m.apply_seconds.observe(&["routes"], 2.0);
        m.policy_compiles.inc(&["full", "first_compile"]);
        m.policy_compiles.inc(&["patched", ""]);
        let text = m.render();
        for line in [
            "# TYPE felix_active_local_endpoints gauge",
            "felix_active_local_endpoints{kind=\"workload\"} 3",
            "felix_dataplane_apply_errors_total{driver=\"policy\"} 2",
            "felix_dataplane_apply_seconds_bucket{driver=\"routes\",le=\"0.0025\"} 0",
            "felix_dataplane_apply_seconds_bucket{driver=\"routes\",le=\"0.005\"} 1",
            "felix_dataplane_apply_seconds_bucket{driver=\"routes\",le=\"2.5\"} 2",
            "felix_dataplane_apply_seconds_bucket{driver=\"routes\",le=\"+Inf\"} 2",
            "felix_dataplane_apply_seconds_sum{driver=\"routes\"} 2.003",
            "felix_dataplane_apply_seconds_count{driver=\"routes\"} 2",
            "felix_resyncs_total 0",
            "# TYPE felix_policy_compiles_total counter",
            "felix_policy_compiles_total{path=\"full\",reason=\"first_compile\"} 1",
            "felix_policy_compiles_total{path=\"patched\",reason=\"\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn bgp_peers_are_counted_by_state_at_each_scrape() {
        let m = Metrics::new();
        let peer = |a: &str, state: &str, prefixes| PeerStatus {
            address: a.parse().unwrap(),
            state: state.into(),
            prefixes,
            advertised: prefixes + 1,
            flaps: 2,
            last_error: (state == "Active").then(|| "connection refused".into()),
        };
        m.set_bgp_status(Arc::new(Peers(vec![
            peer("10.0.0.1", "Established", 4),
            peer("10.0.0.2", "Established", 1),
            peer("10.0.0.3", "Active", 0),
        ])));
        let text = m.render();
        assert!(
            text.contains("felix_bgp_peers{state=\"Established\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("felix_bgp_peers{state=\"Active\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("felix_bgp_prefixes_received{peer=\"10.0.0.1\"} 4\n"),
            "{text}"
        );
        for line in [
            "felix_bgp_peer_state{peer=\"10.0.0.3\",state=\"Active\"} 1",
            "felix_bgp_prefixes_advertised{peer=\"10.0.0.1\"} 5",
            "# TYPE felix_bgp_session_flaps_total counter",
            "felix_bgp_session_flaps_total{peer=\"10.0.0.2\"} 2",
            "felix_bgp_peer_last_error{peer=\"10.0.0.3\",error=\"connection refused\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("felix_bgp_peer_last_error{peer=\"10.0.0.1\""),
            "no error, no series: {text}"
        );
        m.set_bgp_status(Arc::new(Peers(vec![peer("10.0.0.1", "Idle", 0)])));
        let text = m.render();
        assert!(!text.contains("state=\"Established\""), "{text}");
    }

    #[test]
    fn liveness_fails_while_one_step_takes_too_long() {
        let m = Metrics::new();
        assert!(!m.live(), "not before the loop starts");
        m.set_live(true);
        m.set_busy(true);
        assert!(m.live(), "busy, within the limit");
        m.set_stuck_after(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert!(!m.live(), "busy beyond the limit");
        m.set_busy(false);
        assert!(m.live());
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.endpoints.set(&["a\"b\\c\nd"], 1.0);
        assert!(m.render().contains(r#"kind="a\"b\\c\nd""#));
    }

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_server_answers_metrics_and_health_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Arc::new(Metrics::new());
        let server = tokio::spawn(serve(listener, m.clone()));
        let req = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n");

        assert!(
            get(addr, &req("/liveness"))
                .await
                .starts_with("HTTP/1.1 503")
        );
        assert!(
            get(addr, &req("/readiness"))
                .await
                .starts_with("HTTP/1.1 503")
        );
        m.set_live(true);
        m.set_ready(true);
        assert!(
            get(addr, &req("/liveness"))
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            get(addr, &req("/readiness?verbose"))
                .await
                .starts_with("HTTP/1.1 200")
        );
        let metrics = get(addr, &req("/metrics")).await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        let (head, body) = metrics.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(body.contains("# TYPE felix_resyncs_total counter"));
        assert!(get(addr, &req("/nope")).await.starts_with("HTTP/1.1 404"));
        assert!(
            get(addr, "POST /metrics HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405")
        );
        assert!(
            get(addr, "garbage\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 400")
        );
        server.abort();
    }
}
