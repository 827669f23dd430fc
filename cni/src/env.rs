//! The CNI environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_PATH` and `CNI_ARGS` (`K8S_POD_NAMESPACE`,
//! `K8S_POD_NAME`, ..., `IgnoreUnknown`), read through a lookup function so
//! that parsing is pure. Each error names the variable at fault
//! ([`Code::InvalidEnv`](crate::error::Code::InvalidEnv)).

use std::path::PathBuf;

use crate::error::{CniError, Result};

/// What the runtime asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    /// The `CNI_COMMAND` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }

    fn parse(text: &str) -> Result<Command> {
        Ok(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(CniError::env(
                    "CNI_COMMAND",
                    format!(
                        "unknown command {other:?}; expected ADD, DEL, CHECK, VERSION, STATUS or GC"
                    ),
                ));
            }
        })
    }
}

/// `CNI_ARGS` keys we know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_infra_container_id: Option<String>,
    pub pod_uid: Option<String>,
}

impl CniArgs {
    /// Parses `K=V;K=V`. Unknown keys are refused unless `IgnoreUnknown` is
    /// `1` or `true`.
    pub fn parse(text: &str) -> Result<CniArgs> {
        let mut args = CniArgs::default();
        let mut unknown = Vec::new();
        let mut ignore_unknown = false;
        for pair in text.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| CniError::env("CNI_ARGS", format!("{pair:?} is not KEY=VALUE")))?;
            let value = Some(value.to_owned()).filter(|v| !v.is_empty());
            match key {
                "IgnoreUnknown" => {
                    // As libcni's `UnmarshallableBool`: 1 or true, in any case.
                    ignore_unknown = value
                        .as_deref()
                        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
                }
                "K8S_POD_NAMESPACE" => args.pod_namespace = value,
                "K8S_POD_NAME" => args.pod_name = value,
                "K8S_POD_INFRA_CONTAINER_ID" => args.pod_infra_container_id = value,
                "K8S_POD_UID" => args.pod_uid = value,
                other => unknown.push(other.to_owned()),
            }
        }
        if let Some(key) = unknown.first().filter(|_| !ignore_unknown) {
            return Err(CniError::env(
                "CNI_ARGS",
                format!("unknown key {key:?} (set IgnoreUnknown=1 to ignore it)"),
            ));
        }
        Ok(args)
    }

    /// The pod's namespace and name, when both are given. One alone names no
    /// pod: podman sends `K8S_POD_NAME` without a namespace, so that the
    /// plugin does not look for a Kubernetes pod, and Calico's plugin then
    /// takes the container as a plain CNI workload. So do we.
    pub fn pod(&self) -> Option<(&str, &str)> {
        Some((self.pod_namespace.as_deref()?, self.pod_name.as_deref()?))
    }
}

/// The environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// Absent on DEL when the namespace is gone.
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: CniArgs,
    /// `CNI_PATH`, where delegated plugins are looked for.
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Reads the environment through `lookup`; what is required depends on
    /// the command (none of it for VERSION).
    pub fn parse(lookup: impl Fn(&str) -> Option<String>) -> Result<CniEnv> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let command = Command::parse(
            &get("CNI_COMMAND").ok_or_else(|| CniError::env("CNI_COMMAND", "is required"))?,
        )?;
        let needs_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let required = |name: &str| {
            get(name).ok_or_else(|| CniError::env(name, format!("is required for {command:?}")))
        };
        let (container_id, ifname) = if needs_container {
            (required("CNI_CONTAINERID")?, required("CNI_IFNAME")?)
        } else {
            (String::new(), String::new())
        };
        if needs_container {
            check_container_id(&container_id)?;
            check_ifname(&ifname)?;
        }
        let netns = match command {
            Command::Add | Command::Check => Some(PathBuf::from(required("CNI_NETNS")?)),
            _ => get("CNI_NETNS").map(PathBuf::from),
        };
        let path = match command {
            Command::Version => Vec::new(),
            _ => required("CNI_PATH")?
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        };
        let args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }
}

/// The spec: alphanumerics, `_`, `.` and `-`, starting with an alphanumeric.
fn check_container_id(id: &str) -> Result<()> {
    let ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::env(
            "CNI_CONTAINERID",
            format!("{id:?} must be alphanumerics, '_', '.' or '-', starting with an alphanumeric"),
        ))
    }
}

/// The spec: at most 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
fn check_ifname(name: &str) -> Result<()> {
    let ok = name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(CniError::env(
            "CNI_IFNAME",
            format!("{name:?} is not a valid interface name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<CniEnv> {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        CniEnv::parse(|k| vars.get(k).map(|v| v.to_string()))
    }

    const ADD: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    #[test]
    fn add_environment_with_pod_arguments_is_read() {
        let mut vars = ADD.to_vec();
        vars.push((
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=front-1;FOO=bar",
        ));
        let env = parse(&vars).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.path.len(), 2);
        assert_eq!(env.args.pod_name.as_deref(), Some("front-1"));
    }

    #[test]
    fn a_pod_name_without_a_namespace_names_no_pod() {
        // What podman 4 sends.
        let args = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web-1").unwrap();
        assert_eq!(args.pod_name.as_deref(), Some("web-1"));
        assert_eq!(args.pod(), None);
        let args = CniArgs::parse("K8S_POD_NAMESPACE=shop").unwrap();
        assert_eq!(args.pod(), None);
        let args = CniArgs::parse("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1").unwrap();
        assert_eq!(args.pod(), Some(("shop", "web-1")));
        assert_eq!(CniArgs::parse("").unwrap().pod(), None);
    }

    #[test]
    fn ignore_unknown_is_read_as_libcni_reads_it() {
        for on in ["1", "true", "TRUE", "True"] {
            assert!(
                CniArgs::parse(&format!("IgnoreUnknown={on};X=1")).is_ok(),
                "{on}"
            );
        }
        for off in ["0", "false", "yes", ""] {
            assert!(
                CniArgs::parse(&format!("IgnoreUnknown={off};X=1")).is_err(),
                "{off}"
            );
        }
    }

    #[test]
    fn missing_variables_are_named() {
        let err = parse(&ADD[..4]).unwrap_err();
        assert_eq!((err.code, err.msg.starts_with("CNI_PATH")), (4, true));
        let err = parse(&[("CNI_COMMAND", "DEL")]).unwrap_err();
        assert!(err.msg.starts_with("CNI_CONTAINERID"), "{}", err.msg);
        assert!(parse(&[("CNI_COMMAND", "VERSION")]).is_ok());
    }

    #[test]
    fn unknown_cni_args_are_refused_without_ignore_unknown() {
        let mut vars = ADD.to_vec();
        vars.push(("CNI_ARGS", "FOO=bar"));
        assert!(parse(&vars).unwrap_err().msg.contains("FOO"));
    }

    #[test]
    fn bad_container_id_and_ifname_are_refused() {
        let mut vars = ADD.to_vec();
        vars[1] = ("CNI_CONTAINERID", "-x");
        assert!(parse(&vars).unwrap_err().msg.starts_with("CNI_CONTAINERID"));
        let mut vars = ADD.to_vec();
        vars[3] = ("CNI_IFNAME", "a-name-far-too-long");
        assert!(parse(&vars).unwrap_err().msg.starts_with("CNI_IFNAME"));
    }

    #[test]
    fn del_without_a_netns_is_fine() {
        let vars = [ADD[1], ADD[3], ADD[4], ("CNI_COMMAND", "DEL")];
        assert_eq!(parse(&vars).unwrap().netns, None);
    }
}
