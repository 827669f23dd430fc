//! The embedded backend: one SQLite file shared by every process on a host
//! (the CLI and the agents), WAL mode, each write transaction under
//! `BEGIN IMMEDIATE` with a busy timeout.
//!
//! Tables:
//! - `kv(key, value, create_revision, mod_revision, version)`: current state;
//! - `log(revision, seq, key, deleted, value, create_revision, mod_revision, version)`:
//!   one row per change, the key's new state for a put, its last state for a
//!   delete; `seq` orders the changes of one revision;
//! - `meta(name, value)`: `revision`, `compact_revision`, `schema_version`.
//!
//! Tasks and threads of one [`SqliteStore`] (all its clones):
//!
//! ```text
//!  writer (spawn_blocking) --commit--> notify (watch::Sender<Revision>) <--+
//!                                          |                            |
//!  sqlite-commits thread (commits): woken by inotify on the WAL (each  |
//!  writer announces its commits), else every fallback period; checks    |
//!  PRAGMA data_version, publishes the revision when another connection  |
//!  (or process) committed -----------------------------------------------+
//!                                          v
//!  one tokio task per Watch: read log rows after its cursor
//!  (spawn_blocking), send them on its mpsc; wait for notify; stop when
//!  the Watch is dropped
//! ```
//!
//! rusqlite is blocking, so every query runs in `spawn_blocking`.
//!
//! [`commits`] owns how another process's commit is noticed: inotify on the
//! WAL, the writers' announcement, the fallback check.

mod commits;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::kv::{
    ActiveWatch, KeyRange, KeyValue, KvStore, Op, OpResult, Revision, Txn, TxnResponse, Watch,
    WatchEvent,
};

/// How often, by default, watches check for other processes' commits that
/// no inotify event announced (see [`commits`]).
pub const DEFAULT_FALLBACK_CHECK: Duration = Duration::from_secs(1);
/// How long a writer waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Log rows read per watch fetch.
const WATCH_BATCH: usize = 512;
/// Events buffered per watch before the watch task waits for its reader.
const WATCH_BUFFER: usize = 1024;
const SCHEMA_VERSION: i64 = 1;
/// Revisions of history kept by default (see [`SqliteStore::open_with_retention`]).
pub const DEFAULT_RETAINED_REVISIONS: Revision = 100_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    key BLOB NOT NULL,
    deleted INTEGER NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 1), ('compact_revision', 0);
";

/// How a [`SqliteStore`] is opened ([`SqliteStore::open_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Revisions of history kept by automatic compaction (`None`: keep
    /// everything until [`KvStore::compact`]).
    pub retain: Option<Revision>,
    /// How often watches look for other processes' commits without an
    /// inotify event; where inotify is unavailable they look every 20 ms
    /// instead (if that is sooner).
    pub fallback_check: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            retain: Some(DEFAULT_RETAINED_REVISIONS),
            fallback_check: DEFAULT_FALLBACK_CHECK,
        }
    }
}

