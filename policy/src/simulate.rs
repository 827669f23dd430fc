//! [`simulate`]: what a [`Ruleset`] does to one packet, evaluated as netfilter
//! evaluates the rendered table: the base chains of the packet's hook in
//! priority order (an accept goes on to the next, a drop ends it), rules in
//! order, `jump` pushing a return point, `goto` not, `return` (or the end of a
//! chain) going back, a base chain ending in its policy (accept), verdict-map
//! lookups falling through when the interface is not in the map.
//!
//! Nat base chains see only the first packet of a connection (conntrack
//! state new), as in netfilter; a `masquerade` or `snat` statement ends the
//! walk through its chain as `accept` does and is reported in
//! [`Trace::source_nat`] (the packet's addresses are left as they were: the
//! address masquerading picks is the outgoing interface's, which a ruleset does
//! not know).
//!
//! As in nft, an address or ICMP match implies its family or protocol: an
//! `ip saddr != @s` never matches an IPv6 packet, `icmp type != 8` never a TCP
//! one. Port matches only see TCP, UDP, SCTP and UDP-Lite packets (compiled
//! rules always match the protocol before ports).
//!
//! [`walk`] gives the same [`Trace`] with every rule the packet reached, in
//! order, and the first of its matches that failed ([`Visit`]), for
//! explaining a verdict (the [`trace`](crate::trace) module).

use std::net::IpAddr;

use crate::ir::{
    ChainType, CtState, Family, Hook, Iface, Match, Ruleset, SetElement, Side, Statement, Verdict,
};

/// Deepest jump stack netfilter allows.
const MAX_DEPTH: usize = 16;

/// The packet, as the hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub hook: Hook,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub ct: CtState,
    pub mark: u32,
}

impl Packet {
    /// A new-connection packet in `hook` from `src` to `dst` of protocol `proto`
    /// to port `dport` (ICMP: echo request), no interfaces, no mark.
    pub fn new(hook: Hook, src: IpAddr, dst: IpAddr, proto: u8, dport: u16) -> Self {
        let echo = if src.is_ipv4() { 8 } else { 128 };
        Packet {
            hook,
            iif: None,
            oif: None,
            src,
            dst,
            proto,
            sport: 40000,
            dport,
            icmp_type: echo,
            icmp_code: 0,
            ct: CtState::New,
            mark: 0,
        }
    }

    /// The same packet arriving on `iif`.
    pub fn from_iface(mut self, iif: &str) -> Self {
        self.iif = Some(iif.to_string());
        self
    }

    /// The same packet leaving by `oif`.
    pub fn to_iface(mut self, oif: &str) -> Self {
        self.oif = Some(oif.to_string());
        self
    }
}

/// The final verdict on a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accept,
    Drop,
}

/// What happened to a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub outcome: Outcome,
    /// The comment (or, without one, the prefix) of every `log` rule that fired.
    pub logged: Vec<String>,
    /// The packet as the chains left it (its mark, its conntrack state after
    /// `notrack`), to follow it into the next hook.
    pub after: Packet,
    /// The source NAT a nat chain gave the connection (`masquerade` or
    /// `snat to`), if any.
    pub source_nat: Option<Statement>,
}

/// A ruleset that refers to something it does not define, or loops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimulateError {
    #[error("chain {0:?} does not exist")]
    MissingChain(String),
    #[error("set {0:?} does not exist")]
    MissingSet(String),
    #[error("map {0:?} does not exist")]
    MissingMap(String),
    #[error("jumps nest deeper than {MAX_DEPTH} at chain {0:?}")]
    TooDeep(String),
}

/// One rule a packet reached: its chain, its place there, and the first of
/// its matches that failed (`None`: every match held and its statements and
/// verdict applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    pub chain: String,
    pub rule: usize,
    pub failed: Option<usize>,
}

/// A [`Trace`] with the rules the packet reached, in the order it reached them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walked {
    pub trace: Trace,
    pub visits: Vec<Visit>,
}

/// Evaluates `packet` against the ruleset.
pub fn simulate(ruleset: &Ruleset, packet: &Packet) -> Result<Trace, SimulateError> {
    walk(ruleset, packet).map(|w| w.trace)
}

/// Evaluates `packet` against the ruleset as [`simulate`] does, recording
/// every rule it reached.
pub fn walk(ruleset: &Ruleset, packet: &Packet) -> Result<Walked, SimulateError> {
    let mut packet = packet.clone();
    let mut walk = Walk::default();
    let mut bases: Vec<(crate::ir::Priority, &str)> = (ruleset.chains.iter())
        .filter_map(|(name, c)| {
            let b = c.base.filter(|b| b.hook == packet.hook)?;
            // Conntrack consults nat chains for a connection's first packet only.
            if b.kind == ChainType::Nat && packet.ct != CtState::New {
                return None;
            }
            Some((b.priority, &**name))
        })
        .collect();
    bases.sort();
    let mut outcome = Outcome::Accept;
    for (_, base) in bases {
        if run_chain(ruleset, base, &mut packet, &mut walk)? == Outcome::Drop {
            outcome = Outcome::Drop;
            break;
        }
    }
    Ok(Walked {
        trace: Trace {
            outcome,
            logged: walk.logged,
            after: packet,
            source_nat: walk.source_nat,
        },
        visits: walk.visits,
    })
}

/// What the chains did besides their verdict.
#[derive(Default)]
struct Walk {
    logged: Vec<String>,
    source_nat: Option<Statement>,
    visits: Vec<Visit>,
}

