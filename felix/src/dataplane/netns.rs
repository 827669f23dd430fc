//! [`Namespace`]: the network namespace a driver acts in. Work that must
//! happen inside it (opening a netlink socket, writing `/proc/sys/net`,
//! running `conntrack`) runs on a fresh thread that enters it with `setns`
//! and ends afterwards, so no thread of the agent's runtime ever changes
//! namespace. A socket keeps the namespace it was opened in, so only its
//! opening needs the thread; `/proc/sys/net` files and child processes
//! belong to the namespace of the thread that opens or starts them.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};

use super::DataplaneError;

/// Where a driver acts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Namespace {
    /// The agent's own network namespace.
    #[default]
    Current,
    /// The namespace of this file (`/run/netns/NAME`, `/proc/PID/ns/net`).
    At(PathBuf),
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Namespace::Current => f.write_str("the current network namespace"),
            Namespace::At(path) => write!(f, "network namespace {}", path.display()),
        }
    }
}

impl Namespace {
    /// The namespace of the file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Namespace::At(path.into())
    }

    /// Enters this namespace on the calling thread.
    fn enter(&self) -> Result<(), DataplaneError> {
        let Namespace::At(path) = self else {
            return Ok(());
        };
        let error = |source| DataplaneError::Netns {
            netns: self.to_string(),
            source,
        };
        let file = File::open(path).map_err(error)?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| error(e.into()))
    }

    /// Runs `f` on a new thread inside this namespace and returns its
    /// result, without blocking the caller's runtime.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DataplaneError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let netns = self.clone();
        std::thread::Builder::new()
            .name("felix-netns".to_owned())
            .spawn(move || {
                let _ = tx.send(netns.enter().map(|()| f()));
            })
            .map_err(|source| DataplaneError::Netns {
                netns: self.to_string(),
                source,
            })?;
        rx.await.map_err(|_| DataplaneError::Thread {
            netns: self.to_string(),
        })?
    }

    /// Opens an rtnetlink connection in this namespace; its task runs on
    /// the current tokio runtime until the handle (and its clones) are
    /// dropped.
    pub async fn rtnetlink(&self) -> Result<rtnetlink::Handle, DataplaneError> {
        self.connect(false).await
    }

    /// [`rtnetlink`](Self::rtnetlink) with strict checking
    /// (`NETLINK_GET_STRICT_CHK`): the kernel filters a dump by what its
    /// request's header names (a route dump of table main reads that table
    /// only) and refuses a request with a field it cannot filter by.
    pub async fn rtnetlink_strict(&self) -> Result<rtnetlink::Handle, DataplaneError> {
        self.connect(true).await
    }

    async fn connect(&self, strict: bool) -> Result<rtnetlink::Handle, DataplaneError> {
        use rtnetlink::sys::AsyncSocket as _;
        let runtime = tokio::runtime::Handle::current();
        let (mut conn, handle, _) = self
            .run(move || {
                // The socket registers with the caller's runtime.
                let _guard = runtime.enter();
                rtnetlink::new_connection()
            })
            .await?
            .map_err(|source| DataplaneError::Netns {
                netns: self.to_string(),
                source,
            })?;
        if strict {
            (conn.socket_mut().socket_mut())
                .set_netlink_get_strict_chk(true)
                .map_err(|source| DataplaneError::Netns {
                    netns: self.to_string(),
                    source,
                })?;
        }
        tokio::spawn(conn);
        Ok(handle)
    }
}
