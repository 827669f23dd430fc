//! Conntrack (ctnetlink): connection events and dumps decoded into
//! [`Conn`]: its ID, both tuples, packet and byte counters each way (with
//! `net.netfilter.nf_conntrack_acct=1`) and start and stop times (with
//! `nf_conntrack_timestamp=1`); and the request that dumps the table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::Tuple;
use crate::wire::{Attrs, Error, Message, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, Request};

/// The nfnetlink subsystem of ctnetlink.
pub const SUBSYS_CTNETLINK: u8 = 1;
const MSG_NEW: u8 = 0;
const MSG_GET: u8 = 1;
const MSG_DELETE: u8 = 2;
/// `NLM_F_CREATE`: a NEW message announces a new connection.
const NLM_F_CREATE: u16 = 0x400;

/// Multicast groups: new, updated and destroyed connections.
pub const GROUP_NEW: u32 = 1;
pub const GROUP_UPDATE: u32 = 2;
pub const GROUP_DESTROY: u32 = 3;

// linux/netfilter/nfnetlink_conntrack.h
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_MARK: u16 = 8;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
const CTA_TIMESTAMP: u16 = 20;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_TIMESTAMP_START: u16 = 1;
const CTA_TIMESTAMP_STOP: u16 = 2;

/// What happened to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    New,
    /// An update, or a connection listed by a dump.
    Update,
    Destroy,
}

/// Packets and bytes one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// One connection, as an event or a dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    pub event: Event,
    pub id: Option<u32>,
    /// The original direction (the connection's initiator to its peer).
    pub orig: Tuple,
    pub reply: Option<Tuple>,
    /// Original and reply direction counters.
    pub orig_counters: Option<Counters>,
    pub reply_counters: Option<Counters>,
    /// Start and stop, in nanoseconds since the epoch.
    pub start_ns: Option<u64>,
    pub stop_ns: Option<u64>,
    pub mark: Option<u32>,
    pub status: Option<u32>,
}

/// Whether a message is a ctnetlink connection message.
pub fn is_conn(m: &Message<'_>) -> bool {
    let (subsys, msg) = m.subsystem();
    subsys == SUBSYS_CTNETLINK && (msg == MSG_NEW || msg == MSG_DELETE)
}

/// The request that dumps every connection (of both families).
pub fn dump_request(seq: u32) -> Vec<u8> {
    Request::new(
        u16::from(SUBSYS_CTNETLINK) << 8 | u16::from(MSG_GET),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        libc::AF_UNSPEC as u8,
        0,
    )
    .finish()
}

/// The request that deletes the connection whose original tuple is
/// `orig` (conntrack then reports its destruction, counters included).
pub fn delete_request(seq: u32, orig: &Tuple) -> Vec<u8> {
    let (family, src_kind, dst_kind, src, dst) = match (orig.src, orig.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (
            libc::AF_INET,
            CTA_IP_V4_SRC,
            CTA_IP_V4_DST,
            s.octets().to_vec(),
            d.octets().to_vec(),
        ),
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets().to_vec(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets().to_vec(),
            };
            (libc::AF_INET6, CTA_IP_V6_SRC, CTA_IP_V6_DST, v6(s), v6(d))
        }
    };
    let mut r = Request::new(
        u16::from(SUBSYS_CTNETLINK) << 8 | u16::from(MSG_DELETE),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family as u8,
        0,
    )
    .nested(CTA_TUPLE_ORIG)
    .nested(CTA_TUPLE_IP)
    .attr(src_kind, &src)
    .attr(dst_kind, &dst)
    .end_nested()
    .nested(CTA_TUPLE_PROTO)
    .attr(CTA_PROTO_NUM, &[orig.proto]);
    r = if orig.has_ports() {
        r.attr(CTA_PROTO_SRC_PORT, &orig.sport.to_be_bytes())
            .attr(CTA_PROTO_DST_PORT, &orig.dport.to_be_bytes())
    } else {
        r
    };
    r.end_nested().end_nested().finish()
}

