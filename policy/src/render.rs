//! [`render`]: the IR as nft text that `nft -f` loads: one `table inet calico
//! { ... }` block with its sets, then its maps, then its chains, each group in
//! name order, indented with tabs as `nft list` indents. Every rule gets a
//! `counter`; the first rule of each chain carries the chain's [stamp] in its
//! comment. Set elements are written one per line, so that a golden-file
//! diff shows membership changes line by line.

use std::fmt::Write;

use ipnet::IpNet;

use crate::diff::Changes;
use crate::ir::{
    Chain, ChainType, CtState, Family, Hook, Iface, Match, Priority, Rule, Ruleset, Set,
    SetElement, SetKey, Side, Statement, TABLE, Verdict, VerdictMap,
};
use crate::sets::comment;
use crate::stamp;

/// The ruleset as an nft script defining table `inet calico`.
pub fn render(ruleset: &Ruleset) -> String {
    let mut out = format!("table inet {TABLE} {{\n");
    let mut blocks = Vec::new();
    for (name, set) in &ruleset.sets {
        blocks.push(render_set(name, set));
    }
    for (name, map) in &ruleset.maps {
        blocks.push(render_map(name, map));
    }
    for (name, chain) in &ruleset.chains {
        blocks.push(render_chain(name, chain));
    }
    out.push_str(&blocks.join("\n"));
    out.push_str("}\n");
    out
}

/// The changes as one nft script of incremental commands, which `nft -f`
/// carries out as one transaction. The order keeps every reference valid at
/// every step:
///
/// 1. the table (a no-op when it exists), new chains declared empty and new sets;
/// 2. element removals, then element additions, on kept sets and maps
///    (removals first, so that a changed interval never overlaps its old self);
/// 3. replaced and removed chains flushed, so nothing refers to what goes next;
/// 4. removed maps, then removed chains, then removed sets deleted;
/// 5. recreated chains and sets added back, then new and recreated maps (whose
///    elements jump to chains that now all exist);
/// 6. the rules of new and replaced chains.
pub fn render_changes(changes: &Changes) -> String {
    let mut out = format!("add table inet {TABLE}\n");
    let declare = |out: &mut String, name: &str, chain: &Chain| match base_spec(chain) {
        Some(spec) => {
            let _ = writeln!(out, "add chain inet {TABLE} {name} {{ {spec} }}");
        }
        None => {
            let _ = writeln!(out, "add chain inet {TABLE} {name}");
        }
    };
    let block = |out: &mut String, body: String| {
        let _ = write!(out, "table inet {TABLE} {{\n{body}}}\n");
    };
    for (name, chain) in &changes.add_chains {
        if !changes.remove_chains.contains(name) {
            declare(&mut out, name, chain);
        }
    }
    for (name, set) in &changes.add_sets {
        if !changes.remove_sets.contains(name) {
            block(&mut out, render_set(name, set));
        }
    }
    for (name, change) in &changes.set_elements {
        let items = |es: &[SetElement]| es.iter().map(element).collect::<Vec<_>>().join(", ");
        if !change.remove.is_empty() {
            let _ = writeln!(
                out,
                "delete element inet {TABLE} {name} {{ {} }}",
                items(&change.remove)
            );
        }
        if !change.add.is_empty() {
            let _ = writeln!(
                out,
                "add element inet {TABLE} {name} {{ {} }}",
                items(&change.add)
            );
        }
    }
    for (name, change) in &changes.map_elements {
        if !change.remove.is_empty() {
            let keys: Vec<String> = change
                .remove
                .iter()
                .map(|(k, _)| format!("\"{k}\""))
                .collect();
            let _ = writeln!(
                out,
                "delete element inet {TABLE} {name} {{ {} }}",
                keys.join(", ")
            );
        }
        if !change.add.is_empty() {
            let items: Vec<String> = change
                .add
                .iter()
                .map(|(k, v)| format!("\"{k}\" : {}", verdict(v)))
                .collect();
            let _ = writeln!(
                out,
                "add element inet {TABLE} {name} {{ {} }}",
                items.join(", ")
            );
        }
    }
    for name in changes.replace_chains.keys().chain(&changes.remove_chains) {
        let _ = writeln!(out, "flush chain inet {TABLE} {name}");
    }
    for name in &changes.remove_maps {
        let _ = writeln!(out, "delete map inet {TABLE} {name}");
    }
    for name in &changes.remove_chains {
        let _ = writeln!(out, "delete chain inet {TABLE} {name}");
    }
    for name in &changes.remove_sets {
        let _ = writeln!(out, "delete set inet {TABLE} {name}");
    }
    for (name, chain) in &changes.add_chains {
        if changes.remove_chains.contains(name) {
            declare(&mut out, name, chain);
        }
    }
    for (name, set) in &changes.add_sets {
        if changes.remove_sets.contains(name) {
            block(&mut out, render_set(name, set));
        }
    }
    for (name, map) in &changes.add_maps {
        block(&mut out, render_map(name, map));
    }
    for (name, chain) in changes.add_chains.iter().chain(&changes.replace_chains) {
        for rule in render_rules(chain) {
            let _ = writeln!(out, "add rule inet {TABLE} {name} {rule}");
        }
    }
    out
}

