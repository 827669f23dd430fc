//! The OPEN message (RFC 4271 §4.2) and capability negotiation.
//!
//! [`Open::decode`] checks what a message alone can tell: version 4 (else 2/1,
//! data = the highest version we support), hold time 0 or ≥ 3 (2/6), BGP
//! identifier not 0 (2/3, RFC 6286 §2.2), optional parameters well formed;
//! non-capability parameters are refused with 2/4 (RFC 4271 §6.2). Both the
//! one-byte and the extended (RFC 9072) optional parameter lengths are read.
//!
//! [`negotiate`] turns our OPEN and the peer's into [`Negotiated`] session
//! parameters and fails with the NOTIFICATION to send: peer AS not the one
//! configured (2/2), same identifier on an iBGP session (2/3, RFC 6286 §2.2),
//! no address family in common (2/7 with our Multiprotocol capabilities,
//! RFC 5492 §5).

use std::net::Ipv4Addr;

use crate::capability::{self, Capability, GracefulRestart};
use crate::notification::{Notification, code, open};
use crate::prefix::AfiSafi;
use crate::wire::{self, MessageType};

/// AS_TRANS (RFC 6793 §9): the 2-octet stand-in for a 4-octet AS.
pub const AS_TRANS: u16 = 23456;
pub const BGP_VERSION: u8 = 4;
const CAPABILITIES_PARAMETER: u8 = 2;
const EXTENDED_PARAMETERS: u8 = 255;

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet My Autonomous System field (AS_TRANS for a 4-octet AS).
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// Builds our OPEN: `asn` goes into the 4-octet AS capability, which is
    /// always sent, and into My AS, or AS_TRANS when it does not fit.
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_id: Ipv4Addr,
        mut capabilities: Vec<Capability>,
    ) -> Self {
        capabilities.retain(|c| !matches!(c, Capability::FourOctetAs(_)));
        capabilities.push(Capability::FourOctetAs(asn));
        Open {
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_id,
            capabilities,
        }
    }

    /// The sender's AS: the 4-octet AS capability if present, else My AS.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    /// The families the sender supports: its Multiprotocol capabilities, or
    /// IPv4 unicast when it sent none (RFC 4760 §8).
    pub fn families(&self) -> Vec<AfiSafi> {
        let mut out: Vec<AfiSafi> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if out.is_empty() {
            out.push(AfiSafi::IPV4_UNICAST);
        }
        out.sort();
        out.dedup();
        out
    }

    fn has(&self, code_: u8) -> bool {
        self.capabilities.iter().any(|c| c.code() == code_)
    }

    /// The OPEN body. Capabilities go into one Capabilities parameter.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut caps = Vec::new();
        for c in &self.capabilities {
            c.encode(&mut caps);
        }
        let mut out = vec![BGP_VERSION];
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_id.octets());
        if caps.is_empty() {
            out.push(0);
        } else if caps.len() + 2 <= 255 {
            out.push((caps.len() + 2) as u8);
            out.push(CAPABILITIES_PARAMETER);
            out.push(caps.len() as u8);
            out.extend_from_slice(&caps);
        } else {
            // RFC 9072 §2: non-extended length 255, type 255, 2-byte lengths.
            let param_len = u16::try_from(caps.len() + 3).expect("capabilities over 64 KiB");
            out.extend_from_slice(&[EXTENDED_PARAMETERS, EXTENDED_PARAMETERS]);
            out.extend_from_slice(&param_len.to_be_bytes());
            out.push(CAPABILITIES_PARAMETER);
            out.extend_from_slice(&(caps.len() as u16).to_be_bytes());
            out.extend_from_slice(&caps);
        }
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        wire::encode_message(MessageType::Open, &self.encode_body())
    }

    /// Decodes and checks an OPEN body.
    pub fn decode(body: &[u8]) -> Result<Open, Notification> {
        let err = |sub: u8, data: &[u8]| Notification::new(code::OPEN_MESSAGE, sub, data);
        let Some((&[version, as_hi, as_lo, ht_hi, ht_lo, a, b, c, d, opt_len], params)) =
            body.split_first_chunk::<10>()
        else {
            return Err(Notification::new(
                code::MESSAGE_HEADER,
                crate::notification::header::BAD_MESSAGE_LENGTH,
                u16::try_from(body.len() + wire::HEADER_LEN)
                    .unwrap_or(u16::MAX)
                    .to_be_bytes(),
            ));
        };
        if version != BGP_VERSION {
            return Err(err(
                open::UNSUPPORTED_VERSION,
                &u16::from(BGP_VERSION).to_be_bytes(),
            ));
        }
        let hold_time = u16::from_be_bytes([ht_hi, ht_lo]);
        if hold_time == 1 || hold_time == 2 {
            return Err(err(open::UNACCEPTABLE_HOLD_TIME, &[]));
        }
        let bgp_id = Ipv4Addr::new(a, b, c, d);
        if bgp_id.is_unspecified() {
            return Err(err(open::BAD_BGP_IDENTIFIER, &[]));
        }
        let capabilities = decode_parameters(opt_len, params)?;
        Ok(Open {
            my_as: u16::from_be_bytes([as_hi, as_lo]),
            hold_time,
            bgp_id,
            capabilities,
        })
    }
}

