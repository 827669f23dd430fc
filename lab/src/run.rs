//! The thin I/O: realising a [`Plan`] ([`up`]), removing a lab ([`down`]),
//! running a command in a node ([`exec_command`]) and reading a lab's nodes
//! back ([`inspect`]). Everything goes through `ip` (`ip netns`, `ip -n NS
//! link`), `ip netns exec`, and `unshare`, `nsenter` and `mount` for mount
//! namespaces, so what it makes is what an operator sees with the same
//! tools.
//!
//! `up` order: state file (namespaces listed, no pids) → the kernel's
//! neighbour table sized for the lab ([`neigh`]) → embedded
//! startup-configs written → namespaces → bridges → mount namespaces (their
//! binds, overlays for targets the host lacks) → veth pairs and dummy interfaces (MAC and MTU set, bridge ports
//! enslaved, up) → each node's `exec` commands → daemons (pids recorded).
//! Any failure removes what was made.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, umount2};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::RunError;
use crate::mounts::{self, FileKind, SCRATCH, Step};
use crate::neigh;
use crate::plan::{End, PREFIX, Plan, Role};
use crate::state::{DaemonState, NodeState, State};

/// Where `ip netns` keeps namespaces.
const NETNS_DIR: &str = "/run/netns";

/// How long a daemon must stay up after start to count as started.
const SETTLE: Duration = Duration::from_millis(500);

/// How long `down` waits for a daemon to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// Brings the planned lab up, each daemon given `ready` to create its ready
/// file; on failure removes whatever it made.
pub fn up(plan: &Plan, ready: Duration) -> Result<State, RunError> {
    if State::path(&plan.state_dir).exists() {
        return Err(RunError::AlreadyUp {
            lab: plan.lab.clone(),
            state: State::path(&plan.state_dir),
        });
    }
    for node in &plan.nodes {
        let dir = plan.state_dir.join(&node.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RunError::io(format!("creating {}", dir.display()), e))?;
    }
    let mut state = State {
        lab: plan.lab.clone(),
        nodes: plan
            .nodes
            .iter()
            .map(|n| NodeState {
                name: n.name.clone(),
                kind: n.kind.as_str().to_string(),
                role: n.role,
                netns: n.netns.clone(),
                env: n.env.clone(),
                mntns: n.mntns.clone(),
                daemons: Vec::new(),
            })
            .collect(),
    };
    state.save(&plan.state_dir)?;
    let made = neigh::reserve(plan)
        .and_then(|()| {
            for (path, text) in plan.nodes.iter().flat_map(|n| &n.files) {
                std::fs::write(path, text)
                    .map_err(|e| RunError::io(format!("writing {}", path.display()), e))?;
            }
            Ok(())
        })
        .and_then(|()| realise(plan, &mut state, ready));
    match made {
        Ok(()) => Ok(state),
        Err(e) => {
            if let Err(cleanup) = down(plan.state_dir.parent().unwrap_or(Path::new("/")), &plan.lab)
            {
                eprintln!("calico-lab: cleaning up after a failed up: {cleanup}");
            }
            Err(e)
        }
    }
}

