//! The etcd v3 backend: [`EtcdStore`] maps the [`KvStore`] primitives one to
//! one onto etcd's KV, Txn and Watch RPCs (through the `etcd-client` crate),
//! so revisions, compares and compaction are etcd's own.
//!
//! Mapping:
//! - `get`/`list`: Range (a prefix is `[prefix, prefix_end)`, sorted by key);
//!   `list` pages at one read revision, the one from the first response header.
//! - `txn`: Txn; `Check::Absent`/`Present` are `version = 0` / `version > 0`;
//!   puts and deletes ask for the previous key-value.
//! - `watch`: one gRPC watch stream per [`Watch`], with `prev_kv` so deletes
//!   carry the key's last state; `start <= 0` starts after the revision in
//!   the `created` response header.
//! - `compact`: Compaction; etcd's "compacted" and "future revision" errors
//!   become [`Error::Compacted`] / [`Error::FutureRevision`] with the
//!   revisions filled in (the compact revision is found by ranging at
//!   revisions: etcd refuses reads below it).
//!
//! Tasks of one [`EtcdStore`] (all its clones share the clients):
//!
//! ```text
//!  one tokio task per Watch:  gRPC watch stream --events--> mpsc --> Watch
//!     stream lost (etcd restarted, network)? re-create it from the
//!     revision after the last delivered event, with backoff, until the
//!     Watch is dropped; canceled for compaction? send Error::Compacted, end
//! ```
//!
//! Connection: one client per configured endpoint, made on first use;
//! requests go to the current endpoint and fail over to the next when it
//! cannot be reached (reads on any `Unavailable`, writes only when the
//! connection was never made, so a write is never sent twice). TLS with the
//! CA and client certificate when the endpoints are `https://` (the system
//! roots when no CA is given); user and password, with the token refreshed
//! when etcd forgets it (a restart, the TTL).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use tokio::sync::{OnceCell, mpsc};

use crate::config::EtcdConfig;
use crate::error::{Error, Result};
use crate::kv::{
    ActiveWatch, Check, KeyRange, KeyValue, KvStore, Op, OpResult, Revision, Txn, TxnResponse,
    Watch, WatchEvent,
};

/// Events buffered per watch before the watch task waits for its reader.
const WATCH_BUFFER: usize = 1024;
/// Keys per Range request when listing.
const LIST_PAGE: i64 = 1000;
/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 keep-alive: ping interval and how long to wait for the answer, so
/// a dead connection (and the watches on it) is noticed.
const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(5));
/// Backoff between attempts to re-create a lost watch stream.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// The key `revision` reads (count only) to learn the store revision: the
/// root of Calico's layout, which a restricted Calico user may read.
const PROBE_KEY: &str = "/calico/";

/// A [`KvStore`] on an etcd v3 cluster. Cheap to clone; clones share the
/// clients (their connections) and the watch counter.
#[derive(Clone)]
pub struct EtcdStore {
    cluster: Arc<Cluster>,
    /// The endpoints, comma-joined, to name the cluster in errors.
    endpoints: Arc<str>,
    active: Arc<AtomicUsize>,
}

/// The endpoints and their clients.
struct Cluster {
    urls: Vec<String>,
    options: ConnectOptions,
    /// One per URL, connected (and authenticated) on first use.
    clients: Vec<OnceCell<Client>>,
    /// Index of the endpoint requests go to first.
    current: AtomicUsize,
}

/// Whether a failed request may be sent again, to another endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: on any `Unavailable`.
    Idempotent,
    /// Writes: only when no connection was made (the request was not sent).
    NotSent,
}

impl Retry {
    fn allows(self, e: &etcd_client::Error) -> bool {
        match e {
            etcd_client::Error::GRpcStatus(s) if i32::from(s.code()) == GRPC_UNAVAILABLE => {
                self == Retry::Idempotent || s.message().contains("connect")
            }
            etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
                self == Retry::Idempotent
            }
            _ => false,
        }
    }
}

/// gRPC status code `UNAVAILABLE` (the server could not be reached).
const GRPC_UNAVAILABLE: i32 = 14;

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("active_watches", &self.active_watches())
            .finish()
    }
}

