//! The UPDATE message (RFC 4271 §4.3): validation into an owned [`Update`],
//! End-of-RIB (RFC 4724 §2), encoding, and packing many prefixes that share
//! attributes into as few messages as the size limit allows.
//!
//! Decoding applies RFC 7606: lengths of the Withdrawn Routes and Path
//! Attributes fields that overrun the message reset the session with 3/1
//! Malformed Attribute List (RFC 4271 §6.3, kept by RFC 7606 §3 a); a syntax
//! error in the NLRI or Withdrawn Routes field (prefix longer than 32,
//! prefix past the end) resets with 3/10 Invalid Network Field (RFC 7606
//! §5.3 keeps session reset, RFC 4271 §6.3 names the subcode); attribute
//! faults are classified by [`crate::attr`]; a missing ORIGIN or AS_PATH when
//! any NLRI is present, or a missing NEXT_HOP when the NLRI field is not
//! empty (RFC 4760 §3 makes it optional otherwise), is treat-as-withdraw
//! (RFC 7606 §3 d). The strongest approach wins (§3 f). A missing
//! LOCAL_PREF on iBGP is not an error: the RIB applies the default, as BIRD
//! and FRR do.

use crate::attr::{
    self, AttrError, DecodeContext, EncodeContext, ErrorAction, MpReach, MpUnreach, NextHop,
    PathAttrs,
};
use crate::notification::{Notification, code, update};
use crate::prefix::{self, AfiSafi, Prefix};
use crate::wire::{self, HEADER_LEN, MessageType};

/// A validated UPDATE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// The IPv4 Withdrawn Routes field.
    pub withdrawn: Vec<Prefix>,
    pub attrs: PathAttrs,
    /// The IPv4 NLRI field (next hop in `attrs.next_hop`).
    pub announced: Vec<Prefix>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// This UPDATE is the End-of-RIB marker of a family (RFC 4724 §2).
    pub eor: Option<AfiSafi>,
    /// RFC 7606 treat-as-withdraw: every announced prefix is to be removed.
    pub treat_as_withdraw: bool,
    /// Type codes of attributes dropped from this UPDATE: by attribute
    /// discard (the fault is in `errors`), as repeats (RFC 7606 §3 g), or as
    /// not applicable to this session (iBGP-only attributes from eBGP, AS4_*
    /// from a 4-octet speaker, MP attributes of families not negotiated).
    pub discarded: Vec<u8>,
    /// Every malformed attribute, with its approach and RFC 4271 NOTIFICATION,
    /// for logging.
    pub errors: Vec<AttrError>,
}

/// Why an UPDATE could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("UPDATE of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("path attributes of {len} bytes leave no room for a prefix within {max} bytes")]
    AttributesTooLarge { len: usize, max: usize },
    #[error("prefix {prefix} does not match next hop {next_hop:?}")]
    FamilyMismatch { prefix: Prefix, next_hop: NextHop },
}

fn malformed_list() -> Notification {
    Notification::new(code::UPDATE_MESSAGE, update::MALFORMED_ATTRIBUTE_LIST, [])
}

fn invalid_network() -> Notification {
    Notification::new(code::UPDATE_MESSAGE, update::INVALID_NETWORK_FIELD, [])
}

fn take_field(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&[hi, lo], rest) = buf.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    Some((rest.get(..len)?, rest.get(len..)?))
}

impl Update {
    /// Decodes and validates an UPDATE body. `Err` is the NOTIFICATION of a
    /// session reset; milder faults are in `treat_as_withdraw`, `discarded`
    /// and `errors`.
    pub fn decode(body: &[u8], ctx: &DecodeContext) -> Result<Update, Notification> {
        let (withdrawn, rest) = take_field(body).ok_or_else(malformed_list)?;
        let (attr_field, nlri) = take_field(rest).ok_or_else(malformed_list)?;
        let withdrawn = prefix::decode_prefixes(AfiSafi::IPV4_UNICAST, withdrawn)
            .map_err(|_| invalid_network())?;
        let announced =
            prefix::decode_prefixes(AfiSafi::IPV4_UNICAST, nlri).map_err(|_| invalid_network())?;
        let decoded = attr::decode(attr_field, ctx)?;
        let mut u = Update {
            withdrawn,
            attrs: decoded.attrs,
            announced,
            mp_reach: decoded.mp_reach,
            mp_unreach: decoded.mp_unreach,
            errors: decoded.errors,
            ..Update::default()
        };
        u.eor = u.end_of_rib_family(body);
        u.check_mandatory();
        u.treat_as_withdraw = u
            .errors
            .iter()
            .any(|e| e.action == ErrorAction::TreatAsWithdraw);
        u.discarded = u
            .errors
            .iter()
            .filter(|e| e.action == ErrorAction::AttributeDiscard)
            .map(|e| e.type_code)
            .collect();
        u.discarded.extend(decoded.ignored);
        Ok(u)
    }