/// An element list, one element per line.
fn elements(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    format!(
        "\t\telements = {{\n\t\t\t{}\n\t\t}}\n",
        items.join(",\n\t\t\t")
    )
}

fn render_set(name: &str, set: &Set) -> String {
    let key = match set.key {
        SetKey::Net(f) => addr_type(f).to_string(),
        SetKey::NetPort(f) => format!("{} . inet_service", addr_type(f)),
    };
    let items: Vec<String> = set.elements.iter().map(element).collect();
    format!(
        "\tset {name} {{\n\t\ttype {key}\n\t\tflags interval\n\t\tcomment \"{}\"\n{}\t}}\n",
        comment(&set.comment),
        elements(&items)
    )
}

fn render_map(name: &str, map: &VerdictMap) -> String {
    let items: Vec<String> = map
        .elements
        .iter()
        .map(|(iface, v)| format!("\"{iface}\" : {}", verdict(v)))
        .collect();
    format!(
        "\tmap {name} {{\n\t\ttype ifname : verdict\n\t\tcomment \"{}\"\n{}\t}}\n",
        comment(&map.comment),
        elements(&items)
    )
}

/// `type T hook H priority P; policy accept;` for a base chain.
fn base_spec(chain: &Chain) -> Option<String> {
    chain.base.map(|base| {
        let kind = match base.kind {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        };
        let hook = match base.hook {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        };
        let priority = match base.priority {
            Priority::Raw => "raw",
            Priority::Mangle => "mangle",
            Priority::Filter => "filter",
            Priority::SrcNat => "srcnat",
        };
        format!("type {kind} hook {hook} priority {priority}; policy accept;")
    })
}

fn render_chain(name: &str, chain: &Chain) -> String {
    let mut out = format!("\tchain {name} {{\n");
    if let Some(spec) = base_spec(chain) {
        let _ = writeln!(out, "\t\t{spec}");
    }
    for rule in render_rules(chain) {
        let _ = writeln!(out, "\t\t{rule}");
    }
    out.push_str("\t}\n");
    out
}

/// A chain's rules as written, the first one's comment
/// [stamped](crate::stamp).
pub fn render_rules(chain: &Chain) -> Vec<String> {
    let mut lines: Vec<String> = chain.rules.iter().map(render_rule).collect();
    if let Some(first) = chain.rules.first() {
        let stamped = stamp::stamped_comment(first, stamp::hash_rendered(&lines));
        lines[0] = render_rule_as(first, Some(&stamped));
    }
    lines
}

/// One rule as nft writes it: matches, counter, statements, verdict, comment.
pub fn render_rule(rule: &Rule) -> String {
    render_rule_as(rule, rule.comment.as_deref().map(comment).as_deref())
}

/// [`render_rule`] with this comment (already as [`comment`] makes it).
fn render_rule_as(rule: &Rule, comment: Option<&str>) -> String {
    let mut parts: Vec<String> = rule.matches.iter().map(render_match).collect();
    parts.push("counter".to_string());
    parts.extend(rule.statements.iter().map(statement));
    if let Some(v) = &rule.verdict {
        parts.push(verdict(v));
    }
    if let Some(c) = comment {
        parts.push(format!("comment \"{c}\""));
    }
    parts.join(" ")
}

fn addr_type(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    }
}

fn ip_word(f: Family) -> &'static str {
    match f {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

fn side_word(side: Side, addr: bool) -> &'static str {
    match (side, addr) {
        (Side::Source, true) => "saddr",
        (Side::Destination, true) => "daddr",
        (Side::Source, false) => "sport",
        (Side::Destination, false) => "dport",
    }
}

