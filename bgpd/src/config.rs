//! The `bgpd` daemon's YAML configuration: parsing, checking, and turning
//! it into a [`SpeakerConfig`]. Pure: reading the file is the binary's job.
//!
//! ```yaml
//! router_id: 10.0.0.1
//! asn: 65001
//! listen: 0.0.0.0:179          # optional; port 179 if only an address
//! status_socket: /run/bgpd.sock # optional
//! peers:
//!   - address: 10.0.0.2
//!     asn: 65002
//!     passive: false            # optional, default false
//!     next_hop_self: false      # optional
//!     route_reflector_client: false
//!     port: 179                 # optional
//!     local_address: 10.0.0.1   # optional source address
//!     hold_time: 90             # optional
//!     password: secret          # optional TCP-MD5 key (RFC 2385), 1-80 bytes
//!     communities: [65000:100, no-export]  # optional, added on export
//!     large_communities: [65000:1:2]       # optional, added on export
//!     import:                   # optional filter; default accept all
//!       default: accept         # accept | reject, when no rule matches
//!       rules:
//!         - match: { prefix: 10.20.0.0/16, ge: 24, le: 32 }
//!           action: reject
//!         - match: { community_any: [65002:666] }
//!           action: reject
//!         - match: { origin_as: 65010 }
//!           action: accept
//!           set: { local_pref: 200 }
//!     export:
//!       rules:
//!         - match: { not: { prefix: 10.1.0.0/16, le: 32 } }
//!           action: reject
//! announce: [10.1.0.0/24, 2001:db8:1::/48]
//! kernel: { table: 254, protocol: 200 }   # optional; no FIB without it
//! max_paths: 16                 # optional; equal-best paths per kernel route
//!                               # (1-256; 1: best path only; default: all)
//! graceful_restart:             # optional; RFC 4724, on by default
//!   enabled: true
//!   restart_time: 120           # seconds peers keep our routes (1-4095)
//!   stale_time: 360             # seconds a returning peer has for End-of-RIB
//! ```
//!

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::attr::LargeCommunity;
use crate::fib::{DEFAULT_PROTOCOL, FibConfig, MAIN_TABLE};
use crate::filter::{
    Action, AsPathPattern, Community, Filter, Match, Modification, PeerPolicy, PrefixMatch,
    RouteSource, Rule,
};
use crate::graceful_restart::{GrConfig, MAX_RESTART_TIME};
use crate::prefix::AfiSafi;
use crate::prefix::Prefix;
use crate::speaker::{BGP_PORT, PeerConfig, SpeakerConfig};
use crate::tcp_md5::{Key, KeyError};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub router_id: Ipv4Addr,
    pub asn: u32,
    #[serde(default)]
    pub listen: Option<String>,
    #[serde(default)]
    pub status_socket: Option<PathBuf>,
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub announce: Vec<Prefix>,
    #[serde(default)]
    pub kernel: Option<Kernel>,
    #[serde(default)]
    pub cluster_id: Option<Ipv4Addr>,
    /// Equal-best paths per kernel route, best first (1: best path only).
    #[serde(default)]
    pub max_paths: Option<u16>,
    #[serde(default)]
    pub graceful_restart: GracefulRestart,
}

/// `graceful_restart:` (RFC 4724; see [`crate::graceful_restart`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GracefulRestart {
    pub enabled: bool,
    /// Seconds.
    pub restart_time: u16,
    /// Seconds.
    pub stale_time: u64,
}

