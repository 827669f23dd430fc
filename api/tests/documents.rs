//! Reading files of documents: formats, numbering, error collection and the
//! shipped examples.

use api::{Kind, Resource, parse_documents};

fn errors(text: &str) -> Vec<String> {
    match parse_documents("policy.yaml", text) {
        Ok(resources) => panic!("expected errors, parsed {} resources", resources.len()),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn every_example_file_parses_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut kinds = std::collections::BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        let resources = parse_documents(&name, &text).unwrap_or_else(|errs| {
            panic!(
                "{}",
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(!resources.is_empty(), "{name} holds no resources");
        kinds.extend(resources.iter().map(Resource::kind));
    }
    assert!(files >= 5, "only {files} example files");
    for kind in [
        Kind::IPPool,
        Kind::BGPConfiguration,
        Kind::BGPPeer,
        Kind::Tier,
        Kind::GlobalNetworkPolicy,
        Kind::NetworkPolicy,
        Kind::NetworkSet,
        Kind::GlobalNetworkSet,
        Kind::KubernetesNetworkPolicy,
        Kind::FelixConfiguration,
        Kind::KubeControllersConfiguration,
        Kind::StagedNetworkPolicy,
        Kind::StagedGlobalNetworkPolicy,
        Kind::StagedKubernetesNetworkPolicy,
    ] {
        assert!(kinds.contains(&kind), "no example of {kind}");
    }
}

#[test]
fn a_reversed_port_range_is_reported_with_document_name_and_field_path() {
    let text = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: db-clients}
spec: {nets: [10.1.0.0/16]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-db
  namespace: default
spec:
  selector: app == "db"
  ingress:
    - action: Allow
      protocol: TCP
    - action: Allow
      protocol: UDP
    - action: Allow
      protocol: TCP
      destination:
        ports: ["90:80"]
"#;
    assert_eq!(
        errors(text),
        [
            "policy.yaml: document 3 (default/allow-db): spec.ingress[2].destination.ports[0]: range 90:80 is reversed"
        ]
    );
}

#[test]
fn errors_from_every_document_are_collected() {
    let text = r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: bad-pool}
spec: {cidr: 10.0.0.1/16, blockSize: 12}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: good-pool}
spec: {cidr: 10.1.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 10.0.0.300}
"#;
    assert_eq!(
        errors(text),
        [
            "policy.yaml: document 1 (bad-pool): spec.cidr: 10.0.0.1/16 has host bits set (the network is 10.0.0.0/16)",
            "policy.yaml: document 1 (bad-pool): spec.blockSize: block size 12 is out of range 20-32 for an IPv4 pool",
            "policy.yaml: document 3 (tor): spec.peerIP: \"10.0.0.300\" is not an IP address, \"ip:port\" or \"[ipv6]:port\"",
            "policy.yaml: document 3 (tor): spec.asNumber: is required when peerIP is set",
        ]
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let text = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: typo}
spec:
  ingress:
    - action: Allow
      source: {selectr: all()}
"#;
    let errs = errors(text);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("policy.yaml: document 1 (typo): spec.ingress[0].source.selectr: unknown field `selectr`"),
        "{}",
        errs[0]
    );
}

#[test]
fn unknown_kinds_and_api_versions_are_named() {
    let errs = errors(
        "apiVersion: projectcalico.org/v3\nkind: IPool\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: y}\n",
    );
    assert!(errs[0].starts_with("policy.yaml: document 1 (x): kind: unknown kind \"IPool\" for projectcalico.org/v3: expected one of IPPool,"), "{}", errs[0]);
    assert_eq!(
        errs[1],
        "policy.yaml: document 2 (y): apiVersion: unknown apiVersion \"v1\": expected \"projectcalico.org/v3\" or \"networking.k8s.io/v1\""
    );
}

#[test]
fn a_document_without_a_name_is_reported() {
    assert_eq!(
        errors("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {labels: {a: b}}\n"),
        ["policy.yaml: document 1: metadata.name: is required"]
    );
}