fn tuple(attrs: Attrs<'_>, offset: usize) -> Result<Tuple, Error> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, 0, 0);
    attrs.each(|a| {
        match a.kind {
            CTA_TUPLE_IP => a.nested().each(|ip| {
                let v4 =
                    |what| -> Result<IpAddr, Error> { Ok(Ipv4Addr::from(ip.be32(what)?).into()) };
                let v6 = |what| -> Result<IpAddr, Error> {
                    let b: [u8; 16] = ip.value.get(..16).and_then(|b| b.try_into().ok()).ok_or(
                        Error::Truncated {
                            offset: ip.offset,
                            what,
                            len: 16,
                            available: ip.value.len(),
                        },
                    )?;
                    Ok(Ipv6Addr::from(b).into())
                };
                match ip.kind {
                    CTA_IP_V4_SRC => src = Some(v4("conntrack IPv4 source")?),
                    CTA_IP_V4_DST => dst = Some(v4("conntrack IPv4 destination")?),
                    CTA_IP_V6_SRC => src = Some(v6("conntrack IPv6 source")?),
                    CTA_IP_V6_DST => dst = Some(v6("conntrack IPv6 destination")?),
                    _ => {}
                }
                Ok(())
            })?,
            CTA_TUPLE_PROTO => a.nested().each(|p| {
                match p.kind {
                    CTA_PROTO_NUM => proto = Some(p.u8("conntrack protocol")?),
                    CTA_PROTO_SRC_PORT => sport = p.be16("conntrack source port")?,
                    CTA_PROTO_DST_PORT => dport = p.be16("conntrack destination port")?,
                    CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                        sport = u16::from(p.u8("conntrack ICMP type")?)
                    }
                    CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                        dport = u16::from(p.u8("conntrack ICMP code")?)
                    }
                    _ => {}
                }
                Ok(())
            })?,
            _ => {}
        }
        Ok(())
    })?;
    match (src, dst, proto) {
        (Some(src), Some(dst), Some(proto)) => Ok(Tuple {
            proto,
            src,
            dst,
            sport,
            dport,
        }),
        _ => Err(Error::Invalid {
            offset,
            what: "conntrack tuple without addresses or protocol",
        }),
    }
}

