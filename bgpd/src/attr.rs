//! Path attributes (RFC 4271 §4.3, §5): decoding with the revised error
//! handling of RFC 7606, and encoding.
//!
//! [`decode`] splits the path attribute field itself, checks flags and
//! lengths, and classifies every fault with the approach RFC 7606 §2 names
//! ([`ErrorAction`]): attribute discard, treat-as-withdraw, or session reset.
//! Per attribute (RFC 7606 §7 unless noted):
//!
//! | attribute | malformed when | approach |
//! |---|---|---|
//! | ORIGIN (1) | length ≠ 1, value > 2 | treat-as-withdraw |
//! | AS_PATH (2) | unknown segment type, overrun, underrun, zero-length segment, AS 0 (RFC 7607) | treat-as-withdraw |
//! | NEXT_HOP (3) | length ≠ 4; not a host address (RFC 4271 §6.3) | treat-as-withdraw |
//! | MULTI_EXIT_DISC (4) | length ≠ 4 | treat-as-withdraw |
//! | LOCAL_PREF (5) | from eBGP: always discarded; iBGP: length ≠ 4 | discard / treat-as-withdraw |
//! | ATOMIC_AGGREGATE (6) | length ≠ 0 | attribute discard |
//! | AGGREGATOR (7) | length ≠ 6 (8 with 4-octet AS); AS 0 (RFC 7607) | attribute discard |
//! | COMMUNITIES (8) | length not a non-zero multiple of 4 | treat-as-withdraw |
//! | ORIGINATOR_ID (9) | from eBGP: discarded; iBGP: length ≠ 4 | discard / treat-as-withdraw |
//! | CLUSTER_LIST (10) | from eBGP: discarded; iBGP: length not a non-zero multiple of 4 | discard / treat-as-withdraw |
//! | EXTENDED_COMMUNITIES (16) | length not a non-zero multiple of 8 (§7.14); else passed on as received | treat-as-withdraw |
//! | MP_REACH_NLRI (14) | shorter than its fixed part, next-hop length wrong, NLRI syntax (§5.3, §7.11) | session reset (3/9, RFC 4760 §7) |
//! | MP_UNREACH_NLRI (15) | shorter than AFI/SAFI, NLRI syntax | session reset (3/9) |
//! | AS4_PATH (17), AS4_AGGREGATOR (18) | malformed (RFC 6793 §6); any, from a 4-octet speaker (§4.1) | attribute discard |
//! | LARGE_COMMUNITIES (32) | length not a non-zero multiple of 12 (RFC 8092 §5) | treat-as-withdraw |
//!
//! Across attributes: Optional/Transitive flags in conflict with the type
//! → treat-as-withdraw (RFC 7606 §3 c); a truncated attribute header or a
//! length overrunning the field → treat-as-withdraw, parsing stops (§4);
//! MP_REACH/MP_UNREACH twice → session reset 3/1, any other attribute twice →
//! later copies discarded (§3 g); an unrecognized well-known attribute →
//! session reset 3/2 (RFC 4271 §6.3); an unrecognized optional transitive one
//! is kept for propagation with the Partial bit set (RFC 4271 §5), an
//! unrecognized optional non-transitive one is quietly ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::notification::{Notification, code, update};
use crate::open::AS_TRANS;
use crate::prefix::{self, AfiSafi, Prefix};

/// Attribute type codes (IANA "BGP Path Attributes").
pub mod type_code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// Attribute flag bits (RFC 4271 §4.3).
pub mod flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

use type_code as tc;

/// The error-handling approaches of RFC 7606 §2, weakest first, so that
/// `max` picks the one to apply when several errors occur (§3 f).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorAction {
    AttributeDiscard,
    TreatAsWithdraw,
    SessionReset,
}

/// One malformed attribute: its type, the approach, and the NOTIFICATION
/// RFC 4271 would send (kept for logging; only session reset sends it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrError {
    pub type_code: u8,
    pub action: ErrorAction,
    pub notification: Notification,
}

/// What decoding needs to know about the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeContext {
    /// 4-octet AS negotiated (RFC 6793): AS_PATH/AGGREGATOR width.
    pub four_octet_as: bool,
    /// Peer is in our AS: LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST are honoured.
    pub ibgp: bool,
    /// Negotiated families; MP attributes of other families are discarded.
    pub families: Vec<AfiSafi>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// AS_PATH segment types (RFC 4271 §4.3: AS_SET = 1, AS_SEQUENCE = 2;
/// RFC 5065 §3: AS_CONFED_SEQUENCE = 3, AS_CONFED_SET = 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentType {
    Set = 1,
    Sequence = 2,
    ConfedSequence = 3,
    ConfedSet = 4,
}

impl SegmentType {
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => SegmentType::Set,
            2 => SegmentType::Sequence,
            3 => SegmentType::ConfedSequence,
            4 => SegmentType::ConfedSet,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Segment {
    pub kind: SegmentType,
    pub asns: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    pub segments: Vec<Segment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE.
    pub fn sequence(asns: impl Into<Vec<u32>>) -> Self {
        let asns = asns.into();
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![Segment {
                kind: SegmentType::Sequence,
                asns,
            }],
        }
    }

