//! The binaries' whole life: read stdin and the environment, refuse a
//! command the configuration's `cniVersion` does not have, dispatch the
//! command to [`plugin`] or [`ipam`], print the result JSON in that
//! version's format (or the error JSON) on stdout and exit 0 (or 1). Logs go
//! to stderr at the configuration's `log_level`.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use datastore::KvStore;
use serde_json::json;

use crate::config::{NetConf, requested_version};
use crate::env::{CniEnv, Command};
use crate::error::{CniError, Code, Result};
use crate::version::SpecVersion;
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
    // Errors answer in the version asked; the error JSON is the same in
    // every version, so an unsupported request gets 1.0.0's.
    let version = supported_request(&stdin).unwrap_or(SpecVersion::V1_0_0);
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
            println!("{}", e.to_json(version.as_str()));
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
        let version = supported_request(stdin).unwrap_or(SpecVersion::LATEST);
        return Ok(Some(json!({
            "cniVersion": version.as_str(),
            "supportedVersions": SpecVersion::supported(),
        })));
    }
    let conf = NetConf::parse(stdin)?;
    conf.cni_version.allows(env.command)?;
    // A second init (in tests, several calls in one process) keeps the first.
    // Runtimes keep the plugin's stderr in their logs: colours only on a terminal.
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
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
        conf.check_store(|p| p.exists())
            .map_err(|e| match env.command {
                // STATUS: the plugin cannot serve (yet): felix has made no store.
                Command::Status => CniError::new(Code::NotAvailable, e.msg),
                _ => e,
            })?;
        let kv: Arc<dyn KvStore> = datastore::connect(&conf.datastore).await.map_err(|e| {
            let code = if env.command == Command::Status {
                Code::NotAvailable
            } else {
                Code::TryAgain
            };
            CniError::new(code, format!("connecting to the datastore: {e}"))
        })?;
        // Nothing writes while the store is locked for a migration; the
        // runtime retries (Calico's plugin refuses the same way).
        if env.command != Command::Check {
            datastore::migrate::check_unlocked(&kv).await.map_err(|e| {
                let code = if env.command == Command::Status {
                    Code::NotAvailable
                } else {
                    Code::TryAgain
                };
                CniError::new(code, e.to_string())
            })?;
        }
        let to_json = |r: crate::result::CniResult| conf.cni_version.render(&r);
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

/// The `cniVersion` of `stdin` if it is one we speak.
fn supported_request(stdin: &[u8]) -> Option<SpecVersion> {
    SpecVersion::parse("cniVersion", &requested_version(stdin)?).ok()
}
