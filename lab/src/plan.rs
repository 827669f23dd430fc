//! What a topology becomes ([`Plan`], computed by [`plan`], pure): one
//! network namespace per node named `clab-LAB-NODE`, one veth pair per link
//! with the file's interface names, the commands each node runs, and the
//! daemons (BIRD, GoBGP, FRR's zebra and bgpd, or felix) each router or host runs, with its config
//! given as the bound file's host path on its command line (no mount
//! namespace is needed). Defaults from `topology.defaults` and
//! `topology.kinds` are merged under each node's own settings here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TopologyError;
use crate::topology::{Kind, NodeDefaults, Topology, line_containing, line_of};

/// The label that names what a `linux` node runs, overriding its image.
pub const ROLE_LABEL: &str = "calico-rs.role";

/// Where Debian keeps FRR's daemons.
pub const FRR_DAEMONS: &str = "/usr/lib/frr";

/// The user FRR's daemons run as.
const FRR_USER: &str = "frr";

/// The prefix of every namespace (containerlab's container prefix).
pub const PREFIX: &str = "clab";

/// What a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Nothing but its `exec` commands.
    Linux,
    /// A Linux bridge joining its links.
    Bridge,
    /// BIRD 2 on the bound `bird.conf`.
    Bird,
    /// GoBGP (`gobgpd`) on the bound config.
    Gobgp,
    /// Our `felix run`.
    Felix,
    /// FRR's zebra and bgpd on the bound `frr.conf`.
    Frr,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Linux => "linux",
            Role::Bridge => "bridge",
            Role::Bird => "bird",
            Role::Gobgp => "gobgp",
            Role::Felix => "felix",
            Role::Frr => "frr",
        }
    }
}

/// How the runner is set up: where state lives and which felix to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The directory of every lab's state (`/run/calico-lab`).
    pub state_root: PathBuf,
    /// The directory of the topology file (binds are relative to it).
    pub file_dir: PathBuf,
    /// The lab's name, overriding the file's (containerlab's `--name`).
    pub name: Option<String>,
    /// The `felix` binary felix nodes run.
    pub felix: PathBuf,
}

/// A lab ready to be realised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub lab: String,
    /// `STATE_ROOT/LAB`: the state file, sockets, logs, the datastore.
    pub state_dir: PathBuf,
    pub nodes: Vec<PlannedNode>,
    pub links: Vec<PlannedLink>,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedNode {
    pub name: String,
    pub kind: Kind,
    pub role: Role,
    pub netns: String,
    pub env: BTreeMap<String, String>,
    /// Shell commands (`sh -c`) run in the node once links are up.
    pub exec: Vec<String>,
    /// Started in order, each once the previous one is ready.
    pub daemons: Vec<Daemon>,
    /// The user (and group) that must own the node's state directory: FRR
    /// drops to `frr` and writes its sockets and pid files there.
    pub owner: Option<String>,
}

/// A long-running program started in a node after its `exec` commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// A file (a control socket) that exists once the daemon is ready: the
    /// runner waits for it before starting the next daemon.
    pub ready: Option<PathBuf>,
}

/// One end of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub node: String,
    pub netns: String,
    pub ifname: String,
    /// The bridge device this end joins, when its node is a bridge.
    pub bridge: Option<String>,
}

/// A veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLink {
    pub a: End,
    pub b: End,
}

/// The namespace of node `node` in lab `lab`.
pub fn netns_name(lab: &str, node: &str) -> String {
    format!("{PREFIX}-{lab}-{node}")
}

/// The bridge device of a `bridge` node: the node's name, as containerlab
/// names the host bridge.
fn bridge_device(node: &str) -> String {
    node.to_string()
}