/// Reads the optional parameters; only Capabilities (2) is supported.
fn decode_parameters(opt_len: u8, params: &[u8]) -> Result<Vec<Capability>, Notification> {
    let unspecific = |data: &[u8]| Notification::new(code::OPEN_MESSAGE, open::UNSPECIFIC, data);
    let extended = opt_len == EXTENDED_PARAMETERS && params.first() == Some(&EXTENDED_PARAMETERS);
    let (params, len_size) = if extended {
        let Some(&[_, hi, lo]) = params.first_chunk::<3>() else {
            return Err(unspecific(params));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        (
            params
                .get(3..)
                .filter(|p| p.len() == len)
                .ok_or_else(|| unspecific(params))?,
            2,
        )
    } else {
        // The parameters must fill the message exactly (RFC 4271 §4.2).
        (
            Some(params)
                .filter(|p| p.len() == usize::from(opt_len))
                .ok_or_else(|| unspecific(params))?,
            1,
        )
    };
    let mut caps = Vec::new();
    let mut rest = params;
    while let Some((&kind, after)) = rest.split_first() {
        let (len, after) = match (len_size, after) {
            (1, [l, after @ ..]) => (usize::from(*l), after),
            (2, [h, l, after @ ..]) => (usize::from(u16::from_be_bytes([*h, *l])), after),
            _ => return Err(unspecific(rest)),
        };
        let value = after.get(..len).ok_or_else(|| unspecific(rest))?;
        if kind != CAPABILITIES_PARAMETER {
            return Err(Notification::new(
                code::OPEN_MESSAGE,
                open::UNSUPPORTED_OPTIONAL_PARAMETER,
                [kind],
            ));
        }
        caps.extend(capability::decode_list(value)?);
        rest = &after[len..];
    }
    Ok(caps)
}

/// What both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub local_as: u32,
    pub peer_as: u32,
    pub peer_id: Ipv4Addr,
    /// Both sent the 4-octet AS capability (RFC 6793 §4): AS_PATH and
    /// AGGREGATOR carry 4-octet AS numbers.
    pub four_octet_as: bool,
    /// Families both support, sorted.
    pub families: Vec<AfiSafi>,
    /// min(ours, theirs); 0 means no hold and no keepalive timers (RFC 4271 §4.2).
    pub hold_time: u16,
    /// hold_time / 3 (RFC 4271 §10 suggests one third).
    pub keepalive_time: u16,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    /// Both sent Extended Message (RFC 8654 §3).
    pub extended_message: bool,
    /// The peer's Graceful Restart capability: we act as its helper.
    pub peer_graceful_restart: Option<GracefulRestart>,
    /// The peer's FQDN capability, (hostname, domain).
    pub peer_fqdn: Option<(String, String)>,
}

impl Negotiated {
    pub fn is_ibgp(&self) -> bool {
        self.local_as == self.peer_as
    }

    /// The largest message either side may send.
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            wire::EXTENDED_MAX_MESSAGE_LEN
        } else {
            wire::MAX_MESSAGE_LEN
        }
    }
}

