//! Failsafe ports, as Calico's Felix has them: traffic to the host on the
//! failsafe inbound ports ([`Config::failsafe_inbound`], Felix's
//! `FailsafeInboundHostPorts`) and from the host to the failsafe outbound
//! ports ([`Config::failsafe_outbound`]) is always allowed on host endpoints,
//! ahead of any host endpoint policy, so that a bad policy cannot cut a host
//! off from SSH, DHCP, BGP, etcd or the Kubernetes API.
//!
//! When the model has a host endpoint on this host, the rules go in the base
//! chains, right before their host endpoint dispatch (a packet on an
//! interface without a host endpoint is accepted there anyway):
//!
//! ```text
//! input           inbound:  l4proto P th dport { ports } [ip saddr @net] accept
//! output          outbound: l4proto P th dport { ports } [ip daddr @net] accept
//! pre-dnat        inbound, as input
//! raw-prerouting  inbound, and replies to outbound: th sport { outbound ports } [ip saddr @net]
//! raw-output      outbound, and replies to inbound: th sport { inbound ports } [ip daddr @net]
//! ```
//!
//! The untracked stage runs before conntrack, so it accepts the replies of
//! failsafe connections too (Felix does the same in its raw table): else
//! untracked policy could drop them, or leave half a connection untracked.
//! An accept there leaves the packet tracked; the later stages' failsafe
//! rules (or `ct state established`) let it through. Forwarded traffic
//! (`applyOnForward`) gets no failsafe rules, as in Calico.

use std::collections::BTreeMap;

use api::{Protocol, resources::felix::ProtoPort};
use ipnet::IpNet;

use crate::ir::{Family, Match, Rule, Side, Verdict};
use crate::model::Config;
use crate::sets::SetRegistry;

/// Calico's `FailsafeInboundHostPorts` default (SSH, DHCP client, BGP,
/// etcd, Typha, the Kubernetes API, ...).
pub const DEFAULT_INBOUND: [(Protocol, u16); 9] = [
    (Protocol::Tcp, 22),
    (Protocol::Udp, 68),
    (Protocol::Tcp, 179),
    (Protocol::Tcp, 2379),
    (Protocol::Tcp, 2380),
    (Protocol::Tcp, 5473),
    (Protocol::Tcp, 6443),
    (Protocol::Tcp, 6666),
    (Protocol::Tcp, 6667),
];

/// Calico's `FailsafeOutboundHostPorts` default (DNS, DHCP server, BGP,
/// etcd, Typha, the Kubernetes API, ...).
pub const DEFAULT_OUTBOUND: [(Protocol, u16); 9] = [
    (Protocol::Udp, 53),
    (Protocol::Udp, 67),
    (Protocol::Tcp, 179),
    (Protocol::Tcp, 2379),
    (Protocol::Tcp, 2380),
    (Protocol::Tcp, 5473),
    (Protocol::Tcp, 6443),
    (Protocol::Tcp, 6666),
    (Protocol::Tcp, 6667),
];

/// A failsafe port open to any address.
pub fn proto_port(protocol: Protocol, port: u16) -> ProtoPort {
    ProtoPort {
        protocol,
        port,
        net: None,
    }
}

/// Which list of failsafe ports a rule reads.
#[derive(Debug, Clone, Copy)]
enum List {
    Inbound,
    Outbound,
}

/// The base chains failsafe rules go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Input,
    Output,
    PreDnat,
    RawPrerouting,
    RawOutput,
}

impl Place {
    /// The place of the base chain of this name, if it gets failsafe rules.
    pub fn of_chain(name: &str) -> Option<Place> {
        Some(match name {
            "input" => Place::Input,
            "output" => Place::Output,
            "pre-dnat" => Place::PreDnat,
            "raw-prerouting" => Place::RawPrerouting,
            "raw-output" => Place::RawOutput,
            _ => return None,
        })
    }

    /// The lists this place reads, each with the side of the packet its
    /// ports are on, the side the remote `net` is on, and what for.
    fn lists(self) -> &'static [(List, Side, Side, &'static str)] {
        use Side::{Destination as Dst, Source as Src};
        const INBOUND: (List, Side, Side, &str) = (List::Inbound, Dst, Src, "failsafe inbound");
        const OUTBOUND: (List, Side, Side, &str) = (List::Outbound, Dst, Dst, "failsafe outbound");
        match self {
            Place::Input | Place::PreDnat => &[INBOUND],
            Place::Output => &[OUTBOUND],
            Place::RawPrerouting => &[
                INBOUND,
                (List::Outbound, Src, Src, "reply to failsafe outbound"),
            ],
            Place::RawOutput => &[
                OUTBOUND,
                (List::Inbound, Src, Dst, "reply to failsafe inbound"),
            ],
        }
    }
}

/// The failsafe ports of one protocol: those open to all, and the nets of
/// each other port.
struct Ports {
    protocol: Protocol,
    open: Vec<u16>,
    netted: BTreeMap<u16, Vec<IpNet>>,
}

/// The failsafe rules of a place, each accepting; the `net`s of the ports
/// become sets of `sets`.
pub fn rules(config: &Config, place: Place, sets: &mut SetRegistry<'_>) -> Vec<Rule> {
    let mut out = Vec::new();
    for &(list, port_side, net_side, what) in place.lists() {
        let ports = match list {
            List::Inbound => &config.failsafe_inbound,
            List::Outbound => &config.failsafe_outbound,
        };
        let mut by_proto: BTreeMap<u8, Ports> = BTreeMap::new();
        for p in ports {
            let entry = by_proto
                .entry(p.protocol.number())
                .or_insert_with(|| Ports {
                    protocol: p.protocol,
                    open: Vec::new(),
                    netted: BTreeMap::new(),
                });
            match p.net {
                None => entry.open.push(p.port),
                Some(net) => entry.netted.entry(p.port).or_default().push(net.network()),
            }
        }
        for (number, ports) in by_proto {
            let Ports {
                protocol,
                mut open,
                netted,
            } = ports;
            let l4 = Match::L4proto {
                proto: number,
                negate: false,
            };
            let port = |ranges| Match::Ports {
                side: port_side,
                ranges,
                negate: false,
            };
            let comment = format!("{what} {protocol}");
            open.sort_unstable();
            open.dedup();
            if !open.is_empty() {
                let ranges = open.iter().map(|&p| (p, p)).collect();
                out.push(
                    Rule::new(vec![l4.clone(), port(ranges)], Verdict::Accept)
                        .comment(comment.clone()),
                );
            }
            for (p, nets) in netted.into_iter().filter(|(p, _)| !open.contains(p)) {
                for family in Family::BOTH {
                    let Some(set) = sets.nets(&nets, family) else {
                        continue;
                    };
                    let addr = Match::Addr {
                        family,
                        side: net_side,
                        set,
                        negate: false,
                    };
                    out.push(
                        Rule::new(vec![l4.clone(), port(vec![(p, p)]), addr], Verdict::Accept)
                            .comment(comment.clone()),
                    );
                }
            }
        }
    }
    out
}
