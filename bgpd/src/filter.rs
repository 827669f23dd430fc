//! Route filters (import and export policy per peer) as pure values:
//! ordered rules of matches and an action, a default action at the end,
//! and the modifications an accepting rule makes. Also the communities of
//! RFC 1997 and RFC 8092 as text (`65000:100`, `no-export`, `65000:1:2`)
//! and the well-known communities' export rules (RFC 1997).
//!
//! A [`Filter`] is evaluated on a route's prefix and attributes; the first
//! rule whose matches all hold decides, else the default action does. The
//! [`Verdict`] names the deciding rule, so its modifications can be applied
//! later ([`Filter::apply`]) and a caller can memoise by `(attributes,
//! verdict)`. The RIB (`rib.rs`) runs the import filter as a path enters
//! the Loc-RIB, keeping a rejected path in the Adj-RIB-In, and the export
//! filter in the export path; see [`PeerPolicy`].
//!
//! # Calico's BGPFilter
//!
//! A BGPPeer's `filters` (BGPFilter resources, in order) become one filter
//! per direction: the rules of every BGPFilter concatenated (first match
//! across filters is first match in the concatenation), each rule with a
//! [`Match::Family`] for its `exportV4`/`importV4`/`exportV6`/`importV6`
//! list, then [`Match::calico_cidr`] for `cidr`, `matchOperator` and
//! `prefixLength`, and [`Match::Source`] `Peer` for `source: RemotePeers`.
//! The default is accept, as in Calico. The rule's `interface` (routes
//! from a local interface) has no counterpart: local routes here carry no
//! interface; felix resolves it to the prefixes it announces.

use std::fmt;
use std::str::FromStr;

use crate::attr::{LargeCommunity, PathAttrs};
use crate::prefix::{AfiSafi, Prefix};

/// NO_EXPORT (RFC 1997): not advertised outside the AS (to eBGP).
pub const NO_EXPORT: u32 = 0xFFFF_FF01;
/// NO_ADVERTISE (RFC 1997): not advertised to any peer.
pub const NO_ADVERTISE: u32 = 0xFFFF_FF02;
/// NO_EXPORT_SUBCONFED (RFC 1997): not outside the member AS; without
/// confederations, the same as NO_EXPORT.
pub const NO_EXPORT_SUBCONFED: u32 = 0xFFFF_FF03;

const WELL_KNOWN: [(&str, u32); 3] = [
    ("no-export", NO_EXPORT),
    ("no-advertise", NO_ADVERTISE),
    ("no-export-subconfed", NO_EXPORT_SUBCONFED),
];

/// A filter or community that cannot be built, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "{0:?} is not a community (ASN:VALUE, each 0-65535, or no-export, no-advertise, no-export-subconfed)"
    )]
    Community(String),
    #[error("{0:?} is not a large community (GLOBAL:LOCAL1:LOCAL2, each 0-4294967295)")]
    LargeCommunity(String),
    #[error("{prefix} has host bits set (did you mean {network}?)")]
    HostBits { prefix: Prefix, network: Prefix },
    #[error("length {len} is outside {min}-{max} for {prefix}")]
    Length {
        prefix: Prefix,
        len: u8,
        min: u8,
        max: u8,
    },
    #[error("min {min} is greater than max {max}")]
    Range { min: u32, max: u32 },
    #[error("AS path pattern {pattern:?}: {token:?} is neither an AS number, `?` nor `*`")]
    Pattern { pattern: String, token: String },
}

/// A standard community (RFC 1997) as text: `65000:100` or a well-known name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Community(pub u32);