/// Negotiates session parameters from our OPEN and the peer's.
/// `expected_peer_as` is the configured remote AS.
pub fn negotiate(
    local: &Open,
    remote: &Open,
    expected_peer_as: u32,
) -> Result<Negotiated, Notification> {
    let peer_as = remote.asn();
    if peer_as != expected_peer_as {
        return Err(Notification::new(code::OPEN_MESSAGE, open::BAD_PEER_AS, []));
    }
    let local_as = local.asn();
    if local_as == peer_as && local.bgp_id == remote.bgp_id {
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            open::BAD_BGP_IDENTIFIER,
            [],
        ));
    }
    let theirs = remote.families();
    let families: Vec<AfiSafi> = local
        .families()
        .into_iter()
        .filter(|f| theirs.contains(f))
        .collect();
    if families.is_empty() {
        let mut data = Vec::new();
        for f in local.families() {
            Capability::Multiprotocol(f).encode(&mut data);
        }
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            open::UNSUPPORTED_CAPABILITY,
            data,
        ));
    }
    let hold_time = local.hold_time.min(remote.hold_time);
    let both = |c: u8| local.has(c) && remote.has(c);
    Ok(Negotiated {
        local_as,
        peer_as,
        peer_id: remote.bgp_id,
        four_octet_as: both(capability::FOUR_OCTET_AS),
        families,
        hold_time,
        keepalive_time: hold_time / 3,
        route_refresh: both(capability::ROUTE_REFRESH),
        enhanced_route_refresh: both(capability::ENHANCED_ROUTE_REFRESH),
        extended_message: both(capability::EXTENDED_MESSAGE),
        peer_graceful_restart: remote.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr.clone()),
            _ => None,
        }),
        peer_fqdn: remote.capabilities.iter().find_map(|c| match c {
            Capability::Fqdn { hostname, domain } => Some((hostname.clone(), domain.clone())),
            _ => None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::GrFamily;

    fn ours() -> Open {
        Open::new(
            65001,
            90,
            Ipv4Addr::new(10, 0, 0, 1),
            vec![
                Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
                Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
                Capability::RouteRefresh,
            ],
        )
    }

    #[test]
    fn open_round_trips_through_bytes() {
        let o = ours();
        assert_eq!(Open::decode(&o.encode_body()), Ok(o));
    }

    #[test]
    fn four_octet_as_goes_out_as_as_trans_in_my_as() {
        let o = Open::new(4_200_000_000, 90, Ipv4Addr::new(1, 1, 1, 1), vec![]);
        assert_eq!(o.my_as, AS_TRANS);
        assert_eq!(o.asn(), 4_200_000_000);
        assert_eq!(&o.encode_body()[1..3], &AS_TRANS.to_be_bytes());
    }

    #[test]
    fn version_other_than_4_is_refused_with_our_version_as_data() {
        let mut body = ours().encode_body();
        body[0] = 3;
        assert_eq!(Open::decode(&body), Err(Notification::new(2, 1, [0, 4])));
    }

    #[test]
    fn hold_time_of_1_or_2_is_unacceptable_but_0_is_fine() {
        for (ht, ok) in [(0u16, true), (1, false), (2, false), (3, true)] {
            let mut o = ours();
            o.hold_time = ht;
            let r = Open::decode(&o.encode_body());
            assert_eq!(r.is_ok(), ok, "hold time {ht}");
            if !ok {
                assert_eq!(r, Err(Notification::new(2, 6, [])));
            }
        }
    }

    #[test]
    fn zero_bgp_identifier_is_bad() {
        let mut o = ours();
        o.bgp_id = Ipv4Addr::UNSPECIFIED;
        assert_eq!(
            Open::decode(&o.encode_body()),
            Err(Notification::new(2, 3, []))
        );
    }

    #[test]
    fn optional_parameter_other_than_capabilities_is_unsupported() {
        let mut body = ours().encode_body();
        body.truncate(9);
        body.extend_from_slice(&[3, 1, 1, 0]);
        assert_eq!(Open::decode(&body), Err(Notification::new(2, 4, [1])));
    }

    #[test]
    fn optional_parameters_overrunning_the_message_are_malformed() {
        let mut body = ours().encode_body();
        body[9] += 1;
        assert_eq!(Open::decode(&body).unwrap_err().subcode, 0);
    }

    #[test]
    fn extended_optional_parameter_length_is_read() {
        let caps: Vec<Capability> = (0..90)
            .map(|i| Capability::Unknown {
                code: 200,
                value: vec![i],
            })
            .collect();
        let o = Open::new(65001, 90, Ipv4Addr::new(1, 1, 1, 1), caps);
        let body = o.encode_body();
        assert_eq!(body[9], 255);
        assert_eq!(Open::decode(&body), Ok(o));
    }

    #[test]
    fn negotiation_takes_the_lower_hold_time_and_common_families() {
        let mut theirs = Open::new(
            65002,
            30,
            Ipv4Addr::new(10, 0, 0, 2),
            vec![
                Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
                Capability::RouteRefresh,
            ],
        );
        theirs.capabilities.push(Capability::Fqdn {
            hostname: "frr1".into(),
            domain: String::new(),
        });
        let n = negotiate(&ours(), &theirs, 65002).unwrap();
        assert_eq!(n.hold_time, 30);
        assert_eq!(n.keepalive_time, 10);
        assert_eq!(n.families, vec![AfiSafi::IPV6_UNICAST]);
        assert!(n.four_octet_as && n.route_refresh && !n.extended_message && !n.is_ibgp());
        assert_eq!(n.peer_fqdn, Some(("frr1".into(), String::new())));
        assert_eq!(n.max_message_len(), 4096);
    }

    #[test]
    fn peer_without_multiprotocol_capabilities_implies_ipv4_unicast() {
        let theirs = Open {
            my_as: 65002,
            hold_time: 0,
            bgp_id: Ipv4Addr::new(2, 2, 2, 2),
            capabilities: vec![],
        };
        let n = negotiate(&ours(), &theirs, 65002).unwrap();
        assert_eq!(n.families, vec![AfiSafi::IPV4_UNICAST]);
        assert!(!n.four_octet_as);
        assert_eq!((n.hold_time, n.keepalive_time), (0, 0));
    }

    #[test]
    fn no_common_family_is_unsupported_capability_listing_ours() {
        let local = Open::new(
            65001,
            90,
            Ipv4Addr::new(1, 1, 1, 1),
            vec![Capability::Multiprotocol(AfiSafi::IPV6_UNICAST)],
        );
        let theirs = Open::new(
            65002,
            90,
            Ipv4Addr::new(2, 2, 2, 2),
            vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST)],
        );
        assert_eq!(
            negotiate(&local, &theirs, 65002),
            Err(Notification::new(2, 7, [1, 4, 0, 2, 0, 1]))
        );
    }

    #[test]
    fn peer_as_other_than_configured_is_bad_peer_as() {
        let theirs = Open::new(65003, 90, Ipv4Addr::new(2, 2, 2, 2), vec![]);
        assert_eq!(
            negotiate(&ours(), &theirs, 65002),
            Err(Notification::new(2, 2, []))
        );
    }

    #[test]
    fn same_identifier_on_ibgp_is_bad_bgp_identifier_but_allowed_on_ebgp() {
        let same_id = Open::new(65001, 90, Ipv4Addr::new(10, 0, 0, 1), vec![]);
        assert_eq!(
            negotiate(&ours(), &same_id, 65001),
            Err(Notification::new(2, 3, []))
        );
        let ebgp = Open::new(65002, 90, Ipv4Addr::new(10, 0, 0, 1), vec![]);
        assert!(negotiate(&ours(), &ebgp, 65002).is_ok());
    }

    #[test]
    fn graceful_restart_of_the_peer_is_kept_even_when_flags_differ_from_ours() {
        let gr = |restarting| GracefulRestart {
            restarting,
            notification: false,
            restart_time: 120,
            families: vec![GrFamily {
                family: AfiSafi::IPV4_UNICAST,
                forwarding_preserved: restarting,
            }],
        };
        let mut local = ours();
        local
            .capabilities
            .push(Capability::GracefulRestart(gr(false)));
        let theirs = Open::new(
            65002,
            90,
            Ipv4Addr::new(2, 2, 2, 2),
            vec![Capability::GracefulRestart(gr(true))],
        );
        assert_eq!(
            negotiate(&local, &theirs, 65002)
                .unwrap()
                .peer_graceful_restart,
            Some(gr(true))
        );
    }
}
