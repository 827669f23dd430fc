//! The binaries' whole life: read stdin and the environment, dispatch the
//! command to [`plugin`] or [`ipam`], print the
//! result JSON (or the error JSON) on stdout and exit 0 (or 1). Logs go to
//! stderr at the configuration's `log_level`.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use datastore::KvStore;
use serde_json::json;

use crate::config::{NetConf, SUPPORTED_VERSIONS, check_version, requested_version};
use crate::env::{CniEnv, Command};
use crate::error::{CniError, Code, Result};
use crate::{ipam, plugin};

/// Which of the two binaries is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    Calico,
    CalicoIpam,
}

/// Runs the plugin as a runtime invoked it; the process's exit code.
pub fn main(which: Plugin) -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let version = requested_version(&stdin)
        .filter(|v| check_version(v).is_ok())
        .unwrap_or_else(|| SUPPORTED_VERSIONS[0].to_string());
    let outcome = match read {
        Ok(_) => dispatch(which, &stdin, |name| std::env::var(name).ok()),
        Err(e) => Err(CniError::with_details(Code::Decode, "reading stdin", e)),
    };
    match outcome {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(code = e.code, error = %e, "failed");
            println!("{}", e.to_json(&version));
            ExitCode::from(1)
        }
    }
}

/// Carries out the command; the JSON to print, if any.
pub fn dispatch(
    which: Plugin,
    stdin: &[u8],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<serde_json::Value>> {
    let env = CniEnv::parse(&lookup)?;
    if env.command == Command::Version {
        let asked = requested_version(stdin);
        let version = asked
            .filter(|v| check_version(v).is_ok())
            .unwrap_or_else(|| SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1].to_string());
        return Ok(Some(json!({
            "cniVersion": version,
            "supportedVersions": SUPPORTED_VERSIONS,
        })));
    }
    let conf = NetConf::parse(stdin)?;
    // A second init (in tests, several calls in one process) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(conf.log_level)
        .with_target(false)
        .try_init();
    let node = conf.resolve_nodename(
        |p| std::fs::read_to_string(p).ok(),
        || std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::with_details(Code::NotAvailable, "starting the runtime", e))?;
    runtime.block_on(async {
        let span =
            tracing::info_span!("cni", command = ?env.command, container = env.container_id, node);
        let _enter = span.enter();
        let kv: Arc<dyn KvStore> = datastore::connect(&conf.datastore).await.map_err(|e| {
            let code = if env.command == Command::Status {
                Code::NotAvailable
            } else {
                Code::TryAgain
            };
            CniError::new(code, format!("connecting to the datastore: {e}"))
        })?;
        let to_json =
            |r: crate::result::CniResult| serde_json::to_value(r).expect("results serialise");
        match (which, env.command) {
            (_, Command::Version) => unreachable!("answered above"),
            (Plugin::Calico, Command::Add) => plugin::add(&conf, &env, stdin, &node, kv)
                .await
                .map(|r| Some(to_json(r))),
            (Plugin::Calico, Command::Del) => plugin::del(&conf, &env, stdin, &node, kv)
                .await
                .map(|_| None),
            (Plugin::Calico, Command::Check) => plugin::check(&conf, &env, stdin, &node, kv)
                .await
                .map(|_| None),
            (Plugin::CalicoIpam, Command::Add) => ipam::add(&conf, &env, &node, kv)
                .await
                .map(|r| Some(to_json(r))),
            (Plugin::CalicoIpam, Command::Del) => ipam::del(&conf, &env, kv).await.map(|_| None),
            (Plugin::CalicoIpam, Command::Check) => {
                ipam::check(&conf, &env, kv).await.map(|_| None)
            }
            (_, Command::Status) => ipam::reachable(kv).await.map(|_| None),
            (Plugin::CalicoIpam, Command::Gc) => ipam::gc(&conf, kv).await.map(|_| None),
            (Plugin::Calico, Command::Gc) => plugin::gc(&conf, &env, stdin).map(|_| None),
        }
    })
}