/// Runs one base chain: its verdict on the packet, which its statements change.
fn run_chain(
    ruleset: &Ruleset,
    base: &str,
    packet: &mut Packet,
    walk: &mut Walk,
) -> Result<Outcome, SimulateError> {
    let accept = |_| Ok(Outcome::Accept);
    let mut stack: Vec<(&str, usize)> = Vec::new();
    let mut current: (&str, usize) = (base, 0);
    loop {
        let chain = ruleset
            .chains
            .get(current.0)
            .ok_or_else(|| SimulateError::MissingChain(current.0.to_string()))?;
        let Some(rule) = chain.rules.get(current.1) else {
            match stack.pop() {
                Some(back) => {
                    current = back;
                    continue;
                }
                None => return accept(()),
            }
        };
        let mut failed = None;
        for (i, m) in rule.matches.iter().enumerate() {
            if !matches(ruleset, m, packet)? {
                failed = Some(i);
                break;
            }
        }
        walk.visits.push(Visit {
            chain: current.0.to_string(),
            rule: current.1,
            failed,
        });
        current.1 += 1;
        if failed.is_some() {
            continue;
        }
        for s in &rule.statements {
            match s {
                Statement::MarkSet(bits) => packet.mark |= bits,
                Statement::MarkClear(bits) => packet.mark &= !bits,
                Statement::Log { prefix, .. } => {
                    (walk.logged).push(rule.comment.clone().unwrap_or_else(|| prefix.clone()));
                }
                Statement::Notrack => packet.ct = CtState::Untracked,
                // Header rewrites change no verdict.
                Statement::DscpSet { .. } => {}
                Statement::Masquerade | Statement::Snat(_) => {
                    walk.source_nat = Some(s.clone());
                    return accept(());
                }
            }
        }
        let verdict = match &rule.verdict {
            None => continue,
            Some(Verdict::Vmap { iface, map }) => {
                let map = ruleset
                    .maps
                    .get(map)
                    .ok_or_else(|| SimulateError::MissingMap(map.clone()))?;
                let name = iface_of(packet, *iface);
                match name.and_then(|n| map.elements.get(n)) {
                    Some(v) => v,
                    None => continue,
                }
            }
            Some(v) => v,
        };
        match verdict {
            Verdict::Accept => return accept(()),
            Verdict::Drop => return Ok(Outcome::Drop),
            Verdict::Return => match stack.pop() {
                Some(back) => current = back,
                None => return accept(()),
            },
            Verdict::Jump(target) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(SimulateError::TooDeep(target.clone()));
                }
                stack.push(current);
                current = (target.as_str(), 0);
            }
            Verdict::Goto(target) => current = (target.as_str(), 0),
            Verdict::Vmap { map, .. } => return Err(SimulateError::MissingMap(map.clone())),
        }
    }
}

fn iface_of(p: &Packet, iface: Iface) -> Option<&str> {
    match iface {
        Iface::In => p.iif.as_deref(),
        Iface::Out => p.oif.as_deref(),
    }
}

fn family_of(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

pub(crate) fn port_of(p: &Packet, side: Side) -> Option<u16> {
    matches!(p.proto, 6 | 17 | 132 | 136).then_some(match side {
        Side::Source => p.sport,
        Side::Destination => p.dport,
    })
}

pub(crate) fn addr_of(p: &Packet, side: Side) -> IpAddr {
    match side {
        Side::Source => p.src,
        Side::Destination => p.dst,
    }
}

fn matches(ruleset: &Ruleset, m: &Match, p: &Packet) -> Result<bool, SimulateError> {
    let family = family_of(p.src);
    let set = |name: &str| {
        ruleset
            .sets
            .get(name)
            .ok_or_else(|| SimulateError::MissingSet(name.to_string()))
    };
    Ok(match m {
        Match::Nfproto(f) => *f == family,
        Match::L4proto { proto, negate } => (p.proto == *proto) != *negate,
        Match::CtState(states) => states.contains(&p.ct),
        Match::Iface {
            iface,
            name,
            negate,
        } => match iface_of(p, *iface) {
            Some(actual) => {
                let hit = match name.strip_suffix('*') {
                    Some(prefix) => actual.starts_with(prefix),
                    None => actual == name,
                };
                hit != *negate
            }
            None => false,
        },
        Match::Icmp {
            family: f,
            types,
            code,
            negate,
        } => {
            if family != *f || p.proto != f.icmp_protocol() {
                false
            } else {
                let hit = types.contains(&p.icmp_type) && code.is_none_or(|c| c == p.icmp_code);
                hit != *negate
            }
        }
        Match::Ports {
            side,
            ranges,
            negate,
        } => match port_of(p, *side) {
            Some(port) => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&port)) != *negate,
            None => false,
        },
        Match::Addr {
            family: f,
            side,
            set: name,
            negate,
        } => {
            let set = set(name)?;
            if *f != family {
                false
            } else {
                let addr = addr_of(p, *side);
                let hit = set.elements.iter().any(|e| match e {
                    SetElement::Net(n) => n.contains(&addr),
                    SetElement::NetPort(..) => false,
                });
                hit != *negate
            }
        }
        Match::AddrPort {
            family: f,
            side,
            set: name,
            negate,
        } => {
            let set = set(name)?;
            match port_of(p, *side) {
                Some(port) if *f == family => {
                    let addr = addr_of(p, *side);
                    let hit = set.elements.iter().any(|e| match e {
                        SetElement::NetPort(n, pt) => n.contains(&addr) && *pt == port,
                        SetElement::Net(_) => false,
                    });
                    hit != *negate
                }
                _ => false,
            }
        }
        Match::Mark { mask, value } => p.mark & mask == *value,
        // A simulated packet is within every limit.
        Match::RateOver { .. } | Match::ConnectionsOver { .. } => false,
    })
}
