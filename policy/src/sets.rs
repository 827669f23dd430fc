//! Named sets: one per distinct selector (and family), per distinct `nets`
//! list (and family) and per distinct named port (selector, protocol, name,
//! family), shared by every rule that uses it; their names and their members.
//!
//! # Names
//!
//! Set and chain names are at most [`MAX_NAME`] bytes of `[a-z0-9._/-]`,
//! starting with a letter, so they need no quoting in nft. Set names are
//! `sel4-`, `sel6-`, `net4-`, `net6-`, `port4-`, `port6-`, then a slug of
//! the content for people (letters and digits of the selector, cut short) and
//! the first 12 hex digits of a 64-bit FNV-1a hash of the canonical content,
//! which makes them unique and stable. The full selector or list is in the
//! set's comment.
//!
//! # Members
//!
//! A selector set holds the addresses of every endpoint (workload or host,
//! local or not) and the networks of every network set whose effective
//! labels match; a named-port set holds `address . port` for every endpoint
//! that matches and has a port of that name and protocol. Elements are
//! aggregated (contained networks dropped, adjacent ones merged) so an
//! interval set never holds overlapping elements.

use std::collections::{BTreeMap, BTreeSet};

use api::selector::Expr;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::ir::{Family, Set, SetElement, SetKey};
use crate::memo::FastMap;
use crate::model::{Endpoint, Model, NetworkSet};

/// Longest set or chain name the compiler makes.
pub const MAX_NAME: usize = 64;

/// Longest comment the kernel keeps on a set (`NFTNL_UDATA_COMMENT_MAXLEN` less one).
pub(crate) const MAX_COMMENT: usize = 127;

/// 64-bit FNV-1a: small, stable across runs and platforms.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `prefix-name` when that is a short, plain identifier; otherwise
/// `prefix-<slug>-<hash>` within [`MAX_NAME`] bytes.
pub fn name(prefix: &str, content: &str) -> String {
    let plain = format!("{prefix}-{content}");
    let plain_ok = plain.len() <= MAX_NAME
        && plain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._/-".contains(&b));
    if plain_ok {
        plain
    } else {
        hashed_name(prefix, content)
    }
}

/// `prefix-<slug>-<hash>`: always hashed, for content that is not a name.
pub fn hashed_name(prefix: &str, content: &str) -> String {
    let hash = format!("{:016x}", fnv1a(content.as_bytes()));
    let room = MAX_NAME - prefix.len() - 2 - 12;
    let slug = slug(content, room.min(24));
    if slug.is_empty() {
        format!("{prefix}-{}", &hash[..12])
    } else {
        format!("{prefix}-{slug}-{}", &hash[..12])
    }
}

