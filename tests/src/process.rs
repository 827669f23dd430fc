//! [`Background`]: a child process (typically a daemon started inside a test
//! namespace with [`Netns::cmd`](crate::Netns::cmd)) that is killed and reaped
//! when dropped; and [`poll_until`], for waiting on what such a process does.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Error;
use crate::command::display;

/// A running child process, killed (SIGKILL) and reaped on drop. Run daemons
/// in the foreground (`bird -f`, `gobgpd`, `zebra` without `-d`) so that this
/// process is the daemon itself.
#[derive(Debug)]
pub struct Background {
    /// `None` once reaped.
    child: Option<Child>,
    command: String,
}

impl Background {
    /// Spawns `cmd` as configured (stdio included; inherited by default).
    pub fn spawn(cmd: &mut Command) -> Result<Self, Error> {
        let command = display(cmd);
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("could not start `{command}`"), e))?;
        Ok(Background {
            child: Some(child),
            command,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child().id()
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The child, e.g. to take a piped stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("a Background holds its child until dropped")
    }

    fn child(&self) -> &Child {
        self.child
            .as_ref()
            .expect("a Background holds its child until dropped")
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        let context = format!("checking on `{}`", self.command);
        self.child_mut()
            .try_wait()
            .map_err(|e| Error::io(context, e))
    }

    /// Asks the process to stop with SIGTERM, waits up to `grace` for it to
    /// exit, then kills it with SIGKILL; returns how it exited.
    pub fn stop(mut self, grace: Duration) -> Result<ExitStatus, Error> {
        let mut child = self
            .child
            .take()
            .expect("a Background holds its child until dropped");
        let context = format!("stopping `{}`", self.command);
        if child
            .try_wait()
            .map_err(|e| Error::io(&*context, e))?
            .is_none()
        {
            // It may exit between the check and the signal: ignore ESRCH.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().map_err(|e| Error::io(&*context, e))? {
                    return Ok(status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        child.wait().map_err(|e| Error::io(context, e))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only if it was already reaped; waiting then is harmless.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Calls `check` every `interval` until it returns true or `timeout` has
/// passed; whether it returned true. `check` is called at least once.
pub fn poll_until(timeout: Duration, interval: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn sleeper() -> Background {
        Background::spawn(Command::new("sleep").arg("30")).unwrap()
    }

    fn exists(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn dropping_a_background_process_kills_and_reaps_it() {
        let bg = sleeper();
        let pid = bg.id();
        assert!(exists(pid));
        drop(bg);
        assert!(!exists(pid), "process {pid} still exists");
    }

    #[test]
    fn stop_sends_sigterm_first() {
        let mut bg = sleeper();
        assert_eq!(bg.try_wait().unwrap(), None);
        let status = bg.stop(Duration::from_secs(5)).unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    }

    #[test]
    fn stop_kills_a_process_that_ignores_sigterm() {
        let bg = Background::spawn(
            Command::new("sh").args(["-c", "trap '' TERM; while :; do sleep 0.05; done"]),
        )
        .unwrap();
        // Let the shell install its trap before it is signalled.
        std::thread::sleep(Duration::from_millis(200));
        let status = bg.stop(Duration::from_millis(200)).unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    }

    #[test]
    fn stopping_a_process_that_already_exited_returns_its_status() {
        let mut bg = Background::spawn(Command::new("sh").args(["-c", "exit 4"])).unwrap();
        assert!(poll_until(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || { bg.try_wait().unwrap().is_some() }
        ));
        // try_wait reaped it; stop still reports the status.
        assert_eq!(bg.stop(Duration::from_secs(1)).unwrap().code(), Some(4));
    }

    #[test]
    fn poll_until_gives_up_after_the_timeout() {
        let start = Instant::now();
        let mut calls = 0;
        assert!(!poll_until(
            Duration::from_millis(50),
            Duration::from_millis(10),
            || {
                calls += 1;
                false
            }
        ));
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(calls >= 2, "{calls}");
        assert!(poll_until(Duration::ZERO, Duration::ZERO, || true));
    }
}
