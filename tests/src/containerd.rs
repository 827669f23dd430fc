//! [`Containerd`]: the real containerd (Debian's 1.6, runc) and its `ctr`,
//! with `ctr run --cni`, in a test's host namespace with state of its own.
//!
//! containerd runs with its own root, state, socket and config (the CRI
//! plugin off, so it reads no CNI files of the machine's). `ctr run --cni`
//! sets the network up itself, reading `/etc/cni/net.d` and calling plugins
//! from `/opt/cni/bin`, paths it has no option for; so every `ctr` runs in a
//! mount namespace of its own where overlays over `/etc` and `/opt` put
//! this harness's network directory and plugins at those paths, and one
//! over `/var` keeps libcni's cache (`/var/lib/cni`) the harness's (the
//! machine's files stay untouched). Containers run in the foreground
//! (`ctr run --rm`), as `ctr` 1.6 tears the network of no detached
//! container down. The image is a busybox root
//! imported once: podman packs it as an OCI archive, `ctr images import`
//! reads it.
//!
//! ```text
//! unshare --mount ─ overlays: /etc/cni/net.d ← DIR/net.d, /opt/cni/bin ← DIR/bin, /var
//!   └ nsenter --net=HOST ctr --address DIR/containerd.sock -n testkit …
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::command::run_checked;
use crate::container::{Containers, busybox_rootfs, create_dir, write};
use crate::mounts::unmount_below;
use crate::process::{Background, poll_until};
use crate::{Error, Netns};

/// The image every container runs.
pub const IMAGE: &str = "localhost/testkit-busybox:latest";

/// The containerd namespace the harness works in (so `ctr`'s container
/// IDs, and thus the endpoints' names, are `testkit-<name>`).
pub const NAMESPACE: &str = "testkit";

/// Sets up the mounts, then runs `ctr "$@"` in the host namespace: `$1` is
/// the harness directory, `$2` the host namespace's file, `$3` the
/// containerd namespace.
const CTR_IN_MOUNT_NS: &str = r#"set -e
dir=$1 net=$2 ns=$3; shift 3
mount --make-rprivate /
mkdir -p "$dir/ovl"
ovl=$(mktemp -d "$dir/ovl/XXXXXX")   # a work dir serves one mount at a time
for top in etc opt var; do
  mkdir -p "$ovl/$top/upper" "$ovl/$top/work"
  mount -t overlay overlay -o "lowerdir=/$top,upperdir=$ovl/$top/upper,workdir=$ovl/$top/work" "/$top"
done
mkdir -p /etc/cni/net.d /opt/cni/bin
mount --bind "$dir/net.d" /etc/cni/net.d
mount --bind "$dir/bin" /opt/cni/bin
exec nsenter --net="$net" ctr --address "$dir/containerd.sock" -n "$ns" "$@"
"#;

/// containerd running in one host namespace, with its own state directory.
#[derive(Debug)]
pub struct Containerd {
    /// `/run/netns/NAME` of the host namespace.
    host: PathBuf,
    /// root/, state/, containerd.sock, config.toml, net.d/, bin/, ovl/, rootfs.
    dir: PathBuf,
    daemon: Option<Background>,
    /// Each container's `ctr run`, by name.
    running: RefCell<BTreeMap<String, Background>>,
}

