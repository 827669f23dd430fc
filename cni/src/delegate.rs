//! Running a delegated plugin (the IPAM plugin named in `ipam.type`) as the
//! spec says: found in `CNI_PATH`, given the same configuration on stdin and
//! the same environment but for `CNI_COMMAND`; its result or its error JSON
//! read back from stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use crate::env::Command;
use crate::error::{CniError, Code, Result};
use crate::result::CniResult;
use crate::version::SpecVersion;

/// The first `CNI_PATH` directory holding an executable `name`.
pub fn find_plugin(name: &str, path: &[PathBuf]) -> Result<PathBuf> {
    path.iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                Code::IpamPlugin,
                format!(
                    "ipam.type: plugin {name:?} not found in CNI_PATH ({})",
                    path.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            )
        })
}

/// ADD through `plugin` with `stdin`, a configuration in `version`; its
/// result, read in the version the result names (else `version`).
pub fn add(plugin: &Path, stdin: &[u8], version: SpecVersion) -> Result<CniResult> {
    let out = exec(plugin, Command::Add, stdin)?;
    let unreadable = |e: &dyn std::fmt::Display| {
        CniError::with_details(
            Code::Decode,
            format!("reading the result of IPAM plugin {}", plugin.display()),
            e,
        )
    };
    let value = serde_json::from_slice(&out).map_err(|e| unreadable(&e))?;
    SpecVersion::read_result(value, "result", version).map_err(|e| unreadable(&e))
}

/// Runs `plugin` for a `command` without a result (DEL, CHECK, GC) with
/// `stdin`.
pub fn run(plugin: &Path, command: Command, stdin: &[u8]) -> Result<()> {
    exec(plugin, command, stdin).map(drop)
}

/// Runs `plugin` for `command` with `stdin`; what it printed. A plugin's
/// error JSON comes back as that error.
fn exec(plugin: &Path, command: Command, stdin: &[u8]) -> Result<Vec<u8>> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        CniError::new(
            Code::IpamPlugin,
            format!("{what} IPAM plugin {}: {e}", plugin.display()),
        )
    };
    let mut child = Process::new(plugin)
        .env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| failed("running", &e))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .map_err(|e| failed("writing the configuration to", &e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| failed("waiting for", &e))?;
    if !out.status.success() {
        #[derive(serde::Deserialize)]
        struct ErrorJson {
            code: u32,
            msg: String,
            #[serde(default)]
            details: Option<String>,
        }
        return Err(match serde_json::from_slice::<ErrorJson>(&out.stdout) {
            Ok(e) => CniError {
                code: e.code,
                msg: e.msg,
                details: e.details,
            },
            Err(_) => failed(
                &format!("{}", out.status),
                &String::from_utf8_lossy(&out.stdout).trim(),
            ),
        });
    }
    Ok(out.stdout)
}