    /// The length used in best-path selection (RFC 4271 §9.1.2.2 a: a set
    /// counts as one; RFC 5065 §5.3: confederation segments count zero).
    pub fn length(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentType::Sequence => s.asns.len(),
                SegmentType::Set => 1,
                SegmentType::ConfedSequence | SegmentType::ConfedSet => 0,
            })
            .sum()
    }

    /// Prepends `asn` to the leading AS_SEQUENCE (RFC 4271 §5.1.2).
    pub fn prepend(&mut self, asn: u32) {
        match self.segments.first_mut() {
            Some(s) if s.kind == SegmentType::Sequence && s.asns.len() < 255 => {
                s.asns.insert(0, asn)
            }
            _ => self.segments.insert(
                0,
                Segment {
                    kind: SegmentType::Sequence,
                    asns: vec![asn],
                },
            ),
        }
    }

    /// Every AS number, in order.
    /// Removes and returns the first AS of a path that starts with an
    /// AS_SEQUENCE (what [`prepend`](Self::prepend) put there).
    pub fn pop_first(&mut self) -> Option<u32> {
        let first = self.segments.first_mut()?;
        if first.kind != SegmentType::Sequence || first.asns.is_empty() {
            return None;
        }
        let asn = first.asns.remove(0);
        if first.asns.is_empty() {
            self.segments.remove(0);
        }
        Some(asn)
    }

    pub fn asns(&self) -> impl Iterator<Item = u32> + '_ {
        self.segments.iter().flat_map(|s| s.asns.iter().copied())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: u32,
    pub addr: Ipv4Addr,
}

/// A large community (RFC 8092 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity {
    pub global: u32,
    pub local1: u32,
    pub local2: u32,
}

/// A next hop as MP_REACH_NLRI carries it (RFC 4760 §3, RFC 2545 §3 for
/// the optional IPv6 link-local address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHop {
    V4(Ipv4Addr),
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

impl NextHop {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            NextHop::V4(a) => {
                out.push(4);
                out.extend_from_slice(&a.octets());
            }
            NextHop::V6 { global, link_local } => {
                out.push(if link_local.is_some() { 32 } else { 16 });
                out.extend_from_slice(&global.octets());
                if let Some(ll) = link_local {
                    out.extend_from_slice(&ll.octets());
                }
            }
        }
    }

    pub fn addr(&self) -> IpAddr {
        match self {
            NextHop::V4(a) => IpAddr::V4(*a),
            NextHop::V6 { global, .. } => IpAddr::V6(*global),
        }
    }
}

/// MP_REACH_NLRI (RFC 4760 §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpReach {
    pub family: AfiSafi,
    pub next_hop: NextHop,
    pub prefixes: Vec<Prefix>,
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpUnreach {
    pub family: AfiSafi,
    pub prefixes: Vec<Prefix>,
}

/// An attribute kept as bytes: an unrecognized optional transitive one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttr {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// The path attributes of a route, validated and owned. MP_REACH_NLRI and
/// MP_UNREACH_NLRI are not here: they belong to the UPDATE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PathAttrs {
    pub origin: Option<Origin>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<u32>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub large_communities: Vec<LargeCommunity>,
    pub unknown: Vec<RawAttr>,
}

/// The result of [`decode`] short of a session reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    pub attrs: PathAttrs,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Malformed attributes handled by discard or treat-as-withdraw.
    pub errors: Vec<AttrError>,
    /// Type codes dropped without error: repeats (RFC 7606 §3 g), iBGP-only
    /// attributes from eBGP, AS4_* from a 4-octet speaker, MP attributes of
    /// families not negotiated. Malformed discards are in `errors`.
    pub ignored: Vec<u8>,
}

/// The NOTIFICATION data for attribute errors: the attribute (type,
/// length, value), RFC 4271 §6.3.
fn attr_data(flags: u8, type_code: u8, value: &[u8]) -> Vec<u8> {
    let mut data = vec![flags, type_code];
    if flags & flag::EXTENDED_LENGTH != 0 {
        data.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
    } else {
        data.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
    }
    data.extend_from_slice(value);
    data
}

struct Raw<'a> {
    flags: u8,
    type_code: u8,
    value: &'a [u8],
}

impl Raw<'_> {
    fn error(&self, action: ErrorAction, subcode: u8) -> AttrError {
        AttrError {
            type_code: self.type_code,
            action,
            notification: Notification::new(
                code::UPDATE_MESSAGE,
                subcode,
                attr_data(self.flags, self.type_code, self.value),
            ),
        }
    }

    fn length_error(&self, action: ErrorAction) -> AttrError {
        self.error(action, update::ATTRIBUTE_LENGTH_ERROR)
    }
}

/// Expected (optional, transitive) bits of recognized attributes.
fn expected_flags(type_code: u8) -> Option<(bool, bool)> {
    Some(match type_code {
        tc::ORIGIN | tc::AS_PATH | tc::NEXT_HOP | tc::LOCAL_PREF | tc::ATOMIC_AGGREGATE => {
            (false, true)
        }
        tc::MULTI_EXIT_DISC
        | tc::ORIGINATOR_ID
        | tc::CLUSTER_LIST
        | tc::MP_REACH_NLRI
        | tc::MP_UNREACH_NLRI => (true, false),
        tc::AGGREGATOR
        | tc::COMMUNITIES
        | tc::EXTENDED_COMMUNITIES
        | tc::AS4_PATH
        | tc::AS4_AGGREGATOR
        | tc::LARGE_COMMUNITIES => (true, true),
        _ => return None,
    })
}

