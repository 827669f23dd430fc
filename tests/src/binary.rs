//! [`workspace_binary`]: the path of a binary of another workspace package,
//! built first if needed, for tests that run several of the workspace's
//! programs together (felix with the CNI plugin, say). Cargo gives a test
//! only its own package's binaries (`CARGO_BIN_EXE_*`); this runs
//! `cargo build -p PACKAGE --bin NAME` (a no-op when up to date) with the
//! same cargo, profile and target directory as the running test.

use std::path::PathBuf;
use std::process::Command;

use crate::command::run_checked;
use crate::error::Error;

/// Builds (if needed) and returns the path of binary `bin` of workspace
/// package `package`, in the target directory the current test runs from.
pub fn workspace_binary(package: &str, bin: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        context: "finding the running test's path".into(),
        source,
    })?;
    // target/<profile>/deps/<test>-<hash> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .ok_or_else(|| Error::Io {
            context: format!("no target directory above {}", exe.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    let target_dir = profile_dir.parent().map(PathBuf::from).unwrap_or_default();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin])
        .env("CARGO_TARGET_DIR", &target_dir);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        cmd.arg("--release");
    }
    run_checked(&mut cmd)?;
    Ok(profile_dir.join(bin))
}
