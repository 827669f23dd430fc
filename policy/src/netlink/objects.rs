//! Safe, pure descriptions of what nftnl 0.9 cannot express, and their
//! translation to libnftnl objects:
//!
//! - [`SetSpec`]: a named or anonymous set or verdict map with its flags
//!   (interval, map, concatenation, anonymous + constant), key and data types,
//!   concatenation field lengths, the userdata `nft list` reads to print keys
//!   (key and data byte order, comment), and elements with key, key end,
//!   interval-end flag and verdict data;
//! - [`Expr`]: the register-machine expressions of a rule, including lookups
//!   that are inverted, read concatenated registers or yield a verdict;
//! - [`rule_exprs`]: an IR [`Rule`] (NAT statements included) as the expressions `nft -f` would send for
//!   its rendered text, dependencies (`meta nfproto`, `meta l4proto`) and
//!   anonymous sets included, so that both list identically.

use ipnet::IpNet;
use nftnl_sys as sys;

use super::ffi;
use crate::ir::{
    CtState, Family, Iface, Match, Rule, Set, SetElement, SetKey, Side, Statement, TABLE, Verdict,
    VerdictMap,
};

// linux/netfilter/nf_tables.h
const META_MARK: u32 = 3;
const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;
const CT_STATE: u32 = 0;
const PAYLOAD_NETWORK: u32 = 1;
const PAYLOAD_TRANSPORT: u32 = 2;
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const LOOKUP_F_INV: u32 = 1;
const NAT_SNAT: u32 = 0;
const DATA_VERDICT: u32 = 0xffff_ff00;
const SET_ANONYMOUS: u32 = 0x1;
const SET_CONSTANT: u32 = 0x2;
const SET_INTERVAL: u32 = 0x4;
const SET_MAP: u32 = 0x8;
const SET_CONCAT: u32 = 0x80;
const ELEM_INTERVAL_END: u32 = 0x1;
const IFNAMSIZ: usize = 16;

// nftables' datatype ids (src/datatype.h), and its concatenation encoding.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_ICMP_TYPE: u32 = 14;
const TYPE_ICMP6_TYPE: u32 = 29;
const TYPE_ICMP_CODE: u32 = 32;
const TYPE_ICMPV6_CODE: u32 = 33;
const TYPE_IFNAME: u32 = 41;
const TYPE_BITS: u32 = 6;

// libnftnl/udata.h, nftables' byte orders.
const UDATA_SET_KEYBYTEORDER: u8 = 0;
const UDATA_SET_DATABYTEORDER: u8 = 1;
const UDATA_SET_KEY_TYPEOF: u8 = 3;
const UDATA_SET_DATA_INTERVAL: u8 = 6;
const UDATA_SET_COMMENT: u8 = 7;
const UDATA_RULE_COMMENT: u8 = 0;
const BYTEORDER_INVALID: u32 = 0;
const BYTEORDER_HOST: u32 = 1;
const BYTEORDER_BIG: u32 = 2;

/// A comparison operator (`enum nft_cmp_ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
    Lte = 3,
    Gte = 5,
}

/// Which set a lookup reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetRef {
    Named(String),
    /// An anonymous set of the same batch, by its set id.
    Anonymous(u32),
}

/// A verdict as nf_tables encodes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerdictCode {
    pub code: i32,
    pub chain: Option<String>,
}

impl VerdictCode {
    /// The code of a terminal IR verdict; `None` for a vmap.
    pub fn of(v: &Verdict) -> Option<VerdictCode> {
        let plain = |code| Some(VerdictCode { code, chain: None });
        match v {
            Verdict::Accept => plain(1),
            Verdict::Drop => plain(0),
            Verdict::Return => plain(-5),
            Verdict::Jump(c) => Some(VerdictCode {
                code: -3,
                chain: Some(c.clone()),
            }),
            Verdict::Goto(c) => Some(VerdictCode {
                code: -4,
                chain: Some(c.clone()),
            }),
            Verdict::Vmap { .. } => None,
        }
    }
}

/// One rule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: u32,
        dreg: u32,
    },
    MetaSet {
        key: u32,
        sreg: u32,
    },
    Ct {
        key: u32,
        dreg: u32,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Cmp {
        op: CmpOp,
        sreg: u32,
        data: Vec<u8>,
    },
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Lookup {
        sreg: u32,
        set: SetRef,
        dreg: Option<u32>,
        invert: bool,
    },
    Counter,
    Notrack,
    Log {
        prefix: String,
        group: Option<u16>,
    },
    Immediate(VerdictCode),
    /// Data (an address) into a register.
    ImmediateData {
        dreg: u32,
        data: Vec<u8>,
    },
    /// `limit rate over RATE/second burst BURST packets`.
    LimitOver {
        rate: u64,
        burst: u32,
    },
    /// `ct count over COUNT`.
    ConnlimitOver {
        count: u32,
    },
    /// Writes `len` bytes of `sreg` at `offset` of the network header, the
    /// IPv4 header checksum (at 10) updated when `ipv4_checksum`.
    PayloadWrite {
        offset: u32,
        len: u32,
        sreg: u32,
        ipv4_checksum: bool,
    },
    /// `masquerade`.
    Masq,
    /// Source NAT to the address in `reg` (`snat ip|ip6 to ...`).
    Snat {
        family: Family,
        reg: u32,
    },
}