fn realise(plan: &Plan, state: &mut State, ready_within: Duration) -> Result<(), RunError> {
    for node in &plan.nodes {
        ip(&["netns", "add", &node.netns])?;
        ip(&["-n", &node.netns, "link", "set", "lo", "up"])?;
        if node.role == Role::Bridge {
            ip(&[
                "-n",
                &node.netns,
                "link",
                "add",
                &node.name,
                "type",
                "bridge",
            ])?;
            ip(&["-n", &node.netns, "link", "set", &node.name, "up"])?;
        }
    }
    make_mount_namespaces(plan)?;
    for link in &plan.links {
        let (a, b) = (&link.a, &link.b);
        ip(&[
            "-n", &a.netns, "link", "add", &a.ifname, "type", "veth", "peer", "name", &b.ifname,
            "netns", &b.netns,
        ])?;
        for end in [a, b] {
            set_up(end, link.mtu)?;
        }
    }
    for dummy in &plan.dummies {
        let end = &dummy.end;
        ip(&[
            "-n",
            &end.netns,
            "link",
            "add",
            &end.ifname,
            "type",
            "dummy",
        ])?;
        set_up(end, dummy.mtu)?;
    }
    for node in &plan.nodes {
        for cmd in &node.exec {
            let mut c = in_node(&node.netns, node.mntns.as_deref(), "sh");
            c.args(["-c", cmd]).envs(&node.env);
            checked(&mut c)?;
        }
    }
    let mut started = Vec::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        if let Some(owner) = &node.owner {
            let dir = plan.state_dir.join(&node.name);
            checked(
                Command::new("chown")
                    .arg(format!("{owner}:{owner}"))
                    .arg(&dir),
            )?;
        }
        for daemon in &node.daemons {
            let log = File::create(&daemon.log)
                .map_err(|e| RunError::io(format!("creating {}", daemon.log.display()), e))?;
            let err = log
                .try_clone()
                .map_err(|e| RunError::io(format!("opening {}", daemon.log.display()), e))?;
            let mut cmd = in_node(&node.netns, node.mntns.as_deref(), &daemon.program);
            cmd.args(&daemon.args)
                .envs(&daemon.env)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                // Its own process group: a Ctrl-C at the runner leaves it running.
                .process_group(0);
            let command = display(&cmd);
            let child = cmd
                .spawn()
                .map_err(|e| RunError::io(format!("starting `{command}`"), e))?;
            // `nsenter` and `ip netns exec` exec the program: the pid is the daemon's.
            state.nodes[i].daemons.push(DaemonState {
                pid: child.id(),
                program: daemon.program.display().to_string(),
            });
            state.save(&plan.state_dir)?;
            started.push(Started {
                node: node.name.clone(),
                log: daemon.log.clone(),
                child,
                command,
            });
            if let Some(ready) = &daemon.ready {
                let deadline = Instant::now() + ready_within;
                while !ready.exists() {
                    if Instant::now() > deadline {
                        return Err(RunError::NotReady {
                            node: node.name.clone(),
                            path: ready.clone(),
                            within: ready_within.as_secs(),
                            log: tail(&daemon.log, 20),
                        });
                    }
                    check_running(&mut started)?;
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        check_running(&mut started)?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Gives a new link end its MAC address and MTU (if the file sets them),
/// makes it its bridge's port (on a bridge node) and brings it up.
fn set_up(end: &End, mtu: Option<u32>) -> Result<(), RunError> {
    let mtu = mtu.map(|m| m.to_string());
    let mut args = vec!["-n", &end.netns, "link", "set", "dev", &end.ifname];
    if let Some(mac) = &end.mac {
        args.extend(["address", mac]);
    }
    if let Some(mtu) = &mtu {
        args.extend(["mtu", mtu]);
    }
    if let Some(bridge) = &end.bridge {
        args.extend(["master", bridge]);
    }
    args.push("up");
    ip(&args)
}

/// A daemon `up` started.
struct Started {
    node: String,
    log: PathBuf,
    child: std::process::Child,
    command: String,
}

/// An error naming the first started daemon that has exited, with its log.
fn check_running(started: &mut [Started]) -> Result<(), RunError> {
    for s in started {
        if let Some(status) = s
            .child
            .try_wait()
            .map_err(|e| RunError::io(format!("waiting for `{}`", s.command), e))?
        {
            return Err(RunError::DaemonExited {
                node: s.node.clone(),
                command: s.command.clone(),
                status: status.to_string(),
                log: tail(&s.log, 20),
                log_path: s.log.clone(),
            });
        }
    }
    Ok(())
}

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub namespaces: Vec<String>,
    /// Daemon pids killed from the state file.
    pub pids: Vec<u32>,
    /// The state directory, if it existed.
    pub state_dir: Option<PathBuf>,
}

/// Removes lab `lab`: its daemons (from the state file), every namespace the
/// state file lists or that is named `clab-LAB-…` and listed by no other
/// lab's state (with every process inside it), and its state directory.
/// Succeeds when nothing is left to remove.
pub fn down(state_root: &Path, lab: &str) -> Result<Removed, RunError> {
    let dir = state_root.join(lab);
    let state = State::load(&dir)?;
    let mut removed = Removed::default();
    let mut namespaces = BTreeSet::new();
    if let Some(state) = &state {
        for node in &state.nodes {
            namespaces.insert(node.netns.clone());
            for d in &node.daemons {
                if is_program(d.pid, &d.program) {
                    stop(d.pid);
                    removed.pids.push(d.pid);
                }
            }
        }
    }
    let others = other_labs_namespaces(state_root, lab);
    let prefix = format!("{PREFIX}-{lab}-");
    if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && !others.contains(&name) {
                namespaces.insert(name);
            }
        }
    }
    for ns in namespaces {
        if remove_netns(&ns)? {
            removed.namespaces.push(ns);
        }
    }
    // After the namespaces: their entries are gone with them. A record
    // that cannot be read must not keep a lab from coming down.
    if let Err(e) = neigh::release(&dir, lab) {
        eprintln!("calico-lab: putting the neighbour table back: {e}");
    }
    if dir.exists() {
        unmount_under(&dir)?;
        std::fs::remove_dir_all(&dir)
            .map_err(|e| RunError::io(format!("removing {}", dir.display()), e))?;
        removed.state_dir = Some(dir);
    }
    Ok(removed)
}

/// The labs with a state directory under `state_root`.
pub fn labs(state_root: &Path) -> Vec<String> {
    let mut labs: Vec<String> = std::fs::read_dir(state_root)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| State::path(&e.path()).exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    labs.sort();
    labs
}

/// Namespaces recorded by labs other than `lab` (so that `down a` never
/// removes lab `a-b`'s `clab-a-b-x`).
fn other_labs_namespaces(state_root: &Path, lab: &str) -> BTreeSet<String> {
    labs(state_root)
        .into_iter()
        .filter(|l| l != lab)
        .filter_map(|l| State::load(&state_root.join(l)).ok().flatten())
        .flat_map(|s| s.nodes.into_iter().map(|n| n.netns))
        .collect()
}

/// Whether `pid` still runs `program` (its argv[0] or its executable).
fn is_program(pid: u32, program: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    base(&argv0) == base(program)
}

/// SIGTERM, then SIGKILL after the grace period.
fn stop(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let pid = Pid::from_raw(raw);
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        // A zombie (not ours to reap) counts as gone.
        let gone = std::fs::read_to_string(format!("/proc/{raw}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if gone {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// Kills every process in namespace `name` and deletes it; `false` if it
/// did not exist.
fn remove_netns(name: &str) -> Result<bool, RunError> {
    if !Path::new(NETNS_DIR).join(name).exists() {
        return Ok(false);
    }
    let pids = Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let me = std::process::id();
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        if pid > 0 && pid.unsigned_abs() != me {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    match ip(&["netns", "del", name]) {
        Err(_) if !Path::new(NETNS_DIR).join(name).exists() => Ok(true),
        other => other.map(|_| true),
    }
}

/// Runs `cmd` (program and arguments) in node `node` of `state`'s lab, with
/// the node's environment, and returns its exit status.
pub fn exec_command(state: &State, node: &str, cmd: &[String]) -> Result<ExitStatus, RunError> {
    let n = state
        .nodes
        .iter()
        .find(|n| n.name == node)
        .ok_or_else(|| RunError::NoNode {
            lab: state.lab.clone(),
            node: node.to_string(),
        })?;
    let (program, args) = cmd
        .split_first()
        .map_or(("sh", &[][..]), |(p, a)| (p.as_str(), a));
    let mut c = in_node(&n.netns, n.mntns.as_deref(), program);
    c.args(args).envs(&n.env);
    let command = display(&c);
    c.status()
        .map_err(|e| RunError::io(format!("running `{command}`"), e))
}

/// One row of `inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub lab: String,
    pub node: String,
    pub kind: String,
    pub role: Role,
    pub netns: String,
    /// `NAME ADDR…` per interface (loopback left out).
    pub interfaces: Vec<String>,
    /// `running`, `stopped` (a daemon gone) or `absent` (no namespace).
    pub state: &'static str,
}

/// The nodes of `state`'s lab as they are now.
pub fn inspect(state: &State) -> Vec<NodeStatus> {
    state
        .nodes
        .iter()
        .map(|n| {
            let exists = Path::new(NETNS_DIR).join(&n.netns).exists();
            let interfaces = if exists {
                interfaces(&n.netns)
            } else {
                Vec::new()
            };
            let daemon_up = n.daemons.iter().all(|d| is_program(d.pid, &d.program));
            let state_word = match (exists, daemon_up) {
                (false, _) => "absent",
                (true, true) => "running",
                (true, false) => "stopped",
            };
            NodeStatus {
                lab: state.lab.clone(),
                node: n.name.clone(),
                kind: n.kind.clone(),
                role: n.role,
                netns: n.netns.clone(),
                interfaces,
                state: state_word,
            }
        })
        .collect()
}

/// `ip -br addr` in `netns`, loopback left out, as `NAME ADDR…`.
fn interfaces(netns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", netns, "-br", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.split('@').next()?.to_string();
            let _state = f.next();
            let addrs: Vec<&str> = f.collect();
            (name != "lo").then(|| {
                if addrs.is_empty() {
                    name
                } else {
                    format!("{name} {}", addrs.join(","))
                }
            })
        })
        .collect()
}

/// The `inspect` table (pure): one line per node, interfaces joined by `; `.
pub fn table(rows: &[NodeStatus]) -> String {
    let header = [
        "LAB",
        "NODE",
        "KIND/ROLE",
        "NAMESPACE",
        "STATE",
        "INTERFACES",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.lab.clone(),
                r.node.clone(),
                format!("{}/{}", r.kind, r.role.as_str()),
                r.netns.clone(),
                r.state.to_string(),
                r.interfaces.join("; "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let mut line = |cols: Vec<&str>| {
        let text: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `program` in network namespace `netns` and, if the node has one, its
/// mount namespace `mntns` (entered first, in the runner's working
/// directory; `ip netns exec` then remounts `/sys` in a child of it, which
/// keeps the node's mounts).
fn in_node(netns: &str, mntns: Option<&Path>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = match mntns {
        Some(file) => in_mntns(file, "ip"),
        None => Command::new("ip"),
    };
    c.args(["netns", "exec", netns]).arg(program);
    c
}

/// `program` in the mount namespace persisted at `file`, in the runner's
/// working directory (nsenter would otherwise start in the namespace's root).
fn in_mntns(file: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--mount={}", file.display()));
    if let Ok(cwd) = std::env::current_dir() {
        c.arg(format!("--wd={}", cwd.display()));
    }
    c.arg("--").arg(program);
    c
}

/// Makes each node's mount namespace (see [`crate::mounts`] for the
/// scheme): the state directory becomes a private bind mount of itself,
/// then per node `unshare` persists a namespace at its file, the copies of
/// other persisted mount namespaces are dropped in it (so that none outlives
/// its lab), and its mount steps run in it.
fn make_mount_namespaces(plan: &Plan) -> Result<(), RunError> {
    if plan.nodes.iter().all(|n| n.mntns.is_none()) {
        return Ok(());
    }
    let dir = &plan.state_dir;
    checked(Command::new("mount").arg("--bind").arg(dir).arg(dir))?;
    checked(Command::new("mount").arg("--make-private").arg(dir))?;
    for node in &plan.nodes {
        let Some(file) = &node.mntns else { continue };
        let scratch = dir.join(&node.name).join(SCRATCH);
        File::create(file).map_err(|e| RunError::io(format!("creating {}", file.display()), e))?;
        std::fs::create_dir_all(&scratch)
            .map_err(|e| RunError::io(format!("creating {}", scratch.display()), e))?;
        persist_mount_namespace(file)?;
        for other in mounts::mount_namespace_files(&mountinfo(file)?) {
            checked(in_mntns(file, "umount").arg("-l").arg(other))?;
        }
        let steps = mounts::steps(&node.mounts, &scratch, host_kind).map_err(|message| {
            RunError::Mount {
                node: node.name.clone(),
                message,
            }
        })?;
        for step in steps {
            mount_step(file, step)?;
        }
    }
    Ok(())
}

/// Persists a new mount namespace at `file` (`unshare --mount=FILE
/// --propagation slave`), pinned to each CPU in turn if it fails at first.
///
/// The kernel binds a mount namespace's file only in a namespace with a
/// lower ID (fs/namespace.c `mnt_ns_loop`), and since Linux 6.18 namespace
/// IDs come from per-CPU batches (`gen_cookie_next`): made on another CPU
/// than ours was, a newer namespace may get a lower ID, and `unshare` fails
/// with EINVAL. Never so in the initial namespace (its ID is fixed and low),
/// often in a container. One made on the CPU that made ours always gets a
/// higher ID, and a thread's CPU affinity is inherited by what it spawns.
/// Every online CPU is tried, not only those we may run on now: ours may
/// have been made on one outside our affinity.
fn persist_mount_namespace(file: &Path) -> Result<(), RunError> {
    let unshare = || {
        let mut c = Command::new("unshare");
        c.arg(format!("--mount={}", file.display()))
            .args(["--propagation", "slave", "true"]);
        checked(&mut c)
    };
    let first = match unshare() {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    for cpu in cpu_list(&online) {
        let pinned = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut one = CpuSet::new();
                    one.set(cpu).ok()?;
                    sched_setaffinity(Pid::from_raw(0), &one).ok()?;
                    Some(unshare())
                })
                .join()
        });
        if let Ok(Some(Ok(()))) = pinned {
            return Ok(());
        }
    }
    Err(first)
}

/// The CPUs of a kernel CPU list (`0-3,8`, as in
/// /sys/devices/system/cpu/online); what does not parse is left out.
fn cpu_list(text: &str) -> Vec<usize> {
    text.trim()
        .split(',')
        .filter_map(|part| match part.split_once('-') {
            Some((a, b)) => Some(a.parse().ok()?..=b.parse().ok()?),
            None => part.parse().ok().map(|c| c..=c),
        })
        .flatten()
        .collect()
}

/// Runs one step in the mount namespace persisted at `file`.
fn mount_step(file: &Path, step: Step) -> Result<(), RunError> {
    let run = |program: &str, args: &[&std::ffi::OsStr]| {
        let mut c = in_mntns(file, program);
        checked(c.args(args))
    };
    match step {
        Step::Scratch { at } => run(
            "mount",
            &["-t", "tmpfs", "-o", "mode=0755", "calico-lab"]
                .map(AsRef::as_ref)
                .into_iter()
                .chain([at.as_os_str()])
                .collect::<Vec<_>>(),
        ),
        Step::Overlay {
            at,
            upper,
            work,
            merged,
        } => {
            run(
                "mkdir",
                &[
                    "-p".as_ref(),
                    upper.as_os_str(),
                    work.as_os_str(),
                    merged.as_os_str(),
                ],
            )?;
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                at.display(),
                upper.display(),
                work.display()
            );
            run(
                "mount",
                &["-t", "overlay", "-o", &options, "calico-lab"]
                    .map(AsRef::as_ref)
                    .into_iter()
                    .chain([merged.as_os_str()])
                    .collect::<Vec<_>>(),
            )?;
            // The overlay shows `at`'s own file system only: the mounts
            // below `at` are bound into it before it covers `at`.
            for sub in mounts::submounts(&mountinfo(file)?, &at) {
                let rel = sub.strip_prefix(&at).unwrap_or(&sub);
                let into = merged.join(rel);
                run(
                    "mount",
                    &["--rbind".as_ref(), sub.as_os_str(), into.as_os_str()],
                )?;
            }
            run(
                "mount",
                &["--move".as_ref(), merged.as_os_str(), at.as_os_str()],
            )
        }
        Step::Create { path, kind } => match kind {
            FileKind::Dir => run("mkdir", &[path.as_os_str()]),
            FileKind::File => run("touch", &[path.as_os_str()]),
        },
        Step::Bind {
            source,
            target,
            read_only,
        } => {
            let options = if read_only { "bind,ro" } else { "bind" };
            run(
                "mount",
                &[
                    "-o".as_ref(),
                    options.as_ref(),
                    source.as_os_str(),
                    target.as_os_str(),
                ],
            )
        }
    }
}

/// What `path` is on the host, following symlinks; a dangling symlink
/// counts as a file (so it is never made, which would write where it points).
fn host_kind(path: &Path) -> Option<FileKind> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Some(FileKind::Dir),
        Ok(_) => Some(FileKind::File),
        Err(_) => std::fs::symlink_metadata(path).ok().map(|_| FileKind::File),
    }
}

