//! The README's install guide ("Running it on your hosts"), followed step by
//! step (root): the guide's blocks, read from the README and run as
//! written on machines that stand for its hosts, its etcd and its ToR (each
//! a [`Machine`]: a network namespace and its own layer over this machine's
//! system). The package is built from the test's binaries by
//! `scripts/package.sh` and installed with the guide's `apt-get install`.
//!
//! ```text
//!   tor 10.0.0.1 (BIRD)   etcd 10.0.0.2   host1 10.0.0.11   host2 10.0.0.12
//!   └────────────────────── lan (bridge br0) ──────────────────────────┘
//! ```
//!
//! Each block is marked `<!-- guide: MACHINES [OPTIONS] -->`: MACHINES is
//! `hosts` (every host, in turn), a machine's name, or `example` (values a
//! reader sets by hand; the test sets its own); OPTIONS are `daemon` (runs
//! in the background from then on), `file=PATH` (the block is that file's
//! text), `retry` (run until it succeeds, for a minute at most) and
//! `capture=VAR` (its output's last line is `$VAR` in later blocks). What
//! the test adds: the unit's `ExecStart` where a block says `systemctl
//! enable --now calico-felix`, apt told not to upgrade (it has no network),
//! a local busybox image, BIRD's run directory, and podman's container
//! limits below this sandbox's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::cni::REFERENCE_PLUGINS;
use testkit::machine::Machine;
use testkit::{Netns, poll_until, require_programs, require_root, veth_pair};

/// The README's line that starts felix; the test runs the unit's ExecStart.
const START_FELIX: &str = "systemctl enable --now calico-felix";

/// The machines of the guide's example network: name, address.
const MACHINES: [(&str, &str); 4] = [
    ("tor", "10.0.0.1"),
    ("etcd", "10.0.0.2"),
    ("host1", "10.0.0.11"),
    ("host2", "10.0.0.12"),
];

/// One block of the guide and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    /// `hosts`, a machine's name, or `example`.
    machines: String,
    daemon: bool,
    retry: bool,
    file: Option<String>,
    capture: Option<String>,
    text: String,
    /// The README line the block starts on, for failure messages.
    line: usize,
}

/// The marked blocks of the README's section `heading`, in order (pure).
fn read_steps(readme: &str, heading: &str) -> Result<Vec<Step>, String> {
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .ok_or_else(|| format!("no section {heading:?}"))?;
    let first_line = readme[..=start].matches('\n').count() + 1;
    let section = &readme[start + 1..];
    let section = section[3..]
        .find("\n## ")
        .map_or(section, |end| &section[..end + 3]);
    let lines: Vec<&str> = section.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(mark) = lines[i]
            .trim()
            .strip_prefix("<!-- guide:")
            .and_then(|m| m.strip_suffix("-->"))
        else {
            i += 1;
            continue;
        };
        let at = first_line + i;
        let mut words = mark.split_whitespace();
        let machines = words
            .next()
            .ok_or_else(|| format!("README line {at}: a guide mark names no machines"))?;
        let mut step = Step {
            machines: machines.to_owned(),
            daemon: false,
            retry: false,
            file: None,
            capture: None,
            text: String::new(),
            line: at + 2,
        };
        for word in words {
            match word.split_once('=') {
                None if word == "daemon" => step.daemon = true,
                None if word == "retry" => step.retry = true,
                Some(("file", path)) => step.file = Some(path.to_owned()),
                Some(("capture", var)) => step.capture = Some(var.to_owned()),
                _ => return Err(format!("README line {at}: unknown guide option {word:?}")),
            }
        }
        let fence = lines
            .get(i + 1)
            .filter(|l| l.starts_with("```"))
            .ok_or_else(|| format!("README line {at}: a guide mark not followed by a block"))?;
        let body: Vec<&str> = lines[i + 2..]
            .iter()
            .take_while(|l| !l.starts_with("```"))
            .copied()
            .collect();
        if i + 2 + body.len() >= lines.len() {
            return Err(format!("README line {at}: the {fence} block does not end"));
        }
        step.text = body.join("\n") + "\n";
        i += 3 + body.len();
        out.push(step);
    }
    Ok(out)
}

