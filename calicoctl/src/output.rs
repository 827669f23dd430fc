//! Rendering resources for `get`: YAML and JSON as `apply` accepts them, and
//! the ps-style tables Calico's calicoctl prints (NAME plus a few columns per
//! kind; `wide` adds more). Pure: works on the resources' JSON form.

use serde_json::{Map, Value};

/// The apiVersion of every resource and of the `List` wrapper.
pub const API_VERSION: &str = "projectcalico.org/v3";

/// Top-level fields in the order Calico prints them; others follow.
const FIELD_ORDER: [&str; 4] = ["apiVersion", "kind", "metadata", "spec"];

/// Reorders a resource's top-level fields as apiVersion, kind, metadata, spec.
pub fn canonical(resource: &Value) -> Value {
    let Value::Object(members) = resource else {
        return resource.clone();
    };
    let mut ordered = Map::new();
    for key in FIELD_ORDER {
        if let Some(v) = members.get(key) {
            ordered.insert(key.to_string(), v.clone());
        }
    }
    for (k, v) in members {
        if !FIELD_ORDER.contains(&k.as_str()) {
            ordered.insert(k.clone(), v.clone());
        }
    }
    Value::Object(ordered)
}

/// The document `get` prints: the resource itself when `single`, otherwise a
/// `kind: List` holding them as `items`.
pub fn document(resources: &[Value], single: bool) -> Value {
    match resources {
        [one] if single => canonical(one),
        _ => {
            let items = resources.iter().map(canonical).collect();
            let mut list = Map::new();
            list.insert("apiVersion".into(), Value::String(API_VERSION.into()));
            list.insert("kind".into(), Value::String("List".into()));
            list.insert("items".into(), Value::Array(items));
            Value::Object(list)
        }
    }
}

/// YAML text of [`document`].
pub fn to_yaml(resources: &[Value], single: bool) -> String {
    serde_yaml::to_string(&document(resources, single)).expect("JSON values always serialise")
}

/// Pretty JSON text of [`document`], newline-terminated.
pub fn to_json(resources: &[Value], single: bool) -> String {
    let mut text = serde_json::to_string_pretty(&document(resources, single))
        .expect("JSON values always serialise");
    text.push('\n');
    text
}

/// A table column: its header and the dotted path of the field it shows.
type Column = (&'static str, &'static str);

const NAME: Column = ("NAME", "metadata.name");
const NAMESPACE: Column = ("NAMESPACE", "metadata.namespace");

/// The (default, wide) columns of a kind, after Calico's calicoctl.
fn columns(kind: &str) -> (&'static [Column], &'static [Column]) {
    match kind {
        "IPPool" => (
            &[
                NAME,
                ("CIDR", "spec.cidr"),
                ("SELECTOR", "spec.nodeSelector"),
            ],
            &[
                NAME,
                ("CIDR", "spec.cidr"),
                ("NAT", "spec.natOutgoing"),
                ("IPIPMODE", "spec.ipipMode"),
                ("VXLANMODE", "spec.vxlanMode"),
                ("DISABLED", "spec.disabled"),
                ("DISABLEBGPEXPORT", "spec.disableBGPExport"),
                ("SELECTOR", "spec.nodeSelector"),
            ],
        ),
        "Node" => (
            &[NAME],
            &[
                NAME,
                ("ASN", "spec.bgp.asNumber"),
                ("IPV4", "spec.bgp.ipv4Address"),
                ("IPV6", "spec.bgp.ipv6Address"),
            ],
        ),
        "BGPPeer" => (
            &[
                NAME,
                ("PEERIP", "spec.peerIP"),
                ("NODE", "spec.node"),
                ("ASN", "spec.asNumber"),
            ],
            &[
                NAME,
                ("PEERIP", "spec.peerIP"),
                ("NODE", "spec.node"),
                ("ASN", "spec.asNumber"),
                ("NODESELECTOR", "spec.nodeSelector"),
                ("PEERSELECTOR", "spec.peerSelector"),
            ],
        ),
        "BGPConfiguration" => {
            const C: &[Column] = &[
                NAME,
                ("LOGSEVERITY", "spec.logSeverityScreen"),
                ("MESHENABLED", "spec.nodeToNodeMeshEnabled"),
                ("ASNUMBER", "spec.asNumber"),
            ];
            (C, C)
        }
        "WorkloadEndpoint" => (
            &[
                NAME,
                ("WORKLOAD", "spec.workload"),
                ("NODE", "spec.node"),
                ("NETWORKS", "spec.ipNetworks"),
                ("INTERFACE", "spec.interfaceName"),
            ],
            &[
                NAME,
                ("WORKLOAD", "spec.workload"),
                ("NODE", "spec.node"),
                ("NETWORKS", "spec.ipNetworks"),
                ("INTERFACE", "spec.interfaceName"),
                ("PROFILES", "spec.profiles"),
                ("NATS", "spec.ipNATs"),
            ],
        ),
        "HostEndpoint" => (
            &[NAME, ("NODE", "spec.node")],
            &[
                NAME,
                ("NODE", "spec.node"),
                ("INTERFACE", "spec.interfaceName"),
                ("IPS", "spec.expectedIPs"),
                ("PROFILES", "spec.profiles"),
            ],
        ),
        "NetworkPolicy"
        | "GlobalNetworkPolicy"
        | "StagedNetworkPolicy"
        | "StagedGlobalNetworkPolicy" => (
            &[NAME, ("TIER", "spec.tier")],
            &[
                NAME,
                ("TIER", "spec.tier"),
                ("ORDER", "spec.order"),
                ("SELECTOR", "spec.selector"),
            ],
        ),
        "Tier" => {
            const C: &[Column] = &[NAME, ("ORDER", "spec.order")];
            (C, C)
        }
        "StagedKubernetesNetworkPolicy" => (&[NAME], &[NAME, ("PODSELECTOR", "spec.podSelector")]),
        "Profile" => (&[NAME], &[NAME, ("LABELS", "spec.labelsToApply")]),
        "NetworkSet" | "GlobalNetworkSet" => (&[NAME], &[NAME, ("NETS", "spec.nets")]),
        _ => (&[NAME], &[NAME, ("LABELS", "metadata.labels")]),
    }
}

