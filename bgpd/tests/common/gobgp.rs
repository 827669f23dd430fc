//! gobgpd (GoBGP's daemon) run in a test's namespace, and its `gobgp` CLI.

use std::path::{Path, PathBuf};

use testkit::{Background, Netns};

use super::output;

/// gobgpd's API port, on 127.0.0.1 inside its namespace.
pub const API: &str = "50051";

/// gobgpd in its namespace: its config and log in a temp dir, its API on
/// 127.0.0.1 inside the namespace.
pub struct GoBgp {
    pub ns: String,
    pub conf: PathBuf,
    pub log: PathBuf,
}

impl GoBgp {
    pub fn new(ns: &Netns, dir: &Path, conf: &str) -> GoBgp {
        let path = dir.join("gobgpd.toml");
        std::fs::write(&path, conf).unwrap();
        GoBgp {
            ns: ns.name().to_owned(),
            conf: path,
            log: dir.join("gobgpd.log"),
        }
    }

    /// Starts gobgpd; each run appends to the same log.
    pub fn spawn(&self) -> Background {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        Background::spawn(
            std::process::Command::new("ip")
                .args(["netns", "exec", &self.ns, "gobgpd", "-f"])
                .arg(&self.conf)
                .args(["-t", "toml", "-p", "--pprof-disable"])
                .args(["--api-hosts", &format!("127.0.0.1:{API}")])
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        )
        .unwrap()
    }

    /// `gobgp ARGS` against gobgpd's API, inside its namespace.
    pub async fn cli(&self, args: &[&str]) -> String {
        let mut a = vec![
            "netns",
            "exec",
            &self.ns,
            "gobgp",
            "-u",
            "127.0.0.1",
            "-p",
            API,
        ];
        a.extend_from_slice(args);
        output("ip", &a).await
    }
}
