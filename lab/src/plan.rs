//! What a topology becomes ([`Plan`], computed by [`plan`], pure): one
//! network namespace per node named `clab-LAB-NODE`, one veth pair per link
//! with the file's interface names, the commands each node runs, and the
//! daemons (BIRD, GoBGP, FRR's zebra and bgpd, or felix) each router or host runs, with its config
//! given as the bound file's host path on its command line, and the binds of
//! each node's mount namespace (its `binds`, a router's runtime directory
//! and `startup-config`; realised as [`crate::mounts`] says). Defaults from `topology.defaults` and
//! `topology.kinds` are merged under each node's own settings here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TopologyError;
use crate::mounts::{Mount, NS_FILE};
use crate::topology::{
    Endpoint, Kind, Link, LinkType, NodeDefaults, Topology, item_lines, line_containing, line_of,
    line_within, list_item_line,
};

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
    /// Our `goldmane`, the cluster's flow aggregator (the felix hosts push
    /// their flows to it), with its API on a Unix socket in the node's
    /// state directory as well.
    Goldmane,
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
            Role::Goldmane => "goldmane",
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
    /// `type: dummy` links: an interface in one node.
    pub dummies: Vec<PlannedDummy>,
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
    /// Files written (path, text) before its daemons start: an embedded
    /// `startup-config`.
    pub files: Vec<(PathBuf, String)>,
    /// Binds in its mount namespace, in order: its daemon's runtime
    /// directory (`/run/bird`, `/run/frr`) from its state directory, its
    /// `binds`, and its router's `startup-config` at the config's container
    /// path.
    pub mounts: Vec<Mount>,
    /// `STATE/NODE/mnt`, its persisted mount namespace, when it has mounts.
    pub mntns: Option<PathBuf>,
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
    /// Its MAC address (`aa:bb:cc:dd:ee:ff`), else the kernel's choice.
    pub mac: Option<String>,
}

/// A veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLink {
    pub a: End,
    pub b: End,
    /// The MTU of both ends, else the kernel's default (1500).
    pub mtu: Option<u32>,
}

