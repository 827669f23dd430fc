//! [`QosControls`]: a workload's QoS limits, Calico's `qosControls` of the
//! WorkloadEndpoint spec, and how pod annotations set them
//! ([`from_annotations`]): `qos.projectcalico.org/<field>` for each field,
//! and Kubernetes' `kubernetes.io/ingress-bandwidth` and `egress-bandwidth`
//! where Calico's are absent.
//!
//! felix enforces the bandwidth fields (rate, burst, peak rate, minimum
//! burst) with tc, the packet rates and connection limits in the
//! workload's nftables chains, and DSCP by rewriting the IP header of its
//! traffic leaving the cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::is_zero;
use crate::validate::Errors;

/// Calico's burst when a rate is set without one: 4 GiB, in bits.
pub const DEFAULT_BURST_BITS: u64 = 4 << 30;

/// The prefix of Calico's QoS annotations.
pub const ANNOTATION_PREFIX: &str = "qos.projectcalico.org/";
/// Kubernetes' bandwidth annotations (the CNI bandwidth plugin's).
pub const K8S_INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
pub const K8S_EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

/// `spec.qosControls` of a WorkloadEndpoint. Ingress is traffic to the
/// workload, egress traffic from it. Rates in bits per second, bursts in
/// bits, minimum bursts in bytes (they are typically the MTU); 0 or absent
/// is unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QosControls {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ingress_bandwidth: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ingress_burst: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ingress_peakrate: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ingress_minburst: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_bandwidth: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_burst: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_peakrate: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_minburst: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ingress_packet_rate: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ingress_packet_burst: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_packet_rate: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_packet_burst: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ingress_max_connections: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_max_connections: u64,
    /// A DSCP value (0-63) or name (`EF`, `AF11`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp: Option<serde_json::Value>,
}

/// One direction's bandwidth limit, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bandwidth {
    /// Bits per second.
    pub rate: u64,
    /// Bits.
    pub burst: u64,
    /// Bits per second; 0: bursts go at line rate.
    pub peakrate: u64,
    /// Bytes; 0 with a peak rate: the interface's MTU.
    pub minburst: u64,
}

impl QosControls {
    /// The DSCP value, if set and valid.
    pub fn dscp_value(&self) -> Option<u8> {
        self.dscp.as_ref().and_then(|v| dscp(v).ok())
    }

    /// The limit on traffic to the workload, if any.
    pub fn ingress(&self) -> Option<Bandwidth> {
        bandwidth(
            self.ingress_bandwidth,
            self.ingress_burst,
            self.ingress_peakrate,
            self.ingress_minburst,
        )
    }

    /// The limit on traffic from the workload, if any.
    pub fn egress(&self) -> Option<Bandwidth> {
        bandwidth(
            self.egress_bandwidth,
            self.egress_burst,
            self.egress_peakrate,
            self.egress_minburst,
        )
    }

    /// Every problem, as the WorkloadEndpoint's validation reports it
    /// (paths under `spec.qosControls`).
    pub fn problems(&self) -> Vec<crate::FieldError> {
        let mut errs = Errors::default();
        self.validate("spec.qosControls", &mut errs);
        errs.into_result().err().unwrap_or_default()
    }

