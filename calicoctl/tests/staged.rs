//! Staged policies through the real `calicoctl`, on the shipped examples
//! (`examples/staged-policy.yaml` stages changes to `examples/policy.yaml`):
//! written, read and deleted like any kind, compiled as if enforced only
//! with `policy compile --staged`, and promoted by `policy promote`.

mod common;

use std::path::{Path, PathBuf};

use common::Ctl;
use serde_json::{Value, json};

/// A file of `examples/`.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

fn apply_example(ctl: &Ctl, name: &str) {
    ctl.run(&["apply", "-f", example(name).to_str().unwrap()])
        .ok();
}

/// `get KIND NAME [-n NS] -o json`.
fn get(ctl: &Ctl, kind: &str, name: &str, namespace: Option<&str>) -> Value {
    let mut args = vec!["get", kind, name, "-o", "json"];
    args.extend(namespace.iter().flat_map(|ns| ["-n", ns]));
    ctl.run(&args).ok().json()
}

#[test]
fn staged_policies_are_applied_read_replaced_and_deleted_like_any_kind() {
    let ctl = Ctl::new();
    apply_example(&ctl, "staged-policy.yaml");
    let snp = get(&ctl, "stagednetworkpolicy", "default-deny", Some("shop"));
    assert_eq!(snp["kind"], "StagedNetworkPolicy");
    assert_eq!(snp["spec"]["stagedAction"], "Set", "{snp}");
    assert_eq!(snp["spec"]["types"], json!(["Ingress", "Egress"]));
    assert_eq!(
        get(&ctl, "snp", "allow-db", Some("shop"))["spec"],
        json!({"stagedAction": "Delete", "tier": "default"})
    );
    assert_eq!(
        ctl.run(&["get", "sgnp"]).ok().stdout,
        "NAME                TIER\nhost-ssh-failsafe   default\n"
    );
    assert_eq!(ctl.names(&["sknp", "-n", "shop"]), ["api-isolate"]);
    assert_eq!(ctl.names(&["networkpolicies", "-A"]), Vec::<String>::new());

    let run = ctl
        .run(&[
            "create",
            "-f",
            example("staged-policy.yaml").to_str().unwrap(),
        ])
        .fails_with(1);
    assert!(
        run.stderr.contains("StagedNetworkPolicy shop/default-deny"),
        "{run:#?}"
    );

    let text = std::fs::read_to_string(example("staged-policy.yaml")).unwrap();
    let path = ctl.write(
        "replaced.yaml",
        &text.replace("  order: 1\n", "  order: 2\n"),
    );
    ctl.run(&["replace", "-f", path.to_str().unwrap()]).ok();
    assert_eq!(
        get(&ctl, "sgnp", "host-ssh-failsafe", None)["spec"]["order"],
        2
    );

    ctl.run(&["delete", "sknp", "api-isolate", "-n", "shop"])
        .ok();
    assert_eq!(ctl.names(&["sknp", "-n", "shop"]), Vec::<String>::new());
}

#[test]
fn a_bad_staged_action_is_refused_naming_the_field_and_nothing_is_written() {
    let ctl = Ctl::new();
    let path = ctl.write(
        "bad.yaml",
        "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: p}\n\
         spec: {stagedAction: Learn}\n",
    );
    let run = ctl
        .run(&["apply", "-f", path.to_str().unwrap()])
        .fails_with(2);
    assert!(run.stderr.contains("spec.stagedAction"), "{run:#?}");
    assert_eq!(ctl.names(&["sgnp"]), Vec::<String>::new());
}