/// Plans `topology` (parsed from `text`, used to name lines in errors).
pub fn plan(topology: &Topology, text: &str, settings: &Settings) -> Result<Plan, TopologyError> {
    let lab = settings
        .name
        .clone()
        .unwrap_or_else(|| topology.name.clone());
    check_name(&lab).map_err(|m| err(line_of(text, &["name"]), "name", m))?;
    let state_dir = settings.state_root.join(&lab);
    let mut nodes = Vec::new();
    for (name, node) in &topology.topology.nodes {
        let path = format!("topology.nodes.{name}");
        let line = line_of(text, &["topology", "nodes", name]);
        check_name(name).map_err(|m| err(line, &path, m))?;
        let kind = node.kind.unwrap_or(Kind::Linux);
        let mut merged = topology.topology.defaults.clone();
        if let Some(k) = topology.topology.kinds.get(&kind) {
            merge(&mut merged, k);
        }
        merge(&mut merged, &node.settings());
        let role = role(kind, &merged).map_err(|m| {
            let line = line_of(text, &["topology", "nodes", name, "labels", ROLE_LABEL])
                .or_else(|| line_of(text, &["topology", "nodes", name, "image"]))
                .or(line);
            err(line, &path, m)
        })?;
        let node_dir = state_dir.join(name);
        let mut env = merged.env.clone();
        let binds = merged
            .binds
            .iter()
            .flatten()
            .map(|b| parse_bind(b, &settings.file_dir))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| {
                let line = line_of(text, &["topology", "nodes", name, "binds"]).or(line);
                err(line, &format!("{path}.binds"), m)
            })?;
        // (program, arguments, ready file) of each daemon, in start order.
        let daemons: Vec<(PathBuf, Vec<String>, Option<PathBuf>)> = match role {
            Role::Linux | Role::Bridge => Vec::new(),
            Role::Bird => {
                let conf = bound(&binds, |c| c.ends_with("bird.conf")).ok_or_else(|| {
                    err(
                        line,
                        &path,
                        "a bird node needs a bind to /etc/bird/bird.conf".into(),
                    )
                })?;
                let ctl = node_dir.join("bird.ctl");
                vec![(
                    PathBuf::from("bird"),
                    vec![
                        "-f".into(),
                        "-c".into(),
                        show(conf),
                        "-s".into(),
                        show(&ctl),
                    ],
                    Some(ctl),
                )]
            }
            Role::Gobgp => {
                let conf = bound(&binds, |c| {
                    c.starts_with("/etc/gobgp/")
                        || Path::new(c)
                            .file_name()
                            .is_some_and(|f| f.to_string_lossy().starts_with("gobgp"))
                })
                .ok_or_else(|| {
                    err(
                        line,
                        &path,
                        "a gobgp node needs a bind to /etc/gobgp/gobgpd.conf".into(),
                    )
                })?;
                let kind = match conf.extension().and_then(|e| e.to_str()) {
                    Some("yaml" | "yml") => "yaml",
                    Some("json") => "json",
                    _ => "toml",
                };
                vec![(
                    PathBuf::from("gobgpd"),
                    vec![
                        "-f".into(),
                        show(conf),
                        "-t".into(),
                        kind.into(),
                        "-p".into(),
                        "--pprof-disable".into(),
                        "--api-hosts".into(),
                        "127.0.0.1:50051".into(),
                    ],
                    None,
                )]
            }
            Role::Felix => {
                if !env.contains_key("DATASTORE_TYPE") {
                    env.insert("DATASTORE_TYPE".into(), "sqlite".into());
                    env.insert(
                        "DATASTORE_PATH".into(),
                        show(&state_dir.join("datastore.db")),
                    );
                }
                // Its BGP status socket appears once its datastore is open.
                // Felix processes opening a fresh SQLite file at the same
                // moment may fail ("database is locked"), so the runner
                // starts the next one only then.
                let socket = node_dir.join("bgp.sock");
                let ready = env
                    .get("CALICO_NETWORKING_BACKEND")
                    .is_none_or(|b| b == "bird")
                    .then(|| socket.clone());
                vec![(
                    settings.felix.clone(),
                    vec![
                        "run".into(),
                        "--node-name".into(),
                        name.clone(),
                        "--bgp-socket".into(),
                        show(&socket),
                    ],
                    ready,
                )]
            }
            Role::Frr => {
                let conf = bound(&binds, |c| c.ends_with("frr.conf")).ok_or_else(|| {
                    err(
                        line,
                        &path,
                        "an frr node needs a bind to /etc/frr/frr.conf".into(),
                    )
                })?;
                let zserv = node_dir.join("zserv.api");
                let frr = |daemon: &str, ready: PathBuf| {
                    let args = [
                        "-f",
                        &show(conf),
                        "-i",
                        &show(&node_dir.join(format!("{daemon}.pid"))),
                        "-z",
                        &show(&zserv),
                        "--vty_socket",
                        &show(&node_dir),
                        "-u",
                        FRR_USER,
                        "-g",
                        FRR_USER,
                        "-P",
                        "0",
                        "--log",
                        "stdout",
                    ];
                    (
                        Path::new(FRR_DAEMONS).join(daemon),
                        args.map(String::from).to_vec(),
                        Some(ready),
                    )
                };
                vec![
                    frr("zebra", zserv.clone()),
                    frr("bgpd", node_dir.join("bgpd.vty")),
                ]
            }
        };
        let daemons = daemons
            .into_iter()
            .map(|(program, args, ready)| Daemon {
                log: node_dir.join(format!(
                    "{}.log",
                    program.file_name().unwrap_or_default().to_string_lossy()
                )),
                program,
                args,
                env: env.clone(),
                ready,
            })
            .collect();
        nodes.push(PlannedNode {
            name: name.clone(),
            kind,
            role,
            netns: netns_name(&lab, name),
            env,
            exec: merged.exec.unwrap_or_default(),
            daemons,
            owner: (role == Role::Frr).then(|| FRR_USER.to_string()),
        });
    }
    let links = plan_links(topology, text, &lab, &nodes)?;
    Ok(Plan {
        lab,
        state_dir,
        nodes,
        links,
    })
}