#[test]
fn a_yaml_syntax_error_is_reported_with_its_line_after_the_documents_before_it() {
    let text = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: Bad}\n---\nkind: Tier\nspec: {order: x: y}\n";
    let errs = parse_documents("t.yaml", text).unwrap_err();
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), 2, "{shown:?}");
    assert!(
        shown[0].starts_with("t.yaml: document 1 (Bad): metadata.name:"),
        "{}",
        shown[0]
    );
    assert_eq!(
        (errs[1].document, errs[1].line),
        (2, Some(6)),
        "{}",
        shown[1]
    );
    assert!(shown[1].starts_with("t.yaml: document 2: "), "{}", shown[1]);
}

#[test]
fn json_arrays_and_calico_lists_are_read_item_by_item() {
    let json = r#"[
        {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "a"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "B"}}
    ]"#;
    let errs = parse_documents("tiers.json", json).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].to_string().starts_with(
            "tiers.json: document 2 (B): metadata.name: \"B\" is not a valid DNS-1123 label"
        ),
        "{}",
        errs[0]
    );

    let list = r#"
apiVersion: projectcalico.org/v3
kind: List
items:
  - {apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: a}}
  - {apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: b}, spec: {nets: [10.0.0.0/8]}}
"#;
    let resources = parse_documents("list.yaml", list).unwrap();
    assert_eq!(
        resources.iter().map(Resource::kind).collect::<Vec<_>>(),
        [Kind::Tier, Kind::GlobalNetworkSet]
    );

    let bad_item = list.replace("10.0.0.0/8", "10.0.0.0/33");
    let errs = parse_documents("list.yaml", &bad_item).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "list.yaml: document 1 item 2 (b): spec.nets[0]: invalid CIDR \"10.0.0.0/33\""
    );
}

#[test]
fn a_yaml_sequence_of_resources_is_read_item_by_item() {
    let text = "- {apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: a}}\n- {apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: b.c}}\n";
    let errs = errors(text);
    assert!(
        errs[0].starts_with("policy.yaml: document 1 item 2 (b.c): metadata.name: "),
        "{}",
        errs[0]
    );
}

#[test]
fn a_single_json_object_and_concatenated_objects_are_read() {
    let one =
        r#"{"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "a"}}"#;
    assert_eq!(parse_documents("a.json", one).unwrap().len(), 1);
    assert_eq!(
        parse_documents("a.json", &format!("{one}\n{one}"))
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn empty_yaml_documents_are_skipped_but_counted() {
    let text = "---\n# nothing\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: Bad}\n";
    let errs = errors(text);
    assert!(
        errs[0].starts_with("policy.yaml: document 2 (Bad): metadata.name:"),
        "{}",
        errs[0]
    );
}

#[test]
fn a_default_namespace_fills_only_namespaced_documents_that_name_none() {
    let text = "\
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata:
  name: a
spec:
  nets: [10.0.0.0/8]
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata:
  name: b
  namespace: other
spec:
  nets: [10.0.0.0/8]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: c
spec:
  nets: [10.0.0.0/8]
";
    let resources = api::parse_documents_in("sets.yaml", text, Some("prod")).unwrap();
    let namespaces: Vec<Option<&str>> = resources
        .iter()
        .map(|r| r.metadata().namespace.as_deref())
        .collect();
    assert_eq!(namespaces, [Some("prod"), Some("other"), None]);
}

#[test]
fn admin_network_policies_are_refused_by_kind_with_what_to_write_instead() {
    for (version, kind, tier) in [
        (
            "policy.networking.k8s.io/v1alpha1",
            "AdminNetworkPolicy",
            "before",
        ),
        (
            "policy.networking.k8s.io/v1alpha1",
            "BaselineAdminNetworkPolicy",
            "after",
        ),
        (
            "policy.networking.k8s.io/v1alpha2",
            "ClusterNetworkPolicy",
            "before",
        ),
    ] {
        let doc = format!(
            "apiVersion: {version}\nkind: {kind}\nmetadata: {{name: x}}\nspec: {{priority: 10}}\n"
        );
        let errs = parse_documents("anp.yaml", &doc).unwrap_err();
        let text = errs[0].to_string();
        assert!(
            text.contains(&format!("kind: {kind} ({version}) is not supported")),
            "{text}"
        );
        assert!(
            text.contains(&format!("ordered {tier} the default tier")),
            "{text}"
        );
    }
}
