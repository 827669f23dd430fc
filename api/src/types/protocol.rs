//! [`Protocol`]: an IP protocol by Calico name or number.

use std::{fmt, str::FromStr};

use serde::{Serialize, Serializer};

use super::string_or_number_serde;

/// A rule's `protocol`: one of Calico's names or a number 1-255.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    IcmpV6,
    Sctp,
    UdpLite,
    Number(u8),
}

const NAMED: [(Protocol, &str, u8); 6] = [
    (Protocol::Tcp, "TCP", 6),
    (Protocol::Udp, "UDP", 17),
    (Protocol::Icmp, "ICMP", 1),
    (Protocol::IcmpV6, "ICMPv6", 58),
    (Protocol::Sctp, "SCTP", 132),
    (Protocol::UdpLite, "UDPLite", 136),
];

impl Protocol {
    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Number(n) => n,
            named => NAMED.iter().find(|(p, ..)| *p == named).map_or(0, |e| e.2),
        }
    }

    /// Whether rules with this protocol may match on ports (TCP, UDP, SCTP, UDPLite).
    pub fn has_ports(self) -> bool {
        matches!(self.number(), 6 | 17 | 132 | 136)
    }

    /// Whether this is ICMP (`Some(4)`) or ICMPv6 (`Some(6)`).
    pub fn icmp_version(self) -> Option<u8> {
        match self.number() {
            1 => Some(4),
            58 => Some(6),
            _ => None,
        }
    }

    fn from_number(n: u64) -> Result<Self, String> {
        match u8::try_from(n) {
            Ok(n @ 1..) => Ok(Protocol::Number(n)),
            _ => Err(format!("protocol {n} is out of range 1-255")),
        }
    }

    fn from_float(n: f64) -> Result<Self, String> {
        Err(format!("protocol {n} is not a whole number"))
    }
}

impl FromStr for Protocol {
    type Err = String;

    /// Calico's names, in any case, or a number.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(n) = s.parse::<u64>() {
            return Self::from_number(n);
        }
        NAMED.iter().find(|(_, name, _)| name.eq_ignore_ascii_case(s)).map(|e| e.0).ok_or_else(|| {
            format!("unknown protocol {s:?}: expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255")
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Number(n) => write!(f, "{n}"),
            named => f.write_str(NAMED.iter().find(|(p, ..)| p == named).map_or("", |e| e.1)),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Number(n) => s.serialize_u8(*n),
            named => s.collect_str(named),
        }
    }
}

string_or_number_serde!(Protocol, "a protocol name or number");
