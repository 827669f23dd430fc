//! A client that is not ours for the flow API: Python grpcio (Debian's
//! python3-grpcio) with code generated at test time by grpc_tools
//! (python3-grpc-tools) from Goldmane's own `api.proto`, the copy vendored
//! in `flows/tests/goldmane`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's interpreter, where python3-grpcio and python3-grpc-tools install
/// (a `python3` earlier on PATH may be another one).
pub const PYTHON: &str = "/usr/bin/python3";

/// The vendored copy of Goldmane's `api.proto`'s directory.
pub fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flows/tests/goldmane")
}

/// Goldmane's generated Python modules (`api_pb2`, `api_pb2_grpc`) in a
/// directory of their own, for `PYTHONPATH`.
#[derive(Debug)]
pub struct PythonClient {
    dir: tempfile::TempDir,
}

impl PythonClient {
    /// Generates the modules; `None` (skip) when the Python modules are
    /// missing outside CI (in CI that panics, as `require` does).
    pub fn generate() -> Option<PythonClient> {
        if !crate::require::require_python_modules(PYTHON, &["grpc", "grpc_tools.protoc"]) {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let status = Command::new(PYTHON)
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("--proto_path={}", proto_dir().display()))
            .arg(format!("--python_out={}", dir.path().display()))
            .arg(format!("--grpc_python_out={}", dir.path().display()))
            .arg("api.proto")
            .status()
            .expect("grpc_tools runs");
        assert!(status.success(), "grpc_tools.protoc: {status}");
        Some(PythonClient { dir })
    }

    /// Where the modules are.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `PYTHON` with the modules on its path, to run a script with.
    pub fn command(&self) -> Command {
        let mut c = Command::new(PYTHON);
        c.env("PYTHONPATH", self.dir.path());
        c
    }
}