/// Decodes the path attribute field of an UPDATE (RFC 4271 §4.3). `Err` is
/// a session reset; everything milder is in [`Decoded::errors`].
pub fn decode(buf: &[u8], ctx: &DecodeContext) -> Result<Decoded, Notification> {
    let mut out = Decoded::default();
    let mut seen = [false; 256];
    let mut as4_path = None;
    let mut as4_aggregator = None;
    let mut rest = buf;
    while !rest.is_empty() {
        // RFC 7606 §4: a header that does not fit, or a length overrunning
        // the field, is treat-as-withdraw; the field length still locates
        // the NLRI, so parsing of attributes just stops.
        let header = match rest {
            [f, t, hi, lo, ..] if f & flag::EXTENDED_LENGTH != 0 => {
                Some((*f, *t, usize::from(u16::from_be_bytes([*hi, *lo])), 4))
            }
            [f, t, len, ..] if f & flag::EXTENDED_LENGTH == 0 => {
                Some((*f, *t, usize::from(*len), 3))
            }
            _ => None,
        };
        let Some((flags, type_code, len, header_len)) = header else {
            out.errors.push(AttrError {
                type_code: rest.get(1).copied().unwrap_or(0),
                action: ErrorAction::TreatAsWithdraw,
                notification: Notification::new(
                    code::UPDATE_MESSAGE,
                    update::MALFORMED_ATTRIBUTE_LIST,
                    [],
                ),
            });
            break;
        };
        let Some(value) = rest.get(header_len..header_len + len) else {
            out.errors.push(AttrError {
                type_code,
                action: ErrorAction::TreatAsWithdraw,
                notification: Notification::new(
                    code::UPDATE_MESSAGE,
                    update::ATTRIBUTE_LENGTH_ERROR,
                    rest.to_vec(),
                ),
            });
            break;
        };
        rest = &rest[header_len + len..];
        let raw = Raw {
            flags,
            type_code,
            value,
        };
        if std::mem::replace(&mut seen[usize::from(type_code)], true) {
            if matches!(type_code, tc::MP_REACH_NLRI | tc::MP_UNREACH_NLRI) {
                return Err(Notification::new(
                    code::UPDATE_MESSAGE,
                    update::MALFORMED_ATTRIBUTE_LIST,
                    [],
                ));
            }
            out.ignored.push(type_code);
            continue;
        }
        if not_applicable(type_code, ctx) {
            // Dropped whatever its form: flags do not matter either.
            out.ignored.push(type_code);
            continue;
        }
        match expected_flags(type_code) {
            Some(expected)
                if (flags & flag::OPTIONAL != 0, flags & flag::TRANSITIVE != 0) != expected =>
            {
                out.errors
                    .push(raw.error(ErrorAction::TreatAsWithdraw, update::ATTRIBUTE_FLAGS_ERROR));
            }
            Some(_) => {}
            None if flags & flag::OPTIONAL == 0 => {
                return Err(raw
                    .error(
                        ErrorAction::SessionReset,
                        update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    )
                    .notification);
            }
            None => {}
        }
        match decode_one(&raw, ctx, &mut out, &mut as4_path, &mut as4_aggregator) {
            Ok(()) => {}
            Err(e) if e.action == ErrorAction::SessionReset => return Err(e.notification),
            Err(e) => out.errors.push(e),
        }
    }
    if !ctx.four_octet_as {
        merge_as4(&mut out.attrs, as4_path, as4_aggregator);
    }
    Ok(out)
}

/// Attributes dropped on this session whatever they hold: LOCAL_PREF,
/// ORIGINATOR_ID and CLUSTER_LIST from eBGP (RFC 7606 §7.5, §7.9, §7.10),
/// AS4_PATH and AS4_AGGREGATOR from a 4-octet speaker (RFC 6793 §4.1).
fn not_applicable(type_code: u8, ctx: &DecodeContext) -> bool {
    match type_code {
        tc::LOCAL_PREF | tc::ORIGINATOR_ID | tc::CLUSTER_LIST => !ctx.ibgp,
        tc::AS4_PATH | tc::AS4_AGGREGATOR => ctx.four_octet_as,
        _ => false,
    }
}

