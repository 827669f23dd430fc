//! Programming the kernel: the [`Dataplane`] trait (read what is programmed,
//! apply [`Changes`] atomically), [`converge`] over it, and [`Nft`], the driver
//! that carries each update out as ONE `nft -f -` transaction.
//!
//! # Two drivers
//!
//! [`Netlink`](crate::Netlink) is the default: it builds each update as one
//! libnftnl batch and sends it in one `sendmsg`, with no process to start and
//! no ruleset for anyone to re-read. [`Nft`] is the text path: it renders the
//! update with [`render_changes`] (`add element`, `delete element`, `flush
//! chain` + `add rule`, ...) and pipes it to `nft -f -`, which sends it as one
//! batch too; `nft` first reads the whole table into its cache, so an update
//! costs the table's size in `nft` (about 110 ms at 125,000 rules) besides its
//! own. Both commit the kernel's way: the whole batch or nothing.
//!
//! nftnl 0.9 (the crate) cannot express the ruleset the compiler produces,
//! which is why [`netlink`](crate::netlink) sits on `nftnl-sys`:
//! - `nftnl::set::Set::new` hard-codes the flags `NFT_SET_ANONYMOUS |
//!   NFT_SET_CONSTANT`: no named mutable sets, no `NFT_SET_INTERVAL`, no
//!   `NFT_SET_MAP` and no data type, so neither our interval sets nor our
//!   verdict maps can be created;
//! - its `SetKey` is implemented for `Ipv4Addr` and `Ipv6Addr` only, and an
//!   element carries a key and nothing else: no concatenated `addr . port`
//!   keys, no interval end (`NFTNL_SET_ELEM_KEY_END`), no element verdict;
//! - `expr::Lookup` always reads register 1 and its inversion flag
//!   (`NFT_LOOKUP_F_INV`) is commented out, so `!= @set` and concatenation
//!   lookups cannot be written, nor can a `vmap` (a lookup with a verdict
//!   destination register);
//! - the set userdata that makes `nft list` print keys in their type is not set.
//!
//! # Start-up
//!
//! Both drivers remember what they programmed. Before its first update a
//! driver reads the table from the kernel once (`nft -j list table`, also for
//! [`Netlink`](crate::Netlink)): sets and maps with their elements, chains
//! with their types and hooks. Rules are read as opaque placeholders (a rule with no
//! match and no verdict, commented `kernel rule handle N`) that equal no
//! compiled rule, together with the comment each rule has in the kernel.
//! Before each diff, a listed chain whose [stamp](crate::stamp) and rule
//! comments say it holds exactly the desired chain is *adopted* (taken as
//! holding it) and left alone, handles and counters kept; every other kept
//! chain is replaced once (flush and refill inside the same transaction)
//! while sets and maps are converged element by element. Nothing is flushed
//! outside a transaction, so traffic that both the old and the new rules
//! allow is never interrupted, and a restart with an unchanged model changes
//! nothing. Either driver takes over a table the other programmed.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use serde_json::Value;

use crate::diff::{Changes, diff};
use crate::ir::{
    BaseChain, Chain, ChainType, Family, Hook, Priority, Rule, Ruleset, Set, SetElement, SetKey,
    TABLE, Verdict, VerdictMap,
};
use crate::render::render_changes;
use crate::stamp::{Listed, Programmed};

/// Why reading or programming the kernel failed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("nft rejected the update (nothing was changed): {stderr}")]
    Rejected { stderr: String },
    #[error("nft -j list table inet {TABLE}: {0}")]
    List(String),
    #[error("nft -j output: {path}: {message}")]
    Parse { path: String, message: String },
    /// The netlink driver's update failed; nothing was committed.
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
}

