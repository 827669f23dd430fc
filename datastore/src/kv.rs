//! The revisioned key-value model every backend implements, with etcd v3
//! semantics: one global revision counter, bumped by exactly one per write
//! transaction; per-key `create_revision`, `mod_revision` and `version`;
//! If/Then/Else transactions; watches that replay history from a revision.
//!
//! Backends implement the primitives (`get`, `list`, `txn`, `watch`,
//! `revision`, `compact`, `active_watches`); the convenience operations
//! (`create`, `update`, `put`, `delete`) are provided on top of [`KvStore::txn`]
//! so that every backend gets exactly the same conflict semantics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// A store revision. A fresh store is at revision 1 (as etcd); the first
/// write produces revision 2.
pub type Revision = i64;

/// One key with its value and revision metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation; 1 after the create.
    pub version: i64,
}

/// One condition of a transaction, on one key. An absent key has
/// `create_revision`, `mod_revision` and `version` 0 and matches no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub check: Check,
}

/// What a [`Compare`] checks (always equality, as etcd's `=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Value(Vec<u8>),
    ModRevision(Revision),
    CreateRevision(Revision),
    Version(i64),
    /// The key does not exist (etcd: `version = 0`).
    Absent,
    /// The key exists (etcd: `version > 0`).
    Present,
}

impl Compare {
    pub fn value(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self::new(key, Check::Value(value.into()))
    }
    pub fn mod_revision(key: impl Into<String>, revision: Revision) -> Self {
        Self::new(key, Check::ModRevision(revision))
    }
    pub fn create_revision(key: impl Into<String>, revision: Revision) -> Self {
        Self::new(key, Check::CreateRevision(revision))
    }
    pub fn version(key: impl Into<String>, version: i64) -> Self {
        Self::new(key, Check::Version(version))
    }
    pub fn absent(key: impl Into<String>) -> Self {
        Self::new(key, Check::Absent)
    }
    pub fn present(key: impl Into<String>) -> Self {
        Self::new(key, Check::Present)
    }
    fn new(key: impl Into<String>, check: Check) -> Self {
        Self {
            key: key.into(),
            check,
        }
    }

    /// Whether the compare holds against the key's current state.
    /// Backends that evaluate compares themselves use this so that every
    /// backend agrees on absent-key semantics.
    pub fn holds(&self, current: Option<&KeyValue>) -> bool {
        let (create, modr, version) = current.map_or((0, 0, 0), |kv| {
            (kv.create_revision, kv.mod_revision, kv.version)
        });
        match &self.check {
            Check::Value(v) => current.is_some_and(|kv| &kv.value == v),
            Check::ModRevision(r) => modr == *r,
            Check::CreateRevision(r) => create == *r,
            Check::Version(v) => version == *v,
            Check::Absent => current.is_none(),
            Check::Present => current.is_some(),
        }
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
    Get { key: String },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }
    pub fn get(key: impl Into<String>) -> Self {
        Op::Get { key: key.into() }
    }
    /// The key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } | Op::Get { key } => key,
        }
    }
}

/// The result of one [`Op`], in the order of the executed branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The key as it was before the put, if it existed.
    Put {
        prev: Option<KeyValue>,
    },
    /// The key as it was before the delete; `None` if there was nothing to delete.
    Delete {
        prev: Option<KeyValue>,
    },
    Get {
        kv: Option<KeyValue>,
    },
}

