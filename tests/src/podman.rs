//! [`Podman`]: the real podman (its CNI backend, runc) driving containers
//! from a test's host namespace, with state of its own: storage, run and
//! temporary directories, `containers.conf` and the CNI network directory
//! all live in one directory of the test's, so nothing of the machine's
//! podman is read or touched. Containers run on a
//! [`busybox_rootfs`](crate::container::busybox_rootfs) (no image, no
//! registry).
//!
//! podman is entered with `nsenter --net=` rather than `ip netns exec`,
//! which remounts `/sys` so that runc finds no cgroup mount; and the
//! containers' open-file limit is set below this sandbox's hard limit (podman
//! asks for more by default, which runc cannot set here).

use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::command::run_checked;
use crate::container::{Containers, busybox_rootfs, create_dir, write};
use crate::mounts::unmount_below;
use crate::{Error, Netns};

/// podman running in one host namespace, with its own state directory.
#[derive(Debug)]
pub struct Podman {
    /// `/run/netns/NAME` of the host namespace podman runs in.
    host: PathBuf,
    /// Everything podman keeps: `storage/`, `run/`, `tmp/`, `net.d/`,
    /// `containers.conf`, and the containers' root file systems.
    dir: PathBuf,
}

impl Podman {
    /// podman in `host`, keeping its state in `dir` (created), calling CNI
    /// plugins from `plugin_dirs` in that order (podman's `cni_plugin_dirs`).
    pub fn new(host: &Netns, dir: &Path, plugin_dirs: &[PathBuf]) -> Result<Podman, Error> {
        let dirs: Vec<String> = plugin_dirs
            .iter()
            .map(|d| format!("{:?}", d.display().to_string()))
            .collect();
        let podman = Podman {
            host: host.path(),
            dir: dir.to_path_buf(),
        };
        let conf = format!(
            "{}\
             [network]\n\
             network_backend = \"cni\"\n\
             cni_plugin_dirs = [{}]\n\
             network_config_dir = {:?}\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = {:?}\n",
            container_ulimits_conf()?,
            dirs.join(", "),
            podman.net_dir().display().to_string(),
            dir.join("events.log").display().to_string(),
        );
        for sub in ["storage", "run", "tmp", "net.d", "rootfs"] {
            create_dir(&dir.join(sub))?;
        }
        write(&podman.conf_path(), &conf)?;
        Ok(podman)
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.join("containers.conf")
    }

    fn net_dir(&self) -> PathBuf {
        self.dir.join("net.d")
    }

    /// Adds a CNI network: writes `conflist` (its `name` names the network)
    /// into podman's CNI config directory as `<file>.conflist`.
    pub fn add_network(&self, file: &str, conflist: &Value) -> Result<(), Error> {
        let path = self.net_dir().join(format!("{file}.conflist"));
        write(&path, &conflist.to_string())
    }

    /// A `podman` command in the host namespace with this state; add
    /// arguments and run it.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.host.display()))
            .arg("podman")
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .env("CONTAINERS_CONF", self.conf_path());
        cmd
    }

    /// Runs `podman args...` to completion; its standard output, trimmed.
    pub fn podman<I, S>(&self, args: I) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = run_checked(self.cmd().args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Starts container `name` in the background (`podman run -d`) on a
    /// busybox root file system of its own, with `options` (`--network`,
    /// `-p`, ...) and `command`; returns its ID.
    pub fn run(&self, name: &str, options: &[&str], command: &[&str]) -> Result<String, Error> {
        let rootfs = busybox_rootfs(&self.dir.join("rootfs").join(name))?;
        let mut cmd = self.cmd();
        cmd.args(["run", "-d", "--name", name])
            .args(options)
            .arg("--rootfs")
            .arg(rootfs)
            .args(command);
        let out = run_checked(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The container's addresses on its networks, as podman reports them.
    pub fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, Error> {
        let out = self.podman([
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            name,
        ])?;
        out.split_whitespace()
            .map(|a| {
                a.parse().map_err(|_| {
                    Error::io(
                        format!("podman inspect {name}: {a:?} is not an address"),
                        std::io::ErrorKind::InvalidData,
                    )
                })
            })
            .collect()
    }

    /// The container's one address.
    pub fn address(&self, name: &str) -> Result<IpAddr, Error> {
        let addrs = self.addresses(name)?;
        match addrs[..] {
            [one] => Ok(one),
            _ => Err(Error::io(
                format!("container {name} has addresses {addrs:?}, not one"),
                std::io::ErrorKind::InvalidData,
            )),
        }
    }
}

impl Containers for Podman {
    fn exec(&self, name: &str, args: &[&str]) -> Result<String, Error> {
        self.podman(["exec", name].iter().chain(args))
    }
}

impl Drop for Podman {
    /// Removes every container (their networks torn down through CNI DEL),
    /// then unmounts whatever podman left mounted under its state.
    fn drop(&mut self) {
        let _ = self.podman(["rm", "--all", "--force", "--time", "0"]);
        unmount_below(&self.dir);
    }
}

/// The `[containers]` table of a `containers.conf` that keeps the
/// containers' limits within this process's (see [`container_ulimits`]).
pub fn container_ulimits_conf() -> Result<String, Error> {
    let limits = std::fs::read_to_string("/proc/self/limits")
        .map_err(|e| Error::io("reading /proc/self/limits", e))?;
    Ok(format!(
        "[containers]\ndefault_ulimits = [{}]\n",
        container_ulimits(&limits).join(", ")
    ))
}

/// podman's `default_ulimits` for the containers: 4,096 open files and
/// processes, or this process's hard limit where that is lower
/// (`/proc/self/limits` as `limits`). podman asks for more by default (a
/// million open files), which runc may not set where the hard limit is
/// lower, as in this sandbox; a process limit at the hard limit fails too.
fn container_ulimits(limits: &str) -> Vec<String> {
    const WANTED: u64 = 4096;
    [("Max open files", "nofile"), ("Max processes", "nproc")]
        .iter()
        .map(|(row, name)| {
            let hard = limits
                .lines()
                .find(|l| l.starts_with(row))
                .and_then(|l| l[row.len()..].split_whitespace().nth(1))
                .and_then(|h| h.parse::<u64>().ok())
                .unwrap_or(WANTED);
            let n = hard.min(WANTED);
            format!("\"{name}={n}:{n}\"")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ulimits_stay_at_or_below_the_hard_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units
Max processes             96367                96367                processes
Max open files            1024                 2000                 files
";
        assert_eq!(
            container_ulimits(limits),
            ["\"nofile=2000:2000\"", "\"nproc=4096:4096\""]
        );
        let unlimited =
            "Max processes             unlimited            unlimited            processes";
        assert_eq!(
            container_ulimits(unlimited),
            ["\"nofile=4096:4096\"", "\"nproc=4096:4096\""]
        );
    }
}