/// The mount table of the mount namespace persisted at `file`.
fn mountinfo(file: &Path) -> Result<String, RunError> {
    stdout_of(in_mntns(file, "cat").arg("/proc/self/mountinfo"))
}

/// Detaches every mount at or below `dir` on the host (the nodes' mount
/// namespace files, the state directory's bind), last made first.
fn unmount_under(dir: &Path) -> Result<(), RunError> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| RunError::io("reading /proc/self/mountinfo", e))?;
    for target in mounts::mounts_under(&info, &dir) {
        match umount2(&target, MntFlags::MNT_DETACH) {
            // Already gone with a mount above it.
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(RunError::io(
                    format!("unmounting {}", target.display()),
                    e.into(),
                ));
            }
        }
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), RunError> {
    checked(Command::new("ip").args(args))
}

fn checked(cmd: &mut Command) -> Result<(), RunError> {
    stdout_of(cmd).map(drop)
}

/// Runs `cmd`; its stdout, or an error naming it with its stderr.
fn stdout_of(cmd: &mut Command) -> Result<String, RunError> {
    let command = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| RunError::io(format!("running `{command}`"), e))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(RunError::Command {
        command,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` lines of the file at `path`.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::cpu_list;

    #[test]
    fn a_cpu_list_expands_its_ranges_and_skips_what_does_not_parse() {
        assert_eq!(cpu_list("0-1\n"), [0, 1]);
        assert_eq!(cpu_list("0,2-4,7"), [0, 2, 3, 4, 7]);
        assert_eq!(cpu_list(""), Vec::<usize>::new());
        assert_eq!(cpu_list("x,3"), [3]);
    }
}