fn u32_at(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn decode_one(
    raw: &Raw<'_>,
    ctx: &DecodeContext,
    out: &mut Decoded,
    as4_path: &mut Option<AsPath>,
    as4_aggregator: &mut Option<Aggregator>,
) -> Result<(), AttrError> {
    use ErrorAction::{
        AttributeDiscard as Discard, SessionReset as Reset, TreatAsWithdraw as Withdraw,
    };
    let v = raw.value;
    let attrs = &mut out.attrs;
    match raw.type_code {
        tc::ORIGIN => {
            let [o] = v else {
                return Err(raw.length_error(Withdraw));
            };
            attrs.origin = Some(match o {
                0 => Origin::Igp,
                1 => Origin::Egp,
                2 => Origin::Incomplete,
                _ => return Err(raw.error(Withdraw, update::INVALID_ORIGIN_ATTRIBUTE)),
            });
        }
        tc::AS_PATH => {
            let width = if ctx.four_octet_as { 4 } else { 2 };
            let path = decode_as_path(v, width)
                .ok_or_else(|| raw.error(Withdraw, update::MALFORMED_AS_PATH))?;
            attrs.as_path = Some(path);
        }
        tc::NEXT_HOP => {
            let &[a, b, c, d] = v else {
                return Err(raw.length_error(Withdraw));
            };
            let addr = Ipv4Addr::new(a, b, c, d);
            if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
                return Err(raw.error(Withdraw, update::INVALID_NEXT_HOP_ATTRIBUTE));
            }
            attrs.next_hop = Some(addr);
        }
        tc::MULTI_EXIT_DISC => {
            let [_, _, _, _] = v else {
                return Err(raw.length_error(Withdraw));
            };
            attrs.med = Some(u32_at(v));
        }
        tc::LOCAL_PREF => {
            let [_, _, _, _] = v else {
                return Err(raw.length_error(Withdraw));
            };
            attrs.local_pref = Some(u32_at(v));
        }
        tc::ORIGINATOR_ID => {
            let &[a, b, c, d] = v else {
                return Err(raw.length_error(Withdraw));
            };
            attrs.originator_id = Some(Ipv4Addr::new(a, b, c, d));
        }
        tc::CLUSTER_LIST => {
            if v.is_empty() || !v.len().is_multiple_of(4) {
                return Err(raw.length_error(Withdraw));
            }
            attrs.cluster_list = v
                .chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect();
        }
        tc::ATOMIC_AGGREGATE => {
            if !v.is_empty() {
                return Err(raw.length_error(Discard));
            }
            attrs.atomic_aggregate = true;
        }
        tc::AGGREGATOR => {
            let agg = decode_aggregator(v, if ctx.four_octet_as { 4 } else { 2 })
                .ok_or_else(|| raw.length_error(Discard))?;
            if agg.asn == 0 {
                return Err(raw.error(Discard, update::OPTIONAL_ATTRIBUTE_ERROR));
            }
            attrs.aggregator = Some(agg);
        }
        tc::COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(4) {
                return Err(raw.length_error(Withdraw));
            }
            attrs.communities = v.chunks_exact(4).map(u32_at).collect();
        }
        tc::EXTENDED_COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(8) {
                return Err(raw.length_error(Withdraw));
            }
            // Not interpreted: carried on like an unrecognized transitive one.
            attrs.unknown.push(RawAttr {
                flags: raw.flags,
                type_code: raw.type_code,
                value: v.to_vec(),
            });
        }
        tc::LARGE_COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(12) {
                return Err(raw.length_error(Withdraw));
            }
            attrs.large_communities = v
                .chunks_exact(12)
                .map(|c| LargeCommunity {
                    global: u32_at(c),
                    local1: u32_at(&c[4..]),
                    local2: u32_at(&c[8..]),
                })
                .collect();
        }
        tc::AS4_PATH => {
            let path = decode_as_path(v, 4)
                .filter(|p| {
                    p.segments
                        .iter()
                        .all(|s| matches!(s.kind, SegmentType::Sequence | SegmentType::Set))
                })
                .ok_or_else(|| raw.error(Discard, update::OPTIONAL_ATTRIBUTE_ERROR))?;
            *as4_path = Some(path);
        }
        tc::AS4_AGGREGATOR => {
            let agg = decode_aggregator(v, 4)
                .filter(|a| a.asn != 0)
                .ok_or_else(|| raw.length_error(Discard))?;
            *as4_aggregator = Some(agg);
        }
        tc::MP_REACH_NLRI => {
            let bad = || raw.error(Reset, update::OPTIONAL_ATTRIBUTE_ERROR);
            let Some((&[afi_hi, afi_lo, safi, nh_len], rest)) = v.split_first_chunk::<4>() else {
                return Err(bad());
            };
            let family = AfiSafi::new(u16::from_be_bytes([afi_hi, afi_lo]), safi);
            let nh = rest.get(..usize::from(nh_len)).ok_or_else(bad)?;
            // One reserved byte (RFC 4760 §3), then the NLRI.
            let nlri = rest.get(usize::from(nh_len) + 1..).ok_or_else(bad)?;
            if !ctx.families.contains(&family) || !family.is_supported() {
                out.ignored.push(raw.type_code);
                return Ok(());
            }
            let next_hop = match (family.afi, nh) {
                (prefix::AFI_IPV4, &[a, b, c, d]) => NextHop::V4(Ipv4Addr::new(a, b, c, d)),
                (prefix::AFI_IPV6, nh) if nh.len() == 16 || nh.len() == 32 => {
                    let addr =
                        |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or_default());
                    NextHop::V6 {
                        global: addr(&nh[..16]),
                        link_local: nh.get(16..).filter(|b| b.len() == 16).map(addr),
                    }
                }
                _ => return Err(bad()),
            };
            let prefixes = prefix::decode_prefixes(family, nlri).map_err(|_| bad())?;
            out.mp_reach = Some(MpReach {
                family,
                next_hop,
                prefixes,
            });
        }
        tc::MP_UNREACH_NLRI => {
            let Some((&[afi_hi, afi_lo, safi], nlri)) = v.split_first_chunk::<3>() else {
                return Err(raw.error(Reset, update::OPTIONAL_ATTRIBUTE_ERROR));
            };
            let family = AfiSafi::new(u16::from_be_bytes([afi_hi, afi_lo]), safi);
            if !ctx.families.contains(&family) || !family.is_supported() {
                out.ignored.push(raw.type_code);
                return Ok(());
            }
            let prefixes = prefix::decode_prefixes(family, nlri)
                .map_err(|_| raw.error(Reset, update::OPTIONAL_ATTRIBUTE_ERROR))?;
            out.mp_unreach = Some(MpUnreach { family, prefixes });
        }
        _ if raw.flags & flag::TRANSITIVE != 0 => attrs.unknown.push(RawAttr {
            flags: raw.flags,
            type_code: raw.type_code,
            value: v.to_vec(),
        }),
        _ => {}
    }
    Ok(())
}

fn decode_aggregator(v: &[u8], width: usize) -> Option<Aggregator> {
    if v.len() != width + 4 {
        return None;
    }
    let asn = if width == 4 {
        u32_at(v)
    } else {
        u32::from(u16::from_be_bytes([v[0], v[1]]))
    };
    Some(Aggregator {
        asn,
        addr: Ipv4Addr::new(v[width], v[width + 1], v[width + 2], v[width + 3]),
    })
}

/// AS_PATH segments (RFC 7606 §7.2; AS 0 is malformed per RFC 7607 §2).
fn decode_as_path(mut v: &[u8], width: usize) -> Option<AsPath> {
    let mut path = AsPath::default();
    while !v.is_empty() {
        let (&[kind, count], rest) = v.split_first_chunk::<2>()?;
        let kind = SegmentType::from_code(kind)?;
        if count == 0 {
            return None;
        }
        let bytes = rest.get(..usize::from(count) * width)?;
        let asns: Vec<u32> = bytes
            .chunks_exact(width)
            .map(|c| {
                if width == 4 {
                    u32_at(c)
                } else {
                    u32::from(u16::from_be_bytes([c[0], c[1]]))
                }
            })
            .collect();
        if asns.contains(&0) {
            return None;
        }
        path.segments.push(Segment { kind, asns });
        v = &rest[bytes.len()..];
    }
    Some(path)
}

