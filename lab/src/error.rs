//! The crate's errors: [`TopologyError`] for a file that cannot be run (pure
//! parsing and planning), [`RunError`] for what fails while bringing a lab up
//! or down.

use std::path::PathBuf;

/// What is wrong with a topology file, with the line (1-based) and the field
/// path at fault where known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default(), if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct TopologyError {
    pub line: Option<usize>,
    /// The field, as `topology.nodes.r1.kind`; empty for the whole file.
    pub path: String,
    pub message: String,
}

/// A failure while realising or removing a lab.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("lab {lab} is already up (state in {}); run `calico-lab down` first", state.display())]
    AlreadyUp { lab: String, state: PathBuf },
    #[error("no lab named {0} is up")]
    NotUp(String),
    #[error("lab {lab} has no node {node}")]
    NoNode { lab: String, node: String },
    #[error("the state file {} is not readable: {message}", path.display())]
    State { path: PathBuf, message: String },
    /// A node's mount namespace cannot be made as planned.
    #[error("{node}: mount namespace: {message}")]
    Mount { node: String, message: String },
    /// The kernel's neighbour table could not be sized for a lab.
    #[error(
        "setting {sysctl} to {value} for lab {lab} ({need} neighbour entries in the kernel's table, which every namespace shares): {source}; run as root, or `sysctl -w {sysctl}={value}` first"
    )]
    NeighbourTable {
        lab: String,
        need: u64,
        sysctl: String,
        value: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("{node}: no {} within {within} s (calico-lab up --ready-timeout); its log ends:\n{log}", path.display())]
    NotReady {
        node: String,
        path: PathBuf,
        within: u64,
        log: String,
    },
    #[error("{node}: `{command}` exited at once ({status}); its log {} ends:\n{log}", log_path.display())]
    DaemonExited {
        node: String,
        command: String,
        status: String,
        log_path: PathBuf,
        log: String,
    },
}

impl RunError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RunError::Io {
            context: context.into(),
            source,
        }
    }
}
