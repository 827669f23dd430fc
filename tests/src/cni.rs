//! A small CNI runtime for tests: it calls the plugins of a network
//! configuration list exactly as libcni does (each plugin binary found on
//! `CNI_PATH`, run inside the host namespace with the `CNI_*` environment,
//! its config on stdin with `name`, `cniVersion`, `prevResult` and the
//! `runtimeConfig` its capabilities ask for), ADD in order and DEL in
//! reverse; and [`Container`], a sandbox namespace to plug.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::debian::{ROOT_PATH, Root};
use crate::netns::Netns;

/// Where Debian's containernetworking-plugins (loopback, portmap, ...) live.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// One plugin invocation's outcome.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub exit_code: Option<i32>,
    /// The JSON printed (the result, or the CNI error), `Null` if none.
    pub stdout: Value,
    pub stderr: String,
}

impl Outcome {
    /// The error JSON's code; panics on success.
    #[track_caller]
    pub fn code(&self) -> u64 {
        assert!(!self.success, "expected a failure, got {}", self.stdout);
        self.stdout["code"].as_u64().expect("error JSON has a code")
    }

    /// The error JSON's message.
    pub fn msg(&self) -> &str {
        self.stdout["msg"].as_str().unwrap_or_default()
    }

    /// The result; panics with the error and stderr on failure.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(
            self.success,
            "plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }
}

/// A container: its namespace (until removed), ID and (optional) pod
/// `(namespace, name)`, passed as Kubernetes runtimes pass it in `CNI_ARGS`.
#[derive(Debug)]
pub struct Container {
    ns: Option<Netns>,
    path: String,
    pub id: String,
    pub pod: Option<(String, String)>,
}

impl Container {
    /// A new sandbox namespace for container `id`.
    pub fn new(id: &str, pod: Option<(&str, &str)>) -> Container {
        let ns = Netns::new("cnic").expect("container namespace");
        Container {
            path: ns.path().display().to_string(),
            ns: Some(ns),
            id: id.into(),
            pod: pod.map(|(n, p)| (n.into(), p.into())),
        }
    }

    /// The namespace; panics once removed.
    pub fn ns(&self) -> &Netns {
        self.ns
            .as_ref()
            .expect("the container namespace was removed")
    }

    /// Removes the namespace (as a runtime does before a late DEL);
    /// `CNI_NETNS` keeps naming its old path.
    pub fn remove_netns(&mut self) {
        self.ns
            .take()
            .expect("a namespace")
            .remove()
            .expect("remove the namespace");
    }

    /// `CNI_NETNS`.
    pub fn netns(&self) -> String {
        self.path.clone()
    }
}

/// Calls plugins for containers of one host namespace.
#[derive(Debug)]
pub struct Runtime<'a> {
    host: &'a Netns,
    cni_path: String,
    /// Plugins installed in this root file system, run chrooted into it.
    root: Option<&'a Root>,
}

impl<'a> Runtime<'a> {
    /// A runtime running plugins inside `host`, found on `cni_path`
    /// (`:`-separated directories).
    pub fn new(host: &'a Netns, cni_path: impl Into<String>) -> Self {
        Runtime {
            host,
            cni_path: cni_path.into(),
            root: None,
        }
    }

    /// A runtime running the plugins installed in `root` (found on
    /// `cni_path` inside it) chrooted into it, inside `host`: as a runtime
    /// on a machine with that file system would. `CNI_NETNS` paths must be
    /// visible inside ([`Root::bind_netns`]).
    pub fn in_root(host: &'a Netns, root: &'a Root, cni_path: impl Into<String>) -> Self {
        Runtime {
            host,
            cni_path: cni_path.into(),
            root: Some(root),
        }
    }

    /// `CNI_PATH`.
    pub fn cni_path(&self) -> &str {
        &self.cni_path
    }

