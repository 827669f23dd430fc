//! The CNI spec versions these plugins speak and all that differs between
//! them (pure): which `cniVersion` texts are accepted, which commands each
//! version has, and the result's format in each.
//!
//! | version | commands | result |
//! |---|---|---|
//! | 0.3.0, 0.3.1 | ADD, DEL, VERSION | `ips[]` carry `version` (`"4"`/`"6"`) |
//! | 0.4.0 | + CHECK | as 0.3.x |
//! | 1.0.0 | ADD, DEL, CHECK, VERSION | `ips[]` without `version` |
//! | 1.1.0 | + STATUS, GC | as 1.0.0 |
//!
//! Inside, the plugins hold one [`CniResult`] (the 1.0.0 shape); only
//! [`SpecVersion::render`] and [`SpecVersion::read_result`] know the
//! others. A 0.x result has no interface `mtu` and routes of only `dst` and
//! `gw`; those are dropped when rendering one. As libcni does, 0.3.0 is
//! treated as 0.3.1: its text named the IP list `ip`, every implementation
//! wrote `ips`, and 0.3.1 corrected the text.
//!
//! A command a version does not have is refused with code 1 (incompatible
//! CNI version), as the reference plugins' `skel` refuses CHECK before
//! 0.4.0 and GC before 1.1.0.

use std::fmt;

use serde_json::Value;

use crate::env::Command;
use crate::error::{CniError, Code, Result};
use crate::result::CniResult;