/// The guide's example network, a machine per host and the package.
struct Guide {
    /// Dropped first: hosts (felix, podman), then etcd and the ToR.
    machines: Vec<Machine>,
    _lan: Netns,
    /// Holds the package: the guide's blocks run here.
    deb_dir: PathBuf,
    dir: tempfile::TempDir,
}

impl Guide {
    fn new() -> Guide {
        let dir = tempfile::tempdir().unwrap();
        let deb_dir = dir.path().join("deb");
        build_package(&deb_dir);
        let lan = Netns::new("gdlan").unwrap();
        lan.ip(["link", "add", "br0", "type", "bridge"]).unwrap();
        lan.link_up("br0").unwrap();
        let mut machines = Vec::new();
        for (i, (name, addr)) in MACHINES.iter().enumerate() {
            let m = Machine::new(name, dir.path()).unwrap();
            let port = format!("port{i}");
            veth_pair(m.ns(), "eth0", &lan, &port).unwrap();
            lan.ip(["link", "set", &port, "master", "br0"]).unwrap();
            m.ns().add_addr("eth0", &format!("{addr}/24")).unwrap();
            m.ns().link_up("lo").unwrap();
            machines.push(m);
        }
        let mut guide = Guide {
            machines,
            _lan: lan,
            deb_dir,
            dir,
        };
        guide.prepare();
        // Hosts first, so that they go first on drop.
        guide.machines.reverse();
        guide
    }