impl FromStr for Community {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, FilterError> {
        let bad = || FilterError::Community(s.to_owned());
        if let Some((_, v)) = WELL_KNOWN.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Ok(Community(*v));
        }
        let (a, b) = s.split_once(':').ok_or_else(bad)?;
        let a: u16 = a.trim().parse().map_err(|_| bad())?;
        let b: u16 = b.trim().parse().map_err(|_| bad())?;
        Ok(Community((u32::from(a) << 16) | u32::from(b)))
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match WELL_KNOWN.iter().find(|(_, v)| *v == self.0) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Community {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for LargeCommunity {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, FilterError> {
        let bad = || FilterError::LargeCommunity(s.to_owned());
        let parts: Vec<u32> = s
            .split(':')
            .map(|p| p.trim().parse::<u32>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match parts[..] {
            [global, local1, local2] => Ok(LargeCommunity {
                global,
                local1,
                local2,
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global, self.local1, self.local2)
    }
}

impl<'de> serde::Deserialize<'de> for LargeCommunity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether the well-known communities on a route let it go to a peer
/// (RFC 1997): NO_ADVERTISE to nobody, NO_EXPORT and NO_EXPORT_SUBCONFED
/// (no confederations here) not to eBGP.
pub fn communities_allow_export(communities: &[u32], to_ibgp: bool) -> bool {
    !communities
        .iter()
        .any(|&c| c == NO_ADVERTISE || (!to_ibgp && (c == NO_EXPORT || c == NO_EXPORT_SUBCONFED)))
}

/// A prefix-list entry: routes inside `net` whose length is in `ge..=le`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixMatch {
    pub net: Prefix,
    pub ge: u8,
    pub le: u8,
}

impl PrefixMatch {
    /// `net` with optional bounds, as in a Cisco/FRR prefix list: neither
    /// means exactly `net`; `ge` alone means up to the family's maximum;
    /// `le` alone means from `net`'s own length.
    pub fn new(net: Prefix, ge: Option<u8>, le: Option<u8>) -> Result<Self, FilterError> {
        if net.trunc() != net {
            return Err(FilterError::HostBits {
                prefix: net,
                network: net.trunc(),
            });
        }
        let (own, max) = (net.prefix_len(), net.max_prefix_len());
        let (ge, le) = match (ge, le) {
            (None, None) => (own, own),
            (Some(g), None) => (g, max),
            (None, Some(l)) => (own, l),
            (Some(g), Some(l)) => (g, l),
        };
        for len in [ge, le] {
            if len < own || len > max {
                return Err(FilterError::Length {
                    prefix: net,
                    len,
                    min: own,
                    max,
                });
            }
        }
        if ge > le {
            return Err(FilterError::Range {
                min: ge.into(),
                max: le.into(),
            });
        }
        Ok(PrefixMatch { net, ge, le })
    }

    pub fn matches(&self, prefix: &Prefix) -> bool {
        let len = prefix.prefix_len();
        self.net.contains(prefix) && len >= self.ge && len <= self.le
    }
}

/// Calico's `matchOperator` (BGPFilter rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CidrOperator {
    Equal,
    NotEqual,
    In,
    NotIn,
}

/// Where a route came from, for [`Match::Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteSource {
    /// Originated by this speaker.
    Local,
    /// Learned from a BGP peer (Calico's `RemotePeers`).
    Peer,
}

/// An AS path pattern in BIRD's manner (`bgp_path ~ [= * 65010 =]`): AS
/// numbers, `?` for any one AS, `*` for any sequence (also empty); the
/// whole path must match. `* 65010 *` is "contains 65010", `* 65010` is
/// "originated by 65010", `65002 *` is "learned through 65002".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsPathPattern(Vec<PathToken>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PathToken {
    Asn(u32),
    One,
    Any,
}

impl FromStr for AsPathPattern {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, FilterError> {
        s.split_whitespace()
            .map(|t| match t {
                "?" => Ok(PathToken::One),
                "*" => Ok(PathToken::Any),
                n => n
                    .parse()
                    .map(PathToken::Asn)
                    .map_err(|_| FilterError::Pattern {
                        pattern: s.to_owned(),
                        token: n.to_owned(),
                    }),
            })
            .collect::<Result<_, _>>()
            .map(AsPathPattern)
    }
}

impl AsPathPattern {
    /// Whether the whole of `path` matches (dynamic programming over
    /// pattern and path: O(pattern × path)).
    pub fn matches(&self, path: &[u32]) -> bool {
        // ok[j]: the pattern so far matches path[..j].
        let mut ok = vec![false; path.len() + 1];
        ok[0] = true;
        for t in &self.0 {
            let mut next = vec![false; path.len() + 1];
            for j in 0..=path.len() {
                next[j] = match t {
                    PathToken::Any => ok[j] || (j > 0 && next[j - 1]),
                    PathToken::One => j > 0 && ok[j - 1],
                    PathToken::Asn(a) => j > 0 && ok[j - 1] && path[j - 1] == *a,
                };
            }
            ok = next;
        }
        ok[path.len()]
    }
}

/// One condition on a route. A rule's matches must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Match {
    Family(AfiSafi),
    Prefix(PrefixMatch),
    /// Prefix length in `min..=max`, any network.
    PrefixLength {
        min: u8,
        max: u8,
    },
    /// Carries at least one of these communities.
    CommunityAny(Vec<u32>),
    /// Carries every one of these communities.
    CommunityAll(Vec<u32>),
    LargeCommunityAny(Vec<LargeCommunity>),
    LargeCommunityAll(Vec<LargeCommunity>),
    /// The AS path holds this AS anywhere.
    AsPathContains(u32),
    /// The last AS of the path (the originator) is this one; a path
    /// without ASes (ours, or from iBGP) has no origin AS.
    OriginAs(u32),
    /// The AS path length (as in best-path selection) is in `min..=max`.
    AsPathLength {
        min: u32,
        max: u32,
    },
    AsPath(AsPathPattern),
    Source(RouteSource),
    /// Not all of these hold.
    Not(Vec<Match>),
}

