//! [`Cidr`]: an IP network written `addr/len`, or a bare address meaning a host route.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IP network as written in a document. Host bits are kept as written, so that
/// [`Cidr::check_network`] can reject them where a network is required and
/// interface addresses (`10.0.0.5/24`) can use the same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(pub IpNet);

impl Cidr {
    /// The network with any host bits cleared.
    pub fn network(self) -> IpNet {
        self.0.trunc()
    }

    /// 4 or 6.
    pub fn family(self) -> u8 {
        match self.0 {
            IpNet::V4(_) => 4,
            IpNet::V6(_) => 6,
        }
    }

    /// Fails when host bits are set: `10.0.0.1/24` names no network.
    pub fn check_network(self) -> Result<(), String> {
        if self.0 == self.0.trunc() {
            Ok(())
        } else {
            Err(format!(
                "{} has host bits set (the network is {})",
                self.0,
                self.0.trunc()
            ))
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(Cidr)
            .map_err(|_| format!("invalid CIDR {s:?}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<IpNet> for Cidr {
    fn from(net: IpNet) -> Self {
        Cidr(net)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