impl Containerd {
    /// Starts containerd in `host` with its state in `dir` (created); `ctr`
    /// will call the CNI plugins found in `plugin_dirs` (first match wins).
    /// Returns once containerd answers and the image is imported.
    pub fn start(host: &Netns, dir: &Path, plugin_dirs: &[PathBuf]) -> Result<Containerd, Error> {
        for sub in ["root", "state", "net.d", "bin"] {
            create_dir(&dir.join(sub))?;
        }
        link_plugins(&dir.join("bin"), plugin_dirs)?;
        let config = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {:?}\n",
            dir.join("root").display().to_string(),
            dir.join("state").display().to_string(),
            dir.join("containerd.sock").display().to_string(),
        );
        write(&dir.join("config.toml"), &config)?;
        let log = std::fs::File::create(dir.join("containerd.log"))
            .map_err(|e| Error::io(format!("creating {}/containerd.log", dir.display()), e))?;
        let err = log
            .try_clone()
            .map_err(|e| Error::io("duplicating the log file", e))?;
        let daemon = Background::spawn(
            Command::new("nsenter")
                .arg(format!("--net={}", host.path().display()))
                .arg("containerd")
                .arg("--config")
                .arg(dir.join("config.toml"))
                .stdout(log)
                .stderr(err),
        )?;
        let containerd = Containerd {
            host: host.path(),
            dir: dir.to_path_buf(),
            daemon: Some(daemon),
            running: RefCell::new(BTreeMap::new()),
        };
        let up = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
            containerd.ctr(&["version"]).is_ok()
        });
        if !up {
            return Err(Error::io(
                format!("containerd did not answer on {}", dir.display()),
                std::io::ErrorKind::TimedOut,
            ));
        }
        containerd.import_image()?;
        Ok(containerd)
    }

    /// Adds a CNI network: writes `conflist` as `<file>.conflist` where
    /// `ctr` will read it (`ctr run --cni` takes the first by name).
    pub fn add_network(&self, file: &str, conflist: &Value) -> Result<(), Error> {
        write(
            &self.dir.join("net.d").join(format!("{file}.conflist")),
            &conflist.to_string(),
        )
    }

    /// A `ctr` command in its mount namespace; add arguments and run it.
    pub fn ctr_cmd(&self) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "sh", "-c", CTR_IN_MOUNT_NS, "ctr"])
            .arg(&self.dir)
            .arg(&self.host)
            .arg(NAMESPACE);
        cmd
    }

    /// Runs `ctr args...` to completion; its standard output, trimmed.
    pub fn ctr(&self, args: &[&str]) -> Result<String, Error> {
        let out = run_checked(self.ctr_cmd().args(args).stdin(Stdio::null()))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The busybox root, as an OCI archive made by podman, imported as
    /// [`IMAGE`].
    fn import_image(&self) -> Result<(), Error> {
        let rootfs = busybox_rootfs(&self.dir.join("rootfs"))?;
        let tar = self.dir.join("rootfs.tar");
        let archive = self.dir.join("image.tar");
        run_checked(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        )?;
        let podman = |args: &[&str]| {
            run_checked(
                Command::new("podman")
                    .arg("--root")
                    .arg(self.dir.join("podman/storage"))
                    .arg("--runroot")
                    .arg(self.dir.join("podman/run"))
                    .args(args),
            )
        };
        let tar = tar.display().to_string();
        let archive_arg = archive.display().to_string();
        podman(&["import", "--quiet", &tar, IMAGE])?;
        podman(&[
            "save",
            "--quiet",
            "--format",
            "oci-archive",
            "-o",
            &archive_arg,
            IMAGE,
        ])?;
        self.ctr(&["images", "import", &archive_arg]).map(drop)
    }

    /// Starts container `name` running `command` with `ctr run --rm --cni`
    /// in the foreground (in the background of the test), and returns once
    /// its task runs.
    pub fn run(&self, name: &str, command: &[&str]) -> Result<(), Error> {
        let log = self.dir.join(format!("ctr-run-{name}.log"));
        let file = std::fs::File::create(&log)
            .map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
        let err = file
            .try_clone()
            .map_err(|e| Error::io("duplicating the log file", e))?;
        // runc's state of this containerd's own: another instance (a test
        // running beside) may run a container of the same ID.
        let runc_root = self.dir.join("runc");
        let mut foreground = Background::spawn(
            self.ctr_cmd()
                .args(["run", "--rm", "--cni", "--runc-root"])
                .arg(&runc_root)
                .args([IMAGE, name])
                .args(command)
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(err),
        )?;
        let mut exited = None;
        poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
            exited = foreground.try_wait().ok().flatten();
            exited.is_some() || self.pid(name).is_ok()
        });
        if exited.is_some() || self.pid(name).is_err() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(Error::io(
                format!("`ctr run` of {name} did not start its task: {text}"),
                std::io::ErrorKind::Other,
            ));
        }
        self.running
            .borrow_mut()
            .insert(name.to_owned(), foreground);
        Ok(())
    }

    /// The container's task's process ID.
    fn pid(&self, name: &str) -> Result<u32, Error> {
        let out = self.ctr(&["tasks", "ls"])?;
        out.lines()
            .skip(1)
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(name)).then(|| f.next()?.parse().ok())?
            })
            .ok_or_else(|| {
                Error::io(
                    format!("no running task {name} in `ctr tasks ls`:\n{out}"),
                    std::io::ErrorKind::NotFound,
                )
            })
    }

    /// The container's `eth0` address (IPv4), read in its network namespace.
    pub fn address(&self, name: &str) -> Result<IpAddr, Error> {
        let netns = format!("--net=/proc/{}/ns/net", self.pid(name)?);
        let out = run_checked(Command::new("nsenter").args([
            netns.as_str(),
            "ip",
            "-o",
            "-4",
            "addr",
            "show",
            "dev",
            "eth0",
        ]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|cidr| cidr.split('/').next()?.parse().ok())
            .ok_or_else(|| {
                Error::io(
                    format!("no IPv4 address on {name}'s eth0: {text}"),
                    std::io::ErrorKind::NotFound,
                )
            })
    }

    /// Stops container `name`: kills its task; the `ctr run --rm` that
    /// started it then tears its network down (CNI DEL) and deletes the
    /// container, as `ctr` 1.6 does for a container run in the foreground
    /// (it tears down no network of a detached one). Returns once that `ctr`
    /// has exited, successfully.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let mut foreground = self.running.borrow_mut().remove(name).ok_or_else(|| {
            Error::io(
                format!("no container {name} was run"),
                std::io::ErrorKind::NotFound,
            )
        })?;
        self.ctr(&["tasks", "kill", "--signal", "KILL", name])?;
        let mut status = None;
        poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
            status = foreground.try_wait().ok().flatten();
            status.is_some()
        });
        match status {
            // The task's SIGKILL is its exit status, which ctr passes on.
            Some(s) if s.code() == Some(137) || s.success() => Ok(()),
            Some(s) => Err(Error::io(
                format!("`ctr run` of {name} ended {s} after its task was killed"),
                std::io::ErrorKind::Other,
            )),
            None => Err(Error::io(
                format!("`ctr run` of {name} did not end after its task was killed"),
                std::io::ErrorKind::TimedOut,
            )),
        }
    }
}

