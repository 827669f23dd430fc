//! [`Settings`]: FelixConfiguration `default` overlaid by `node.<node>` (a
//! field the node's resource sets wins), and the values the calculation
//! reads from it with Calico's defaults.

use api::{FelixConfigurationSpec, Kind};
use serde_json::Value;

use super::inputs::Inputs;
use super::problems::{ProblemKind, Problems, subject};

/// Felix's `InterfacePrefix` default.
pub(super) const DEFAULT_INTERFACE_PREFIX: &str = "cali";
/// Felix's `VXLANVNI` default.
pub(super) const DEFAULT_VXLAN_VNI: u32 = 4096;
/// Felix's `VXLANPort` default (IANA's VXLAN port).
pub(super) const DEFAULT_VXLAN_PORT: u16 = 4789;
/// A 1500-byte underlay less the 50 bytes of VXLAN over IPv4 (Felix detects
/// the host MTU; we cannot from the datastore, so assume Ethernet's).
pub(super) const DEFAULT_VXLAN_MTU: u32 = 1450;
/// Kernel interface names are at most 15 bytes (`IFNAMSIZ` less the NUL).
pub(super) const MAX_INTERFACE_NAME: usize = 15;

/// This host's felix settings.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Settings {
    /// The merged FelixConfiguration spec (for `policy::Config::with_felix`).
    pub felix: FelixConfigurationSpec,
    /// The workload interface prefix (the first of a comma-separated list).
    pub interface_prefix: String,
    /// `vxlanEnabled` as set; `None`: follow the pools (Calico's auto mode).
    pub vxlan_enabled: Option<bool>,
    pub vxlan_vni: u32,
    pub vxlan_port: u16,
    pub vxlan_mtu: u32,
}

impl Settings {
    /// Reads `default` and `node.<node>`; out-of-range values are problems
    /// and fall back to the defaults.
    pub(super) fn read(inputs: &Inputs<'_>, node: &str, problems: &mut Problems) -> Settings {
        let mut felix = inputs
            .felix_configs
            .get("default")
            .map(|c| c.spec.clone())
            .unwrap_or_default();
        let node_name = format!("node.{node}");
        if let Some(c) = inputs.felix_configs.get(node_name.as_str()) {
            felix = overlay(&felix, &c.spec).unwrap_or_else(|e| {
                problems.add(
                    ProblemKind::Skipped,
                    subject(Kind::FelixConfiguration, &c.metadata),
                    "spec",
                    e,
                );
                c.spec.clone()
            });
        }
        // A bad value is blamed on the resource it came from.
        let node_spec = inputs
            .felix_configs
            .get(node_name.as_str())
            .map(|c| &c.spec);
        let mut field =
            |name: &str, in_node: fn(&FelixConfigurationSpec) -> bool, message: String| {
                let from = if node_spec.is_some_and(in_node) {
                    node_name.as_str()
                } else {
                    "default"
                };
                problems.add(
                    ProblemKind::Skipped,
                    format!("FelixConfiguration {from}"),
                    name,
                    message,
                )
            };
        let interface_prefix = match felix.interface_prefix.as_deref() {
            None => DEFAULT_INTERFACE_PREFIX.to_string(),
            Some(list) => {
                let first = list.split(',').next().unwrap_or_default().trim();
                if first.is_empty()
                    || first.len() >= MAX_INTERFACE_NAME
                    || !first
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    field(
                        "spec.interfacePrefix",
                        |s| s.interface_prefix.is_some(),
                        format!(
                            "{list:?} does not start with an interface name prefix; using {DEFAULT_INTERFACE_PREFIX:?}"
                        ),
                    );
                    DEFAULT_INTERFACE_PREFIX.to_string()
                } else {
                    first.to_string()
                }
            }
        };
        let vxlan_vni = match felix.vxlan_vni {
            None => DEFAULT_VXLAN_VNI,
            Some(v) if v > 0 && v < 1 << 24 => v,
            Some(v) => {
                field(
                    "spec.vxlanVNI",
                    |s| s.vxlan_vni.is_some(),
                    format!("VNI {v} is out of range 1-16777215; using {DEFAULT_VXLAN_VNI}"),
                );
                DEFAULT_VXLAN_VNI
            }
        };
        let vxlan_port = match felix.vxlan_port {
            None => DEFAULT_VXLAN_PORT,
            Some(0) => {
                field(
                    "spec.vxlanPort",
                    |s| s.vxlan_port.is_some(),
                    format!("port 0 is not valid; using {DEFAULT_VXLAN_PORT}"),
                );
                DEFAULT_VXLAN_PORT
            }
            Some(p) => p,
        };
        let vxlan_mtu = match felix.vxlan_mtu {
            None => DEFAULT_VXLAN_MTU,
            Some(m) if (576..=9216).contains(&m) => m,
            Some(m) => {
                field(
                    "spec.vxlanMTU",
                    |s| s.vxlan_mtu.is_some(),
                    format!("MTU {m} is out of range 576-9216; using {DEFAULT_VXLAN_MTU}"),
                );
                DEFAULT_VXLAN_MTU
            }
        };
        Settings {
            vxlan_enabled: felix.vxlan_enabled,
            felix,
            interface_prefix,
            vxlan_vni,
            vxlan_port,
            vxlan_mtu,
        }
    }
}

