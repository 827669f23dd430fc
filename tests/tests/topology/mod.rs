//! Running the examples of `examples/lab/` end to end, as a user does:
//! [`Example`] runs `scripts/lab-example.sh` (or `scripts/quickstart.sh`)
//! with the binaries the tests built (`QUICKSTART_BIN`), under a lab name and
//! state root of its own, and tears the lab down on drop; [`Report`] reads
//! what the script printed: the reachability matrix of each IP family, each
//! host's `calicoctl node status` and the workloads' addresses.

#![allow(dead_code)] // each test crate uses its part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::cni::REFERENCE_PLUGINS;
use testkit::{require_programs, require_root};

/// Whether this machine can run an example (root, BIRD for the quickstart's
/// ToR, the reference loopback plugin); false skips locally, CI panics.
pub fn can_run() -> bool {
    require_root()
        && require_programs(&[
            "ip",
            "ping",
            "bird",
            "birdc",
            &format!("{REFERENCE_PLUGINS}/loopback"),
        ])
}

/// One example, up under a name of the test's own until dropped.
pub struct Example {
    /// `examples/lab/<example>`.
    example: &'static str,
    /// `scripts/<script>`: `lab-example.sh` takes the example as argument.
    script: &'static str,
    /// The lab's name, unique to this test process.
    pub name: String,
    bin: PathBuf,
    root: tempfile::TempDir,
}

impl Example {
    /// The example run by `scripts/lab-example.sh EXAMPLE`, as lab
    /// `<prefix><pid>`.
    pub fn new(example: &'static str, prefix: &str) -> Example {
        Example::with_script(example, "lab-example.sh", prefix)
    }

    /// The quickstart, run by the README's `scripts/quickstart.sh`.
    pub fn quickstart() -> Example {
        Example::quickstart_as("q")
    }

    /// The quickstart under a lab name of another prefix (tests running
    /// at once need their own).
    pub fn quickstart_as(prefix: &str) -> Example {
        Example::with_script("quickstart", "quickstart.sh", prefix)
    }

    /// The binaries the example runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The pid of `node`'s first daemon, from the lab's state file.
    pub fn daemon_pid(&self, node: &str) -> u32 {
        let text =
            std::fs::read_to_string(self.state().join("state.json")).expect("the lab's state");
        let state: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let nodes = state["nodes"].as_array().cloned().unwrap_or_default();
        let n = nodes
            .iter()
            .find(|n| n["name"] == node)
            .unwrap_or_else(|| panic!("no node {node} in {text}"));
        n["daemons"][0]["pid"].as_u64().expect("a pid") as u32
    }