impl Match {
    /// Calico's `cidr` with `matchOperator` and `prefixLength` (for `In`
    /// and `NotIn`, as BIRD's `net ~ [ cidr{min,max} ]`: min defaults to
    /// the cidr's length, max to the family's maximum).
    pub fn calico_cidr(
        op: CidrOperator,
        cidr: Prefix,
        min: Option<u8>,
        max: Option<u8>,
    ) -> Result<Match, FilterError> {
        let (ge, le) = match op {
            CidrOperator::Equal | CidrOperator::NotEqual => (None, None),
            CidrOperator::In | CidrOperator::NotIn => (
                Some(min.unwrap_or(cidr.prefix_len())),
                Some(max.unwrap_or(cidr.max_prefix_len())),
            ),
        };
        let m = Match::Prefix(PrefixMatch::new(cidr, ge, le)?);
        Ok(match op {
            CidrOperator::Equal | CidrOperator::In => m,
            CidrOperator::NotEqual | CidrOperator::NotIn => Match::Not(vec![m]),
        })
    }

    fn holds(&self, r: &Route<'_>) -> bool {
        let a = r.attrs;
        let path = || a.as_path.iter().flat_map(|p| p.asns());
        match self {
            Match::Family(f) => AfiSafi::of(&r.prefix) == *f,
            Match::Prefix(pm) => pm.matches(&r.prefix),
            Match::PrefixLength { min, max } => (*min..=*max).contains(&r.prefix.prefix_len()),
            Match::CommunityAny(cs) => cs.iter().any(|c| a.communities.contains(c)),
            Match::CommunityAll(cs) => cs.iter().all(|c| a.communities.contains(c)),
            Match::LargeCommunityAny(cs) => cs.iter().any(|c| a.large_communities.contains(c)),
            Match::LargeCommunityAll(cs) => cs.iter().all(|c| a.large_communities.contains(c)),
            Match::AsPathContains(asn) => path().any(|x| x == *asn),
            Match::OriginAs(asn) => path().last() == Some(*asn),
            Match::AsPathLength { min, max } => {
                let len = a.as_path.as_ref().map_or(0, |p| p.length());
                (*min as usize..=*max as usize).contains(&len)
            }
            Match::AsPath(pattern) => pattern.matches(&path().collect::<Vec<_>>()),
            Match::Source(s) => *s == r.source,
            Match::Not(ms) => !ms.iter().all(|m| m.holds(r)),
        }
    }

    fn uses_prefix(&self) -> bool {
        match self {
            Match::Prefix(_) | Match::PrefixLength { .. } => true,
            Match::Not(ms) => ms.iter().any(Match::uses_prefix),
            _ => false,
        }
    }
}

/// A change an accepting rule makes to a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Modification {
    /// Replace the communities.
    SetCommunities(Vec<u32>),
    AddCommunities(Vec<u32>),
    AddLargeCommunities(Vec<LargeCommunity>),
    /// Ignored toward an eBGP peer, which never gets LOCAL_PREF.
    SetLocalPref(u32),
    SetMed(u32),
    /// Prepend `asn` `times` times; without `asn`, our AS on export and
    /// the peer's AS on import.
    Prepend {
        asn: Option<u32>,
        times: u8,
    },
    /// Prepend these ASes so that the path starts with them, in this
    /// order (Calico's `prependASPath`).
    PrependPath(Vec<u32>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Reject,
}

