//! Behaviour specific to the SQLite backend, beyond the conformance suite.

use std::path::Path;
use std::time::Duration;

use datastore::{DatastoreConfig, Error, KvStore, SqliteOptions, SqliteStore, Watch, WatchEvent};

#[tokio::test]
async fn open_creates_parent_directories_and_state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/lib/calico/calico.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.revision().await.unwrap(),
        1,
        "a fresh store is at revision 1"
    );
    let rev = store.put("/k", b"v".to_vec()).await.unwrap();
    store.compact(rev).await.unwrap();
    drop(store);

    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.revision().await.unwrap(), rev);
    assert_eq!(reopened.get("/k").await.unwrap().unwrap().value, b"v");
    assert_eq!(
        reopened.compact(rev).await.unwrap_err(),
        Error::Compacted {
            requested: rev,
            compact_revision: rev
        },
        "the compact revision is persistent"
    );
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_watch_overtaken_by_compaction_ends_with_compacted() {
    const WRITES: i64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db")).unwrap();
    let start = store.revision().await.unwrap() + 1;
    for i in 0..WRITES {
        store
            .put("/lag/k", i.to_string().into_bytes())
            .await
            .unwrap();
    }
    let mut watch = store.watch("/lag/", start).await.unwrap();
    // Let the watch task fill its buffer and block mid-history.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let current = store.revision().await.unwrap();
    store.compact(current).await.unwrap();

    let mut delivered = 0;
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(WatchEvent::Put(kv)))) => {
                assert_eq!(
                    kv.mod_revision,
                    start + delivered,
                    "events in order, no gap"
                );
                delivered += 1;
            }
            Ok(Some(Ok(other))) => panic!("unexpected event {other:?}"),
            Ok(Some(Err(e))) => break e,
            Ok(None) => panic!("watch ended without an error after {delivered} events"),
            Err(_) => panic!("watch stalled after {delivered} events"),
        }
    };
    assert!(delivered < WRITES, "the watch cannot have seen all history");
    assert_eq!(
        err,
        Error::Compacted {
            requested: start + delivered,
            compact_revision: current
        }
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .is_none(),
        "the error is the watch's last item"
    );
}

#[tokio::test]
async fn history_beyond_the_retention_is_compacted_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with_retention(dir.path().join("r.db"), Some(5)).unwrap();
    let first = store.put("/r/k", b"0".to_vec()).await.unwrap();
    let mut last = first;
    for i in 1..20 {
        last = store.put("/r/k", i.to_string().into_bytes()).await.unwrap();
    }
    let err = store.watch("/r/", first).await.unwrap_err();
    let Error::Compacted {
        compact_revision, ..
    } = err
    else {
        panic!("expected Compacted, got {err:?}")
    };
    assert!(
        (last - 10..=last - 5).contains(&compact_revision),
        "compacted to {compact_revision}, last write {last}"
    );
    let mut recent = store.watch("/r/", last - 4).await.unwrap();
    let Some(Ok(WatchEvent::Put(kv))) = recent.next().await else {
        panic!("the last 5 revisions are kept")
    };
    assert_eq!(kv.mod_revision, last - 4);
}

/// Runs `datastore-worker put-now <key> 1 0` against the store at `path`:
/// one write by another process, through its own connections.
async fn put_from_another_process(path: &Path, key: &str) {
    let cfg = DatastoreConfig::Sqlite {
        path: path.to_path_buf(),
    };
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_datastore-worker"))
        .args(["put-now", key, "1", "0"])
        .envs(cfg.to_env())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "worker failed: {out:?}");
}

/// A checkpoint that empties the WAL and truncates it to zero bytes, from a
/// connection of its own; the next commit restarts the WAL from its start.
fn truncate_wal(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let (busy, frames): (i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((busy, frames), (0, 0), "the checkpoint ran to completion");
    let wal = std::fs::metadata(format!("{}-wal", path.display())).unwrap();
    assert_eq!(wal.len(), 0, "the WAL is truncated");
}

/// The key of the watch's next event, a put, which must come well before
/// an hour-long fallback check.
async fn next_put_key(watch: &mut Watch) -> String {
    match tokio::time::timeout(Duration::from_secs(60), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Put(kv)))) => kv.key,
        other => panic!("expected a put well before the fallback check, got {other:?}"),
    }
}

/// With the fallback check an hour away, only the WAL's change
/// notification can bring another process's commit to a watch in time: it
/// does, also after a checkpoint truncated and restarted the WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_another_process_wakes_a_watch_without_waiting_for_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wake.db");
    let store = SqliteStore::open_with(
        &path,
        SqliteOptions {
            fallback_check: Duration::from_secs(3600),
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    let mut watch = store.watch("/wake/", 0).await.unwrap();
    // A local write, seen: the watch task has made its first read and now
    // reads again only when woken.
    store.put("/wake/local", b"here".to_vec()).await.unwrap();
    assert_eq!(next_put_key(&mut watch).await, "/wake/local");
    for round in 0..3 {
        if round == 2 {
            truncate_wal(&path);
        }
        let key = format!("/wake/remote-{round}");
        put_from_another_process(&path, &key).await;
        assert_eq!(next_put_key(&mut watch).await, key, "round {round}");
    }
}