impl Default for GracefulRestart {
    fn default() -> Self {
        let d = GrConfig::default();
        GracefulRestart {
            enabled: d.enabled,
            restart_time: d.restart_time,
            stale_time: d.stale_time.as_secs(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub address: IpAddr,
    pub asn: u32,
    #[serde(default)]
    pub passive: bool,
    #[serde(default)]
    pub next_hop_self: bool,
    #[serde(default)]
    pub route_reflector_client: bool,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub local_address: Option<IpAddr>,
    #[serde(default)]
    pub hold_time: Option<u16>,
    /// Added to every route exported to the peer.
    #[serde(default)]
    pub communities: Vec<Community>,
    #[serde(default)]
    pub large_communities: Vec<LargeCommunity>,
    #[serde(default)]
    pub import: Option<FilterSpec>,
    #[serde(default)]
    pub export: Option<FilterSpec>,
    /// Shown in status (what kind of peer this is).
    #[serde(default)]
    pub description: Option<String>,
}

/// A filter: rules tried in order, then `default` (accept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub default: ActionSpec,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionSpec {
    #[default]
    Accept,
    Reject,
}

/// One rule: `match` (all of its keys must hold; none: every route),
/// `action`, and on accept the changes in `set`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(default, rename = "match")]
    pub matches: MatchSpec,
    pub action: ActionSpec,
    #[serde(default)]
    pub set: Option<SetSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FamilySpec {
    Ipv4,
    Ipv6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceSpec {
    Local,
    Peer,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    #[serde(default)]
    pub min: Option<u32>,
    #[serde(default)]
    pub max: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    #[serde(default)]
    pub family: Option<FamilySpec>,
    #[serde(default)]
    pub prefix: Option<Prefix>,
    #[serde(default)]
    pub ge: Option<u8>,
    #[serde(default)]
    pub le: Option<u8>,
    #[serde(default)]
    pub prefix_length: Option<RangeSpec>,
    #[serde(default)]
    pub community_any: Vec<Community>,
    #[serde(default)]
    pub community_all: Vec<Community>,
    #[serde(default)]
    pub large_community_any: Vec<LargeCommunity>,
    #[serde(default)]
    pub large_community_all: Vec<LargeCommunity>,
    #[serde(default)]
    pub as_path_contains: Option<u32>,
    #[serde(default)]
    pub origin_as: Option<u32>,
    #[serde(default)]
    pub as_path_length: Option<RangeSpec>,
    /// BIRD-style pattern: AS numbers, `?` (one AS), `*` (any).
    #[serde(default)]
    pub as_path: Option<String>,
    #[serde(default)]
    pub source: Option<SourceSpec>,
    /// Holds when not all of these hold.
    #[serde(default)]
    pub not: Option<Box<MatchSpec>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSpec {
    /// Replaces the communities.
    #[serde(default)]
    pub communities: Option<Vec<Community>>,
    #[serde(default)]
    pub add_communities: Vec<Community>,
    #[serde(default)]
    pub add_large_communities: Vec<LargeCommunity>,
    #[serde(default)]
    pub local_pref: Option<u32>,
    #[serde(default)]
    pub med: Option<u32>,
    /// Prepend this many times our AS (export) or the peer's (import).
    #[serde(default)]
    pub prepend: Option<u8>,
}

fn bad(field: impl Into<String>, message: impl ToString) -> ConfigError {
    ConfigError::Filter {
        field: field.into(),
        message: message.to_string(),
    }
}

fn communities(cs: &[Community]) -> Vec<u32> {
    cs.iter().map(|c| c.0).collect()
}

impl RangeSpec {
    fn bounds(&self, field: &str, ceiling: u32) -> Result<(u32, u32), ConfigError> {
        let (min, max) = (self.min.unwrap_or(0), self.max.unwrap_or(ceiling));
        if max > ceiling {
            return Err(bad(
                format!("{field}.max"),
                format!("{max} exceeds {ceiling}"),
            ));
        }
        if min > max {
            return Err(bad(field, format!("min {min} is greater than max {max}")));
        }
        Ok((min, max))
    }
}

impl MatchSpec {
    /// The matches this spec stands for, all to hold.
    fn matches(&self, field: &str) -> Result<Vec<Match>, ConfigError> {
        let mut out = Vec::new();
        if let Some(f) = self.family {
            out.push(Match::Family(match f {
                FamilySpec::Ipv4 => AfiSafi::IPV4_UNICAST,
                FamilySpec::Ipv6 => AfiSafi::IPV6_UNICAST,
            }));
        }
        match self.prefix {
            Some(net) => out.push(Match::Prefix(
                PrefixMatch::new(net, self.ge, self.le)
                    .map_err(|e| bad(format!("{field}.prefix"), e))?,
            )),
            None if self.ge.is_some() || self.le.is_some() => {
                let key = if self.ge.is_some() { "ge" } else { "le" };
                return Err(bad(format!("{field}.{key}"), "needs a prefix"));
            }
            None => {}
        }
        if let Some(r) = &self.prefix_length {
            let (min, max) = r.bounds(&format!("{field}.prefix_length"), 128)?;
            out.push(Match::PrefixLength {
                min: min as u8,
                max: max as u8,
            });
        }
        for (list, make) in [
            (
                &self.community_any,
                Match::CommunityAny as fn(Vec<u32>) -> Match,
            ),
            (&self.community_all, Match::CommunityAll),
        ] {
            if !list.is_empty() {
                out.push(make(communities(list)));
            }
        }
        for (list, make) in [
            (
                &self.large_community_any,
                Match::LargeCommunityAny as fn(Vec<LargeCommunity>) -> Match,
            ),
            (&self.large_community_all, Match::LargeCommunityAll),
        ] {
            if !list.is_empty() {
                out.push(make(list.clone()));
            }
        }
        out.extend(self.as_path_contains.map(Match::AsPathContains));
        out.extend(self.origin_as.map(Match::OriginAs));
        if let Some(r) = &self.as_path_length {
            let (min, max) = r.bounds(&format!("{field}.as_path_length"), u32::MAX)?;
            out.push(Match::AsPathLength { min, max });
        }
        if let Some(p) = &self.as_path {
            let pattern: AsPathPattern =
                p.parse().map_err(|e| bad(format!("{field}.as_path"), e))?;
            out.push(Match::AsPath(pattern));
        }
        if let Some(s) = self.source {
            out.push(Match::Source(match s {
                SourceSpec::Local => RouteSource::Local,
                SourceSpec::Peer => RouteSource::Peer,
            }));
        }
        if let Some(not) = &self.not {
            let inner = not.matches(&format!("{field}.not"))?;
            if inner.is_empty() {
                return Err(bad(format!("{field}.not"), "is empty"));
            }
            out.push(Match::Not(inner));
        }
        Ok(out)
    }
}

impl SetSpec {
    fn modifications(&self) -> Vec<Modification> {
        let mut out = Vec::new();
        out.extend(
            self.communities
                .as_deref()
                .map(|cs| Modification::SetCommunities(communities(cs))),
        );
        if !self.add_communities.is_empty() {
            out.push(Modification::AddCommunities(communities(
                &self.add_communities,
            )));
        }
        if !self.add_large_communities.is_empty() {
            out.push(Modification::AddLargeCommunities(
                self.add_large_communities.clone(),
            ));
        }
        out.extend(self.local_pref.map(Modification::SetLocalPref));
        out.extend(self.med.map(Modification::SetMed));
        out.extend(
            self.prepend
                .map(|times| Modification::Prepend { asn: None, times }),
        );
        out
    }
}

fn action(a: ActionSpec) -> Action {
    match a {
        ActionSpec::Accept => Action::Accept,
        ActionSpec::Reject => Action::Reject,
    }
}

impl FilterSpec {
    /// The filter, or the first fault with its field path under `field`.
    pub fn filter(&self, field: &str) -> Result<Filter, ConfigError> {
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let at = format!("{field}.rules[{i}]");
                let matches = r.matches.matches(&format!("{at}.match"))?;
                let modifications = match (&r.set, r.action) {
                    (Some(_), ActionSpec::Reject) => {
                        return Err(bad(format!("{at}.set"), "a rejected route is not changed"));
                    }
                    (Some(set), ActionSpec::Accept) => set.modifications(),
                    (None, _) => Vec::new(),
                };
                Ok(Rule {
                    matches,
                    action: action(r.action),
                    modifications,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            rules,
            default: action(self.default),
        })
    }
}

impl Peer {
    /// The peer's filters and export communities; `index` names it in errors.
    pub fn policy(&self, index: usize) -> Result<PeerPolicy, ConfigError> {
        let filter = |spec: &Option<FilterSpec>, key: &str| {
            spec.as_ref().map_or(Ok(Filter::default()), |f| {
                f.filter(&format!("peers[{index}].{key}"))
            })
        };
        Ok(PeerPolicy {
            import: filter(&self.import, "import")?,
            export: filter(&self.export, "export")?,
            communities: communities(&self.communities),
            large_communities: self.large_communities.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    #[serde(default = "main_table")]
    pub table: u32,
    #[serde(default = "default_protocol")]
    pub protocol: u8,
}

fn main_table() -> u32 {
    MAIN_TABLE
}

fn default_protocol() -> u8 {
    DEFAULT_PROTOCOL
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Yaml(String),
    #[error("listen: {value:?} is neither an address nor address:port")]
    Listen { value: String },
    #[error("peers[{index}].password: {error}")]
    Password { index: usize, error: KeyError },
    #[error("peers[{index}].address: {address} is listed twice")]
    DuplicatePeer { index: usize, address: IpAddr },
    #[error("peers[{index}].hold_time: {value} must be 0 or at least 3 (RFC 4271 §4.2)")]
    HoldTime { index: usize, value: u16 },
    #[error("peers[{index}].route_reflector_client: only an iBGP peer (asn {asn}) can be a client")]
    ReflectorClient { index: usize, asn: u32 },
    #[error("asn: 0 is reserved (RFC 7607)")]
    AsnZero,
    #[error("announce[{index}]: {prefix} has host bits set (did you mean {network}?)")]
    HostBits {
        index: usize,
        prefix: Prefix,
        network: Prefix,
    },
    #[error("kernel.protocol: {0} is reserved for the kernel and boot routes")]
    Protocol(u8),
    #[error("{field}: {message}")]
    Filter { field: String, message: String },
    #[error("graceful_restart.restart_time: {0} must be 1 to 4095 seconds (12 bits, RFC 4724 §3)")]
    RestartTime(u16),
    #[error("graceful_restart.stale_time: must be at least 1 second")]
    StaleTime,
    #[error("max_paths: {0} must be 1 to {MAX_PATHS} (1: the best path only)")]
    MaxPaths(u16),
}

/// The most `max_paths` takes (FRR's limit too).
pub const MAX_PATHS: u16 = 256;

impl Config {
    /// Parses and checks a configuration.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.asn == 0 {
            return Err(ConfigError::AsnZero);
        }
        self.listen_addr()?;
        for (index, p) in self.peers.iter().enumerate() {
            if let Some(pw) = &p.password {
                Key::new(pw).map_err(|error| ConfigError::Password { index, error })?;
            }
            if self.peers[..index].iter().any(|q| q.address == p.address) {
                return Err(ConfigError::DuplicatePeer {
                    index,
                    address: p.address,
                });
            }
            if let Some(value @ (1 | 2)) = p.hold_time {
                return Err(ConfigError::HoldTime { index, value });
            }
            if p.route_reflector_client && p.asn != self.asn {
                return Err(ConfigError::ReflectorClient { index, asn: p.asn });
            }
            p.policy(index)?;
        }
        for (index, prefix) in self.announce.iter().enumerate() {
            if prefix.trunc() != *prefix {
                return Err(ConfigError::HostBits {
                    index,
                    prefix: *prefix,
                    network: prefix.trunc(),
                });
            }
        }
        if let Some(k) = self.kernel
            && k.protocol <= 4
        {
            return Err(ConfigError::Protocol(k.protocol));
        }
        if let Some(max) = self.max_paths.filter(|m| !(1..=MAX_PATHS).contains(m)) {
            return Err(ConfigError::MaxPaths(max));
        }
        let gr = self.graceful_restart;
        if !(1..=MAX_RESTART_TIME).contains(&gr.restart_time) {
            return Err(ConfigError::RestartTime(gr.restart_time));
        }
        if gr.stale_time == 0 {
            return Err(ConfigError::StaleTime);
        }
        Ok(())
    }

    /// The address to listen on, if any.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(value) = &self.listen else {
            return Ok(None);
        };
        if let Ok(a) = value.parse::<SocketAddr>() {
            return Ok(Some(a));
        }
        value
            .parse::<IpAddr>()
            .map(|ip| Some(SocketAddr::new(ip, BGP_PORT)))
            .map_err(|_| ConfigError::Listen {
                value: value.clone(),
            })
    }

    pub fn fib(&self) -> Option<FibConfig> {
        self.kernel.map(|k| FibConfig {
            table: k.table,
            protocol: k.protocol,
        })
    }

    /// The speaker's settings. Fails only on a password that is no
    /// TCP-MD5 key, for a `Config` built without [`Config::parse`].
    pub fn speaker(&self) -> Result<SpeakerConfig, ConfigError> {
        let mut s = SpeakerConfig::new(self.asn, self.router_id);
        s.cluster_id = self.cluster_id;
        if let Some(max) = self.max_paths {
            s.max_paths = usize::from(max);
        }
        s.graceful_restart = GrConfig {
            enabled: self.graceful_restart.enabled,
            restart_time: self.graceful_restart.restart_time,
            stale_time: Duration::from_secs(self.graceful_restart.stale_time),
            restarting: false,
        };
        for (index, p) in self.peers.iter().enumerate() {
            let password = p
                .password
                .as_deref()
                .map(Key::new)
                .transpose()
                .map_err(|error| ConfigError::Password { index, error })?;
            s.peers.push(PeerConfig {
                port: p.port.unwrap_or(BGP_PORT),
                local: p.local_address,
                passive: p.passive,
                next_hop_self: p.next_hop_self,
                route_reflector_client: p.route_reflector_client,
                hold_time: p.hold_time.unwrap_or(90),
                connect_retry: Duration::from_secs(5),
                password,
                policy: p.policy(index)?,
                description: p.description.clone(),
                ..PeerConfig::new(p.address, p.asn)
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "
router_id: 10.0.0.1
asn: 65001
listen: 10.0.0.1
peers:
  - address: 10.0.0.2
    asn: 65002
  - address: 10.0.0.3
    asn: 65001
    next_hop_self: true
    route_reflector_client: true
    passive: true
    port: 1179
announce: [10.1.0.0/24, 2001:db8:1::/48]
kernel: { table: 100 }
";

    #[test]
    fn full_config_turns_into_speaker_and_kernel_settings() {
        let c = Config::parse(FULL).unwrap();
        assert_eq!(
            c.listen_addr().unwrap(),
            Some("10.0.0.1:179".parse().unwrap())
        );
        let s = c.speaker().unwrap();
        assert_eq!((s.asn, s.peers.len()), (65001, 2));
        assert_eq!(s.peers[1].port, 1179);
        assert!(
            s.peers[1].passive && s.peers[1].route_reflector_client && s.peers[1].next_hop_self
        );
        assert_eq!(
            c.fib(),
            Some(FibConfig {
                table: 100,
                protocol: DEFAULT_PROTOCOL
            })
        );
        assert_eq!(c.announce.len(), 2);
    }

    #[test]
    fn password_becomes_the_peers_tcp_md5_key() {
        let text =
            "router_id: 1.1.1.1\nasn: 1\npeers: [{address: 10.0.0.2, asn: 2, password: s3cret}]\n";
        let s = Config::parse(text).unwrap().speaker().unwrap();
        assert_eq!(s.peers[0].password, Some(Key::new("s3cret").unwrap()));
    }

    #[test]
    fn password_too_long_for_tcp_md5_is_refused_with_the_field_named() {
        let text = format!(
            "router_id: 1.1.1.1\nasn: 1\npeers: [{{address: 10.0.0.2, asn: 2}}, {{address: 10.0.0.3, asn: 2, password: {}}}]\n",
            "x".repeat(81)
        );
        let err = Config::parse(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "peers[1].password: is 81 bytes long; TCP-MD5 keys are at most 80"
        );
    }

    #[test]
    fn unknown_field_is_an_error_naming_it() {
        let err = Config::parse("router_id: 1.1.1.1\nasn: 1\nneighbours: []\n").unwrap_err();
        assert!(err.to_string().contains("neighbours"), "{err}");
    }

    #[test]
    fn reflector_client_must_be_ibgp() {
        let text = "router_id: 1.1.1.1\nasn: 1\npeers: [{address: 10.0.0.2, asn: 2, route_reflector_client: true}]\n";
        assert_eq!(
            Config::parse(text),
            Err(ConfigError::ReflectorClient { index: 0, asn: 2 })
        );
    }

    #[test]
    fn announced_prefix_with_host_bits_is_refused() {
        let err =
            Config::parse("router_id: 1.1.1.1\nasn: 1\nannounce: [10.1.0.1/24]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "announce[0]: 10.1.0.1/24 has host bits set (did you mean 10.1.0.0/24?)"
        );
    }

    #[test]
    fn max_paths_defaults_to_all_and_is_checked() {
        let base = "router_id: 1.1.1.1\nasn: 1\n";
        let s = Config::parse(base).unwrap().speaker().unwrap();
        assert_eq!(s.max_paths, crate::rib::ALL_PATHS);
        let one = Config::parse(&format!("{base}max_paths: 1\n")).unwrap();
        assert_eq!(one.speaker().unwrap().max_paths, 1);
        for bad in [0, 257] {
            let err = Config::parse(&format!("{base}max_paths: {bad}\n")).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("max_paths: {bad} must be 1 to 256 (1: the best path only)")
            );
        }
    }

    #[test]
    fn graceful_restart_is_on_by_default_and_its_times_are_checked() {
        let base = "router_id: 1.1.1.1\nasn: 1\n";
        let s = Config::parse(base).unwrap().speaker().unwrap();
        assert_eq!(s.graceful_restart, GrConfig::default());
        let text = format!("{base}graceful_restart: {{ restart_time: 30, stale_time: 10 }}\n");
        let gr = Config::parse(&text)
            .unwrap()
            .speaker()
            .unwrap()
            .graceful_restart;
        assert_eq!(
            (gr.enabled, gr.restart_time, gr.stale_time),
            (true, 30, Duration::from_secs(10))
        );
        let text = format!("{base}graceful_restart: {{ enabled: false }}\n");
        assert!(
            !Config::parse(&text)
                .unwrap()
                .speaker()
                .unwrap()
                .graceful_restart
                .enabled
        );
        let err = Config::parse(&format!(
            "{base}graceful_restart: {{ restart_time: 4096 }}\n"
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "graceful_restart.restart_time: 4096 must be 1 to 4095 seconds (12 bits, RFC 4724 §3)"
        );
        let err =
            Config::parse(&format!("{base}graceful_restart: {{ stale_time: 0 }}\n")).unwrap_err();
        assert_eq!(err, ConfigError::StaleTime);
    }

    #[test]
    fn bad_listen_value_is_named() {
        let err = Config::parse("router_id: 1.1.1.1\nasn: 1\nlisten: nowhere\n").unwrap_err();
        assert_eq!(
            err,
            ConfigError::Listen {
                value: "nowhere".into()
            }
        );
    }

    const FILTERED: &str = "
router_id: 10.0.0.1
asn: 65001
peers:
  - address: 10.0.0.2
    asn: 65002
    communities: [65001:100, no-export]
    large_communities: [65001:1:2]
    import:
      default: reject
      rules:
        - match: { prefix: 10.20.0.0/16, ge: 24, le: 32 }
          action: reject
        - match: { community_any: [65002:666], large_community_all: [65002:0:1] }
          action: reject
        - match: { origin_as: 65010, as_path: 65002 * 65010, as_path_length: { max: 4 } }
          action: accept
          set: { local_pref: 200, add_communities: [65001:7], prepend: 2 }
        - match: { family: ipv6, source: peer, prefix_length: { min: 48 } }
          action: accept
    export:
      rules:
        - match: { not: { prefix: 10.1.0.0/16, le: 32 } }
          action: reject
";

    fn policy_error(peer_yaml: &str) -> String {
        let text = format!(
            "router_id: 1.1.1.1\nasn: 1\npeers:\n  - address: 10.0.0.2\n    asn: 2\n{peer_yaml}"
        );
        Config::parse(&text).unwrap_err().to_string()
    }

    #[test]
    fn filters_and_communities_turn_into_the_peers_policy() {
        use crate::filter::{NO_EXPORT, Route};
        let s = Config::parse(FILTERED).unwrap().speaker().unwrap();
        let policy = &s.peers[0].policy;
        assert_eq!(policy.communities, vec![(65001 << 16) | 100, NO_EXPORT]);
        assert_eq!(policy.large_communities[0].to_string(), "65001:1:2");
        assert_eq!(policy.import.rules.len(), 4);
        assert_eq!(policy.import.default, Action::Reject);
        assert_eq!(
            policy.import.rules[2].modifications,
            vec![
                Modification::AddCommunities(vec![(65001 << 16) | 7]),
                Modification::SetLocalPref(200),
                Modification::Prepend {
                    asn: None,
                    times: 2
                },
            ]
        );
        // The export filter keeps 10.1.0.0/16 and what is inside it only.
        let none = crate::attr::PathAttrs::default();
        let verdict = |prefix: &str| {
            policy
                .export
                .evaluate(&Route {
                    prefix: prefix.parse().unwrap(),
                    attrs: &none,
                    source: RouteSource::Local,
                })
                .accept
        };
        assert!(verdict("10.1.2.0/24") && verdict("10.1.0.0/16"));
        assert!(!verdict("10.2.0.0/24"));
    }

    #[test]
    fn filter_faults_are_refused_with_the_field_named() {
        for (yaml, want) in [
            (
                "    import: { rules: [{ match: { ge: 24 }, action: reject }] }\n",
                "peers[0].import.rules[0].match.ge: needs a prefix",
            ),
            (
                "    export: { rules: [{ match: { prefix: 10.0.0.0/8, le: 33 }, action: reject }] }\n",
                "peers[0].export.rules[0].match.prefix: length 33 is outside 8-32 for 10.0.0.0/8",
            ),
            (
                "    import: { rules: [{ match: { not: { prefix: 10.0.0.1/8 } }, action: reject }] }\n",
                "peers[0].import.rules[0].match.not.prefix: 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)",
            ),
            (
                "    import: { rules: [{ action: accept }, { action: reject, set: { med: 5 } }] }\n",
                "peers[0].import.rules[1].set: a rejected route is not changed",
            ),
            (
                "    import: { rules: [{ match: { as_path: 65002 .* }, action: reject }] }\n",
                "peers[0].import.rules[0].match.as_path: AS path pattern \"65002 .*\": \".*\" is neither an AS number, `?` nor `*`",
            ),
            (
                "    import: { rules: [{ match: { prefix_length: { min: 30, max: 24 } }, action: reject }] }\n",
                "peers[0].import.rules[0].match.prefix_length: min 30 is greater than max 24",
            ),
            (
                "    import: { rules: [{ match: { not: {} }, action: reject }] }\n",
                "peers[0].import.rules[0].match.not: is empty",
            ),
        ] {
            assert_eq!(policy_error(yaml), want);
        }
        for (yaml, names) in [
            ("    communities: [65001:100, 70000:1]\n", "70000:1"),
            ("    large_communities: [1:2]\n", "1:2"),
            (
                "    import: { rules: [{ match: { prefx: 10.0.0.0/8 }, action: reject }] }\n",
                "prefx",
            ),
            ("    export: { rules: [{ action: drop }] }\n", "drop"),
            (
                "    export: { rules: [{ action: accept, set: { weight: 1 } }] }\n",
                "weight",
            ),
        ] {
            let err = policy_error(yaml);
            assert!(err.contains(names) && err.contains("peers[0]"), "{err}");
        }
    }
}
