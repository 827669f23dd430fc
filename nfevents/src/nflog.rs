//! NFLOG (nfnetlink_log): the requests that bind a socket to a log group,
//! and the packets the kernel sends for `log group N` rules, decoded into
//! [`Logged`]: the rule's prefix, the interfaces, the packet's 5-tuple and
//! the group's sequence number (gaps in it are packets the kernel dropped
//! because the socket was full).

use crate::packet::{self, Headers};
use crate::wire::{Error, Message, NLM_F_ACK, NLM_F_REQUEST, Request};

/// The nfnetlink subsystem of NFLOG.
pub const SUBSYS_ULOG: u8 = 4;
const MSG_PACKET: u8 = 0;
const MSG_CONFIG: u8 = 1;

// Packet attributes (linux/netfilter/nfnetlink_log.h).
const NFULA_PACKET_HDR: u16 = 1;
const NFULA_MARK: u16 = 2;
const NFULA_TIMESTAMP: u16 = 3;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_IFINDEX_OUTDEV: u16 = 5;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NFULA_SEQ: u16 = 12;

// Configuration attributes and values.
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_NLBUFSIZ: u16 = 3;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULA_CFG_FLAGS: u16 = 6;
const CMD_BIND: u8 = 1;
const CMD_UNBIND: u8 = 2;
const COPY_PACKET: u8 = 2;
const FLAG_SEQ: u16 = 1;

/// How the group is to deliver packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    pub group: u16,
    /// Bytes of each packet copied (headers are enough: 128).
    pub copy_range: u32,
    /// Packets the kernel batches into one netlink message, and the
    /// longest it waits to fill a batch, in 1/100 s: fewer wakeups under
    /// load, a bounded delay when idle.
    pub qthreshold: u32,
    pub timeout_centis: u32,
    /// The kernel's per-instance buffer, in bytes.
    pub buffer: u32,
}

impl GroupConfig {
    pub fn new(group: u16) -> Self {
        GroupConfig {
            group,
            copy_range: 128,
            qthreshold: 32,
            timeout_centis: 10,
            buffer: 128 * 1024,
        }
    }
}

fn config(group: u16, seq: u32) -> Request {
    Request::new(
        u16::from(SUBSYS_ULOG) << 8 | u16::from(MSG_CONFIG),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        libc::AF_UNSPEC as u8,
        group,
    )
}

/// The requests that bind a socket to the group and set how it delivers
/// (each is acknowledged). A group has one listener per network namespace:
/// binding a taken one fails with EBUSY.
pub fn bind_requests(c: &GroupConfig, seq: u32) -> Vec<Vec<u8>> {
    let mut mode = c.copy_range.to_be_bytes().to_vec();
    mode.extend([COPY_PACKET, 0]);
    vec![
        config(c.group, seq)
            .attr(NFULA_CFG_CMD, &[CMD_BIND])
            .finish(),
        config(c.group, seq + 1)
            .attr(NFULA_CFG_MODE, &mode)
            .attr(NFULA_CFG_QTHRESH, &c.qthreshold.to_be_bytes())
            .attr(NFULA_CFG_TIMEOUT, &c.timeout_centis.to_be_bytes())
            .attr(NFULA_CFG_NLBUFSIZ, &c.buffer.to_be_bytes())
            .attr(NFULA_CFG_FLAGS, &FLAG_SEQ.to_be_bytes())
            .finish(),
    ]
}

/// The request that unbinds the group.
pub fn unbind_request(group: u16, seq: u32) -> Vec<u8> {
    config(group, seq)
        .attr(NFULA_CFG_CMD, &[CMD_UNBIND])
        .finish()
}

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub group: u16,
    /// The `log prefix` of the rule that logged it.
    pub prefix: String,
    /// The netfilter hook (0 prerouting, 1 input, 2 forward, 3 output, 4
    /// postrouting).
    pub hook: u8,
    pub iif: Option<u32>,
    pub oif: Option<u32>,
    pub mark: u32,
    /// When the kernel logged it (absent on output before it is stamped),
    /// as seconds and microseconds since the epoch.
    pub timestamp: Option<(u64, u64)>,
    /// The group's sequence number.
    pub seq: Option<u32>,
    /// The packet's headers.
    pub headers: Headers,
}

/// Whether a message is an NFLOG packet.
pub fn is_packet(m: &Message<'_>) -> bool {
    m.subsystem() == (SUBSYS_ULOG, MSG_PACKET)
}

