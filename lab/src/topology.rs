//! The containerlab topology file as written ([`Topology`]) and its parsing
//! ([`parse`], pure): the subset of containerlab's schema that `calico-lab`
//! runs. Fields containerlab knows but this runner does not realise, and
//! fields neither knows, are refused with an error naming the line, so a file
//! that parses here is also valid for containerlab.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::TopologyError;

/// A whole topology file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The lab's name: namespaces are `clab-NAME-NODE`.
    pub name: String,
    pub topology: Body,
}

/// `topology:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// `defaults:`: settings for every node, below `kinds` and the node's own.
    #[serde(default)]
    pub defaults: NodeDefaults,
    /// `kinds:`: settings for every node of a kind, below the node's own.
    #[serde(default)]
    pub kinds: BTreeMap<Kind, NodeDefaults>,
    /// `nodes:`, by name.
    #[serde(default)]
    pub nodes: BTreeMap<String, Node>,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// The node kinds this runner realises (containerlab knows many more; the
/// others are refused as unknown variants, naming the line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A plain Linux container: here a network namespace, running whatever
    /// its role (image or `calico-rs.role` label) says.
    Linux,
    /// A Linux bridge: here a namespace holding a bridge its links join.
    Bridge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Linux => "linux",
            Kind::Bridge => "bridge",
        }
    }
}

/// Settings a node may take from `defaults:` or `kinds:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDefaults {
    pub image: Option<String>,
    /// Commands run in the node once the lab's links exist.
    pub exec: Option<Vec<String>>,
    /// `HOST:CONTAINER[:ro|rw]`, the host path relative to the file.
    pub binds: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One entry of `nodes:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub kind: Option<Kind>,
    /// Containerlab's grouping for display; ignored here.
    pub group: Option<String>,
    pub image: Option<String>,
    pub exec: Option<Vec<String>>,
    pub binds: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Node {
    /// The node's own settings, to merge over its defaults.
    pub fn settings(&self) -> NodeDefaults {
        NodeDefaults {
            image: self.image.clone(),
            exec: self.exec.clone(),
            binds: self.binds.clone(),
            env: self.env.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// One entry of `links:` in containerlab's brief form.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// `["NODE:IFNAME", "NODE:IFNAME"]`.
    pub endpoints: Vec<String>,
}

/// Parses a topology file's text. Errors carry the line (1-based) and the
/// field path at fault.
pub fn parse(text: &str) -> Result<Topology, TopologyError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line());
        let mut message = inner.to_string();
        // serde_yaml appends the position; the error carries it apart.
        if let Some(at) = message.find(" at line ") {
            message.truncate(at);
        }
        // … and sometimes prefixes the path, which the error also carries.
        if let Some(rest) = message.strip_prefix(&format!("{path}: ")) {
            message = rest.to_string();
        }
        TopologyError {
            line,
            path: if path == "." { String::new() } else { path },
            message,
        }
    })
}

/// The 1-based line of the mapping key reached by `path` (each segment a key
/// nested under the previous one), found by indentation; `None` if absent.
/// Used to name the line of errors found after parsing.
pub fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let mut parent_indent: Option<usize> = None;
    let mut start = 0;
    let lines: Vec<&str> = text.lines().collect();
    let mut found = None;
    for seg in path {
        found = None;
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if i > start && parent_indent.is_some_and(|p| indent <= p) {
                break;
            }
            let key = trimmed.trim_start_matches("- ");
            let quoted = [
                format!("{seg}:"),
                format!("\"{seg}\":"),
                format!("'{seg}':"),
            ];
            if quoted.iter().any(|q| key.starts_with(q.as_str())) {
                found = Some(i);
                parent_indent = Some(indent);
                start = i + 1;
                break;
            }
        }
        found?;
    }
    found.map(|i| i + 1)
}

/// The 1-based line of the first line after `after` (a line number, 0 for the
/// start) that contains `needle`.
pub fn line_containing(text: &str, after: usize, needle: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(after)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
}
