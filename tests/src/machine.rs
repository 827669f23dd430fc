//! [`Machine`]: a stand-in for a whole host in one test, this machine's
//! own system seen through a private layer. A network namespace of its own
//! and a mount namespace of its own in which `/usr`, `/etc`, `/opt` and
//! `/var` are overlays of the machine's (writes land in the test's
//! directory), `/run` is a fresh tmpfs and `/var/lib/containers` a plain
//! directory (podman's overlay storage cannot sit on an overlay). So a test
//! can `apt-get install` a package, edit `/etc`, run podman and daemons in
//! it as on a real host, and the machine's files, packages and podman stay
//! as they were. Nothing is downloaded: what the machine has installed is
//! what a `Machine` has.
//!
//! ```text
//! nsenter --mount=/proc/HOLDER/ns/mnt --net=/run/netns/NS  sh -c STEP
//!          │  /usr /etc /opt /var: overlay(lower = the machine's, upper = DIR/ovl/…)
//!          │  /run: tmpfs     /var/lib/containers: DIR/containers
//! ```
//!
//! The mount namespace lives as long as its holder, a `sleep` started in it
//! by `unshare`. It is not pinned by bind-mounting its file
//! (`unshare --mount=FILE`): the kernel binds it only from a namespace with a
//! lower ID, and since Linux 6.18 IDs come from per-CPU batches, so in a
//! container a newer namespace may get a lower one and the bind fails with
//! EINVAL (calico-lab's `persist_mount_namespace` tells the whole story). A
//! holder needs no mount outside the namespace at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::command::run_checked;
use crate::container::create_dir;
use crate::process::Background;
use crate::{Error, Netns};

/// The overlaid top-level directories.
const OVERLAID: [&str; 4] = ["usr", "etc", "opt", "var"];

/// Builds the mount namespace, run by `unshare --mount` with the machine's
/// directory as `$1`; then says `ready` and becomes the holder.
const SETUP: &str = r#"set -e
dir=$1
for top in usr etc opt var; do
  mkdir -p "$dir/ovl/$top/upper" "$dir/ovl/$top/work"
  mount -t overlay overlay -o "lowerdir=/$top,upperdir=$dir/ovl/$top/upper,workdir=$dir/ovl/$top/work" "/$top"
done
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p "$dir/containers" /var/lib/containers
mount --bind "$dir/containers" /var/lib/containers
echo ready
exec sleep infinity
"#;

/// One host: a network namespace and a layered view of this machine.
#[derive(Debug)]
pub struct Machine {
    name: String,
    /// Its directory: `ovl/`, `containers/`, `logs/`.
    dir: PathBuf,
    ns: Netns,
    /// Daemons started with [`Machine::spawn`], stopped on drop (first).
    daemons: Vec<Background>,
    /// The process that keeps the mount namespace, killed on drop (last).
    holder: Background,
}

