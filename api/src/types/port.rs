//! [`Port`]: a port number, a `"lo:hi"` range or a named port, as in Calico rules.

use std::{fmt, str::FromStr};

use serde::{Serialize, Serializer};

use super::string_or_number_serde;
use crate::validate::names;

/// One entry of a rule's `ports`/`notPorts`: `80`, `"8080:8090"` or `"http"`.
///
/// A range is kept as written; [`Port::check`] rejects a reversed one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Port {
    Number(u16),
    Range { min: u16, max: u16 },
    Named(String),
}

impl Port {
    /// The numeric range this port covers, or `None` for a named port.
    pub fn bounds(&self) -> Option<(u16, u16)> {
        match *self {
            Port::Number(n) => Some((n, n)),
            Port::Range { min, max } => Some((min, max)),
            Port::Named(_) => None,
        }
    }

    /// Checks what parsing cannot: range order and named-port syntax.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Port::Range { min, max } if min > max => Err(format!("range {min}:{max} is reversed")),
            Port::Named(name) => names::iana_service_name(name)
                .map_err(|e| format!("invalid named port {name:?}: {e}")),
            _ => Ok(()),
        }
    }

    fn from_number(n: u64) -> Result<Self, String> {
        u16::try_from(n)
            .map(Port::Number)
            .map_err(|_| format!("port {n} is out of range 0-65535"))
    }

    fn from_float(n: f64) -> Result<Self, String> {
        Err(format!("port {n} is not a whole number"))
    }
}

fn port_number(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("{s:?} is not a port number 0-65535"))
}

impl FromStr for Port {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((lo, hi)) = s.split_once(':') {
            let range = port_number(lo).and_then(|min| {
                Ok(Port::Range {
                    min,
                    max: port_number(hi)?,
                })
            });
            return range.map_err(|e| format!("invalid port range {s:?}: {e}"));
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return port_number(s).map(Port::Number);
        }
        Ok(Port::Named(s.to_string()))
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Number(n) => write!(f, "{n}"),
            Port::Range { min, max } => write!(f, "{min}:{max}"),
            Port::Named(name) => f.write_str(name),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Number(n) => s.serialize_u16(*n),
            other => s.collect_str(other),
        }
    }
}

string_or_number_serde!(Port, "a port number, a \"min:max\" range or a port name");