fn op(negate: bool) -> &'static str {
    if negate { "!= " } else { "" }
}

fn net(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

fn element(e: &SetElement) -> String {
    match e {
        SetElement::Net(n) => net(n),
        SetElement::NetPort(n, port) => format!("{} . {port}", net(n)),
    }
}

/// nft's name for an IP protocol number, or the number.
pub fn protocol_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}

/// `a`, or `{ a, b }` when several.
fn list<T: ToString>(items: &[T]) -> String {
    match items {
        [one] => one.to_string(),
        many => format!(
            "{{ {} }}",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn render_match(m: &Match) -> String {
    match m {
        Match::Nfproto(f) => format!(
            "meta nfproto {}",
            match f {
                Family::V4 => "ipv4",
                Family::V6 => "ipv6",
            }
        ),
        Match::L4proto { proto, negate } => {
            format!("meta l4proto {}{}", op(*negate), protocol_name(*proto))
        }
        Match::CtState(states) => {
            let states: Vec<&str> = states
                .iter()
                .map(|s| match s {
                    CtState::Invalid => "invalid",
                    CtState::Established => "established",
                    CtState::Related => "related",
                    CtState::New => "new",
                    CtState::Untracked => "untracked",
                })
                .collect();
            format!("ct state {}", states.join(","))
        }
        Match::Iface {
            iface,
            name,
            negate,
        } => format!("{} {}\"{name}\"", iface_word(*iface), op(*negate)),
        Match::Icmp {
            family,
            types,
            code,
            negate,
        } => {
            let word = match family {
                Family::V4 => "icmp",
                Family::V6 => "icmpv6",
            };
            match (code, negate) {
                (Some(c), false) => format!("{word} type {} {word} code {c}", list(types)),
                (Some(c), true) => {
                    let pairs: Vec<String> = types.iter().map(|t| format!("{t} . {c}")).collect();
                    format!("{word} type . {word} code != {{ {} }}", pairs.join(", "))
                }
                (None, negate) => format!("{word} type {}{}", op(*negate), list(types)),
            }
        }
        Match::Ports {
            side,
            ranges,
            negate,
        } => {
            let items: Vec<String> = ranges
                .iter()
                .map(|(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect();
            format!(
                "th {} {}{}",
                side_word(*side, false),
                op(*negate),
                list(&items)
            )
        }
        Match::Addr {
            family,
            side,
            set,
            negate,
        } => format!(
            "{} {} {}@{set}",
            ip_word(*family),
            side_word(*side, true),
            op(*negate)
        ),
        Match::AddrPort {
            family,
            side,
            set,
            negate,
        } => format!(
            "{} {} . th {} {}@{set}",
            ip_word(*family),
            side_word(*side, true),
            side_word(*side, false),
            op(*negate)
        ),
        Match::Mark { mask, value } => format!("meta mark & {mask:#010x} == {value:#010x}"),
        Match::RateOver { rate, burst } => {
            format!("limit rate over {rate}/second burst {burst} packets")
        }
        Match::ConnectionsOver { count } => format!("ct count over {count}"),
    }
}

fn iface_word(i: Iface) -> &'static str {
    match i {
        Iface::In => "iifname",
        Iface::Out => "oifname",
    }
}

fn statement(s: &Statement) -> String {
    match s {
        Statement::MarkSet(bits) => format!("meta mark set meta mark | {bits:#010x}"),
        Statement::MarkClear(bits) => format!("meta mark set meta mark & {:#010x}", !bits),
        Statement::Log {
            prefix,
            group: None,
        } => format!("log prefix \"{}\"", comment(prefix)),
        Statement::Log {
            prefix,
            group: Some(group),
        } => format!("log prefix \"{}\" group {group}", comment(prefix)),
        Statement::Notrack => "notrack".to_string(),
        Statement::Masquerade => "masquerade".to_string(),
        Statement::Snat(addr) => format!("snat {} to {addr}", ip_word(Family::of_addr(*addr))),
        Statement::DscpSet { family, value } => format!("{} dscp set {value}", ip_word(*family)),
    }
}

fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
        Verdict::Vmap { iface, map } => format!("{} vmap @{map}", iface_word(*iface)),
    }
}
