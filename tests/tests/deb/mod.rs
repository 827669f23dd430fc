//! What the package tests share: the packages, built once per test process
//! by `scripts/package.sh` from this test's binaries; the clean Debian root
//! they are installed into, made once; a [`Machine`] (that root's copy, the
//! host's network namespace with a default route, and an outside namespace
//! that reaches the workloads through it); the unit file's `ExecStart` and
//! capabilities; felix's readiness; and a workload with a TCP flow to it.

#![allow(dead_code)] // each test uses its part

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::cni::{Container, Runtime, interface_address};
use testkit::debian::{Base, Root};
use testkit::traffic::{EchoServer, connect, echo, tcp_connects};
use testkit::{Netns, poll_until, run_checked, veth_pair};

/// The binaries the package holds: (cargo package, binary, installed path).
pub const BINARIES: [(&str, &str, &str); 7] = [
    ("felix", "felix", "/usr/bin/felix"),
    ("calicoctl", "calicoctl", "/usr/bin/calicoctl"),
    ("bgpd", "bgpd", "/usr/bin/bgpd"),
    ("lab", "calico-lab", "/usr/bin/calico-lab"),
    ("flows", "goldmane", "/usr/bin/goldmane"),
    ("cni", "calico", "/opt/cni/bin/calico"),
    ("cni", "calico-ipam", "/opt/cni/bin/calico-ipam"),
];

/// The package's conffiles.
pub const CONFFILES: [&str; 3] = [
    "/etc/calico/calicoctl.cfg",
    "/etc/calico/felix.yaml",
    "/etc/cni/net.d/10-calico.conflist",
];

pub const UNIT: &str = "/lib/systemd/system/calico-felix.service";
/// Where `systemctl enable` links the unit.
pub const ENABLED_LINK: &str = "/etc/systemd/system/multi-user.target.wants/calico-felix.service";
pub const DATASTORE_DIR: &str = "/var/lib/calico";
/// `CNI_PATH` on a Debian host with the package: ours, then Debian's plugins.
pub const CNI_PATH: &str = "/opt/cni/bin:/usr/lib/cni";

/// The repository's top directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// The two versions the upgrade goes between.
pub fn version(which: char) -> String {
    format!("{}~test{which}-1", env!("CARGO_PKG_VERSION"))
}

/// Version A (with its debug symbols package) and version B of the package.
#[derive(Debug)]
pub struct Packages {
    pub a: PathBuf,
    pub a_dbgsym: PathBuf,
    pub b: PathBuf,
}

/// The packages, built on first use into `target/tmp/package-test/`: A by
/// `scripts/package.sh --fast` from the binaries the workspace builds for
/// this test, B as A with another version (an upgrade between two builds
/// of one tree: what changes on disk is every file, as dpkg replaces them).
pub fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let mut bin_dir = None;
        for (package, bin, _) in BINARIES {
            let path = testkit::workspace_binary(package, bin).expect("building the binaries");
            bin_dir = path.parent().map(Path::to_path_buf);
        }
        let bin_dir = bin_dir.expect("a binary directory");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package-test");
        if out.exists() {
            std::fs::remove_dir_all(&out).expect("removing the last run's packages");
        }
        let built = run_checked(
            Command::new(repo().join("scripts/package.sh"))
                .arg("--bin-dir")
                .arg(&bin_dir)
                .args(["--fast", "--version", &version('a'), "--out"])
                .arg(&out),
        )
        .unwrap_or_else(|e| panic!("scripts/package.sh: {e}"));
        let debs: Vec<PathBuf> = String::from_utf8_lossy(&built.stdout)
            .lines()
            .map(PathBuf::from)
            .collect();
        assert_eq!(
            debs.len(),
            2,
            "package.sh prints the two packages: {debs:?}"
        );
        let b = reversioned(&debs[0], &version('a'), &version('b'), &out);
        Packages {
            a: debs[0].clone(),
            a_dbgsym: debs[1].clone(),
            b,
        }
    })
}