/// Decodes an NFLOG packet message.
pub fn decode(m: &Message<'_>) -> Result<Logged, Error> {
    let (_, group, attrs) = m.netfilter()?;
    let mut out = Logged {
        group,
        prefix: String::new(),
        hook: 0,
        iif: None,
        oif: None,
        mark: 0,
        timestamp: None,
        seq: None,
        headers: Headers {
            tuple: packet::Tuple {
                proto: 0,
                src: std::net::Ipv4Addr::UNSPECIFIED.into(),
                dst: std::net::Ipv4Addr::UNSPECIFIED.into(),
                sport: 0,
                dport: 0,
            },
            len: 0,
            tcp_flags: None,
        },
    };
    let mut payload = None;
    attrs.each(|a| {
        match a.kind {
            NFULA_PACKET_HDR => {
                // hw_protocol (be16), hook (u8), pad.
                out.hook = *a.value.get(2).ok_or(Error::Truncated {
                    offset: a.offset,
                    what: "NFLOG packet header",
                    len: 4,
                    available: a.value.len(),
                })?;
            }
            NFULA_MARK => out.mark = a.be32("NFLOG mark")?,
            NFULA_TIMESTAMP => {
                let sec = a.be64("NFLOG timestamp")?;
                let usec = a
                    .value
                    .get(8..16)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or(Error::Truncated {
                        offset: a.offset,
                        what: "NFLOG timestamp",
                        len: 16,
                        available: a.value.len(),
                    })?;
                out.timestamp = Some((sec, usec));
            }
            NFULA_IFINDEX_INDEV => out.iif = Some(a.be32("NFLOG input interface")?),
            NFULA_IFINDEX_OUTDEV => out.oif = Some(a.be32("NFLOG output interface")?),
            NFULA_PREFIX => out.prefix = a.string(),
            NFULA_SEQ => out.seq = Some(a.be32("NFLOG sequence number")?),
            NFULA_PAYLOAD => payload = Some((a.offset + 4, a.value)),
            _ => {}
        }
        Ok(())
    })?;
    let (offset, payload) = payload.ok_or(Error::Invalid {
        offset: m.offset,
        what: "NFLOG packet without a payload",
    })?;
    out.headers = packet::parse(payload).map_err(|e| match e {
        // Offsets into the payload become offsets into the buffer.
        Error::Truncated {
            offset: o,
            what,
            len,
            available,
        } => Error::Truncated {
            offset: offset + o,
            what,
            len,
            available,
        },
        Error::Invalid { offset: o, what } => Error::Invalid {
            offset: offset + o,
            what,
        },
    })?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::packet::tests::tcp_syn_v4;
    use crate::wire::messages;

    /// An NFLOG packet message as the kernel sends one.
    pub(crate) fn packet_message(group: u16, prefix: &str, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut prefix = prefix.as_bytes().to_vec();
        prefix.push(0);
        Request::new(u16::from(SUBSYS_ULOG) << 8, 0, 0, 2, group)
            .attr(NFULA_PACKET_HDR, &[0x08, 0x00, 2, 0])
            .attr(NFULA_MARK, &0x10u32.to_be_bytes())
            .attr(NFULA_IFINDEX_INDEV, &7u32.to_be_bytes())
            .attr(NFULA_PREFIX, &prefix)
            .attr(NFULA_SEQ, &seq.to_be_bytes())
            .attr(NFULA_PAYLOAD, payload)
            .finish()
    }

    #[test]
    fn a_logged_packet_decodes_with_its_prefix_interfaces_and_tuple() {
        let bytes = packet_message(
            5,
            "cali:A:3",
            41,
            &tcp_syn_v4([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80),
        );
        let m = messages(&bytes).next().unwrap().unwrap();
        assert!(is_packet(&m));
        let logged = decode(&m).unwrap();
        assert_eq!(logged.prefix, "cali:A:3");
        assert_eq!(
            (logged.group, logged.hook, logged.iif, logged.oif),
            (5, 2, Some(7), None)
        );
        assert_eq!((logged.mark, logged.seq), (0x10, Some(41)));
        assert_eq!(logged.headers.tuple.dport, 80);
    }

    #[test]
    fn a_truncated_payload_is_an_error_at_its_byte_in_the_buffer() {
        let syn = tcp_syn_v4([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80);
        let bytes = packet_message(5, "p", 1, &syn[..22]);
        let m = messages(&bytes).next().unwrap().unwrap();
        let err = decode(&m).unwrap_err();
        let Error::Truncated { offset, what, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(what, "transport header");
        // The payload is the last attribute; its transport header starts
        // 20 bytes into it.
        assert_eq!(offset, bytes.len() - 24 + 20);
    }

    #[test]
    fn bind_requests_name_the_group_and_ask_for_sequence_numbers() {
        let reqs = bind_requests(&GroupConfig::new(9), 100);
        assert_eq!(reqs.len(), 2);
        let m = messages(&reqs[1]).next().unwrap().unwrap();
        let (_, group, attrs) = m.netfilter().unwrap();
        assert_eq!(group, 9);
        let flags = attrs
            .iter()
            .flatten()
            .find(|a| a.kind == NFULA_CFG_FLAGS)
            .unwrap();
        assert_eq!(flags.be16("flags").unwrap(), FLAG_SEQ);
    }
}