/// A [`KvStore`] on one SQLite file. Cheap to clone; clones share the
/// connections, the commit watcher and the watch counter.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// The connection for write transactions; the mutex serialises this
    /// handle's writers (other processes are serialised by SQLite's lock).
    write: Mutex<Connection>,
    /// The connection for reads (get, list, watch fetches), so reads never
    /// queue behind a writer waiting for another process's lock.
    read: Mutex<Connection>,
    /// The highest revision known to be committed; watch tasks wait on it.
    notify: watch::Sender<Revision>,
    /// Watch tasks still running.
    active: Arc<AtomicUsize>,
    /// Revisions of history kept by automatic compaction (`None`: keep all).
    retain: Option<Revision>,
    /// The commit watcher's fallback period.
    fallback_check: Duration,
    commit_watcher: Once,
}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directories) the store at
    /// `path` and brings its schema up to date, keeping
    /// [`DEFAULT_RETAINED_REVISIONS`] of history. Blocking.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_retention(path, Some(DEFAULT_RETAINED_REVISIONS))
    }

    /// As [`SqliteStore::open`], with automatic compaction keeping the last
    /// `retain` revisions of history (as etcd's revision auto-compaction):
    /// once the history is twice that long, a write compacts it back down.
    /// `None` keeps everything until [`KvStore::compact`].
    pub fn open_with_retention(path: impl AsRef<Path>, retain: Option<Revision>) -> Result<Self> {
        Self::open_with(
            path,
            SqliteOptions {
                retain,
                ..SqliteOptions::default()
            },
        )
    }

    /// As [`SqliteStore::open`], with `options`. Blocking.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let SqliteOptions {
            retain,
            fallback_check,
        } = options;
        let path = path.as_ref().to_path_buf();
        if let Some(r) = retain.filter(|r| *r < 1) {
            return Err(Error::Backend(format!(
                "retention must be at least 1 revision, got {r}"
            )));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::Backend(format!("creating directory {}: {e}", parent.display()))
            })?;
        }
        let mut write = open_connection(&path)?;
        let revision = match current_revision(&mut write) {
            Some(revision) => revision,
            None => set_up_schema(&mut write, &path)?,
        };
        let read = open_connection(&path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                write: Mutex::new(write),
                read: Mutex::new(read),
                notify: watch::Sender::new(revision),
                active: Arc::new(AtomicUsize::new(0)),
                retain,
                fallback_check,
                commit_watcher: Once::new(),
            }),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::Backend(format!("blocking task failed: {e}")))?
    }

    /// Starts the commit watcher thread once per store. Its inotify watch
    /// is in place before this returns, so no later commit goes unnoticed.
    fn ensure_commit_watcher(&self) {
        self.inner.commit_watcher.call_once(|| {
            let weak = Arc::downgrade(&self.inner);
            let path = self.inner.path.clone();
            let fallback = self.inner.fallback_check;
            let events = commits::WalEvents::watch(&path)
                .inspect_err(|e| {
                    tracing::warn!(error = %e, path = %path.display(),
                        "no inotify on the store's directory; polling for other processes' commits");
                })
                .ok();
            let spawned = std::thread::Builder::new()
                .name("sqlite-commits".into())
                .spawn(move || commits::run(&path, &weak, events, fallback));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the sqlite commit watcher; cross-process watches will not see changes");
            }
        });
    }
}