impl EtcdStore {
    /// Connects to the cluster. Without credentials nothing is sent yet
    /// (the connections are made by the first request); with a user, etcd
    /// authenticates it now (at the first endpoint that answers), so wrong
    /// credentials fail here.
    pub async fn connect(cfg: &EtcdConfig) -> Result<Self> {
        let options = connect_options(cfg)?;
        let store = Self {
            cluster: Arc::new(Cluster {
                urls: cfg.endpoints.clone(),
                options,
                clients: cfg.endpoints.iter().map(|_| OnceCell::new()).collect(),
                current: AtomicUsize::new(0),
            }),
            endpoints: cfg.endpoints.join(",").into(),
            active: Arc::new(AtomicUsize::new(0)),
        };
        let connected = store.call(Retry::Idempotent, |_| async { Ok(()) }).await;
        connected.map_err(|e| match (&cfg.username, &e) {
            (Some(user), etcd_client::Error::GRpcStatus(s))
                if s.message().contains("authentication failed") =>
            {
                Error::Backend(format!(
                    "etcd {}: authentication as user {user:?} failed: {}",
                    store.endpoints,
                    s.message()
                ))
            }
            _ => store.failed("connecting", &e),
        })?;
        Ok(store)
    }

    /// The client of endpoint `i`, connecting it if need be.
    async fn client(&self, i: usize) -> std::result::Result<&Client, etcd_client::Error> {
        let cluster = &self.cluster;
        cluster.clients[i]
            .get_or_try_init(|| Client::connect([&cluster.urls[i]], Some(cluster.options.clone())))
            .await
    }

    /// Runs `request` on the current endpoint's client; when `retry` allows,
    /// fails over to the next endpoints (each tried once) and makes the one
    /// that answered current. Returns the last error if none did.
    async fn call<T, F, Fut>(
        &self,
        retry: Retry,
        mut request: F,
    ) -> std::result::Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let n = self.cluster.urls.len();
        let first = self.cluster.current.load(Ordering::Relaxed);
        let mut last = None;
        for attempt in 0..n {
            let i = (first + attempt) % n;
            // Connecting sends nothing but the authentication: retry as a read.
            let outcome = match self.client(i).await {
                Ok(client) => request(client.clone()).await.map_err(|e| (e, retry)),
                Err(e) => Err((e, Retry::Idempotent)),
            };
            match outcome {
                Ok(value) => {
                    self.cluster.current.store(i, Ordering::Relaxed);
                    return Ok(value);
                }
                Err((e, retry)) if attempt + 1 < n && retry.allows(&e) => {
                    tracing::debug!(endpoint = %self.cluster.urls[i], error = %describe(&e),
                        "etcd endpoint unavailable; trying the next");
                    last = Some(e);
                }
                Err((e, _)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| etcd_client::Error::InvalidArgs("no endpoints".into())))
    }

    /// The error for a failed request: the cluster, what was asked, why.
    fn failed(&self, what: impl std::fmt::Display, e: &etcd_client::Error) -> Error {
        Error::Backend(format!("etcd {}: {what}: {}", self.endpoints, describe(e)))
    }

    /// The compact revision, given that a request at `requested` was refused
    /// as compacted: the lowest revision from `requested` on at which etcd
    /// still serves a read (binary search; reads below it are refused).
    async fn compact_revision_from(&self, requested: Revision) -> Result<Revision> {
        let current = self.revision().await?;
        let (mut lo, mut hi) = (requested.max(1), current);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let read = self
                .call(Retry::Idempotent, |c| async move {
                    let opts = GetOptions::new().with_count_only().with_revision(mid);
                    c.kv_client().get(PROBE_KEY, Some(opts)).await
                })
                .await;
            match read {
                Ok(_) => hi = mid,
                Err(e) if is_compacted(&e) => lo = mid + 1,
                Err(e) => return Err(self.failed(format!("reading at revision {mid}"), &e)),
            }
        }
        Ok(lo)
    }
}

