//! The kernel's neighbour tables (ARP, NDP), watched so that a full one is
//! named instead of failing silently. They are one for the whole machine,
//! whatever the namespace, capped by `net.ipv4.neigh.default.gc_thresh3`
//! (and its IPv6 twin; 1,024 by default): past it a new neighbour fails,
//! ping says ENOBUFS, and BGP sessions time out one after another.
//!
//! ```text
//! RTM_GETNEIGHTBL dump ─read()─▶ [Table] ─problem(before, now) (pure)─▶ the words
//!   (entries, gc_thresh3, table_fulls: global counters, seen from any namespace)
//! ```
//!
//! The words go into a log line when they change, and into the reason of
//! every BGP session that is down in this node's status.

use futures::StreamExt;
use rtnetlink::packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::neighbour_table::{NeighbourTableAttribute, NeighbourTableMessage};

/// One family's table as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub ipv6: bool,
    /// Entries now, in every namespace.
    pub entries: u32,
    pub gc_thresh3: u32,
    /// How often a new entry was refused, since boot.
    pub table_fulls: u64,
}

impl Table {
    fn sysctl(&self) -> &'static str {
        if self.ipv6 {
            "net.ipv6.neigh.default.gc_thresh3"
        } else {
            "net.ipv4.neigh.default.gc_thresh3"
        }
    }
}

/// What is wrong with the tables `now`, given the reading `before` (pure):
/// a table that refused entries since then, or one over nine tenths full.
pub fn problem(before: &[Table], now: &[Table]) -> Option<String> {
    now.iter().find_map(|t| {
        let refused = before
            .iter()
            .find(|b| b.ipv6 == t.ipv6)
            .map_or(0, |b| t.table_fulls.saturating_sub(b.table_fulls));
        let family = if t.ipv6 { "NDP" } else { "ARP" };
        if refused > 0 {
            Some(format!(
                "the kernel's {family} table is full ({} entries for every namespace; {} = {}): \
                 it refused new neighbours {refused} times, so traffic and BGP sessions fail; raise {}",
                t.entries,
                t.sysctl(),
                t.gc_thresh3,
                t.sysctl()
            ))
        } else if u64::from(t.entries) * 10 >= u64::from(t.gc_thresh3) * 9 {
            Some(format!(
                "the kernel's {family} table is nearly full ({} entries for every namespace; {} = {}): raise {}",
                t.entries,
                t.sysctl(),
                t.gc_thresh3,
                t.sysctl()
            ))
        } else {
            None
        }
    })
}

/// The tables' readings from `message`, if it is a whole table's (not one
/// device's parameters).
fn table_of(message: &NeighbourTableMessage) -> Option<Table> {
    let mut name = None;
    let (mut entries, mut thresh3, mut fulls) = (None, None, None);
    for a in &message.attributes {
        match a {
            NeighbourTableAttribute::Name(n) => name = Some(n.as_str()),
            NeighbourTableAttribute::Threshold3(t) => thresh3 = Some(*t),
            NeighbourTableAttribute::Config(c) => entries = Some(c.entries),
            NeighbourTableAttribute::Stats(s) => fulls = Some(s.table_fulls),
            _ => {}
        }
    }
    let ipv6 = match name? {
        "arp_cache" => false,
        "ndisc_cache" => true,
        _ => return None,
    };
    Some(Table {
        ipv6,
        entries: entries?,
        gc_thresh3: thresh3?,
        table_fulls: fulls?,
    })
}

/// Reads the ARP and NDP tables through `handle`.
pub async fn read(handle: &mut rtnetlink::Handle) -> Result<Vec<Table>, rtnetlink::Error> {
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNeighbourTable(
        NeighbourTableMessage::default(),
    ));
    req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut answers = handle.request(req)?;
    let mut out = Vec::new();
    while let Some(m) = answers.next().await {
        match m.payload {
            rtnetlink::packet_core::NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewNeighbourTable(t),
            ) => out.extend(table_of(&t)),
            rtnetlink::packet_core::NetlinkPayload::Error(e) => {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(entries: u32, fulls: u64) -> Table {
        Table {
            ipv6: false,
            entries,
            gc_thresh3: 1024,
            table_fulls: fulls,
        }
    }

    #[test]
    fn a_table_that_refused_entries_since_the_last_reading_is_named_with_its_sysctl() {
        let words = problem(&[v4(1000, 16)], &[v4(1024, 19)]).unwrap();
        assert!(words.contains("ARP table is full"), "{words}");
        assert!(
            words.contains("net.ipv4.neigh.default.gc_thresh3 = 1024"),
            "{words}"
        );
        assert!(words.contains("3 times"), "{words}");
        // Refusals from before the first reading are not news.
        assert_eq!(problem(&[v4(10, 16)], &[v4(10, 16)]), None);
        // The first reading: only how full it is counts.
        assert_eq!(problem(&[], &[v4(10, 16)]), None);
        assert!(
            problem(&[], &[v4(930, 16)])
                .unwrap()
                .contains("nearly full")
        );
    }
}