impl Inner {
    /// Wakes the watch tasks if `revision` is new.
    fn publish(&self, revision: Revision) {
        self.notify.send_if_modified(|known| {
            let newer = revision > *known;
            if newer {
                *known = revision;
            }
            newer
        });
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| Error::Backend(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Backend(format!(
            "{}: cannot switch to WAL journal mode (got {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// The revision of a store whose schema is already this build's, read
/// without the write lock (the common case: every process but the first
/// opens an existing store); `None` for anything else, which
/// [`set_up_schema`] then handles.
fn current_revision(conn: &mut Connection) -> Option<Revision> {
    let tx = conn.transaction().ok()?;
    let version = meta(&tx, "schema_version").ok()?;
    let revision = meta(&tx, "revision").ok()?;
    tx.commit().ok()?;
    (version == SCHEMA_VERSION).then_some(revision)
}

/// Creates what is missing of the schema under the write lock, checks its
/// version; the revision.
fn set_up_schema(conn: &mut Connection, path: &Path) -> Result<Revision> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    let version: Option<i64> = tx
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match version {
        None => {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(Error::Backend(format!(
                "{}: schema version {other} is not supported (this build knows {SCHEMA_VERSION})",
                path.display()
            )));
        }
    }
    let revision = meta(&tx, "revision")?;
    tx.commit()?;
    Ok(revision)
}

/// A poisoned mutex only means a thread panicked while holding it; the
/// connection is still consistent (an open transaction rolls back on drop).
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn meta(conn: &Connection, name: &str) -> Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .map_err(|e| Error::Backend(format!("reading meta {name}: {e}")))
}

fn set_meta(conn: &Connection, name: &str, value: i64) -> Result<()> {
    conn.execute(
        "UPDATE meta SET value = ?2 WHERE name = ?1",
        params![name, value],
    )?;
    Ok(())
}

fn decode_key(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| Error::InvalidValue {
        key: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        message: format!("key is not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
    })
}

/// Reads `key, value, create_revision, mod_revision, version` from columns
/// `first..first + 5`.
fn row_kv(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<(Vec<u8>, KeyValue)> {
    Ok((
        row.get(first)?,
        KeyValue {
            key: String::new(),
            value: row.get(first + 1)?,
            create_revision: row.get(first + 2)?,
            mod_revision: row.get(first + 3)?,
            version: row.get(first + 4)?,
        },
    ))
}

fn finish_kv((key, kv): (Vec<u8>, KeyValue)) -> Result<KeyValue> {
    Ok(KeyValue {
        key: decode_key(key)?,
        ..kv
    })
}

fn get_kv(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    conn.query_row(
        "SELECT key, value, create_revision, mod_revision, version FROM kv WHERE key = ?1",
        [key.as_bytes()],
        |r| row_kv(r, 0),
    )
    .optional()?
    .map(finish_kv)
    .transpose()
}

fn list_kv(conn: &Connection, range: &KeyRange) -> Result<Vec<KeyValue>> {
    const COLUMNS: &str = "SELECT key, value, create_revision, mod_revision, version FROM kv";
    let rows = match &range.end {
        Some(end) => conn
            .prepare_cached(&format!(
                "{COLUMNS} WHERE key >= ?1 AND key < ?2 ORDER BY key"
            ))?
            .query_map(params![range.start, end], |r| row_kv(r, 0))?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => conn
            .prepare_cached(&format!("{COLUMNS} WHERE key >= ?1 ORDER BY key"))?
            .query_map(params![range.start], |r| row_kv(r, 0))?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    rows.into_iter().map(finish_kv).collect()
}

fn append_log(
    conn: &Connection,
    seq: i64,
    revision: Revision,
    deleted: bool,
    kv: &KeyValue,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO log (revision, seq, key, deleted, value, create_revision, mod_revision, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        revision,
        seq,
        kv.key.as_bytes(),
        deleted,
        kv.value,
        kv.create_revision,
        kv.mod_revision,
        kv.version
    ])?;
    Ok(())
}

/// Executes `txn` in one `BEGIN IMMEDIATE` transaction, compacting history
/// beyond `retain` revisions on the way; whether it wrote anything.
fn run_txn(
    conn: &mut Connection,
    txn: &Txn,
    retain: Option<Revision>,
) -> Result<(TxnResponse, bool)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = meta(&tx, "revision")?;
    let mut succeeded = true;
    for compare in &txn.compares {
        if !compare.holds(get_kv(&tx, &compare.key)?.as_ref()) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let revision = current + 1;
    let mut writes = 0;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Get { key } => results.push(OpResult::Get {
                kv: get_kv(&tx, key)?,
            }),
            Op::Put { key, value } => {
                let prev = get_kv(&tx, key)?;
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                    mod_revision: revision,
                    version: prev.as_ref().map_or(1, |p| p.version + 1),
                };
                tx.prepare_cached(
                    "INSERT INTO kv (key, value, create_revision, mod_revision, version)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                         create_revision = excluded.create_revision,
                         mod_revision = excluded.mod_revision, version = excluded.version",
                )?
                .execute(params![
                    key.as_bytes(),
                    kv.value,
                    kv.create_revision,
                    kv.mod_revision,
                    kv.version
                ])?;
                append_log(&tx, writes, revision, false, &kv)?;
                writes += 1;
                results.push(OpResult::Put { prev });
            }
            Op::Delete { key } => {
                let prev = get_kv(&tx, key)?;
                if let Some(p) = &prev {
                    tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                        .execute([key.as_bytes()])?;
                    append_log(&tx, writes, revision, true, p)?;
                    writes += 1;
                }
                results.push(OpResult::Delete { prev });
            }
        }
    }
    let revision = if writes > 0 {
        set_meta(&tx, "revision", revision)?;
        if let Some(retain) = retain {
            let compacted = meta(&tx, "compact_revision")?;
            if revision - compacted > 2 * retain {
                compact_log(&tx, revision - retain)?;
            }
        }
        revision
    } else {
        current
    };
    tx.commit()?;
    Ok((
        TxnResponse {
            succeeded,
            revision,
            results,
        },
        writes > 0,
    ))
}

/// Drops the history below `revision` and records it as the compact revision.
fn compact_log(conn: &Connection, revision: Revision) -> Result<()> {
    conn.execute("DELETE FROM log WHERE revision < ?1", [revision])?;
    set_meta(conn, "compact_revision", revision)
}

/// What one watch fetch saw, read in one snapshot.
struct Fetch {
    events: Vec<(Revision, i64, WatchEvent)>,
    /// The revision of the first matching row left for the next fetch.
    more: Option<Revision>,
    revision: Revision,
    compact_revision: Revision,
}

fn fetch_log(conn: &mut Connection, ranges: &[KeyRange], after: (Revision, i64)) -> Result<Fetch> {
    let tx = conn.transaction()?;
    let revision = meta(&tx, "revision")?;
    let compact_revision = meta(&tx, "compact_revision")?;
    let mut keys = Vec::new();
    let mut values: Vec<rusqlite::types::Value> = vec![after.0.into(), after.1.into()];
    for range in ranges {
        values.push(range.start.clone().into());
        let from = format!("key >= ?{}", values.len());
        keys.push(match &range.end {
            Some(end) => {
                values.push(end.clone().into());
                format!("({from} AND key < ?{})", values.len())
            }
            None => from,
        });
    }
    let sql =
        format!(
        "SELECT revision, seq, deleted, key, value, create_revision, mod_revision, version FROM log
         WHERE (revision, seq) > (?1, ?2) AND ({})
         ORDER BY revision, seq LIMIT {}",
        if keys.is_empty() { "0".to_owned() } else { keys.join(" OR ") },
        WATCH_BATCH + 1
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<_> {
        Ok((
            r.get::<_, Revision>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, bool>(2)?,
            row_kv(r, 3)?,
        ))
    };
    let rows = stmt
        .query_map(rusqlite::params_from_iter(values), map)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(stmt);
    tx.commit()?;
    let mut rows = rows;
    let more = (rows.len() > WATCH_BATCH).then(|| rows[WATCH_BATCH].0);
    rows.truncate(WATCH_BATCH);
    let events = rows
        .into_iter()
        .map(|(rev, seq, deleted, kv)| {
            let kv = finish_kv(kv)?;
            let event = if deleted {
                WatchEvent::Delete {
                    key: kv.key.clone(),
                    mod_revision: rev,
                    prev: Some(kv),
                }
            } else {
                WatchEvent::Put(kv)
            };
            Ok((rev, seq, event))
        })
        .collect::<Result<_>>()?;
    Ok(Fetch {
        events,
        more,
        revision,
        compact_revision,
    })
}

/// The watch task: delivers log rows after the cursor until the receiver is
/// dropped or the history it needs is compacted away.
async fn run_watch(
    store: SqliteStore,
    ranges: Vec<KeyRange>,
    start: Revision,
    tx: mpsc::Sender<Result<WatchEvent>>,
    mut notified: watch::Receiver<Revision>,
    _active: ActiveWatch,
) {
    // Position after the last delivered row, and the first revision not yet
    // fully delivered (what compaction must not overtake).
    let mut cursor: (Revision, i64) = (start, -1);
    let mut needed = start;
    loop {
        notified.borrow_and_update();
        let ranges_c = ranges.clone();
        let fetched = store
            .blocking(move |inner| fetch_log(&mut lock(&inner.read), &ranges_c, cursor))
            .await;
        let fetch = match fetched {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if needed < fetch.compact_revision {
            let _ = tx
                .send(Err(Error::Compacted {
                    requested: needed,
                    compact_revision: fetch.compact_revision,
                }))
                .await;
            return;
        }
        for (rev, seq, event) in fetch.events {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
            cursor = (rev, seq);
        }
        if let Some(next) = fetch.more {
            // Everything before the first row left over has been delivered.
            needed = next;
            continue;
        }
        cursor = cursor.max((fetch.revision + 1, -1));
        needed = needed.max(fetch.revision + 1);
        tokio::select! {
            changed = notified.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
        }
    }
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.blocking(move |inner| get_kv(&lock(&inner.read), &key))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        self.list_ranges(&[KeyRange::prefix(prefix)]).await
    }

    /// Every range in one read transaction: one revision.
    async fn list_ranges(&self, ranges: &[KeyRange]) -> Result<(Vec<KeyValue>, Revision)> {
        let ranges = ranges.to_vec();
        self.blocking(move |inner| {
            let mut conn = lock(&inner.read);
            let tx = conn.transaction()?;
            let mut kvs = Vec::new();
            for range in &ranges {
                kvs.extend(list_kv(&tx, range)?);
            }
            let revision = meta(&tx, "revision")?;
            tx.commit()?;
            if ranges.len() > 1 {
                kvs.sort_by(|a, b| a.key.cmp(&b.key));
                kvs.dedup_by(|a, b| a.key == b.key);
            }
            Ok((kvs, revision))
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        txn.check()?;
        self.blocking(move |inner| {
            let (resp, wrote) = run_txn(&mut lock(&inner.write), &txn, inner.retain)?;
            if wrote {
                commits::announce(&inner.path);
            }
            inner.publish(resp.revision);
            Ok(resp)
        })
        .await
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch> {
        self.watch_ranges(&[KeyRange::prefix(prefix)], start_revision)
            .await
    }

    /// One task and one query per fetch for all the ranges, so their
    /// events stay in revision order.
    async fn watch_ranges(&self, ranges: &[KeyRange], start_revision: Revision) -> Result<Watch> {
        self.ensure_commit_watcher();
        let (current, compact) = self
            .blocking(|inner| {
                let conn = lock(&inner.read);
                Ok((meta(&conn, "revision")?, meta(&conn, "compact_revision")?))
            })
            .await?;
        let start = if start_revision <= 0 {
            current + 1
        } else {
            start_revision
        };
        if start < compact {
            return Err(Error::Compacted {
                requested: start,
                compact_revision: compact,
            });
        }
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let active = ActiveWatch::new(&self.inner.active);
        let notified = self.inner.notify.subscribe();
        tokio::spawn(run_watch(
            self.clone(),
            ranges.to_vec(),
            start,
            tx,
            notified,
            active,
        ));
        Ok(Watch::new(rx))
    }

    async fn revision(&self) -> Result<Revision> {
        self.blocking(|inner| meta(&lock(&inner.read), "revision"))
            .await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.blocking(move |inner| {
            let mut conn = lock(&inner.write);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = meta(&tx, "revision")?;
            let compacted = meta(&tx, "compact_revision")?;
            if revision <= compacted {
                return Err(Error::Compacted {
                    requested: revision,
                    compact_revision: compacted,
                });
            }
            if revision > current {
                return Err(Error::FutureRevision {
                    requested: revision,
                    current,
                });
            }
            compact_log(&tx, revision)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    fn active_watches(&self) -> usize {
        self.inner.active.load(Ordering::SeqCst)
    }
}