    /// Runs one plugin binary with `stdin` for `command` on `c`, inside
    /// the host namespace, as a runtime does.
    pub fn invoke(&self, plugin: &str, command: &str, c: &Container, stdin: &Value) -> Outcome {
        let outside = |p: &Path| match self.root {
            Some(root) => root.file(&p.to_string_lossy()),
            None => p.to_path_buf(),
        };
        let binary = self
            .cni_path
            .split(':')
            .map(|d| Path::new(d).join(plugin))
            .find(|p| outside(p).is_file())
            .unwrap_or_else(|| panic!("plugin {plugin} not in {}", self.cni_path));
        let (mut cmd, path) = match self.root {
            Some(root) => (
                root.cmd_in(self.host, &binary.to_string_lossy()),
                ROOT_PATH.to_owned(),
            ),
            None => (
                self.host.cmd(&binary),
                std::env::var("PATH").unwrap_or_default(),
            ),
        };
        cmd.env_clear()
            .env("PATH", path)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &c.id)
            .env("CNI_NETNS", c.netns())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path);
        if let Some((ns, pod)) = &c.pod {
            cmd.env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={}",
                    c.id
                ),
            );
        }
        run(cmd, stdin)
    }

    /// A plugin's stdin in a chain, as libcni builds it.
    pub fn plugin_stdin(
        list: &Value,
        plugin: &Value,
        prev: Option<&Value>,
        runtime: &Value,
    ) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = list["name"].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        let mut rc = serde_json::Map::new();
        if let Some(caps) = plugin["capabilities"].as_object() {
            for (cap, on) in caps {
                if on.as_bool() == Some(true) && runtime.get(cap).is_some() {
                    rc.insert(cap.clone(), runtime[cap].clone());
                }
            }
        }
        if !rc.is_empty() {
            conf["runtimeConfig"] = Value::Object(rc);
        }
        conf
    }

    /// ADD through the chain; the final result, or the first failure.
    pub fn add_chain(
        &self,
        list: &Value,
        c: &Container,
        runtime: &Value,
    ) -> Result<Value, Outcome> {
        let mut results = self.add_chain_each(list, c, runtime)?;
        Ok(results.pop().expect("a non-empty chain"))
    }

    /// ADD through the chain; each plugin's result in chain order, or the
    /// first failure.
    pub fn add_chain_each(
        &self,
        list: &Value,
        c: &Container,
        runtime: &Value,
    ) -> Result<Vec<Value>, Outcome> {
        let mut results: Vec<Value> = Vec::new();
        for plugin in list["plugins"].as_array().expect("a conflist") {
            let stdin = Self::plugin_stdin(list, plugin, results.last(), runtime);
            let out = self.invoke(plugin["type"].as_str().expect("a type"), "ADD", c, &stdin);
            if !out.success {
                return Err(out);
            }
            results.push(out.stdout);
        }
        Ok(results)
    }

    /// DEL (reverse order) or CHECK (in order) through the chain with the
    /// cached result (as libcni, none for a DEL before spec 0.4.0); the
    /// first failure, if any.
    pub fn chain(
        &self,
        command: &str,
        list: &Value,
        c: &Container,
        result: &Value,
        runtime: &Value,
    ) -> Result<(), Outcome> {
        let mut plugins: Vec<&Value> = list["plugins"]
            .as_array()
            .expect("a conflist")
            .iter()
            .collect();
        if command == "DEL" {
            plugins.reverse();
        }
        let version = list["cniVersion"].as_str().unwrap_or_default();
        let before_0_4 = ["0.1.0", "0.2.0", "0.3.0", "0.3.1"].contains(&version);
        let prev = (command != "DEL" || !before_0_4).then_some(result);
        for plugin in plugins {
            let stdin = Self::plugin_stdin(list, plugin, prev, runtime);
            let out = self.invoke(plugin["type"].as_str().expect("a type"), command, c, &stdin);
            if !out.success {
                return Err(out);
            }
        }
        Ok(())
    }
}

/// The first address a CNI result gives interface `ifname` (a chain's
/// result also lists the loopback plugin's 127.0.0.1, first).
pub fn interface_address(result: &Value, ifname: &str) -> Option<std::net::IpAddr> {
    let interfaces = result["interfaces"].as_array()?;
    result["ips"]
        .as_array()?
        .iter()
        .find(|ip| {
            ip["interface"]
                .as_u64()
                .and_then(|i| interfaces.get(usize::try_from(i).ok()?))
                .is_some_and(|iface| iface["name"] == ifname)
        })
        .and_then(|ip| ip["address"].as_str())
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
}

/// Runs a prepared plugin command with `stdin` to completion.
pub fn run(mut cmd: Command, stdin: &Value) -> Outcome {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.to_string().as_bytes())
        .expect("write the plugin's stdin");
    let out = child.wait_with_output().expect("the plugin ran");
    let text = String::from_utf8_lossy(&out.stdout);
    Outcome {
        success: out.status.success(),
        exit_code: out.status.code(),
        stdout: if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("the plugin printed non-JSON {text:?}: {e}"))
        },
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
