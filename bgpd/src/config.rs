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
//! announce: [10.1.0.0/24, 2001:db8:1::/48]
//! kernel: { table: 254, protocol: 200 }   # optional; no FIB without it
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

use crate::fib::{DEFAULT_PROTOCOL, FibConfig, MAIN_TABLE};
use crate::graceful_restart::{GrConfig, MAX_RESTART_TIME};
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
    #[error("graceful_restart.restart_time: {0} must be 1 to 4095 seconds (12 bits, RFC 4724 §3)")]
    RestartTime(u16),
    #[error("graceful_restart.stale_time: must be at least 1 second")]
    StaleTime,
}

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
}
