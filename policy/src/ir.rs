//! The ruleset IR: one `inet` table as named sets with elements, verdict maps
//! with elements, and chains with ordered rules. Everything is keyed by name in
//! ordered maps, so two IRs compare (and later diff) set by set, map by map and
//! chain by chain, and iteration order is deterministic.
//!
//! The IR is typed rather than textual so that [`render`](crate::render()), the
//! [`diff`](crate::diff()) and the drivers express the same thing. Every rule counts
//! packets: the renderer (and the driver) put a counter on each one.
//!
//! Chains are shared (`Arc`): a [`Compiler`](crate::compile::Compiler) hands the
//! chains an edit did not touch to the next ruleset as they are, so the diff
//! tells them apart from changed ones by identity before it compares rules.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

/// The `inet` table the compiler owns.
pub const TABLE: &str = "calico";

/// Packet-mark bit a policy or profile chain sets when a rule allowed the packet.
pub const MARK_ALLOW: u32 = 0x0001_0000;
/// Packet-mark bit a policy chain sets when a rule passed the packet to the next tier.
pub const MARK_PASS: u32 = 0x0002_0000;
/// Packet-mark bit the raw-priority chains set on a packet untracked policy
/// allowed (and left untracked); the filter base chains accept it.
pub const MARK_UNTRACKED: u32 = 0x0004_0000;

/// A chain's name in a [`Ruleset`]: shared, so that the ruleset the
/// incremental compiler hands out (a copy of the one it keeps, at every
/// change) copies pointers, not tens of thousands of strings.
pub type ChainName = Arc<str>;

/// One `inet` table: sets, verdict maps and chains, each by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Named interval sets (selector members, `nets` lists, named ports).
    pub sets: BTreeMap<String, Set>,
    /// Named verdict maps from interface names to endpoint chains.
    pub maps: BTreeMap<String, VerdictMap>,
    /// Base, dispatch, endpoint, policy and profile chains.
    pub chains: BTreeMap<ChainName, Arc<Chain>>,
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Both families, v4 first.
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    /// The family an address or network belongs to.
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// The family of an address.
    pub fn of_addr(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The ICMP protocol of the family: ICMP (1) or ICMPv6 (58).
    pub fn icmp_protocol(self) -> u8 {
        match self {
            Family::V4 => 1,
            Family::V6 => 58,
        }
    }

    /// `4` or `6`.
    pub fn number(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }
}

/// What a set's elements are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetKey {
    /// Networks (`ipv4_addr`/`ipv6_addr`, interval).
    Net(Family),
    /// A network and a port (`ipv4_addr . inet_service`, interval): named ports.
    NetPort(Family),
}

impl SetKey {
    /// The address family of the set's keys.
    pub fn family(self) -> Family {
        match self {
            SetKey::Net(f) | SetKey::NetPort(f) => f,
        }
    }
}

/// One element of a set. Elements of one set never overlap: the compiler
/// aggregates them before they get here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetElement {
    Net(IpNet),
    NetPort(IpNet, u16),
}

/// A named interval set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub key: SetKey,
    /// What the set stands for (a selector, a `nets` list), for people reading `nft list`.
    pub comment: String,
    pub elements: BTreeSet<SetElement>,
}

/// Which interface of a packet a match or a map lookup reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Iface {
    /// `iifname`: the interface the packet came in on.
    In,
    /// `oifname`: the interface the packet leaves by.
    Out,
}

/// A named map from interface names to verdicts (`type ifname : verdict`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerdictMap {
    pub comment: String,
    pub elements: BTreeMap<String, Verdict>,
}

/// A netfilter hook the base chains attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    /// After routing, on the way out: source NAT (`natOutgoing`).
    Postrouting,
}

/// Where in its hook a base chain runs, relative to conntrack (-200), DNAT
/// (-100) and SNAT (100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Priority {
    /// `raw` (-300): before conntrack; untracked policy.
    Raw,
    /// `mangle` (-150): after conntrack, before DNAT; pre-DNAT policy.
    Mangle,
    /// `filter` (0): normal policy.
    #[default]
    Filter,
    /// `srcnat` (100): source NAT in postrouting (`natOutgoing`).
    SrcNat,
}

impl Priority {
    /// The numeric priority.
    pub fn value(self) -> i32 {
        match self {
            Priority::Raw => -300,
            Priority::Mangle => -150,
            Priority::Filter => 0,
            Priority::SrcNat => 100,
        }
    }

    /// The priority of this numeric value, if it is one of ours.
    pub fn from_value(value: i64) -> Option<Priority> {
        [
            Priority::Raw,
            Priority::Mangle,
            Priority::Filter,
            Priority::SrcNat,
        ]
        .into_iter()
        .find(|p| i64::from(p.value()) == value)
    }
}

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ChainType {
    /// `type filter`: policy.
    #[default]
    Filter,
    /// `type nat`: consulted for the first packet of each connection only;
    /// its NAT statements apply to the whole connection (`natOutgoing`).
    Nat,
}

/// What makes a chain a base chain: its type, hook and priority (policy accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaseChain {
    pub kind: ChainType,
    pub hook: Hook,
    pub priority: Priority,
}