/// A dummy interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDummy {
    pub end: End,
    pub mtu: Option<u32>,
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
        let mut files = Vec::new();
        let mut startup_mounts = Vec::new();
        // A router's config file: the bound one, or its startup-config
        // (then bound read-only at `target`, the container path, of its
        // file).
        let mut config =
            |bound_to: fn(&str) -> bool, written: &str, target: &dyn Fn(&Path) -> PathBuf| {
                let startup_line = || {
                    let kind = kind.as_str();
                    line_of(text, &["topology", "nodes", name, "startup-config"])
                        .or_else(|| line_of(text, &["topology", "kinds", kind, "startup-config"]))
                        .or_else(|| line_of(text, &["topology", "defaults", "startup-config"]))
                        .or(line)
                };
                let bind = bound(&binds, bound_to);
                let conf = router_config(
                    bind,
                    merged.startup_config.as_deref(),
                    &settings.file_dir,
                    &node_dir.join(written),
                    &mut files,
                )
                .map_err(|m| err(startup_line(), &format!("{path}.startup-config"), m))?;
                if let (None, Some(conf)) = (bind, &conf) {
                    startup_mounts.push(Mount {
                        source: conf.clone(),
                        target: target(conf),
                        read_only: true,
                    });
                }
                Ok::<_, TopologyError>(conf)
            };
        // (program, arguments, ready file) of each daemon, in start order.
        let daemons: Vec<(PathBuf, Vec<String>, Option<PathBuf>)> = match role {
            Role::Linux | Role::Bridge => Vec::new(),
            Role::Bird => {
                let conf = config(|c| c.ends_with("bird.conf"), "bird.conf", &|_| {
                    PathBuf::from("/etc/bird/bird.conf")
                })?
                .ok_or_else(|| {
                    err(
                        line,
                        &path,
                        "a bird node needs a startup-config or a bind to /etc/bird/bird.conf"
                            .into(),
                    )
                })?;
                let conf = conf.as_path();
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
                let conf = config(
                    |c| {
                        c.starts_with("/etc/gobgp/")
                            || Path::new(c)
                                .file_name()
                                .is_some_and(|f| f.to_string_lossy().starts_with("gobgp"))
                    },
                    "gobgpd.toml",
                    &|conf| {
                        let ext = conf.extension().and_then(|e| e.to_str()).unwrap_or("toml");
                        PathBuf::from(format!("/etc/gobgp/gobgpd.{ext}"))
                    },
                )?
                .ok_or_else(|| {
                    err(
                        line,
                        &path,
                        "a gobgp node needs a startup-config or a bind to /etc/gobgp/gobgpd.conf"
                            .into(),
                    )
                })?;
                let conf = conf.as_path();
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
            Role::Goldmane => {
                let socket = node_dir.join("goldmane.sock");
                vec![(
                    settings.felix.with_file_name("goldmane"),
                    vec!["--socket".into(), show(&socket)],
                    Some(socket),
                )]
            }
            Role::Frr => {
                config(|c| c.ends_with("frr.conf"), "frr.conf", &|_| {
                    PathBuf::from("/etc/frr/frr.conf")
                })?
                .ok_or_else(|| {
                    err(
                        line,
                        &path,
                        "an frr node needs a startup-config or a bind to /etc/frr/frr.conf".into(),
                    )
                })?;
                // FRR reads its config after dropping to `frr`, who may not
                // pass through the host path (a lab under /root): it reads
                // it where the node sees it, in the node's mount namespace.
                let seen_at = binds
                    .iter()
                    .find(|b| b.container.ends_with("frr.conf"))
                    .map_or_else(|| "/etc/frr/frr.conf".into(), |b| b.container.clone());
                let zserv = node_dir.join("zserv.api");
                let frr = |daemon: &str, ready: PathBuf| {
                    let args = [
                        "-f",
                        &seen_at,
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
        // Plain `birdc` and `vtysh` look for their daemons' sockets here.
        let runtime = match role {
            Role::Bird => Some("/run/bird"),
            Role::Frr => Some("/run/frr"),
            _ => None,
        };
        let mut mounts: Vec<Mount> = runtime
            .map(|dir| Mount {
                source: node_dir.clone(),
                target: PathBuf::from(dir),
                read_only: false,
            })
            .into_iter()
            .collect();
        if role != Role::Bridge {
            mounts.extend(binds.iter().map(|b| Mount {
                source: b.host.clone(),
                target: PathBuf::from(&b.container),
                read_only: b.read_only,
            }));
            mounts.extend(startup_mounts);
        }
        nodes.push(PlannedNode {
            name: name.clone(),
            kind,
            role,
            netns: netns_name(&lab, name),
            env,
            exec: merged.exec.unwrap_or_default(),
            daemons,
            owner: (role == Role::Frr).then(|| FRR_USER.to_string()),
            files,
            mntns: (!mounts.is_empty()).then(|| node_dir.join(NS_FILE)),
            mounts,
        });
    }
    let (links, dummies) = plan_links(topology, text, &lab, &nodes)?;
    Ok(Plan {
        lab,
        state_dir,
        nodes,
        links,
        dummies,
    })
}

/// The veth pairs and dummy interfaces of the file's links, each end checked
/// (its node exists, its interface is named once, its MAC is one).
fn plan_links(
    topology: &Topology,
    text: &str,
    lab: &str,
    nodes: &[PlannedNode],
) -> Result<(Vec<PlannedLink>, Vec<PlannedDummy>), TopologyError> {
    let links_line = line_of(text, &["topology", "links"]);
    let mut used = BTreeSet::new();
    let mut links = Vec::new();
    let mut dummies = Vec::new();
    for (i, link) in topology.topology.links.iter().enumerate() {
        let item = links_line.and_then(|l| list_item_line(text, l, i));
        let lines = item.map_or(0..0, |l| item_lines(text, l));
        // The line of occurrence `nth` of `needle` in this link, else the link's.
        let line_of_nth = |needle: &str, nth: usize| {
            line_within(text, &lines, needle, nth)
                .or_else(|| line_containing(text, links_line.unwrap_or(0), needle))
                .or(item)
                .or(links_line)
        };
        let path = format!("topology.links[{i}]");
        let mtu = match link.mtu {
            Some(mtu) if !(68..=65535).contains(&mtu) => {
                return Err(err(
                    line_of_nth("mtu:", 0),
                    &format!("{path}.mtu"),
                    format!("mtu {mtu} is not 68 to 65535"),
                ));
            }
            mtu => mtu,
        };
        let mut end = |node: &str, ifname: &str, mac: Option<&str>, line, path: &str| {
            let at = |m: String| err(line, path, m);
            let planned = nodes
                .iter()
                .find(|n| n.name == node)
                .ok_or_else(|| at(format!("endpoint {node}:{ifname}: no node {node:?}")))?;
            check_ifname(ifname).map_err(|m| at(format!("endpoint {node}:{ifname}: {m}")))?;
            if !used.insert((node.to_string(), ifname.to_string())) {
                return Err(at(format!("endpoint {node}:{ifname} is used twice")));
            }
            let mac = mac
                .map(parse_mac)
                .transpose()
                .map_err(|m| at(format!("endpoint {node}:{ifname}: {m}")))?;
            Ok(End {
                node: node.to_string(),
                netns: netns_name(lab, node),
                ifname: ifname.to_string(),
                bridge: (planned.kind == Kind::Bridge).then(|| bridge_device(node)),
                mac,
            })
        };
        match link.kind {
            None => {
                let path = format!("{path}.endpoints");
                refuse_foreign(link, &["endpoints"], &path, line_of_nth)?;
                let mut ends = Vec::new();
                for e in &link.endpoints {
                    let Endpoint::Brief(e) = e else {
                        return Err(err(
                            line_of_nth("node:", 0),
                            &path,
                            "a link without `type` is in the brief form, its endpoints \"NODE:IFNAME\"; \
                             endpoints as mappings need `type: veth`"
                                .into(),
                        ));
                    };
                    let line = line_of_nth(e, 0);
                    let (node, ifname) = e.split_once(':').ok_or_else(|| {
                        err(line, &path, format!("endpoint {e:?} is not NODE:IFNAME"))
                    })?;
                    ends.push(end(node, ifname, None, line, &path)?);
                }
                let [a, b] = two(ends).map_err(|n| {
                    err(
                        line_of_nth("endpoints", 0),
                        &path,
                        format!("a link has two endpoints, not {n}"),
                    )
                })?;
                links.push(PlannedLink { a, b, mtu });
            }
            Some(LinkType::Veth) => {
                refuse_foreign(link, &["endpoints"], &path, line_of_nth)?;
                let mut ends = Vec::new();
                for (j, e) in link.endpoints.iter().enumerate() {
                    let path = format!("{path}.endpoints[{j}]");
                    let Endpoint::Extended(e) = e else {
                        return Err(err(
                            line_of_nth("endpoints", 0),
                            &path,
                            "a `type: veth` link's endpoints are mappings {node, interface, mac}, \
                             not \"NODE:IFNAME\""
                                .into(),
                        ));
                    };
                    let line = line_of_nth("node:", j);
                    ends.push(end(&e.node, &e.interface, e.mac.as_deref(), line, &path)?);
                }
                let [a, b] = two(ends).map_err(|n| {
                    err(
                        line_of_nth("endpoints", 0),
                        &format!("{path}.endpoints"),
                        format!("a veth link has two endpoints, not {n}"),
                    )
                })?;
                links.push(PlannedLink { a, b, mtu });
            }
            Some(LinkType::Dummy) => {
                let path = format!("{path}.endpoint");
                refuse_foreign(link, &["endpoint"], &path, line_of_nth)?;
                let e = link.endpoint.as_ref().ok_or_else(|| {
                    err(
                        line_of_nth("type:", 0),
                        &path,
                        "a dummy link needs its `endpoint: {node, interface}`".into(),
                    )
                })?;
                let line = line_of_nth("node:", 0);
                let end = end(&e.node, &e.interface, e.mac.as_deref(), line, &path)?;
                dummies.push(PlannedDummy { end, mtu });
            }
            Some(other) => {
                return Err(err(
                    line_of_nth("type:", 0),
                    &format!("{path}.type"),
                    format!(
                        "link type `{}` is not made here: calico-lab makes veth links (brief or \
                         `type: veth`) and `type: dummy` interfaces",
                        other.as_str()
                    ),
                ));
            }
        }
    }
    Ok((links, dummies))
}

/// Refuses a field of `link` that its type does not take (among those read
/// for the types this runner refuses), naming its line.
fn refuse_foreign(
    link: &Link,
    allowed: &[&str],
    path: &str,
    line_of_nth: impl Fn(&str, usize) -> Option<usize>,
) -> Result<(), TopologyError> {
    let present = [
        ("endpoints", !link.endpoints.is_empty()),
        ("endpoint", link.endpoint.is_some()),
        ("host-interface", link.host_interface.is_some()),
        ("mode", link.mode.is_some()),
        ("remote", link.remote.is_some()),
        ("vni", link.vni.is_some()),
        ("udp-port", link.udp_port.is_some()),
    ];
    let kind = link.kind.map_or("a brief", LinkType::as_str);
    match present
        .iter()
        .find(|(field, there)| *there && !allowed.contains(field))
    {
        Some((field, _)) => Err(err(
            line_of_nth(&format!("{field}:"), 0),
            path,
            format!("`{field}` is not a field of {kind} link"),
        )),
        None => Ok(()),
    }
}

/// Two ends, or how many there are.
fn two(ends: Vec<End>) -> Result<[End; 2], usize> {
    let n = ends.len();
    ends.try_into().map_err(|_| n)
}

/// A unicast MAC address `aa:bb:cc:dd:ee:ff` (or with `-`), lower-cased.
fn parse_mac(text: &str) -> Result<String, String> {
    let bad = || format!("mac {text:?} is not a unicast MAC address such as 02:42:ac:00:00:01");
    let octets = text
        .split([':', '-'])
        .map(|o| {
            (o.len() == 2)
                .then(|| u8::from_str_radix(o, 16).ok())
                .flatten()
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    if octets.len() != 6 || octets[0] & 1 == 1 || octets.iter().all(|o| *o == 0) {
        return Err(bad());
    }
    Ok(octets
        .iter()
        .map(|o| format!("{o:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
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
    if over.startup_config.is_some() {
        base.startup_config.clone_from(&over.startup_config);
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
            "goldmane" => Ok(Role::Goldmane),
            other => Err(format!(
                "unknown {ROLE_LABEL} {other:?}: expected linux, bird, gobgp, frr, felix or goldmane"
            )),
        };
    }
    let image = settings.image.as_deref().unwrap_or("");
    let repo = image.rsplit('/').next().unwrap_or("");
    let repo = repo.split([':', '@']).next().unwrap_or("");
    Ok(if repo.contains("goldmane") {
        Role::Goldmane
    } else if repo.contains("bird") {
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
    read_only: bool,
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
        read_only: parts.get(2) == Some(&"ro"),
    })
}

/// Where a router's daemon reads its configuration: the host side of its
/// config's bind, or its `startup-config`, a file (relative to `dir`) or, when
/// it spans lines, the text itself, to be written to `written` (pushed on
/// `files`). Both at once are refused, and so is a URL.
fn router_config(
    bound: Option<&Path>,
    startup: Option<&str>,
    dir: &Path,
    written: &Path,
    files: &mut Vec<(PathBuf, String)>,
) -> Result<Option<PathBuf>, String> {
    let Some(startup) = startup else {
        return Ok(bound.map(Path::to_path_buf));
    };
    if let Some(bound) = bound {
        return Err(format!(
            "both a startup-config and a bind of its config ({}) are given; keep one",
            bound.display()
        ));
    }
    if startup.contains('\n') {
        files.push((written.to_path_buf(), startup.to_string()));
        return Ok(Some(written.to_path_buf()));
    }
    if startup.starts_with("http://") || startup.starts_with("https://") {
        return Err(format!(
            "startup-config {startup:?}: remote files are not fetched here; download it and name the file"
        ));
    }
    if startup.trim().is_empty() {
        return Err("startup-config is empty".into());
    }
    Ok(Some(dir.join(startup)))
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