/// `base` with every field `over` sets replaced: field by field, through the
/// documents' JSON form, so a field added to the spec is merged too.
fn overlay(
    base: &FelixConfigurationSpec,
    over: &FelixConfigurationSpec,
) -> Result<FelixConfigurationSpec, String> {
    let to_map = |spec: &FelixConfigurationSpec| match serde_json::to_value(spec) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("spec is not a mapping: {other}")),
        Err(e) => Err(e.to_string()),
    };
    let mut merged = to_map(base)?;
    merged.extend(to_map(over)?);
    serde_json::from_value(Value::Object(merged)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calc::fixtures::{snapshot, snapshot_unvalidated};

    fn settings(yaml: &str) -> (Settings, Vec<String>) {
        let snap = snapshot(yaml);
        let mut problems = Problems::default();
        let s = Settings::read(&Inputs::read(&snap), "host-a", &mut problems);
        (s, problems.into_lines())
    }

    const FELIX: &str = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\n";

    #[test]
    fn no_felix_configuration_gives_calicos_defaults() {
        let (s, problems) = settings("");
        assert_eq!(s.interface_prefix, "cali");
        assert_eq!(
            (s.vxlan_vni, s.vxlan_port, s.vxlan_mtu, s.vxlan_enabled),
            (4096, 4789, 1450, None)
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn node_configuration_wins_over_default_field_by_field() {
        let yaml = format!(
            "{FELIX}metadata: {{name: default}}\nspec: {{vxlanVNI: 10, vxlanPort: 8472, interfacePrefix: tap}}\n---\n\
             {FELIX}metadata: {{name: node.host-a}}\nspec: {{vxlanVNI: 20, defaultEndpointToHostAction: Accept}}\n---\n\
             {FELIX}metadata: {{name: node.host-b}}\nspec: {{vxlanPort: 1}}\n"
        );
        let (s, problems) = settings(&yaml);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((s.vxlan_vni, s.vxlan_port), (20, 8472));
        assert_eq!(s.interface_prefix, "tap");
        assert_eq!(
            s.felix.default_endpoint_to_host_action,
            Some(api::resources::felix::EndpointToHostAction::Accept)
        );
    }

    #[test]
    fn interface_prefix_list_uses_its_first_prefix() {
        let (s, _) = settings(&format!(
            "{FELIX}metadata: {{name: default}}\nspec: {{interfacePrefix: \"tap,cali\"}}\n"
        ));
        assert_eq!(s.interface_prefix, "tap");
    }

    #[test]
    fn out_of_range_values_are_problems_and_fall_back_to_defaults() {
        let snap = snapshot_unvalidated(&format!(
            "{FELIX}metadata: {{name: default}}\n\
             spec: {{vxlanVNI: 0, vxlanPort: 0, vxlanMTU: 10, interfacePrefix: \",\"}}\n---\n\
             {FELIX}metadata: {{name: node.host-a}}\nspec: {{vxlanPort: 0}}\n"
        ));
        let mut problems = Problems::default();
        let s = Settings::read(&Inputs::read(&snap), "host-a", &mut problems);
        let problems = problems.into_vec();
        assert_eq!(
            (
                s.vxlan_vni,
                s.vxlan_port,
                s.vxlan_mtu,
                s.interface_prefix.as_str()
            ),
            (4096, 4789, 1450, "cali")
        );
        // Each problem names the resource the value came from.
        let expected = [
            "FelixConfiguration default: spec.interfacePrefix",
            "FelixConfiguration default: spec.vxlanVNI",
            "FelixConfiguration node.host-a: spec.vxlanPort",
            "FelixConfiguration default: spec.vxlanMTU",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:?}");
        for (p, e) in problems.iter().zip(expected) {
            assert!(p.to_string().starts_with(e), "{p} is not {e:?}");
        }
    }
}
