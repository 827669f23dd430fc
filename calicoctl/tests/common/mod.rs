//! What the end-to-end tests share: a temporary embedded store and the real
//! `calicoctl` binary run against it.

#![allow(dead_code)] // each test file uses its own part of this

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// A temporary datastore and the means to run calicoctl against it.
pub struct Ctl {
    pub dir: tempfile::TempDir,
}

/// What one run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// What a finished calicoctl process produced.
    pub fn of(out: std::process::Output) -> Self {
        Run {
            code: out.status.code().expect("calicoctl was killed by a signal"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        self
    }

    pub fn fails_with(self, code: i32) -> Self {
        assert_eq!(self.code, code, "expected exit {code}, got {self:#?}");
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

impl Ctl {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The store's file.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("calico.db")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_calicoctl"));
        cmd.args(args)
            .env("DATASTORE_TYPE", "sqlite")
            .env("DATASTORE_PATH", self.db())
            .env_remove("ETCD_ENDPOINTS")
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        Run::of(child.wait_with_output().unwrap())
    }

    /// Writes a file in the test's directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Applies YAML through a file, expecting success.
    pub fn apply(&self, yaml: &str) {
        let path = self.write("input.yaml", yaml);
        self.run(&["apply", "-f", path.to_str().unwrap()]).ok();
    }

    /// Names of the resources `get ARGS -o json` (a List) returns.
    pub fn names(&self, args: &[&str]) -> Vec<String> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let list = self.run(&full).ok().json();
        assert_eq!(list["kind"], "List", "{list}");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }
}