    /// RFC 4724 §2: an UPDATE with nothing in it marks IPv4 unicast; one
    /// whose only content is an empty MP_UNREACH_NLRI marks that family.
    fn end_of_rib_family(&self, body: &[u8]) -> Option<AfiSafi> {
        if body == [0, 0, 0, 0] {
            return Some(AfiSafi::IPV4_UNICAST);
        }
        match &self.mp_unreach {
            Some(un)
                if un.prefixes.is_empty()
                    && self.withdrawn.is_empty()
                    && self.announced.is_empty()
                    && self.mp_reach.is_none()
                    && self.errors.is_empty()
                    && self.attrs == PathAttrs::default() =>
            {
                Some(un.family)
            }
            _ => None,
        }
    }

    fn check_mandatory(&mut self) {
        let reachable = !self.announced.is_empty()
            || self
                .mp_reach
                .as_ref()
                .is_some_and(|m| !m.prefixes.is_empty());
        if !reachable {
            return;
        }
        let mut missing = Vec::new();
        if self.attrs.origin.is_none() {
            missing.push(attr::type_code::ORIGIN);
        }
        if self.attrs.as_path.is_none() {
            missing.push(attr::type_code::AS_PATH);
        }
        if !self.announced.is_empty() && self.attrs.next_hop.is_none() {
            missing.push(attr::type_code::NEXT_HOP);
        }
        for t in missing {
            // Already reported as malformed: not reported twice.
            if self.errors.iter().any(|e| e.type_code == t) {
                continue;
            }
            self.errors.push(AttrError {
                type_code: t,
                action: ErrorAction::TreatAsWithdraw,
                notification: Notification::new(
                    code::UPDATE_MESSAGE,
                    update::MISSING_WELL_KNOWN_ATTRIBUTE,
                    [t],
                ),
            });
        }
    }

    /// Every prefix this UPDATE removes: the Withdrawn Routes field,
    /// MP_UNREACH_NLRI, and under treat-as-withdraw the announced ones too.
    pub fn withdrawals(&self) -> Vec<Prefix> {
        let mut out = self.withdrawn.clone();
        out.extend(
            self.mp_unreach
                .iter()
                .flat_map(|m| m.prefixes.iter().copied()),
        );
        if self.treat_as_withdraw {
            out.extend(self.announced.iter().copied());
            out.extend(
                self.mp_reach
                    .iter()
                    .flat_map(|m| m.prefixes.iter().copied()),
            );
        }
        out
    }