    fn with_script(example: &'static str, script: &'static str, prefix: &str) -> Example {
        let felix = testkit::workspace_binary("felix", "felix").unwrap();
        for (package, bin) in [
            ("calicoctl", "calicoctl"),
            ("flows", "goldmane"),
            ("cni", "calico"),
            ("cni", "calico-ipam"),
            ("lab", "calico-lab"),
        ] {
            testkit::workspace_binary(package, bin).unwrap();
        }
        Example {
            example,
            script,
            name: format!("{prefix}{}", std::process::id()),
            bin: felix.parent().unwrap().to_path_buf(),
            root: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs the script with `extra` arguments (none: bring it up).
    pub fn run(&self, extra: &[&str]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scripts")
            .join(self.script);
        let mut command = Command::new(script);
        if self.script == "lab-example.sh" {
            command.arg(self.example);
        }
        command
            .args(["--name", &self.name])
            .args(extra)
            .env("QUICKSTART_BIN", &self.bin)
            .env("CALICO_LAB_STATE_DIR", self.root.path())
            .output()
            .unwrap()
    }

    /// Brings the example up; panics with the script's output if it fails.
    pub fn up(&self) -> Report {
        let report = Report::of(&self.run(&[]));
        assert!(report.success, "{}", report.text());
        report
    }

    /// The lab's state directory (its datastore, sockets, logs).
    pub fn state(&self) -> PathBuf {
        self.root.path().join(&self.name)
    }

    /// calicoctl on the lab's datastore.
    pub fn calicoctl(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("calicoctl"))
            .args(args)
            .env("DATASTORE_TYPE", "sqlite")
            .env("DATASTORE_PATH", self.state().join("datastore.db"))
            .output()
            .unwrap()
    }

    /// calicoctl's output on the lab's datastore; panics with its stderr if
    /// it fails.
    pub fn calicoctl_ok(&self, args: &[&str]) -> String {
        let out = self.calicoctl(args);
        assert!(
            out.status.success(),
            "calicoctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The Unix socket of goldmane on node `node` (its flow API).
    pub fn goldmane_socket(&self, node: &str) -> PathBuf {
        self.state().join(node).join("goldmane.sock")
    }

    /// `calicoctl node status` of a felix host (empty when it fails).
    pub fn node_status(&self, host: &str) -> String {
        let socket = self.state().join(host).join("bgp.sock");
        let out = self.calicoctl(&["node", "status", "--socket", &socket.to_string_lossy()]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A command's output in a node's namespace.
    pub fn in_node(&self, node: &str, command: &[&str]) -> Output {
        in_netns(&format!("clab-{}-{node}", self.name), command)
    }

    /// A command's output in a workload's namespace.
    pub fn in_workload(&self, workload: &str, command: &[&str]) -> Output {
        in_netns(&format!("wl-{}-{workload}", self.name), command)
    }

    /// The lab's namespaces (nodes, workloads) still present.
    pub fn namespaces(&self) -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let ours = [format!("clab-{}-", self.name), format!("wl-{}-", self.name)];
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|ns| ours.iter().any(|p| ns.starts_with(p.as_str())))
            .map(str::to_string)
            .collect()
    }

    /// Tears the lab down and checks nothing of it is left.
    pub fn down(&self) {
        let out = self.run(&["--down"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(self.namespaces(), Vec::<String>::new());
        assert!(!self.state().exists());
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        self.run(&["--down"]);
    }
}

fn in_netns(ns: &str, command: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(command)
        .output()
        .unwrap()
}

/// What the script printed.
pub struct Report {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Report {
    pub fn of(out: &Output) -> Report {
        Report {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Both streams, for assertion messages.
    pub fn text(&self) -> String {
        format!("{}\n--- stderr\n{}", self.stdout, self.stderr)
    }

    /// The matrix titled `title` (`IPv4 ping`, `IPv6 TCP 8080`, ...) as
    /// (from, to, cell) for every pair.
    pub fn matrix(&self, title: &str) -> Vec<(String, String, String)> {
        let heading = format!("== reachability ({title})");
        let mut lines = self
            .stdout
            .lines()
            .skip_while(|l| !l.starts_with(&heading))
            .skip(1);
        let header = lines
            .next()
            .unwrap_or_else(|| panic!("no {heading}\n{}", self.text()));
        let columns: Vec<&str> = header.split_whitespace().collect();
        let mut cells = Vec::new();
        for row in lines.take(columns.len()) {
            let row: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(row.len(), columns.len() + 1, "{row:?}\n{}", self.text());
            for (to, cell) in columns.iter().zip(&row[1..]) {
                cells.push((row[0].to_string(), to.to_string(), cell.to_string()));
            }
        }
        assert_eq!(
            cells.len(),
            columns.len() * columns.len(),
            "{}",
            self.text()
        );
        cells
    }

    /// Checks the matrix titled `title` cell by cell against
    /// `allowed(from, to)`; returns the number of `ok` and `denied` cells.
    pub fn check_matrix(
        &self,
        title: &str,
        allowed: impl Fn(&str, &str) -> bool,
    ) -> (usize, usize) {
        let (mut ok, mut denied) = (0, 0);
        for (from, to, cell) in self.matrix(title) {
            let want = if from == to {
                "-"
            } else if allowed(&from, &to) {
                ok += 1;
                "ok"
            } else {
                denied += 1;
                "denied"
            };
            assert_eq!(cell, want, "{title}: {from} → {to}\n{}", self.text());
        }
        (ok, denied)
    }

    /// The table rows of a host's `calicoctl node status` section: (peer
    /// address, peer type, info).
    pub fn peers(&self, host: &str) -> Vec<(String, String, String)> {
        let heading = format!("== {host}: calicoctl node status");
        let section: Vec<&str> = self
            .stdout
            .lines()
            .skip_while(|l| *l != heading)
            .skip(1)
            .take_while(|l| !l.starts_with("== ") && !l.starts_with("tear down"))
            .collect();
        assert!(!section.is_empty(), "no {heading}\n{}", self.text());
        peer_rows(&section.join("\n"))
    }

    /// The `calicoctl node status --all` table: (node, address, type,
    /// info) per session.
    pub fn all_peers(&self) -> Vec<(String, String, String, String)> {
        let heading = "== calicoctl node status --all";
        self.stdout
            .lines()
            .skip_while(|l| *l != heading)
            .skip(1)
            .take_while(|l| !l.starts_with("== ") && !l.starts_with("tear down"))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                // "", node, address, type, state, since, prefixes, info, ""
                (cells.len() == 9 && cells[2].parse::<std::net::IpAddr>().is_ok()).then(|| {
                    let c = |i: usize| cells[i].to_string();
                    (c(1), c(2), c(3), c(7))
                })
            })
            .collect()
    }

    /// A workload's addresses, from the script's `workload NAME (LABELS) on
    /// HOST: ADDR...` line.
    pub fn addresses(&self, workload: &str) -> Vec<String> {
        let prefix = format!("workload {workload} (");
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no workload {workload}\n{}", self.text()));
        let (_, addrs) = line.split_once(": ").unwrap();
        addrs.split_whitespace().map(str::to_string).collect()
    }
}

/// The peers in a `calicoctl node status` table: (address, type, info).
pub fn peer_rows(status: &str) -> Vec<(String, String, String)> {
    status
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // "", address, type, state, since, info, ""
            (cells.len() == 7 && cells[1].parse::<std::net::IpAddr>().is_ok())
                .then(|| (cells[1].into(), cells[2].into(), cells[5].into()))
        })
        .collect()
}
