//! Capabilities advertised in OPEN (RFC 5492), parsed by this crate.
//!
//! Known: Multiprotocol (1, RFC 4760 §8), Route Refresh (2, RFC 2918),
//! Extended Message (6, RFC 8654), Graceful Restart (64, RFC 4724 §3),
//! 4-octet AS (65, RFC 6793 §3), Enhanced Route Refresh (70, RFC 7313) and
//! FQDN (73, draft-walton-bgp-hostname-capability, sent by FRR when a hostname
//! is set). Everything else, ADD-PATH (69) and Long-Lived GR (71) included, is
//! kept as [`Capability::Unknown`] and ignored by negotiation (RFC 5492 §4).
//!
//! A known capability whose value does not parse is an OPEN error with
//! subcode 0, Unspecific (RFC 4271 §6.2: a recognised but malformed optional
//! parameter); its data is the capability TLV.

use crate::notification::{Notification, code, open};
use crate::prefix::AfiSafi;

pub const MULTIPROTOCOL: u8 = 1;
pub const ROUTE_REFRESH: u8 = 2;
pub const EXTENDED_MESSAGE: u8 = 6;
pub const GRACEFUL_RESTART: u8 = 64;
pub const FOUR_OCTET_AS: u8 = 65;
pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
pub const FQDN: u8 = 73;

/// Per-family Graceful Restart state (RFC 4724 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrFamily {
    pub family: AfiSafi,
    /// The F bit: forwarding state was preserved across the restart.
    pub forwarding_preserved: bool,
}

/// The Graceful Restart capability value (RFC 4724 §3, N bit RFC 8538 §2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GracefulRestart {
    /// The R bit: the sender has restarted.
    pub restarting: bool,
    /// The N bit: the sender supports graceful NOTIFICATION (RFC 8538).
    pub notification: bool,
    /// Restart time in seconds, 12 bits.
    pub restart_time: u16,
    pub families: Vec<GrFamily>,
}

/// One capability.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    Multiprotocol(AfiSafi),
    RouteRefresh,
    EnhancedRouteRefresh,
    ExtendedMessage,
    GracefulRestart(GracefulRestart),
    FourOctetAs(u32),
    Fqdn { hostname: String, domain: String },
    Unknown { code: u8, value: Vec<u8> },
}

fn malformed(code_: u8, value: &[u8]) -> Notification {
    let mut data = vec![code_, u8::try_from(value.len()).unwrap_or(u8::MAX)];
    data.extend_from_slice(value);
    Notification::new(code::OPEN_MESSAGE, open::UNSPECIFIC, data)
}

impl Capability {
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol(_) => MULTIPROTOCOL,
            Capability::RouteRefresh => ROUTE_REFRESH,
            Capability::EnhancedRouteRefresh => ENHANCED_ROUTE_REFRESH,
            Capability::ExtendedMessage => EXTENDED_MESSAGE,
            Capability::GracefulRestart(_) => GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => FOUR_OCTET_AS,
            Capability::Fqdn { .. } => FQDN,
            Capability::Unknown { code, .. } => *code,
        }
    }

    /// Decodes one capability value of type `code`.
    pub fn decode(code_: u8, value: &[u8]) -> Result<Capability, Notification> {
        let bad = || malformed(code_, value);
        Ok(match code_ {
            MULTIPROTOCOL => match value {
                [a, b, _reserved, safi] => {
                    Capability::Multiprotocol(AfiSafi::new(u16::from_be_bytes([*a, *b]), *safi))
                }
                _ => return Err(bad()),
            },
            ROUTE_REFRESH if value.is_empty() => Capability::RouteRefresh,
            ENHANCED_ROUTE_REFRESH if value.is_empty() => Capability::EnhancedRouteRefresh,
            EXTENDED_MESSAGE if value.is_empty() => Capability::ExtendedMessage,
            ROUTE_REFRESH | ENHANCED_ROUTE_REFRESH | EXTENDED_MESSAGE => return Err(bad()),
            FOUR_OCTET_AS => match value {
                [a, b, c, d] => Capability::FourOctetAs(u32::from_be_bytes([*a, *b, *c, *d])),
                _ => return Err(bad()),
            },
            GRACEFUL_RESTART => {
                let Some((&[flags_time_hi, time_lo], rest)) = value.split_first_chunk::<2>() else {
                    return Err(bad());
                };
                if !rest.len().is_multiple_of(4) {
                    return Err(bad());
                }
                let families = rest
                    .chunks_exact(4)
                    .map(|c| GrFamily {
                        family: AfiSafi::new(u16::from_be_bytes([c[0], c[1]]), c[2]),
                        forwarding_preserved: c[3] & 0x80 != 0,
                    })
                    .collect();
                Capability::GracefulRestart(GracefulRestart {
                    restarting: flags_time_hi & 0x80 != 0,
                    notification: flags_time_hi & 0x40 != 0,
                    restart_time: u16::from_be_bytes([flags_time_hi & 0x0f, time_lo]),
                    families,
                })
            }
            FQDN => match decode_fqdn(value) {
                Some((hostname, domain)) => Capability::Fqdn { hostname, domain },
                // Informational only: a malformed one is kept, not fatal.
                None => Capability::Unknown {
                    code: code_,
                    value: value.to_vec(),
                },
            },
            _ => Capability::Unknown {
                code: code_,
                value: value.to_vec(),
            },
        })
    }

    /// The value bytes (without code and length).
    pub fn encode_value(&self) -> Vec<u8> {
        match self {
            Capability::Multiprotocol(f) => {
                let [a, b] = f.afi.to_be_bytes();
                vec![a, b, 0, f.safi]
            }
            Capability::RouteRefresh
            | Capability::EnhancedRouteRefresh
            | Capability::ExtendedMessage => vec![],
            Capability::FourOctetAs(asn) => asn.to_be_bytes().to_vec(),
            Capability::GracefulRestart(gr) => {
                let [hi, lo] = (gr.restart_time & 0x0fff).to_be_bytes();
                let flags =
                    if gr.restarting { 0x80 } else { 0 } | if gr.notification { 0x40 } else { 0 };
                let mut out = vec![flags | hi, lo];
                for f in &gr.families {
                    out.extend_from_slice(&f.family.afi.to_be_bytes());
                    out.push(f.family.safi);
                    out.push(if f.forwarding_preserved { 0x80 } else { 0 });
                }
                out
            }
            Capability::Fqdn { hostname, domain } => {
                let mut out = Vec::new();
                // 1 + host + 1 + domain must fit the 255-byte value.
                for (name, cap) in [(hostname, 127), (domain, 126)] {
                    let bytes = &name.as_bytes()[..name.len().min(cap)];
                    out.push(bytes.len() as u8);
                    out.extend_from_slice(bytes);
                }
                out
            }
            Capability::Unknown { value, .. } => value.clone(),
        }
    }

    /// Appends the capability TLV (code, length, value).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let value = self.encode_value();
        out.push(self.code());
        out.push(u8::try_from(value.len()).expect("capability value over 255 bytes"));
        out.extend_from_slice(&value);
    }
}