/// An atomic If/Then/Else transaction, as etcd's `Txn`: if every compare
/// holds, `success` runs, otherwise `failure`; all at one new revision.
///
/// A branch may write (put or delete) each key at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds conditions (all must hold).
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }
    /// Adds operations run when every compare holds.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.success.extend(ops);
        self
    }
    /// Adds operations run when some compare fails.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.failure.extend(ops);
        self
    }

    /// Rejects a branch that writes one key twice (etcd refuses those too).
    pub fn check(&self) -> Result<()> {
        for branch in [&self.success, &self.failure] {
            let mut written = std::collections::BTreeSet::new();
            for op in branch.iter().filter(|op| !matches!(op, Op::Get { .. })) {
                if !written.insert(op.key()) {
                    return Err(Error::InvalidTxn(format!(
                        "key {} is written more than once in one branch",
                        op.key()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Outcome of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (the success branch ran).
    pub succeeded: bool,
    /// Store revision after the transaction: the revision of its writes if it
    /// wrote anything, else the revision it read at.
    pub revision: Revision,
    /// One result per operation of the executed branch.
    pub results: Vec<OpResult>,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key's new state.
    Put(KeyValue),
    /// The key was deleted at `mod_revision`; `prev` is its last state.
    Delete {
        key: String,
        mod_revision: Revision,
        prev: Option<KeyValue>,
    },
}

impl WatchEvent {
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
    /// Revision of the write that produced the event.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// A running watch: events in revision order (events of one revision in the
/// order the transaction wrote them). An `Err` (e.g. [`Error::Compacted`]) is
/// the last item; then the stream ends. Dropping the handle stops the watch.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<Result<WatchEvent>>,
}

impl Watch {
    /// Wraps the receiving end fed by a backend's watch task. The task must
    /// stop once the sender reports the channel closed.
    pub fn new(rx: mpsc::Receiver<Result<WatchEvent>>) -> Self {
        Self { rx }
    }

    /// The next event; `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<Result<WatchEvent>> {
        self.rx.recv().await
    }

    /// The events `keep` keeps, forwarded by a task of their own until the
    /// first error (the last item) or until the new watch is dropped.
    pub(crate) fn filtered(mut self, keep: impl Fn(&WatchEvent) -> bool + Send + 'static) -> Watch {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    item = self.next() => item,
                    () = tx.closed() => return,
                };
                let Some(item) = item else { return };
                if item.as_ref().is_ok_and(|event| !keep(event)) {
                    continue;
                }
                let last = item.is_err();
                if tx.send(item).await.is_err() || last {
                    return;
                }
            }
        });
        Watch::new(rx)
    }
}

/// A revisioned key-value store with etcd v3 semantics.
///
/// Keys are compared as bytes; `list` and `watch` take a plain byte prefix
/// (`/a/b` matches `/a/bc`; pass `/a/b/` for the children of `/a/b`).
#[async_trait]
pub trait KvStore: Send + Sync + std::fmt::Debug {
    /// The key's current state.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// All keys starting with `prefix`, sorted by key, with the store
    /// revision they were read at (watch from that + 1 to follow on).
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)>;

    /// All keys in any of `ranges`, sorted by key, read at one revision
    /// (returned, as [`KvStore::list`] does). The default lists the keys'
    /// common prefix and leaves the rest out here.
    async fn list_ranges(&self, ranges: &[KeyRange]) -> Result<(Vec<KeyValue>, Revision)> {
        let (mut kvs, revision) = self.list(&common_prefix(ranges)).await?;
        kvs.retain(|kv| ranges.iter().any(|r| r.contains(kv.key.as_bytes())));
        Ok((kvs, revision))
    }

    /// Runs a transaction atomically. Fails with [`Error::InvalidTxn`] if a
    /// branch writes one key twice.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse>;

    /// Events for keys under `prefix` with revision `>= start_revision`
    /// (`start_revision <= 0`: from the next write on). Fails with
    /// [`Error::Compacted`] if `start_revision` is below the compact revision
    /// (immediately, or as the watch's last item if compaction overtakes it).
    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch>;

    /// As [`KvStore::watch`], for the keys in any of `ranges`, so that a
    /// watcher is not sent the writes it would skip. Each key's events come
    /// in revision order; different ranges' may interleave (etcd follows
    /// each range with a watch of its own). The default watches the keys'
    /// common prefix and leaves the rest out here, in order.
    async fn watch_ranges(&self, ranges: &[KeyRange], start_revision: Revision) -> Result<Watch> {
        let inner = self.watch(&common_prefix(ranges), start_revision).await?;
        let ranges = ranges.to_vec();
        Ok(inner.filtered(move |event| ranges.iter().any(|r| r.contains(event.key().as_bytes()))))
    }

    /// The current store revision.
    async fn revision(&self) -> Result<Revision>;

    /// Drops history below `revision`; watches from earlier revisions fail
    /// with [`Error::Compacted`] afterwards. Compacting to a revision at or
    /// below the current compact revision is [`Error::Compacted`]; beyond the
    /// current revision, [`Error::FutureRevision`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Number of watch tasks of this handle still running (for metrics, and
    /// to check that dropped watches stop).
    fn active_watches(&self) -> usize;

    /// Creates the key; [`Error::AlreadyExists`] if it exists.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        let resp = self
            .txn(
                Txn::new()
                    .when([Compare::absent(key)])
                    .and_then([Op::put(key, value)]),
            )
            .await?;
        if resp.succeeded {
            Ok(resp.revision)
        } else {
            Err(Error::AlreadyExists { key: key.into() })
        }
    }

    /// Replaces the key's value if its `mod_revision` is still
    /// `expected_mod_revision`; [`Error::Conflict`] if not,
    /// [`Error::NotFound`] if the key is absent.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<Revision> {
        let resp = self
            .txn(
                Txn::new()
                    .when([
                        Compare::present(key),
                        Compare::mod_revision(key, expected_mod_revision),
                    ])
                    .and_then([Op::put(key, value)])
                    .or_else([Op::get(key)]),
            )
            .await?;
        if resp.succeeded {
            return Ok(resp.revision);
        }
        Err(cas_failure(key, expected_mod_revision, &resp))
    }

    /// Writes the key unconditionally.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        Ok(self
            .txn(Txn::new().and_then([Op::put(key, value)]))
            .await?
            .revision)
    }

    /// Deletes the key, if `expected_mod_revision` is given only while its
    /// `mod_revision` still equals it. Returns the deleted state;
    /// [`Error::NotFound`] if absent, [`Error::Conflict`] on a CAS mismatch.
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue> {
        let mut compares = vec![Compare::present(key)];
        compares.extend(expected_mod_revision.map(|r| Compare::mod_revision(key, r)));
        let resp = self
            .txn(
                Txn::new()
                    .when(compares)
                    .and_then([Op::delete(key)])
                    .or_else([Op::get(key)]),
            )
            .await?;
        if !resp.succeeded {
            return Err(cas_failure(key, expected_mod_revision.unwrap_or(0), &resp));
        }
        match resp.results.into_iter().next() {
            Some(OpResult::Delete { prev: Some(kv) }) => Ok(kv),
            other => Err(Error::Backend(format!(
                "delete of {key} succeeded but returned {other:?}"
            ))),
        }
    }
}