fn counters(attrs: Attrs<'_>) -> Result<Counters, Error> {
    let mut c = Counters::default();
    attrs.each(|a| {
        match a.kind {
            CTA_COUNTERS_PACKETS => c.packets = a.be64("conntrack packet counter")?,
            CTA_COUNTERS_BYTES => c.bytes = a.be64("conntrack byte counter")?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(c)
}

/// Decodes a connection message (an event or a dump's reply).
pub fn decode(m: &Message<'_>) -> Result<Conn, Error> {
    let (_, msg) = m.subsystem();
    let event = match msg {
        MSG_DELETE => Event::Destroy,
        _ if m.flags & NLM_F_CREATE != 0 => Event::New,
        _ => Event::Update,
    };
    let (_, _, attrs) = m.netfilter()?;
    let mut orig = None;
    let mut conn = Conn {
        event,
        id: None,
        orig: Tuple {
            proto: 0,
            src: Ipv4Addr::UNSPECIFIED.into(),
            dst: Ipv4Addr::UNSPECIFIED.into(),
            sport: 0,
            dport: 0,
        },
        reply: None,
        orig_counters: None,
        reply_counters: None,
        start_ns: None,
        stop_ns: None,
        mark: None,
        status: None,
    };
    attrs.each(|a| {
        match a.kind {
            CTA_TUPLE_ORIG => orig = Some(tuple(a.nested(), a.offset)?),
            CTA_TUPLE_REPLY => conn.reply = Some(tuple(a.nested(), a.offset)?),
            CTA_STATUS => conn.status = Some(a.be32("conntrack status")?),
            CTA_MARK => conn.mark = Some(a.be32("conntrack mark")?),
            CTA_COUNTERS_ORIG => conn.orig_counters = Some(counters(a.nested())?),
            CTA_COUNTERS_REPLY => conn.reply_counters = Some(counters(a.nested())?),
            CTA_ID => conn.id = Some(a.be32("conntrack ID")?),
            CTA_TIMESTAMP => a.nested().each(|t| {
                match t.kind {
                    CTA_TIMESTAMP_START => conn.start_ns = Some(t.be64("conntrack start")?),
                    CTA_TIMESTAMP_STOP => conn.stop_ns = Some(t.be64("conntrack stop")?),
                    _ => {}
                }
                Ok(())
            })?,
            _ => {}
        }
        Ok(())
    })?;
    conn.orig = orig.ok_or(Error::Invalid {
        offset: m.offset,
        what: "conntrack message without its original tuple",
    })?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::TCP;
    use crate::wire::messages;

    fn with_tuple(
        r: Request,
        kind: u16,
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
    ) -> Request {
        r.nested(kind)
            .nested(CTA_TUPLE_IP)
            .attr(CTA_IP_V4_SRC, &src)
            .attr(CTA_IP_V4_DST, &dst)
            .end_nested()
            .nested(CTA_TUPLE_PROTO)
            .attr(CTA_PROTO_NUM, &[TCP])
            .attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes())
            .attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes())
            .end_nested()
            .end_nested()
    }

    #[test]
    fn a_destroy_event_decodes_with_both_tuples_counters_and_times() {
        let r = Request::new(
            u16::from(SUBSYS_CTNETLINK) << 8 | u16::from(MSG_DELETE),
            0,
            0,
            2,
            0,
        );
        let r = with_tuple(r, CTA_TUPLE_ORIG, [10, 0, 0, 1], [10, 0, 0, 2], 40000, 80);
        let r = with_tuple(r, CTA_TUPLE_REPLY, [10, 0, 0, 2], [10, 0, 0, 1], 80, 40000);
        let bytes = r
            .nested(CTA_COUNTERS_ORIG)
            .attr(CTA_COUNTERS_PACKETS, &6u64.to_be_bytes())
            .attr(CTA_COUNTERS_BYTES, &400u64.to_be_bytes())
            .end_nested()
            .nested(CTA_COUNTERS_REPLY)
            .attr(CTA_COUNTERS_PACKETS, &4u64.to_be_bytes())
            .attr(CTA_COUNTERS_BYTES, &9000u64.to_be_bytes())
            .end_nested()
            .attr(CTA_ID, &77u32.to_be_bytes())
            .nested(CTA_TIMESTAMP)
            .attr(CTA_TIMESTAMP_START, &1_000u64.to_be_bytes())
            .attr(CTA_TIMESTAMP_STOP, &2_000u64.to_be_bytes())
            .end_nested()
            .finish();
        let m = messages(&bytes).next().unwrap().unwrap();
        assert!(is_conn(&m));
        let c = decode(&m).unwrap();
        assert_eq!(c.event, Event::Destroy);
        assert_eq!(c.id, Some(77));
        assert_eq!((c.orig.sport, c.orig.dport), (40000, 80));
        assert_eq!(c.reply, Some(c.orig.reversed()));
        assert_eq!(
            c.orig_counters,
            Some(Counters {
                packets: 6,
                bytes: 400
            })
        );
        assert_eq!(c.reply_counters.unwrap().bytes, 9000);
        assert_eq!((c.start_ns, c.stop_ns), (Some(1_000), Some(2_000)));
    }

    #[test]
    fn a_delete_request_carries_the_original_tuple() {
        let orig = Tuple {
            proto: TCP,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            sport: 40000,
            dport: 80,
        };
        let bytes = delete_request(3, &orig);
        let m = messages(&bytes).next().unwrap().unwrap();
        // It reads back as a destruction of that connection.
        let c = decode(&m).unwrap();
        assert_eq!((c.event, c.orig), (Event::Destroy, orig));
    }

    #[test]
    fn a_message_without_its_tuple_is_an_error() {
        let bytes = Request::new(u16::from(SUBSYS_CTNETLINK) << 8, NLM_F_CREATE, 0, 2, 0)
            .attr(CTA_ID, &1u32.to_be_bytes())
            .finish();
        let m = messages(&bytes).next().unwrap().unwrap();
        assert!(
            decode(&m)
                .unwrap_err()
                .to_string()
                .contains("original tuple")
        );
    }
}