impl Machine {
    /// A machine called `name` (a prefix for its network namespace too),
    /// kept under `parent`.
    pub fn new(name: &str, parent: &Path) -> Result<Machine, Error> {
        use std::io::BufRead;
        let ns = Netns::new(name)?;
        let dir = parent.join(name);
        create_dir(&dir.join("logs"))?;
        let setup_log = dir.join("logs").join("setup.log");
        let log = std::fs::File::create(&setup_log)
            .map_err(|e| Error::io(format!("creating {}", setup_log.display()), e))?;
        let mut holder = Background::spawn(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private"])
                .args(["sh", "-c", SETUP, "setup"])
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log),
        )?;
        let stdout = holder.child_mut().stdout.take().expect("stdout was piped");
        let mut line = String::new();
        // Either `ready`, or the end of the output when the setup failed.
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "ready" {
            let why = std::fs::read_to_string(&setup_log).unwrap_or_default();
            return Err(Error::io(
                format!("setting up machine {name}'s mounts: {}", why.trim()),
                std::io::ErrorKind::Other,
            ));
        }
        Ok(Machine {
            name: name.to_owned(),
            dir,
            ns,
            daemons: Vec::new(),
            holder,
        })
    }

    /// The mount namespace's file.
    fn mnt(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/mnt", self.holder.id()))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its network namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Where a path of the machine (`/etc/calico/felix.yaml`) is written
    /// when it was changed in the machine: in the overlay's upper layer.
    pub fn written(&self, inside: &str) -> Option<PathBuf> {
        let rel = inside.trim_start_matches('/');
        let (top, rest) = rel.split_once('/').unwrap_or((rel, ""));
        OVERLAID
            .contains(&top)
            .then(|| self.dir.join("ovl").join(top).join("upper").join(rest))
            .filter(|p| p.exists())
    }

    /// A command running `program` inside the machine (both namespaces),
    /// in `/`.
    pub fn cmd(&self, program: &str) -> Command {
        self.cmd_in(program, Path::new("/"))
    }

    /// As [`Machine::cmd`], in directory `cwd` of the machine (entering a
    /// mount namespace leaves the working directory behind).
    pub fn cmd_in(&self, program: &str, cwd: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount={}", self.mnt().display()))
            .arg(format!("--net={}", self.ns.path().display()))
            .arg(format!("--wd={}", cwd.display()))
            .arg(program);
        cmd
    }

    /// Runs the shell script `script` in the machine, in `cwd`, with `env`
    /// added; its output if it succeeded, [`Error::Command`] otherwise.
    pub fn sh(
        &self,
        script: &str,
        env: &BTreeMap<String, String>,
        cwd: &Path,
    ) -> Result<Output, Error> {
        run_checked(
            self.cmd_in("sh", cwd)
                .args(["-ec", script])
                .envs(env)
                .stdin(Stdio::null()),
        )
    }

    /// Writes `text` to `path` in the machine (directories made as needed).
    pub fn write(&self, path: &str, text: &str) -> Result<(), Error> {
        use std::io::Write;
        let mut child = self
            .cmd("sh")
            .args([
                "-ec",
                "mkdir -p \"$(dirname \"$1\")\"; cat > \"$1\"",
                "write",
                path,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("writing {path} in {}", self.name), e))?;
        child
            .stdin
            .take()
            .expect("stdin was piped")
            .write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("writing {path} in {}", self.name), e))?;
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io(format!("writing {path} in {}", self.name), e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::io(
                format!(
                    "writing {path} in {}: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                std::io::ErrorKind::Other,
            ))
        }
    }

    /// Starts `script` in the machine in the background, until the machine
    /// is dropped; its output goes to `logs/<what>.log`.
    pub fn spawn(
        &mut self,
        what: &str,
        script: &str,
        env: &BTreeMap<String, String>,
        cwd: &Path,
    ) -> Result<(), Error> {
        let path = self.log_path(what);
        let log = std::fs::File::create(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let err = log
            .try_clone()
            .map_err(|e| Error::io("duplicating a log file", e))?;
        // `exec`: the daemon is the process stopped on drop.
        let daemon = Background::spawn(
            self.cmd_in("sh", cwd)
                .arg("-c")
                .arg(format!("exec {script}"))
                .envs(env)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err),
        )?;
        self.daemons.push(daemon);
        Ok(())
    }

    fn log_path(&self, what: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{what}.log"))
    }

    /// The last `lines` lines of every daemon's log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.dir.join("logs")) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out += &format!(
                "--- {} {} (last {lines} lines)\n{}\n",
                self.name,
                path.file_name().unwrap_or_default().to_string_lossy(),
                all[all.len().saturating_sub(lines)..].join("\n")
            );
        }
        out
    }
}

impl Drop for Machine {
    /// Stops its daemons and containers; then the holder goes (a field,
    /// dropped after this), and the namespace's mounts with it.
    fn drop(&mut self) {
        for daemon in self.daemons.drain(..).rev() {
            let _ = daemon.stop(Duration::from_secs(10));
        }
        if std::fs::read_dir(self.dir.join("containers")).is_ok_and(|mut d| d.next().is_some()) {
            let _ = self
                .cmd("podman")
                .args(["rm", "--all", "--force", "--time", "0"])
                .output();
        }
    }
}