impl Containers for Containerd {
    fn exec(&self, name: &str, args: &[&str]) -> Result<String, Error> {
        static EXECS: AtomicU64 = AtomicU64::new(0);
        let id = format!("probe-{}", EXECS.fetch_add(1, Ordering::Relaxed));
        let mut all = vec!["tasks", "exec", "--exec-id", &id, name];
        all.extend_from_slice(args);
        self.ctr(&all)
    }
}

impl Drop for Containerd {
    /// Stops every container (networks torn down through CNI DEL), stops
    /// containerd, and unmounts whatever it left mounted under its state.
    fn drop(&mut self) {
        let names: Vec<String> = self.running.borrow().keys().cloned().collect();
        for name in names {
            let _ = self.remove(&name);
        }
        if let Some(daemon) = self.daemon.take() {
            let _ = daemon.stop(Duration::from_secs(5));
        }
        unmount_below(&self.dir);
    }
}

/// Links every file of `plugin_dirs` into `bin`, the first directory's
/// file winning where two have the same name.
fn link_plugins(bin: &Path, plugin_dirs: &[PathBuf]) -> Result<(), Error> {
    for dir in plugin_dirs {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        for entry in entries.flatten() {
            let link = bin.join(entry.file_name());
            let is_file = entry
                .file_type()
                .is_ok_and(|t| t.is_file() || t.is_symlink());
            if is_file && !link.exists() {
                std::os::unix::fs::symlink(entry.path(), &link)
                    .map_err(|e| Error::io(format!("linking {}", link.display()), e))?;
            }
        }
    }
    Ok(())
}
