//! `calico-lab` end to end (root, BIRD 2): the built binary brings
//! `tests/data/e2e.clab.yml` up (two plain nodes on a link, two BIRD routers
//! peering, a GoBGP router and an FRR router each peering with one of them,
//! two nodes on a bridge), traffic crosses the links, the BGP sessions are
//! Established in BIRD's, GoBGP's and FRR's own view (plain `birdc` and
//! `vtysh`: each node's mount namespace holds its daemon's runtime directory),
//! binds appear at their container paths, also where the host lacks the
//! directory (which stays absent), `inspect` lists the nodes, and `down`
//! removes every namespace, daemon, mount and file, with the state file and
//! without it. Each test names its lab uniquely and its state lives in
//! its own temporary directory; a dropped [`Lab`] runs `down`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tempfile::TempDir;
use testkit::{poll_until, require_programs, require_root};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A lab under test: its unique name and state root; `down` on drop.
struct Lab {
    name: String,
    root: Rc<TempDir>,
}

impl Lab {
    fn new() -> Lab {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let root = tempfile::tempdir().unwrap();
        // FRR drops to user `frr`, which must reach its node's directory.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Lab {
            name: format!("t{}x{n}", std::process::id()),
            root: Rc::new(root),
        }
    }

    /// Lab `NAME-SUFFIX` in the same state root.
    fn sibling(&self, suffix: &str) -> Lab {
        Lab {
            name: format!("{}-{suffix}", self.name),
            root: Rc::clone(&self.root),
        }
    }

    /// `calico-lab ARGS` with this lab's state root.
    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// `calico-lab ARGS` with this lab's state root and `env` set.
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_calico-lab"))
            .args(args)
            .env("CALICO_LAB_STATE_DIR", self.root.path())
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// `calico-lab ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "calico-lab {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn up(&self, file: &str) -> String {
        self.ok(&["up", data(file).to_str().unwrap(), "--name", &self.name])
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join(&self.name)
    }

    /// Whether `exec NODE -- CMD…` succeeds.
    fn exec_ok(&self, node: &str, cmd: &[&str]) -> bool {
        let mut args = vec!["exec", "--name", &self.name, node, "--"];
        args.extend(cmd);
        self.run(&args).status.success()
    }

    /// `birdc ARGS` on router `node`, on its default socket `/run/bird/bird.ctl`.
    fn birdc(&self, node: &str, args: &[&str]) -> String {
        let mut all = vec!["exec", "--name", &self.name, node, "--", "birdc"];
        all.extend(args);
        String::from_utf8_lossy(&self.run(&all).stdout).into_owned()
    }

    /// `cat PATH` in `node`, which must succeed.
    fn cat(&self, node: &str, path: &str) -> String {
        self.ok(&["exec", "--name", &self.name, node, "--", "cat", path])
    }

    /// Namespaces named like this lab's under /run/netns.
    fn namespaces(&self) -> Vec<String> {
        let prefix = format!("clab-{}-", self.name);
        let mut v: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The daemons' pids from the state file.
    fn pids(&self) -> Vec<u32> {
        let text = std::fs::read_to_string(self.dir().join("state.json")).unwrap();
        let state: lab::State = serde_json::from_str(&text).unwrap();
        state
            .nodes
            .iter()
            .flat_map(|n| n.daemons.iter().map(|d| d.pid))
            .collect()
    }

    fn logs(&self) -> String {
        ["r1/bird", "r2/bird", "g1/gobgpd", "f1/zebra", "f1/bgpd"]
            .iter()
            .map(|n| {
                let log = self.dir().join(format!("{n}.log"));
                format!("{n}: {}", std::fs::read_to_string(log).unwrap_or_default())
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.run(&["down", "--name", &self.name]);
        if !out.status.success() {
            eprintln!(
                "down {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Whether process `pid` is alive (a zombie is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn ready() -> bool {
    require_root()
        && require_programs(&[
            "ip",
            "ping",
            "bird",
            "birdc",
            "gobgpd",
            "gobgp",
            "/usr/lib/frr/zebra",
            "/usr/lib/frr/bgpd",
            "vtysh",
        ])
}

fn wait(lab: &Lab, what: &str, check: impl FnMut() -> bool) {
    assert!(
        poll_until(Duration::from_secs(30), Duration::from_millis(200), check),
        "{what}: not within 30 s\n{}",
        lab.logs()
    );
}

fn assert_gone(lab: &Lab, pids: &[u32]) {
    assert_eq!(lab.namespaces(), Vec::<String>::new(), "namespaces left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = lab.dir().canonicalize().unwrap_or(lab.dir());
    let left: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:#?}");
    for pid in pids {
        assert!(
            poll_until(
                Duration::from_secs(5),
                Duration::from_millis(50),
                || !alive(*pid)
            ),
            "daemon {pid} still runs"
        );
    }
    assert!(!lab.dir().exists(), "state directory left");
}

#[test]
fn a_lab_comes_up_carries_traffic_peers_over_bgp_and_goes_down_leaving_nothing() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    // Bind targets whose directories the host lacks: they stay absent.
    let absent: Vec<&str> = ["/opt/calico-lab-e2e", "/etc/gobgp", "/run/bird"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    assert!(absent.contains(&"/opt/calico-lab-e2e"));
    let host_unchanged = |when: &str| {
        for p in &absent {
            assert!(!Path::new(p).exists(), "{p} made on the host {when}");
        }
    };
    let table = lab.up("e2e.clab.yml");
    host_unchanged("by up");
    let ns = lab.namespaces();
    assert_eq!(
        ns,
        ["a", "b", "c", "d", "f1", "g1", "r1", "r2", "sw"]
            .map(|n| format!("clab-{}-{n}", lab.name))
    );
    assert!(table.contains("10.90.1.1/30"), "{table}");

    wait(&lab, "a pings b across their link", || {
        lab.exec_ok("a", &["ping", "-c1", "-W1", "10.90.1.2"])
    });
    wait(&lab, "c pings d across the bridge", || {
        lab.exec_ok("c", &["ping", "-c1", "-W1", "10.90.3.2"])
    });
    // The `exec` environment comes from the file's kind defaults.
    assert!(lab.exec_ok("a", &["sh", "-c", "test \"$LAB_ROLE\" = plain"]));
    assert!(
        !lab.exec_ok("a", &["false"]),
        "exec passes the exit status on"
    );

    // Binds at their container paths; `:ro` ones read-only.
    let file = |f: &str| std::fs::read_to_string(data("e2e").join(f)).unwrap();
    assert_eq!(
        lab.cat("a", "/opt/calico-lab-e2e/note.txt"),
        file("note.txt")
    );
    assert!(!lab.exec_ok("a", &["sh", "-c", "echo x >/opt/calico-lab-e2e/note.txt"]));
    assert_eq!(lab.cat("r1", "/etc/bird/bird.conf"), file("r1.conf"));
    assert_eq!(lab.cat("g1", "/etc/gobgp/gobgpd.toml"), file("g1.toml"));
    assert_eq!(lab.cat("f1", "/etc/frr/frr.conf"), file("f1.conf"));
    // A node with a mount namespace still sees its own interfaces in /sys.
    assert!(lab.exec_ok("r1", &["test", "-e", "/sys/class/net/eth2"]));
    if absent.contains(&"/run/bird") {
        assert!(
            !lab.exec_ok("a", &["test", "-e", "/run/bird"]),
            "r1's /run/bird is its own"
        );
    }

    for (node, peer) in [("r1", "r2"), ("r2", "r1"), ("r2", "g1"), ("r1", "f1")] {
        wait(
            &lab,
            &format!("{node}'s session to {peer} Established"),
            || {
                lab.birdc(node, &["show", "protocols", peer])
                    .lines()
                    .any(|l| l.starts_with(peer) && l.contains("Established"))
            },
        );
    }
    wait(&lab, "g1's session to r2 Established in GoBGP", || {
        let mut args = vec!["exec", "--name", &lab.name, "g1", "--"];
        args.extend(["gobgp", "-u", "127.0.0.1", "-p", "50051", "neighbor"]);
        String::from_utf8_lossy(&lab.run(&args).stdout)
            .lines()
            .any(|l| l.contains("10.90.4.2") && l.contains("Establ"))
    });
    wait(&lab, "f1's session to r1 Established in FRR", || {
        let mut args = vec!["exec", "--name", &lab.name, "f1", "--", "vtysh"];
        args.extend(["-c", "show bgp neighbors 10.90.5.1"]);
        String::from_utf8_lossy(&lab.run(&args).stdout).contains("BGP state = Established")
    });
    let summary = lab.ok(&[
        "exec",
        "--name",
        &lab.name,
        "f1",
        "--",
        "vtysh",
        "-c",
        "show bgp summary",
    ]);
    assert!(summary.contains("10.90.5.1"), "{summary}");
    wait(&lab, "r1 learns f1's network", || {
        lab.birdc("r1", &["show", "route", "for", "10.91.4.0/24"])
            .contains("10.91.4.0/24")
    });
    wait(&lab, "r1 learns r2's static route", || {
        lab.birdc("r1", &["show", "route", "for", "10.91.2.0/24"])
            .contains("10.91.2.0/24")
    });

    let inspect = lab.ok(&["inspect", "--name", &lab.name]);
    for (node, role, addr) in [
        ("a", "linux/linux", "10.90.1.1/30"),
        ("r1", "linux/bird", "10.90.2.1/30"),
        ("r2", "linux/bird", "10.90.2.2/30"),
        ("g1", "linux/gobgp", "10.90.4.1/30"),
        ("f1", "linux/frr", "10.90.5.2/30"),
        ("sw", "bridge/bridge", "swp1"),
    ] {
        let ns = format!("clab-{}-{node}", lab.name);
        let line = inspect
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(node))
            .unwrap_or_else(|| panic!("no {node} in\n{inspect}"));
        for want in [role, &ns, "running", addr] {
            assert!(line.contains(want), "{node}: {want} missing in {line}");
        }
    }

    let again = lab.run(&[
        "up",
        data("e2e.clab.yml").to_str().unwrap(),
        "--name",
        &lab.name,
    ]);
    assert!(
        !again.status.success(),
        "a second up of the same lab is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already up"));

    let pids = lab.pids();
    assert_eq!(pids.len(), 5, "bird ×2, gobgpd, zebra and bgpd");

    // A daemon that dies shows as stopped.
    let state: lab::State =
        serde_json::from_str(&std::fs::read_to_string(lab.dir().join("state.json")).unwrap())
            .unwrap();
    let g1 = state.nodes.iter().find(|n| n.name == "g1").unwrap();
    let gobgpd = g1.daemons[0].pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gobgpd as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait(&lab, "inspect shows g1 stopped", || {
        lab.ok(&["inspect", "--name", &lab.name])
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("g1") && l.contains("stopped"))
    });
    lab.ok(&["down", "--name", &lab.name]);
    assert_gone(&lab, &pids);
    host_unchanged("by down");
    // Nothing left is not an error.
    lab.ok(&["down", "--name", &lab.name]);
}

#[test]
fn down_without_the_state_file_finds_the_labs_namespaces_and_daemons() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    lab.up("e2e.clab.yml");
    let pids = lab.pids();
    assert!(pids.iter().all(|p| alive(*p)));
    std::fs::remove_file(lab.dir().join("state.json")).unwrap();
    lab.ok(&["down", "--name", &lab.name]);
    assert_gone(&lab, &pids);
}

#[test]
fn down_without_its_state_file_leaves_a_lab_whose_name_extends_its_own() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    // Lab `NAME-b` in the same state root: its namespaces `clab-NAME-b-…`
    // also start with `clab-NAME-`.
    let longer = lab.sibling("b");
    let file = data("pair.clab.yml");
    let up = |name: &str| lab.ok(&["up", file.to_str().unwrap(), "--name", name]);
    up(&lab.name);
    up(&longer.name);
    std::fs::remove_file(lab.dir().join("state.json")).unwrap();
    lab.ok(&["down", "--name", &lab.name]);
    assert_eq!(
        longer.namespaces(),
        ["a", "b"].map(|n| format!("clab-{}-{n}", longer.name))
    );
    let inspect = lab.ok(&["inspect", "--name", &longer.name]);
    assert_eq!(inspect.matches("running").count(), 2, "{inspect}");
    lab.ok(&["down", "--name", &longer.name]);
    assert_eq!(longer.namespaces(), Vec::<String>::new());
}

/// A node's mount namespace is persisted also when calico-lab runs in a
/// mount namespace made on another CPU than its own (a container's, say):
/// on Linux 6.18 the new namespace's ID may then be the lower one, which the
/// kernel refuses to bind (see `persist_mount_namespace`). For every ordered
/// pair of CPUs: `up` (pinned to the second) in a namespace made on the
/// first, `exec` reads the bind, `down`, all inside that namespace.
#[test]
fn a_nodes_mount_namespace_persists_from_a_namespace_made_on_any_cpu() {
    if !require_root() || !require_programs(&["ip", "taskset", "unshare"]) {
        return;
    }
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    let cpus: Vec<usize> = (0..nix::sched::CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap())
        .collect();
    let bin = env!("CARGO_BIN_EXE_calico-lab");
    let file = data("bind.clab.yml");
    for &outer in &cpus {
        for &inner in cpus.iter().filter(|&&c| c != outer) {
            let lab = Lab::new();
            let name = &lab.name;
            let script = format!(
                "taskset -c {inner} {bin} up {file} --name {name} && \
                 {bin} exec --name {name} a -- cat /mnt/pair.clab.yml >/dev/null; \
                 rc=$?; {bin} down --name {name}; exit $rc",
                file = file.display()
            );
            let out = Command::new("taskset")
                .args(["-c", &outer.to_string(), "unshare", "--mount"])
                .args(["--propagation", "slave", "sh", "-c", &script])
                .env("CALICO_LAB_STATE_DIR", lab.root.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "namespace made on CPU {outer}, calico-lab on CPU {inner}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(lab.namespaces(), Vec::<String>::new());
        }
    }
}

#[test]
fn an_up_that_fails_half_way_removes_what_it_made() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let out = lab.run(&[
        "up",
        data("failing.clab.yml").to_str().unwrap(),
        "--name",
        &lab.name,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exit 3"), "{err}");
    assert_gone(&lab, &[]);
}

#[test]
fn felix_hosts_share_the_labs_datastore_and_mesh_over_bgp() {
    if !require_root() || !require_programs(&["ip", "nft"]) {
        return;
    }
    let felix = testkit::workspace_binary("felix", "felix").unwrap();
    let calicoctl = testkit::workspace_binary("calicoctl", "calicoctl").unwrap();
    let lab = Lab::new();
    let file = data("felix.clab.yml");
    lab.ok(&[
        "up",
        file.to_str().unwrap(),
        "--name",
        &lab.name,
        "--felix",
        felix.to_str().unwrap(),
    ]);
    let felix_logs = || {
        ["h1", "h2"]
            .map(|n| {
                let log = lab.dir().join(n).join("felix.log");
                format!(
                    "--- {n}\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            })
            .concat()
    };
    assert!(lab.dir().join("datastore.db").exists(), "{}", felix_logs());
    for (host, peer) in [("h1", "10.94.0.2"), ("h2", "10.94.0.1")] {
        let socket = lab.dir().join(host).join("bgp.sock");
        let ok = poll_until(Duration::from_secs(60), Duration::from_millis(300), || {
            let out = Command::new(&calicoctl)
                .args(["node", "status", "--socket"])
                .arg(&socket)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.contains(peer) && l.contains("Established"))
        });
        assert!(
            ok,
            "{host}'s session to {peer} not Established\n{}",
            felix_logs()
        );
    }
    let inspect = lab.ok(&["inspect", "--name", &lab.name]);
    assert_eq!(
        inspect
            .lines()
            .filter(|l| l.contains("linux/felix") && l.contains("running"))
            .count(),
        2,
        "{inspect}"
    );
    let pids = lab.pids();
    assert_eq!(pids.len(), 2);
    lab.ok(&["down", "--name", &lab.name]);
    assert_gone(&lab, &pids);
}

#[test]
fn long_form_links_set_mac_and_mtu_and_bird_runs_on_its_startup_config() {
    if !require_root() || !require_programs(&["ip", "ping", "bird", "birdc"]) {
        return;
    }
    let lab = Lab::new();
    // The name comes from `${LAB_TEST_NAME:=long}`, the router's MAC from
    // the environment, the MTU from its `${LAB_TEST_MTU:=1400}` default.
    let mac = "02:00:5e:93:00:11";
    let file = data("long.clab.yml");
    let up = lab.run_env(
        &["up", file.to_str().unwrap()],
        &[("LAB_TEST_NAME", &lab.name), ("LAB_TEST_MAC", mac)],
    );
    let log = || std::fs::read_to_string(lab.dir().join("r/bird.log")).unwrap_or_default();
    assert!(
        up.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&up.stderr),
        log()
    );
    let link = |node: &str, ifname: &str| {
        let ns = format!("clab-{}-{node}", lab.name);
        let out = Command::new("ip")
            .args(["-n", &ns, "link", "show", "dev", ifname])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (node, want_mac) in [("r", mac), ("h", "02:00:5e:93:00:02")] {
        let eth1 = link(node, "eth1");
        assert!(eth1.contains(" mtu 1400 "), "{node}: {eth1}");
        assert!(
            eth1.contains(&format!("link/ether {want_mac} ")),
            "{node}: {eth1}"
        );
    }
    assert!(
        poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
            lab.exec_ok("h", &["ping", "-c1", "-W1", "10.93.0.1"])
        }),
        "h pings r across the long-form link"
    );
    // The startup-config is at the config's container path too.
    assert_eq!(
        lab.cat("r", "/etc/bird/bird.conf"),
        std::fs::read_to_string(data("long/r.conf")).unwrap()
    );
    let status = lab.birdc("r", &["show", "status"]);
    assert!(
        status.contains("Router ID is 10.93.0.1"),
        "{status}\n{}",
        log()
    );
    assert!(
        poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
            lab.birdc("r", &["show", "route", "for", "10.93.0.0/30"])
                .contains("10.93.0.0/30")
        }),
        "BIRD's direct protocol sees eth1\n{}",
        log()
    );
    let pids = lab.pids();
    assert_eq!(pids.len(), 1, "bird");
    lab.ok(&["down", "--name", &lab.name]);
    assert_gone(&lab, &pids);
}

#[test]
fn a_bad_file_is_refused_naming_the_file_and_line() {
    let lab = Lab::new();
    let out = lab.run(&["up", data("bad-kind.clab.yml").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad-kind.clab.yml: line 6: topology.nodes.r1.kind: unknown variant `ceos`"),
        "{err}"
    );
}

/// The gc thresholds of `net.FAMILY.neigh.default`.
fn neigh_thresholds(family: &str) -> [u64; 3] {
    [1, 2, 3].map(|n| {
        let p = format!("/proc/sys/net/{family}/neigh/default/gc_thresh{n}");
        std::fs::read_to_string(&p).unwrap().trim().parse().unwrap()
    })
}

/// 36 nodes on one bridge may hold 36·35 = 1,260 neighbour entries, more
/// than the kernel's default table (1,024 for every namespace together):
/// `up` raises the thresholds of both families for the lab, every node
/// reaches every other, and the last `down` puts the values found back.
#[test]
fn a_lab_too_big_for_the_neighbour_table_raises_it_and_down_puts_it_back() {
    if !require_root() || !require_programs(&["ip", "ping"]) {
        return;
    }
    const N: usize = 36;
    let need = (N * (N - 1)) as u64;
    let lab = Lab::new();
    let mut file = String::from("name: wide\ntopology:\n  nodes:\n    sw: {kind: bridge}\n");
    for i in 0..N {
        file += &format!(
            "    n{i}: {{kind: linux, exec: [\"ip addr add 10.77.0.{}/24 dev eth1\"]}}\n",
            i + 1
        );
    }
    file += "  links:\n";
    for i in 0..N {
        file += &format!("    - endpoints: [\"n{i}:eth1\", \"sw:p{i}\"]\n");
    }
    let path = lab.root.path().join("wide.clab.yml");
    std::fs::write(&path, file).unwrap();
    let before = ["ipv4", "ipv6"].map(neigh_thresholds);
    lab.ok(&["up", path.to_str().unwrap(), "--name", &lab.name]);
    for (family, was) in ["ipv4", "ipv6"].into_iter().zip(before) {
        let now = neigh_thresholds(family);
        if was[2] / 2 >= need {
            // This machine's table holds the lab already: left as it is.
            assert_eq!(now, was, "{family}");
        } else {
            assert!(now[0] >= need, "{family}: {now:?}");
            assert!(now[2] >= was[2] + 2 * need, "{family}: {was:?} -> {now:?}");
        }
    }
    for i in 0..N {
        let others: Vec<String> = (1..=N)
            .filter(|&a| a != i + 1)
            .map(|a| a.to_string())
            .collect();
        let script = format!(
            "fail=0; for a in {}; do ping -c1 -W2 -q 10.77.0.$a >/dev/null 2>&1 || {{ echo \"no answer from 10.77.0.$a\"; fail=1; }}; done; exit $fail",
            others.join(" ")
        );
        let node = format!("n{i}");
        let out = lab.run(&[
            "exec", "--name", &lab.name, &node, "--", "sh", "-c", &script,
        ]);
        assert!(
            out.status.success(),
            "{node}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    lab.ok(&["down", "--name", &lab.name]);
    // The lab is out of the record; with no other lab in it, the values
    // found are back. (Another lab going up or down meanwhile, as a scale
    // run beside the tests, moves them itself.)
    // Read under the record's lock: a lab going up or down rewrites it.
    let Some(record) = lab::neigh::read_record().unwrap() else {
        assert_eq!(["ipv4", "ipv6"].map(neigh_thresholds), before);
        return;
    };
    assert!(!record.labs.contains_key(&lab.dir()), "{record:?}");
    let others: u64 = record.labs.values().sum();
    for (family, name) in [
        (lab::neigh::Family::Ipv4, "ipv4"),
        (lab::neigh::Family::Ipv6, "ipv6"),
    ] {
        if let Some(&found) = record.original.get(&family)
            && lab::neigh::thresholds(found, others).is_none()
        {
            let now = neigh_thresholds(name);
            let want = [found.gc_thresh1, found.gc_thresh2, found.gc_thresh3];
            assert_eq!(now, want, "{name}: {record:?}");
        }
    }
}
