//! What `up` made ([`State`], serialised to `STATE_ROOT/LAB/state.json`):
//! written before anything is created and rewritten as daemons start, so
//! `down` finds everything even after the runner was killed half-way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::plan::Role;

/// The state file's name inside a lab's state directory.
pub const STATE_FILE: &str = "state.json";

/// A lab's recorded state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub lab: String,
    pub nodes: Vec<NodeState>,
}

/// One node's namespace and daemons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub kind: String,
    pub role: Role,
    pub netns: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Its persisted mount namespace (`STATE/NODE/mnt`), if it has one.
    #[serde(default)]
    pub mntns: Option<PathBuf>,
    /// Its daemons, as they are started.
    #[serde(default)]
    pub daemons: Vec<DaemonState>,
}

/// A started daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonState {
    pub pid: u32,
    /// Its program, checked against `/proc/PID/cmdline` before it is
    /// killed (the pid may have been reused).
    pub program: String,
}

impl State {
    /// `dir/state.json`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Reads `dir/state.json`; `None` if there is none.
    pub fn load(dir: &Path) -> Result<Option<State>, RunError> {
        let path = State::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RunError::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| RunError::State {
                path,
                message: e.to_string(),
            })
    }

    /// Writes `dir/state.json` atomically (a temporary file renamed over it).
    pub fn save(&self, dir: &Path) -> Result<(), RunError> {
        let path = State::path(dir);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("a state serialises");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| RunError::io(format!("writing {}", path.display()), e))
    }
}