/// Turns the failure branch of a CAS (`or_else([get(key)])`) into the error.
fn cas_failure(key: &str, expected: Revision, resp: &TxnResponse) -> Error {
    match resp.results.first() {
        Some(OpResult::Get { kv: Some(kv) }) => Error::Conflict {
            key: key.into(),
            expected,
            actual: kv.mod_revision,
        },
        _ => Error::NotFound { key: key.into() },
    }
}

/// The exclusive upper bound of the keys starting with `prefix` (etcd's
/// "range end"): the prefix with its last byte below 0xff incremented.
/// `None` means no upper bound.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The keys from `start` up to, not including, `end` (`None`: no upper
/// bound), compared as bytes: what [`KvStore::watch_ranges`] follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// The keys starting with `prefix`.
    pub fn prefix(prefix: &str) -> KeyRange {
        KeyRange {
            start: prefix.as_bytes().to_vec(),
            end: prefix_end(prefix.as_bytes()),
        }
    }

    /// The keys starting with `prefix` and with none of `except`, in key
    /// order: the gaps that `except` (prefixes under `prefix`, or not: an
    /// excluded prefix outside it cuts nothing) leaves.
    pub fn prefix_except(prefix: &str, except: &[&str]) -> Vec<KeyRange> {
        let mut cuts: Vec<KeyRange> = except.iter().map(|e| KeyRange::prefix(e)).collect();
        cuts.sort_by(|a, b| a.start.cmp(&b.start));
        let mut out = Vec::new();
        let mut from = Some(prefix.as_bytes().to_vec());
        let whole = KeyRange::prefix(prefix);
        for cut in cuts {
            let Some(start) = from.take() else { break };
            if !whole.contains(&cut.start) || cut.end.as_ref().is_some_and(|e| *e <= start) {
                from = Some(start);
                continue;
            }
            if start < cut.start {
                out.push(KeyRange {
                    start,
                    end: Some(cut.start.clone()),
                });
            }
            // Past the cut; an unbounded cut leaves nothing after it.
            from = cut.end.filter(|e| whole.end.as_ref().is_none_or(|w| e < w));
        }
        if let Some(start) = from {
            out.push(KeyRange {
                start,
                end: whole.end,
            });
        }
        out
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_ref().is_none_or(|e| key < e.as_slice())
    }
}

impl std::fmt::Display for KeyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = self.end.as_deref().map(String::from_utf8_lossy);
        write!(
            f,
            "[{}, {})",
            String::from_utf8_lossy(&self.start),
            end.as_deref().unwrap_or("∞")
        )
    }
}