/// Renders resources of one kind as a table. `with_namespace` adds a
/// NAMESPACE column first (for `-A` on namespaced kinds).
pub fn to_table(kind: &str, resources: &[Value], wide: bool, with_namespace: bool) -> String {
    let (ps, wide_columns) = columns(kind);
    let mut cols: Vec<Column> = Vec::new();
    if with_namespace {
        cols.push(NAMESPACE);
    }
    cols.extend_from_slice(if wide { wide_columns } else { ps });

    let mut rows = vec![
        cols.iter()
            .map(|(h, _)| (*h).to_string())
            .collect::<Vec<_>>(),
    ];
    rows.extend(
        resources
            .iter()
            .map(|r| cols.iter().map(|(_, path)| cell(r, path)).collect()),
    );
    align(&rows)
}

/// Left-aligns cells with three spaces between columns; no trailing spaces.
fn align(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, text) in row.iter().enumerate() {
            line.push_str(text);
            if c + 1 < row.len() {
                line.extend(std::iter::repeat_n(
                    ' ',
                    widths[c] - text.chars().count() + 3,
                ));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The text of the field at a dotted path: strings as they are, lists joined
/// with commas, maps as `k=v` pairs, nothing when absent.
fn cell(resource: &Value, path: &str) -> String {
    path.split('.')
        .try_fold(resource, |v, key| v.get(key))
        .map(flat)
        .unwrap_or_default()
}

fn flat(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(flat).collect::<Vec<_>>().join(","),
        Value::Object(members) => members
            .iter()
            .map(|(k, v)| format!("{k}={}", flat(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(name: &str, cidr: &str) -> Value {
        json!({"spec":{"cidr":cidr,"natOutgoing":true,"nodeSelector":"all()"},
               "metadata":{"name":name},"kind":"IPPool","apiVersion":API_VERSION})
    }

    #[test]
    fn canonical_orders_api_version_kind_metadata_spec_first() {
        let keys: Vec<String> = match canonical(&pool("p", "10.0.0.0/16")) {
            Value::Object(m) => m.keys().cloned().collect(),
            _ => unreachable!(),
        };
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec"]);
    }

    #[test]
    fn one_resource_by_name_prints_alone_and_several_print_as_a_list() {
        let one = to_yaml(&[pool("p", "10.0.0.0/16")], true);
        assert!(
            one.starts_with(
                "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\n"
            ),
            "{one}"
        );
        let two = to_yaml(&[pool("a", "10.0.0.0/16"), pool("b", "10.1.0.0/16")], false);
        let doc: Value = serde_yaml::from_str(&two).unwrap();
        assert_eq!(doc["kind"], "List");
        assert_eq!(doc["items"][1]["metadata"]["name"], "b");
        let listed_one: Value = serde_json::from_str(&to_json(&[pool("a", "x")], false)).unwrap();
        assert_eq!(listed_one["items"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn ippool_table_shows_name_cidr_and_selector() {
        let table = to_table(
            "IPPool",
            &[pool("default-ipv4", "10.0.0.0/16"), pool("b", "fd00::/48")],
            false,
            false,
        );
        assert_eq!(
            table,
            "NAME           CIDR          SELECTOR\n\
             default-ipv4   10.0.0.0/16   all()\n\
             b              fd00::/48     all()\n"
        );
    }

    #[test]
    fn wide_tables_add_columns_and_absent_fields_print_empty() {
        let table = to_table("IPPool", &[pool("p", "10.0.0.0/16")], true, false);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("NAME   CIDR          NAT    IPIPMODE   VXLANMODE"),
            "{table}"
        );
        assert!(lines[1].starts_with("p      10.0.0.0/16   true"), "{table}");
    }

    #[test]
    fn all_namespaces_puts_the_namespace_first_and_lists_join_with_commas() {
        let wep = json!({"kind":"WorkloadEndpoint","metadata":{"name":"w","namespace":"prod"},
            "spec":{"node":"n1","workload":"pod1","interfaceName":"cali0","ipNetworks":["10.0.0.1/32","fd00::1/128"]}});
        let table = to_table("WorkloadEndpoint", &[wep], false, true);
        assert_eq!(
            table,
            "NAMESPACE   NAME   WORKLOAD   NODE   NETWORKS                  INTERFACE\n\
             prod        w      pod1       n1     10.0.0.1/32,fd00::1/128   cali0\n"
        );
    }

    #[test]
    fn an_empty_list_prints_just_the_header() {
        assert_eq!(to_table("Node", &[], false, false), "NAME\n");
    }

    #[test]
    fn maps_print_as_key_value_pairs() {
        let profile = json!({"metadata":{"name":"p"},"spec":{"labelsToApply":{"a":"1","b":"2"}}});
        assert_eq!(
            to_table("Profile", &[profile], true, false),
            "NAME   LABELS\np      a=1,b=2\n"
        );
    }
}
