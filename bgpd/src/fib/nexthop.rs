//! Kernel nexthop objects (`RTM_NEWNEXTHOP`, Linux 5.3) for the next-hop
//! sets our routes share: one object per gateway (with its device), one
//! group object per ECMP set over those, and routes that name an object by
//! `RTA_NH_ID` instead of carrying their gateways. The kernel then neither
//! parses nor checks a gateway per route, nor looks for an equal `fib_info`
//! to share: a route costs it about a quarter less.
//!
//! ```text
//!   10.1.0.0/24 ─nhid─▶ group 0xC8000003 ─▶ 0xC8000001 (via 10.98.0.2 dev eth0)
//!   10.2.0.0/24 ─nhid─▶ 0xC8000001          ╰▶ 0xC8000002 (via 10.98.0.3 dev eth0)
//! ```
//!
//! The objects carry our route protocol, so they are ours as the routes
//! are: found again at start, never touching another daemon's. Their ids
//! start at `PROTOCOL << 24` and skip any id someone else holds. An object
//! goes once no route of ours (nor group) uses it: deleting one in use
//! would take the kernel's routes with it.
//!
//! Pure: [`Objects`] (which objects exist, which to create and delete), the
//! message encoders and the parser. The sending is `Fib`'s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use crate::prefix::Prefix;

pub(super) const RTM_NEWNEXTHOP: u16 = 104;
pub(super) const RTM_DELNEXTHOP: u16 = 105;
pub(super) const RTM_GETNEXTHOP: u16 = 106;
pub(super) const RTM_NEWROUTE: u16 = 24;
pub(super) const RTM_DELROUTE: u16 = 25;

const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;

const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const RTA_NH_ID: u16 = 30;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const RTN_UNICAST: u8 = 1;

fn family(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { AF_INET } else { AF_INET6 }
}

fn octets(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Appends attribute `kind` with `data`, padded to four bytes.
fn attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// `struct nhmsg`: family, scope, protocol, reserved, flags.
fn nhmsg(family: u8, protocol: u8) -> Vec<u8> {
    let mut b = vec![family, 0, protocol, 0];
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

/// The body of an `RTM_NEWNEXTHOP` for gateway `gw` on device `oif`.
pub(super) fn encode_single(id: u32, protocol: u8, gw: IpAddr, oif: u32) -> Vec<u8> {
    let mut b = nhmsg(family(gw), protocol);
    attr(&mut b, NHA_ID, &id.to_ne_bytes());
    attr(&mut b, NHA_OIF, &oif.to_ne_bytes());
    attr(&mut b, NHA_GATEWAY, &octets(gw));
    b
}

/// The body of an `RTM_NEWNEXTHOP` for a group of `members`, equal weights.
pub(super) fn encode_group(id: u32, protocol: u8, members: &[u32]) -> Vec<u8> {
    let mut b = nhmsg(AF_UNSPEC, protocol);
    attr(&mut b, NHA_ID, &id.to_ne_bytes());
    // `struct nexthop_grp`: id, weight - 1, two reserved fields.
    let grp: Vec<u8> = members
        .iter()
        .flat_map(|m| {
            let mut e = m.to_ne_bytes().to_vec();
            e.extend_from_slice(&[0, 0, 0, 0]);
            e
        })
        .collect();
    attr(&mut b, NHA_GROUP, &grp);
    b
}

/// The body of an `RTM_DELNEXTHOP` of `id`.
pub(super) fn encode_delete(id: u32) -> Vec<u8> {
    let mut b = nhmsg(AF_UNSPEC, 0);
    attr(&mut b, NHA_ID, &id.to_ne_bytes());
    b
}

/// The body of an `RTM_NEWROUTE` (`nh_id: Some`) or `RTM_DELROUTE`
/// (`None`) of `prefix` in `table` with `protocol`.
pub(super) fn encode_route(
    prefix: &Prefix,
    table: u32,
    protocol: u8,
    nh_id: Option<u32>,
) -> Vec<u8> {
    let addr = prefix.network();
    // `struct rtmsg`: family, dst_len, src_len, tos, table, protocol,
    // scope (universe), type, flags; RTA_TABLE holds the full number.
    let mut b = vec![
        family(addr),
        prefix.prefix_len(),
        0,
        0,
        u8::try_from(table).unwrap_or(0),
        protocol,
        0,
        RTN_UNICAST,
    ];
    b.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut b, RTA_DST, &octets(addr));
    attr(&mut b, RTA_TABLE, &table.to_ne_bytes());
    if let Some(id) = nh_id {
        attr(&mut b, RTA_NH_ID, &id.to_ne_bytes());
    }
    b
}

/// A nexthop object as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    pub id: u32,
    pub protocol: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// Member ids, for a group.
    pub group: Vec<u32>,
}

