//! [`GoDuration`]: a duration in Go's `time.ParseDuration` syntax (`"90s"`, `"1m30s"`,
//! `"250ms"`), as Calico writes `maxRestartTime` and Felix's intervals.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration, serialised the way Go prints one (`"2m0s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

const UNITS: [(&str, f64); 8] = [
    ("ns", 1e-9),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("μs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

impl FromStr for GoDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let invalid =
            || format!("invalid duration {s:?}: expected e.g. \"90s\", \"1m30s\" or \"250ms\"");
        if s == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        let mut rest = s.strip_prefix('+').unwrap_or(s);
        if rest.is_empty() {
            return Err(invalid());
        }
        let mut seconds = 0.0;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(invalid)?;
            let value: f64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = UNITS
                .iter()
                .find(|(u, _)| *u == &rest[..unit_len])
                .ok_or_else(invalid)?
                .1;
            seconds += value * scale;
            rest = &rest[unit_len..];
        }
        Duration::try_from_secs_f64(seconds)
            .map(GoDuration)
            .map_err(|_| invalid())
    }
}

impl fmt::Display for GoDuration {
    /// Go's `Duration.String()` for the common cases: `"1h2m3s"`, `"1.5s"`, `"250ms"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d < Duration::from_secs(1) {
            let nanos = d.subsec_nanos();
            return match nanos {
                n if n % 1_000_000 == 0 => write!(f, "{}ms", n / 1_000_000),
                n if n % 1_000 == 0 => write!(f, "{}µs", n / 1_000),
                n => write!(f, "{n}ns"),
            };
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if h > 0 || m > 0 {
            write!(f, "{m}m")?;
        }
        let frac = d.subsec_nanos();
        if frac == 0 {
            write!(f, "{s}s")
        } else {
            let frac = format!("{frac:09}");
            write!(f, "{s}.{}s", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Duration, String> {
        s.parse::<GoDuration>().map(|d| d.0)
    }

    #[test]
    fn go_durations_parse_in_every_unit() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_without_units_or_with_unknown_units_are_rejected() {
        for bad in ["", "90", "5d", "s", "-1s", "1m30"] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn durations_print_as_go_does() {
        let show = |s: &str| s.parse::<GoDuration>().unwrap().to_string();
        assert_eq!(show("120s"), "2m0s");
        assert_eq!(show("3723s"), "1h2m3s");
        assert_eq!(show("250ms"), "250ms");
        assert_eq!(show("1.5s"), "1.5s");
        assert_eq!(show("0"), "0s");
    }
}
