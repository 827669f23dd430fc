//! Fields and checks from Calico 3.29–3.33 (issue 19), through the real
//! `calicoctl` on a fresh store: for every new field one valid example that
//! round-trips through `apply` and `get`, and one invalid example that
//! `validate -f` and `apply -f` refuse with the same message naming the
//! field, leaving the store as it was.

mod common;

use common::Ctl;
use serde_json::Value;

/// A new field: the resource (kind, name, the spec lines before the field),
/// the field's path in the spec, a valid value and an invalid one.
struct Case {
    kind: &'static str,
    name: &'static str,
    spec: &'static str,
    field: &'static str,
    valid: &'static str,
    invalid: &'static str,
}

const CASES: &[Case] = &[
    Case {
        kind: "IPPool",
        name: "team-a",
        spec: "  cidr: 10.61.0.0/16\n",
        field: "namespaceSelector",
        valid: "team == 'a'",
        invalid: "team ==",
    },
    Case {
        kind: "BGPPeer",
        name: "tor",
        spec: "  peerIP: 10.0.0.1\n  asNumber: 65000\n",
        field: "nextHopMode",
        valid: "Self",
        invalid: "Sometimes",
    },
    Case {
        kind: "BGPPeer",
        name: "tor",
        spec: "  peerIP: 10.0.0.1\n  asNumber: 65000\n",
        field: "keepaliveTime",
        valid: "20s",
        invalid: "0s",
    },
    Case {
        kind: "FelixConfiguration",
        name: "default",
        spec: "",
        field: "natOutgoingExclusions",
        valid: "IPPoolsAndHostIPs",
        invalid: "IPPoolsAndSomeHosts",
    },
];

fn document(case: &Case, value: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: {}\nmetadata:\n  name: {}\nspec:\n{}  {}: {value:?}\n",
        case.kind, case.name, case.spec, case.field
    )
}

fn stored(ctl: &Ctl, case: &Case) -> Value {
    let mut doc = ctl
        .run(&["get", case.kind, case.name, "-o", "json"])
        .ok()
        .json();
    doc["metadata"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "name");
    doc
}

#[test]
fn every_new_field_round_trips_and_an_invalid_value_is_refused_naming_it() {
    for case in CASES {
        let ctl = Ctl::new();
        ctl.apply(&document(case, case.valid));
        let got = stored(&ctl, case);
        assert_eq!(
            got["spec"][case.field], case.valid,
            "{}.{}: {got}",
            case.kind, case.field
        );
        let yaml = ctl
            .run(&["get", case.kind, case.name, "-o", "yaml"])
            .ok()
            .stdout;
        let again = ctl.write("again.yaml", &yaml);
        ctl.run(&["apply", "-f", again.to_str().unwrap()]).ok();
        assert_eq!(stored(&ctl, case), got, "{}: re-applied as read", case.kind);

        let bad = ctl.write("bad.yaml", &document(case, case.invalid));
        let validate = ctl
            .run(&["validate", "-f", bad.to_str().unwrap()])
            .fails_with(2);
        let apply = ctl
            .run(&["apply", "-f", bad.to_str().unwrap()])
            .fails_with(2);
        let path = format!("spec.{}", case.field);
        assert!(
            validate.stderr.contains(&path),
            "{}: {}",
            case.kind,
            validate.stderr
        );
        assert_eq!(validate.stderr, apply.stderr, "{}", case.kind);
        assert_eq!(stored(&ctl, case), got, "{}: store unchanged", case.kind);
    }
}

fn pool(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {name}}}\nspec: {{cidr: {cidr}}}\n"
    )
}

#[test]
fn overlapping_pools_are_refused_naming_the_other_in_a_file_and_against_the_store() {
    let ctl = Ctl::new();
    let file = ctl.write(
        "pools.yaml",
        &[pool("a", "10.70.0.0/16"), pool("b", "10.70.8.0/24")].join("---\n"),
    );
    let validate = ctl
        .run(&["validate", "-f", file.to_str().unwrap()])
        .fails_with(2);
    assert!(
        validate
            .stderr
            .contains("IPPool b: spec.cidr: 10.70.8.0/24 overlaps IPPool \"a\" (10.70.0.0/16)"),
        "{}",
        validate.stderr
    );
    assert_eq!(
        validate.stderr.matches("overlaps").count(),
        1,
        "one problem per pair"
    );
    ctl.run(&["apply", "-f", file.to_str().unwrap()])
        .fails_with(2);
    assert!(ctl.names(&["ippools"]).is_empty(), "nothing written");

    ctl.apply(&pool("a", "10.70.0.0/16"));
    let b = ctl.write("b.yaml", &pool("b", "10.0.0.0/8"));
    ctl.run(&["validate", "-f", b.to_str().unwrap()]).ok();
    let refused = ctl
        .run(&["create", "-f", b.to_str().unwrap()])
        .fails_with(2);
    assert!(
        refused.stderr.contains("spec.cidr") && refused.stderr.contains("IPPool \"a\""),
        "{}",
        refused.stderr
    );
    assert_eq!(ctl.names(&["ippools"]), ["a"]);
}