/// `NFT_PAYLOAD_CSUM_INET`: the Internet checksum at the given offset.
const NFT_PAYLOAD_CSUM_INET: u32 = 1;

/// `NFT_LIMIT_PKTS` (linux/netfilter/nf_tables.h): a limit in packets.
const NFT_LIMIT_PKTS: u32 = 0;
/// `NFT_LIMIT_F_INV`: match beyond the limit (`over`).
const NFT_LIMIT_F_INV: u32 = 1;
/// `NFT_CONNLIMIT_F_INV`: match above the count (`over`).
const NFT_CONNLIMIT_F_INV: u32 = 1;

impl Expr {
    /// The libnftnl expression.
    pub fn build(&self) -> ffi::Expr {
        use sys::*;
        let new = ffi::Expr::new;
        match self {
            Expr::PayloadWrite {
                offset,
                len,
                sreg,
                ipv4_checksum,
            } => {
                let mut e = new("payload");
                e.set_u32(NFTNL_EXPR_PAYLOAD_BASE, PAYLOAD_NETWORK)
                    .set_u32(NFTNL_EXPR_PAYLOAD_OFFSET, *offset)
                    .set_u32(NFTNL_EXPR_PAYLOAD_LEN, *len)
                    .set_u32(NFTNL_EXPR_PAYLOAD_SREG, *sreg);
                if *ipv4_checksum {
                    e.set_u32(NFTNL_EXPR_PAYLOAD_CSUM_TYPE, NFT_PAYLOAD_CSUM_INET)
                        .set_u32(NFTNL_EXPR_PAYLOAD_CSUM_OFFSET, 10);
                }
                e
            }
            Expr::LimitOver { rate, burst } => {
                let mut e = new("limit");
                e.set(NFTNL_EXPR_LIMIT_RATE, &rate.to_ne_bytes())
                    .set(NFTNL_EXPR_LIMIT_UNIT, &1u64.to_ne_bytes())
                    .set_u32(NFTNL_EXPR_LIMIT_BURST, *burst)
                    .set_u32(NFTNL_EXPR_LIMIT_TYPE, NFT_LIMIT_PKTS)
                    .set_u32(NFTNL_EXPR_LIMIT_FLAGS, NFT_LIMIT_F_INV);
                e
            }
            Expr::ConnlimitOver { count } => {
                let mut e = new("connlimit");
                e.set_u32(NFTNL_EXPR_CONNLIMIT_COUNT, *count)
                    .set_u32(NFTNL_EXPR_CONNLIMIT_FLAGS, NFT_CONNLIMIT_F_INV);
                e
            }
            Expr::Meta { key, dreg } => {
                let mut e = new("meta");
                e.set_u32(NFTNL_EXPR_META_KEY, *key)
                    .set_u32(NFTNL_EXPR_META_DREG, *dreg);
                e
            }
            Expr::MetaSet { key, sreg } => {
                let mut e = new("meta");
                e.set_u32(NFTNL_EXPR_META_KEY, *key)
                    .set_u32(NFTNL_EXPR_META_SREG, *sreg);
                e
            }
            Expr::Ct { key, dreg } => {
                let mut e = new("ct");
                e.set_u32(NFTNL_EXPR_CT_KEY, *key)
                    .set_u32(NFTNL_EXPR_CT_DREG, *dreg);
                e
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                let mut e = new("payload");
                e.set_u32(NFTNL_EXPR_PAYLOAD_BASE, *base)
                    .set_u32(NFTNL_EXPR_PAYLOAD_OFFSET, *offset)
                    .set_u32(NFTNL_EXPR_PAYLOAD_LEN, *len)
                    .set_u32(NFTNL_EXPR_PAYLOAD_DREG, *dreg);
                e
            }
            Expr::Cmp { op, sreg, data } => {
                let mut e = new("cmp");
                e.set_u32(NFTNL_EXPR_CMP_SREG, *sreg)
                    .set_u32(NFTNL_EXPR_CMP_OP, *op as u32)
                    .set(NFTNL_EXPR_CMP_DATA, data);
                e
            }
            Expr::Bitwise { reg, mask, xor } => {
                let mut e = new("bitwise");
                e.set_u32(NFTNL_EXPR_BITWISE_SREG, *reg)
                    .set_u32(NFTNL_EXPR_BITWISE_DREG, *reg)
                    .set_u32(NFTNL_EXPR_BITWISE_LEN, mask.len() as u32)
                    .set(NFTNL_EXPR_BITWISE_MASK, mask)
                    .set(NFTNL_EXPR_BITWISE_XOR, xor);
                e
            }
            Expr::Lookup {
                sreg,
                set,
                dreg,
                invert,
            } => {
                let mut e = new("lookup");
                e.set_u32(NFTNL_EXPR_LOOKUP_SREG, *sreg);
                match set {
                    SetRef::Named(name) => e.set_str(NFTNL_EXPR_LOOKUP_SET, name),
                    SetRef::Anonymous(id) => e
                        .set_str(NFTNL_EXPR_LOOKUP_SET, "__set%d")
                        .set_u32(NFTNL_EXPR_LOOKUP_SET_ID, *id),
                };
                if let Some(d) = dreg {
                    e.set_u32(NFTNL_EXPR_LOOKUP_DREG, *d);
                }
                if *invert {
                    e.set_u32(NFTNL_EXPR_LOOKUP_FLAGS, LOOKUP_F_INV);
                }
                e
            }
            Expr::Counter => new("counter"),
            Expr::Notrack => new("notrack"),
            Expr::Log { prefix, group } => {
                let mut e = new("log");
                e.set_str(NFTNL_EXPR_LOG_PREFIX, prefix);
                if let Some(group) = group {
                    e.set(NFTNL_EXPR_LOG_GROUP, &group.to_ne_bytes());
                }
                e
            }
            Expr::ImmediateData { dreg, data } => {
                let mut e = new("immediate");
                e.set_u32(NFTNL_EXPR_IMM_DREG, *dreg)
                    .set(NFTNL_EXPR_IMM_DATA, data);
                e
            }
            Expr::Masq => new("masq"),
            Expr::Snat { family, reg } => {
                let mut e = new("nat");
                e.set_u32(NFTNL_EXPR_NAT_TYPE, NAT_SNAT)
                    .set_u32(NFTNL_EXPR_NAT_FAMILY, u32::from(nfproto_byte(*family)))
                    .set_u32(NFTNL_EXPR_NAT_REG_ADDR_MIN, *reg);
                e
            }
            Expr::Immediate(v) => {
                let mut e = new("immediate");
                e.set_u32(NFTNL_EXPR_IMM_DREG, REG_VERDICT)
                    .set_u32(NFTNL_EXPR_IMM_VERDICT, v.code as u32);
                if let Some(c) = &v.chain {
                    e.set_str(NFTNL_EXPR_IMM_CHAIN, c);
                }
                e
            }
        }
    }
}

