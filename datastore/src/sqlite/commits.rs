//! Noticing commits that other connections (and processes) make to the
//! store's file, for the store's watches: the `sqlite-commits` thread.
//!
//! A commit in WAL mode appends frames to `<db>-wal` (`write(2)`: inotify
//! sees `IN_MODIFY`), then, with `synchronous=FULL`, syncs it, and only then
//! becomes visible, through the wal-index in `<db>-shm`, which SQLite
//! changes through `mmap` (inotify sees nothing). So a reader woken by the
//! last frame's `IN_MODIFY` can be early. Every [`SqliteStore`] writer
//! therefore [`announce`]s a commit once it is visible: it sets the WAL's
//! timestamps (`IN_ATTRIB`), one syscall, no data.
//!
//! The thread watches the database's directory (not the WAL itself, which
//! SQLite deletes when the last connection closes and creates again with
//! the next one) for the WAL being modified, touched, created or moved in.
//! On each such event, and every `fallback` without one, it reads `PRAGMA
//! data_version` (it moves when another connection committed) and, when it
//! moved, publishes the store's revision to the watches. A checkpoint that
//! restarts or truncates the WAL rewrites the same file: still one
//! directory entry, still watched.
//!
//! The fallback catches what no event announces (a writer that is not a
//! [`SqliteStore`], e.g. the `sqlite3` shell, whose last event may come
//! before its commit is visible; an overflowed inotify queue): once a second
//! by default, [`POLL_WITHOUT_INOTIFY`] where inotify cannot be set up.
//!
//! [`SqliteStore`]: super::SqliteStore

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use rusqlite::Connection;

use super::{Inner, meta, open_connection};
use crate::error::{Error, Result};

/// The check interval when inotify cannot watch the directory: the only
/// way to notice other processes' commits is then to look often.
pub const POLL_WITHOUT_INOTIFY: Duration = Duration::from_millis(20);

/// The WAL of the database at `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Tells every process watching `db` that a commit is visible: sets the
/// WAL's timestamps. Failing only delays the watchers until their fallback
/// check, so it is logged, not returned.
pub(super) fn announce(db: &Path) {
    let wal = wal_path(db);
    if let Err(e) = utimensat(
        nix::fcntl::AT_FDCWD,
        &wal,
        &TimeSpec::UTIME_NOW,
        &TimeSpec::UTIME_NOW,
        UtimensatFlags::FollowSymlink,
    ) {
        tracing::debug!(error = %e, wal = %wal.display(), "cannot announce a commit");
    }
}

/// inotify on the database's directory, for events on its WAL.
#[derive(Debug)]
pub(super) struct WalEvents {
    inotify: Inotify,
    /// The WAL's name in the directory.
    wal: OsString,
}

impl WalEvents {
    /// Watches the directory of `db`.
    pub(super) fn watch(db: &Path) -> nix::Result<Self> {
        let wal = wal_path(db);
        let (dir, name) = match (wal.parent(), wal.file_name()) {
            (Some(dir), Some(name)) => (dir, name.to_owned()),
            _ => return Err(Errno::EINVAL),
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(
            dir,
            AddWatchFlags::IN_MODIFY
                | AddWatchFlags::IN_ATTRIB
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO,
        )?;
        Ok(Self { inotify, wal: name })
    }

    /// Waits until an event on the WAL (or a lost event: the queue
    /// overflowed) or until `timeout` has passed. Events on other files of
    /// the directory are read and ignored.
    fn wait(&self, timeout: Duration) -> nix::Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Ok(());
            }
            let left = left.map_or(PollTimeout::NONE, |l| {
                PollTimeout::try_from(l).unwrap_or(PollTimeout::MAX)
            });
            let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, left) {
                Ok(0) => return Ok(()),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
            if self.drain()? {
                return Ok(());
            }
        }
    }

    /// Reads the queued events; whether one may mean a commit.
    fn drain(&self) -> nix::Result<bool> {
        let mut relevant = false;
        loop {
            match self.inotify.read_events() {
                Ok(events) => {
                    relevant |= events.iter().any(|e| {
                        e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
                            || e.name.as_ref() == Some(&self.wal)
                    });
                }
                Err(Errno::EAGAIN) => return Ok(relevant),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether `data_version` moved since `last`; remembers it.
fn changed(conn: &Connection, last: &mut Option<i64>) -> Result<bool> {
    let version = conn
        .query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
        .map_err(Error::from)?;
    Ok(last.replace(version) != Some(version))
}

/// The body of the thread: publishes the revision at start and whenever
/// `data_version` moved, checked on each WAL event (from `events`) and
/// every `fallback` (every [`POLL_WITHOUT_INOTIFY`] without `events`). Ends
/// when the store is dropped (noticed at the next wake-up).
pub(super) fn run(path: &Path, store: &Weak<Inner>, events: Option<WalEvents>, fallback: Duration) {
    let conn = match open_connection(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the sqlite commit watcher cannot open the store");
            return;
        }
    };
    let mut events = events;
    let mut last_version = None;
    loop {
        let Some(inner) = store.upgrade() else { return };
        match changed(&conn, &mut last_version)
            .and_then(|c| c.then(|| meta(&conn, "revision")).transpose())
        {
            Ok(Some(revision)) => inner.publish(revision),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "sqlite commit check failed")
            }
        }
        drop(inner);
        match &events {
            Some(wal) => {
                // Wake on a WAL event or at the fallback, whichever comes first.
                if let Err(e) = wal.wait(fallback) {
                    tracing::warn!(error = %e, path = %path.display(),
                        "waiting for WAL events failed; polling instead");
                    events = None;
                }
            }
            None => std::thread::sleep(fallback.min(POLL_WITHOUT_INOTIFY)),
        }
    }
}