/// Lower-case letters and digits of `content`, runs joined by `-`, at most `max` bytes.
fn slug(content: &str, max: usize) -> String {
    let mut out = String::new();
    for word in content
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let sep = usize::from(!out.is_empty());
        if out.len() + sep + word.len() > max {
            let room = max.saturating_sub(out.len() + sep);
            if room > 0 {
                if sep == 1 {
                    out.push('-');
                }
                out.push_str(&word[..room].to_ascii_lowercase());
            }
            break;
        }
        if sep == 1 {
            out.push('-');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    out
}

/// A comment nft accepts: no double quotes, at most 127 bytes.
pub fn comment(text: &str) -> String {
    comment_within(text, MAX_COMMENT)
}

/// [`comment`] in at most `max` bytes, to leave room for a suffix.
pub(crate) fn comment_within(text: &str, max: usize) -> String {
    let text = text.replace('"', "'");
    if text.len() <= max {
        return text;
    }
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

fn prefix(kind: &str, family: Family) -> String {
    format!("{kind}{}", family.number())
}

/// Non-overlapping networks covering exactly the given ones, sorted.
pub fn aggregate(nets: impl IntoIterator<Item = IpNet>) -> Vec<IpNet> {
    let (mut v4, mut v6): (Vec<Ipv4Net>, Vec<Ipv6Net>) = (Vec::new(), Vec::new());
    for net in nets {
        match net.trunc() {
            IpNet::V4(n) => v4.push(n),
            IpNet::V6(n) => v6.push(n),
        }
    }
    let mut out: Vec<IpNet> = Ipv4Net::aggregate(&v4).into_iter().map(IpNet::V4).collect();
    out.extend(Ipv6Net::aggregate(&v6).into_iter().map(IpNet::V6));
    out
}

/// What a set is made from: its name and elements follow from this and the model.
#[derive(Debug, Clone, PartialEq)]
pub enum SetSource {
    /// Addresses of endpoints and networks of network sets a selector matches.
    Selector(Expr, Family),
    /// The networks of a `nets` list.
    Nets(Vec<IpNet>, Family),
    /// `address . port` of endpoints a selector matches that have a port of
    /// this protocol and name.
    NamedPort {
        selector: Expr,
        proto: u8,
        port: String,
        family: Family,
    },
}

/// Sets kept from one compilation to the next (see
/// [`Compiler`](crate::compile::Compiler)): a set is made again only when its
/// source changed or an endpoint or network set it may hold changed.
#[derive(Debug, Default)]
pub struct SetCache {
    entries: FastMap<String, CachedSet>,
}

#[derive(Debug)]
struct CachedSet {
    source: SetSource,
    set: Set,
    /// The compilation that last used it.
    used: u64,
}

impl SetCache {
    /// Forgets every set whose members may differ because these endpoints and
    /// network sets (old and new versions of the changed ones) changed:
    /// selector and named-port sets whose selector matches their labels.
    /// `nets` sets depend on nothing else and stay. Returns the forgotten
    /// sets' names and sources.
    pub fn invalidate(
        &mut self,
        endpoints: &[&Endpoint],
        network_sets: &[&NetworkSet],
    ) -> Vec<(String, SetSource)> {
        if endpoints.is_empty() && network_sets.is_empty() {
            return Vec::new();
        }
        let stale: Vec<String> = (self.entries.iter())
            .filter(|(_, e)| match &e.source {
                SetSource::Nets(..) => false,
                SetSource::Selector(selector, _) => {
                    endpoints.iter().any(|ep| selector.matches(&ep.labels))
                        || network_sets.iter().any(|n| selector.matches(&n.labels))
                }
                SetSource::NamedPort { selector, .. } => {
                    endpoints.iter().any(|ep| selector.matches(&ep.labels))
                }
            })
            .map(|(name, _)| name.clone())
            .collect();
        let mut forgotten: Vec<(String, SetSource)> = (stale.into_iter())
            .filter_map(|name| self.entries.remove(&name).map(|e| (name, e.source)))
            .collect();
        forgotten.sort_by(|a, b| a.0.cmp(&b.0));
        forgotten
    }
}

/// The sets a compilation uses, made on first use and then shared.
#[derive(Debug)]
pub struct SetRegistry<'m> {
    model: &'m Model,
    /// Hashed while compiling (the names are long and alike), sorted at the end.
    sets: FastMap<String, Set>,
    /// Selector members, computed once per selector for both families.
    members: BTreeMap<Expr, Vec<IpNet>>,
    cache: SetCache,
    generation: u64,
    /// Every set asked for since [`SetRegistry::start_log`].
    log: Vec<(String, SetSource)>,
}

impl<'m> SetRegistry<'m> {
    pub fn new(model: &'m Model) -> Self {
        Self::with_cache(model, SetCache::default(), 0)
    }

    /// A registry that takes sets from `cache` (already invalidated for this
    /// model) where their source is the same; `generation` numbers this
    /// compilation.
    pub fn with_cache(model: &'m Model, cache: SetCache, generation: u64) -> Self {
        SetRegistry {
            model,
            sets: FastMap::default(),
            members: BTreeMap::new(),
            cache,
            generation,
            log: Vec::new(),
        }
    }

    /// The sets made so far.
    pub fn into_sets(self) -> BTreeMap<String, Set> {
        self.sets.into_iter().collect()
    }

    /// The sets made so far, and the cache holding just those for the next compilation.
    pub fn into_parts(self) -> (BTreeMap<String, Set>, SetCache) {
        let mut cache = self.cache;
        let generation = self.generation;
        cache.entries.retain(|_, e| e.used == generation);
        (self.sets.into_iter().collect(), cache)
    }

    /// Starts recording the sets asked for (by name and source).
    pub fn start_log(&mut self) {
        self.log.clear();
    }

    /// The sets asked for since [`SetRegistry::start_log`].
    pub fn take_log(&mut self) -> Vec<(String, SetSource)> {
        std::mem::take(&mut self.log)
    }

    /// Makes the set `name` from `source` (see [`SetRegistry::into_parts`]).
    pub fn make_again(&mut self, name: &str, source: &SetSource) {
        self.ensure(name, source);
    }

    /// Makes sure the sets of a log exist, as when they were first asked for.
    pub fn replay(&mut self, log: &[(String, SetSource)]) {
        for (name, source) in log {
            self.ensure(name, source);
        }
    }

    /// The set of addresses of `family` that `selector` matches.
    pub fn selector(&mut self, selector: &Expr, family: Family) -> String {
        let name = hashed_name(&prefix("sel", family), &selector.to_string());
        self.request(name, SetSource::Selector(selector.clone(), family))
    }

    /// The set of the `family` networks of a `nets` list; `None` when the list
    /// has none of that family.
    pub fn nets(&mut self, nets: &[IpNet], family: Family) -> Option<String> {
        if !nets.iter().any(|n| Family::of(n) == family) {
            return None;
        }
        let name = hashed_name(&prefix("net", family), &nets_text(nets));
        Some(self.request(name, SetSource::Nets(nets.to_vec(), family)))
    }

    /// The set of `address . port` of endpoints that `selector` matches and
    /// that have a port `port_name` of protocol `proto`.
    pub fn named_port(
        &mut self,
        selector: &Expr,
        proto: u8,
        port_name: &str,
        family: Family,
    ) -> String {
        let name = hashed_name(
            &prefix("port", family),
            &named_port_text(selector, proto, port_name),
        );
        let source = SetSource::NamedPort {
            selector: selector.clone(),
            proto,
            port: port_name.to_string(),
            family,
        };
        self.request(name, source)
    }

    fn request(&mut self, name: String, source: SetSource) -> String {
        self.ensure(&name, &source);
        self.log.push((name.clone(), source));
        name
    }

    /// Makes the set `name` from `source` unless this compilation has it:
    /// from the cache when it holds the same source, else from the model.
    fn ensure(&mut self, name: &str, source: &SetSource) {
        if self.sets.contains_key(name) {
            return;
        }
        let set = match self.cache.entries.get_mut(name) {
            Some(cached) if cached.source == *source => {
                cached.used = self.generation;
                cached.set.clone()
            }
            _ => {
                let set = self.make(source);
                self.cache.entries.insert(
                    name.to_string(),
                    CachedSet {
                        source: source.clone(),
                        set: set.clone(),
                        used: self.generation,
                    },
                );
                set
            }
        };
        self.sets.insert(name.to_string(), set);
    }

    fn make(&mut self, source: &SetSource) -> Set {
        match source {
            SetSource::Selector(selector, family) => Set {
                key: SetKey::Net(*family),
                comment: comment(&selector.to_string()),
                elements: self
                    .members_of(selector)
                    .iter()
                    .filter(|n| Family::of(n) == *family)
                    .map(|n| SetElement::Net(*n))
                    .collect(),
            },
            SetSource::Nets(nets, family) => Set {
                key: SetKey::Net(*family),
                comment: comment(&nets_text(nets)),
                elements: aggregate(nets.iter().copied().filter(|n| Family::of(n) == *family))
                    .into_iter()
                    .map(SetElement::Net)
                    .collect(),
            },
            SetSource::NamedPort {
                selector,
                proto,
                port,
                family,
            } => {
                let mut elements = BTreeSet::new();
                for ep in self
                    .model
                    .endpoints
                    .iter()
                    .filter(|e| selector.matches(&e.labels))
                {
                    for p in ep
                        .ports
                        .iter()
                        .filter(|p| p.name == *port && p.protocol.number() == *proto)
                    {
                        for net in aggregate(
                            ep.addrs
                                .iter()
                                .copied()
                                .filter(|n| Family::of(n) == *family),
                        ) {
                            elements.insert(SetElement::NetPort(net, p.port));
                        }
                    }
                }
                Set {
                    key: SetKey::NetPort(*family),
                    comment: comment(&named_port_text(selector, *proto, port)),
                    elements,
                }
            }
        }
    }

    fn members_of(&mut self, selector: &Expr) -> &[IpNet] {
        let model = self.model;
        self.members.entry(selector.clone()).or_insert_with(|| {
            let endpoints = model
                .endpoints
                .iter()
                .filter(|e| selector.matches(&e.labels))
                .flat_map(|e| e.addrs.iter().copied());
            let netsets = model
                .network_sets
                .iter()
                .filter(|n| selector.matches(&n.labels))
                .flat_map(|n| n.nets.iter().copied());
            aggregate(endpoints.chain(netsets))
        })
    }
}

/// A `nets` list as text: sorted, without duplicates (both families).
fn nets_text(nets: &[IpNet]) -> String {
    let mut sorted: Vec<String> = nets.iter().map(ToString::to_string).collect();
    sorted.sort();
    sorted.dedup();
    sorted.join(", ")
}

fn named_port_text(selector: &Expr, proto: u8, port_name: &str) -> String {
    format!("{selector} : {proto}/{port_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_kept_and_long_or_odd_ones_hashed() {
        assert_eq!(
            name("gnp-in", "default.allow-db"),
            "gnp-in-default.allow-db"
        );
        let long = "x".repeat(80);
        let hashed = name("gnp-in", &long);
        assert!(hashed.len() <= MAX_NAME, "{hashed}");
        assert!(hashed.starts_with("gnp-in-xxxx"), "{hashed}");
        assert_ne!(hashed, name("gnp-in", &"x".repeat(81)));
        assert_eq!(hashed, name("gnp-in", &long), "stable");
        let odd = hashed_name("sel4", "role == \"db\"");
        assert!(odd.starts_with("sel4-role-db-"), "{odd}");
    }

    #[test]
    fn aggregation_drops_contained_networks_and_merges_neighbours() {
        let nets = [
            "10.0.0.0/8",
            "10.1.2.3/32",
            "192.168.0.0/25",
            "192.168.0.128/25",
            "fd00::1/128",
        ]
        .map(|s| s.parse::<IpNet>().unwrap());
        let got: Vec<String> = aggregate(nets).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["10.0.0.0/8", "192.168.0.0/24", "fd00::1/128"]);
    }

    #[test]
    fn comments_lose_double_quotes_and_fit_the_kernel_limit() {
        assert_eq!(comment("a == \"b\""), "a == 'b'");
        let long = comment(&"é".repeat(100));
        assert!(long.len() <= MAX_COMMENT && long.ends_with("..."));
    }
}
