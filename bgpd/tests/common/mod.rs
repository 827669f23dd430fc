//! Helpers shared by the integration tests: running a command for its
//! output, waiting for a condition with a useful message, namespaces joined
//! by veths, starting the `bgpd` daemon or BIRD in a namespace, and (in
//! [`peer`]) a BGP peer scripted byte by byte, and ([`gobgp`]) gobgpd. Each test file uses a
//! different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod gobgp;
pub mod peer;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::{Background, Netns};

/// Runs a command to completion and returns its stdout (async, so an
/// in-process speaker's tasks keep running meanwhile).
pub async fn output(program: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` every 100 ms for up to 30 s (prints how long it took,
/// seen with `--nocapture`).
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    for _ in 0..300 {
        if check().await {
            eprintln!("{:>7.2?}  {what}", start.elapsed());
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after 30 s waiting for {what}");
}

/// Runs a command to completion and returns its stdout and stderr.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// Polls `check` for up to 30 s; on timeout, panics with the logs.
pub fn wait_for(what: &str, logs: &[&Path], check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    if !testkit::poll_until(Duration::from_secs(30), Duration::from_millis(100), check) {
        panic!("timed out after 30 s waiting for {what}{}", dump(logs));
    }
    eprintln!("{:>7.2?}  {what}", start.elapsed());
}

/// Asserts `check` stays true for `period` (polled every 200 ms).
pub fn holds_for(what: &str, period: Duration, logs: &[&Path], mut check: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + period;
    while std::time::Instant::now() < end {
        assert!(check(), "{what} stopped holding{}", dump(logs));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn dump(logs: &[&Path]) -> String {
    logs.iter()
        .map(|l| {
            format!(
                "\n--- {}:\n{}",
                l.display(),
                std::fs::read_to_string(l).unwrap_or_default()
            )
        })
        .collect()
}

/// The `bgpd` daemon running `yaml` in `ns`, logging to `dir/bgpd.log`,
/// with its status socket at `dir/bgpd.sock` (the YAML should name it
/// with [`Daemon::status_line`]).
pub struct Daemon {
    pub process: Background,
    pub log: PathBuf,
    pub status_socket: PathBuf,
}

impl Daemon {
    /// The `status_socket:` line for a daemon in `dir`.
    pub fn status_line(dir: &Path) -> String {
        format!("status_socket: {}\n", dir.join("bgpd.sock").display())
    }

    pub fn start(ns: &Netns, dir: &Path, yaml: &str) -> Daemon {
        let conf = dir.join("bgpd.yaml");
        std::fs::write(&conf, yaml).unwrap();
        let log = dir.join("bgpd.log");
        let process = Background::spawn(
            ns.cmd(env!("CARGO_BIN_EXE_bgpd"))
                .args(["run".as_ref(), conf.as_os_str()])
                .env("RUST_LOG", "bgpd=debug")
                .stderr(std::fs::File::create(&log).unwrap()),
        )
        .unwrap();
        Daemon {
            process,
            log,
            status_socket: dir.join("bgpd.sock"),
        }
    }

    /// `bgpd status` output.
    pub fn status(&self) -> String {
        run(Command::new(env!("CARGO_BIN_EXE_bgpd"))
            .arg("status")
            .arg(&self.status_socket))
    }

    /// The status fields of `peer`: address, AS, state, since, received,
    /// accepted, advertised, info...
    pub fn peer_fields(&self, peer: &str) -> Vec<String> {
        self.status()
            .lines()
            .find(|l| l.split_whitespace().next() == Some(peer))
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    pub fn established(&self, peer: &str) -> bool {
        self.peer_fields(peer).get(2).map(String::as_str) == Some("Established")
    }
}

/// Two fresh namespaces, "us" and "them", joined by a veth `eth0` on each
/// side, with the given addresses (`addr/len`; IPv6 ones without DAD, so
/// they are usable at once).
pub fn linked_pair(ours: &[&str], theirs: &[&str]) -> (Netns, Netns) {
    let us = Netns::new("bgp").unwrap();
    let them = Netns::new("bgp").unwrap();
    link((&us, "eth0", ours), (&them, "eth0", theirs));
    (us, them)
}

/// A veth between two namespaces, each end named and addressed as given
/// (`addr/len`; IPv6 ones without DAD).
pub fn link(a: (&Netns, &str, &[&str]), b: (&Netns, &str, &[&str])) {
    testkit::veth_pair(a.0, a.1, b.0, b.1).unwrap();
    for (ns, ifname, addrs) in [a, b] {
        add_addrs(ns, ifname, addrs);
    }
}

/// Adds addresses (`addr/len`; IPv6 ones without DAD) to a link.
pub fn add_addrs(ns: &Netns, ifname: &str, addrs: &[&str]) {
    for addr in addrs {
        if addr.contains(':') {
            ns.ip(["addr", "add", addr, "dev", ifname, "nodad"])
                .unwrap();
        } else {
            ns.add_addr(ifname, addr).unwrap();
        }
    }
}

/// BIRD in the foreground in `ns`, with its config and control socket.
pub fn start_bird(ns: &Netns, conf: &Path, sock: &Path) -> Background {
    Background::spawn(ns.cmd("bird").args([
        "-f".as_ref(),
        "-c".as_ref(),
        conf.as_os_str(),
        "-s".as_ref(),
        sock.as_os_str(),
    ]))
    .unwrap()
}

/// BIRD as [`start_bird`] starts it, but with `-R`: graceful restart
/// recovery, as after a crash (its OPEN sets the R bit).
pub fn start_bird_recovering(ns: &Netns, conf: &Path, sock: &Path) -> Background {
    Background::spawn(ns.cmd("bird").args([
        "-f".as_ref(),
        "-R".as_ref(),
        "-c".as_ref(),
        conf.as_os_str(),
        "-s".as_ref(),
        sock.as_os_str(),
    ]))
    .unwrap()
}
