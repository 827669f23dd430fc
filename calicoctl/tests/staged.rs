//! Staged policies through the real `calicoctl`: written, read and deleted
//! like any kind, compiled as if enforced only with `policy compile
//! --staged`, and promoted by `policy promote`.

mod common;

use common::Ctl;

/// A staged deny-all in namespace shop, a staged global policy and a staged
/// Kubernetes policy.
const STAGED: &str = "
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec:
  selector: all()
  ingress: [{action: Deny}]
  egress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: quarantine}
spec: {order: 5, selector: quarantined == 'true', ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: api, namespace: shop}
spec: {podSelector: {matchLabels: {app: api}}}
";

/// An enforced policy in namespace shop letting anyone reach `app == 'web'`.
const ALLOW_WEB: &str = "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-web, namespace: shop}
spec: {selector: app == 'web', ingress: [{action: Allow}]}
";

#[test]
fn staged_policies_are_applied_read_replaced_and_deleted_like_any_kind() {
    let ctl = Ctl::new();
    ctl.apply(STAGED);
    let snp = ctl
        .run(&[
            "get",
            "stagednetworkpolicy",
            "deny-all",
            "-n",
            "shop",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(snp["kind"], "StagedNetworkPolicy");
    assert_eq!(snp["spec"]["stagedAction"], "Set", "{snp}");
    assert_eq!(
        snp["spec"]["types"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_eq!(
        ctl.run(&["get", "sgnp"]).ok().stdout,
        "NAME         TIER\nquarantine   default\n"
    );
    assert_eq!(ctl.names(&["sknp", "-n", "shop"]), ["api"]);
    assert_eq!(ctl.names(&["networkpolicies", "-A"]), Vec::<String>::new());

    let create = ctl.write("staged.yaml", STAGED);
    let run = ctl
        .run(&["create", "-f", create.to_str().unwrap()])
        .fails_with(1);
    assert!(
        run.stderr.contains("StagedNetworkPolicy shop/deny-all"),
        "{run:#?}"
    );

    let replaced = STAGED.replace("order: 5", "order: 6");
    let path = ctl.write("replaced.yaml", &replaced);
    ctl.run(&["replace", "-f", path.to_str().unwrap()]).ok();
    let sgnp = ctl
        .run(&["get", "sgnp", "quarantine", "-o", "json"])
        .ok()
        .json();
    assert_eq!(sgnp["spec"]["order"], 6);

    ctl.run(&["delete", "sknp", "api", "-n", "shop"]).ok();
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
    ctl.apply(&format!("{STAGED}---{ALLOW_WEB}"));
    let run = ctl
        .run(&["policy", "promote", "snp", "deny-all", "-n", "shop"])
        .ok();
    assert_eq!(
        run.stdout,
        "Promoted StagedNetworkPolicy shop/deny-all (stagedAction Set): applied NetworkPolicy shop/deny-all and deleted the staged policy\n"
    );
    let np = ctl
        .run(&[
            "get",
            "networkpolicy",
            "deny-all",
            "-n",
            "shop",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(
        np["spec"]["ingress"],
        serde_json::json!([{"action": "Deny"}])
    );
    assert_eq!(np["spec"].get("stagedAction"), None);
    ctl.run(&["get", "snp", "deny-all", "-n", "shop"])
        .fails_with(1);

    // A staged Kubernetes policy becomes a Kubernetes NetworkPolicy.
    ctl.run(&["policy", "promote", "sknp", "api", "-n", "shop"])
        .ok();
    assert_eq!(ctl.names(&["knp", "-n", "shop"]), ["api"]);
}

#[test]
fn promoting_a_staged_delete_deletes_the_enforced_and_the_staged_policy() {
    let ctl = Ctl::new();
    ctl.apply(&format!(
        "{ALLOW_WEB}---\napiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\n\
         metadata: {{name: allow-web, namespace: shop}}\nspec: {{stagedAction: Delete}}\n"
    ));
    let run = ctl
        .run(&[
            "policy",
            "promote",
            "stagednetworkpolicies",
            "allow-web",
            "-n",
            "shop",
        ])
        .ok();
    assert!(
        run.stdout
            .contains("deleted NetworkPolicy shop/allow-web and deleted the staged policy"),
        "{run:#?}"
    );
    assert_eq!(ctl.names(&["networkpolicies", "-A"]), Vec::<String>::new());
    assert_eq!(ctl.names(&["snp", "-A"]), Vec::<String>::new());
}

#[test]
fn a_promotion_that_cannot_be_done_whole_changes_nothing_and_says_why() {
    let ctl = Ctl::new();
    ctl.apply(
        "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: gone}\n\
         spec: {stagedAction: Delete}\n",
    );
    let run = ctl
        .run(&["policy", "promote", "sgnp", "gone"])
        .fails_with(1);
    assert!(
        run.stderr
            .contains("GlobalNetworkPolicy gone does not exist, so there is nothing to delete"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("nothing was changed"), "{run:#?}");
    assert_eq!(ctl.names(&["sgnp"]), ["gone"], "the staged policy is kept");

    let run = ctl
        .run(&["policy", "promote", "sgnp", "missing"])
        .fails_with(1);
    assert!(
        run.stderr
            .contains("StagedGlobalNetworkPolicy missing does not exist"),
        "{run:#?}"
    );
    let run = ctl.run(&["policy", "promote", "gnp", "gone"]).fails_with(2);
    assert!(
        run.stderr
            .contains("GlobalNetworkPolicy is not a staged kind"),
        "{run:#?}"
    );
}

#[test]
fn policy_compile_leaves_staged_policies_out_unless_asked_for_the_would_be_ruleset() {
    let ctl = Ctl::new();
    let endpoints = "
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: node1, interfaceName: caliweb, ipNetworks: [10.65.0.1/32]}
";
    let enforced = ctl.write("enforced/all.yaml", &format!("{ALLOW_WEB}---{endpoints}"));
    let staged = ctl.write(
        "staged/all.yaml",
        &format!("{ALLOW_WEB}---{endpoints}---{STAGED}"),
    );
    let compile = |path: &std::path::Path, extra: &[&str]| {
        let args = [
            &["policy", "compile", "-f", path.to_str().unwrap()][..],
            extra,
        ]
        .concat();
        ctl.run(&args).ok().stdout
    };
    let without = compile(&enforced, &[]);
    assert_eq!(
        compile(&staged, &[]),
        without,
        "staged policies are not enforced"
    );
    let would_be = compile(&staged, &["--staged"]);
    assert_ne!(would_be, without);
    assert!(would_be.contains("deny-all"), "{would_be}");
    assert_eq!(
        compile(&enforced, &["--staged"]),
        without,
        "nothing staged, nothing changes"
    );
}