fn plan_links(
    topology: &Topology,
    text: &str,
    lab: &str,
    nodes: &[PlannedNode],
) -> Result<Vec<PlannedLink>, TopologyError> {
    let links_line = line_of(text, &["topology", "links"]).unwrap_or(0);
    let mut used = BTreeSet::new();
    let mut links = Vec::new();
    for (i, link) in topology.topology.links.iter().enumerate() {
        let path = format!("topology.links[{i}].endpoints");
        let [a, b] = link.endpoints.as_slice() else {
            let line = line_containing(text, links_line, "endpoints").map(|l| l + i);
            return Err(err(
                line,
                &path,
                format!("a link has two endpoints, not {}", link.endpoints.len()),
            ));
        };
        let mut end = |e: &String| -> Result<End, TopologyError> {
            let line = line_containing(text, links_line, e);
            let (node, ifname) = e
                .split_once(':')
                .ok_or_else(|| err(line, &path, format!("endpoint {e:?} is not NODE:IFNAME")))?;
            let planned = nodes
                .iter()
                .find(|n| n.name == node)
                .ok_or_else(|| err(line, &path, format!("endpoint {e:?}: no node {node:?}")))?;
            check_ifname(ifname).map_err(|m| err(line, &path, format!("endpoint {e:?}: {m}")))?;
            if !used.insert((node.to_string(), ifname.to_string())) {
                return Err(err(line, &path, format!("endpoint {e:?} is used twice")));
            }
            Ok(End {
                node: node.to_string(),
                netns: netns_name(lab, node),
                ifname: ifname.to_string(),
                bridge: (planned.kind == Kind::Bridge).then(|| bridge_device(node)),
            })
        };
        let a = end(a)?;
        let b = end(b)?;
        links.push(PlannedLink { a, b });
    }
    Ok(links)
}

fn err(line: Option<usize>, path: &str, message: String) -> TopologyError {
    TopologyError {
        line,
        path: path.to_string(),
        message,
    }
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

/// `over`'s settings replace `base`'s; maps merge key by key.
fn merge(base: &mut NodeDefaults, over: &NodeDefaults) {
    if over.image.is_some() {
        base.image.clone_from(&over.image);
    }
    if over.exec.is_some() {
        base.exec.clone_from(&over.exec);
    }
    if over.binds.is_some() {
        base.binds.clone_from(&over.binds);
    }
    base.env.extend(over.env.clone());
    base.labels.extend(over.labels.clone());
}

/// The role of a node: bridges are bridges; a `linux` node's comes from its
/// `calico-rs.role` label, else from its image's name.
fn role(kind: Kind, settings: &NodeDefaults) -> Result<Role, String> {
    if kind == Kind::Bridge {
        return Ok(Role::Bridge);
    }
    if let Some(label) = settings.labels.get(ROLE_LABEL) {
        return match label.as_str() {
            "linux" => Ok(Role::Linux),
            "bird" => Ok(Role::Bird),
            "gobgp" => Ok(Role::Gobgp),
            "felix" => Ok(Role::Felix),
            "frr" => Ok(Role::Frr),
            other => Err(format!(
                "unknown {ROLE_LABEL} {other:?}: expected linux, bird, gobgp, frr or felix"
            )),
        };
    }
    let image = settings.image.as_deref().unwrap_or("");
    let repo = image.rsplit('/').next().unwrap_or("");
    let repo = repo.split([':', '@']).next().unwrap_or("");
    Ok(if repo.contains("bird") {
        Role::Bird
    } else if repo.contains("gobgp") {
        Role::Gobgp
    } else if repo.contains("felix") || image.contains("calico-rs") {
        Role::Felix
    } else if repo.contains("frr") {
        Role::Frr
    } else {
        Role::Linux
    })
}

/// A `binds:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bind {
    host: PathBuf,
    container: String,
}

fn parse_bind(text: &str, dir: &Path) -> Result<Bind, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container) = match parts.as_slice() {
        [h, c] | [h, c, "ro" | "rw"] if !h.is_empty() && c.starts_with('/') => (h, c),
        _ => return Err(format!("bind {text:?} is not HOST:/CONTAINER[:ro|rw]")),
    };
    Ok(Bind {
        host: dir.join(host),
        container: container.to_string(),
    })
}

fn bound(binds: &[Bind], want: impl Fn(&str) -> bool) -> Option<&Path> {
    binds
        .iter()
        .find(|b| want(&b.container))
        .map(|b| b.host.as_path())
}

/// Lab and node names: what containerlab allows in a container name.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{name:?} is not a name (letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}

fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("interface name {name:?} is not 1 to 15 bytes"));
    }
    if name == "lo" || name.contains(['/', ':']) || name.chars().any(char::is_whitespace) {
        return Err(format!("{name:?} is not a usable interface name"));
    }
    Ok(())
}