/// A place rulesets are programmed into.
pub trait Dataplane {
    /// What is programmed now.
    fn read(&self) -> Result<Ruleset, DataplaneError>;
    /// Carries out all the changes in one transaction: all or nothing.
    fn apply(&self, changes: &Changes) -> Result<(), DataplaneError>;
    /// The changes that would make the dataplane hold `desired`: by default
    /// [`diff`] against [`read`](Self::read); drivers that remember what they
    /// programmed diff against that without copying it.
    fn changes_to(&self, desired: &Ruleset) -> Result<Changes, DataplaneError> {
        Ok(diff(&self.read()?, desired))
    }
}

/// Makes the dataplane hold `desired`; returns what it changed.
pub fn converge(
    dataplane: &(impl Dataplane + ?Sized),
    desired: &Ruleset,
) -> Result<Changes, DataplaneError> {
    let changes = dataplane.changes_to(desired)?;
    if !changes.is_empty() {
        dataplane.apply(&changes)?;
    }
    Ok(changes)
}

type CommandFn = Box<dyn Fn() -> Command + Send + Sync>;

/// The `nft` driver.
pub struct Nft {
    command: CommandFn,
    programmed: Mutex<Option<Programmed>>,
}

impl std::fmt::Debug for Nft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nft")
            .field("command", &(self.command)())
            .field("programmed", &self.programmed().is_some())
            .finish()
    }
}

impl Default for Nft {
    fn default() -> Self {
        Nft::new()
    }
}

impl Nft {
    /// A driver running `nft` in this network namespace.
    pub fn new() -> Self {
        Nft::with_command(|| Command::new("nft"))
    }

    /// A driver running the `nft` command `command` makes (for instance one
    /// that enters another network namespace).
    pub fn with_command(command: impl Fn() -> Command + Send + Sync + 'static) -> Self {
        Nft {
            command: Box::new(command),
            programmed: Mutex::new(None),
        }
    }

    fn programmed(&self) -> std::sync::MutexGuard<'_, Option<Programmed>> {
        // A panic while holding the lock leaves a consistent value behind.
        self.programmed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_error(source: std::io::Error) -> DataplaneError {
        DataplaneError::Spawn {
            program: "nft".into(),
            source,
        }
    }

    /// Reads our table from the kernel (empty when there is none).
    pub fn read_kernel(&self) -> Result<Ruleset, DataplaneError> {
        Ok(self.read_table()?.ruleset)
    }

    /// Reads our table from the kernel with the comments of its rules, for
    /// adopting what already holds the desired chains.
    pub fn read_table(&self) -> Result<Programmed, DataplaneError> {
        let out = (self.command)()
            .args(["-j", "list", "table", "inet", TABLE])
            .output()
            .map_err(Self::spawn_error)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if stderr.contains("No such file or directory") {
                return Ok(Programmed::default());
            }
            return Err(DataplaneError::List(stderr));
        }
        let (ruleset, listed) = parse_table(&String::from_utf8_lossy(&out.stdout))?;
        Ok(Programmed::read(ruleset, listed))
    }
}

impl Dataplane for Nft {
    fn read(&self) -> Result<Ruleset, DataplaneError> {
        let mut programmed = self.programmed();
        if let Some(p) = programmed.as_ref() {
            return Ok(p.ruleset.clone());
        }
        let kernel = self.read_table()?;
        let ruleset = kernel.ruleset.clone();
        *programmed = Some(kernel);
        Ok(ruleset)
    }

    fn changes_to(&self, desired: &Ruleset) -> Result<Changes, DataplaneError> {
        let mut programmed = self.programmed();
        if programmed.is_none() {
            *programmed = Some(self.read_table()?);
        }
        Ok(match programmed.as_mut() {
            Some(p) => p.changes_to(desired),
            None => diff(&Ruleset::default(), desired),
        })
    }