/// One set element.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElemSpec {
    pub key: Vec<u8>,
    /// The inclusive end of a concatenated interval (`NFTNL_SET_ELEM_KEY_END`).
    pub key_end: Option<Vec<u8>>,
    /// `NFT_SET_ELEM_INTERVAL_END`: this key ends the interval before it.
    pub interval_end: bool,
    pub verdict: Option<VerdictCode>,
}

impl ElemSpec {
    fn key(key: Vec<u8>) -> Self {
        ElemSpec {
            key,
            key_end: None,
            interval_end: false,
            verdict: None,
        }
    }

    fn build(&self) -> ffi::Elem {
        use sys::*;
        let mut e = ffi::Elem::new();
        e.set(NFTNL_SET_ELEM_KEY, &self.key);
        if let Some(end) = &self.key_end {
            e.set(NFTNL_SET_ELEM_KEY_END, end);
        }
        if self.interval_end {
            e.set_u32(NFTNL_SET_ELEM_FLAGS, ELEM_INTERVAL_END);
        }
        if let Some(v) = &self.verdict {
            e.set_u32(NFTNL_SET_ELEM_VERDICT, v.code as u32);
            if let Some(c) = &v.chain {
                e.set_str(NFTNL_SET_ELEM_CHAIN, c);
            }
        }
        e
    }
}

/// A set or map definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    /// The name, or `__set%d` for an anonymous set.
    pub name: String,
    pub id: u32,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    /// `Some` for a verdict map.
    pub verdict_data: bool,
    /// Field lengths of a concatenated interval key.
    pub concat: Vec<u8>,
    /// Number of elements of an anonymous set (`NFTNL_SET_DESC_SIZE`).
    pub size: Option<u32>,
    pub userdata: Vec<u8>,
}