/// Rebuilds the 4-octet path from AS_PATH and AS4_PATH (RFC 6793 §4.2.3).
fn merge_as4(attrs: &mut PathAttrs, as4_path: Option<AsPath>, as4_aggregator: Option<Aggregator>) {
    if let Some(agg) = attrs.aggregator
        && agg.asn != u32::from(AS_TRANS)
    {
        // AGGREGATOR from a 2-octet speaker that did not aggregate with a
        // 4-octet AS: AS4_AGGREGATOR and AS4_PATH are stale; ignore both.
        return;
    }
    if let Some(agg4) = as4_aggregator {
        attrs.aggregator = Some(agg4);
    }
    let (Some(as4), Some(path)) = (as4_path, attrs.as_path.as_ref()) else {
        return;
    };
    let Some(mut keep) = path.length().checked_sub(as4.length()) else {
        return;
    };
    let mut merged = AsPath::default();
    for seg in &path.segments {
        match seg.kind {
            SegmentType::ConfedSequence | SegmentType::ConfedSet => {
                merged.segments.push(seg.clone())
            }
            SegmentType::Set if keep > 0 => {
                keep -= 1;
                merged.segments.push(seg.clone());
            }
            SegmentType::Sequence if keep > 0 => {
                let n = keep.min(seg.asns.len());
                keep -= n;
                merged.segments.push(Segment {
                    kind: SegmentType::Sequence,
                    asns: seg.asns[..n].to_vec(),
                });
            }
            _ => {}
        }
    }
    merged.segments.extend(as4.segments);
    attrs.as_path = Some(merged);
}

/// How to encode for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeContext {
    pub four_octet_as: bool,
    /// Largest message the peer accepts (4096 or 65535).
    pub max_message_len: usize,
}

fn push_attr(out: &mut Vec<u8>, flags: u8, type_code: u8, value: &[u8]) {
    if value.len() > 255 {
        out.push(flags | flag::EXTENDED_LENGTH);
        out.push(type_code);
        out.extend_from_slice(
            &u16::try_from(value.len())
                .expect("attribute over 64 KiB")
                .to_be_bytes(),
        );
    } else {
        out.push(flags & !flag::EXTENDED_LENGTH);
        out.push(type_code);
        out.push(value.len() as u8);
    }
    out.extend_from_slice(value);
}

/// Encodes AS_PATH segments with `width`-byte AS numbers; AS numbers that
/// do not fit 2 bytes become AS_TRANS. Segments longer than 255 are split.
/// Segment types follow RFC 4271 §4.3: AS_SET = 1, AS_SEQUENCE = 2.
fn encode_as_path(path: &AsPath, width: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for seg in &path.segments {
        for chunk in seg.asns.chunks(255) {
            out.push(seg.kind as u8);
            out.push(chunk.len() as u8);
            for &asn in chunk {
                if width == 4 {
                    out.extend_from_slice(&asn.to_be_bytes());
                } else {
                    out.extend_from_slice(&u16::try_from(asn).unwrap_or(AS_TRANS).to_be_bytes());
                }
            }
        }
    }
    out
}

fn encode_aggregator(agg: &Aggregator, width: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(8);
    if width == 4 {
        v.extend_from_slice(&agg.asn.to_be_bytes());
    } else {
        v.extend_from_slice(&u16::try_from(agg.asn).unwrap_or(AS_TRANS).to_be_bytes());
    }
    v.extend_from_slice(&agg.addr.octets());
    v
}

/// Encodes MP_REACH_NLRI with the given prefixes.
pub fn encode_mp_reach(
    family: AfiSafi,
    next_hop: &NextHop,
    prefixes: &[Prefix],
    out: &mut Vec<u8>,
) {
    let mut v = Vec::new();
    v.extend_from_slice(&family.afi.to_be_bytes());
    v.push(family.safi);
    next_hop.encode(&mut v);
    v.push(0);
    for p in prefixes {
        prefix::encode_prefix(p, &mut v);
    }
    push_attr(out, flag::OPTIONAL, tc::MP_REACH_NLRI, &v);
}

/// Encodes MP_UNREACH_NLRI with the given prefixes (none: End-of-RIB).
pub fn encode_mp_unreach(family: AfiSafi, prefixes: &[Prefix], out: &mut Vec<u8>) {
    let mut v = Vec::new();
    v.extend_from_slice(&family.afi.to_be_bytes());
    v.push(family.safi);
    for p in prefixes {
        prefix::encode_prefix(p, &mut v);
    }
    push_attr(out, flag::OPTIONAL, tc::MP_UNREACH_NLRI, &v);
}

