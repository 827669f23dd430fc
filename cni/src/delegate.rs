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

fn command_name(command: Command) -> &'static str {
    match command {
        Command::Add => "ADD",
        Command::Del => "DEL",
        Command::Check => "CHECK",
        Command::Version => "VERSION",
        Command::Status => "STATUS",
        Command::Gc => "GC",
    }
}

/// Runs `plugin` for `command` with `stdin`; the parsed result for ADD,
/// `None` otherwise. A plugin's error JSON comes back as that error.
pub fn run(plugin: &Path, command: Command, stdin: &[u8]) -> Result<Option<CniResult>> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        CniError::new(
            Code::IpamPlugin,
            format!("{what} IPAM plugin {}: {e}", plugin.display()),
        )
    };
    let mut child = Process::new(plugin)
        .env("CNI_COMMAND", command_name(command))
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
    if command != Command::Add {
        return Ok(None);
    }
    serde_json::from_slice(&out.stdout).map(Some).map_err(|e| {
        CniError::with_details(
            Code::Decode,
            format!("reading the result of IPAM plugin {}", plugin.display()),
            e,
        )
    })
}