/// Parses an `RTM_NEWNEXTHOP` body (a dump's answer).
pub(super) fn parse(body: &[u8]) -> Option<Found> {
    let header = body.get(..8)?;
    let (fam, protocol) = (header[0], header[2]);
    let mut found = Found {
        id: 0,
        protocol,
        gateway: None,
        oif: None,
        group: Vec::new(),
    };
    let mut at = 8;
    while at + 4 <= body.len() {
        let len = u16::from_ne_bytes([body[at], body[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([body[at + 2], body[at + 3]]) & 0x3fff;
        let data = body.get(at + 4..at + len.max(4))?;
        let u32_of = |d: &[u8]| {
            d.get(..4)
                .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
        };
        match kind {
            NHA_ID => found.id = u32_of(data)?,
            NHA_OIF => found.oif = u32_of(data),
            NHA_GATEWAY => {
                found.gateway = match (fam, data.len()) {
                    (AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(data).ok()?)),
                    (AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(data).ok()?)),
                    _ => None,
                }
            }
            NHA_GROUP => found.group = data.chunks_exact(8).filter_map(u32_of).collect(),
            _ => {}
        }
        if len < 4 {
            break;
        }
        at += len.next_multiple_of(4);
    }
    (found.id != 0).then_some(found)
}

/// The next hops each object stands for (a group's, its members'), for
/// reading routes back; `None` for an object that is neither a gateway
/// nor a group of gateways.
pub(super) fn hops_by_id(found: &[Found]) -> HashMap<u32, Vec<IpAddr>> {
    let gateways: HashMap<u32, IpAddr> = found
        .iter()
        .filter_map(|f| Some((f.id, f.gateway?)))
        .collect();
    found
        .iter()
        .filter_map(|f| {
            let mut hops = if f.group.is_empty() {
                vec![*gateways.get(&f.id)?]
            } else {
                f.group
                    .iter()
                    .map(|m| gateways.get(m).copied())
                    .collect::<Option<Vec<_>>>()?
            };
            hops.sort();
            Some((f.id, hops))
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Single {
    id: u32,
    /// Groups of ours it is a member of.
    groups: u32,
}

/// One object to create, in order (members before their group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Create {
    Single { id: u32, gateway: IpAddr, oif: u32 },
    Group { id: u32, members: Vec<u32> },
}

impl Create {
    pub(super) fn id(&self) -> u32 {
        match self {
            Create::Single { id, .. } | Create::Group { id, .. } => *id,
        }
    }

    pub(super) fn encode(&self, protocol: u8) -> Vec<u8> {
        match self {
            Create::Single { id, gateway, oif } => encode_single(*id, protocol, *gateway, *oif),
            Create::Group { id, members } => encode_group(*id, protocol, members),
        }
    }
}

/// Our objects, and the devices gateways were found on.
#[derive(Debug, Default)]
pub(super) struct Objects {
    next: u32,
    /// Ids someone else holds.
    taken: HashSet<u32>,
    singles: HashMap<IpAddr, Single>,
    groups: BTreeMap<Vec<IpAddr>, u32>,
    /// Each gateway's device, once looked up (`None`: none found; its
    /// routes go in with their gateways, as without objects).
    pub(super) oifs: HashMap<IpAddr, Option<u32>>,
}

impl Objects {
    /// The objects found in the kernel: those of `protocol` are ours.
    pub(super) fn from_found(protocol: u8, found: &[Found]) -> Self {
        let mut objects = Objects {
            next: u32::from(protocol) << 24,
            ..Objects::default()
        };
        let hops = hops_by_id(found);
        for f in found {
            if f.protocol != protocol {
                objects.taken.insert(f.id);
                continue;
            }
            match (f.group.is_empty(), f.gateway, hops.get(&f.id)) {
                (true, Some(gw), _) => {
                    objects.singles.insert(
                        gw,
                        Single {
                            id: f.id,
                            groups: 0,
                        },
                    );
                    objects.oifs.insert(gw, f.oif);
                }
                (false, _, Some(set)) => {
                    objects.groups.insert(set.clone(), f.id);
                }
                // Not one we make: left alone, its id not reused.
                _ => {
                    objects.taken.insert(f.id);
                }
            }
            objects.next = objects.next.max(f.id);
        }
        for set in objects.groups.keys() {
            for hop in set {
                if let Some(s) = objects.singles.get_mut(hop) {
                    s.groups += 1;
                }
            }
        }
        objects
    }

    fn fresh_id(&mut self) -> u32 {
        loop {
            self.next = self.next.wrapping_add(1).max(1);
            if !self.taken.contains(&self.next) && !self.is_ours(self.next) {
                return self.next;
            }
        }
    }

    fn is_ours(&self, id: u32) -> bool {
        self.singles.values().any(|s| s.id == id) || self.groups.values().any(|&g| g == id)
    }

    /// The gateways of `hops` whose device is still to be looked up.
    pub(super) fn unresolved<'a>(
        &'a self,
        hops: &'a [IpAddr],
    ) -> impl Iterator<Item = IpAddr> + 'a {
        hops.iter()
            .copied()
            .filter(|h| !self.singles.contains_key(h) && !self.oifs.contains_key(h))
    }

    /// The object for the sorted set `hops`, with what must be created
    /// first (recorded here as existing); `None` when a gateway has no
    /// device known (the route then carries its gateways).
    pub(super) fn ensure(&mut self, hops: &[IpAddr], out: &mut Vec<Create>) -> Option<u32> {
        if hops.is_empty() {
            return None;
        }
        if hops.len() > 1
            && let Some(&id) = self.groups.get(hops)
        {
            return Some(id);
        }
        let oifs: Vec<Option<u32>> = hops
            .iter()
            .map(|h| match self.singles.get(h) {
                Some(_) => Some(0),
                None => self.oifs.get(h).copied().flatten(),
            })
            .collect();
        if oifs.iter().any(Option::is_none) {
            return None;
        }
        let mut members = Vec::with_capacity(hops.len());
        for (&gateway, oif) in hops.iter().zip(oifs) {
            let id = match self.singles.get(&gateway) {
                Some(s) => s.id,
                None => {
                    let id = self.fresh_id();
                    let oif = oif.expect("checked above");
                    out.push(Create::Single { id, gateway, oif });
                    self.singles.insert(gateway, Single { id, groups: 0 });
                    id
                }
            };
            members.push(id);
        }
        if let [one] = members.as_slice() {
            return Some(*one);
        }
        let id = self.fresh_id();
        for hop in hops {
            if let Some(s) = self.singles.get_mut(hop) {
                s.groups += 1;
            }
        }
        out.push(Create::Group {
            id,
            members: members.clone(),
        });
        self.groups.insert(hops.to_vec(), id);
        Some(id)
    }

    /// Forgets object `id`, whose creation failed (with any group over it).
    pub(super) fn forget(&mut self, id: u32) {
        let gone: Vec<Vec<IpAddr>> = self
            .groups
            .iter()
            .filter(|(set, g)| {
                **g == id
                    || set
                        .iter()
                        .any(|h| self.singles.get(h).is_some_and(|s| s.id == id))
            })
            .map(|(set, _)| set.clone())
            .collect();
        for set in gone {
            self.drop_group(&set);
        }
        self.singles.retain(|_, s| s.id != id);
    }

    fn drop_group(&mut self, set: &[IpAddr]) -> Option<u32> {
        let id = self.groups.remove(set)?;
        for hop in set {
            if let Some(s) = self.singles.get_mut(hop) {
                s.groups = s.groups.saturating_sub(1);
            }
        }
        Some(id)
    }

    /// The objects no route uses any more (`uses`: how many of our routes
    /// have exactly that next-hop set), forgotten here: groups first, then
    /// the gateways no group holds either.
    pub(super) fn garbage(&mut self, uses: impl Fn(&[IpAddr]) -> u32) -> Vec<u32> {
        let idle: Vec<Vec<IpAddr>> = self
            .groups
            .keys()
            .filter(|set| uses(set) == 0)
            .cloned()
            .collect();
        let mut out: Vec<u32> = idle.iter().filter_map(|set| self.drop_group(set)).collect();
        let singles: Vec<IpAddr> = self
            .singles
            .iter()
            .filter(|(hop, s)| s.groups == 0 && uses(&[**hop]) == 0)
            .map(|(hop, _)| *hop)
            .collect();
        for hop in singles {
            if let Some(s) = self.singles.remove(&hop) {
                out.push(s.id);
            }
        }
        out
    }

    /// How many objects are ours (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.singles.len() + self.groups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn objects() -> Objects {
        let mut o = Objects::from_found(200, &[]);
        for gw in ["10.0.0.2", "10.0.0.3", "fd00::2"] {
            o.oifs.insert(a(gw), Some(7));
        }
        o
    }

    #[test]
    fn encoded_objects_parse_back() {
        let single = encode_single(0xC800_0001, 200, a("10.0.0.2"), 7);
        assert_eq!(
            parse(&single),
            Some(Found {
                id: 0xC800_0001,
                protocol: 200,
                gateway: Some(a("10.0.0.2")),
                oif: Some(7),
                group: vec![],
            })
        );
        let v6 = parse(&encode_single(9, 200, a("fd00::2"), 3)).unwrap();
        assert_eq!(v6.gateway, Some(a("fd00::2")));
        let group = parse(&encode_group(5, 200, &[1, 2])).unwrap();
        assert_eq!(group.group, vec![1, 2]);
        assert_eq!(parse(&encode_delete(5)).unwrap().id, 5);
        assert_eq!(parse(&[0; 4]), None);
        // Truncated attributes never panic.
        for cut in 0..single.len() {
            let _ = parse(&single[..cut]);
        }
    }

    #[test]
    fn sets_share_gateway_objects_and_groups_come_after_their_members() {
        let mut o = objects();
        let mut created = Vec::new();
        let one = o.ensure(&[a("10.0.0.2")], &mut created).unwrap();
        assert_eq!(one, 200 << 24 | 1);
        let pair = o
            .ensure(&[a("10.0.0.2"), a("10.0.0.3")], &mut created)
            .unwrap();
        assert_eq!(
            created,
            vec![
                Create::Single {
                    id: one,
                    gateway: a("10.0.0.2"),
                    oif: 7
                },
                Create::Single {
                    id: one + 1,
                    gateway: a("10.0.0.3"),
                    oif: 7
                },
                Create::Group {
                    id: pair,
                    members: vec![one, one + 1]
                },
            ]
        );
        // Asked again: nothing more to create.
        created.clear();
        assert_eq!(
            o.ensure(&[a("10.0.0.2"), a("10.0.0.3")], &mut created),
            Some(pair)
        );
        assert!(created.is_empty());
        // A gateway without a device: no object.
        assert_eq!(o.ensure(&[a("10.9.9.9")], &mut created), None);
    }

    #[test]
    fn only_objects_no_route_uses_are_collected_groups_first() {
        let mut o = objects();
        let mut created = Vec::new();
        let g2 = o.ensure(&[a("10.0.0.2")], &mut created).unwrap();
        let pair = o
            .ensure(&[a("10.0.0.2"), a("10.0.0.3")], &mut created)
            .unwrap();
        // Every route uses the pair: 10.0.0.3 is held by it, 10.0.0.2 too.
        let only_pair = |set: &[IpAddr]| u32::from(set.len() == 2);
        assert_eq!(o.garbage(only_pair), Vec::<u32>::new());
        // Nothing is used: the group, then both gateways.
        let mut gone = o.garbage(|_| 0);
        assert_eq!(gone.remove(0), pair);
        gone.sort();
        assert_eq!(gone, vec![g2, g2 + 1]);
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn objects_found_are_ours_by_protocol_and_others_ids_are_skipped() {
        let found = [
            Found {
                id: 200 << 24 | 1,
                protocol: 200,
                gateway: Some(a("10.0.0.2")),
                oif: Some(7),
                group: vec![],
            },
            Found {
                id: 200 << 24 | 3,
                protocol: 11,
                gateway: Some(a("10.0.0.3")),
                oif: Some(7),
                group: vec![],
            },
            Found {
                id: 200 << 24 | 2,
                protocol: 200,
                gateway: None,
                oif: None,
                group: vec![200 << 24 | 1],
            },
        ];
        let mut o = Objects::from_found(200, &found);
        assert_eq!(o.len(), 1 + 1);
        let mut created = Vec::new();
        assert_eq!(
            o.ensure(&[a("10.0.0.2")], &mut created),
            Some(200 << 24 | 1)
        );
        o.oifs.insert(a("10.0.0.3"), Some(7));
        // Not another daemon's 0xC8000003, though the gateway is the same.
        assert_eq!(
            o.ensure(&[a("10.0.0.3")], &mut created),
            Some(200 << 24 | 4)
        );
        assert_eq!(hops_by_id(&found)[&(200 << 24 | 2)], vec![a("10.0.0.2")]);
    }
}