/// The longest prefix that every key of `ranges` starts with, cut to a
/// character boundary (empty when the ranges share none).
fn common_prefix(ranges: &[KeyRange]) -> String {
    let Some(first) = ranges.first() else {
        return String::new();
    };
    let mut len = first.start.len();
    for r in ranges {
        len = len.min(
            first.start[..len]
                .iter()
                .zip(&r.start)
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    // A range reaching past the keys with that prefix needs a shorter one.
    while len > 0 {
        let bound = prefix_end(&first.start[..len]);
        let within = ranges.iter().all(|r| match (&r.end, &bound) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(e), Some(b)) => e <= b,
        });
        if within {
            break;
        }
        len -= 1;
    }
    let mut prefix = &first.start[..len];
    loop {
        match std::str::from_utf8(prefix) {
            Ok(p) => return p.to_owned(),
            Err(e) => prefix = &prefix[..e.valid_up_to()],
        }
    }
}

/// Counts a running watch task for [`KvStore::active_watches`]; held by the
/// task, it decrements the count when the task ends.
#[derive(Debug)]
pub(crate) struct ActiveWatch(Arc<AtomicUsize>);

impl ActiveWatch {
    pub(crate) fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for ActiveWatch {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_less_its_exceptions_is_the_gaps_between_them() {
        let r = |start: &str, end: &str| KeyRange {
            start: start.into(),
            end: Some(end.into()),
        };
        assert_eq!(
            KeyRange::prefix_except("/a/", &["/a/s/", "/a/c/"]),
            [r("/a/", "/a/c/"), r("/a/c0", "/a/s/"), r("/a/s0", "/a0")]
        );
        // An exception outside the prefix cuts nothing; one at its start
        // leaves only what follows it.
        assert_eq!(
            KeyRange::prefix_except("/a/", &["/b/"]),
            [KeyRange::prefix("/a/")]
        );
        assert_eq!(
            KeyRange::prefix_except("/a/", &["/a/"]),
            Vec::<KeyRange>::new()
        );
        assert_eq!(
            KeyRange::prefix_except("/a/", &["/a/x"]),
            [r("/a/", "/a/x"), r("/a/y", "/a0")]
        );
        let ranges = KeyRange::prefix_except("/a/", &["/a/s/"]);
        for (key, inside) in [
            ("/a/b", true),
            ("/a/s/1", false),
            ("/a/s", true),
            ("/a/t", true),
            ("/b", false),
        ] {
            assert_eq!(
                ranges.iter().any(|r| r.contains(key.as_bytes())),
                inside,
                "{key}"
            );
        }
    }

    #[test]
    fn the_common_prefix_covers_every_range() {
        let ranges = KeyRange::prefix_except("/calico/r/", &["/calico/r/s/"]);
        assert_eq!(common_prefix(&ranges), "/calico/r/");
        let two = [
            KeyRange::prefix("/calico/r/"),
            KeyRange::prefix("/calico/ipam/"),
        ];
        assert_eq!(common_prefix(&two), "/calico/");
        // [/a/, /a0) reaches past the keys starting with "/a/b" and "/a/".
        let wide = [KeyRange::prefix("/a/b"), KeyRange::prefix("/a/")];
        assert_eq!(common_prefix(&wide), "/a/");
        let open = [KeyRange {
            start: b"/a".to_vec(),
            end: None,
        }];
        assert_eq!(common_prefix(&open), "");
        assert_eq!(common_prefix(&[KeyRange::prefix("/é")]), "/é");
    }

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/a/b"), Some(b"/a/c".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn compares_on_absent_keys_see_zero_revisions() {
        assert!(Compare::mod_revision("k", 0).holds(None));
        assert!(Compare::version("k", 0).holds(None));
        assert!(Compare::absent("k").holds(None));
        assert!(!Compare::present("k").holds(None));
        assert!(!Compare::value("k", "").holds(None));
    }

    #[test]
    fn a_branch_writing_one_key_twice_is_invalid() {
        let txn = Txn::new().and_then([Op::put("k", "1"), Op::delete("k")]);
        assert!(matches!(txn.check(), Err(Error::InvalidTxn(_))));
        let ok = Txn::new()
            .and_then([Op::put("k", "1"), Op::get("k")])
            .or_else([Op::put("k", "2")]);
        assert_eq!(ok.check(), Ok(()));
    }
}