/// The client options for `cfg`: TLS for `https://` endpoints, the user.
fn connect_options(cfg: &EtcdConfig) -> Result<ConnectOptions> {
    let bad = |field: &str, message: String| Error::Config {
        origin: "etcd connection".into(),
        field: field.into(),
        message,
    };
    if cfg.endpoints.is_empty() {
        return Err(bad("endpoints", "at least one endpoint is required".into()));
    }
    let https = cfg
        .endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    if https != 0 && https != cfg.endpoints.len() {
        return Err(bad(
            "endpoints",
            format!(
                "mixes http:// and https:// endpoints ({}); use one scheme",
                cfg.endpoints.join(",")
            ),
        ));
    }
    let mut options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
        .with_auto_token_refresh(true);
    if https > 0 {
        let read = |field: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| bad(field, format!("reading {}: {e}", path.display())))
        };
        let mut tls = TlsOptions::new();
        tls = match &cfg.ca_cert_file {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read("ca_cert_file", ca)?)),
            None => tls.with_native_roots(),
        };
        match (&cfg.cert_file, &cfg.key_file) {
            (Some(cert), Some(key)) => {
                let identity = Identity::from_pem(read("cert_file", cert)?, read("key_file", key)?);
                tls = tls.identity(identity);
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(bad("key_file", "a client certificate needs its key".into()));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "cert_file",
                    "a client key needs its certificate".into(),
                ));
            }
        }
        options = options.with_tls(tls);
    } else if cfg.ca_cert_file.is_some() || cfg.cert_file.is_some() {
        tracing::warn!(
            endpoints = %cfg.endpoints.join(","),
            "TLS files are ignored: the etcd endpoints are http://"
        );
    }
    if let Some(user) = &cfg.username {
        options = options.with_user(user, cfg.password.clone().unwrap_or_default());
    }
    Ok(options)
}

/// The error without the gRPC metadata noise.
fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

/// etcd's "required revision has been compacted" (mvcc `ErrCompacted`).
fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("revision has been compacted"))
}

/// The client's refusal of a response above gRPC's 4 MiB message limit
/// (a page of large values: 200 hosts' statuses, each naming 199 peers).
fn is_too_large(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("message length too large"))
}

/// etcd's "required revision is a future revision" (mvcc `ErrFutureRev`).
fn is_future_revision(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("future revision"))
}

/// A range as etcd takes it: `"\0"` for an empty start (every key) or for
/// no end (every key from the start).
fn etcd_range(range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
    let start = if range.start.is_empty() {
        vec![0]
    } else {
        range.start.clone()
    };
    (start, range.end.clone().unwrap_or_else(|| vec![0]))
}

fn convert(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv.key_str().map_err(|e| Error::InvalidValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        message: format!("key is not UTF-8: {e}"),
    })?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
    })
}

fn convert_opt(kv: Option<&etcd_client::KeyValue>) -> Result<Option<KeyValue>> {
    kv.map(convert).transpose()
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>, what: &str) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| Error::Backend(format!("etcd answered {what} without a header")))
}

fn etcd_compare(c: &crate::kv::Compare) -> etcd_client::Compare {
    use etcd_client::Compare as C;
    let key = c.key.as_bytes();
    match &c.check {
        Check::Value(v) => C::value(key, CompareOp::Equal, v.clone()),
        Check::ModRevision(r) => C::mod_revision(key, CompareOp::Equal, *r),
        Check::CreateRevision(r) => C::create_revision(key, CompareOp::Equal, *r),
        Check::Version(v) => C::version(key, CompareOp::Equal, *v),
        Check::Absent => C::version(key, CompareOp::Equal, 0),
        Check::Present => C::version(key, CompareOp::Greater, 0),
    }
}

fn etcd_op(op: &Op) -> TxnOp {
    match op {
        Op::Put { key, value } => TxnOp::put(
            key.as_bytes(),
            value.clone(),
            Some(PutOptions::new().with_prev_key()),
        ),
        Op::Delete { key } => {
            TxnOp::delete(key.as_bytes(), Some(DeleteOptions::new().with_prev_key()))
        }
        Op::Get { key } => TxnOp::get(key.as_bytes(), None),
    }
}