/// `deb` rebuilt as version `to` (from `from`) in `out`.
fn reversioned(deb: &Path, from: &str, to: &str, out: &Path) -> PathBuf {
    let tree = out.join("reversioned");
    run_checked(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree)).unwrap();
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let old = format!("\nVersion: {from}\n");
    assert!(text.contains(&old), "{text}");
    std::fs::write(&control, text.replace(&old, &format!("\nVersion: {to}\n"))).unwrap();
    let name = deb.file_name().unwrap().to_string_lossy().replace(from, to);
    let b = out.join(name);
    run_checked(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zzstd", "-z1", "--build"])
            .arg(&tree)
            .arg(&b),
    )
    .unwrap();
    std::fs::remove_dir_all(&tree).unwrap();
    b
}

/// The clean Debian 12 root, made once: debootstrap minbase, then
/// `apt-get update` and systemd (which minbase leaves out and every
/// installed Debian machine has).
pub fn base() -> &'static Base {
    static BASE: OnceLock<Result<Base, String>> = OnceLock::new();
    BASE.get_or_init(|| {
        Base::new(
            &repo(),
            &[
                &["apt-get", "update", "-qq"],
                &[
                    "apt-get",
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "systemd",
                ],
            ],
        )
        .map_err(|e| e.to_string())
    })
    .as_ref()
    .unwrap_or_else(|e| panic!("making the Debian root: {e}"))
}

/// The unit's `ExecStart` and what it grants.
#[derive(Debug)]
pub struct Unit {
    pub exec_start: Vec<String>,
    /// `CapabilityBoundingSet`, e.g. `CAP_NET_ADMIN`.
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
}

impl Unit {
    /// Reads a unit file's `[Service]` settings this test needs.
    pub fn parse(text: &str) -> Unit {
        let mut settings: BTreeMap<&str, &str> = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if let Some((key, value)) = line.split_once('=')
                && !line.starts_with('#')
            {
                settings.insert(key, value);
            }
        }
        let exec_start = settings["ExecStart"];
        assert!(
            !exec_start.contains(['"', '\'', '%', '$', '\\']),
            "ExecStart needs systemd's own parser: {exec_start}"
        );
        Unit {
            exec_start: exec_start.split_whitespace().map(str::to_owned).collect(),
            capabilities: settings["CapabilityBoundingSet"]
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            no_new_privileges: settings.get("NoNewPrivileges") == Some(&"yes"),
        }
    }

    /// The capability mask `/proc/PID/status` shows for exactly these.
    pub fn capability_mask(&self) -> u64 {
        self.capabilities
            .iter()
            .map(|cap| match cap.as_str() {
                "CAP_NET_BIND_SERVICE" => 1 << 10,
                "CAP_NET_ADMIN" => 1 << 12,
                "CAP_NET_RAW" => 1 << 13,
                "CAP_SYS_ADMIN" => 1 << 21,
                other => panic!("no bit known for {other}"),
            })
            .fold(0, |mask, bit| mask | bit)
    }

    /// `setpriv` arguments that give a root process exactly what the unit
    /// gives it: the bounding set (root's capabilities after exec), no
    /// inheritable ones, and no new privileges if the unit says so.
    pub fn setpriv_args(&self) -> Vec<String> {
        let caps: Vec<String> = self
            .capabilities
            .iter()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect();
        let mut args = vec![
            format!("--bounding-set=-all,{}", caps.join(",")),
            "--inh-caps=-all".to_owned(),
        ];
        if self.no_new_privileges {
            args.push("--no-new-privs".to_owned());
        }
        args
    }
}

