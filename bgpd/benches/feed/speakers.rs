//! The speakers under test, each started in its own namespace with one
//! passive eBGP neighbour (the feeder) and, where it has one, a kernel
//! table of its own; and how their progress is read cheaply while they
//! load: an O(1) counter per speaker (`bgpd status --peers`, BIRD's
//! protocol import counter, GoBGP's RIB summary) and the kernel's per-table
//! prefix count in `/proc/net/fib_triestat`.

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::{Background, Netns};

use crate::common::{self, Daemon};

/// Our address, the speaker's side of the veth.
pub const SPEAKER: &str = "172.30.0.1";
/// The feeder's side.
pub const FEEDER: &str = "172.30.0.2";
pub const SPEAKER_AS: u32 = 65001;
pub const FEEDER_AS: u32 = 65002;
/// The kernel table each speaker installs into.
pub const TABLE: u32 = 100;

/// Which speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bgpd,
    Bird,
    Gobgp,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "bgpd" => Some(Kind::Bgpd),
            "bird" => Some(Kind::Bird),
            "gobgp" => Some(Kind::Gobgp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Bgpd => "bgpd",
            Kind::Bird => "BIRD 2.0.12",
            Kind::Gobgp => "GoBGP 3.10",
        }
    }

    /// The programs it needs.
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            Kind::Bgpd => &[],
            Kind::Bird => &["bird", "birdc"],
            Kind::Gobgp => &["gobgpd", "gobgp"],
        }
    }

    /// Whether it installs routes into the kernel (gobgpd alone does not;
    /// it would need zebra).
    pub fn has_fib(self) -> bool {
        self != Kind::Gobgp
    }
}

/// A running speaker.
pub struct Speaker {
    pub kind: Kind,
    process: Background,
    /// bgpd's status socket.
    status_socket: PathBuf,
    bird_socket: String,
    netns: String,
}

fn bird_conf() -> String {
    format!(
        "router id {SPEAKER};
protocol device {{ }}
protocol kernel kernel1 {{ ipv4 {{ export all; }}; kernel table {TABLE}; }}
protocol bgp feeder {{
  local {SPEAKER} as {SPEAKER_AS};
  neighbor {FEEDER} as {FEEDER_AS};
  passive on;
  ipv4 {{ import all; export none; }};
}}
"
    )
}

fn bgpd_conf(dir: &Path) -> String {
    format!(
        "router_id: {SPEAKER}
asn: {SPEAKER_AS}
listen: {SPEAKER}:179
{}peers:
  - address: {FEEDER}
    asn: {FEEDER_AS}
    passive: true
kernel: {{ table: {TABLE}, protocol: 200 }}
",
        Daemon::status_line(dir)
    )
}

fn gobgpd_conf() -> String {
    format!(
        r#"[global.config]
  as = {SPEAKER_AS}
  router-id = "{SPEAKER}"
  port = 179

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{FEEDER}"
    peer-as = {FEEDER_AS}
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"#
    )
}

/// The number after `label` on the first line that has it.
fn number_after(text: &str, label: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = &l[l.find(label)? + label.len()..];
        rest.split_whitespace()
            .next()?
            .trim_matches(',')
            .parse()
            .ok()
    })
}

impl Speaker {
    /// Starts `kind` in `ns`, with its files in `dir`.
    pub fn start(kind: Kind, ns: &Netns, dir: &Path) -> Speaker {
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let bird_socket = dir.join("bird.ctl").display().to_string();
        let (process, status_socket) = match kind {
            Kind::Bgpd => {
                let d = Daemon::start(ns, dir, &bgpd_conf(dir));
                (d.process, d.status_socket)
            }
            Kind::Bird => {
                let conf = dir.join("bird.conf");
                std::fs::write(&conf, bird_conf()).unwrap();
                let bird = common::start_bird(ns, &conf, Path::new(&bird_socket));
                (bird, PathBuf::new())
            }
            Kind::Gobgp => {
                let conf = dir.join("gobgpd.toml");
                std::fs::write(&conf, gobgpd_conf()).unwrap();
                let process = Background::spawn(
                    ns.cmd("gobgpd")
                        .args(["-f".as_ref(), conf.as_os_str()])
                        .args(["-t", "toml", "-p", "--pprof-disable"])
                        .args(["--api-hosts", "127.0.0.1:50051", "-l", "warn"])
                        .stdout(log("gobgpd.log"))
                        .stderr(log("gobgpd.err")),
                )
                .unwrap();
                (process, PathBuf::new())
            }
        };
        Speaker {
            kind,
            process,
            status_socket,
            bird_socket,
            netns: ns.name().to_owned(),
        }
    }

    /// The speaker's process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Prefixes from the feeder in its Loc-RIB (0 before it answers).
    pub fn rib_count(&self) -> u64 {
        match self.kind {
            Kind::Bgpd => {
                let out = common::run(
                    Command::new(env!("CARGO_BIN_EXE_bgpd"))
                        .args(["status", "--peers"])
                        .arg(&self.status_socket),
                );
                // Peer AS State Since Received Accepted Advertised
                out.lines()
                    .find(|l| l.starts_with(FEEDER))
                    .and_then(|l| l.split_whitespace().nth(5)?.parse().ok())
                    .unwrap_or(0)
            }
            Kind::Bird => {
                let out = common::run(Command::new("birdc").args([
                    "-s",
                    &self.bird_socket,
                    "show",
                    "protocols",
                    "all",
                    "feeder",
                ]));
                number_after(&out, "Routes:").unwrap_or(0)
            }
            Kind::Gobgp => {
                let out = common::run(Command::new("ip").args([
                    "netns",
                    "exec",
                    &self.netns,
                    "gobgp",
                    "-u",
                    "127.0.0.1",
                    "-p",
                    "50051",
                    "global",
                    "rib",
                    "summary",
                    "-a",
                    "ipv4",
                ]));
                number_after(&out, "Destination:").unwrap_or(0)
            }
        }
    }

    /// Peak RSS (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.pid())
    }
}

/// Process `pid`'s peak RSS (VmHWM) in KiB; 0 once it is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| number_after(&s, "VmHWM:"))
        .unwrap_or(0)
}

/// Environment variable `name` parsed (`_` allowed as a digit separator),
/// else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Prefixes in kernel table `table` of `ns` (every protocol), from
/// `/proc/net/fib_triestat` (an in-kernel walk of the table's trie, no
/// dump to user space).
pub fn fib_count(ns: &Netns, table: u32) -> u64 {
    let text = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/fib_triestat"))
        .unwrap()
        .unwrap_or_default();
    let header = format!("Id {table}:");
    let Some(start) = text.find(&header) else {
        return 0;
    };
    number_after(&text[start..], "Prefixes:").unwrap_or(0)
}