/// Appends one userdata TLV.
fn udata(out: &mut Vec<u8>, ty: u8, value: &[u8]) {
    out.push(ty);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

fn udata_u32(out: &mut Vec<u8>, ty: u8, value: u32) {
    udata(out, ty, &value.to_ne_bytes());
}

fn udata_comment(out: &mut Vec<u8>, ty: u8, comment: &str) {
    // A TLV holds at most 255 bytes; nft caps comments at 128.
    let mut bytes: Vec<u8> = crate::sets::comment(comment).into_bytes();
    bytes.truncate(254);
    bytes.push(0);
    udata(out, ty, &bytes);
}

fn addr_type(f: Family) -> (u32, u32) {
    match f {
        Family::V4 => (TYPE_IPADDR, 4),
        Family::V6 => (TYPE_IP6ADDR, 16),
    }
}

impl SetSpec {
    /// A named interval set of the IR.
    pub fn of_set(name: &str, set: &Set, id: u32) -> SetSpec {
        let mut userdata = Vec::new();
        let spec = match set.key {
            SetKey::Net(f) => {
                let (ty, len) = addr_type(f);
                udata_u32(&mut userdata, UDATA_SET_KEYBYTEORDER, BYTEORDER_BIG);
                SetSpec {
                    flags: SET_INTERVAL,
                    key_type: ty,
                    key_len: len,
                    concat: Vec::new(),
                    ..SetSpec::empty(name, id)
                }
            }
            SetKey::NetPort(f) => {
                let (ty, len) = addr_type(f);
                udata_u32(&mut userdata, UDATA_SET_KEYBYTEORDER, BYTEORDER_INVALID);
                // What nft writes for a concatenated key: a typeof marker.
                let mut typeof_ = Vec::new();
                udata_u32(&mut typeof_, 0, 13);
                udata(&mut typeof_, 1, &[]);
                udata(&mut userdata, UDATA_SET_KEY_TYPEOF, &typeof_);
                SetSpec {
                    flags: SET_INTERVAL | SET_CONCAT,
                    key_type: (ty << TYPE_BITS) | TYPE_INET_SERVICE,
                    key_len: len + 4,
                    concat: vec![len as u8, 2],
                    ..SetSpec::empty(name, id)
                }
            }
        };
        udata_comment(&mut userdata, UDATA_SET_COMMENT, &set.comment);
        SetSpec { userdata, ..spec }
    }

    /// A named verdict map of the IR (`type ifname : verdict`).
    pub fn of_map(name: &str, map: &VerdictMap, id: u32) -> SetSpec {
        let mut userdata = Vec::new();
        udata_u32(&mut userdata, UDATA_SET_KEYBYTEORDER, BYTEORDER_HOST);
        udata_u32(&mut userdata, UDATA_SET_DATABYTEORDER, BYTEORDER_INVALID);
        udata_u32(&mut userdata, UDATA_SET_DATA_INTERVAL, 0);
        udata_comment(&mut userdata, UDATA_SET_COMMENT, &map.comment);
        SetSpec {
            flags: SET_MAP,
            key_type: TYPE_IFNAME,
            key_len: IFNAMSIZ as u32,
            verdict_data: true,
            userdata,
            ..SetSpec::empty(name, id)
        }
    }

    fn empty(name: &str, id: u32) -> SetSpec {
        SetSpec {
            name: name.to_string(),
            id,
            flags: 0,
            key_type: 0,
            key_len: 0,
            verdict_data: false,
            concat: Vec::new(),
            size: None,
            userdata: Vec::new(),
        }
    }

    /// The libnftnl set, without elements.
    pub fn build(&self) -> ffi::Set {
        use sys::*;
        let mut s = ffi::Set::new();
        s.set_str(NFTNL_SET_TABLE, TABLE)
            .set_str(NFTNL_SET_NAME, &self.name)
            .set_u32(NFTNL_SET_FAMILY, u32::from(super::batch::FAMILY_INET))
            .set_u32(NFTNL_SET_FLAGS, self.flags)
            .set_u32(NFTNL_SET_KEY_TYPE, self.key_type)
            .set_u32(NFTNL_SET_KEY_LEN, self.key_len)
            .set_u32(NFTNL_SET_ID, self.id);
        if self.verdict_data {
            s.set_u32(NFTNL_SET_DATA_TYPE, DATA_VERDICT)
                .set_u32(NFTNL_SET_DATA_LEN, 0);
        }
        if !self.concat.is_empty() {
            s.set(NFTNL_SET_DESC_CONCAT, &self.concat);
        }
        if let Some(size) = self.size {
            s.set_u32(NFTNL_SET_DESC_SIZE, size);
        }
        if !self.userdata.is_empty() {
            s.set(NFTNL_SET_USERDATA, &self.userdata);
        }
        s
    }

    /// A set naming this one (table, name, id) holding `elems`, for an
    /// element message.
    pub fn build_elems(&self, elems: &[ElemSpec]) -> ffi::Set {
        use sys::*;
        let mut s = ffi::Set::new();
        s.set_str(NFTNL_SET_TABLE, TABLE)
            .set_str(NFTNL_SET_NAME, &self.name)
            .set_u32(NFTNL_SET_FAMILY, u32::from(super::batch::FAMILY_INET))
            .set_u32(NFTNL_SET_ID, self.id);
        for e in elems {
            s.add_elem(e.build());
        }
        s
    }
}

/// `value + 1` on a big-endian byte string; `None` when it overflows.
fn successor(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = bytes.to_vec();
    for b in out.iter_mut().rev() {
        if *b == 0xff {
            *b = 0;
        } else {
            *b += 1;
            return Some(out);
        }
    }
    None
}

/// Elements of a plain interval set for sorted, disjoint, inclusive
/// big-endian ranges, as nft sends them: a start key per range, an
/// interval-end key one past its end (none at the top of the key space), and,
/// when `leading_end` and the first range does not start at zero, an
/// interval-end key at zero.
pub fn interval_elements(ranges: &[(Vec<u8>, Vec<u8>)], leading_end: bool) -> Vec<ElemSpec> {
    let mut out = Vec::new();
    if let Some((lo, _)) = ranges.first()
        && leading_end
        && lo.iter().any(|b| *b != 0)
    {
        out.push(ElemSpec {
            interval_end: true,
            ..ElemSpec::key(vec![0; lo.len()])
        });
    }
    for (lo, hi) in ranges {
        out.push(ElemSpec::key(lo.clone()));
        if let Some(end) = successor(hi) {
            out.push(ElemSpec {
                interval_end: true,
                ..ElemSpec::key(end)
            });
        }
    }
    out
}

fn net_range(n: &IpNet) -> (Vec<u8>, Vec<u8>) {
    match n {
        IpNet::V4(n) => (
            n.network().octets().to_vec(),
            n.broadcast().octets().to_vec(),
        ),
        IpNet::V6(n) => (
            n.network().octets().to_vec(),
            n.broadcast().octets().to_vec(),
        ),
    }
}

/// `bytes` padded with zeros to a multiple of 4 (a register field).
fn pad4(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(bytes.len().next_multiple_of(4), 0);
    v
}

/// The elements of an IR set, for creating it (`leading_end`) or for adding
/// to and removing from it.
pub fn set_elements<'a>(
    elements: impl IntoIterator<Item = &'a SetElement>,
    leading_end: bool,
) -> Vec<ElemSpec> {
    let mut nets = Vec::new();
    let mut out = Vec::new();
    for e in elements {
        match e {
            SetElement::Net(n) => nets.push(net_range(n)),
            SetElement::NetPort(n, port) => {
                let (lo, hi) = net_range(n);
                let port = pad4(&port.to_be_bytes());
                out.push(ElemSpec {
                    key_end: Some([pad4(&hi), port.clone()].concat()),
                    ..ElemSpec::key([pad4(&lo), port].concat())
                });
            }
        }
    }
    nets.sort();
    out.extend(interval_elements(&nets, leading_end));
    out
}