    fn apply(&self, changes: &Changes) -> Result<(), DataplaneError> {
        let script = render_changes(changes);
        let mut programmed = self.programmed();
        let mut child = (self.command)()
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Self::spawn_error)?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(script.as_bytes()));
        let out = child.wait_with_output().map_err(Self::spawn_error)?;
        if !out.status.success() {
            return Err(DataplaneError::Rejected {
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        if let Some(Err(e)) = written {
            return Err(Self::spawn_error(e));
        }
        if let Some(p) = programmed.as_mut() {
            p.applied(changes);
        }
        Ok(())
    }
}

fn parse_error(path: impl Into<String>, message: impl Into<String>) -> DataplaneError {
    DataplaneError::Parse {
        path: path.into(),
        message: message.into(),
    }
}

fn family_of(ty: &str, path: &str) -> Result<Family, DataplaneError> {
    match ty {
        "ipv4_addr" => Ok(Family::V4),
        "ipv6_addr" => Ok(Family::V6),
        other => Err(parse_error(path, format!("unsupported key type {other:?}"))),
    }
}

fn parse_net(v: &Value, path: &str) -> Result<IpNet, DataplaneError> {
    let bad = || parse_error(path, format!("not an address or prefix: {v}"));
    match v {
        Value::String(s) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| bad()),
        Value::Object(o) => {
            let p = o.get("prefix").ok_or_else(bad)?;
            let addr: IpAddr = p["addr"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .ok_or_else(bad)?;
            let len = p["len"]
                .as_u64()
                .and_then(|l| u8::try_from(l).ok())
                .ok_or_else(bad)?;
            IpNet::new(addr, len).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

fn parse_element(key: SetKey, v: &Value, path: &str) -> Result<SetElement, DataplaneError> {
    // Elements may carry a comment or counter: `{"elem": {"val": ..}}`.
    let v = v.get("elem").and_then(|e| e.get("val")).unwrap_or(v);
    match key {
        SetKey::Net(_) => Ok(SetElement::Net(parse_net(v, path)?)),
        SetKey::NetPort(_) => {
            let parts = v["concat"]
                .as_array()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| parse_error(path, format!("not an address . port: {v}")))?;
            let port = parts[1]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| parse_error(path, format!("not a port: {}", parts[1])))?;
            Ok(SetElement::NetPort(parse_net(&parts[0], path)?, port))
        }
    }
}

fn parse_verdict(v: &Value, path: &str) -> Result<Verdict, DataplaneError> {
    let target = |kind: &str| v[kind]["target"].as_str().map(str::to_string);
    if let Some(t) = target("jump") {
        return Ok(Verdict::Jump(t));
    }
    if let Some(t) = target("goto") {
        return Ok(Verdict::Goto(t));
    }
    let o = v.as_object();
    match o.and_then(|o| o.keys().next()).map(String::as_str) {
        Some("accept") => Ok(Verdict::Accept),
        Some("drop") => Ok(Verdict::Drop),
        Some("return") => Ok(Verdict::Return),
        _ => Err(parse_error(path, format!("unsupported verdict {v}"))),
    }
}

fn items(o: &Value) -> &[Value] {
    o.get("elem")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Parses `nft -j list table inet calico` output into the IR. Rules become
/// opaque placeholders (see the module docs).
pub fn parse_listing(json: &str) -> Result<Ruleset, DataplaneError> {
    Ok(parse_table(json)?.0)
}

/// [`parse_listing`], and the comment of every listed rule, chain by chain.
pub fn parse_table(json: &str) -> Result<(Ruleset, Listed), DataplaneError> {
    let mut listed = Listed::new();
    let doc: Value = serde_json::from_str(json).map_err(|e| parse_error("$", e.to_string()))?;
    let objects = doc["nftables"]
        .as_array()
        .ok_or_else(|| parse_error("$.nftables", "missing"))?;
    let mut ruleset = Ruleset::default();
    for (i, object) in objects.iter().enumerate() {
        let at = |kind: &str, name: &str| format!("$.nftables[{i}].{kind} {name:?}");
        if let Some(o) = object.get("set") {
            let name = o["name"].as_str().unwrap_or_default();
            let path = at("set", name);
            let key = match &o["type"] {
                Value::String(t) => SetKey::Net(family_of(t, &path)?),
                Value::Array(ts) if ts.len() == 2 && ts[1] == "inet_service" => {
                    SetKey::NetPort(family_of(ts[0].as_str().unwrap_or_default(), &path)?)
                }
                other => return Err(parse_error(path, format!("unsupported type {other}"))),
            };
            let elements = items(o)
                .iter()
                .map(|e| parse_element(key, e, &path))
                .collect::<Result<_, _>>()?;
            let comment = o["comment"].as_str().unwrap_or_default().to_string();
            ruleset.sets.insert(
                name.to_string(),
                Set {
                    key,
                    comment,
                    elements,
                },
            );
        } else if let Some(o) = object.get("map") {
            let name = o["name"].as_str().unwrap_or_default();
            let path = at("map", name);
            let mut map = VerdictMap {
                comment: o["comment"].as_str().unwrap_or_default().to_string(),
                ..VerdictMap::default()
            };
            for e in items(o) {
                let iface = e[0]
                    .as_str()
                    .ok_or_else(|| parse_error(&path, format!("not an interface: {}", e[0])))?;
                map.elements
                    .insert(iface.to_string(), parse_verdict(&e[1], &path)?);
            }
            ruleset.maps.insert(name.to_string(), map);
        } else if let Some(o) = object.get("chain") {
            let name = o["name"].as_str().unwrap_or_default();
            let base = match o["hook"].as_str() {
                None => None,
                Some(hook) => Some(BaseChain {
                    kind: match o["type"].as_str() {
                        Some("filter") => ChainType::Filter,
                        Some("nat") => ChainType::Nat,
                        other => {
                            return Err(parse_error(
                                at("chain", name),
                                format!("unsupported chain type {other:?}"),
                            ));
                        }
                    },
                    hook: match hook {
                        "prerouting" => Hook::Prerouting,
                        "input" => Hook::Input,
                        "forward" => Hook::Forward,
                        "output" => Hook::Output,
                        "postrouting" => Hook::Postrouting,
                        other => {
                            return Err(parse_error(
                                at("chain", name),
                                format!("unsupported hook {other:?}"),
                            ));
                        }
                    },
                    priority: o["prio"]
                        .as_i64()
                        .and_then(Priority::from_value)
                        .ok_or_else(|| {
                            parse_error(
                                at("chain", name),
                                format!("unsupported priority {}", o["prio"]),
                            )
                        })?,
                }),
            };
            ruleset.chains.insert(
                name.into(),
                Arc::new(Chain {
                    base,
                    rules: Vec::new(),
                }),
            );
        } else if let Some(o) = object.get("rule") {
            let chain = o["chain"].as_str().unwrap_or_default();
            let path = at("rule", chain);
            let rules = &mut Arc::make_mut(
                ruleset
                    .chains
                    .get_mut(chain)
                    .ok_or_else(|| parse_error(&path, "rule of an unlisted chain"))?,
            )
            .rules;
            rules.push(Rule {
                comment: Some(format!("kernel rule handle {}", o["handle"])),
                ..Rule::default()
            });
            listed
                .entry(chain.to_string())
                .or_default()
                .push(o["comment"].as_str().map(str::to_string));
        }
    }
    Ok((ruleset, listed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"{"nftables": [
      {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "inet", "name": "calico", "handle": 1}},
      {"set": {"family": "inet", "name": "port4-http", "table": "calico",
               "type": ["ipv4_addr", "inet_service"], "handle": 2, "comment": "all() : 6/http",
               "flags": ["interval"],
               "elem": [{"concat": ["10.65.0.2", 8080]},
                        {"concat": [{"prefix": {"addr": "10.66.0.0", "len": 16}}, 80]}]}},
      {"set": {"family": "inet", "name": "sel6-x", "table": "calico", "type": "ipv6_addr",
               "handle": 3, "flags": ["interval"],
               "elem": [{"prefix": {"addr": "fd00::", "len": 64}}, "fd01::1"]}},
      {"map": {"family": "inet", "name": "wl-to", "table": "calico", "type": "ifname",
               "handle": 4, "comment": "to", "map": "verdict",
               "elem": [["calia", {"goto": {"target": "wl-in-calia"}}], ["calib", {"drop": null}]]}},
      {"chain": {"family": "inet", "table": "calico", "name": "forward", "handle": 5,
                 "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
      {"chain": {"family": "inet", "table": "calico", "name": "wl-in-calia", "handle": 6}},
      {"chain": {"family": "inet", "table": "calico", "name": "nat-outgoing", "handle": 9,
                 "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
      {"rule": {"family": "inet", "table": "calico", "chain": "forward", "handle": 7,
                "expr": [{"accept": null}]}},
      {"rule": {"family": "inet", "table": "calico", "chain": "forward", "handle": 8,
                "comment": "x ingress[0] #00000000000000ff", "expr": [{"drop": null}]}}
    ]}"#;

    #[test]
    fn a_kernel_listing_parses_into_sets_maps_and_chains_with_opaque_rules() {
        let r = parse_listing(LISTING).unwrap();
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let port = &r.sets["port4-http"];
        assert_eq!(port.key, SetKey::NetPort(Family::V4));
        assert_eq!(port.comment, "all() : 6/http");
        assert_eq!(
            port.elements.iter().copied().collect::<Vec<_>>(),
            [
                SetElement::NetPort(net("10.65.0.2/32"), 8080),
                SetElement::NetPort(net("10.66.0.0/16"), 80)
            ]
        );
        let v6 = &r.sets["sel6-x"];
        assert_eq!(v6.key, SetKey::Net(Family::V6));
        assert!(v6.elements.contains(&SetElement::Net(net("fd01::1/128"))));
        assert!(v6.elements.contains(&SetElement::Net(net("fd00::/64"))));
        let map = &r.maps["wl-to"];
        assert_eq!(map.elements["calia"], Verdict::Goto("wl-in-calia".into()));
        assert_eq!(map.elements["calib"], Verdict::Drop);
        let forward = &r.chains["forward"];
        assert_eq!(
            forward.base,
            Some(BaseChain::filter(Hook::Forward, Priority::Filter))
        );
        let nat = &r.chains["nat-outgoing"];
        assert_eq!(
            nat.base,
            Some(BaseChain {
                kind: ChainType::Nat,
                hook: Hook::Postrouting,
                priority: Priority::SrcNat,
            })
        );
        assert_eq!(forward.rules.len(), 2);
        assert!(forward.rules.iter().all(|r| r.verdict.is_none()));
        assert!(r.chains["wl-in-calia"].base.is_none());
    }

    #[test]
    fn the_comments_of_listed_rules_are_read_in_order_for_adopting_chains() {
        let (r, listed) = parse_table(LISTING).unwrap();
        assert_eq!(
            listed["forward"],
            [None, Some("x ingress[0] #00000000000000ff".to_string())]
        );
        assert_eq!(listed.len(), 1, "chains without rules list no comments");
        assert_eq!(r, parse_listing(LISTING).unwrap());
    }

    #[test]
    fn an_unsupported_set_type_is_an_error_naming_the_set() {
        let json = r#"{"nftables": [{"set": {"name": "odd", "type": "ether_addr"}}]}"#;
        let err = parse_listing(json).unwrap_err().to_string();
        assert!(err.contains("$.nftables[0].set \"odd\""), "{err}");
        assert!(err.contains("ether_addr"), "{err}");
    }

    #[test]
    fn a_rule_of_an_unlisted_chain_is_an_error() {
        let json = r#"{"nftables": [{"rule": {"chain": "ghost", "handle": 3}}]}"#;
        let err = parse_listing(json).unwrap_err().to_string();
        assert!(err.contains("ghost"), "{err}");
    }
}