/// Hostname length + hostname + domain length + domain. FRR omits nothing,
/// but a missing domain part is read as empty; bytes past it are ignored.
fn decode_fqdn(value: &[u8]) -> Option<(String, String)> {
    let (&hlen, rest) = value.split_first()?;
    let host = rest.get(..usize::from(hlen))?;
    let rest = &rest[usize::from(hlen)..];
    let domain = match rest.split_first() {
        None => &[][..],
        Some((&dlen, rest)) => rest.get(..usize::from(dlen))?,
    };
    Some((
        String::from_utf8_lossy(host).into_owned(),
        String::from_utf8_lossy(domain).into_owned(),
    ))
}

/// Decodes the value of a Capabilities optional parameter (RFC 5492 §4): a
/// sequence of TLVs.
pub fn decode_list(buf: &[u8]) -> Result<Vec<Capability>, Notification> {
    let mut out = Vec::new();
    let mut rest = buf;
    while let Some((&code_, after)) = rest.split_first() {
        let (&len, after) = after.split_first().ok_or_else(|| malformed(code_, &[]))?;
        let value = after
            .get(..usize::from(len))
            .ok_or_else(|| malformed(code_, after))?;
        out.push(Capability::decode(code_, value)?);
        rest = &after[usize::from(len)..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(cap: Capability, bytes: &[u8]) {
        let mut out = Vec::new();
        cap.encode(&mut out);
        assert_eq!(out, bytes, "encoding {cap:?}");
        assert_eq!(decode_list(bytes).unwrap(), vec![cap]);
    }

    #[test]
    fn multiprotocol_ipv6_unicast_round_trips() {
        round_trip(
            Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
            &[1, 4, 0, 2, 0, 1],
        );
    }

    #[test]
    fn four_octet_as_round_trips() {
        round_trip(
            Capability::FourOctetAs(4_200_000_000),
            &[65, 4, 0xfa, 0x56, 0xea, 0x00],
        );
    }

    #[test]
    fn graceful_restart_keeps_flags_time_and_forwarding_bits() {
        let gr = GracefulRestart {
            restarting: true,
            notification: true,
            restart_time: 300,
            families: vec![
                GrFamily {
                    family: AfiSafi::IPV4_UNICAST,
                    forwarding_preserved: true,
                },
                GrFamily {
                    family: AfiSafi::IPV6_UNICAST,
                    forwarding_preserved: false,
                },
            ],
        };
        round_trip(
            Capability::GracefulRestart(gr),
            &[64, 10, 0xc1, 0x2c, 0, 1, 1, 0x80, 0, 2, 1, 0],
        );
    }

    #[test]
    fn fqdn_with_hostname_and_domain_is_accepted_and_kept() {
        round_trip(
            Capability::Fqdn {
                hostname: "rt1".into(),
                domain: "lab".into(),
            },
            &[73, 8, 3, b'r', b't', b'1', 3, b'l', b'a', b'b'],
        );
    }

    #[test]
    fn malformed_fqdn_is_kept_as_unknown_rather_than_failing_the_open() {
        assert_eq!(
            decode_list(&[73, 2, 9, b'x']).unwrap(),
            vec![Capability::Unknown {
                code: 73,
                value: vec![9, b'x']
            }]
        );
    }

    #[test]
    fn unknown_capabilities_are_preserved() {
        round_trip(
            Capability::Unknown {
                code: 69,
                value: vec![0, 1, 1, 3],
            },
            &[69, 4, 0, 1, 1, 3],
        );
    }

    #[test]
    fn malformed_known_capability_is_open_error_unspecific_with_the_tlv() {
        assert_eq!(
            decode_list(&[65, 2, 0, 1]),
            Err(Notification::new(2, 0, [65, 2, 0, 1]))
        );
        assert_eq!(
            decode_list(&[64, 3, 0, 0x78, 0]),
            Err(Notification::new(2, 0, [64, 3, 0, 0x78, 0]))
        );
    }

    #[test]
    fn capability_running_past_the_parameter_is_malformed() {
        assert!(decode_list(&[1, 4, 0, 1]).is_err());
        assert!(decode_list(&[1]).is_err());
    }
}