/// An interface name as a key or comparison operand: NUL-padded to
/// IFNAMSIZ, or the bare prefix for a trailing `*`.
pub fn ifname(name: &str) -> Vec<u8> {
    match name.strip_suffix('*') {
        Some(prefix) => prefix.as_bytes().to_vec(),
        None => {
            let mut v = name.as_bytes().to_vec();
            v.resize(IFNAMSIZ.max(v.len()), 0);
            v
        }
    }
}

/// The elements of a verdict map.
pub fn map_elements<'a>(
    elements: impl IntoIterator<Item = (&'a String, &'a Verdict)>,
) -> Vec<ElemSpec> {
    elements
        .into_iter()
        .map(|(iface, v)| ElemSpec {
            verdict: VerdictCode::of(v),
            ..ElemSpec::key(ifname(iface))
        })
        .collect()
}

/// Why a rule has no netlink form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("an empty {0} list")]
    Empty(&'static str),
    #[error("a map verdict in a set element")]
    VmapElement,
}

/// An anonymous set a rule needs, with its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonSet {
    pub spec: SetSpec,
    pub elements: Vec<ElemSpec>,
}

/// Numbers anonymous (and named) sets within one batch.
#[derive(Debug, Default)]
pub struct SetIds(u32);

impl SetIds {
    /// The next unused set id.
    pub fn allocate(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

fn anon(
    ids: &mut SetIds,
    key_type: u32,
    key_len: u32,
    elements: Vec<ElemSpec>,
    interval: bool,
) -> AnonSet {
    let mut userdata = Vec::new();
    udata_u32(&mut userdata, UDATA_SET_KEYBYTEORDER, BYTEORDER_BIG);
    AnonSet {
        spec: SetSpec {
            flags: SET_ANONYMOUS | SET_CONSTANT | if interval { SET_INTERVAL } else { 0 },
            key_type,
            key_len,
            size: Some(elements.len() as u32),
            userdata,
            ..SetSpec::empty("__set%d", ids.allocate())
        },
        elements,
    }
}

/// What a rule has established so far, as nft tracks protocol dependencies.
#[derive(Default)]
struct Context {
    nfproto: Option<Family>,
    l4proto: Option<u8>,
}

fn meta_cmp(out: &mut Vec<Expr>, key: u32, op: CmpOp, data: Vec<u8>) {
    out.push(Expr::Meta { key, dreg: REG_1 });
    out.push(Expr::Cmp {
        op,
        sreg: REG_1,
        data,
    });
}

fn nfproto_byte(f: Family) -> u8 {
    match f {
        Family::V4 => 2,
        Family::V6 => 10,
    }
}

impl Context {
    fn need_nfproto(&mut self, out: &mut Vec<Expr>, f: Family) {
        if self.nfproto != Some(f) {
            meta_cmp(out, META_NFPROTO, CmpOp::Eq, vec![nfproto_byte(f)]);
            self.nfproto = Some(f);
        }
    }

    fn need_l4proto(&mut self, out: &mut Vec<Expr>, f: Family, proto: u8) {
        if self.l4proto != Some(proto) {
            self.need_nfproto(out, f);
            meta_cmp(out, META_L4PROTO, CmpOp::Eq, vec![proto]);
            self.l4proto = Some(proto);
        }
    }
}

/// The register for the 32-bit unit `unit` of the register file, named as nft
/// names it (the 128-bit name when aligned).
fn register(unit: u32) -> u32 {
    if unit.is_multiple_of(4) {
        REG_1 + unit / 4
    } else {
        8 + unit
    }
}

fn addr_payload(f: Family, side: Side, dreg: u32) -> Expr {
    let (offset, len) = match (f, side) {
        (Family::V4, Side::Source) => (12, 4),
        (Family::V4, Side::Destination) => (16, 4),
        (Family::V6, Side::Source) => (8, 16),
        (Family::V6, Side::Destination) => (24, 16),
    };
    Expr::Payload {
        base: PAYLOAD_NETWORK,
        offset,
        len,
        dreg,
    }
}

fn port_payload(side: Side, dreg: u32) -> Expr {
    Expr::Payload {
        base: PAYLOAD_TRANSPORT,
        offset: match side {
            Side::Source => 0,
            Side::Destination => 2,
        },
        len: 2,
        dreg,
    }
}

fn op(negate: bool) -> CmpOp {
    if negate { CmpOp::Neq } else { CmpOp::Eq }
}

fn ct_bits(states: &[CtState]) -> u32 {
    states
        .iter()
        .map(|s| match s {
            CtState::Invalid => 1,
            CtState::Established => 2,
            CtState::Related => 4,
            CtState::New => 8,
            CtState::Untracked => 64,
        })
        .fold(0, |a, b| a | b)
}

/// `ip dscp set V`: the TOS byte (offset 1) keeps its ECN bits and takes
/// V in its upper six, checksum updated; `ip6 dscp set V`: the first two
/// bytes keep the version, ECN and flow label bits and take V in bits 4-9
/// (what `nft --debug=netlink` shows nft itself generate).
fn dscp_set(out: &mut Vec<Expr>, family: Family, value: u8) {
    let (offset, len, mask, xor, ipv4_checksum) = match family {
        // Two bytes from the start (version and IHL kept): the checksum
        // update works on 16-bit words, as nft writes it.
        Family::V4 => (0, 2, vec![0xff, 0x03], vec![0x00, value << 2], true),
        Family::V6 => {
            let v = u16::from(value) << 6;
            (0, 2, vec![0xf0, 0x3f], v.to_be_bytes().to_vec(), false)
        }
    };
    out.push(Expr::Payload {
        base: PAYLOAD_NETWORK,
        offset,
        len,
        dreg: REG_1,
    });
    out.push(Expr::Bitwise {
        reg: REG_1,
        mask,
        xor,
    });
    out.push(Expr::PayloadWrite {
        offset,
        len,
        sreg: REG_1,
        ipv4_checksum,
    });
}

fn mark_load(out: &mut Vec<Expr>, mask: u32, xor: u32) {
    out.push(Expr::Meta {
        key: META_MARK,
        dreg: REG_1,
    });
    out.push(Expr::Bitwise {
        reg: REG_1,
        mask: mask.to_ne_bytes().to_vec(),
        xor: xor.to_ne_bytes().to_vec(),
    });
}

fn iface_key(i: Iface) -> u32 {
    match i {
        Iface::In => META_IIFNAME,
        Iface::Out => META_OIFNAME,
    }
}

fn match_exprs(
    m: &Match,
    cx: &mut Context,
    ids: &mut SetIds,
    out: &mut Vec<Expr>,
    sets: &mut Vec<AnonSet>,
) -> Result<(), Unsupported> {
    match m {
        Match::Nfproto(f) => {
            meta_cmp(out, META_NFPROTO, CmpOp::Eq, vec![nfproto_byte(*f)]);
            cx.nfproto = Some(*f);
        }
        Match::L4proto { proto, negate } => {
            meta_cmp(out, META_L4PROTO, op(*negate), vec![*proto]);
            if !negate {
                cx.l4proto = Some(*proto);
            }
        }
        Match::CtState(states) => {
            out.push(Expr::Ct {
                key: CT_STATE,
                dreg: REG_1,
            });
            out.push(Expr::Bitwise {
                reg: REG_1,
                mask: ct_bits(states).to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            });
            out.push(Expr::Cmp {
                op: CmpOp::Neq,
                sreg: REG_1,
                data: vec![0; 4],
            });
        }
        Match::Iface {
            iface,
            name,
            negate,
        } => meta_cmp(out, iface_key(*iface), op(*negate), ifname(name)),
        Match::Icmp {
            family,
            types,
            code,
            negate,
        } => {
            let (proto, type_t, code_t) = match family {
                Family::V4 => (1, TYPE_ICMP_TYPE, TYPE_ICMP_CODE),
                Family::V6 => (58, TYPE_ICMP6_TYPE, TYPE_ICMPV6_CODE),
            };
            cx.need_l4proto(out, *family, proto);
            let load = |offset, dreg| Expr::Payload {
                base: PAYLOAD_TRANSPORT,
                offset,
                len: 1,
                dreg,
            };
            match (types.as_slice(), code, negate) {
                ([], _, _) => return Err(Unsupported::Empty("icmp type")),
                (_, Some(c), true) => {
                    // `type . code != { t . c, .. }`: a concatenated lookup.
                    out.push(load(0, register(0)));
                    out.push(load(1, register(1)));
                    let elements = types
                        .iter()
                        .map(|t| ElemSpec::key([pad4(&[*t]), pad4(&[*c])].concat()))
                        .collect();
                    let set = anon(ids, (type_t << TYPE_BITS) | code_t, 8, elements, false);
                    out.push(Expr::Lookup {
                        sreg: REG_1,
                        set: SetRef::Anonymous(set.spec.id),
                        dreg: None,
                        invert: true,
                    });
                    sets.push(set);
                }
                (types, code, negate) => {
                    out.push(load(0, REG_1));
                    if let [t] = types {
                        out.push(Expr::Cmp {
                            op: op(*negate),
                            sreg: REG_1,
                            data: vec![*t],
                        });
                    } else {
                        let elements = types.iter().map(|t| ElemSpec::key(vec![*t])).collect();
                        let set = anon(ids, type_t, 1, elements, false);
                        out.push(Expr::Lookup {
                            sreg: REG_1,
                            set: SetRef::Anonymous(set.spec.id),
                            dreg: None,
                            invert: *negate,
                        });
                        sets.push(set);
                    }
                    if let Some(c) = code {
                        out.push(load(1, REG_1));
                        out.push(Expr::Cmp {
                            op: CmpOp::Eq,
                            sreg: REG_1,
                            data: vec![*c],
                        });
                    }
                }
            }
        }
        Match::Ports {
            side,
            ranges,
            negate,
        } => {
            out.push(port_payload(*side, REG_1));
            match ranges.as_slice() {
                [] => return Err(Unsupported::Empty("port")),
                [(lo, hi)] if lo == hi => out.push(Expr::Cmp {
                    op: op(*negate),
                    sreg: REG_1,
                    data: lo.to_be_bytes().to_vec(),
                }),
                [(lo, hi)] if !negate => {
                    out.push(Expr::Cmp {
                        op: CmpOp::Gte,
                        sreg: REG_1,
                        data: lo.to_be_bytes().to_vec(),
                    });
                    out.push(Expr::Cmp {
                        op: CmpOp::Lte,
                        sreg: REG_1,
                        data: hi.to_be_bytes().to_vec(),
                    });
                }
                ranges => {
                    let interval = ranges.iter().any(|(lo, hi)| lo != hi);
                    let elements = if interval {
                        let mut rs: Vec<_> = ranges
                            .iter()
                            .map(|(lo, hi)| (lo.to_be_bytes().to_vec(), hi.to_be_bytes().to_vec()))
                            .collect();
                        rs.sort();
                        interval_elements(&rs, true)
                    } else {
                        ranges
                            .iter()
                            .map(|(p, _)| ElemSpec::key(p.to_be_bytes().to_vec()))
                            .collect()
                    };
                    let set = anon(ids, TYPE_INET_SERVICE, 2, elements, interval);
                    out.push(Expr::Lookup {
                        sreg: REG_1,
                        set: SetRef::Anonymous(set.spec.id),
                        dreg: None,
                        invert: *negate,
                    });
                    sets.push(set);
                }
            }
        }
        Match::Addr {
            family,
            side,
            set,
            negate,
        } => {
            cx.need_nfproto(out, *family);
            out.push(addr_payload(*family, *side, REG_1));
            out.push(Expr::Lookup {
                sreg: REG_1,
                set: SetRef::Named(set.clone()),
                dreg: None,
                invert: *negate,
            });
        }
        Match::AddrPort {
            family,
            side,
            set,
            negate,
        } => {
            cx.need_nfproto(out, *family);
            let (_, len) = addr_type(*family);
            out.push(addr_payload(*family, *side, REG_1));
            out.push(port_payload(*side, register(len / 4)));
            out.push(Expr::Lookup {
                sreg: REG_1,
                set: SetRef::Named(set.clone()),
                dreg: None,
                invert: *negate,
            });
        }
        Match::RateOver { rate, burst } => out.push(Expr::LimitOver {
            rate: *rate,
            burst: *burst,
        }),
        Match::ConnectionsOver { count } => out.push(Expr::ConnlimitOver { count: *count }),
        Match::Mark { mask, value } => {
            mark_load(out, *mask, 0);
            out.push(Expr::Cmp {
                op: CmpOp::Eq,
                sreg: REG_1,
                data: value.to_ne_bytes().to_vec(),
            });
        }
    }
    Ok(())
}

/// An IR rule as expressions (with a counter after the matches, as rendered)
/// and the anonymous sets it needs, which must be created before it.
pub fn rule_exprs(rule: &Rule, ids: &mut SetIds) -> Result<(Vec<Expr>, Vec<AnonSet>), Unsupported> {
    let mut out = Vec::new();
    let mut sets = Vec::new();
    let mut cx = Context::default();
    for m in &rule.matches {
        match_exprs(m, &mut cx, ids, &mut out, &mut sets)?;
    }
    out.push(Expr::Counter);
    for s in &rule.statements {
        match s {
            Statement::MarkSet(bits) => mark_load(&mut out, !bits, *bits),
            Statement::MarkClear(bits) => mark_load(&mut out, !bits, 0),
            Statement::Log { prefix, group } => out.push(Expr::Log {
                prefix: crate::sets::comment(prefix),
                group: *group,
            }),
            Statement::Notrack => out.push(Expr::Notrack),
            Statement::DscpSet { family, value } => dscp_set(&mut out, *family, *value),
            Statement::Masquerade => out.push(Expr::Masq),
            Statement::Snat(addr) => {
                let data = match addr {
                    std::net::IpAddr::V4(a) => a.octets().to_vec(),
                    std::net::IpAddr::V6(a) => a.octets().to_vec(),
                };
                out.push(Expr::ImmediateData { dreg: REG_1, data });
                out.push(Expr::Snat {
                    family: Family::of_addr(*addr),
                    reg: REG_1,
                });
            }
        }
        if matches!(s, Statement::MarkSet(_) | Statement::MarkClear(_)) {
            out.push(Expr::MetaSet {
                key: META_MARK,
                sreg: REG_1,
            });
        }
    }
    match &rule.verdict {
        None => {}
        Some(Verdict::Vmap { iface, map }) => {
            out.push(Expr::Meta {
                key: iface_key(*iface),
                dreg: REG_1,
            });
            out.push(Expr::Lookup {
                sreg: REG_1,
                set: SetRef::Named(map.clone()),
                dreg: Some(REG_VERDICT),
                invert: false,
            });
        }
        Some(v) => out.extend(VerdictCode::of(v).map(Expr::Immediate)),
    }
    Ok((out, sets))
}

/// A rule's userdata: its comment (as written, see
/// [`stamp::written_comments`](crate::stamp::written_comments)).
pub fn rule_userdata(comment: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(c) = comment {
        udata_comment(&mut out, UDATA_RULE_COMMENT, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_elements_end_one_past_each_range_and_start_with_a_zero_end() {
        let e = interval_elements(
            &[(vec![0, 80], vec![0, 80]), (vec![3, 232], vec![7, 208])],
            true,
        );
        let keys: Vec<(Vec<u8>, bool)> =
            e.iter().map(|e| (e.key.clone(), e.interval_end)).collect();
        assert_eq!(
            keys,
            [
                (vec![0, 0], true),
                (vec![0, 80], false),
                (vec![0, 81], true),
                (vec![3, 232], false),
                (vec![7, 209], true)
            ]
        );
    }

    #[test]
    fn a_range_reaching_the_top_of_the_key_space_has_no_end_element() {
        let e = set_elements(&[SetElement::Net("0.0.0.0/0".parse().unwrap())], true);
        assert_eq!(e, [ElemSpec::key(vec![0; 4])]);
    }

    #[test]
    fn an_address_match_gets_its_nfproto_dependency_once_and_inverts_the_lookup() {
        let rule = Rule::new(
            vec![
                Match::Nfproto(Family::V4),
                Match::Addr {
                    family: Family::V4,
                    side: Side::Source,
                    set: "s".into(),
                    negate: true,
                },
            ],
            Verdict::Drop,
        );
        let (exprs, anon) = rule_exprs(&rule, &mut SetIds::default()).unwrap();
        assert!(anon.is_empty());
        let nfproto = exprs
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Expr::Meta {
                        key: META_NFPROTO,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(nfproto, 1);
        assert!(exprs.contains(&Expr::Lookup {
            sreg: REG_1,
            set: SetRef::Named("s".into()),
            dreg: None,
            invert: true
        }));
        assert_eq!(
            exprs.last(),
            Some(&Expr::Immediate(VerdictCode {
                code: 0,
                chain: None
            }))
        );
    }

    #[test]
    fn a_concatenated_lookup_reads_the_port_from_the_next_register() {
        let rule = Rule::new(
            vec![Match::AddrPort {
                family: Family::V4,
                side: Side::Destination,
                set: "p".into(),
                negate: false,
            }],
            Verdict::Accept,
        );
        let (exprs, _) = rule_exprs(&rule, &mut SetIds::default()).unwrap();
        assert!(exprs.contains(&Expr::Payload {
            base: PAYLOAD_TRANSPORT,
            offset: 2,
            len: 2,
            dreg: 9
        }));
        assert_eq!(register(4), 2);
    }

    #[test]
    fn set_userdata_carries_the_key_byte_order_and_the_comment() {
        let set = Set {
            key: SetKey::Net(Family::V6),
            comment: "c".into(),
            elements: Default::default(),
        };
        let spec = SetSpec::of_set("s", &set, 1);
        let mut want = vec![UDATA_SET_KEYBYTEORDER, 4];
        want.extend_from_slice(&BYTEORDER_BIG.to_ne_bytes());
        want.extend_from_slice(&[UDATA_SET_COMMENT, 2, b'c', 0]);
        assert_eq!(spec.userdata, want);
        assert_eq!(
            (spec.key_type, spec.key_len, spec.flags),
            (TYPE_IP6ADDR, 16, SET_INTERVAL)
        );
    }
}