impl PathAttrs {
    /// Appends the attributes in type-code order. On a 2-octet session,
    /// AS numbers over 65535 go out as AS_TRANS with AS4_PATH and
    /// AS4_AGGREGATOR carrying the real ones (RFC 6793 §4.2.2).
    pub fn encode(&self, ctx: &EncodeContext, out: &mut Vec<u8>) {
        const WK: u8 = flag::TRANSITIVE;
        const OT: u8 = flag::OPTIONAL | flag::TRANSITIVE;
        const ONT: u8 = flag::OPTIONAL;
        let width = if ctx.four_octet_as { 4 } else { 2 };
        if let Some(o) = self.origin {
            push_attr(out, WK, tc::ORIGIN, &[o as u8]);
        }
        if let Some(path) = &self.as_path {
            push_attr(out, WK, tc::AS_PATH, &encode_as_path(path, width));
        }
        if let Some(nh) = self.next_hop {
            push_attr(out, WK, tc::NEXT_HOP, &nh.octets());
        }
        if let Some(med) = self.med {
            push_attr(out, ONT, tc::MULTI_EXIT_DISC, &med.to_be_bytes());
        }
        if let Some(lp) = self.local_pref {
            push_attr(out, WK, tc::LOCAL_PREF, &lp.to_be_bytes());
        }
        if self.atomic_aggregate {
            push_attr(out, WK, tc::ATOMIC_AGGREGATE, &[]);
        }
        if let Some(agg) = &self.aggregator {
            push_attr(out, OT, tc::AGGREGATOR, &encode_aggregator(agg, width));
        }
        if !self.communities.is_empty() {
            let v: Vec<u8> = self
                .communities
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect();
            push_attr(out, OT, tc::COMMUNITIES, &v);
        }
        if let Some(id) = self.originator_id {
            push_attr(out, ONT, tc::ORIGINATOR_ID, &id.octets());
        }
        if !self.cluster_list.is_empty() {
            let v: Vec<u8> = self.cluster_list.iter().flat_map(|c| c.octets()).collect();
            push_attr(out, ONT, tc::CLUSTER_LIST, &v);
        }
        if !ctx.four_octet_as {
            if let Some(path) = self
                .as_path
                .as_ref()
                .filter(|p| p.asns().any(|a| a > 0xffff))
            {
                let public = AsPath {
                    segments: path
                        .segments
                        .iter()
                        .filter(|s| matches!(s.kind, SegmentType::Sequence | SegmentType::Set))
                        .cloned()
                        .collect(),
                };
                push_attr(out, OT, tc::AS4_PATH, &encode_as_path(&public, 4));
            }
            if let Some(agg) = self.aggregator.as_ref().filter(|a| a.asn > 0xffff) {
                push_attr(out, OT, tc::AS4_AGGREGATOR, &encode_aggregator(agg, 4));
            }
        }
        if !self.large_communities.is_empty() {
            let v: Vec<u8> = self
                .large_communities
                .iter()
                .flat_map(|c| [c.global, c.local1, c.local2])
                .flat_map(u32::to_be_bytes)
                .collect();
            push_attr(out, OT, tc::LARGE_COMMUNITIES, &v);
        }
        for raw in &self.unknown {
            // RFC 4271 §5: an unrecognized transitive attribute is passed on
            // with the Partial bit set.
            push_attr(out, raw.flags | flag::PARTIAL, raw.type_code, &raw.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(four_octet_as: bool, ibgp: bool) -> DecodeContext {
        DecodeContext {
            four_octet_as,
            ibgp,
            families: vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST],
        }
    }

    fn one(flags: u8, type_code: u8, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push_attr(&mut v, flags, type_code, value);
        v
    }

    fn action_of(buf: &[u8], c: &DecodeContext) -> Option<ErrorAction> {
        match decode(buf, c) {
            Err(_) => Some(ErrorAction::SessionReset),
            Ok(d) => d.errors.iter().map(|e| e.action).max(),
        }
    }

    #[test]
    fn well_formed_attributes_round_trip_on_a_four_octet_session() {
        let attrs = PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath {
                segments: vec![
                    Segment {
                        kind: SegmentType::Sequence,
                        asns: vec![65001, 4_200_000_000],
                    },
                    Segment {
                        kind: SegmentType::Set,
                        asns: vec![1, 2],
                    },
                ],
            }),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            med: Some(5),
            local_pref: Some(200),
            atomic_aggregate: true,
            aggregator: Some(Aggregator {
                asn: 65001,
                addr: Ipv4Addr::new(1, 1, 1, 1),
            }),
            communities: vec![0xfde9_0064],
            originator_id: Some(Ipv4Addr::new(9, 9, 9, 9)),
            cluster_list: vec![Ipv4Addr::new(8, 8, 8, 8)],
            large_communities: vec![LargeCommunity {
                global: 65001,
                local1: 1,
                local2: 2,
            }],
            unknown: vec![RawAttr {
                flags: flag::OPTIONAL | flag::TRANSITIVE | flag::PARTIAL,
                type_code: 99,
                value: vec![7],
            }],
        };
        let mut buf = Vec::new();
        attrs.encode(
            &EncodeContext {
                four_octet_as: true,
                max_message_len: 4096,
            },
            &mut buf,
        );
        let d = decode(&buf, &ctx(true, true)).unwrap();
        assert_eq!(d.errors, vec![]);
        assert_eq!(d.attrs, attrs);
    }

    #[test]
    fn as_sequence_is_encoded_as_type_2_and_as_set_as_type_1() {
        let path = AsPath {
            segments: vec![
                Segment {
                    kind: SegmentType::Sequence,
                    asns: vec![65001],
                },
                Segment {
                    kind: SegmentType::Set,
                    asns: vec![65002],
                },
            ],
        };
        assert_eq!(
            encode_as_path(&path, 4),
            [2, 1, 0, 0, 0xfd, 0xe9, 1, 1, 0, 0, 0xfd, 0xea]
        );
        assert_eq!(
            encode_as_path(&path, 2),
            [2, 1, 0xfd, 0xe9, 1, 1, 0xfd, 0xea]
        );
    }

    #[test]
    fn sequence_longer_than_255_is_split_into_segments() {
        let path = AsPath::sequence((1..=300).collect::<Vec<u32>>());
        let bytes = encode_as_path(&path, 2);
        assert_eq!((bytes[0], bytes[1]), (2, 255));
        assert_eq!((bytes[512], bytes[513]), (2, 45));
        assert_eq!(decode_as_path(&bytes, 2).unwrap().length(), 300);
    }