/// A field of `/proc/PID/status` (`CapEff`, `NoNewPrivs`, ...).
pub fn proc_status(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// Whether felix answers 200 on `/readiness` (port 9099, its default) in `ns`.
pub fn felix_ready(ns: &Netns) -> bool {
    ns.run(|| -> std::io::Result<bool> {
        let addr: SocketAddr = "127.0.0.1:9099".parse().expect("an address");
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /readiness HTTP/1.0\r\n\r\n")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply.lines().next().is_some_and(|l| l.contains(" 200 ")))
    })
    .is_ok_and(|r| r.unwrap_or(false))
}

/// The pool the workloads get their addresses from.
pub const POOL: &str = "10.252.0.0/16";
pub const POOL_YAML: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: package-test}
spec: {cidr: 10.252.0.0/16, blockSize: 26, ipipMode: Never, vxlanMode: Never, natOutgoing: false}
";
pub const HOST_IP: &str = "10.251.0.2";
pub const OUTSIDE_IP: &str = "10.251.0.1";

/// A machine: a Debian root (workloads need [`Root::bind_netns`] to be
/// called on it), the network namespace its programs run in
/// (`host`, eth0 10.251.0.2/24, default route via `outside`), and `outside`,
/// which routes the pool to the host. Fields drop in order: the root (and
/// any process in it) before the namespaces.
pub struct Machine {
    pub root: Root,
    pub host: Netns,
    pub outside: Netns,
}

impl Machine {
    pub fn new(base: &Base) -> Machine {
        let root = Root::new(base).expect("a copy of the Debian root");
        let host = Netns::new("pkgh").unwrap();
        let outside = Netns::new("pkgo").unwrap();
        veth_pair(&host, "eth0", &outside, "eth0").unwrap();
        host.add_addr("eth0", &format!("{HOST_IP}/24")).unwrap();
        outside
            .add_addr("eth0", &format!("{OUTSIDE_IP}/24"))
            .unwrap();
        host.ip(["route", "add", "default", "via", OUTSIDE_IP])
            .unwrap();
        outside.ip(["route", "add", POOL, "via", HOST_IP]).unwrap();
        Machine {
            root,
            host,
            outside,
        }
    }

    /// Copies `deb` into the root's /root; its path inside.
    pub fn copy_in(&self, deb: &Path) -> String {
        let name = deb.file_name().expect("a file name").to_string_lossy();
        let inside = format!("/root/{name}");
        std::fs::copy(deb, self.root.file(&inside))
            .unwrap_or_else(|e| panic!("copying {} into the root: {e}", deb.display()));
        inside
    }

    /// Whether there is anything at `inside` (a file, a directory, a link,
    /// whether or not it points at something: links in the root point at
    /// paths inside it, which the host does not have).
    pub fn has(&self, inside: &str) -> bool {
        std::fs::symlink_metadata(self.root.file(inside)).is_ok()
    }