/// One rule: if all `matches` hold (none: always), `action`, and on
/// accept the `modifications`, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub action: Action,
    pub modifications: Vec<Modification>,
}

impl Rule {
    pub fn new(matches: Vec<Match>, action: Action) -> Rule {
        Rule {
            matches,
            action,
            modifications: Vec::new(),
        }
    }
}

/// Ordered rules and the action when none matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    pub rules: Vec<Rule>,
    pub default: Action,
}

impl Default for Filter {
    /// Accepts everything unchanged.
    fn default() -> Self {
        Filter {
            rules: Vec::new(),
            default: Action::Accept,
        }
    }
}

/// A route as a filter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub prefix: Prefix,
    pub attrs: &'a PathAttrs,
    pub source: RouteSource,
}

/// The outcome of [`Filter::evaluate`]: the deciding rule (`None`: the
/// default action) and whether the route is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verdict {
    pub rule: Option<usize>,
    pub accept: bool,
}

impl Verdict {
    /// Accepted by a rule that changes the route.
    pub fn modifies(&self, filter: &Filter) -> bool {
        self.accept && !filter.modifications(*self).is_empty()
    }
}

impl Filter {
    /// Accepts nothing.
    pub fn reject_all() -> Filter {
        Filter {
            rules: Vec::new(),
            default: Action::Reject,
        }
    }

    /// Accepts everything unchanged: the filter is a no-op.
    pub fn is_accept_all(&self) -> bool {
        self.default == Action::Accept
            && self
                .rules
                .iter()
                .all(|r| r.action == Action::Accept && r.modifications.is_empty())
    }

    /// Whether a verdict may differ between prefixes with the same
    /// attributes (a prefix or prefix-length match anywhere).
    pub fn uses_prefix(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.matches.iter().any(Match::uses_prefix))
    }

    /// The first rule whose matches all hold decides; else the default.
    pub fn evaluate(&self, route: &Route<'_>) -> Verdict {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.matches.iter().all(|m| m.holds(route)) {
                return Verdict {
                    rule: Some(i),
                    accept: rule.action == Action::Accept,
                };
            }
        }
        Verdict {
            rule: None,
            accept: self.default == Action::Accept,
        }
    }

    /// The modifications of the rule that gave `verdict`.
    pub fn modifications(&self, verdict: Verdict) -> &[Modification] {
        match verdict.rule.and_then(|i| self.rules.get(i)) {
            Some(rule) if verdict.accept => &rule.modifications,
            _ => &[],
        }
    }

    /// Applies the modifications of `verdict`'s rule to `attrs`.
    /// `prepend_as` is the AS a [`Modification::Prepend`] without one
    /// uses; `local_pref` says whether LOCAL_PREF may be set (not toward
    /// an eBGP peer).
    pub fn apply(
        &self,
        verdict: Verdict,
        attrs: &mut PathAttrs,
        prepend_as: u32,
        local_pref: bool,
    ) {
        for m in self.modifications(verdict) {
            match m {
                Modification::SetCommunities(cs) => attrs.communities = cs.clone(),
                Modification::AddCommunities(cs) => add_all(&mut attrs.communities, cs),
                Modification::AddLargeCommunities(cs) => add_all(&mut attrs.large_communities, cs),
                Modification::SetLocalPref(v) if local_pref => attrs.local_pref = Some(*v),
                Modification::SetLocalPref(_) => {}
                Modification::SetMed(v) => attrs.med = Some(*v),
                Modification::Prepend { asn, times } => {
                    let path = attrs.as_path.get_or_insert_with(Default::default);
                    for _ in 0..*times {
                        path.prepend(asn.unwrap_or(prepend_as));
                    }
                }
                Modification::PrependPath(asns) => {
                    let path = attrs.as_path.get_or_insert_with(Default::default);
                    for asn in asns.iter().rev() {
                        path.prepend(*asn);
                    }
                }
            }
        }
    }
}

/// Appends the items of `add` that `list` lacks.
pub fn add_all<T: PartialEq + Copy>(list: &mut Vec<T>, add: &[T]) {
    for c in add {
        if !list.contains(c) {
            list.push(*c);
        }
    }
}