#[test]
fn promoting_a_staged_set_enforces_its_spec_and_deletes_the_staged_policy() {
    let ctl = Ctl::new();
    apply_example(&ctl, "policy.yaml");
    apply_example(&ctl, "staged-policy.yaml");
    let run = ctl
        .run(&["policy", "promote", "snp", "default-deny", "-n", "shop"])
        .ok();
    assert_eq!(
        run.stdout,
        "Promoted StagedNetworkPolicy shop/default-deny (stagedAction Set): applied NetworkPolicy shop/default-deny and deleted the staged policy\n"
    );
    let np = get(&ctl, "networkpolicy", "default-deny", Some("shop"));
    assert_eq!(np["spec"]["ingress"], json!([{"action": "Deny"}]));
    assert_eq!(np["spec"].get("stagedAction"), None);
    ctl.run(&["get", "snp", "default-deny", "-n", "shop"])
        .fails_with(1);

    // A staged Set of an existing policy replaces it.
    ctl.run(&["policy", "promote", "sgnp", "host-ssh-failsafe"])
        .ok();
    let gnp = get(&ctl, "gnp", "host-ssh-failsafe", None);
    assert_eq!(
        gnp["spec"]["ingress"][0]["source"]["nets"],
        json!(["10.0.0.0/8", "192.168.0.0/16"])
    );

    // A staged Kubernetes policy becomes a Kubernetes NetworkPolicy.
    ctl.run(&["policy", "promote", "sknp", "api-isolate", "-n", "shop"])
        .ok();
    assert_eq!(ctl.names(&["knp", "-n", "shop"]), ["api-isolate"]);
}

#[test]
fn promoting_a_staged_delete_deletes_the_enforced_and_the_staged_policy() {
    let ctl = Ctl::new();
    apply_example(&ctl, "policy.yaml");
    apply_example(&ctl, "staged-policy.yaml");
    let run = ctl
        .run(&[
            "policy",
            "promote",
            "stagednetworkpolicies",
            "allow-db",
            "-n",
            "shop",
        ])
        .ok();
    assert!(
        run.stdout
            .contains("deleted NetworkPolicy shop/allow-db and deleted the staged policy"),
        "{run:#?}"
    );
    assert_eq!(
        ctl.names(&["networkpolicies", "-n", "shop"]),
        ["security.quarantine"]
    );
    assert_eq!(ctl.names(&["snp", "-n", "shop"]), ["default-deny"]);
}

#[test]
fn a_promotion_that_cannot_be_done_whole_changes_nothing_and_says_why() {
    let ctl = Ctl::new();
    apply_example(&ctl, "staged-policy.yaml");
    // (promote's arguments, exit status, what stderr says)
    let cases: [(&[&str], i32, &str); 3] = [
        (
            &["snp", "allow-db", "-n", "shop"],
            1,
            "NetworkPolicy shop/allow-db does not exist, so there is nothing to delete",
        ),
        (
            &["sgnp", "missing"],
            1,
            "StagedGlobalNetworkPolicy missing does not exist",
        ),
        (
            &["gnp", "host-ssh-failsafe"],
            2,
            "GlobalNetworkPolicy is not a staged kind",
        ),
    ];
    for (args, code, says) in cases {
        let run = ctl
            .run(&[&["policy", "promote"][..], args].concat())
            .fails_with(code);
        assert!(run.stderr.contains(says), "{run:#?}");
    }
    let run = ctl
        .run(&["policy", "promote", "snp", "allow-db", "-n", "shop"])
        .fails_with(1);
    assert!(run.stderr.contains("nothing was changed"), "{run:#?}");
    assert_eq!(
        ctl.names(&["snp", "-n", "shop"]),
        ["allow-db", "default-deny"],
        "the staged policy is kept"
    );
}

#[test]
fn policy_compile_leaves_staged_policies_out_unless_asked_for_the_would_be_ruleset() {
    let ctl = Ctl::new();
    for dir in ["enforced", "staged"] {
        for file in ["policy.yaml", "endpoints.yaml"] {
            let text = std::fs::read_to_string(example(file)).unwrap();
            ctl.write(&format!("{dir}/{file}"), &text);
        }
    }
    let text = std::fs::read_to_string(example("staged-policy.yaml")).unwrap();
    ctl.write("staged/staged-policy.yaml", &text);
    let compile = |dir: &str, extra: &[&str]| {
        let path = ctl.dir.path().join(dir);
        let args = [
            &["policy", "compile", "-f", path.to_str().unwrap()][..],
            extra,
        ]
        .concat();
        ctl.run(&args).ok().stdout
    };
    let without = compile("enforced", &[]);
    assert_eq!(
        compile("staged", &[]),
        without,
        "staged policies are not enforced"
    );
    let would_be = compile("staged", &["--staged"]);
    assert_ne!(would_be, without);
    assert!(would_be.contains("default-deny"), "{would_be}");
    assert_eq!(
        compile("enforced", &["--staged"]),
        without,
        "nothing staged, nothing changes"
    );
}
