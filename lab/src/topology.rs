//! The containerlab topology file as written ([`Topology`]) and its parsing
//! ([`parse`], pure): the subset of containerlab's schema that `calico-lab`
//! runs. Fields containerlab knows but this runner does not realise, and
//! fields neither knows, are refused with an error naming the line, so a file
//! that parses here is also valid for containerlab.

use std::collections::BTreeMap;

use serde::de::value::MapAccessDeserializer;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::TopologyError;

/// A whole topology file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The lab's name: namespaces are `clab-NAME-NODE`.
    pub name: String,
    pub topology: Body,
}

/// `topology:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// A router's configuration: a file (relative to the topology file) or
    /// the configuration itself (text of several lines).
    #[serde(rename = "startup-config")]
    pub startup_config: Option<String>,
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
    #[serde(rename = "startup-config")]
    pub startup_config: Option<String>,
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
            startup_config: self.startup_config.clone(),
        }
    }
}

/// One entry of `links:`, in containerlab's brief form (no `type`,
/// `endpoints: ["NODE:IFNAME", "NODE:IFNAME"]`) or its extended form (`type`,
/// endpoints as mappings). Fields of the link types this runner refuses are
/// read only so that the error names the type.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// The extended form's type; `None` for the brief form.
    #[serde(rename = "type")]
    pub kind: Option<LinkType>,
    /// Both ends: strings in the brief form, mappings in the extended one.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// The one end of a single-ended type (`dummy`, `host`, `macvlan`, …).
    pub endpoint: Option<EndpointSpec>,
    /// The MTU of both ends.
    pub mtu: Option<u32>,
    /// Containerlab's template variables and labels for the link: they do
    /// not change the link, and nothing is templated here; ignored.
    pub vars: Option<IgnoredAny>,
    pub labels: Option<IgnoredAny>,
    #[serde(rename = "host-interface")]
    pub host_interface: Option<IgnoredAny>,
    pub mode: Option<IgnoredAny>,
    pub remote: Option<IgnoredAny>,
    pub vni: Option<IgnoredAny>,
    #[serde(rename = "udp-port")]
    pub udp_port: Option<IgnoredAny>,
}

/// Containerlab's link types (`type:`); this runner makes `veth` and `dummy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkType {
    Veth,
    Dummy,
    Host,
    MgmtNet,
    Macvlan,
    Vxlan,
    VxlanStitch,
}

impl LinkType {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkType::Veth => "veth",
            LinkType::Dummy => "dummy",
            LinkType::Host => "host",
            LinkType::MgmtNet => "mgmt-net",
            LinkType::Macvlan => "macvlan",
            LinkType::Vxlan => "vxlan",
            LinkType::VxlanStitch => "vxlan-stitch",
        }
    }
}

/// One of `endpoints:`: `"NODE:IFNAME"` (brief form) or a mapping (extended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Brief(String),
    Extended(EndpointSpec),
}

/// An extended endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub node: String,
    pub interface: String,
    /// The interface's MAC address (the kernel picks one otherwise).
    pub mac: Option<String>,
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // By hand rather than `untagged`: errors inside a mapping keep the
        // line and field at fault.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Endpoint;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"NODE:IFNAME\" or a mapping {node, interface, mac}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Endpoint, E> {
                Ok(Endpoint::Brief(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Endpoint, A::Error> {
                EndpointSpec::deserialize(MapAccessDeserializer::new(map)).map(Endpoint::Extended)
            }
        }
        d.deserialize_any(V)
    }
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

/// The 1-based line of entry `index` (`- …`) of the block list under the key
/// on line `key_line`; `None` for a flow list (`[…]`) or when absent.
pub fn list_item_line(text: &str, key_line: usize, index: usize) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let key_indent = indent(lines.get(key_line.checked_sub(1)?)?);
    let mut item_indent = None;
    let mut n = 0;
    for (i, line) in lines.iter().enumerate().skip(key_line) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = indent(line);
        let is_item = trimmed == "-" || trimmed.starts_with("- ");
        if at < key_indent || (at == key_indent && !is_item) {
            break;
        }
        let items = *item_indent.get_or_insert(at);
        if at < items || (at == items && !is_item) {
            break;
        }
        if at == items {
            if n == index {
                return Some(i + 1);
            }
            n += 1;
        }
    }
    None
}

/// The lines (1-based, end excluded) of the list entry starting on line
/// `item_line`: it and the lines indented deeper than its `-`.
pub fn item_lines(text: &str, item_line: usize) -> std::ops::Range<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(first) = item_line.checked_sub(1).and_then(|i| lines.get(i)) else {
        return item_line..item_line;
    };
    let dash = indent(first);
    let mut end = item_line + 1;
    for line in lines.iter().skip(item_line) {
        let trimmed = line.trim_start();
        if !(trimmed.is_empty() || trimmed.starts_with('#')) && indent(line) <= dash {
            break;
        }
        end += 1;
    }
    item_line..end
}

/// The 1-based line of occurrence `nth` (0 first) of `needle` within
/// `lines` (1-based, end excluded).
pub fn line_within(
    text: &str,
    lines: &std::ops::Range<usize>,
    needle: &str,
    nth: usize,
) -> Option<usize> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(n, l)| lines.contains(n) && l.contains(needle))
        .nth(nth)
        .map(|(n, _)| n)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}
