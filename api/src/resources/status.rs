//! [`CalicoNodeStatus`]: a node's status as its felix reports it into the
//! datastore, Calico's resource of that name: `spec` says which node, what
//! to report (`classes`) and how often (`updatePeriodSeconds`); `status` is
//! what felix last wrote.
//!
//! Calico's fields, plus three per BGP peer that Calico's `calicoctl node
//! status` only shows on the node itself: `reason` (why a session is not
//! Established, in plain words), `lastError` (the speaker's own words), and
//! the prefixes received and advertised. Clients that know only Calico's
//! fields ignore them.

use serde::{Deserialize, Serialize};

use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::validate::{Errors, names};

/// Calico's default `updatePeriodSeconds`.
pub const DEFAULT_UPDATE_PERIOD_SECONDS: u32 = 10;

/// felix writes a status at least every this many periods, changed or
/// not; one not written for twice that (and a period) is stale: its felix
/// is down or cut off.
pub const HEARTBEAT_PERIODS: u64 = 6;

/// What a status reports (Calico's `NodeStatusClassType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StatusClass {
    Agent,
    #[serde(rename = "BIRD")]
    Bird,
    #[serde(rename = "BGP")]
    Bgp,
    Routes,
}

/// `spec` of a [`CalicoNodeStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodeStatusSpec {
    /// The node whose status this is.
    #[serde(default)]
    pub node: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<StatusClass>,
    /// How often felix refreshes it; 0 stops the updates (Calico's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_period_seconds: Option<u32>,
}

impl CalicoNodeStatusSpec {
    /// The update period in effect: the spec's, else Calico's default.
    pub fn update_period_seconds(&self) -> u32 {
        self.update_period_seconds
            .unwrap_or(DEFAULT_UPDATE_PERIOD_SECONDS)
    }
}

/// `status` of a [`CalicoNodeStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodeStatusStatus {
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_updated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpStatus>,
}

/// The BGP daemon's state per family (Calico's `birdV4`, `birdV6`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentStatus {
    #[serde(default, rename = "birdV4", skip_serializing_if = "Option::is_none")]
    pub bird_v4: Option<DaemonStatus>,
    #[serde(default, rename = "birdV6", skip_serializing_if = "Option::is_none")]
    pub bird_v6: Option<DaemonStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonStatus {
    /// `Ready` or `NotReady`.
    #[serde(default)]
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, rename = "routerID", skip_serializing_if = "String::is_empty")]
    pub router_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_boot_time: String,
}

/// Calico's `bgp` status: counts and peers per family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpStatus {
    #[serde(default, rename = "numberEstablishedV4")]
    pub number_established_v4: u32,
    #[serde(default, rename = "numberEstablishedV6")]
    pub number_established_v6: u32,
    #[serde(default, rename = "numberNotEstablishedV4")]
    pub number_not_established_v4: u32,
    #[serde(default, rename = "numberNotEstablishedV6")]
    pub number_not_established_v6: u32,
    #[serde(default, rename = "peersV4", skip_serializing_if = "Vec::is_empty")]
    pub peers_v4: Vec<BgpPeerStatus>,
    #[serde(default, rename = "peersV6", skip_serializing_if = "Vec::is_empty")]
    pub peers_v6: Vec<BgpPeerStatus>,
}

/// One BGP session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPeerStatus {
    #[serde(default, rename = "peerIP")]
    pub peer_ip: String,
    /// `NodeMesh`, `NodePeer` or `GlobalPeer` (Calico's).
    #[serde(default, rename = "type")]
    pub peer_type: String,
    /// The RFC 4271 state: `Idle`, `Connect`, `Active`, `OpenSent`,
    /// `OpenConfirm` or `Established`.
    #[serde(default)]
    pub state: String,
    /// When it entered that state, RFC 3339 (Calico writes BIRD's time of
    /// day; a full time survives midnight).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub since: String,
    /// Why it is not Established, in plain words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The speaker's last error, as it put it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    #[serde(default)]
    pub prefixes_received: u64,
    #[serde(default)]
    pub prefixes_advertised: u64,
}

/// A node's status.
#[derive(Debug, Clone, PartialEq)]
pub struct CalicoNodeStatus {
    pub metadata: ObjectMeta,
    pub spec: CalicoNodeStatusSpec,
    pub status: CalicoNodeStatusStatus,
}

impl CalicoNodeStatus {
    pub const KIND: Kind = Kind::CalicoNodeStatus;

    /// The update period in effect: the spec's, else Calico's default.
    pub fn update_period_seconds(&self) -> u32 {
        self.spec.update_period_seconds()
    }

    pub fn with_defaults(self) -> Self {
        self
    }

    /// Seconds since felix last wrote it, at `now`; `None` if never.
    pub fn age(&self, now: u64) -> Option<u64> {
        parse_rfc3339(&self.status.last_updated).map(|t| now.saturating_sub(t))
    }

    /// Whether it is older than two heartbeats and a period (or was never
    /// written): its felix has stopped reporting.
    pub fn is_stale(&self, now: u64) -> bool {
        let period = u64::from(self.update_period_seconds());
        let limit = (2 * HEARTBEAT_PERIODS + 1) * period.max(1);
        period != 0 && self.age(now).is_none_or(|age| age > limit)
    }

    pub fn validate(&self) -> Result<(), Vec<crate::error::FieldError>> {
        let mut errs = Errors::default();
        crate::resource::validate_metadata(Self::KIND, &self.metadata, &mut errs);
        if self.spec.node.is_empty() {
            errs.add("spec.node", "is required");
        } else {
            errs.check("spec.node", names::dns1123_subdomain(&self.spec.node));
        }
        errs.into_result()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Out<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a ObjectMeta,
    spec: &'a CalicoNodeStatusSpec,
    status: &'a CalicoNodeStatusStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct In {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: CalicoNodeStatusSpec,
    #[serde(default)]
    status: CalicoNodeStatusStatus,
}

impl Serialize for CalicoNodeStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Out {
            api_version: Self::KIND.api_version(),
            kind: Self::KIND.document_kind(),
            metadata: &self.metadata,
            spec: &self.spec,
            status: &self.status,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for CalicoNodeStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let doc = In::deserialize(d)?;
        super::check_header(Self::KIND, doc.api_version.as_deref(), doc.kind.as_deref())
            .map_err(D::Error::custom)?;
        Ok(CalicoNodeStatus {
            metadata: doc.metadata,
            spec: doc.spec,
            status: doc.status,
        })
    }
}

/// `secs` since the Unix epoch as RFC 3339 in UTC (`2026-12-07T06:11:52Z`).
pub fn rfc3339(secs: u64) -> String {
    let (y, m, d) = civil_date(secs / 86_400);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// The seconds since the Unix epoch of an RFC 3339 UTC time as [`rfc3339`]
/// writes it; `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(days_from_civil(y, m, d)? * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
pub fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// The inverse of [`civil_date`] (Hinnant's `days_from_civil`), from 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_and_read_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_624_070), "2026-12-07T06:14:30Z");
        for t in [0, 951_782_400, 1_796_624_070, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("2026-13-07T06:14:30Z"), None);
        assert_eq!(parse_rfc3339("06:14:30"), None);
    }
}