fn op_result(resp: TxnOpResponse) -> Result<OpResult> {
    Ok(match resp {
        TxnOpResponse::Put(put) => OpResult::Put {
            prev: convert_opt(put.prev_key())?,
        },
        TxnOpResponse::Delete(del) => OpResult::Delete {
            prev: convert_opt(del.prev_kvs().first())?,
        },
        TxnOpResponse::Get(get) => OpResult::Get {
            kv: convert_opt(get.kvs().first())?,
        },
        TxnOpResponse::Txn(_) => {
            return Err(Error::Backend(
                "etcd answered a nested transaction that was never sent".into(),
            ));
        }
    })
}

fn watch_event(event: &etcd_client::Event) -> Result<WatchEvent> {
    let kv = event
        .kv()
        .ok_or_else(|| Error::Backend("etcd sent a watch event without a key".into()))?;
    Ok(match event.event_type() {
        EventType::Put => WatchEvent::Put(convert(kv)?),
        EventType::Delete => WatchEvent::Delete {
            key: convert(kv)?.key,
            mod_revision: kv.mod_revision(),
            prev: convert_opt(event.prev_kv())?,
        },
    })
}

/// Why a watch stream could not be (re)created.
enum CreateError {
    /// Worth retrying: the connection failed or etcd is not serving yet.
    Transient(String),
    /// Final: etcd refused the watch.
    Refused(Error),
}

impl EtcdStore {
    /// Opens a watch stream on `range` from `start` (0: from the next write)
    /// and waits for etcd to confirm it. Returns the stream and the revision
    /// of the `created` response header.
    async fn create_watch(
        &self,
        range: &KeyRange,
        start: Revision,
    ) -> std::result::Result<(WatchStream, Revision), CreateError> {
        let (key, end) = etcd_range(range);
        let opts = WatchOptions::new()
            .with_range(end)
            .with_prev_key()
            .with_start_revision(start);
        let transient = |e: &etcd_client::Error| {
            CreateError::Transient(format!(
                "etcd {}: watch {range}: {}",
                self.endpoints,
                describe(e)
            ))
        };
        let mut stream = self
            .call(Retry::Idempotent, |c| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { c.watch_client().watch(key, Some(opts)).await }
            })
            .await
            .map_err(|e| transient(&e))?;
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                return Err(CreateError::Transient(format!(
                    "etcd {}: watch {range}: stream closed before the watch was created",
                    self.endpoints
                )));
            }
            Err(e) => return Err(transient(&e)),
        };
        if resp.canceled() {
            return Err(CreateError::Refused(self.cancellation(&resp, start)));
        }
        if !resp.created() {
            return Err(CreateError::Refused(Error::Backend(format!(
                "etcd {}: watch {range}: expected the created response, got {resp:?}",
                self.endpoints
            ))));
        }
        let created_at = header_revision(resp.header(), "a watch").map_err(CreateError::Refused)?;
        Ok((stream, created_at))
    }

    /// Reads `range` page by page into `kvs`, at `revision` (0: the
    /// current one); returns the revision read at, or `None` when it was
    /// compacted between pages.
    async fn list_range(
        &self,
        range: &KeyRange,
        mut revision: Revision,
        kvs: &mut Vec<KeyValue>,
    ) -> Result<Option<Revision>> {
        let (mut from, end) = etcd_range(range);
        // Keys per page, halved while a page is too large for one message.
        let mut limit = LIST_PAGE;
        loop {
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(limit)
                .with_revision(revision);
            let page = self
                .call(Retry::Idempotent, |c| {
                    let (from, opts) = (from.clone(), opts.clone());
                    async move { c.kv_client().get(from, Some(opts)).await }
                })
                .await;
            let resp = match page {
                Ok(resp) => resp,
                Err(e) if revision > 0 && is_compacted(&e) => return Ok(None),
                Err(e) if limit > 1 && is_too_large(&e) => {
                    limit = (limit / 2).max(1);
                    tracing::debug!(%range, limit, "a list page was too large; reading fewer keys a page");
                    continue;
                }
                Err(e) => return Err(self.failed(format!("list {range}"), &e)),
            };
            if revision == 0 {
                revision = header_revision(resp.header(), "a range")?;
            }
            for item in resp.kvs() {
                kvs.push(convert(item)?);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(Some(revision)),
            }
        }
    }

    /// The error a canceled watch response stands for.
    fn cancellation(&self, resp: &etcd_client::WatchResponse, requested: Revision) -> Error {
        if resp.compact_revision() > 0 {
            Error::Compacted {
                requested,
                compact_revision: resp.compact_revision(),
            }
        } else {
            Error::Backend(format!(
                "etcd {}: watch canceled: {}",
                self.endpoints,
                resp.cancel_reason()
            ))
        }
    }
}