/// One CNI spec version we speak, oldest first (so `<` is "older than").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl SpecVersion {
    /// Every supported version, oldest first.
    pub const ALL: [SpecVersion; 5] = [
        SpecVersion::V0_3_0,
        SpecVersion::V0_3_1,
        SpecVersion::V0_4_0,
        SpecVersion::V1_0_0,
        SpecVersion::V1_1_0,
    ];

    /// The newest version, what VERSION answers in when asked in none.
    pub const LATEST: SpecVersion = SpecVersion::V1_1_0;

    /// The version's `cniVersion` text.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V0_3_0 => "0.3.0",
            SpecVersion::V0_3_1 => "0.3.1",
            SpecVersion::V0_4_0 => "0.4.0",
            SpecVersion::V1_0_0 => "1.0.0",
            SpecVersion::V1_1_0 => "1.1.0",
        }
    }

    /// The `supportedVersions` of VERSION.
    pub fn supported() -> [&'static str; 5] {
        Self::ALL.map(Self::as_str)
    }

    /// Reads the `cniVersion` found at `field`; an unsupported one is
    /// [`Code::IncompatibleVersion`] naming the field and what we support.
    pub fn parse(field: &str, text: &str) -> Result<SpecVersion> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == text)
            .ok_or_else(|| {
                CniError::new(
                    Code::IncompatibleVersion,
                    format!(
                        "{field}: {text:?} is not supported; supported versions: {}",
                        Self::supported().join(", ")
                    ),
                )
            })
    }

    /// Whether the version has `command`: CHECK from 0.4.0 on, STATUS and
    /// GC from 1.1.0 on; refused with [`Code::IncompatibleVersion`].
    pub fn allows(self, command: Command) -> Result<()> {
        let since = match command {
            Command::Check => SpecVersion::V0_4_0,
            Command::Status | Command::Gc => SpecVersion::V1_1_0,
            Command::Add | Command::Del | Command::Version => return Ok(()),
        };
        if self >= since {
            return Ok(());
        }
        Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "cniVersion: {self} does not allow {} (it exists from CNI {since} on)",
                command.as_str()
            ),
        ))
    }

    /// Whether a result of this version gives each IP's `version`.
    fn ips_carry_version(self) -> bool {
        self < SpecVersion::V1_0_0
    }

    /// `result` in this version's format, `cniVersion` set to it.
    pub fn render(self, result: &CniResult) -> Value {
        let mut out = serde_json::Map::new();
        out.insert("cniVersion".into(), self.as_str().into());
        let Value::Object(body) = serde_json::to_value(result).expect("results serialise") else {
            unreachable!("a result serialises as an object")
        };
        out.extend(body);
        if self.ips_carry_version() {
            if let Some(Value::Array(ips)) = out.get_mut("ips") {
                for (ip, typed) in ips.iter_mut().zip(&result.ips) {
                    let family = if typed.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    ip["version"] = family.into();
                }
            }
            if let Some(Value::Array(interfaces)) = out.get_mut("interfaces") {
                for interface in interfaces.iter_mut().filter_map(Value::as_object_mut) {
                    interface.retain(|k, _| matches!(k.as_str(), "name" | "mac" | "sandbox"));
                }
            }
            if let Some(Value::Array(routes)) = out.get_mut("routes") {
                for route in routes.iter_mut().filter_map(Value::as_object_mut) {
                    route.retain(|k, _| matches!(k.as_str(), "dst" | "gw"));
                }
            }
        }
        Value::Object(out)
    }

    /// Reads a result found at `field` (`prevResult`, or an IPAM plugin's
    /// output) in whichever supported version its `cniVersion` names, or
    /// in `assumed` if it names none. A 0.x IP's `version` must match its
    /// address; on a 1.x result it is ignored, as libcni ignores it.
    pub fn read_result(value: Value, field: &str, assumed: SpecVersion) -> Result<CniResult> {
        let Value::Object(object) = &value else {
            return Err(CniError::config(field, "must be a JSON object"));
        };
        let version = match object.get("cniVersion") {
            None => assumed,
            Some(Value::String(text)) => Self::parse(&format!("{field}.cniVersion"), text)?,
            Some(other) => {
                return Err(CniError::config(
                    &format!("{field}.cniVersion"),
                    format!("{other} is not a string"),
                ));
            }
        };
        let families: Vec<Option<Value>> = match object.get("ips") {
            Some(Value::Array(ips)) if version.ips_carry_version() => {
                ips.iter().map(|ip| ip.get("version").cloned()).collect()
            }
            _ => Vec::new(),
        };
        let result: CniResult = crate::config::read(value, &format!("{field}."))?;
        for (i, (family, ip)) in families.iter().zip(&result.ips).enumerate() {
            // An empty version is what libcni itself writes into a 0.3.1
            // prevResult (podman 4.3 passes loopback's result on so): the
            // address tells the family, as libcni's own parser takes it.
            let Some(family) = family.as_ref().filter(|f| f.as_str() != Some("")) else {
                continue;
            };
            let expected = if ip.address.addr().is_ipv4() {
                "4"
            } else {
                "6"
            };
            if family.as_str() != Some(expected) {
                return Err(CniError::config(
                    &format!("{field}.ips[{i}].version"),
                    format!(
                        "{family} does not match address {} (expected \"{expected}\")",
                        ip.address
                    ),
                ));
            }
        }
        Ok(result)
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> CniResult {
        serde_json::from_value(json!({
            "interfaces": [
                {"name": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee", "mtu": 1450},
                {"name": "eth0", "mac": "0a:0b:0c:0d:0e:0f", "mtu": 1450, "sandbox": "/run/netns/c"}
            ],
            "ips": [
                {"address": "10.65.0.1/32", "interface": 1},
                {"address": "fd00::1/128", "gateway": "fd00::ff", "interface": 1}
            ],
            "routes": [{"dst": "0.0.0.0/0", "mtu": 1400}, {"dst": "::/0", "gw": "fe80::1"}],
            "dns": {"nameservers": ["10.96.0.10"]}
        }))
        .unwrap()
    }

    #[test]
    fn every_supported_text_parses_and_others_name_the_field_and_the_list() {
        for v in SpecVersion::ALL {
            assert_eq!(SpecVersion::parse("cniVersion", v.as_str()).unwrap(), v);
        }
        for bad in ["0.2.0", "0.1.0", "2.0.0", "1.0", "garbage", ""] {
            let e = SpecVersion::parse("cniVersion", bad).unwrap_err();
            assert_eq!(e.code, 1);
            assert_eq!(
                e.msg,
                format!(
                    "cniVersion: {bad:?} is not supported; supported versions: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
                )
            );
        }
    }

    #[test]
    fn check_exists_from_0_4_0_and_status_and_gc_only_in_1_1_0() {
        use SpecVersion::*;
        for v in SpecVersion::ALL {
            assert!(v.allows(Command::Add).is_ok());
            assert!(v.allows(Command::Del).is_ok());
            assert!(v.allows(Command::Version).is_ok());
            assert_eq!(v.allows(Command::Check).is_ok(), v >= V0_4_0, "{v}");
            assert_eq!(v.allows(Command::Status).is_ok(), v == V1_1_0, "{v}");
            assert_eq!(v.allows(Command::Gc).is_ok(), v == V1_1_0, "{v}");
        }
        let e = V0_3_1.allows(Command::Check).unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(
            e.msg,
            "cniVersion: 0.3.1 does not allow CHECK (it exists from CNI 0.4.0 on)"
        );
        assert!(
            V1_0_0
                .allows(Command::Gc)
                .unwrap_err()
                .msg
                .contains("1.1.0")
        );
    }

    #[test]
    fn a_0_x_result_gives_each_ip_its_family_and_only_the_0_x_fields() {
        for v in [
            SpecVersion::V0_3_0,
            SpecVersion::V0_3_1,
            SpecVersion::V0_4_0,
        ] {
            assert_eq!(
                v.render(&sample()),
                json!({
                    "cniVersion": v.as_str(),
                    "interfaces": [
                        {"name": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee"},
                        {"name": "eth0", "mac": "0a:0b:0c:0d:0e:0f", "sandbox": "/run/netns/c"}
                    ],
                    "ips": [
                        {"version": "4", "address": "10.65.0.1/32", "interface": 1},
                        {"version": "6", "address": "fd00::1/128", "gateway": "fd00::ff", "interface": 1}
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fe80::1"}],
                    "dns": {"nameservers": ["10.96.0.10"]}
                })
            );
        }
    }

    #[test]
    fn a_1_x_result_has_no_ip_version_and_keeps_mtu_and_route_fields() {
        for v in [SpecVersion::V1_0_0, SpecVersion::V1_1_0] {
            let out = v.render(&sample());
            assert_eq!(out["cniVersion"], v.as_str());
            assert!(
                out["ips"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|ip| ip.get("version").is_none())
            );
            assert_eq!(out["interfaces"][1]["mtu"], 1450);
            assert_eq!(out["routes"][0]["mtu"], 1400);
        }
    }

    #[test]
    fn an_empty_result_renders_as_just_its_version() {
        assert_eq!(
            SpecVersion::V0_3_1.render(&CniResult::default()),
            json!({"cniVersion": "0.3.1"})
        );
    }

    #[test]
    fn a_rendered_result_reads_back_the_same_in_every_version() {
        let mut plain = sample();
        plain.interfaces.iter_mut().for_each(|i| i.mtu = None);
        plain.routes.iter_mut().for_each(|r| r.extra.clear());
        for v in SpecVersion::ALL {
            let back =
                SpecVersion::read_result(v.render(&plain), "prevResult", SpecVersion::V1_0_0)
                    .unwrap();
            assert_eq!(back, plain, "{v}");
        }
    }

    #[test]
    fn a_0_x_ip_with_an_empty_version_takes_its_family_from_the_address() {
        // Byte for byte what podman 4.3's libcni passes on from loopback.
        let value = json!({
            "cniVersion": "0.3.1",
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/run/netns/x"}],
            "ips": [
                {"version": "", "interface": 0, "address": "127.0.0.1/8"},
                {"version": "", "interface": 0, "address": "::1/128"}
            ],
            "dns": {}
        });
        let result = SpecVersion::read_result(value, "prevResult", SpecVersion::V0_3_1).unwrap();
        assert_eq!(result.ips.len(), 2);
        assert_eq!(result.ips[1].address.to_string(), "::1/128");
    }

    #[test]
    fn a_0_x_ip_whose_version_contradicts_its_address_is_refused_naming_it() {
        let mut value = SpecVersion::V0_4_0.render(&sample());
        value["ips"][1]["version"] = json!("4");
        let e = SpecVersion::read_result(value, "prevResult", SpecVersion::V0_4_0).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(
            e.msg.starts_with("prevResult.ips[1].version: "),
            "{}",
            e.msg
        );
        let mut value = SpecVersion::V0_3_1.render(&sample());
        value["ips"][0]["version"] = json!(4);
        assert!(
            SpecVersion::read_result(value, "prevResult", SpecVersion::V0_3_1)
                .unwrap_err()
                .msg
                .starts_with("prevResult.ips[0].version")
        );
    }

    #[test]
    fn the_results_own_version_wins_and_none_means_the_assumed_one() {
        // A 0.4.0 result under a 1.0.0 configuration: its versions are checked.
        let mut value = SpecVersion::V0_4_0.render(&sample());
        value["ips"][0]["version"] = json!("6");
        assert!(
            SpecVersion::read_result(value.clone(), "prevResult", SpecVersion::V1_0_0).is_err()
        );
        // Without cniVersion it is read as the configuration's: as 1.0.0 the
        // stray `version` is ignored, as 0.4.0 it is checked.
        value.as_object_mut().unwrap().remove("cniVersion");
        assert!(SpecVersion::read_result(value.clone(), "prevResult", SpecVersion::V1_0_0).is_ok());
        assert!(SpecVersion::read_result(value, "prevResult", SpecVersion::V0_4_0).is_err());
    }

    #[test]
    fn a_result_in_an_unsupported_version_is_incompatible_naming_its_field() {
        let e = SpecVersion::read_result(
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.1/32"}}),
            "prevResult",
            SpecVersion::V1_0_0,
        )
        .unwrap_err();
        assert_eq!(e.code, 1);
        assert!(
            e.msg.starts_with("prevResult.cniVersion: \"0.2.0\""),
            "{}",
            e.msg
        );
        let e = SpecVersion::read_result(json!([]), "prevResult", SpecVersion::V1_0_0).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (7, "prevResult: must be a JSON object")
        );
    }

    #[test]
    fn a_bad_field_of_a_result_is_named_with_its_path() {
        let e = SpecVersion::read_result(
            json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "nope"}]}),
            "prevResult",
            SpecVersion::V0_3_1,
        )
        .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.starts_with("prevResult.ips[0].address"), "{}", e.msg);
    }
}
