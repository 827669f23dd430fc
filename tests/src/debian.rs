//! Debian root file systems for package tests: [`Base`], a clean Debian 12
//! root made by `scripts/debian-root.sh` (debootstrap's minbase, as a fresh
//! machine has it), and [`Root`], a copy-on-write copy of a base (an overlay
//! mount, so the base stays clean for the next test) that a test installs
//! packages into and runs programs in with `chroot`, thrown away on drop.
//!
//! Everything lives below `$TMPDIR/testkit-debian-PID`. A [`Root`] unmounts
//! what it mounted and removes its files on drop, killing first any process
//! still running inside it; nothing is ever deleted while something is
//! mounted below it. A base kept in a `static` lives as long as the test
//! process: [`remove_stale`] (run by the first [`Base::new`] of a process)
//! removes the trees of processes that are gone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::command::run_checked;
use crate::error::Error;
use crate::mounts::{mounts_below, unmount_below};
use crate::netns::{Netns, alive};

/// The directory name prefix of a process's trees under `$TMPDIR`.
const PREFIX: &str = "testkit-debian-";

/// The PATH programs get inside a root, as Debian's login shells set it for root.
pub const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// This process's directory for bases and roots.
fn process_dir() -> PathBuf {
    std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()))
}

/// A new, unique directory below this process's.
fn fresh_dir(kind: &str) -> Result<PathBuf, Error> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = process_dir().join(format!(
        "{kind}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

/// A clean Debian root file system, made once and used read-only (as the
/// lower layer of each [`Root`]).
#[derive(Debug)]
pub struct Base {
    dir: PathBuf,
}

impl Base {
    /// Makes a root with `scripts/debian-root.sh` of the repository at
    /// `repo`, then runs each of `setup` in it (chrooted, with `/proc`
    /// mounted), e.g. `["apt-get", "update"]`. Needs root, debootstrap and
    /// Debian's mirror; takes about a minute.
    pub fn new(repo: &Path, setup: &[&[&str]]) -> Result<Base, Error> {
        remove_stale()?;
        let dir = fresh_dir("base")?.join("root");
        let base = Base { dir };
        run_checked(Command::new(repo.join("scripts/debian-root.sh")).arg(&base.dir))?;
        let proc = base.dir.join("proc");
        mount(&["-t", "proc", "proc"], &proc)?;
        let result = setup.iter().try_for_each(|argv| {
            run_checked(chroot(&base.dir, argv[0]).args(&argv[1..])).map(drop)
        });
        unmount_below(&base.dir);
        result.map(|()| base)
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Base {
    fn drop(&mut self) {
        if let Some(tree) = self.dir.parent()
            && let Err(e) = remove_tree(tree)
        {
            eprintln!("testkit: could not remove {}: {e}", tree.display());
        }
    }
}

/// A writable copy of a [`Base`]: an overlay mount with the base below and
/// this root's changes above, `/proc` mounted inside. Removed on drop.
#[derive(Debug)]
pub struct Root {
    /// `…/root-N`: `upper/`, `work/` and the mounted `merged/`.
    dir: PathBuf,
    merged: PathBuf,
}

impl Root {
    /// A fresh copy of `base`.
    pub fn new(base: &Base) -> Result<Root, Error> {
        let dir = fresh_dir("root")?;
        let merged = dir.join("merged");
        for sub in ["upper", "work", "merged"] {
            let path = dir.join(sub);
            std::fs::create_dir(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        }
        // From here on, dropping `root` unmounts and removes what there is.
        let root = Root { dir, merged };
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            base.dir.display(),
            root.dir.join("upper").display(),
            root.dir.join("work").display()
        );
        mount(&["-t", "overlay", "overlay", "-o", &options], &root.merged)?;
        mount(&["-t", "proc", "proc"], &root.merged.join("proc"))?;
        Ok(root)
    }

    /// The root's directory as seen from outside.
    pub fn path(&self) -> &Path {
        &self.merged
    }

    /// Where `inside` (an absolute path in the root) is, seen from outside.
    pub fn file(&self, inside: &str) -> PathBuf {
        self.merged.join(inside.trim_start_matches('/'))
    }

    /// Makes the network namespaces of `ip netns` (`/run/netns/NAME`, what
    /// CNI calls `CNI_NETNS`) visible inside the root, including those made
    /// later. A slave bind: unmounting it never touches the host's.
    pub fn bind_netns(&self) -> Result<(), Error> {
        let target = self.file(crate::netns::NETNS_RUN_DIR);
        std::fs::create_dir_all(&target)
            .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
        mount(&["--rbind", crate::netns::NETNS_RUN_DIR], &target)?;
        run_checked(Command::new("mount").arg("--make-rslave").arg(&target)).map(drop)
    }

    /// `program` run inside the root (`chroot ROOT program`) with a clean
    /// environment: root's PATH, `HOME=/root`, `LANG=C.UTF-8`,
    /// `DEBIAN_FRONTEND=noninteractive`. Add arguments and run it as usual.
    pub fn cmd(&self, program: &str) -> Command {
        chroot(&self.merged, program)
    }

    /// [`Root::cmd`] inside network namespace `netns`
    /// (`nsenter --net=PATH chroot ROOT program`: no other namespace changes).
    pub fn cmd_in(&self, netns: &Netns, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", netns.path().display()))
            .arg("chroot")
            .arg(&self.merged)
            .arg(program);
        clean_env(&mut cmd);
        cmd
    }

    /// Runs `program args` inside the root to completion; its output if it
    /// succeeded, [`Error::Command`] otherwise.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output, Error> {
        run_checked(self.cmd(program).args(args))
    }

    /// [`Root::exec`]'s standard output as text.
    pub fn stdout(&self, program: &str, args: &[&str]) -> Result<String, Error> {
        self.exec(program, args)
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The processes running inside the root (their root directory is it).
    pub fn processes(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/root"))
                    .is_ok_and(|root| root.starts_with(&self.merged))
            })
            .collect()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for pid in self.processes() {
            if let Ok(pid) = i32::try_from(pid) {
                // Already gone (ESRCH) is fine.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        // Killed processes release their mounts' references as they exit.
        crate::poll_until(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_millis(20),
            || self.processes().is_empty(),
        );
        unmount_below(&self.dir);
        if let Err(e) = remove_tree(&self.dir) {
            eprintln!("testkit: could not remove {}: {e}", self.dir.display());
        }
    }
}

fn chroot(root: &Path, program: &str) -> Command {
    let mut cmd = Command::new("chroot");
    cmd.arg(root).arg(program);
    clean_env(&mut cmd);
    cmd
}

fn clean_env(cmd: &mut Command) {
    cmd.env_clear()
        .env("PATH", ROOT_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive");
}

fn mount(args: &[&str], target: &Path) -> Result<(), Error> {
    run_checked(Command::new("mount").args(args).arg(target)).map(drop)
}

/// Removes `dir` and everything in it, unless something is still mounted
/// below it: deleting through a bind mount would delete the host's files.
fn remove_tree(dir: &Path) -> Result<(), Error> {
    let mounts = mounts_below(dir);
    if !mounts.is_empty() {
        return Err(Error::io(
            format!(
                "not removing {}: still mounted below it: {}",
                dir.display(),
                mounts
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            std::io::Error::from(std::io::ErrorKind::ResourceBusy),
        ));
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

/// Removes the trees (unmounting first) of test processes that no longer
/// exist, and returns them.
pub fn remove_stale() -> Result<Vec<PathBuf>, Error> {
    let tmp = std::env::temp_dir();
    let entries = match std::fs::read_dir(&tmp) {
        Ok(entries) => entries,
        Err(e) => return Err(Error::io(format!("listing {}", tmp.display()), e)),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !alive(pid) {
            let dir = entry.path();
            unmount_below(&dir);
            remove_tree(&dir)?;
            removed.push(dir);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_with_a_mount_below_it_is_not_removed() {
        if !crate::require_root() {
            return;
        }
        let dir = fresh_dir("unit").unwrap();
        let inner = dir.join("inner");
        std::fs::create_dir(&inner).unwrap();
        mount(&["-t", "tmpfs", "tmpfs"], &inner).unwrap();
        std::fs::write(inner.join("kept"), "x").unwrap();
        let err = remove_tree(&dir).unwrap_err();
        assert!(err.to_string().contains("still mounted"), "{err}");
        assert!(inner.join("kept").exists());
        unmount_below(&dir);
        remove_tree(&dir).unwrap();
        assert!(!dir.exists());
    }
}