    /// Records every problem, paths under `path` (`spec.qosControls`).
    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        for (dir, rate, burst, peak, minburst) in [
            (
                "ingress",
                self.ingress_bandwidth,
                self.ingress_burst,
                self.ingress_peakrate,
                self.ingress_minburst,
            ),
            (
                "egress",
                self.egress_bandwidth,
                self.egress_burst,
                self.egress_peakrate,
                self.egress_minburst,
            ),
        ] {
            let at = |field: &str| format!("{path}.{dir}{field}");
            let range = |field: &str, v: u64, lo: u64, hi: u64, errs: &mut Errors| {
                if v != 0 && !(lo..=hi).contains(&v) {
                    errs.add(at(field), format!("{v} is outside {lo} to {hi}"));
                }
            };
            if rate == 0 {
                for (field, v) in [("Burst", burst), ("Peakrate", peak), ("Minburst", minburst)] {
                    if v != 0 {
                        errs.add(at(field), format!("needs {dir}Bandwidth"));
                    }
                }
                continue;
            }
            range("Bandwidth", rate, 1_000, 1_000_000_000_000_000, errs);
            range("Burst", burst, 1_000, 34_359_738_360, errs);
            range("Peakrate", peak, 1_010, 1_010_000_000_000_000, errs);
            range("Minburst", minburst, 1_000, 100_000_000, errs);
            if peak == 0 && minburst != 0 {
                errs.add(at("Minburst"), format!("needs {dir}Peakrate"));
            }
            if peak != 0 && peak <= rate {
                errs.add(
                    at("Peakrate"),
                    format!("{peak} must exceed {dir}Bandwidth ({rate})"),
                );
            }
        }
        for (dir, rate, burst, conns) in [
            (
                "ingress",
                self.ingress_packet_rate,
                self.ingress_packet_burst,
                self.ingress_max_connections,
            ),
            (
                "egress",
                self.egress_packet_rate,
                self.egress_packet_burst,
                self.egress_max_connections,
            ),
        ] {
            let at = |field: &str| format!("{path}.{dir}{field}");
            if rate > 10_000 {
                errs.add(at("PacketRate"), format!("{rate} is outside 1 to 10000"));
            }
            if burst > 10_000 {
                errs.add(at("PacketBurst"), format!("{burst} is outside 1 to 10000"));
            }
            if rate == 0 && burst != 0 {
                errs.add(at("PacketBurst"), format!("needs {dir}PacketRate"));
            }
            if conns > u64::from(u32::MAX) {
                errs.add(
                    at("MaxConnections"),
                    format!("{conns} is outside 1 to 4294967295"),
                );
            }
        }
        if let Some(v) = &self.dscp {
            errs.check(format!("{path}.dscp"), dscp(v).map(drop));
        }
    }
}

/// The DSCP names Calico accepts (RFC 2474, 2597, 3246, 5865, 8622).
const DSCP_NAMES: [(&str, u8); 23] = [
    ("DF", 0),
    ("CS0", 0),
    ("LE", 1),
    ("CS1", 8),
    ("AF11", 10),
    ("AF12", 12),
    ("AF13", 14),
    ("CS2", 16),
    ("AF21", 18),
    ("AF22", 20),
    ("AF23", 22),
    ("CS3", 24),
    ("AF31", 26),
    ("AF32", 28),
    ("AF33", 30),
    ("CS4", 32),
    ("AF41", 34),
    ("AF42", 36),
    ("AF43", 38),
    ("CS5", 40),
    ("VA", 44),
    ("EF", 46),
    ("CS6", 48),
];

/// A DSCP value: a number 0-63 (or its text), or a name (`EF`, `AF11`,
/// `CS7`, ...).
pub fn dscp(value: &serde_json::Value) -> Result<u8, String> {
    let bad = || format!("{value} is not a DSCP value (0-63, or a name such as EF, AF11, CS1)");
    if let Some(n) = value.as_u64() {
        return u8::try_from(n).ok().filter(|n| *n <= 63).ok_or_else(bad);
    }
    let text = value.as_str().ok_or_else(bad)?.trim();
    if let Ok(n) = text.parse::<u8>() {
        return (n <= 63).then_some(n).ok_or_else(bad);
    }
    if text.eq_ignore_ascii_case("CS7") {
        return Ok(56);
    }
    DSCP_NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, v)| *v)
        .ok_or_else(bad)
}

fn bandwidth(rate: u64, burst: u64, peakrate: u64, minburst: u64) -> Option<Bandwidth> {
    (rate != 0).then_some(Bandwidth {
        rate,
        burst: if burst == 0 {
            DEFAULT_BURST_BITS
        } else {
            burst
        },
        peakrate,
        minburst,
    })
}

/// A Kubernetes quantity as an integer: `100M`, `1G`, `512Ki`, `2.5M`,
/// `1e6`; `None` if it is not one or not whole.
pub fn quantity(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    let n: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let v = n * factor;
    (v.fract() == 0.0 && v <= u64::MAX as f64).then_some(v as u64)
}