    /// Every prefix this UPDATE makes reachable, with its next hop; empty
    /// under treat-as-withdraw.
    pub fn announcements(&self) -> Vec<(Prefix, NextHop)> {
        if self.treat_as_withdraw {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(nh) = self.attrs.next_hop {
            out.extend(self.announced.iter().map(|p| (*p, NextHop::V4(nh))));
        }
        if let Some(m) = &self.mp_reach {
            out.extend(m.prefixes.iter().map(|p| (*p, m.next_hop)));
        }
        out
    }

    #[cfg(any(test, feature = "testing"))]
    /// Encodes this UPDATE as a whole message. MP_REACH_NLRI and
    /// MP_UNREACH_NLRI go first (RFC 7606 §5.1).
    pub fn encode(&self, ctx: &EncodeContext) -> Result<Vec<u8>, EncodeError> {
        let mut attrs = Vec::new();
        if let Some(m) = &self.mp_reach {
            attr::encode_mp_reach(m.family, &m.next_hop, &m.prefixes, &mut attrs);
        }
        if let Some(m) = &self.mp_unreach {
            attr::encode_mp_unreach(m.family, &m.prefixes, &mut attrs);
        }
        self.attrs.encode(ctx, &mut attrs);
        let withdrawn = encode_prefixes(&self.withdrawn);
        let nlri = encode_prefixes(&self.announced);
        assemble(&withdrawn, &attrs, &nlri, ctx.max_message_len)
    }
}

fn encode_prefixes(prefixes: &[Prefix]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in prefixes {
        prefix::encode_prefix(p, &mut out);
    }
    out
}

fn assemble(
    withdrawn: &[u8],
    attrs: &[u8],
    nlri: &[u8],
    max: usize,
) -> Result<Vec<u8>, EncodeError> {
    let max = max.min(wire::EXTENDED_MAX_MESSAGE_LEN);
    let len = HEADER_LEN + 4 + withdrawn.len() + attrs.len() + nlri.len();
    if len > max {
        return Err(EncodeError::TooLarge { len, max });
    }
    let mut body = Vec::with_capacity(len - HEADER_LEN);
    body.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    Ok(wire::encode_message(MessageType::Update, &body))
}

/// The End-of-RIB marker for `family` (RFC 4724 §2).
pub fn end_of_rib(family: AfiSafi) -> Vec<u8> {
    if family == AfiSafi::IPV4_UNICAST {
        return wire::encode_message(MessageType::Update, &[0, 0, 0, 0]);
    }
    let mut attrs = Vec::new();
    attr::encode_mp_unreach(family, &[], &mut attrs);
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(&attrs);
    wire::encode_message(MessageType::Update, &body)
}

/// Splits `prefixes` into runs whose encoding fits `budget` bytes each.
fn chunk_by_size(prefixes: &[Prefix], budget: usize) -> Vec<&[Prefix]> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, p) in prefixes.iter().enumerate() {
        let n = prefix::encoded_len(p);
        if used + n > budget && i > start {
            out.push(&prefixes[start..i]);
            start = i;
            used = 0;
        }
        used += n;
    }
    if start < prefixes.len() {
        out.push(&prefixes[start..]);
    }
    out
}

/// Packs announcements of `prefixes` sharing `attrs` and `next_hop` into as
/// few UPDATEs as fit `ctx.max_message_len`. IPv4 prefixes with an IPv4
/// next hop go in the NLRI field with NEXT_HOP; IPv6 ones in MP_REACH_NLRI
/// (RFC 4760 §3, RFC 2545 §3) without NEXT_HOP.
pub fn pack_announcements(
    attrs: &PathAttrs,
    next_hop: NextHop,
    prefixes: &[Prefix],
    ctx: &EncodeContext,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    if let Some(p) = prefixes
        .iter()
        .find(|p| p.addr().is_ipv4() != matches!(next_hop, NextHop::V4(_)))
    {
        return Err(EncodeError::FamilyMismatch {
            prefix: *p,
            next_hop,
        });
    }
    let max = ctx.max_message_len;
    let fixed = HEADER_LEN + 4;
    let mut shared = attrs.clone();
    match next_hop {
        NextHop::V4(nh) => {
            shared.next_hop = Some(nh);
            let mut attr_bytes = Vec::new();
            shared.encode(ctx, &mut attr_bytes);
            let budget = max.saturating_sub(fixed + attr_bytes.len());
            if budget < 5 {
                return Err(EncodeError::AttributesTooLarge {
                    len: attr_bytes.len(),
                    max,
                });
            }
            chunk_by_size(prefixes, budget)
                .into_iter()
                .map(|chunk| assemble(&[], &attr_bytes, &encode_prefixes(chunk), max))
                .collect()
        }
        NextHop::V6 { .. } => {
            shared.next_hop = None;
            let mut other = Vec::new();
            shared.encode(ctx, &mut other);
            let family = AfiSafi::IPV6_UNICAST;
            let mut probe = Vec::new();
            attr::encode_mp_reach(family, &next_hop, &[], &mut probe);
            let mp_fixed = probe.len() - 3; // value bytes before any prefix
            let room = max.saturating_sub(fixed + other.len() + mp_fixed);
            // The MP_REACH header is 4 bytes once its value passes 255.
            let budget = if room.saturating_sub(3) + mp_fixed > 255 {
                room.saturating_sub(4)
            } else {
                room.saturating_sub(3)
            };
            if budget < 17 {
                return Err(EncodeError::AttributesTooLarge {
                    len: other.len() + mp_fixed,
                    max,
                });
            }
            chunk_by_size(prefixes, budget)
                .into_iter()
                .map(|chunk| {
                    let mut attr_bytes = Vec::new();
                    attr::encode_mp_reach(family, &next_hop, chunk, &mut attr_bytes);
                    attr_bytes.extend_from_slice(&other);
                    assemble(&[], &attr_bytes, &[], max)
                })
                .collect()
        }
    }
}