    /// What the test adds to the machines (see the module doc).
    fn prepare(&self) {
        let busybox = self.dir.path().join("busybox.tar");
        let rootfs = testkit::container::busybox_rootfs(&self.dir.path().join("rootfs")).unwrap();
        testkit::run_checked(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&busybox)
                .arg("."),
        )
        .unwrap();
        let limits = testkit::podman::container_ulimits_conf().unwrap();
        for m in &self.machines {
            let env = BTreeMap::new();
            let sh = |script: &str| {
                m.sh(script, &env, self.dir.path())
                    .unwrap_or_else(|e| panic!("preparing {}: {e}", m.name()))
            };
            match m.name() {
                "tor" => {
                    sh("sysctl -qw net.ipv4.ip_forward=1; mkdir -p /run/bird");
                }
                "etcd" => {
                    m.ns()
                        .ip(["route", "add", "default", "via", "10.0.0.1"])
                        .unwrap();
                }
                _ => {
                    m.ns()
                        .ip(["route", "add", "default", "via", "10.0.0.1"])
                        .unwrap();
                    sh(&format!(
                        "echo 'APT::Get::Upgrade \"false\";' > /etc/apt/apt.conf.d/99no-network\n\
                         mkdir -p /etc/containers\n\
                         printf '%s' '{limits}' > /etc/containers/containers.conf\n\
                         podman import --quiet {} docker.io/library/busybox:latest >/dev/null",
                        busybox.display()
                    ));
                }
            }
        }
    }

    fn machine(&self, name: &str) -> &Machine {
        self.machines
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("no machine {name}"))
    }

    fn machine_mut(&mut self, name: &str) -> &mut Machine {
        self.machines
            .iter_mut()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("no machine {name}"))
    }

    /// The values the guide's `example` block has a reader set, per host.
    fn env(&self, name: &str, captured: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut env = captured.clone();
        env.insert("DEBIAN_FRONTEND".into(), "noninteractive".into());
        let host = MACHINES
            .iter()
            .find(|(n, _)| *n == name && n.starts_with("host"));
        if let Some((_, addr)) = host {
            env.insert("NODENAME".into(), name.into());
            env.insert("IP".into(), format!("{addr}/24"));
            env.insert("AS".into(), "64512".into());
            env.insert("ETCD_ENDPOINTS".into(), "http://10.0.0.2:2379".into());
        }
        env
    }

    /// Runs `step` on each of its machines; returns what it captured.
    fn run(&mut self, step: &Step, captured: &mut BTreeMap<String, String>) {
        let names: Vec<&str> = match step.machines.as_str() {
            "example" => return,
            "hosts" => vec!["host1", "host2"],
            one => vec![one],
        };
        for name in names {
            let env = self.env(name, captured);
            let cwd = self.deb_dir.clone();
            let what = format!("README line {} on {name}", step.line);
            if let Some(path) = &step.file {
                self.machine(name)
                    .write(path, &step.text)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                continue;
            }
            if step.daemon {
                let daemon = step.text.split_whitespace().next().unwrap_or("daemon");
                self.machine_mut(name)
                    .spawn(daemon, step.text.trim(), &env, &cwd)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                continue;
            }
            let (script, start_felix) = match step.text.lines().any(|l| l.trim() == START_FELIX) {
                true => (step.text.replace(START_FELIX, ":"), true),
                false => (step.text.clone(), false),
            };
            let machine = self.machine(name);
            let mut last = None;
            let ran = poll_until(
                Duration::from_secs(if step.retry { 60 } else { 0 }),
                Duration::from_millis(500),
                || {
                    last = Some(machine.sh(&script, &env, &cwd));
                    last.as_ref().is_some_and(Result::is_ok)
                },
            );
            let output = match last {
                Some(Ok(out)) if ran => out,
                Some(Err(e)) => panic!("{what}: {e}\n{}", self.logs()),
                _ => panic!("{what}: did not run"),
            };
            if let Some(var) = &step.capture {
                let text = String::from_utf8_lossy(&output.stdout);
                let value = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                captured.insert(var.clone(), value.trim().to_owned());
            }
            if start_felix {
                self.start_felix(name, &env, &cwd);
            }
        }
    }

    /// What systemd would do for `systemctl enable --now calico-felix`:
    /// the installed unit's `ExecStart`, in the background.
    fn start_felix(&mut self, name: &str, env: &BTreeMap<String, String>, cwd: &Path) {
        let machine = self.machine(name);
        let unit = machine
            .sh("cat /lib/systemd/system/calico-felix.service", env, cwd)
            .unwrap_or_else(|e| panic!("reading the unit on {name}: {e}"));
        let unit = String::from_utf8_lossy(&unit.stdout).into_owned();
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("the unit has no ExecStart:\n{unit}"))
            .to_owned();
        self.machine_mut(name)
            .spawn("felix", &exec, env, cwd)
            .unwrap_or_else(|e| panic!("starting felix on {name}: {e}"));
    }

    /// `calicoctl node status` on `host`.
    fn node_status(&self, host: &str) -> String {
        let env = self.env(host, &BTreeMap::new());
        self.machine(host)
            .sh("calicoctl node status", &env, &self.deb_dir)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e.to_string())
    }

    fn logs(&self) -> String {
        self.machines.iter().map(|m| m.logs(30)).collect()
    }
}

