//! The crate's one error type. Every variant names what is at fault (the key,
//! the revision, the configuration field) so a caller can report it as is.

use crate::kv::Revision;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a datastore operation can fail with.
///
/// `Clone + Eq` so callers and tests can compare errors directly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `create` found the key already present.
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// The key (or resource) does not exist.
    #[error("key {key} not found")]
    NotFound { key: String },
    /// A compare-and-swap saw a different revision than the caller expected.
    #[error("conflict on {key}: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    /// The requested revision is older than the compaction point: history
    /// before `compact_revision` is gone. A watcher must resync: list, then
    /// watch from the list's revision + 1.
    #[error(
        "revision {requested} has been compacted (compact revision {compact_revision}); resync: list, then watch from the list revision + 1"
    )]
    Compacted {
        requested: Revision,
        compact_revision: Revision,
    },
    /// The requested revision lies in the future.
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// A transaction that cannot be executed as written.
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    /// A stored value or a resource that could not be decoded or encoded.
    #[error("invalid value at {key}: {message}")]
    InvalidValue { key: String, message: String },
    /// A resource that failed validation or cannot be stored as given.
    #[error("invalid resource {what}: {message}")]
    InvalidResource { what: String, message: String },
    /// Bad datastore configuration. `origin` is the file or "environment",
    /// `field` the offending field or variable.
    #[error("datastore configuration ({origin}): {field}: {message}")]
    Config {
        origin: String,
        field: String,
        message: String,
    },
    /// The configured backend is not part of this build.
    #[error("{0}")]
    Unsupported(String),
    /// The store is locked for a migration (`datastoreReady: false` on the
    /// `default` ClusterInformation): writers hold off until it is unlocked.
    #[error(
        "the datastore is locked for a migration (ClusterInformation \"default\" has \
         datastoreReady: false); try again once `calicoctl datastore migrate unlock` has run"
    )]
    Locked,
    /// The storage backend failed (I/O, SQLite, network).
    #[error("datastore backend: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Backend(e.to_string())
    }
}