/// The watch task: forwards events; when the stream is lost, re-creates it
/// from `next` (the revision after the last delivered event), so nothing is
/// lost or repeated. Ends when the [`Watch`] is dropped or on a final error.
async fn run_watch(
    store: EtcdStore,
    range: KeyRange,
    mut stream: WatchStream,
    mut next: Revision,
    tx: mpsc::Sender<Result<WatchEvent>>,
    _active: ActiveWatch,
) {
    loop {
        let lost = loop {
            let message = tokio::select! {
                m = stream.message() => m,
                () = tx.closed() => return,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => break "the stream ended".to_owned(),
                Err(e) => break describe(&e),
            };
            if resp.canceled() {
                let _ = tx.send(Err(store.cancellation(&resp, next))).await;
                return;
            }
            // etcd never splits one revision's events across responses.
            for event in resp.events() {
                let event = watch_event(event);
                let failed = event.is_err();
                if let Ok(e) = &event {
                    next = e.revision() + 1;
                }
                if tx.send(event).await.is_err() || failed {
                    return;
                }
            }
        };
        tracing::warn!(endpoints = %store.endpoints, %range, next, reason = %lost,
            "etcd watch stream lost; re-creating it");
        drop(stream);
        let mut delay = RETRY_MIN;
        stream = loop {
            match store.create_watch(&range, next).await {
                Ok((s, _)) => break s,
                Err(CreateError::Refused(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Err(CreateError::Transient(reason)) => {
                    tracing::debug!(%reason, ?delay, "re-creating the etcd watch failed; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = tx.closed() => return,
            }
            delay = (delay * 2).min(RETRY_MAX);
        };
        tracing::info!(endpoints = %store.endpoints, %range, next, "etcd watch resumed");
    }
}

#[async_trait]
impl KvStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .call(Retry::Idempotent, |c| async move {
                c.kv_client().get(key, None).await
            })
            .await
            .map_err(|e| self.failed(format!("get {key}"), &e))?;
        convert_opt(resp.kvs().first())
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        self.list_ranges(&[KeyRange::prefix(prefix)]).await
    }

    /// The first page fixes the read revision; every later page, of every
    /// range, reads at it (all start over if compaction overtakes it).
    async fn list_ranges(&self, ranges: &[KeyRange]) -> Result<(Vec<KeyValue>, Revision)> {
        'again: loop {
            let mut kvs = Vec::new();
            let mut revision = 0;
            for range in ranges {
                match self.list_range(range, revision, &mut kvs).await? {
                    Some(read_at) => revision = read_at,
                    None => continue 'again,
                }
            }
            if revision == 0 {
                revision = self.revision().await?;
            }
            kvs.sort_by(|a, b| a.key.cmp(&b.key));
            kvs.dedup_by(|a, b| a.key == b.key);
            return Ok((kvs, revision));
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        txn.check()?;
        let request = etcd_client::Txn::new()
            .when(txn.compares.iter().map(etcd_compare).collect::<Vec<_>>())
            .and_then(txn.success.iter().map(etcd_op).collect::<Vec<_>>())
            .or_else(txn.failure.iter().map(etcd_op).collect::<Vec<_>>());
        let resp = self
            .call(Retry::NotSent, |c| {
                let request = request.clone();
                async move { c.kv_client().txn(request).await }
            })
            .await
            .map_err(|e| {
                let keys: std::collections::BTreeSet<&str> = txn
                    .compares
                    .iter()
                    .map(|c| c.key.as_str())
                    .chain(txn.success.iter().chain(&txn.failure).map(Op::key))
                    .collect();
                self.failed(format!("txn on {keys:?}"), &e)
            })?;
        Ok(TxnResponse {
            succeeded: resp.succeeded(),
            revision: header_revision(resp.header(), "a txn")?,
            results: resp
                .op_responses()
                .into_iter()
                .map(op_result)
                .collect::<Result<_>>()?,
        })
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch> {
        self.watch_ranges(&[KeyRange::prefix(prefix)], start_revision)
            .await
    }

    /// A watch of etcd's per range, all from one revision: with several,
    /// their events meet in one more task, which ends the watch at the first
    /// error (the others then stop).
    async fn watch_ranges(&self, ranges: &[KeyRange], start_revision: Revision) -> Result<Watch> {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        if ranges.is_empty() {
            // Nothing to follow: a watch that delivers nothing, until dropped.
            tokio::spawn(async move { tx.closed().await });
            return Ok(Watch::new(rx));
        }
        let mut start = start_revision.max(0);
        for range in ranges {
            let (stream, created_at) =
                self.create_watch(range, start).await.map_err(|e| match e {
                    CreateError::Transient(message) => Error::Backend(message),
                    CreateError::Refused(e) => e,
                })?;
            // With start 0 etcd watches from the revision after the header's;
            // the other ranges then start there too.
            if start == 0 {
                start = created_at + 1;
            }
            let active = ActiveWatch::new(&self.active);
            tokio::spawn(run_watch(
                self.clone(),
                range.clone(),
                stream,
                start,
                tx.clone(),
                active,
            ));
        }
        drop(tx);
        let watch = Watch::new(rx);
        // Several ranges: one more task ends the watch at the first error.
        Ok(if ranges.len() == 1 {
            watch
        } else {
            watch.filtered(|_| true)
        })
    }

    async fn revision(&self) -> Result<Revision> {
        let resp = self
            .call(Retry::Idempotent, |c| async move {
                let opts = GetOptions::new().with_count_only();
                c.kv_client().get(PROBE_KEY, Some(opts)).await
            })
            .await
            .map_err(|e| self.failed("reading the revision", &e))?;
        header_revision(resp.header(), "a range")
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let compacted = self
            .call(Retry::NotSent, |c| async move {
                c.kv_client().compact(revision, None).await
            })
            .await;
        match compacted {
            Ok(_) => Ok(()),
            Err(e) if is_compacted(&e) => Err(Error::Compacted {
                requested: revision,
                compact_revision: self.compact_revision_from(revision).await?,
            }),
            Err(e) if is_future_revision(&e) => Err(Error::FutureRevision {
                requested: revision,
                current: self.revision().await?,
            }),
            Err(e) => Err(self.failed(format!("compact to {revision}"), &e)),
        }
    }

    fn active_watches(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_cover_exactly_the_prefix() {
        assert_eq!(
            etcd_range(&KeyRange::prefix("/a/b/")),
            (b"/a/b/".to_vec(), b"/a/b0".to_vec())
        );
        assert_eq!(etcd_range(&KeyRange::prefix("")), (vec![0], vec![0]));
    }

    #[test]
    fn mixed_endpoint_schemes_are_refused() {
        let cfg = EtcdConfig {
            endpoints: vec!["http://127.0.0.1:1".into(), "https://127.0.0.1:2".into()],
            ..EtcdConfig::default()
        };
        let err = connect_options(&cfg).unwrap_err();
        assert!(
            matches!(&err, Error::Config { field, .. } if field == "endpoints"),
            "{err:?}"
        );
    }

    #[test]
    fn an_unreadable_ca_file_is_named() {
        let cfg = EtcdConfig {
            endpoints: vec!["https://127.0.0.1:1".into()],
            ca_cert_file: Some("/nonexistent/ca.pem".into()),
            ..EtcdConfig::default()
        };
        let err = connect_options(&cfg).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/ca.pem"), "{message}");
        assert!(message.contains("ca_cert_file"), "{message}");
    }
}