/// `scripts/package.sh` over the test's own binaries, into `out`.
fn build_package(out: &Path) {
    let mut bin_dir = None;
    for (package, bin) in [
        ("felix", "felix"),
        ("calicoctl", "calicoctl"),
        ("bgpd", "bgpd"),
        ("lab", "calico-lab"),
        ("cni", "calico"),
        ("cni", "calico-ipam"),
    ] {
        let path = testkit::workspace_binary(package, bin)
            .unwrap_or_else(|e| panic!("building {bin}: {e}"));
        bin_dir = path.parent().map(Path::to_path_buf);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/package.sh");
    testkit::run_checked(
        Command::new("bash")
            .arg(script)
            .arg("--bin-dir")
            .arg(bin_dir.expect("a binary's directory"))
            .arg("--fast")
            .arg("--out")
            .arg(out),
    )
    .unwrap_or_else(|e| panic!("scripts/package.sh: {e}"));
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

#[test]
fn the_guide_reads_as_marked_blocks() {
    let steps = read_steps(&readme(), "Running it on your hosts").unwrap();
    let machines: Vec<&str> = steps.iter().map(|s| s.machines.as_str()).collect();
    assert!(
        machines.contains(&"hosts") && machines.contains(&"tor"),
        "{machines:?}"
    );
    for s in &steps {
        let known = ["hosts", "example"].contains(&s.machines.as_str())
            || MACHINES.iter().any(|(n, _)| *n == s.machines);
        assert!(
            known,
            "README line {}: unknown machine {:?}",
            s.line, s.machines
        );
    }
    assert!(
        steps
            .iter()
            .any(|s| s.text.lines().any(|l| l.trim() == START_FELIX)),
        "the guide starts felix with `{START_FELIX}`"
    );
}

#[test]
fn guide_marks_are_parsed_with_their_options_and_errors_name_the_line() {
    let text = "intro\n\n## Guide\n\ntext\n<!-- guide: tor file=/etc/x daemon -->\n```text\na\nb\n```\n\
                <!-- guide: host1 capture=WEB retry -->\n```sh\necho hi\n```\n## Next\n<!-- guide: x -->\n```sh\nno\n```\n";
    let steps = read_steps(text, "Guide").unwrap();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(
        (
            steps[0].file.as_deref(),
            steps[0].daemon,
            steps[0].text.as_str(),
            steps[0].line
        ),
        (Some("/etc/x"), true, "a\nb\n", 8)
    );
    assert_eq!(
        (
            steps[1].capture.as_deref(),
            steps[1].retry,
            steps[1].text.as_str()
        ),
        (Some("WEB"), true, "echo hi\n")
    );
    let bad = "## Guide\n<!-- guide: host1 sometimes -->\n```sh\nx\n```\n";
    assert_eq!(
        read_steps(&format!("x\n{bad}"), "Guide").unwrap_err(),
        "README line 3: unknown guide option \"sometimes\""
    );
    let open = "x\n## Guide\n<!-- guide: host1 -->\n```sh\nx\n";
    assert!(
        read_steps(open, "Guide")
            .unwrap_err()
            .contains("does not end")
    );
}

#[test]
fn the_install_guide_works_as_written() {
    if !require_root()
        || !require_programs(&[
            "podman",
            "etcd",
            "bird",
            "dpkg-deb",
            "apt-get",
            &format!("{REFERENCE_PLUGINS}/loopback"),
        ])
    {
        return;
    }
    let steps = read_steps(&readme(), "Running it on your hosts").unwrap();
    let mut guide = Guide::new();
    let mut captured = BTreeMap::new();
    for step in &steps {
        guide.run(step, &mut captured);
    }
    let web = captured.get("WEB").cloned().unwrap_or_default();
    assert!(
        web.starts_with("10.244."),
        "web's address from the pool: {web:?}"
    );

    // Every host's sessions: the ToR and the other host.
    for (host, other) in [("host1", "10.0.0.12"), ("host2", "10.0.0.11")] {
        let up = poll_until(Duration::from_secs(60), Duration::from_millis(500), || {
            let status = guide.node_status(host);
            ["10.0.0.1", other].iter().all(|peer| {
                status
                    .lines()
                    .any(|l| l.contains(peer) && l.contains("Established"))
            })
        });
        assert!(up, "{host}: {}\n{}", guide.node_status(host), guide.logs());
    }
    // The ToR learns host1's block (the one web's address is in).
    let tor = guide.machine("tor");
    let routes = || {
        tor.sh("birdc show route", &BTreeMap::new(), Path::new("/"))
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e.to_string())
    };
    let learned = poll_until(Duration::from_secs(60), Duration::from_millis(500), || {
        routes().contains("10.244.")
    });
    assert!(learned, "{}\n{}", routes(), guide.logs());
}