/// A peer's route policy: import and export filters, and the communities
/// added to every route exported to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PeerPolicy {
    /// Run on every path from the peer as it enters the Loc-RIB.
    pub import: Filter,
    /// Run on every Loc-RIB best path before it goes to the peer.
    pub export: Filter,
    /// Added (RFC 1997) to every route exported to the peer.
    pub communities: Vec<u32>,
    /// Added (RFC 8092) to every route exported to the peer.
    pub large_communities: Vec<LargeCommunity>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AsPath;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn c(s: &str) -> u32 {
        s.parse::<Community>().unwrap().0
    }

    fn lc(s: &str) -> LargeCommunity {
        s.parse().unwrap()
    }

    fn attrs(path: &[u32], communities: &[&str]) -> PathAttrs {
        PathAttrs {
            as_path: Some(AsPath::sequence(path.to_vec())),
            communities: communities.iter().map(|s| c(s)).collect(),
            ..PathAttrs::default()
        }
    }

    fn holds(m: &Match, prefix: &str, a: &PathAttrs) -> bool {
        m.holds(&Route {
            prefix: p(prefix),
            attrs: a,
            source: RouteSource::Peer,
        })
    }

    #[test]
    fn communities_parse_and_print_in_both_notations() {
        for (text, value, shown) in [
            ("65000:100", 0xfde8_0064, "65000:100"),
            ("0:0", 0, "0:0"),
            ("no-export", NO_EXPORT, "no-export"),
            ("NO-ADVERTISE", NO_ADVERTISE, "no-advertise"),
            ("65535:65283", NO_EXPORT_SUBCONFED, "no-export-subconfed"),
        ] {
            let got: Community = text.parse().unwrap();
            assert_eq!(got.0, value, "{text}");
            assert_eq!(got.to_string(), shown);
        }
        for bad in ["65536:1", "1", "a:b", "1:2:3", ""] {
            assert!(bad.parse::<Community>().is_err(), "{bad}");
        }
        assert_eq!(lc("65000:1:4294967295").to_string(), "65000:1:4294967295");
        for bad in ["1:2", "1:2:3:4", "1:x:3", "4294967296:1:1"] {
            assert_eq!(
                bad.parse::<LargeCommunity>(),
                Err(FilterError::LargeCommunity(bad.into()))
            );
        }
    }

    #[test]
    fn prefix_match_follows_prefix_list_ge_le_rules() {
        let net = p("10.0.0.0/8");
        let cases: &[(Option<u8>, Option<u8>, &str, bool)] = &[
            (None, None, "10.0.0.0/8", true),
            (None, None, "10.1.0.0/16", false),
            (Some(16), None, "10.1.0.0/16", true),
            (Some(16), None, "10.1.2.3/32", true),
            (Some(16), None, "10.0.0.0/8", false),
            (None, Some(16), "10.0.0.0/8", true),
            (None, Some(16), "10.1.2.0/24", false),
            (Some(16), Some(24), "10.1.2.0/24", true),
            (Some(16), Some(24), "10.1.2.0/25", false),
            (Some(16), Some(24), "11.1.0.0/16", false),
            (Some(16), Some(24), "2001:db8::/32", false),
        ];
        for &(ge, le, prefix, want) in cases {
            let m = PrefixMatch::new(net, ge, le).unwrap();
            assert_eq!(
                m.matches(&p(prefix)),
                want,
                "{net} ge {ge:?} le {le:?} vs {prefix}"
            );
        }
    }

    #[test]
    fn prefix_match_refuses_host_bits_and_impossible_lengths() {
        assert!(matches!(
            PrefixMatch::new(p("10.1.0.0/8"), None, None),
            Err(FilterError::HostBits { .. })
        ));
        assert_eq!(
            PrefixMatch::new(p("10.0.0.0/8"), Some(4), None)
                .unwrap_err()
                .to_string(),
            "length 4 is outside 8-32 for 10.0.0.0/8"
        );
        assert!(PrefixMatch::new(p("10.0.0.0/8"), None, Some(33)).is_err());
        assert_eq!(
            PrefixMatch::new(p("10.0.0.0/8"), Some(24), Some(16)),
            Err(FilterError::Range { min: 24, max: 16 })
        );
    }

    #[test]
    fn calico_operators_match_as_birds_net_comparisons() {
        use CidrOperator::*;
        let cidr = p("10.0.0.0/16");
        let none = PathAttrs::default();
        // (operator, prefixLength min, max, route, matches)
        let cases = [
            (Equal, None, None, "10.0.0.0/16", true),
            (Equal, None, None, "10.0.1.0/24", false),
            (NotEqual, None, None, "10.0.0.0/16", false),
            (NotEqual, None, None, "10.0.1.0/24", true),
            (In, None, None, "10.0.0.0/16", true),
            (In, None, None, "10.0.1.0/24", true),
            (In, None, None, "10.1.0.0/24", false),
            (In, Some(24), Some(26), "10.0.1.0/24", true),
            (In, Some(24), Some(26), "10.0.1.0/28", false),
            (In, Some(24), Some(26), "10.0.0.0/16", false),
            (NotIn, None, None, "10.0.1.0/24", false),
            (NotIn, None, None, "192.168.0.0/24", true),
            (NotIn, Some(24), None, "10.0.0.0/16", true),
        ];
        for (op, min, max, route, want) in cases {
            let m = Match::calico_cidr(op, cidr, min, max).unwrap();
            assert_eq!(
                holds(&m, route, &none),
                want,
                "{op:?} {min:?}-{max:?} {route}"
            );
        }
    }

    #[test]
    fn community_and_as_path_matches() {
        let a = attrs(&[65002, 65005, 65010], &["65002:1", "65002:2", "no-export"]);
        let mut a_lc = a.clone();
        a_lc.large_communities = vec![lc("65002:7:7")];
        let cases: Vec<(Match, bool)> = vec![
            (Match::CommunityAny(vec![c("65002:9"), c("65002:2")]), true),
            (Match::CommunityAny(vec![c("65002:9")]), false),
            (
                Match::CommunityAll(vec![c("65002:1"), c("no-export")]),
                true,
            ),
            (Match::CommunityAll(vec![c("65002:1"), c("65002:9")]), false),
            (
                Match::LargeCommunityAny(vec![lc("1:1:1"), lc("65002:7:7")]),
                true,
            ),
            (
                Match::LargeCommunityAll(vec![lc("1:1:1"), lc("65002:7:7")]),
                false,
            ),
            (Match::AsPathContains(65005), true),
            (Match::AsPathContains(65001), false),
            (Match::OriginAs(65010), true),
            (Match::OriginAs(65002), false),
            (Match::AsPathLength { min: 3, max: 3 }, true),
            (Match::AsPathLength { min: 0, max: 2 }, false),
            (Match::AsPath("65002 * 65010".parse().unwrap()), true),
            (Match::AsPath("* 65005 *".parse().unwrap()), true),
            (Match::AsPath("? 65010".parse().unwrap()), false),
            (Match::AsPath("? ? ?".parse().unwrap()), true),
            (Match::AsPath("65002 65010".parse().unwrap()), false),
            (Match::Source(RouteSource::Peer), true),
            (Match::Source(RouteSource::Local), false),
            (Match::Not(vec![Match::AsPathContains(65005)]), false),
            (
                Match::Not(vec![Match::AsPathContains(65005), Match::OriginAs(1)]),
                true,
            ),
            (Match::Family(AfiSafi::IPV4_UNICAST), true),
            (Match::Family(AfiSafi::IPV6_UNICAST), false),
            (Match::PrefixLength { min: 24, max: 32 }, true),
        ];
        for (m, want) in cases {
            assert_eq!(holds(&m, "10.1.0.0/24", &a_lc), want, "{m:?}");
        }
        // An empty path has no origin AS, and matches only an all-`*` pattern.
        let empty = attrs(&[], &[]);
        assert!(!holds(&Match::OriginAs(65000), "10.1.0.0/24", &empty));
        assert!(holds(
            &Match::AsPath("*".parse().unwrap()),
            "10.1.0.0/24",
            &empty
        ));
        assert!(!holds(
            &Match::AsPath("?".parse().unwrap()),
            "10.1.0.0/24",
            &empty
        ));
        assert_eq!(
            "65002 x".parse::<AsPathPattern>(),
            Err(FilterError::Pattern {
                pattern: "65002 x".into(),
                token: "x".into()
            })
        );
    }

    #[test]
    fn first_matching_rule_decides_and_the_default_catches_the_rest() {
        let f = Filter {
            rules: vec![
                Rule::new(
                    vec![Match::CommunityAny(vec![c("65002:666")])],
                    Action::Reject,
                ),
                Rule {
                    modifications: vec![Modification::SetLocalPref(200)],
                    ..Rule::new(
                        vec![Match::Prefix(
                            PrefixMatch::new(p("10.0.0.0/8"), Some(16), Some(24)).unwrap(),
                        )],
                        Action::Accept,
                    )
                },
            ],
            default: Action::Reject,
        };
        let route = |prefix: &str, a: &PathAttrs| {
            f.evaluate(&Route {
                prefix: p(prefix),
                attrs: a,
                source: RouteSource::Peer,
            })
        };
        let plain = attrs(&[65002], &[]);
        let black = attrs(&[65002], &["65002:666"]);
        // (route, attributes, deciding rule, accepted)
        for (prefix, a, rule, accept) in [
            ("10.1.0.0/24", &plain, Some(1), true),
            ("10.1.0.0/24", &black, Some(0), false),
            ("10.0.0.0/8", &plain, None, false),
            ("192.168.0.0/24", &plain, None, false),
        ] {
            assert_eq!(route(prefix, a), Verdict { rule, accept }, "{prefix} {a:?}");
        }
        let v = route("10.1.0.0/24", &plain);
        assert!(v.modifies(&f));
        let mut out = plain.clone();
        f.apply(v, &mut out, 65002, true);
        assert_eq!(out.local_pref, Some(200));
        assert!(f.uses_prefix() && !f.is_accept_all());
        assert!(Filter::default().is_accept_all() && !Filter::reject_all().is_accept_all());
    }

    #[test]
    fn modifications_apply_in_order_without_duplicating_communities() {
        let f = Filter {
            rules: vec![Rule {
                modifications: vec![
                    Modification::SetCommunities(vec![c("65000:1")]),
                    Modification::AddCommunities(vec![c("65000:1"), c("65000:2")]),
                    Modification::AddLargeCommunities(vec![lc("65000:1:2")]),
                    Modification::SetMed(50),
                    Modification::SetLocalPref(300),
                    Modification::Prepend {
                        asn: None,
                        times: 2,
                    },
                    Modification::Prepend {
                        asn: Some(64999),
                        times: 1,
                    },
                    Modification::PrependPath(vec![64001, 64002]),
                ],
                ..Rule::new(vec![], Action::Accept)
            }],
            default: Action::Reject,
        };
        let mut a = attrs(&[65010], &["65010:5"]);
        let v = Verdict {
            rule: Some(0),
            accept: true,
        };
        f.apply(v, &mut a, 65000, false);
        assert_eq!(a.communities, vec![c("65000:1"), c("65000:2")]);
        assert_eq!(a.large_communities, vec![lc("65000:1:2")]);
        assert_eq!(
            (a.med, a.local_pref),
            (Some(50), None),
            "no LOCAL_PREF toward eBGP"
        );
        assert_eq!(
            a.as_path,
            Some(AsPath::sequence(vec![
                64001, 64002, 64999, 65000, 65000, 65010
            ]))
        );
        // A rejecting verdict changes nothing.
        let mut b = attrs(&[65010], &[]);
        f.apply(
            Verdict {
                rule: None,
                accept: false,
            },
            &mut b,
            65000,
            true,
        );
        assert_eq!(b, attrs(&[65010], &[]));
    }

    #[test]
    fn well_known_communities_limit_where_a_route_goes() {
        // (communities, to iBGP, allowed)
        let cases: &[(&[u32], bool, bool)] = &[
            (&[], false, true),
            (&[0xfde8_0064], false, true),
            (&[NO_EXPORT], true, true),
            (&[NO_EXPORT], false, false),
            (&[NO_EXPORT_SUBCONFED], true, true),
            (&[NO_EXPORT_SUBCONFED], false, false),
            (&[NO_ADVERTISE], true, false),
            (&[NO_ADVERTISE], false, false),
        ];
        for &(cs, ibgp, want) in cases {
            assert_eq!(
                communities_allow_export(cs, ibgp),
                want,
                "{cs:x?} ibgp {ibgp}"
            );
        }
    }
}