    #[test]
    fn two_octet_session_sends_as_trans_with_as4_path_and_reads_it_back() {
        let attrs = PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65001, 4_200_000_000, 65003])),
            aggregator: Some(Aggregator {
                asn: 4_200_000_001,
                addr: Ipv4Addr::new(1, 1, 1, 1),
            }),
            ..PathAttrs::default()
        };
        let mut buf = Vec::new();
        attrs.encode(
            &EncodeContext {
                four_octet_as: false,
                max_message_len: 4096,
            },
            &mut buf,
        );
        let d = decode(&buf, &ctx(false, false)).unwrap();
        assert_eq!(d.errors, vec![]);
        assert_eq!(d.attrs, attrs);
        // On the wire the 2-octet AS_PATH carries AS_TRANS.
        let two = decode(&buf, &ctx(false, false)).unwrap();
        assert_eq!(
            two.attrs.as_path.unwrap().asns().collect::<Vec<_>>(),
            vec![65001, 4_200_000_000, 65003]
        );
        assert!(buf.windows(2).any(|w| w == AS_TRANS.to_be_bytes()));
    }

    #[test]
    fn as4_path_keeps_leading_ases_added_by_two_octet_speakers() {
        // A 2-octet speaker (65010) prepended itself without touching AS4_PATH.
        let mut buf = one(WK, tc::AS_PATH, &[2, 3, 0xfd, 0xf2, 0x5b, 0xa0, 0xfd, 0xe9]);
        buf.extend(one(
            OT,
            tc::AS4_PATH,
            &[2, 2, 0xfa, 0x56, 0xea, 0, 0, 0, 0xfd, 0xe9],
        ));
        let d = decode(&buf, &ctx(false, false)).unwrap();
        assert_eq!(
            d.attrs.as_path.unwrap().asns().collect::<Vec<_>>(),
            vec![65010, 4_200_000_000, 65001]
        );
    }

    const WK: u8 = flag::TRANSITIVE;
    const OT: u8 = flag::OPTIONAL | flag::TRANSITIVE;
    const ONT: u8 = flag::OPTIONAL;

    #[test]
    fn each_malformed_attribute_gets_the_rfc_7606_approach() {
        use ErrorAction::*;
        let cases: Vec<(&str, Vec<u8>, bool, Option<ErrorAction>)> = vec![
            (
                "origin length 2",
                one(WK, tc::ORIGIN, &[0, 0]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "origin value 3",
                one(WK, tc::ORIGIN, &[3]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "as_path unknown segment type",
                one(WK, tc::AS_PATH, &[5, 1, 0, 0, 0, 1]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "as_path segment overrun",
                one(WK, tc::AS_PATH, &[2, 2, 0, 0, 0, 1]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "as_path underrun",
                one(WK, tc::AS_PATH, &[2, 1, 0, 0, 0, 1, 2]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "as_path zero-length segment",
                one(WK, tc::AS_PATH, &[2, 0]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "as_path with AS 0",
                one(WK, tc::AS_PATH, &[2, 1, 0, 0, 0, 0]),
                true,
                Some(TreatAsWithdraw),
            ),
            ("empty as_path", one(WK, tc::AS_PATH, &[]), true, None),
            (
                "next_hop length 16",
                one(WK, tc::NEXT_HOP, &[0; 16]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "next_hop 0.0.0.0",
                one(WK, tc::NEXT_HOP, &[0; 4]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "med length 2",
                one(ONT, tc::MULTI_EXIT_DISC, &[0, 1]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "local_pref length 2 from ibgp",
                one(WK, tc::LOCAL_PREF, &[0, 1]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "local_pref length 2 from ebgp",
                one(WK, tc::LOCAL_PREF, &[0, 1]),
                false,
                None,
            ),
            (
                "local_pref flagged optional from ebgp",
                one(OT, tc::LOCAL_PREF, &[0; 4]),
                false,
                None,
            ),
            (
                "atomic_aggregate length 1",
                one(WK, tc::ATOMIC_AGGREGATE, &[1]),
                true,
                Some(AttributeDiscard),
            ),
            (
                "aggregator length 6 on 4-octet session",
                one(OT, tc::AGGREGATOR, &[0, 1, 1, 1, 1, 1]),
                true,
                Some(AttributeDiscard),
            ),
            (
                "aggregator AS 0",
                one(OT, tc::AGGREGATOR, &[0, 0, 0, 0, 1, 1, 1, 1]),
                true,
                Some(AttributeDiscard),
            ),
            (
                "communities length 5",
                one(OT, tc::COMMUNITIES, &[0; 5]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "communities length 0",
                one(OT, tc::COMMUNITIES, &[]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "originator_id length 3 from ibgp",
                one(ONT, tc::ORIGINATOR_ID, &[1, 2, 3]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "cluster_list length 6 from ibgp",
                one(ONT, tc::CLUSTER_LIST, &[0; 6]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "cluster_list from ebgp",
                one(ONT, tc::CLUSTER_LIST, &[0; 6]),
                false,
                None,
            ),
            (
                "extended_communities length 9",
                one(OT, tc::EXTENDED_COMMUNITIES, &[1; 9]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "extended_communities length 16",
                one(OT, tc::EXTENDED_COMMUNITIES, &[1; 16]),
                true,
                None,
            ),
            (
                "large_communities length 13",
                one(OT, tc::LARGE_COMMUNITIES, &[1; 13]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "as4_path on 4-octet session",
                one(OT, tc::AS4_PATH, &[9]),
                true,
                None,
            ),
            (
                "mp_reach length 2",
                one(ONT, tc::MP_REACH_NLRI, &[0, 2]),
                true,
                Some(SessionReset),
            ),
            (
                "mp_reach next hop length 200",
                one(ONT, tc::MP_REACH_NLRI, &[0, 2, 1, 200, 0]),
                true,
                Some(SessionReset),
            ),
            (
                "mp_reach ipv6 next hop length 4",
                one(ONT, tc::MP_REACH_NLRI, &[0, 2, 1, 4, 1, 2, 3, 4, 0]),
                true,
                Some(SessionReset),
            ),
            (
                "mp_reach prefix /129",
                one(
                    ONT,
                    tc::MP_REACH_NLRI,
                    &[&[0, 2, 1, 16][..], &[0x20; 16], &[0, 129]].concat(),
                ),
                true,
                Some(SessionReset),
            ),
            (
                "mp_unreach length 1",
                one(ONT, tc::MP_UNREACH_NLRI, &[0]),
                true,
                Some(SessionReset),
            ),
            (
                "mp_unreach of a family not negotiated",
                one(ONT, tc::MP_UNREACH_NLRI, &[0, 25, 65]),
                true,
                None,
            ),
            (
                "origin flagged optional",
                one(OT, tc::ORIGIN, &[0]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "med flagged transitive",
                one(OT, tc::MULTI_EXIT_DISC, &[0; 4]),
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "unknown well-known attribute",
                one(WK, 99, &[1]),
                true,
                Some(SessionReset),
            ),
            (
                "unknown optional non-transitive attribute",
                one(ONT, 99, &[1]),
                true,
                None,
            ),
            (
                "truncated attribute header",
                vec![0x40, 1],
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "truncated extended-length header",
                vec![0x50, 1, 0],
                true,
                Some(TreatAsWithdraw),
            ),
            (
                "attribute length overrunning the field",
                vec![0x40, 1, 5, 0],
                true,
                Some(TreatAsWithdraw),
            ),
        ];
        for (name, buf, ibgp, want) in cases {
            assert_eq!(action_of(&buf, &ctx(true, ibgp)), want, "{name}");
        }
    }

    #[test]
    fn aggregator_width_follows_the_negotiated_as_size() {
        assert_eq!(
            action_of(
                &one(OT, tc::AGGREGATOR, &[0, 1, 1, 1, 1, 1]),
                &ctx(false, false)
            ),
            None
        );
        assert_eq!(
            action_of(
                &one(OT, tc::AGGREGATOR, &[0, 0, 0, 1, 1, 1, 1, 1]),
                &ctx(false, false)
            ),
            Some(ErrorAction::AttributeDiscard)
        );
    }

    #[test]
    fn malformed_as4_path_from_a_two_octet_speaker_is_discarded() {
        let mut buf = one(WK, tc::AS_PATH, &[2, 1, 0xfd, 0xe9]);
        buf.extend(one(OT, tc::AS4_PATH, &[2, 2, 0, 0]));
        let d = decode(&buf, &ctx(false, false)).unwrap();
        assert_eq!(
            d.errors
                .iter()
                .map(|e| (e.type_code, e.action))
                .collect::<Vec<_>>(),
            vec![(tc::AS4_PATH, ErrorAction::AttributeDiscard)]
        );
        assert_eq!(d.attrs.as_path, Some(AsPath::sequence(vec![65001])));
    }

    #[test]
    fn repeated_attribute_keeps_the_first_and_repeated_mp_reach_resets() {
        let mut buf = one(WK, tc::ORIGIN, &[1]);
        buf.extend(one(WK, tc::ORIGIN, &[2]));
        let d = decode(&buf, &ctx(true, true)).unwrap();
        assert_eq!(
            (d.attrs.origin, d.ignored),
            (Some(Origin::Egp), vec![tc::ORIGIN])
        );

        let unreach = one(ONT, tc::MP_UNREACH_NLRI, &[0, 2, 1]);
        assert_eq!(
            decode(&[unreach.clone(), unreach].concat(), &ctx(true, true)),
            Err(Notification::new(3, 1, []))
        );
    }

    #[test]
    fn errors_carry_the_rfc_4271_subcode_and_the_attribute_as_data() {
        let d = decode(&one(WK, tc::ORIGIN, &[7]), &ctx(true, true)).unwrap();
        assert_eq!(
            d.errors[0].notification,
            Notification::new(3, 6, [WK, 1, 1, 7])
        );
        let reset = decode(&one(WK, 99, &[1]), &ctx(true, true)).unwrap_err();
        assert_eq!(reset, Notification::new(3, 2, [WK, 99, 1, 1]));
    }

    #[test]
    fn unknown_transitive_attribute_is_propagated_with_the_partial_bit() {
        let d = decode(&one(OT, 99, &[1, 2]), &ctx(true, true)).unwrap();
        let mut out = Vec::new();
        d.attrs.encode(
            &EncodeContext {
                four_octet_as: true,
                max_message_len: 4096,
            },
            &mut out,
        );
        assert_eq!(out, [OT | flag::PARTIAL, 99, 2, 1, 2]);
    }

    #[test]
    fn long_attribute_uses_the_extended_length_flag() {
        let attrs = PathAttrs {
            communities: (0..100).collect(),
            ..PathAttrs::default()
        };
        let mut out = Vec::new();
        attrs.encode(
            &EncodeContext {
                four_octet_as: true,
                max_message_len: 4096,
            },
            &mut out,
        );
        assert_eq!(
            &out[..4],
            &[OT | flag::EXTENDED_LENGTH, tc::COMMUNITIES, 1, 144]
        );
        assert_eq!(decode(&out, &ctx(true, true)).unwrap().attrs, attrs);
    }
}
