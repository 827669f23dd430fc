//! [`Netns`]: a named network namespace made with `ip netns add` (so that
//! `ip netns exec` and daemons find it under `/run/netns`), with loopback up,
//! removed on drop together with any process still inside it. Commands run in
//! it through `ip netns exec`; closures run in it on a fresh thread that
//! enters it with `setns` and exits afterwards, so no thread of the caller
//! ever changes namespace and nothing forks. [`remove_stale`] removes
//! namespaces whose creating process is gone.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::command::run_checked;
use crate::{Error, name};

/// Where `ip netns` keeps its namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Serialises `ip netns add` in this process: the first ones on a fresh boot
/// race to make `/run/netns` a shared mount.
static CREATE: Mutex<()> = Mutex::new(());

/// Prefixes already swept by [`remove_stale`] in this process.
static SWEPT: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// A network namespace named uniquely after a prefix, removed on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    removed: bool,
}

impl Netns {
    /// Creates a namespace named `PREFIX-PID-COUNTER-RAND` with loopback up.
    /// The first call for a prefix in this process also removes stale
    /// namespaces of that prefix (see [`remove_stale`]).
    pub fn new(prefix: &str) -> Result<Self, Error> {
        let name = name::unique_netns_name(prefix)?;
        sweep_once(prefix)?;
        {
            let _guard = CREATE.lock().unwrap_or_else(PoisonError::into_inner);
            run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        }
        // From here on, dropping `ns` removes the namespace again.
        let ns = Netns {
            name,
            removed: false,
        };
        ns.link_up("lo")?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, `/run/netns/NAME` (what CNI calls `CNI_NETNS`).
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// A command that runs `program` inside the namespace
    /// (`ip netns exec NAME program`); add arguments and run it as usual.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args` inside the namespace to completion; its output if
    /// it succeeded, [`Error::Command`] otherwise.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Result<Output, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_checked(self.cmd(program).args(args))
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns
    /// its result; a panic in `f` is resumed on the caller's thread. Sockets
    /// (netlink included) opened by `f` belong to this namespace. `f` may
    /// borrow from the caller; it may build its own async runtime.
    pub fn run<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let path = self.path();
        let file = File::open(&path)
            .map_err(|e| Error::io(format!("opening network namespace {}", path.display()), e))?;
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("netns {}", self.name))
                .spawn_scoped(scope, move || {
                    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
                        Error::io(format!("entering network namespace {}", self.name), e)
                    })?;
                    drop(file);
                    Ok(f())
                })
                .map_err(|e| {
                    Error::io(format!("spawning a thread for namespace {}", self.name), e)
                })?;
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs the future that `make` builds to completion on a current-thread
    /// tokio runtime (time and I/O enabled), on a thread inside this
    /// namespace, as [`Netns::run`] does for a plain closure. The future
    /// itself need not be `Send`: it is built and driven on that thread.
    pub fn block_on<F, Fut>(&self, make: F) -> Result<Fut::Output, Error>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future,
        Fut::Output: Send,
    {
        self.run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a tokio runtime")
                .block_on(make())
        })
    }

    /// Removes the namespace now, killing processes still inside it, and
    /// reports any failure (dropping does the same but can only print it).
    pub fn remove(mut self) -> Result<(), Error> {
        self.removed = true;
        remove_netns(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.removed
            && let Err(e) = remove_netns(&self.name)
        {
            // Never panic here: this may run while a test is unwinding.
            eprintln!(
                "testkit: could not remove network namespace {}: {e}",
                self.name
            );
        }
    }
}

/// Kills every process inside namespace `name` (but never this one), then
/// deletes it. Succeeds if the namespace is already gone.
fn remove_netns(name: &str) -> Result<(), Error> {
    let path = Path::new(NETNS_RUN_DIR).join(name);
    if !path.exists() {
        return Ok(());
    }
    // Best effort: if listing fails, deleting still detaches the name, and
    // its error is the one worth reporting.
    let pids = run_checked(Command::new("ip").args(["netns", "pids", name]))
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let me = std::process::id();
    for pid in pids
        .split_whitespace()
        .filter_map(|pid| pid.parse::<i32>().ok())
        // Never 0 or negative (a process group) and never ourselves.
        .filter(|pid| *pid > 0 && pid.unsigned_abs() != me)
    {
        // Already gone (ESRCH) is fine.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    match run_checked(Command::new("ip").args(["netns", "del", name])) {
        // Someone else (a concurrent sweep) removed it first.
        Err(_) if !path.exists() => Ok(()),
        other => other.map(drop),
    }
}

/// Whether process `pid` exists (a zombie counts).
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        kill(Pid::from_raw(raw), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Removes namespaces named like ours for `prefix` whose creating process no
/// longer exists (left by a run that crashed or was killed), and returns
/// their names. Namespaces of live processes, including concurrent test
/// binaries, are left alone.
pub fn remove_stale(prefix: &str) -> Result<Vec<String>, Error> {
    name::validate_prefix(prefix)?;
    let entries = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {NETNS_RUN_DIR}"), e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {NETNS_RUN_DIR}"), e))?;
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(pid) = name::owner_pid(prefix, &file_name)
            && !alive(pid)
        {
            remove_netns(&file_name)?;
            removed.push(file_name);
        }
    }
    Ok(removed)
}

/// Runs [`remove_stale`] for `prefix` the first time this process sees it.
fn sweep_once(prefix: &str) -> Result<(), Error> {
    let mut swept = SWEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let swept = swept.get_or_insert_with(HashSet::new);
    if swept.contains(prefix) {
        return Ok(());
    }
    remove_stale(prefix)?;
    swept.insert(prefix.to_owned());
    Ok(())
}