impl BaseChain {
    /// A `type filter` base chain.
    pub fn filter(hook: Hook, priority: Priority) -> Self {
        BaseChain {
            kind: ChainType::Filter,
            hook,
            priority,
        }
    }
}

/// A chain: a base chain attached to a hook, or a regular chain entered by jump or goto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

/// Which address or port of a packet a match reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Source,
    Destination,
}

/// A conntrack state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CtState {
    Invalid,
    Established,
    Related,
    New,
    /// Left alone by conntrack (`notrack`).
    Untracked,
}

/// One condition of a rule. All the matches of a rule must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `meta nfproto ipv4|ipv6`.
    Nfproto(Family),
    /// `meta l4proto [!=] N`.
    L4proto { proto: u8, negate: bool },
    /// `ct state { .. }`: any of the states.
    CtState(Vec<CtState>),
    /// `iifname|oifname [!=] "name"`; a trailing `*` matches a prefix.
    Iface {
        iface: Iface,
        name: String,
        negate: bool,
    },
    /// `icmp|icmpv6 type T [code C]`, or `type { T1, T2 }` when several types
    /// (then without code). Negated: not (type and code).
    Icmp {
        family: Family,
        types: Vec<u8>,
        code: Option<u8>,
        negate: bool,
    },
    /// `th sport|dport [!=] { a, b-c }`: any of the inclusive ranges.
    Ports {
        side: Side,
        ranges: Vec<(u16, u16)>,
        negate: bool,
    },
    /// `ip|ip6 saddr|daddr [!=] @set`.
    Addr {
        family: Family,
        side: Side,
        set: String,
        negate: bool,
    },
    /// `ip|ip6 saddr|daddr . th sport|dport [!=] @set` (named ports).
    AddrPort {
        family: Family,
        side: Side,
        set: String,
        negate: bool,
    },
    /// `meta mark & mask == value`.
    Mark { mask: u32, value: u32 },
    /// `limit rate over RATE/second burst BURST packets`: holds for the
    /// packets beyond the rate (a workload's `PacketRate` QoS control).
    RateOver { rate: u64, burst: u32 },
    /// `ct count over COUNT`: holds while more than `count` connections
    /// that passed this rule are alive (a workload's `MaxConnections`).
    ConnectionsOver { count: u32 },
}

/// A non-terminal action of a rule, after its counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `meta mark set meta mark | bits`.
    MarkSet(u32),
    /// `meta mark set meta mark & ~bits`.
    MarkClear(u32),
    /// `log prefix "..."`, to the kernel log; with a group, `log prefix
    /// "..." group N` to that NFLOG group instead (flow logs read it).
    Log { prefix: String, group: Option<u16> },
    /// `notrack`: conntrack leaves the packet alone (raw priority only).
    Notrack,
    /// `masquerade`: the connection leaves with the address of the interface
    /// it leaves by (nat chains in postrouting only). Ends the packet's walk
    /// through its chain as `accept` does: the rule has no verdict.
    Masquerade,
    /// `snat ip|ip6 to ADDR`: the connection leaves with this address (nat
    /// chains in postrouting only; the rule must match the address's family).
    /// Ends the walk as [`Statement::Masquerade`] does.
    Snat(IpAddr),
    /// `ip|ip6 dscp set VALUE`: the packet's DSCP (the DS field's upper six
    /// bits; ECN kept), in a packet of `family` (the rule must match it).
    DscpSet { family: Family, value: u8 },
}

impl Statement {
    /// Whether the statement ends the rule's chain walk (NAT statements do).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Statement::Masquerade | Statement::Snat(_))
    }
}

/// How a rule ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
    /// `iifname|oifname vmap @map`: the verdict the map holds for the interface;
    /// when it holds none, the next rule.
    Vmap {
        iface: Iface,
        map: String,
    },
}

/// One rule: matches, a counter, statements, then an optional verdict.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub statements: Vec<Statement>,
    pub verdict: Option<Verdict>,
    /// Where the rule comes from (e.g. `default.allow-db ingress[0]`).
    pub comment: Option<String>,
}

impl Rule {
    /// A rule with these matches and this verdict.
    pub fn new(matches: Vec<Match>, verdict: Verdict) -> Self {
        Rule {
            matches,
            verdict: Some(verdict),
            ..Rule::default()
        }
    }

    /// The same rule with a comment.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}

impl Ruleset {
    /// The names of the chains a chain jumps or goes to, directly or through a map.
    pub fn targets<'a>(&'a self, chain: &'a Chain) -> impl Iterator<Item = &'a str> + 'a {
        chain
            .rules
            .iter()
            .filter_map(|r| r.verdict.as_ref())
            .flat_map(move |v| match v {
                Verdict::Jump(c) | Verdict::Goto(c) => vec![c.as_str()],
                Verdict::Vmap { map, .. } => self.maps.get(map).map_or_else(Vec::new, |m| {
                    m.elements
                        .values()
                        .filter_map(|v| match v {
                            Verdict::Jump(c) | Verdict::Goto(c) => Some(c.as_str()),
                            _ => None,
                        })
                        .collect()
                }),
                _ => Vec::new(),
            })
    }
}