/// Packs withdrawals: IPv4 in the Withdrawn Routes field, IPv6 in
/// MP_UNREACH_NLRI, as few messages as fit.
pub fn pack_withdrawals(
    prefixes: &[Prefix],
    ctx: &EncodeContext,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let max = ctx.max_message_len;
    let (v4, v6): (Vec<Prefix>, Vec<Prefix>) = prefixes.iter().partition(|p| p.addr().is_ipv4());
    let mut out = Vec::new();
    for chunk in chunk_by_size(&v4, max.saturating_sub(HEADER_LEN + 4)) {
        out.push(assemble(&encode_prefixes(chunk), &[], &[], max)?);
    }
    for chunk in chunk_by_size(&v6, max.saturating_sub(HEADER_LEN + 4 + 4 + 3)) {
        let mut attr_bytes = Vec::new();
        attr::encode_mp_unreach(AfiSafi::IPV6_UNICAST, chunk, &mut attr_bytes);
        out.push(assemble(&[], &attr_bytes, &[], max)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::{AsPath, Origin, type_code as tc};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ctx() -> DecodeContext {
        DecodeContext {
            four_octet_as: true,
            ibgp: false,
            families: vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST],
        }
    }

    fn enc(max: usize) -> EncodeContext {
        EncodeContext {
            four_octet_as: true,
            max_message_len: max,
        }
    }

    fn base_attrs() -> PathAttrs {
        PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65001])),
            ..PathAttrs::default()
        }
    }

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn body(msg: &[u8]) -> &[u8] {
        &msg[HEADER_LEN..]
    }

    fn raw_update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
        let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(withdrawn);
        b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(attrs);
        b.extend_from_slice(nlri);
        b
    }

    const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
    const PATH_65001: [u8; 9] = [0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9];
    const NH_10_0_0_1: [u8; 7] = [0x40, 3, 4, 10, 0, 0, 1];

    #[test]
    fn ipv4_announcement_decodes_with_its_next_hop() {
        let attrs = [&ORIGIN_IGP[..], &PATH_65001, &NH_10_0_0_1].concat();
        let u = Update::decode(&raw_update(&[], &attrs, &[24, 10, 1, 2]), &ctx()).unwrap();
        assert!(!u.treat_as_withdraw && u.eor.is_none());
        assert_eq!(
            u.announcements(),
            vec![(p("10.1.2.0/24"), NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)))]
        );
    }

    #[test]
    fn empty_update_is_ipv4_end_of_rib_not_an_empty_withdraw() {
        let u = Update::decode(&[0, 0, 0, 0], &ctx()).unwrap();
        assert_eq!(u.eor, Some(AfiSafi::IPV4_UNICAST));
        assert_eq!(body(&end_of_rib(AfiSafi::IPV4_UNICAST)), [0, 0, 0, 0]);
    }

    #[test]
    fn empty_mp_unreach_is_end_of_rib_of_its_family() {
        let msg = end_of_rib(AfiSafi::IPV6_UNICAST);
        assert_eq!(body(&msg), [0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1]);
        assert_eq!(
            Update::decode(body(&msg), &ctx()).unwrap().eor,
            Some(AfiSafi::IPV6_UNICAST)
        );
    }

    #[test]
    fn missing_next_hop_with_nlri_is_treat_as_withdraw() {
        let attrs = [&ORIGIN_IGP[..], &PATH_65001].concat();
        let u = Update::decode(&raw_update(&[], &attrs, &[24, 10, 1, 2]), &ctx()).unwrap();
        assert!(u.treat_as_withdraw);
        assert_eq!(
            u.errors[0].notification,
            Notification::new(3, 3, [tc::NEXT_HOP])
        );
        assert_eq!(u.withdrawals(), vec![p("10.1.2.0/24")]);
        assert_eq!(u.announcements(), vec![]);
    }

    #[test]
    fn missing_origin_with_mp_reach_is_treat_as_withdraw_but_next_hop_is_not_needed() {
        let mut attrs = Vec::new();
        attr::encode_mp_reach(
            AfiSafi::IPV6_UNICAST,
            &NextHop::V6 {
                global: Ipv6Addr::LOCALHOST,
                link_local: None,
            },
            &[p("2001:db8::/32")],
            &mut attrs,
        );
        attrs.extend_from_slice(&PATH_65001);
        let u = Update::decode(&raw_update(&[], &attrs, &[]), &ctx()).unwrap();
        assert!(u.treat_as_withdraw);
        assert_eq!(
            u.errors.iter().map(|e| e.type_code).collect::<Vec<_>>(),
            vec![tc::ORIGIN]
        );
        assert_eq!(u.withdrawals(), vec![p("2001:db8::/32")]);
    }

    #[test]
    fn withdraw_only_update_needs_no_attributes() {
        let u = Update::decode(&raw_update(&[16, 10, 9], &[], &[]), &ctx()).unwrap();
        assert!(!u.treat_as_withdraw && u.eor.is_none());
        assert_eq!(u.withdrawals(), vec![p("10.9.0.0/16")]);
    }

    #[test]
    fn nlri_prefix_over_32_bits_resets_with_invalid_network_field() {
        let attrs = [&ORIGIN_IGP[..], &PATH_65001, &NH_10_0_0_1].concat();
        assert_eq!(
            Update::decode(&raw_update(&[], &attrs, &[33, 1, 2, 3, 4, 5]), &ctx()),
            Err(Notification::new(3, 10, []))
        );
        assert_eq!(
            Update::decode(&raw_update(&[40, 1, 2, 3, 4, 5], &[], &[]), &ctx()),
            Err(Notification::new(3, 10, []))
        );
    }

    #[test]
    fn field_lengths_overrunning_the_message_are_malformed_attribute_list() {
        assert_eq!(
            Update::decode(&[0, 5, 0, 0], &ctx()),
            Err(Notification::new(3, 1, []))
        );
        assert_eq!(
            Update::decode(&[0, 0, 0, 9, 0x40], &ctx()),
            Err(Notification::new(3, 1, []))
        );
        assert_eq!(
            Update::decode(&[0], &ctx()),
            Err(Notification::new(3, 1, []))
        );
    }

    #[test]
    fn discarded_attribute_leaves_the_route_usable() {
        let attrs = [&ORIGIN_IGP[..], &PATH_65001, &NH_10_0_0_1, &[0x40, 6, 1, 0]].concat();
        let u = Update::decode(&raw_update(&[], &attrs, &[8, 10]), &ctx()).unwrap();
        assert!(!u.treat_as_withdraw);
        assert_eq!(u.discarded, vec![tc::ATOMIC_AGGREGATE]);
        assert!(!u.attrs.atomic_aggregate);
        assert_eq!(u.announcements().len(), 1);
    }

    #[test]
    fn attributes_not_applicable_to_the_session_are_listed_as_discarded() {
        let attrs = [
            &ORIGIN_IGP[..],
            &PATH_65001,
            &NH_10_0_0_1,
            &[0x40, 5, 4, 0, 0, 0, 200],
        ]
        .concat();
        let u = Update::decode(&raw_update(&[], &attrs, &[8, 10]), &ctx()).unwrap();
        assert_eq!(
            (u.attrs.local_pref, u.discarded.clone()),
            (None, vec![tc::LOCAL_PREF])
        );
        assert!(u.errors.is_empty() && !u.treat_as_withdraw);
        let ibgp = DecodeContext {
            ibgp: true,
            ..ctx()
        };
        assert_eq!(
            Update::decode(&raw_update(&[], &attrs, &[8, 10]), &ibgp)
                .unwrap()
                .attrs
                .local_pref,
            Some(200)
        );
    }

    #[test]
    fn update_round_trips_through_encode_and_decode() {
        let u = Update {
            withdrawn: vec![p("10.9.0.0/16")],
            attrs: PathAttrs {
                next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
                communities: vec![1],
                ..base_attrs()
            },
            announced: vec![p("10.1.0.0/24"), p("10.2.0.0/23")],
            mp_reach: Some(MpReach {
                family: AfiSafi::IPV6_UNICAST,
                next_hop: NextHop::V6 {
                    global: "2001:db8::1".parse().unwrap(),
                    link_local: Some("fe80::1".parse().unwrap()),
                },
                prefixes: vec![p("2001:db8:1::/48")],
            }),
            mp_unreach: Some(MpUnreach {
                family: AfiSafi::IPV6_UNICAST,
                prefixes: vec![p("2001:db8:2::/48")],
            }),
            ..Update::default()
        };
        let msg = u.encode(&enc(4096)).unwrap();
        assert_eq!(Update::decode(body(&msg), &ctx()).unwrap(), u);
    }

    #[test]
    fn encode_refuses_a_message_over_the_limit() {
        let u = Update {
            withdrawn: many_v4(1100),
            ..Update::default()
        };
        assert_eq!(
            u.encode(&enc(4096)),
            Err(EncodeError::TooLarge {
                len: 19 + 4 + 1100 * 4,
                max: 4096
            })
        );
        assert!(u.encode(&enc(65535)).is_ok());
    }

    fn many_v4(n: u32) -> Vec<Prefix> {
        (0..n)
            .map(|i| {
                Prefix::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
            })
            .collect()
    }

    #[test]
    fn packer_fills_ipv4_updates_up_to_the_limit_and_loses_no_prefix() {
        let prefixes = many_v4(3000);
        let msgs = pack_announcements(
            &base_attrs(),
            NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)),
            &prefixes,
            &enc(4096),
        )
        .unwrap();
        assert!(msgs.iter().all(|m| m.len() <= 4096));
        // Every message but the last is full to within one prefix.
        assert!(msgs[..msgs.len() - 1].iter().all(|m| m.len() > 4096 - 4));
        let mut back = Vec::new();
        for m in &msgs {
            let u = Update::decode(body(m), &ctx()).unwrap();
            assert_eq!(u.attrs.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
            back.extend(u.announced);
        }
        assert_eq!(back, prefixes);
        // ORIGIN (4) + AS_PATH (9) + NEXT_HOP (7) = 20 bytes of attributes.
        assert_eq!(msgs.len(), 3000usize.div_ceil((4096 - 23 - 20) / 4));
    }

    #[test]
    fn packer_puts_ipv6_prefixes_in_mp_reach_without_next_hop_attribute() {
        let prefixes: Vec<Prefix> = (0..600u128)
            .map(|i| {
                Prefix::V6(
                    ipnet::Ipv6Net::new(Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 64)), 64)
                        .unwrap(),
                )
            })
            .collect();
        let nh = NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None,
        };
        let msgs = pack_announcements(&base_attrs(), nh, &prefixes, &enc(4096)).unwrap();
        assert!(msgs.len() > 1 && msgs.iter().all(|m| m.len() <= 4096));
        let mut back = Vec::new();
        for m in &msgs {
            let u = Update::decode(body(m), &ctx()).unwrap();
            assert!(u.attrs.next_hop.is_none() && !u.treat_as_withdraw);
            let mp = u.mp_reach.unwrap();
            assert_eq!(mp.next_hop, nh);
            back.extend(mp.prefixes);
        }
        assert_eq!(back, prefixes);
    }

    #[test]
    fn extended_messages_let_the_packer_use_65535_bytes() {
        let msgs = pack_announcements(
            &base_attrs(),
            NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)),
            &many_v4(20000),
            &enc(65535),
        )
        .unwrap();
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].len() > 65535 - 4);
    }

    #[test]
    fn packer_refuses_a_prefix_of_the_wrong_family() {
        let err = pack_announcements(
            &base_attrs(),
            NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)),
            &[p("2001:db8::/32")],
            &enc(4096),
        )
        .unwrap_err();
        assert!(matches!(err, EncodeError::FamilyMismatch { .. }));
    }

    #[test]
    fn withdrawals_are_packed_per_family() {
        let mut prefixes = many_v4(1500);
        prefixes.push(p("2001:db8::/32"));
        let msgs = pack_withdrawals(&prefixes, &enc(4096)).unwrap();
        let mut back = Vec::new();
        for m in &msgs {
            assert!(m.len() <= 4096);
            back.extend(Update::decode(body(m), &ctx()).unwrap().withdrawals());
        }
        assert_eq!(back, prefixes);
        assert_eq!(msgs.len(), 3);
    }
}
