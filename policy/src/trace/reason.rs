//! Why a compiled rule did not match a packet, in the words of the policy
//! rule it came from: the first of its nft matches that failed, read back
//! as the selector, `nets`, port list, protocol, ICMP type or IP version
//! the packet is not in.

use crate::ir::{Family, Match, Ruleset, Side};
use crate::model::{Entity, Rule};
use crate::simulate::{Packet, addr_of, port_of};

use super::ends::protocol_name;

/// Why `m` (a match of a rule compiled from `rule`, when known) failed for `packet`.
pub fn explain(ruleset: &Ruleset, m: &Match, rule: Option<&Rule>, packet: &Packet) -> String {
    let family = Family::of_addr(packet.src);
    let v = |f: Family| format!("IPv{}", f.number());
    match m {
        Match::Nfproto(f) => format!("ipVersion {}: the packet is {}", f.number(), v(family)),
        Match::L4proto {
            proto,
            negate: false,
        } => format!(
            "protocol {}: the packet is {}",
            protocol_name(*proto),
            protocol_name(packet.proto)
        ),
        Match::L4proto {
            proto,
            negate: true,
        } => format!("notProtocol {}: the packet is that", protocol_name(*proto)),
        Match::Icmp {
            family: f,
            types,
            code,
            negate,
        } => {
            let want = match code {
                Some(c) => format!("type {} code {c}", list(types)),
                None => format!("type {}", list(types)),
            };
            let field = if *negate { "notICMP" } else { "icmp" };
            if family != *f || packet.proto != f.icmp_protocol() {
                format!(
                    "{field} {want} (ICMP of {}): the packet is {} {}",
                    v(*f),
                    v(family),
                    protocol_name(packet.proto)
                )
            } else {
                format!(
                    "{field} {want}: the packet is type {} code {}",
                    packet.icmp_type, packet.icmp_code
                )
            }
        }
        Match::Ports {
            side,
            ranges,
            negate,
        } => {
            let field = format!("{}.{}", side_word(*side), ports_word(*negate));
            let ports: Vec<String> = ranges
                .iter()
                .map(|(lo, hi)| match lo == hi {
                    true => lo.to_string(),
                    false => format!("{lo}:{hi}"),
                })
                .collect();
            match port_of(packet, *side) {
                None => format!(
                    "{field} [{}]: a {} packet has no ports",
                    ports.join(", "),
                    protocol_name(packet.proto)
                ),
                Some(p) if *negate => format!("port {p} is in {field} [{}]", ports.join(", ")),
                Some(p) => format!("port {p} is not in {field} [{}]", ports.join(", ")),
            }
        }
        Match::Addr {
            family: f,
            side,
            set,
            negate,
        } => {
            let addr = addr_of(packet, *side);
            let is_selector = set.starts_with("sel");
            let what = rule
                .map(|r| entity(r, *side))
                .and_then(|e| field_text(e, is_selector, *negate))
                .or_else(|| (ruleset.sets.get(set)).map(|s| s.comment.clone()))
                .unwrap_or_else(|| set.clone());
            let field = format!(
                "{}.{}",
                side_word(*side),
                match (is_selector, *negate) {
                    (true, false) => "selector",
                    (true, true) => "notSelector",
                    (false, false) => "nets",
                    (false, true) => "notNets",
                }
            );
            if family != *f {
                format!("{field} {what} holds no {} address", v(family))
            } else if *negate {
                format!("{addr} matches {field} {what}")
            } else {
                format!("{addr} does not match {field} {what}")
            }
        }
        Match::AddrPort {
            side, set, negate, ..
        } => {
            let named = (ruleset.sets.get(set)).map_or(set.as_str(), |s| s.comment.as_str());
            let addr = addr_of(packet, *side);
            let port = port_of(packet, *side).map_or("no port".to_string(), |p| p.to_string());
            let field = format!("{}.{}", side_word(*side), ports_word(*negate));
            match negate {
                true => format!("{addr} port {port} is the named port in {field} ({named})"),
                false => format!("{addr} port {port} is not the named port in {field} ({named})"),
            }
        }
        Match::CtState(states) => format!("connection state is not one of {states:?}"),
        Match::Iface { iface, name, .. } => format!("interface {iface:?} is not {name}"),
        Match::Mark { .. } => "an earlier policy of the tier passed".to_string(),
        Match::RateOver { rate, .. } => {
            format!("the workload's packet rate limit ({rate}/s) is taken as not exceeded")
        }
        Match::ConnectionsOver { count } => {
            format!("the workload's connection limit ({count}) is taken as not reached")
        }
    }
}

fn list(types: &[u8]) -> String {
    let t: Vec<String> = types.iter().map(ToString::to_string).collect();
    t.join(",")
}

fn side_word(side: Side) -> &'static str {
    match side {
        Side::Source => "source",
        Side::Destination => "destination",
    }
}

fn ports_word(negate: bool) -> &'static str {
    if negate { "notPorts" } else { "ports" }
}

fn entity(rule: &Rule, side: Side) -> &Entity {
    match side {
        Side::Source => &rule.source,
        Side::Destination => &rule.destination,
    }
}

/// The selector or `nets` of the entity an address match came from.
fn field_text(e: &Entity, selector: bool, negate: bool) -> Option<String> {
    let nets = |n: &[ipnet::IpNet]| {
        let n: Vec<String> = n.iter().map(ToString::to_string).collect();
        format!("[{}]", n.join(", "))
    };
    match (selector, negate) {
        (true, false) => e.selector.as_ref().map(|s| format!("`{s}`")),
        (true, true) => e.not_selector.as_ref().map(|s| format!("`{s}`")),
        (false, false) => (!e.nets.is_empty()).then(|| nets(&e.nets)),
        (false, true) => (!e.not_nets.is_empty()).then(|| nets(&e.not_nets)),
    }
}
