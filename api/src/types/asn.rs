//! [`AsNumber`]: a 4-byte BGP AS number, written plain (`64512`) or dotted (`"1.10"`).

use std::{fmt, str::FromStr};

use serde::{Serialize, Serializer};

use super::string_or_number_serde;

/// A BGP AS number. Documents may write it as a number, a numeric string or in
/// asdot form (`"1.10"` = 65546, RFC 5396); it is serialised as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsNumber(pub u32);

impl AsNumber {
    /// Calico's default AS, 64512.
    pub const DEFAULT: AsNumber = AsNumber(64512);

    fn from_number(n: u64) -> Result<Self, String> {
        match u32::try_from(n) {
            Ok(0) => Err("AS number 0 is reserved".to_string()),
            Ok(n) => Ok(AsNumber(n)),
            Err(_) => Err(format!("AS number {n} is out of range 1-4294967295")),
        }
    }

    fn from_float(n: f64) -> Result<Self, String> {
        Err(format!(
            "AS number {n} is not a whole number (quote dotted AS numbers, e.g. \"1.10\")"
        ))
    }
}

impl FromStr for AsNumber {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let invalid =
            || format!("invalid AS number {s:?}: expected 1-4294967295 or dotted \"high.low\"");
        match s.split_once('.') {
            None => s
                .parse::<u64>()
                .map_err(|_| invalid())
                .and_then(Self::from_number),
            Some((high, low)) => {
                let high: u16 = high.parse().map_err(|_| invalid())?;
                let low: u16 = low.parse().map_err(|_| invalid())?;
                Self::from_number((u64::from(high) << 16) | u64::from(low))
            }
        }
    }
}

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for AsNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

string_or_number_serde!(AsNumber, "an AS number");
