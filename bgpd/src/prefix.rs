//! Address families and NLRI prefixes: the `<length, prefix>` encoding of
//! RFC 4271 §4.3 (NLRI and Withdrawn Routes) shared by RFC 4760 §5
//! (MP_REACH_NLRI / MP_UNREACH_NLRI).
//!
//! This module owns [`AfiSafi`], [`Prefix`] and the prefix list codec. Decoding
//! is panic-free and reports every syntax error of RFC 7606 §5.3 (prefix
//! length above 32/128, prefix running past the field) as [`NlriError`]; the
//! caller picks the NOTIFICATION subcode, which differs between the NLRI field
//! and the MP attributes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use ipnet::IpNet as Prefix;
use ipnet::{Ipv4Net, Ipv6Net};

/// AFI 1, IPv4 (IANA Address Family Numbers).
pub const AFI_IPV4: u16 = 1;
/// AFI 2, IPv6.
pub const AFI_IPV6: u16 = 2;
/// SAFI 1, unicast (RFC 4760 §6).
pub const SAFI_UNICAST: u8 = 1;

/// An address family and subsequent address family pair (RFC 4760 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AfiSafi {
    pub afi: u16,
    pub safi: u8,
}

impl AfiSafi {
    pub const IPV4_UNICAST: AfiSafi = AfiSafi {
        afi: AFI_IPV4,
        safi: SAFI_UNICAST,
    };
    pub const IPV6_UNICAST: AfiSafi = AfiSafi {
        afi: AFI_IPV6,
        safi: SAFI_UNICAST,
    };

    pub const fn new(afi: u16, safi: u8) -> Self {
        AfiSafi { afi, safi }
    }

    /// The family a prefix belongs to (unicast: this speaker has no other SAFI).
    pub fn of(prefix: &Prefix) -> Self {
        match prefix {
            Prefix::V4(_) => Self::IPV4_UNICAST,
            Prefix::V6(_) => Self::IPV6_UNICAST,
        }
    }

    /// Whether this crate can decode and encode NLRI of this family.
    pub fn is_supported(self) -> bool {
        self == Self::IPV4_UNICAST || self == Self::IPV6_UNICAST
    }
}

impl std::fmt::Display for AfiSafi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            Self::IPV6_UNICAST => f.write_str("ipv6-unicast"),
            AfiSafi { afi, safi } => write!(f, "afi {afi}/safi {safi}"),
        }
    }
}

/// A syntax error in a prefix list (RFC 7606 §5.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NlriError {
    #[error("prefix at byte {offset}: length {length} exceeds {max} bits")]
    LengthTooLong { offset: usize, length: u8, max: u8 },
    #[error("prefix at byte {offset}: /{length} needs {needed} bytes, {available} left")]
    Truncated {
        offset: usize,
        length: u8,
        needed: usize,
        available: usize,
    },
    #[error("afi {afi}/safi {safi} is not supported")]
    UnsupportedFamily { afi: u16, safi: u8 },
}

fn max_bits(family: AfiSafi) -> Result<u8, NlriError> {
    match family {
        AfiSafi::IPV4_UNICAST => Ok(32),
        AfiSafi::IPV6_UNICAST => Ok(128),
        AfiSafi { afi, safi } => Err(NlriError::UnsupportedFamily { afi, safi }),
    }
}

/// Decodes a list of `<length, prefix>` entries of `family`. Host bits past
/// the prefix length are cleared (RFC 4271 §4.3: trailing bits are irrelevant).
pub fn decode_prefixes(family: AfiSafi, buf: &[u8]) -> Result<Vec<Prefix>, NlriError> {
    let max = max_bits(family)?;
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(&length) = buf.get(pos) {
        if length > max {
            return Err(NlriError::LengthTooLong {
                offset: pos,
                length,
                max,
            });
        }
        let needed = usize::from(length).div_ceil(8);
        let bytes = buf
            .get(pos + 1..pos + 1 + needed)
            .ok_or(NlriError::Truncated {
                offset: pos,
                length,
                needed,
                available: buf.len() - pos - 1,
            })?;
        out.push(prefix_from_bytes(max, length, bytes));
        pos += 1 + needed;
    }
    Ok(out)
}

fn prefix_from_bytes(max: u8, length: u8, bytes: &[u8]) -> Prefix {
    if max == 32 {
        let mut octets = [0u8; 4];
        octets[..bytes.len()].copy_from_slice(bytes);
        // `length <= 32` was checked, so `new` cannot fail.
        let net = Ipv4Net::new(Ipv4Addr::from(octets), length).unwrap_or_default();
        Prefix::V4(net.trunc())
    } else {
        let mut octets = [0u8; 16];
        octets[..bytes.len()].copy_from_slice(bytes);
        let net = Ipv6Net::new(Ipv6Addr::from(octets), length).unwrap_or_default();
        Prefix::V6(net.trunc())
    }
}

/// The encoded size of one prefix.
pub fn encoded_len(prefix: &Prefix) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

/// Appends one `<length, prefix>` entry.
pub fn encode_prefix(prefix: &Prefix, out: &mut Vec<u8>) {
    let length = prefix.prefix_len();
    let needed = usize::from(length).div_ceil(8);
    out.push(length);
    match prefix.network() {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..needed]),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..needed]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_prefixes_round_trip_with_minimal_octets() {
        let prefixes = vec![
            p("10.1.0.0/24"),
            p("0.0.0.0/0"),
            p("192.168.1.7/32"),
            p("172.16.0.0/12"),
        ];
        let mut buf = Vec::new();
        for x in &prefixes {
            encode_prefix(x, &mut buf);
        }
        assert_eq!(buf, [24, 10, 1, 0, 0, 32, 192, 168, 1, 7, 12, 172, 16]);
        assert_eq!(
            decode_prefixes(AfiSafi::IPV4_UNICAST, &buf).unwrap(),
            prefixes
        );
    }

    #[test]
    fn ipv6_prefix_round_trips() {
        let mut buf = Vec::new();
        encode_prefix(&p("2001:db8:1::/48"), &mut buf);
        assert_eq!(buf, [48, 0x20, 0x01, 0x0d, 0xb8, 0, 1]);
        assert_eq!(
            decode_prefixes(AfiSafi::IPV6_UNICAST, &buf).unwrap(),
            vec![p("2001:db8:1::/48")]
        );
    }

    #[test]
    fn host_bits_past_the_length_are_cleared() {
        assert_eq!(
            decode_prefixes(AfiSafi::IPV4_UNICAST, &[23, 10, 1, 255]).unwrap(),
            vec![p("10.1.254.0/23")]
        );
    }

    #[test]
    fn ipv4_prefix_length_over_32_is_a_syntax_error() {
        assert_eq!(
            decode_prefixes(AfiSafi::IPV4_UNICAST, &[24, 10, 0, 0, 33, 1, 2, 3, 4, 5]),
            Err(NlriError::LengthTooLong {
                offset: 4,
                length: 33,
                max: 32
            })
        );
    }

    #[test]
    fn ipv6_prefix_length_over_128_is_a_syntax_error() {
        assert!(matches!(
            decode_prefixes(AfiSafi::IPV6_UNICAST, &[129]),
            Err(NlriError::LengthTooLong {
                length: 129,
                max: 128,
                ..
            })
        ));
    }

    #[test]
    fn prefix_running_past_the_field_is_a_syntax_error() {
        assert_eq!(
            decode_prefixes(AfiSafi::IPV4_UNICAST, &[24, 10, 1]),
            Err(NlriError::Truncated {
                offset: 0,
                length: 24,
                needed: 3,
                available: 2
            })
        );
    }
}