/// The QoS controls pod annotations ask for; `Err` names each annotation
/// that is not a quantity or not a QoS field. Kubernetes' bandwidth
/// annotations count only where Calico's for that direction are absent.
pub fn from_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<QosControls>, Vec<String>> {
    let mut q = QosControls::default();
    let mut problems = Vec::new();
    let mut any = false;
    for (key, value) in annotations {
        let Some(field) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        any = true;
        if field == "dscp" {
            q.dscp = Some(serde_json::Value::String(value.clone()));
            continue;
        }
        let Some(slot) = slot(&mut q, field) else {
            problems.push(format!("annotation {key}: not a QoS control"));
            continue;
        };
        match quantity(value) {
            Some(v) => *slot = v,
            None => problems.push(format!(
                "annotation {key}: {value:?} is not a whole quantity (e.g. 100M, 1Gi, 5000)"
            )),
        }
    }
    for (key, calico, dir) in [
        (K8S_INGRESS_BANDWIDTH, "ingressBandwidth", true),
        (K8S_EGRESS_BANDWIDTH, "egressBandwidth", false),
    ] {
        let Some(value) = annotations.get(key) else {
            continue;
        };
        if annotations.contains_key(&format!("{ANNOTATION_PREFIX}{calico}")) {
            continue;
        }
        any = true;
        match quantity(value) {
            Some(v) if dir => q.ingress_bandwidth = v,
            Some(v) => q.egress_bandwidth = v,
            None => problems.push(format!(
                "annotation {key}: {value:?} is not a whole quantity (e.g. 100M)"
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(any.then_some(q))
}

/// The field an annotation names (`ingressBandwidth`, ...).
fn slot<'a>(q: &'a mut QosControls, field: &str) -> Option<&'a mut u64> {
    Some(match field {
        "ingressBandwidth" => &mut q.ingress_bandwidth,
        "ingressBurst" => &mut q.ingress_burst,
        "ingressPeakrate" => &mut q.ingress_peakrate,
        "ingressMinburst" => &mut q.ingress_minburst,
        "egressBandwidth" => &mut q.egress_bandwidth,
        "egressBurst" => &mut q.egress_burst,
        "egressPeakrate" => &mut q.egress_peakrate,
        "egressMinburst" => &mut q.egress_minburst,
        "ingressPacketRate" => &mut q.ingress_packet_rate,
        "ingressPacketBurst" => &mut q.ingress_packet_burst,
        "egressPacketRate" => &mut q.egress_packet_rate,
        "egressPacketBurst" => &mut q.egress_packet_burst,
        "ingressMaxConnections" => &mut q.ingress_max_connections,
        "egressMaxConnections" => &mut q.egress_max_connections,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dscp_values_are_numbers_or_calicos_names() {
        use serde_json::json;
        for (v, want) in [
            (json!(46), Some(46)),
            (json!("46"), Some(46)),
            (json!("EF"), Some(46)),
            (json!("af11"), Some(10)),
            (json!("CS7"), Some(56)),
            (json!(64), None),
            (json!("XX"), None),
            (json!(true), None),
        ] {
            assert_eq!(dscp(&v).ok(), want, "{v}");
        }
    }

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        for (text, v) in [
            ("100M", Some(100_000_000)),
            ("1G", Some(1_000_000_000)),
            ("512Ki", Some(524_288)),
            ("2.5M", Some(2_500_000)),
            ("1e6", Some(1_000_000)),
            ("5000", Some(5000)),
            ("1.5", None),
            ("10Q", None),
            ("-1M", None),
            ("", None),
        ] {
            assert_eq!(quantity(text), v, "{text}");
        }
    }

    #[test]
    fn annotations_set_the_fields_calicos_winning_over_kubernetes() {
        let q = from_annotations(&map(&[
            ("qos.projectcalico.org/ingressBandwidth", "100M"),
            ("qos.projectcalico.org/egressBurst", "2Mi"),
            ("kubernetes.io/ingress-bandwidth", "1M"),
            ("kubernetes.io/egress-bandwidth", "10M"),
            ("unrelated", "x"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(q.ingress_bandwidth, 100_000_000);
        assert_eq!(q.egress_bandwidth, 10_000_000);
        assert_eq!(q.egress_burst, 2 << 20);
        assert_eq!(q.ingress().unwrap().burst, DEFAULT_BURST_BITS);
        assert_eq!(from_annotations(&map(&[("a", "b")])), Ok(None));
        let errs = from_annotations(&map(&[
            ("qos.projectcalico.org/ingressBandwidth", "fast"),
            ("qos.projectcalico.org/sideways", "1"),
        ]))
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("ingressBandwidth") && errs[0].contains("\"fast\""));
        assert!(errs[1].contains("sideways"));
    }
}