    /// Runs `program args` in the root; its stdout. Panics with its output.
    #[track_caller]
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        self.root
            .stdout(program, args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The installed unit, read.
    pub fn unit(&self) -> Unit {
        Unit::parse(&std::fs::read_to_string(self.root.file(UNIT)).expect("the installed unit"))
    }

    /// What the host's routing and filtering look like: every IPv4 and IPv6
    /// route of every table, and the nftables ruleset (its counters zeroed).
    pub fn dataplane(&self) -> String {
        let routes = |family| {
            self.host
                .ip([family, "route", "show", "table", "all"])
                .unwrap()
        };
        let rules = self.host.exec("nft", ["list", "ruleset"]).unwrap();
        format!(
            "{}{}{}",
            routes("-4"),
            routes("-6"),
            zero_counters(&String::from_utf8_lossy(&rules.stdout))
        )
    }

    /// The files of the datastore directory with their SHA-256, as text.
    pub fn datastore_files(&self) -> String {
        let dir = self.root.file(DATASTORE_DIR);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        let out = run_checked(Command::new("sha256sum").args(&names)).unwrap();
        String::from_utf8_lossy(&out.stdout).replace(&*dir.to_string_lossy(), "")
    }
}

/// Whether something listens on TCP port 179 (BGP) in `ns`.
pub fn bgp_listens(ns: &Netns) -> bool {
    ns.exec("ss", ["-Hltn", "sport = :179"])
        .is_ok_and(|out| !out.stdout.is_empty())
}

/// The host's conntrack entries for `addr`, one per line.
pub fn conntrack_entries(ns: &Netns, addr: IpAddr) -> String {
    let out = ns
        .cmd("conntrack")
        .args(["-L", "--orig-dst", &addr.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nft list` output with every `counter packets N bytes M` read as zero.
fn zero_counters(ruleset: &str) -> String {
    ruleset
        .lines()
        .map(|line| {
            let mut out = Vec::new();
            let mut words = line.split(' ').peekable();
            while let Some(word) = words.next() {
                out.push(word);
                if matches!(word, "packets" | "bytes")
                    && words.peek().is_some_and(|n| n.parse::<u64>().is_ok())
                {
                    words.next();
                    out.push("0");
                }
            }
            out.join(" ") + "\n"
        })
        .collect()
}

/// A workload made through the installed conflist by the installed plugins
/// (chrooted into the machine's root, inside its host namespace), with an
/// echo server on TCP 8080.
pub struct Workload {
    pub container: Container,
    pub ip: IpAddr,
    pub server: EchoServer,
    conflist: Value,
    result: Value,
}

impl Workload {
    pub fn add(m: &Machine, id: &str) -> Workload {
        let conflist: Value = serde_json::from_str(
            &std::fs::read_to_string(m.root.file("/etc/cni/net.d/10-calico.conflist"))
                .expect("the installed conflist"),
        )
        .expect("the conflist is JSON");
        let container = Container::new(id, None);
        let result = Runtime::in_root(&m.host, &m.root, CNI_PATH)
            .add_chain(&conflist, &container, &json!({}))
            .unwrap_or_else(|out| {
                panic!(
                    "CNI ADD through the installed conflist: {}\nstderr: {}",
                    out.stdout, out.stderr
                )
            });
        let ip = interface_address(&result, "eth0").expect("the workload's address");
        let server = EchoServer::start(container.ns(), 8080, false).unwrap();
        Workload {
            container,
            ip,
            server,
            conflist,
            result,
        }
    }

    /// CNI DEL through the installed conflist, as a runtime removing it.
    pub fn delete(self, m: &Machine) {
        Runtime::in_root(&m.host, &m.root, CNI_PATH)
            .chain(
                "DEL",
                &self.conflist,
                &self.container,
                &self.result,
                &json!({}),
            )
            .unwrap_or_else(|out| panic!("CNI DEL: {}\nstderr: {}", out.stdout, out.stderr));
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 8080)
    }
}

/// A TCP connection from outside to a workload, echoing.
pub struct Flow {
    stream: TcpStream,
}

impl Flow {
    /// Waits (up to 60 s) until `from` reaches the workload, then connects.
    pub fn open(from: &Netns, to: SocketAddr, logs: &dyn Fn() -> String) -> Flow {
        assert!(
            poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
                tcp_connects(from, to)
            }),
            "{to} not reachable from outside within 60 s\n{}",
            logs()
        );
        Flow {
            stream: connect(from, to, Duration::from_secs(2)).unwrap(),
        }
    }

    /// Checks the flow ten times over a second, each message `what N`.
    #[track_caller]
    pub fn holds(&mut self, what: &str, logs: &dyn Fn() -> String) {
        for i in 0..10 {
            self.check(&format!("{what} {i}"), logs);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Sends `message` and checks it comes back.
    #[track_caller]
    pub fn check(&mut self, message: &str, logs: &dyn Fn() -> String) {
        let back = echo(&mut self.stream, message.as_bytes())
            .unwrap_or_else(|e| panic!("the flow broke at {message:?}: {e}\n{}", logs()));
        assert_eq!(back, message.as_bytes());
    }
}
