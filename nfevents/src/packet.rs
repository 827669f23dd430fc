//! The 5-tuple of an IP packet's first bytes (what NFLOG copies): IPv4 or
//! IPv6 (skipping hop-by-hop, routing, destination options and fragment
//! headers), then TCP, UDP, UDP-Lite and SCTP ports or the ICMP type and
//! code. Panic-free: a short or malformed header is an [`Error`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::Error;

/// IP protocol numbers this module reads past the IP header.
pub const ICMP: u8 = 1;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMPV6: u8 = 58;
pub const SCTP: u8 = 132;
pub const UDPLITE: u8 = 136;

/// A connection's identity as a packet shows it, from its sender's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Ports for TCP, UDP, UDP-Lite and SCTP; for ICMP the type and code
    /// (`sport`: type, `dport`: code); else 0.
    pub sport: u16,
    pub dport: u16,
}

impl Tuple {
    /// The same connection seen from the other end.
    pub fn reversed(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }

    /// Whether the protocol has ports.
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, TCP | UDP | UDPLITE | SCTP)
    }
}

/// The parsed headers of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    pub tuple: Tuple,
    /// The IP packet's total length, as its header says.
    pub len: u32,
    /// A TCP packet's flags byte (SYN 0x02, ACK 0x10, ...).
    pub tcp_flags: Option<u8>,
}

fn get<'a>(bytes: &'a [u8], at: usize, len: usize, what: &'static str) -> Result<&'a [u8], Error> {
    bytes.get(at..at + len).ok_or(Error::Truncated {
        offset: at,
        what,
        len,
        available: bytes.len().saturating_sub(at),
    })
}

/// A later fragment: no transport header, so no ports.
fn fragment(proto: u8, src: IpAddr, dst: IpAddr, len: u32) -> Headers {
    Headers {
        tuple: Tuple {
            proto,
            src,
            dst,
            sport: 0,
            dport: 0,
        },
        len,
        tcp_flags: None,
    }
}

/// Parses the headers of an IP packet (IPv4 or IPv6, by its version nibble).
pub fn parse(bytes: &[u8]) -> Result<Headers, Error> {
    let first = get(bytes, 0, 1, "IP version")?[0];
    let (proto, src, dst, len, at) = match first >> 4 {
        4 => {
            let h = get(bytes, 0, 20, "IPv4 header")?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if ihl < 20 {
                return Err(Error::Invalid {
                    offset: 0,
                    what: "IPv4 header length below 20",
                });
            }
            let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
            let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
            let len = u32::from(u16::from_be_bytes([h[2], h[3]]));
            // A later fragment has no transport header.
            let fragment_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
            let proto = h[9];
            if fragment_offset != 0 {
                return Ok(fragment(proto, src.into(), dst.into(), len));
            }
            (proto, IpAddr::V4(src), IpAddr::V4(dst), len, ihl)
        }
        6 => {
            let h = get(bytes, 0, 40, "IPv6 header")?;
            let addr = |b: &[u8]| -> Ipv6Addr {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                Ipv6Addr::from(a)
            };
            let len = 40 + u32::from(u16::from_be_bytes([h[4], h[5]]));
            let (src, dst) = (addr(&h[8..24]), addr(&h[24..40]));
            let mut next = h[6];
            let mut at = 40;
            // Extension headers: hop-by-hop (0), routing (43), fragment
            // (44), destination options (60).
            while matches!(next, 0 | 43 | 44 | 60) {
                let ext = get(bytes, at, 8, "IPv6 extension header")?;
                if next == 44 {
                    let offset = u16::from_be_bytes([ext[2], ext[3]]) >> 3;
                    if offset != 0 {
                        return Ok(fragment(ext[0], src.into(), dst.into(), len));
                    }
                    next = ext[0];
                    at += 8;
                } else {
                    next = ext[0];
                    at += (usize::from(ext[1]) + 1) * 8;
                }
            }
            (next, IpAddr::V6(src), IpAddr::V6(dst), len, at)
        }
        _ => {
            return Err(Error::Invalid {
                offset: 0,
                what: "not an IPv4 or IPv6 packet",
            });
        }
    };
    let (mut sport, mut dport, mut tcp_flags) = (0, 0, None);
    match proto {
        TCP | UDP | UDPLITE | SCTP => {
            let l4 = get(bytes, at, 4, "transport header")?;
            sport = u16::from_be_bytes([l4[0], l4[1]]);
            dport = u16::from_be_bytes([l4[2], l4[3]]);
            if proto == TCP {
                // The flags are byte 13 of the TCP header; a copy cut short
                // before them leaves them unknown.
                tcp_flags = bytes.get(at + 13).copied();
            }
        }
        ICMP | ICMPV6 => {
            let l4 = get(bytes, at, 2, "ICMP header")?;
            sport = u16::from(l4[0]);
            dport = u16::from(l4[1]);
        }
        _ => {}
    }
    let tuple = Tuple {
        proto,
        src,
        dst,
        sport,
        dport,
    };
    Ok(Headers {
        tuple,
        len,
        tcp_flags,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IPv4 TCP SYN from `src:sport` to `dst:dport`.
    pub(crate) fn tcp_syn_v4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, TCP, 0, 0];
        p.extend(src);
        p.extend(dst);
        p.extend(sport.to_be_bytes());
        p.extend(dport.to_be_bytes());
        p.extend([0; 9]);
        p.push(0x02); // SYN
        p.extend([0; 6]);
        p
    }

    #[test]
    fn an_ipv4_tcp_syn_gives_its_tuple_length_and_flags() {
        let h = parse(&tcp_syn_v4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80)).unwrap();
        assert_eq!(
            h.tuple,
            Tuple {
                proto: TCP,
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                sport: 40000,
                dport: 80
            }
        );
        assert_eq!((h.len, h.tcp_flags), (40, Some(0x02)));
        assert_eq!(h.tuple.reversed().reversed(), h.tuple);
    }

    #[test]
    fn an_ipv6_udp_packet_after_a_hop_by_hop_header_gives_its_ports() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        p.extend("fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend("fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend([UDP, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, 8 bytes
        p.extend(53u16.to_be_bytes());
        p.extend(5353u16.to_be_bytes());
        p.extend([0; 4]);
        let h = parse(&p).unwrap();
        assert_eq!(
            (h.tuple.proto, h.tuple.sport, h.tuple.dport),
            (UDP, 53, 5353)
        );
        assert_eq!(h.tuple.dst, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(h.len, 56);
    }

    #[test]
    fn icmp_gives_type_and_code_and_short_packets_are_errors() {
        let mut p = tcp_syn_v4([10, 0, 0, 1], [10, 0, 0, 2], 0, 0);
        p[9] = ICMP;
        p[20] = 8;
        p[21] = 0;
        let h = parse(&p).unwrap();
        assert_eq!((h.tuple.sport, h.tuple.dport, h.tcp_flags), (8, 0, None));
        let err = parse(&p[..21]).unwrap_err();
        assert_eq!(err.to_string(), "byte 20: ICMP header is 2 bytes, 1 left");
        assert!(parse(&[0x10]).is_err());
        assert!(parse(&[]).is_err());
        for len in 0..p.len() {
            let _ = parse(&p[..len]);
        }
    }
}
